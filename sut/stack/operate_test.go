package stack_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// fakeServerEnv makes this test binary a component: it listens on the address the variable holds and answers
// /readyz with 200 until it is killed; a second copy on the same address exits at once, as a worker whose port
// is taken does.
const fakeServerEnv = "LEDGERPROOF_TEST_FAKE_COMPONENT"

func serveReadiness(address string) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake component:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	fmt.Fprintln(os.Stderr, "fake component: listening on", address)
	_ = (&http.Server{Handler: mux, ReadHeaderTimeout: time.Second}).Serve(listener)
	os.Exit(1)
}

// fakeStack writes a stack file with one worker, this test binary serving readiness on a port of its own,
// recorded as state (no process yet), and kills whatever process the stack last recorded when the test ends.
func fakeStack(t *testing.T, state string) string {
	t.Helper()
	dir := t.TempDir()
	executable, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	address := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	file := &stack.File{Version: stack.FileVersion, Dir: dir, Components: []*stack.Component{{
		Name: "worker-0", Kind: stack.KindWorker, State: state,
		Argv: []string{executable}, Env: []string{fakeServerEnv + "=" + address},
		LogFile: filepath.Join(dir, "worker-0.log"),
		Ready:   stack.Probe{Kind: stack.ProbeHTTP, Target: "http://" + address + "/readyz"},
	}}}
	if err := stack.SaveForTest(file); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := stack.Kill(ctx, dir, "worker-0"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// TestConcurrentStartsOfOneComponent: a fault plan's start and a supervisor's restart of one dead component at
// the same moment. The component's lock makes them one after the other, so one process starts and the other
// start finds it running; without it both started a process and the second failed on the taken port (the
// mutation matrix's "process exited before it was ready" of a worker restarted by both, 6 December).
func TestConcurrentStartsOfOneComponent(t *testing.T) {
	t.Parallel()
	dir := fakeStack(t, stack.StateKilled)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const starts = 4
	var wait sync.WaitGroup
	errs := make(chan error, starts)
	for range starts {
		wait.Add(1)
		go func() {
			defer wait.Done()
			_, err := stack.Operate(ctx, dir, "worker-0", stack.ActionStart)
			errs <- err
		}()
	}
	wait.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a start failed: %v", err)
		}
	}
	file, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	component, err := file.Component("worker-0")
	if err != nil {
		t.Fatal(err)
	}
	if !component.Alive() || component.State != stack.StateRunning {
		t.Errorf("after the starts: %s, state %q; want it running", component.Status(), component.State)
	}
	log, _ := os.ReadFile(component.LogFile)
	if starts := strings.Count(string(log), "fake component: listening on"); starts != 1 {
		t.Errorf("%d processes listened, want 1; log:\n%s", starts, log)
	}
}

// TestStartIfExited: the supervisor's restart starts a component that exited on its own, and leaves one a
// fault plan killed (or that runs) as it is.
func TestStartIfExited(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	killed := fakeStack(t, stack.StateKilled)
	if _, started, err := stack.StartIfExited(ctx, killed, "worker-0"); started || err != nil {
		t.Errorf("a component the plan killed: started %v, %v; want it left dead", started, err)
	}
	crashed := fakeStack(t, stack.StateRunning) // recorded running, no process: it exited on its own
	if _, started, err := stack.StartIfExited(ctx, crashed, "worker-0"); !started || err != nil {
		t.Fatalf("a component that exited on its own: started %v, %v; want it restarted", started, err)
	}
	if _, started, err := stack.StartIfExited(ctx, crashed, "worker-0"); started || err != nil {
		t.Errorf("a component running again: started %v, %v; want it left as it is", started, err)
	}
}

// TestOperateOnUnknownComponent: a name the stack does not have is refused before any lock file is made for it,
// so a name is never taken for a path.
func TestOperateOnUnknownComponent(t *testing.T) {
	t.Parallel()
	dir := fakeStack(t, stack.StateKilled)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// As a lock file's name, "stack.lock.x/../../escaped" would be the file escaped beside the stack's directory.
	const name = "x/../../escaped"
	_, err := stack.Operate(ctx, dir, name, stack.ActionStart)
	if err == nil || !strings.Contains(err.Error(), `has no component "`+name+`"`) {
		t.Errorf("unknown component: %v", err)
	}
	if path := filepath.Join(filepath.Dir(dir), "escaped"); fileExists(path) {
		t.Errorf("%s was created", path)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
