package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// TestLocalStackToBeStarted: with no stack in its directory the run will start
// one; the plan is checked against the inventory it will have, and a fault
// only a stack started by hand can take says how to start it.
func TestLocalStackToBeStarted(t *testing.T) {
	noGateway := stack.DefaultConfig()
	noGateway.Gateways = 0
	if _, err := NewLocalStack(LocalOptions{Config: noGateway}).Prepare(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "at least one gateway") {
		t.Errorf("no gateway: %v", err)
	}
	if _, err := stack.PostgresBinDir(""); err != nil {
		t.Skipf("no Postgres server binaries: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "stack")
	config := stack.DefaultConfig()
	config.Dir, config.Gateways, config.Workers = dir, 2, 1
	local := NewLocalStack(LocalOptions{Config: config})
	inventory, err := local.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"postgres", "redis", "broker", "gateway-0", "gateway-1", "worker-0", "relay", "settler"}; !slices.Equal(inventory.Processes, want) {
		t.Errorf("inventory %v, want %v", inventory.Processes, want)
	}
	if local.Describe() != "local stack "+dir+" (to be started)" {
		t.Errorf("Describe %q", local.Describe())
	}
	if info := local.Stack(); info.Kind != KindLocal || info.Dir != dir || info.StartedByRun || info.Gateways != nil {
		t.Errorf("stack before the start %+v", info)
	}
	missing := chaos.Step{Source: "steps[0]", At: time.Second, Action: chaos.ActionKill, Target: "worker-7"}
	if err := local.CheckPlan("far", []chaos.Step{missing}); err == nil || !strings.Contains(err.Error(), "against local stack "+dir+" (to be started)") ||
		!strings.Contains(err.Error(), `target "worker-7" does not exist in this stack`) {
		t.Errorf("a missing target: %v", err)
	}
	link := chaos.Step{Source: "steps[0]", At: time.Second, Action: chaos.ActionLink, Target: "worker->broker"}
	if err := local.CheckPlan("links", []chaos.Step{link}); err == nil || !strings.Contains(err.Error(), "ledgerproof up --dir "+dir+" --proxies") {
		t.Errorf("a link fault: %v", err)
	}
	arm := chaos.Step{Source: "steps[0]", At: time.Second, Action: chaos.ActionCrashPoint, Target: "worker-0", Params: chaos.Params{Point: "worker.mid-batch"}}
	if err := local.CheckPlan("crash", []chaos.Step{arm}); err != nil {
		t.Errorf("a crash point on the stack the run starts: %v", err)
	}
	if !slices.Contains(local.start.WorkerArgs, crashPointsSwitch) {
		t.Errorf("worker args %v: the stack the run starts has no crash points", local.start.WorkerArgs)
	}
	source, err := local.Ledger(context.Background(), nil)
	if err != nil || source != (LedgerSource{StackDir: dir}) {
		t.Errorf("ledger before the start: %+v, %v (the whole ledger only once the run started it)", source, err)
	}
}

// TestLocalStackWithASeededBug: a seeded bug's stack is always a fresh one,
// in a directory of its own on free ports, whatever the options' directory
// and ports.
func TestLocalStackWithASeededBug(t *testing.T) {
	if _, err := stack.PostgresBinDir(""); err != nil {
		t.Skipf("no Postgres server binaries: %v", err)
	}
	config := stack.DefaultConfig()
	config.Dir, config.Gateways, config.Workers = filepath.Join(t.TempDir(), "stack"), 2, 1
	local := NewLocalStack(LocalOptions{Config: config, SeededBugs: []string{"no-idempotency"}})
	if _, err := local.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := local.start
	if start == nil || start.Dir == config.Dir || local.Stack().Dir != start.Dir || !local.fresh {
		t.Fatalf("a seeded bug's stack is not a fresh one of its own: %+v", start)
	}
	if !slices.Equal(start.SeededBugs, []string{"no-idempotency"}) || !start.UnsafeAllowSeededBugs {
		t.Errorf("seeded bugs %v, unsafe switch %v", start.SeededBugs, start.UnsafeAllowSeededBugs)
	}
	if start.PostgresPort == config.PostgresPort || start.GatewayPort == config.GatewayPort || start.GatewayInternalPort == 0 {
		t.Errorf("ports %d, %d, %d: want free ones", start.PostgresPort, start.GatewayPort, start.GatewayInternalPort)
	}
}

// TestUseFreePorts: a stack's ports are ranges that do not overlap, as wide
// as its gateways and workers.
func TestUseFreePorts(t *testing.T) {
	config := stack.Config{Gateways: 3, Workers: 2}
	if err := UseFreePorts(&config); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, r := range [][2]int{{config.PostgresPort, 1}, {config.RedisPort, 1}, {config.BrokerPort, 1},
		{config.GatewayPort, 3}, {config.WorkerMetricsPort, 2}, {config.GatewayInternalPort, 3}} {
		for port := r[0]; port < r[0]+r[1]; port++ {
			if seen[port] || port < lowestRangePort || port >= lowestEphemeralPort {
				t.Errorf("port %d taken twice or outside [%d, %d)", port, lowestRangePort, lowestEphemeralPort)
			}
			seen[port] = true
		}
	}
}

// TestCopyStackFiles: the stack file and the components' logs are copied;
// nothing else.
func TestCopyStackFiles(t *testing.T) {
	stackDir, dest := t.TempDir(), filepath.Join(t.TempDir(), "stack-logs")
	for name, content := range map[string]string{stack.FileName: "{}", "logs/worker-0.log": "w", "logs/gateway-0.log": "g", "data/other": "x"} {
		path := filepath.Join(stackDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	CopyStackFiles(stackDir, dest)
	entries, err := os.ReadDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, entry := range entries {
		names = append(names, entry.Name())
	}
	if want := []string{"gateway-0.log", stack.FileName, "worker-0.log"}; !slices.Equal(names, want) {
		t.Errorf("copied %v, want %v", names, want)
	}
}

func TestFirstLine(t *testing.T) {
	if firstLine("one\ntwo") != "one" || firstLine("one") != "one" {
		t.Error("firstLine")
	}
}
