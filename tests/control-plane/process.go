package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// tb is the minimal stand-in for *testing.T that StartTestServer needs
// (it takes a ktesting.TB). Logs go to klog (stderr); failures are fatal.
type tb struct {
	dataDir  string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func newTB(dataDir string) *tb { return &tb{dataDir: dataDir} }

func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// runCleanups runs the registered cleanups, last registered first (like testing).
func (t *tb) runCleanups() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (t *tb) Helper()                      {}
func (t *tb) Name() string                 { return "control-plane" }
func (t *tb) Log(args ...any)              { klog.InfoDepth(1, args...) }
func (t *tb) Logf(format string, a ...any) { klog.InfoDepth(1, fmt.Sprintf(format, a...)) }
func (t *tb) Error(args ...any)            { klog.ErrorDepth(1, args...); t.Fail() }
func (t *tb) Errorf(format string, a ...any) {
	klog.ErrorDepth(1, fmt.Sprintf(format, a...))
	t.Fail()
}
func (t *tb) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}
func (t *tb) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// FailNow ends the process: there is no test to abort, only a server that
// cannot start. Cleanups still run so temp dirs are removed.
func (t *tb) FailNow() {
	t.runCleanups()
	if ownedDataDir != "" {
		os.RemoveAll(ownedDataDir)
	}
	os.Exit(1)
}
func (t *tb) Fatal(args ...any) { klog.ErrorDepth(1, args...); t.FailNow() }
func (t *tb) Fatalf(format string, a ...any) {
	klog.ErrorDepth(1, fmt.Sprintf(format, a...))
	t.FailNow()
}
func (t *tb) Skip(args ...any)              { t.Fatal(args...) }
func (t *tb) SkipNow()                      { t.FailNow() }
func (t *tb) Skipf(format string, a ...any) { t.Fatalf(format, a...) }
func (t *tb) Skipped() bool                 { return false }
func (t *tb) Setenv(key, value string)      { os.Setenv(key, value) }
func (t *tb) TempDir() string {
	dir, err := os.MkdirTemp(t.dataDir, "tmp-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return dir
}

// watchProcess makes sure the control plane does not outlive whoever started
// it. pid -1 means our parent: the kernel sends SIGTERM when it dies
// (PR_SET_PDEATHSIG) and, as a backstop, getppid() is polled every 500ms.
// Any other pid > 0 is polled through /proc (its start time guards against
// pid reuse). pid 0 disables watching. cancel is called when it is gone.
func watchProcess(ctx context.Context, cancel func(), pid int) error {
	if pid == 0 {
		return nil
	}
	parent := os.Getppid()
	if pid < 0 {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %v", errno)
		}
		pid = parent
	}
	started, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now, err := startTime(pid)
			if (pid == parent && os.Getppid() != parent) || err != nil || now != started {
				klog.Infof("watched process %d is gone; shutting down", pid)
				cancel()
				return
			}
		}
	}()
	return nil
}

// startTime returns field 22 (starttime) of /proc/PID/stat.
func startTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// plain, so split after its closing parenthesis.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	// fields[0] is field 3 (state), so field 22 is fields[19]. A zombie
	// (state Z) counts as gone.
	if fields[0] == "Z" {
		return "", fmt.Errorf("process %d is a zombie", pid)
	}
	return fields[19], nil
}
