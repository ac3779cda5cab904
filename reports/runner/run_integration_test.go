package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// The tests run the real command, `ledgerproof run`, as CI does: the
// orchestration here, the wiring in job.go (RunJob), the stack, the load
// engine and the auditor together, judged by exit code and run directory.

// scenario is gate.yaml, from this package's directory.
const scenario = "../../scenarios/gate.yaml"

// contractFiles are the files docs/run-directory.md promises in a run
// directory of a local stack run with a plan.
var contractFiles = []string{
	"run.json", "journal.jsonl", "load-summary.json", "load.log", "load-timeseries.jsonl", "chaos-log.jsonl", "metrics.jsonl",
	"audit.json", "audit.txt", "index.html", "junit.xml", "summary.json", "stack-logs",
}

// ledgerproofRun runs `ledgerproof run args...` bounded by timeout and
// returns its exit code and combined output.
func ledgerproofRun(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	command := exec.CommandContext(ctx, stacktest.Binary(t), append([]string{"run"}, args...)...)
	var output bytes.Buffer
	command.Stdout, command.Stderr = &output, &output
	err := command.Run()
	if ctx.Err() != nil {
		t.Fatalf("ledgerproof run did not finish within %s:\n%s", timeout, output.String())
	}
	var exitError *exec.ExitError
	switch {
	case err == nil:
		return 0, output.String()
	case errors.As(err, &exitError):
		return exitError.ExitCode(), output.String()
	}
	t.Fatalf("ledgerproof run: %v", err)
	return -1, ""
}

func readRun(t *testing.T, dir string) *runner.RunFile {
	t.Helper()
	record, err := runner.ReadRunFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return record
}

