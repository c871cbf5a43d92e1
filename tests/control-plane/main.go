// Command control-plane runs a real Kubernetes control plane for tests, in one
// process and without any external binary:
//
//   - an embedded etcd (go.etcd.io/etcd/server/v3/embed), and
//   - a real kube-apiserver started through the upstream integration-test
//     helper k8s.io/kubernetes/cmd/kube-apiserver/app/testing.StartTestServer,
//     with RBAC authorization and service-account token issuance.
//
// It listens on 127.0.0.1 (a free port), writes an admin kubeconfig (user
// "microseg-admin" in group system:masters, authenticating with a client
// certificate, TLS verified against an embedded CA), prints exactly one line
//
//	READY <kubeconfig path> <https url>
//
// to stdout once /readyz answers, and keeps running until SIGTERM/SIGINT or
// until the process it watches (by default its parent) goes away.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/kubernetes/test/utils/ktesting"
)

// ownedDataDir is the data dir when this process created it (no --data-dir),
// and must then remove it on every exit path.
var ownedDataDir string

func main() {
	os.Exit(run())
}

func run() int {
	kubeconfigPath := flag.String("kubeconfig", "", "where to write the admin kubeconfig (required)")
	dataDirFlag := flag.String("data-dir", "", "scratch directory for etcd data and certificates (default: a temp dir removed on exit)")
	controllers := flag.String("controllers", defaultControllers, "kube-controller-manager controllers to run in-process (its --controllers syntax); empty = none")
	watchPID := flag.Int("watch-pid", -1, "exit when this process goes away; -1 = the parent process (also uses PR_SET_PDEATHSIG), 0 = never")
	// klog's flags (-v=N, ...) are registered on flag.CommandLine by ktesting's
	// imports, which also raise the default verbosity to 5 (fine for unit
	// tests, far too chatty here). Default to 0; -v=N still overrides.
	ktesting.SetDefaultVerbosity(0)
	flag.Parse()
	if *kubeconfigPath == "" {
		fmt.Fprintln(os.Stderr, "control-plane: --kubeconfig is required")
		return 2
	}
	kubeconfig, err := filepath.Abs(*kubeconfigPath)
	if err != nil {
		klog.Errorf("bad --kubeconfig: %v", err)
		return 2
	}

	// ctx is cancelled on SIGTERM/SIGINT or when the watched process dies.
	base, cancel := context.WithCancelCause(context.Background())
	ctx, stop := signal.NotifyContext(base, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	gone := func() { cancel(errors.New("watched process is gone")) }
	if err := watchProcess(ctx, gone, *watchPID); err != nil {
		klog.Errorf("cannot watch process: %v", err)
		return 1
	}

	// Everything this process writes lives under dataDir. Pointing TMPDIR at it
	// makes StartTestServer's own temp dir land there too.
	dataDir := *dataDirFlag
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "microseg-control-plane-"); err != nil {
			klog.Errorf("creating temp dir: %v", err)
			return 1
		}
		ownedDataDir = dataDir
		defer os.RemoveAll(dataDir)
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		klog.Errorf("creating data dir: %v", err)
		return 1
	}
	if dataDir, err = filepath.Abs(dataDir); err != nil {
		klog.Errorf("bad data dir: %v", err)
		return 1
	}
	os.Setenv("TMPDIR", dataDir)

	if err := serve(ctx, dataDir, kubeconfig, *controllers); err != nil {
		klog.Errorf("control plane failed: %v", err)
		return 1
	}
	klog.Info("control plane stopped cleanly")
	return 0
}

// defaultControllers are the kube-controller-manager controllers whose absence
// a test would notice: namespace deletion, ownerReference garbage collection,
// the "default" ServiceAccount of each namespace, and the aggregated built-in
// ClusterRoles (admin/edit/view are empty without it).
const defaultControllers = "namespace,garbagecollector,serviceaccount,clusterrole-aggregation"

