package stack_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestStartTellsACrashOnPurpose: a process that exits before it is ready
// with a crash's exit status (a crash point, the seeded between-commits
// crash) fails Start with ErrCrashedOnPurpose, which a fault plan's start
// step accepts (it started; a supervisor restarts it); any other exit is a
// plain failure.
func TestStartTellsACrashOnPurpose(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		status    int
		onPurpose bool
	}{{crash.SeededCrashExitStatus, true}, {crash.ExitStatus, true}, {1, false}} {
		t.Run(fmt.Sprint(test.status), func(t *testing.T) {
			t.Parallel()
			component := &stack.Component{Name: "worker-0", Kind: stack.KindWorker,
				Argv:    []string{"sh", "-c", fmt.Sprintf("sleep 0.2; exit %d", test.status)},
				LogFile: filepath.Join(t.TempDir(), "worker-0.log"),
				Ready:   stack.Probe{Kind: stack.ProbeHTTP, Target: fmt.Sprintf("http://127.0.0.1:%d/readyz", stacktest.FreePort(t))}}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := component.Start(ctx)
			if err == nil {
				t.Fatal("started, want the exit before readiness reported")
			}
			if errors.Is(err, stack.ErrCrashedOnPurpose) != test.onPurpose {
				t.Errorf("exit status %d: %v; want a crash on purpose: %v", test.status, err, test.onPurpose)
			}
		})
	}
}
