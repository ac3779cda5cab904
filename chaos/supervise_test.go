package chaos

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestDrillSupervise: a gateway that exits on its own while a plan runs
// (here SIGKILLed behind the stack's back, as a crash point leaves it)
// stays down without --supervise, and is back, a new process, with it;
// a worker the plan itself kills is left to the plan.
func TestDrillSupervise(t *testing.T) {
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1})
	planFile := filepath.Join(t.TempDir(), "plan.yaml")
	plan := "name: supervise\nduration: 10s\nsteps:\n  - {at: 5s, action: kill, target: worker-0, params: {duration: 2s}}\n"
	if err := os.WriteFile(planFile, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	drill := func(supervise bool) (string, *stack.Component) {
		t.Helper()
		gateway := component(t, file.Dir, "gateway-0")
		if !gateway.Alive() {
			t.Fatalf("gateway-0 is %s before the drill", gateway.Status())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		go func() {
			time.Sleep(time.Second)
			_ = syscall.Kill(gateway.PID, syscall.SIGKILL)
		}()
		var out bytes.Buffer
		err := RunDrill(ctx, DrillOptions{Plan: planFile, StackDir: file.Dir, RunDir: t.TempDir(), StepTimeout: time.Minute,
			Supervise: supervise}, &out)
		if err != nil {
			t.Fatalf("drill (supervise %v): %v\n%s", supervise, err, out.String())
		}
		after := component(t, file.Dir, "gateway-0")
		if after.PID == gateway.PID && after.Alive() {
			t.Fatalf("gateway-0 (PID %d) was never killed", gateway.PID)
		}
		return out.String(), after
	}

	out, gateway := drill(false)
	if gateway.Alive() || strings.Contains(out, "supervisor:") {
		t.Fatalf("without --supervise gateway-0 is %s after the drill; output:\n%s", gateway.Status(), out)
	}
	if _, err := stack.Operate(context.Background(), file.Dir, "gateway-0", stack.ActionStart); err != nil {
		t.Fatal(err)
	}

	out, gateway = drill(true)
	if !gateway.Alive() || !strings.Contains(out, "supervisor: restarted gateway-0 (exited on its own)") {
		t.Fatalf("with --supervise gateway-0 is %s after the drill; output:\n%s", gateway.Status(), out)
	}
	if strings.Contains(out, "worker-0 (exited on its own)") {
		t.Fatalf("the supervisor restarted the worker the plan killed; output:\n%s", out)
	}
	if worker := component(t, file.Dir, "worker-0"); !worker.Alive() {
		t.Fatalf("worker-0 is %s after the plan started it again", worker.Status())
	}
}

func component(t *testing.T, dir, name string) *stack.Component {
	t.Helper()
	file, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	component, err := file.Component(name)
	if err != nil {
		t.Fatal(err)
	}
	return component
}