func readAudit(t *testing.T, dir string) *invariants.Result {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(dir, "audit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var result invariants.Result
	if err := json.Unmarshal(content, &result); err != nil {
		t.Fatal(err)
	}
	return &result
}

// TestCleanRunPasses: a short gate run on a running stack while a plan
// kills the broker and starts it again: exit 0, every file of the
// contract, verdict passed, the fault in the chaos log at its offset from
// the load's start.
func TestCleanRunPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack and the load")
	}
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1})
	plan := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(plan, []byte("name: test-broker\nduration: 12s\nsteps:\n  - {at: 4s, action: kill, target: broker}\n  - {at: 7s, action: start, target: broker}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	// The broker's outage holds requests up to its end: the latency bound
	// allows for it, as docs/ci.md says a gate with faults must.
	code, output := ledgerproofRun(t, 2*time.Minute, "--scenario", scenario, "--stack-dir", file.Dir,
		"--plan", plan, "--duration", "15s", "--rate", "20", "--seed", "11",
		"--set", "setup.accounts=20", "--set", "thresholds.accept_duration=p(95)<10000", "--set", "thresholds.errors=rate<0.05", "--out", out)
	t.Logf("ledgerproof run:\n%s", output)
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, name := range contractFiles {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("run directory lacks %s: %v", name, err)
		}
	}
	record := readRun(t, out)
	if record.Verdict != runner.VerdictPassed || record.ExitCode != 0 || record.AuditVerdict != invariants.VerdictPassed ||
		record.LoadExitCode != 0 || !record.ThresholdsPassed || record.Seed != 11 || record.Stack.StartedByRun ||
		record.FaultsApplied != 2 || record.LoadStartedAt == nil || record.Report == "" {
		t.Errorf("run.json: %+v", record)
	}
	var phases []string
	for _, phase := range record.Phases {
		phases = append(phases, phase.Name)
		if phase.FinishedAt.Before(phase.StartedAt) {
			t.Errorf("phase %+v ends before it starts", phase)
		}
	}
	if got := strings.Join(phases, ","); got != "stack,setup,load,recover,audit,report" {
		t.Errorf("phases %s", got)
	}
	// The plan's offsets count from the load's start: the kill is logged
	// at 4s after it (the runner may be a little late, never early).
	content, err := os.ReadFile(filepath.Join(out, "chaos-log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Start    time.Time `json:"start"`
		OffsetMs int64     `json:"offset_ms"`
		Action   string    `json:"action"`
	}
	if err := json.Unmarshal(bytes.SplitN(content, []byte("\n"), 2)[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Action != "kill" || !first.Start.Equal(*record.LoadStartedAt) || first.OffsetMs < 4000 || first.OffsetMs > 5000 {
		t.Errorf("first chaos record %+v; load started at %s", first, record.LoadStartedAt)
	}
	// Every target was scraped, about once a second.
	metrics, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(metrics), []byte("\n")) {
		var scrape runner.MetricsLine
		if err := json.Unmarshal(line, &scrape); err != nil {
			t.Fatalf("metrics line %s: %v", line, err)
		}
		if scrape.Up {
			targets[scrape.Target]++
			if _, ok := scrape.Values["process_cpu_seconds_total"]; !ok {
				t.Fatalf("scrape of %s without process_cpu_seconds_total", scrape.Target)
			}
		}
	}
	if targets["gateway-0"] < 12 || targets["worker-0"] < 12 {
		t.Errorf("scrapes per target: %v, want one a second over the load", targets)
	}
}

// TestTwoGenerators: the load split over two generator processes from one
// shared start: two journals with disjoint accounts and operation ids, one
// merged summary, one audit that passes, one report.
func TestTwoGenerators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack and the load")
	}
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1})
	out := filepath.Join(t.TempDir(), "run")
	code, output := ledgerproofRun(t, 2*time.Minute, "--scenario", scenario, "--stack-dir", file.Dir, "--generators", "2",
		"--duration", "6s", "--rate", "40", "--seed", "5", "--set", "setup.accounts=20",
		// The test is about splitting the load, not about latency on a busy machine: the p95 bound is loose.
		"--set", "thresholds.accept_duration=p(95)<10000", "--out", out)
	t.Logf("ledgerproof run:\n%s", output)
	if code != runner.ExitPassed {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, name := range []string{"journal-0.jsonl", "journal-1.jsonl", "load-0.log", "load-1.log", "load-summary-0.json",
		"load-summary-1.json", "load-summary.json", "audit.json", "index.html"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("run directory lacks %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "journal.jsonl")); !os.IsNotExist(err) {
		t.Errorf("a run of two generators wrote journal.jsonl too: %v", err)
	}
	record := readRun(t, out)
	if record.Verdict != runner.VerdictPassed || record.Generators != 2 || record.AuditVerdict != invariants.VerdictPassed {
		t.Errorf("run.json: %+v", record)
	}
	// Operation ids unique across the journals; each journal's money
	// operations on its own accounts.
	ids := map[string]string{}
	accounts := map[int64]string{}
	loadOperations := map[string]int{}
	for _, name := range []string{"journal-0.jsonl", "journal-1.jsonl"} {
		content, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(content), []byte("\n")) {
			var entry struct {
				Op   string `json:"op"`
				Kind string `json:"kind"`
				To   int64  `json:"to"`
				Iter int64  `json:"iter"`
			}
			if err := json.Unmarshal(line, &entry); err != nil {
				t.Fatalf("%s: %s: %v", name, line, err)
			}
			if other, seen := ids[entry.Op]; seen {
				t.Fatalf("operation id %s in %s and %s", entry.Op, other, name)
			}
			ids[entry.Op] = name
			if entry.Kind == "signup" {
				if other, seen := accounts[entry.To]; seen && other != name {
					t.Fatalf("account %d signed up by both generators", entry.To)
				}
				accounts[entry.To] = name
			}
			if entry.Iter >= 0 && entry.Kind != "signup" {
				loadOperations[name]++
			}
		}
	}
	if loadOperations["journal-0.jsonl"] == 0 || loadOperations["journal-1.jsonl"] == 0 {
		t.Errorf("load operations per journal: %v, want both generators to have sent some", loadOperations)
	}
}