// serve starts etcd, the apiserver and the controller-manager, announces
// READY, waits for ctx and then tears everything down (in reverse order).
func serve(ctx context.Context, dataDir, kubeconfig, controllers string) error {
	p, err := newPKI(filepath.Join(dataDir, "pki"))
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}

	etcd, etcdURL, err := startEtcd(filepath.Join(dataDir, "etcd"))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	storage := storagebackend.NewDefaultConfig("/registry", nil)
	storage.Transport.ServerList = []string{etcdURL}

	flags := []string{
		// Real authorization, so tests using a ServiceAccount identity (or
		// impersonation) get real RBAC denials. system:masters bypasses it.
		"--authorization-mode=Node,RBAC",
		// Our own serving certificate and client CA, so the kubeconfig can
		// carry the CA and an admin client certificate.
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		// As in upstream integration tests: there is no node to point the
		// "kubernetes" Service at, and no controller-manager creating the
		// "default" ServiceAccount that the ServiceAccount admission plugin
		// would insist on for every Pod.
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
	}

	tb := newTB(dataDir)
	defer tb.runCleanups()
	// StartTestServer wants a test context; give it one that we cancel
	// ourselves through TearDownFn.
	tCtx := ktesting.WithCancel(ktesting.InitCtx(context.Background(), tb))
	server, err := kubeapiservertesting.StartTestServer(tCtx, kubeapiservertesting.NewDefaultTestServerOptions(), flags, storage)
	if err != nil {
		return fmt.Errorf("starting kube-apiserver: %w", err)
	}
	stopped := make(chan struct{})
	defer func() {
		// Bounded shutdown: never hang a test run because teardown stalls.
		go func() { server.TearDownFn(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			klog.Warning("kube-apiserver did not stop within 30s; exiting anyway")
		}
	}()

	host := server.ClientConfig.Host // https://127.0.0.1:PORT
	if !strings.HasPrefix(host, "https://") {
		host = "https://" + host
	}
	if err := writeKubeconfig(kubeconfig, host, p); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	defer os.Remove(kubeconfig)

	// Check /readyz through the kubeconfig we just wrote: this proves that
	// TLS verification and the admin identity work for an outside client.
	if err := waitReady(ctx, kubeconfig); err != nil {
		return err
	}
	if controllers != "" {
		stopKCM, err := startControllerManager(ctx, kubeconfig, controllers)
		if err != nil {
			return fmt.Errorf("starting kube-controller-manager: %w", err)
		}
		defer stopKCM()
		if strings.Contains(controllers, "clusterrole-aggregation") {
			if err := waitControllersWorking(ctx, kubeconfig); err != nil {
				return err
			}
		}
	}
	fmt.Printf("READY %s %s\n", kubeconfig, host)
	klog.Infof("control plane ready at %s (kubeconfig %s)", host, kubeconfig)

	<-ctx.Done()
	klog.Infof("shutting down: %v", context.Cause(ctx))
	return nil
}

// startEtcd starts a single-member etcd on free 127.0.0.1 ports.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ { // free ports can be raced for
		ports, err := freePorts(2)
		if err != nil {
			return nil, "", err
		}
		clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
		peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}

		cfg := embed.NewConfig()
		cfg.Name = "control-plane"
		cfg.Dir = dir
		cfg.UnsafeNoFsync = true // throw-away test data: speed over durability
		cfg.ListenClientUrls = []url.URL{clientURL}
		cfg.AdvertiseClientUrls = []url.URL{clientURL}
		cfg.ListenPeerUrls = []url.URL{peerURL}
		cfg.AdvertisePeerUrls = []url.URL{peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"stderr"}

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			os.RemoveAll(dir)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, clientURL.String(), nil
		case <-time.After(60 * time.Second):
			e.Close()
			return nil, "", errors.New("etcd took more than 60s to start")
		}
	}
	return nil, "", lastErr
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls /readyz with the admin kubeconfig.
func waitReady(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not ok after 60s: %v %s", err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
