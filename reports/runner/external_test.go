package runner_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestCommandPlanOnAnExternalSystem: a run against a system it did not
// start (a local reference stack, addressed only by its endpoints, as a
// team's own system would be) with a plan of command steps: the commands
// kill a worker and start it again through the team's own tooling (here
// `ledgerproof stack`), both appear in the chaos log and the report, and
// the audit passes.
func TestCommandPlanOnAnExternalSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack and the load")
	}
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1})
	binary := stacktest.Binary(t)
	plan := filepath.Join(t.TempDir(), "commands.yaml")
	tool := binary + " stack --dir " + file.Dir
	content := "name: team-tooling\nduration: 12s\nsteps:\n" +
		"  - at: 3s\n    action: command\n    target: ledger-worker\n    params:\n" +
		"      run: " + tool + " --action kill --component worker-0\n" +
		"      duration: 4s\n" +
		"      recover: " + tool + " --action start --component worker-0\n" +
		"      timeout: 90s\n"
	if err := os.WriteFile(plan, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	code, output := ledgerproofRun(t, 3*time.Minute, "--scenario", scenario, "--stack", "external",
		"--base-url", file.Endpoints.Gateways[0], "--postgres-url", file.Endpoints.PostgresURL,
		"--redis-addr", file.Endpoints.RedisAddr, "--brokers", strings.Join(file.Endpoints.Brokers, ","),
		"--plan", plan, "--duration", "15s", "--rate", "20", "--seed", "12",
		"--set", "setup.accounts=20", "--set", "thresholds.accept_duration=p(95)<10000", "--set", "thresholds.errors=rate<0.05", "--out", out)
	t.Logf("ledgerproof run:\n%s", output)
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0", code)
	}
	records, err := chaos.ReadLog(filepath.Join(out, chaos.LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 2 {
		t.Fatalf("chaos log has %d records, want the kill and its recovery: %+v", len(records), records)
	}
	for index, source := range []string{"steps[0]", "steps[0] recovery"} {
		record := records[index]
		if record.Source != source || record.Action != string(chaos.ActionCommand) || record.Target != "ledger-worker" || record.Result != chaos.ResultOK {
			t.Errorf("chaos record %d: %+v, want %s of ledger-worker, ok", index, record, source)
		}
	}
	if records[0].OffsetMs < 3000 || records[1].OffsetMs < 7000 {
		t.Errorf("offsets %d and %d ms, want the kill at 3s and the start at 7s or later", records[0].OffsetMs, records[1].OffsetMs)
	}
	record := readRun(t, out)
	if record.FaultsApplied != 2 || record.Stack.Kind != "external" {
		t.Errorf("run.json: %d faults applied on a %q stack, want 2 on external", record.FaultsApplied, record.Stack.Kind)
	}
	html, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "ledger-worker") || !strings.Contains(string(html), "--action kill --component worker-0") {
		t.Errorf("the report does not show the command fault (target ledger-worker, its command)")
	}
}