// TestSeededBugIsCaught: no-idempotency with a third of the operations
// sent twice with one key: the run starts a fresh stack with the bug, the
// audit finds the duplicates, the run exits 1 and the report says why.
func TestSeededBugIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack and the load")
	}
	out := filepath.Join(t.TempDir(), "run")
	code, output := ledgerproofRun(t, 2*time.Minute, "--scenario", scenario,
		"--seeded-bug", "no-idempotency", "--unsafe-allow-seeded-bugs", "--gateways", "1", "--workers", "1",
		"--duration", "8s", "--rate", "30", "--set", "setup.accounts=20", "--set", "client.duplicates.rate=0.3", "--out", out)
	t.Logf("ledgerproof run:\n%s", output)
	if code != runner.ExitInvariantViolated {
		t.Fatalf("exit %d, want 1 (invariant-violated)", code)
	}
	record := readRun(t, out)
	if record.Verdict != runner.VerdictInvariantViolated || record.AuditVerdict != invariants.VerdictViolated ||
		len(record.SeededBugs) != 1 || record.SeededBugs[0] != "no-idempotency" || !record.Stack.StartedByRun {
		t.Errorf("run.json: %+v", record)
	}
	if _, err := os.Stat(record.Stack.Dir); !os.IsNotExist(err) {
		t.Errorf("the seeded-bug stack %s was not removed: %v", record.Stack.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(out, "stack-logs", "gateway-0.log")); err != nil {
		t.Errorf("stack logs not copied: %v", err)
	}
	audit := readAudit(t, out)
	violated := violatedInvariants(audit)
	if !contains(violated, invariants.ExactlyOnce) {
		t.Fatalf("violated %v, want exactly-once among them", violated)
	}
	if !strings.Contains(output, "replay: ledgerproof run --replay "+out) {
		t.Errorf("the run does not print its replay command")
	}
	// Two replays of it (the seed was drawn, the scenario's copy is read):
	// the same seed and bug, the same invariants violated.
	for i := 1; i <= 2; i++ {
		replayOut := filepath.Join(t.TempDir(), fmt.Sprintf("replay-%d", i))
		code, replayOutput := ledgerproofRun(t, 2*time.Minute, "--replay", out, "--out", replayOut)
		t.Logf("replay %d:\n%s", i, replayOutput)
		if code != runner.ExitInvariantViolated {
			t.Fatalf("replay %d: exit %d, want 1", i, code)
		}
		replayed := readRun(t, replayOut)
		if replayed.Seed != record.Seed || strings.Join(replayed.SeededBugs, ",") != "no-idempotency" {
			t.Errorf("replay %d: seed %d and bugs %v, want seed %d and no-idempotency", i, replayed.Seed, replayed.SeededBugs, record.Seed)
		}
		if got := violatedInvariants(readAudit(t, replayOut)); strings.Join(got, ",") != strings.Join(violated, ",") {
			t.Errorf("replay %d violated %v, the run %v", i, got, violated)
		}
	}
	// The report explains it: the invariant and a counterexample's key.
	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, invariant := range audit.Invariants {
		if invariant.Name != invariants.ExactlyOnce {
			continue
		}
		if !bytes.Contains(page, []byte(invariants.ExactlyOnce)) || len(invariant.Violations) == 0 {
			t.Fatalf("the report does not name %s, or the audit has no counterexample", invariants.ExactlyOnce)
		}
		summary := invariant.Violations[0].Summary
		if !bytes.Contains(page, []byte(htmlEscape(summary))) && !bytes.Contains(page, []byte(summary)) {
			t.Errorf("the report does not show the first counterexample %q", summary)
		}
	}
}

