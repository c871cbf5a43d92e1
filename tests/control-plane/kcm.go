package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// startControllerManager runs a real kube-controller-manager in this process,
// limited to the given controllers (e.g. namespace deletion, garbage
// collection, default ServiceAccounts, ClusterRole aggregation) - the ones an
// apiserver-only control plane visibly lacks. It talks to the apiserver with
// the admin kubeconfig and serves no port of its own (--secure-port=0).
// The returned function stops it and waits for it to finish.
func startControllerManager(ctx context.Context, kubeconfig, controllers string) (func(), error) {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	all, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	namedFlagSets := s.Flags(all, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse([]string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--controllers=" + controllers,
		"--secure-port=0",      // no HTTP endpoint: nothing listens beyond the apiserver
		"--leader-elect=false", // single instance; leader election would os.Exit on loss
	}); err != nil {
		return nil, err
	}
	s.ParsedFlags = &namedFlagSets

	config, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := kcmapp.Run(ctx, config.Complete()); err != nil {
			klog.Errorf("kube-controller-manager: %v", err)
		}
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			klog.Warning("kube-controller-manager did not stop within 10s")
		}
	}
	return stop, nil
}

// waitControllersWorking waits until the ClusterRole aggregation controller
// has filled in the built-in "view" ClusterRole, a cheap sign that the
// controller-manager is up and reconciling.
func waitControllersWorking(ctx context.Context, kubeconfig string) error {
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
		role, err := client.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		if err == nil && len(role.Rules) > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ClusterRole view not aggregated after 60s (err=%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
