package capacity

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestRunMeasuresAModeOnTheRunEngine: one small step of the batched mode on the run engine's local stack, audited
// in-process: exit 0, capacity.json with the step and the audit's verdict, the audit's output in audit.log, the
// stack's lines in stack.log and its logs in stack-logs/, the docs section written, the stack removed; then the
// soak at 70% of the knee on the same stack, every process's memory sampled and judged, its verdict in the run's.
func TestRunMeasuresAModeOnTheRunEngine(t *testing.T) {
	binary := stacktest.Binary(t)
	ports, err := runner.FreePorts(1, map[int]int{0: 60})
	if err != nil {
		t.Fatal(err)
	}
	// A short path: the Postgres unix socket lives under the stack's directory.
	stackRoot, err := os.MkdirTemp("", "lpc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stackRoot) })
	// Postgres runs as the postgres OS user when the test runs as root.
	if err := os.Chmod(stackRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	docs := filepath.Join(t.TempDir(), "performance.md")
	if err := os.WriteFile(docs, []byte("# Performance\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Out: out, Scenario: filepath.Join("..", "..", "scenarios", "capacity.yaml"), StackRoot: stackRoot, Docs: docs,
		Modes: []string{ModeBatched}, Steps: []int{20}, Hold: 2 * time.Second, Ramp: time.Second, Accounts: 10, Seed: 7,
		Gateways: 1, Workers: 1, Partitions: 2, FailuresToStop: 2, PortBase: ports[0], Binary: binary, Command: "capacity (test)",
		Soak: MinimumSoak, SoakFraction: DefaultSoakFraction, Retention: DefaultRetention, ProfileAt: 20, ProfileSeconds: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout strings.Builder
	code, err := Run(ctx, o, &stdout)
	if err != nil {
		t.Fatalf("exit %d, error %v\n%s", code, err, stdout.String())
	}
	content, err := os.ReadFile(filepath.Join(out, "capacity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var result capacityResult
	if err := json.Unmarshal(content, &result); err != nil {
		t.Fatal(err)
	}
	if len(result.Modes) != 1 || len(result.Modes[0].Steps) != 1 || !result.Modes[0].AuditPassed || result.Modes[0].KneeTPS != 20 {
		t.Fatalf("capacity.json: %s", content)
	}
	mode := result.Modes[0]
	// The soak: 14 TPS (70% of 20), its load's figures, every process's memory sampled. Whether 10 s of a fresh
	// process's memory is flat is this machine's business (TestJudgeMemorySeries judges the judgement): the run's
	// verdict must follow the soak's.
	soak := mode.Soak
	if soak == nil || soak.TargetTPS != 14 || soak.Step == nil || soak.Step.Iterations == 0 || soak.SampleSeconds != 1 {
		t.Fatalf("soak: %+v", soak)
	}
	components := map[string]bool{}
	for _, m := range soak.Memory {
		components[m.Component] = m.Samples > 0 && m.PeakMiB > 0 && len(m.Timeline) > 0
	}
	for _, want := range []string{"postgres", "redis", "broker", "gateway-0", "worker-0", loadComponent} {
		if !components[want] {
			t.Errorf("soak memory of %s missing or empty: %+v", want, soak.Memory)
		}
	}
	// The retention reached every process, and Redis's footprint was measured: the transactions' records are
	// there, with their bytes.
	if !slices.Contains(mode.Mode.GatewayArgs, "--idempotency-ttl") || !slices.Contains(mode.Mode.WorkerArgs, "--outcome-ttl") ||
		!slices.Contains(mode.Mode.BrokerArgs, "--retention") || result.RetentionSeconds != 60 || soak.RetentionSeconds != 60 {
		t.Errorf("retention: gateway %v, worker %v, broker %v, run %gs, soak %gs", mode.Mode.GatewayArgs, mode.Mode.WorkerArgs,
			mode.Mode.BrokerArgs, result.RetentionSeconds, soak.RetentionSeconds)
	}
	if soak.Redis == nil || soak.Redis.Error != "" || soak.Redis.Keys == 0 || soak.Redis.BytesPerTransaction <= 0 || len(soak.Redis.Projections) != 2 {
		t.Errorf("Redis's footprint: %+v", soak.Redis)
	}
	// The soak's CPU per request beside the step's (20 TPS, the only step, held).
	if soak.Aging == nil || soak.Aging.StepTPS != 20 || len(soak.Aging.Costs) < 2 ||
		soak.Aging.Costs[len(soak.Aging.Costs)-1].Component != machineComponent {
		t.Errorf("the soak's CPU per request beside the step's: %+v", soak.Aging)
	}
	if info, err := os.Stat(soak.SamplesFile); err != nil || info.Size() == 0 {
		t.Errorf("memory samples %s: %v", soak.SamplesFile, err)
	}
	switch {
	case soak.Passed && (code != 0 || result.Verdict != "passed"):
		t.Errorf("the soak passed, the run: exit %d, verdict %q", code, result.Verdict)
	case !soak.Passed && (code != 3 || !strings.Contains(result.Verdict, "soak failed: "+strings.Join(soak.Reasons, "; "))):
		t.Errorf("the soak failed (%v), the run: exit %d, verdict %q; want 3 naming the soak's reasons", soak.Reasons, code, result.Verdict)
	case code != 0 && code != 3:
		t.Fatalf("exit %d\n%s", code, stdout.String())
	}
	if !strings.HasPrefix(mode.AuditSummary, "passed") || mode.Steps[0].Iterations == 0 {
		t.Errorf("audit summary %q, iterations %v", mode.AuditSummary, mode.Steps[0].Iterations)
	}
	for _, name := range []string{"audit.log", "audit.txt", stackLogFileName, "stack-logs", "journal-step-01-20.jsonl",
		filepath.Join("steps", "step-01-20", stepLoadLogFileName)} {
		if info, err := os.Stat(filepath.Join(out, ModeBatched, name)); err != nil || (!info.IsDir() && info.Size() == 0) {
			t.Errorf("%s: %v (empty or missing)", name, err)
		}
	}
	// The profiled step: the worker runs the two-tier dedupe (capacityWorkerArgs), and Postgres's statements
	// came with the WAL each wrote (the transactions' insert writes a record per row at least) and the server's.
	if !slices.Contains(mode.Mode.WorkerArgs, "--bloom-dedupe") {
		t.Errorf("worker args %v lack --bloom-dedupe", mode.Mode.WorkerArgs)
	}
	statements, err := os.ReadFile(filepath.Join(out, ModeBatched, "steps", "step-01-20", "postgres-statements.txt"))
	if err != nil {
		t.Fatalf("the profiled step's statements: %v\n%s", err, stdout.String())
	}
	if !checkStatementsWAL(string(statements)) {
		t.Errorf("the statements lack the WAL the server and the transactions' insert wrote:\n%s", statements)
	}
	// The stack's Postgres logged its autovacuum actions, and the step's hold was matched against them (a run this
	// short may have none; nil is a log not read).
	if p95 := mode.Steps[0].SecondsP95; p95 == nil || p95.Seconds < 1 || p95.WorstMs < p95.MedianMs {
		t.Errorf("the step's p95 second by second: %+v", p95)
	}
	if mode.Steps[0].Autovacuum == nil || mode.Soak == nil || mode.Soak.Step == nil || mode.Soak.Step.Autovacuum == nil || mode.Soak.Step.SecondsP95 == nil {
		t.Errorf("the step's or the soak's autovacuum was not read from the stack's Postgres log, or the soak's p95 second by second:\n%s", stdout.String())
	}
	if stackFile, err := os.ReadFile(filepath.Join(out, ModeBatched, "stack-logs", "stack.json")); err != nil ||
		!strings.Contains(string(stackFile), "log_autovacuum_min_duration=0") {
		t.Errorf("the stack's Postgres was not told to log autovacuum (%v)", err)
	}
	// The load ran with one P at 20 TPS (loadMaxProcs): its log's command line says so.
	if loadLog, err := os.ReadFile(filepath.Join(out, ModeBatched, "steps", "step-01-20", stepLoadLogFileName)); err != nil ||
		!strings.Contains(string(loadLog), " --max-procs 1") {
		t.Errorf("the step's load log has no --max-procs 1 (%v):\n%.400s", err, loadLog)
	}
	if _, err := os.Stat(filepath.Join(stackRoot, ModeBatched)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mode's stack directory is still there (%v)", err)
	}
	section, err := os.ReadFile(docs)
	if err != nil || !strings.Contains(string(section), capacityBeginMarker) || !strings.Contains(string(section), "knee **") ||
		!strings.Contains(string(section), "**Soak** at 14 TPS (70% of the knee) for 10s") ||
		!strings.Contains(string(section), "CPU-ms per request in the soak's hold beside the 20 TPS step's") ||
		!strings.Contains(string(section), "**Redis at the end of the soak**, with idempotency records, outcome records and broker records kept 1m0s") {
		t.Errorf("docs: %v\n%s", err, section)
	}
	if !strings.Contains(stdout.String(), "batched: knee ") || strings.Contains(stdout.String(), "ready in") ||
		!strings.Contains(stdout.String(), "batched soak: CPU-ms per request in the soak's hold beside") {
		t.Errorf("stdout lacks the mode's line or carries the stack's progress lines:\n%s", stdout.String())
	}
}

// checkStatementsWAL reports whether a statements file says the server wrote
// WAL records in its window and the transactions' insert wrote at least one
// WAL record and some bytes per call.
func checkStatementsWAL(text string) bool {
	serverWrote, insertWrote := false, false
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "WAL over ") && len(fields) > 5:
			records, err := strconv.ParseFloat(fields[5], 64)
			serverWrote = err == nil && records > 0
		case strings.Contains(line, "INSERT INTO transactions") && len(fields) > 9:
			records, errRecords := strconv.ParseFloat(fields[6], 64)
			bytes, errBytes := strconv.ParseFloat(fields[8], 64)
			insertWrote = errRecords == nil && errBytes == nil && records >= 1 && bytes > 0
		}
	}
	return serverWrote && insertWrote
}