// TestValidationErrors: each configuration mistake exits 2 with a message
// that names it, before anything starts: no stack, no run directory.
func TestValidationErrors(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed.yaml")
	if err := os.WriteFile(malformed, []byte("name: bad\nsteps: [{at: 5s, action: explode, target: broker}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missingTarget := filepath.Join(dir, "missing-target.yaml")
	if err := os.WriteFile(missingTarget, []byte("name: far\nduration: 10s\nsteps:\n  - {at: 5s, action: kill, target: worker-7}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	late := filepath.Join(dir, "late.yaml")
	if err := os.WriteFile(late, []byte("name: late\nduration: 10s\nsteps:\n  - {at: 5s, action: kill, target: broker}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badProfile := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(badProfile, []byte("name: half\namounts: {format: minor}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing scenario", []string{"--scenario", "scenarios/nope.yaml"}, "scenarios/nope.yaml"},
		{"unknown scenario field", []string{"--set", "schedule.rat=5"}, `"rat"`},
		{"negative rate", []string{"--set", "schedule.rate=-5"}, "rate"},
		{"threshold on an unknown metric", []string{"--set", "thresholds.no_such_metric=count==0"}, "no_such_metric"},
		{"too many generators for the accounts", []string{"--generators", "3", "--set", "setup.accounts=4"}, "fewer than 2 per generator"},
		{"malformed plan", []string{"--plan", malformed}, `action: "explode" unknown`},
		{"plan target not in the stack", []string{"--plan", missingTarget}, `target "worker-7" does not exist in this stack`},
		{"plan step after the load", []string{"--plan", late, "--duration", "3s"}, "comes after the load ends"},
		{"seeded bug without the unsafe switch", []string{"--seeded-bug", "no-idempotency"}, "--unsafe-allow-seeded-bugs"},
		{"unknown seeded bug", []string{"--seeded-bug", "no-such-bug", "--unsafe-allow-seeded-bugs"}, "no-such-bug"},
		{"process fault on an external system", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1", "--postgres-url", "postgres://x", "--plan", late}, "an external system takes command steps"},
		{"external system not answering", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1", "--postgres-url", "postgres://x"}, "nothing answers at http://127.0.0.1:1"},
		{"external ledger database not answering", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1", "--postgres-url", "postgres://auditor:s3cret@127.0.0.1:1/ledger"}, "--postgres-url (auditor@127.0.0.1:1/ledger): cannot connect"},
		{"external export without its command", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1", "--ledger-export", dir}, "--export-command writes the --ledger-export directory after the load"},
		{"external without audit source", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1"}, "one audit source"},
		{"bad set", []string{"--set", "schedule.rate"}, "schedule.rate"},
		{"invalid system profile", []string{"--stack", "external", "--base-url", "http://127.0.0.1:1", "--postgres-url", "postgres://x", "--profile", badProfile}, "idempotency_header: missing"},
		{"replay with settings of its own", []string{"--replay", dir}, "only --out may be given with it (got --scenario, --stack-dir)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stackDir := filepath.Join(t.TempDir(), "stack")
			out := filepath.Join(t.TempDir(), "run")
			args := append([]string{"--scenario", scenario, "--stack-dir", stackDir, "--out", out}, c.args...)
			code, output := ledgerproofRun(t, 30*time.Second, args...)
			if code != runner.ExitCouldNotRun {
				t.Fatalf("exit %d, want 2; output:\n%s", code, output)
			}
			if strings.Contains(output, "s3cret") {
				t.Errorf("output shows a password:\n%s", output)
			}
			if !strings.Contains(output, c.want) || !strings.Contains(output, "nothing was started") {
				t.Errorf("output does not say %q and that nothing was started:\n%s", c.want, output)
			}
			for _, path := range []string{stackDir, out} {
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("%s exists after a validation error", path)
				}
			}
		})
	}
	t.Run("replay of a directory without run.json", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "run")
		code, output := ledgerproofRun(t, 30*time.Second, "--replay", dir, "--out", out)
		if code != runner.ExitCouldNotRun || !strings.Contains(output, "run.json") || !strings.Contains(output, "nothing was started") {
			t.Errorf("exit %d, want 2 saying run.json is missing and nothing was started:\n%s", code, output)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused replay", out)
		}
	})
}

// violatedInvariants names the invariants an audit found violated, in its order.
func violatedInvariants(audit *invariants.Result) []string {
	var violated []string
	for _, invariant := range audit.Invariants {
		if invariant.Status == invariants.StatusViolated {
			violated = append(violated, invariant.Name)
		}
	}
	return violated
}

func contains(values []string, value string) bool {
	for _, candidate := range values {
		if candidate == value {
			return true
		}
	}
	return false
}

// htmlEscape escapes text as html/template does in element content.
func htmlEscape(text string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(text)
}
