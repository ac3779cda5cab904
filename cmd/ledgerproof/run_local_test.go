package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// parseRunFlags returns the run options of a command line.
func parseRunFlags(t *testing.T, args ...string) runOptions {
	t.Helper()
	var o runOptions
	if err := newRunFlags(&o).Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestNewTarget: --stack and the flags make the system the run acts on, or
// a configuration error.
func TestNewTarget(t *testing.T) {
	refused := []struct {
		name string
		args []string
		bugs []string
		want string
	}{
		{"seeded bug on compose", []string{"--stack", "compose"}, []string{"no-idempotency"}, "--seeded-bug needs --stack local"},
		{"external endpoint on a local stack", []string{"--base-url", "http://x:1"}, nil, "are for --stack external (or compose)"},
		{"unknown kind", []string{"--stack", "k8s"}, nil, `--stack "k8s": want local, compose or external`},
	}
	for _, c := range refused {
		if _, err := newTarget(parseRunFlags(t, c.args...), c.bugs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	target, err := newTarget(parseRunFlags(t, "--stack", "compose", "--compose-project", "ci", "--postgres-url", "postgres://p"), nil)
	if compose, ok := target.(*runner.ComposeProject); err != nil || !ok || compose.File != "docker-compose.yml" || compose.Project != "ci" || compose.PostgresURL != "postgres://p" {
		t.Errorf("compose: %#v, %v", target, err)
	}
	target, err = newTarget(parseRunFlags(t, "--stack", "external", "--base-url", "http://a:1", "--ledger-export", "export",
		"--export-command", "make export", "--quiet-period", "3s"), nil)
	external, ok := target.(*runner.ExternalSystem)
	if err != nil || !ok || external.BaseURLs != "http://a:1" || external.LedgerExport != "export" || external.ExportCommand != "make export" ||
		external.QuietPeriod != 3*time.Second || external.DrainTimeout != time.Minute {
		t.Errorf("external: %#v, %v", target, err)
	}
	target, err = newTarget(parseRunFlags(t, "--stack-dir", "somewhere", "--gateways", "3", "--gateway-arg", "--x=1"), nil)
	local, ok := target.(*localStack)
	if err != nil || !ok || local.config.Dir != "somewhere" || local.config.Gateways != 3 ||
		!slices.Equal(local.config.GatewayArgs, append(append([]string{}, runKDFArgs...), "--x=1")) {
		t.Errorf("local: %#v, %v", target, err)
	}
}

// TestLocalStackToBeStarted: with no stack in --stack-dir the run will start
// one; the plan is checked against the inventory it will have, and a fault
// only a stack started by hand can take says how to start it.
func TestLocalStackToBeStarted(t *testing.T) {
	if _, err := newLocalStack(parseRunFlags(t, "--gateways", "0"), nil).Prepare(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "at least one gateway") {
		t.Errorf("no gateway: %v", err)
	}
	if _, err := stack.PostgresBinDir(""); err != nil {
		t.Skipf("no Postgres server binaries: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "stack")
	local := newLocalStack(parseRunFlags(t, "--stack-dir", dir, "--gateways", "2", "--workers", "1"), nil)
	inventory, err := local.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"postgres", "redis", "broker", "gateway-0", "gateway-1", "worker-0"}; !slices.Equal(inventory.Processes, want) {
		t.Errorf("inventory %v, want %v", inventory.Processes, want)
	}
	if local.Describe() != "local stack "+dir+" (to be started)" {
		t.Errorf("Describe %q", local.Describe())
	}
	if info := local.Stack(); info.Kind != runner.KindLocal || info.Dir != dir || info.StartedByRun || info.Gateways != nil {
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
	if err != nil || source != (runner.LedgerSource{StackDir: dir}) {
		t.Errorf("ledger before the start: %+v, %v (the whole ledger only once the run started it)", source, err)
	}
}
