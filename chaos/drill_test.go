package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// A drill: gate.yaml load against a fresh local stack, a chaos plan applied
// during it, every component up again, then the audit, which must pass with
// zero lost and zero duplicated acknowledged operations.
type drill struct {
	name    string
	workers int
	// plan is the chaos plan, offsets counted from the first money
	// operation of the load.
	plan string
	// outage names the fault whose window (from the fault's start to the
	// end of its recovery) is measured against the rest of the run.
	outage string
	// proxies and standby shape the stack for link faults and failover;
	// crashPoints starts gateways and workers with --enable-crash-points.
	proxies, standby, crashPoints bool
}

// drillLoad is the load of every drill: light enough for two CPUs running
// the whole stack, long enough to cover the faults and the recovery.
var drillLoad = []string{"schedule.rate=30", "schedule.duration=22s", "setup.accounts=20", "client.wait=3s"}

var drills = []drill{
	{name: "broker", workers: 1, outage: "broker", plan: `
name: drill-broker
duration: 20s
steps:
  - {at: 5s, action: kill, target: broker}
  - {at: 9s, action: start, target: broker}
`},
	{name: "postgres", workers: 1, outage: "postgres", plan: `
name: drill-postgres
duration: 20s
steps:
  - {at: 5s, action: kill, target: postgres}
  - {at: 9s, action: start, target: postgres}
`},
	{name: "redis", workers: 1, outage: "redis", plan: `
name: drill-redis
duration: 20s
steps:
  - {at: 5s, action: kill, target: redis}
  - {at: 12s, action: start, target: redis}
`},
	{name: "worker", workers: 2, outage: "worker:partition=0", plan: `
name: drill-worker
duration: 20s
steps:
  - {at: 5s, action: kill, target: "worker:partition=0"}
  - {at: 10s, action: start, target: "worker:partition=0"}
`},
	{name: "failover", workers: 1, outage: "postgres", standby: true, plan: `
name: drill-failover
duration: 20s
steps:
  - {at: 6s, action: failover, target: postgres}
`},
	{name: "cut-link-healed", workers: 1, outage: "worker->postgres", proxies: true, plan: `
name: drill-cut-link
duration: 20s
steps:
  - {at: 5s, action: link, target: "gateway->broker", params: {fault: cut, duration: 3s}}
  - {at: 10s, action: link, target: "worker->postgres", params: {fault: cut, duration: 3s}}
`},
	{name: "crash-points", workers: 1, outage: "worker-0", crashPoints: true, plan: `
name: drill-crash-points
duration: 20s
steps:
  - {at: 4s, action: crash-point, target: worker-0, params: {point: worker.mid-batch}}
  - {at: 6s, action: start, target: worker-0}
  - {at: 9s, action: crash-point, target: worker-0, params: {point: worker.after-commit-before-cache}}
  - {at: 11s, action: start, target: worker-0}
  - {at: 14s, action: crash-point, target: gateway-0, params: {point: gateway.after-ack-before-response}}
  - {at: 16s, action: start, target: gateway-0}
`},
}

// TestDrills runs each drill on a stack of its own (sequentially: each
// stack is a dozen processes).
func TestDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("drills start a whole stack and the load each")
	}
	binary := stacktest.Binary(t)
	for _, d := range drills {
		t.Run(d.name, func(t *testing.T) { runDrill(t, binary, d) })
	}
}

func runDrill(t *testing.T, binary string, d drill) {
	options := stacktest.StackOptions{Gateways: 1, Workers: d.workers, Proxies: d.proxies, PostgresStandby: d.standby}
	if d.crashPoints {
		options.GatewayArgs = []string{"--enable-crash-points", "--wait-max=4s", "--in-flight-lease=15s"}
		options.WorkerArgs = []string{"--enable-crash-points"}
	}
	file := stacktest.Stack(t, options)
	runDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	plan, err := ParsePlan([]byte(d.plan), d.name)
	if err != nil {
		t.Fatal(err)
	}
	executor, err := NewLocalExecutor(file.Dir)
	if err != nil {
		t.Fatal(err)
	}
	inventory, err := executor.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(0, inventory)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateTargets(plan.Name, timeline, inventory); err != nil {
		t.Fatal(err)
	}

	// The load.
	args := []string{"load", "--scenario", "../scenarios/gate.yaml", "--base-url", strings.Join(file.Endpoints.Gateways, ","),
		"--out", runDir, "--seed", "7"}
	for _, set := range drillLoad {
		args = append(args, "--set", set)
	}
	loadLog, err := os.Create(filepath.Join(runDir, "load.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer loadLog.Close()
	load := exec.CommandContext(ctx, binary, args...)
	load.Stdout, load.Stderr = loadLog, loadLog
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()

	// The faults, from the first money operation on (setup signs users up
	// and funds them first).
	journal := filepath.Join(runDir, "journal.jsonl")
	if err := waitFor(ctx, 90*time.Second, func() bool { return hasMoneyOperation(journal) }); err != nil {
		t.Fatalf("the load never started: %v; load log:\n%s", err, stack.LogTail(loadLog.Name(), 30))
	}
	logFile, err := OpenLog(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var output bytes.Buffer
	runner := &Runner{Executor: executor, ChaosLog: logFile, Output: &output}
	summary, runError := runner.Run(ctx, plan.Name, 0, timeline, time.Now())
	logFile.Close()
	t.Logf("chaos:\n%s", output.String())
	if runError != nil {
		t.Fatalf("plan: %v", runError)
	}

	// The load ends on its own; it exits 99 when thresholds failed,
	// which faults are expected to make them: the audit judges the money.
	if err := <-loadDone; err != nil {
		if exitError, ok := err.(*exec.ExitError); !ok || exitError.ExitCode() != 99 {
			t.Fatalf("load: %v; log:\n%s", err, stack.LogTail(loadLog.Name(), 40))
		}
		t.Logf("load thresholds failed (exit 99), as faults may make them")
	}
	checkEveryComponentRuns(t, file.Dir)

	// The chaos log lists every fault with its time.
	records, err := ReadLog(filepath.Join(runDir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(timeline) || len(summary.Records) != len(timeline) {
		t.Fatalf("chaos log has %d records, summary %d, timeline %d steps", len(records), len(summary.Records), len(timeline))
	}
	for index, record := range records {
		step := timeline[index]
		if record.Action != string(step.Action) || record.Target != step.Target || record.Result != ResultOK ||
			record.Time.IsZero() || record.OffsetMs < record.PlannedMs || record.OffsetMs > record.PlannedMs+2000 {
			t.Errorf("chaos log record %d %+v does not match step %s", index, record, step)
		}
		if _, partition := PartitionOf(step.Target); partition && !strings.HasPrefix(record.Resolved, "worker-") {
			t.Errorf("record %d: partition target resolved to %q", index, record.Resolved)
		}
	}

	result := audit(t, ctx, file, runDir)
	degradation := measure(t, journal, records, d.outage)
	t.Logf("drill %s: audit %s; %d operations (%s); unknown outcomes resolved: %d settled, %d rejected, %d absent\n%s",
		d.name, result.Verdict, result.JournalLines, formatOperations(result.Operations),
		result.InfoResolution.Settled, result.InfoResolution.Rejected, result.InfoResolution.Absent, degradation)
	for _, invariant := range result.Invariants {
		if invariant.Status == invariants.StatusViolated {
			t.Errorf("invariant %s violated (%d): %s", invariant.Name, invariant.ViolationCount, firstViolation(invariant))
		}
		if (invariant.Name == invariants.Durability || invariant.Name == invariants.ExactlyOnce) && invariant.Status != invariants.StatusPassed {
			t.Errorf("invariant %s: %s, want passed", invariant.Name, invariant.Status)
		}
	}
	if result.Verdict != invariants.VerdictPassed {
		t.Errorf("audit verdict %s (drained %v: %s)", result.Verdict, result.Drained, result.DrainNote)
	}
	if okOperations(result.Operations) < 100 {
		t.Errorf("only %d operations settled: the load did not run", okOperations(result.Operations))
	}
}

// hasMoneyOperation reports whether the journal has a deposit, withdrawal
// or transfer yet.
func hasMoneyOperation(path string) bool {
	file, err := os.Open(path)
	if err != nil {
		return false
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		if !bytes.Contains(scanner.Bytes(), []byte(`"kind":"signup"`)) {
			return true
		}
	}
	return false
}

// waitFor polls condition until it holds, with a deadline.
func waitFor(ctx context.Context, timeout time.Duration, condition func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for !condition() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
	return nil
}

// checkEveryComponentRuns fails unless the plan left every component up.
func checkEveryComponentRuns(t *testing.T, dir string) {
	t.Helper()
	file, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, component := range file.Components {
		if !component.Alive() {
			// A failover fences the old primary for good: it must stay down.
			if len(file.Failovers) > 0 && component.Name == file.Failovers[len(file.Failovers)-1].From {
				continue
			}
			t.Fatalf("%s is %s after the plan", component.Name, component.Status())
		}
	}
	if len(file.Failovers) > 0 && file.PrimaryName() != stack.StandbyComponentName {
		t.Fatalf("after a failover the primary is %s, want %s", file.PrimaryName(), stack.StandbyComponentName)
	}
}

// audit drains the pipeline and audits the run against the stack's ledger
// and cache, as `ledgerproof audit --stack` does.
func audit(t *testing.T, ctx context.Context, file *stack.File, runDir string) *invariants.Result {
	t.Helper()
	source, err := invariants.OpenPostgres(ctx, file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	broker, err := invariants.OpenBrokerOffsets(file.Endpoints.Brokers, invariants.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	// The settler's last events are drained too, as audit --stack does:
	// without it, an effect still on its way (the settler's fetch waits up
	// to its --poll-max-wait) looks lost.
	settlements, err := invariants.OpenBrokerOffsets(file.Endpoints.Brokers, invariants.SettlementsTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer settlements.Close()
	cache := invariants.OpenRedis(file.Endpoints.RedisAddr)
	defer cache.Close()
	var progress bytes.Buffer
	result, err := invariants.Audit(ctx, invariants.Config{
		RunDir:       runDir,
		Ledger:       source,
		Drain:        invariants.SettlementDrainProbe(invariants.KafkaDrainProbe(broker, source), source, settlements),
		DrainTimeout: 60 * time.Second,
		Cache:        cache,
		Scope:        invariants.ScopeLedger,
		Progress:     &progress,
	})
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, progress.String())
	}
	if err := result.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	return result
}

func firstViolation(invariant invariants.InvariantResult) string {
	if len(invariant.Violations) == 0 {
		return invariant.Note
	}
	return invariant.Violations[0].Summary
}

func okOperations(operations map[string]map[string]int64) int64 {
	var total int64
	for kind, outcomes := range operations {
		if kind != invariants.KindSignup {
			total += outcomes[invariants.OutcomeOK]
		}
	}
	return total
}

func formatOperations(operations map[string]map[string]int64) string {
	totals := map[string]int64{}
	for kind, outcomes := range operations {
		if kind == invariants.KindSignup {
			continue
		}
		for outcome, count := range outcomes {
			totals[outcome] += count
		}
	}
	var parts []string
	for _, outcome := range []string{invariants.OutcomeOK, invariants.OutcomeFail, invariants.OutcomeInfo} {
		parts = append(parts, fmt.Sprintf("%s %d", outcome, totals[outcome]))
	}
	return strings.Join(parts, ", ")
}

// window counts the money operations issued in a span of the run.
type window struct {
	operations, ok, fail, info int
	// status503, status5xx and connectionErrors count HTTP attempts.
	status503, status5xx, connectionErrors int
	latenciesMs                            []int64
	// reasons counts the reasons of fail and unknown outcomes.
	reasons map[string]int
}

func (w *window) add(entry journalLine) {
	w.operations++
	switch entry.Outcome {
	case invariants.OutcomeOK:
		w.ok++
	case invariants.OutcomeFail:
		w.fail++
	default:
		w.info++
	}
	if entry.Outcome != invariants.OutcomeOK {
		if w.reasons == nil {
			w.reasons = map[string]int{}
		}
		reason := entry.Reason
		if reason == "" {
			reason = "(none)"
		}
		w.reasons[entry.Outcome+":"+reason]++
	}
	for _, status := range entry.Statuses {
		switch {
		case status == 503:
			w.status503++
			w.status5xx++
		case status >= 500:
			w.status5xx++
		case status == 0:
			w.connectionErrors++
		}
	}
	w.latenciesMs = append(w.latenciesMs, (entry.Complete-entry.Invoke)/1000)
}

func (w *window) String() string {
	sort.Slice(w.latenciesMs, func(i, j int) bool { return w.latenciesMs[i] < w.latenciesMs[j] })
	percentile := func(p float64) int64 {
		if len(w.latenciesMs) == 0 {
			return 0
		}
		return w.latenciesMs[int(p*float64(len(w.latenciesMs)-1))]
	}
	return fmt.Sprintf("%4d ops: ok %d, fail %d, unknown %d %v; attempts answered 503: %d, other 5xx: %d, connection errors: %d; latency p50 %dms p99 %dms max %dms",
		w.operations, w.ok, w.fail, w.info, w.reasons, w.status503, w.status5xx-w.status503, w.connectionErrors, percentile(0.5), percentile(0.99), percentile(1))
}

type journalLine struct {
	Kind     string `json:"kind"`
	Outcome  string `json:"outcome"`
	Statuses []int  `json:"statuses"`
	Reason   string `json:"reason"`
	Invoke   int64  `json:"invoke"`
	Complete int64  `json:"complete"`
}

// measure compares the operations issued during the outage of target
// (from its fault to the end of its recovery, per the chaos log) with the
// others: what degrades while the component is gone.
func measure(t *testing.T, journalPath string, records []Record, target string) string {
	t.Helper()
	var from, to time.Time
	for _, record := range records {
		if record.Target != target {
			continue
		}
		if from.IsZero() {
			from = record.Time
		}
		to = record.Time.Add(time.Duration(record.DurationMs) * time.Millisecond)
	}
	if from.IsZero() {
		t.Fatalf("no fault on %s in the chaos log", target)
	}
	content, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	var before, during, after window
	for _, line := range bytes.Split(content, []byte("\n")) {
		var entry journalLine
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &entry) != nil || entry.Kind == invariants.KindSignup {
			continue
		}
		invoked := time.UnixMicro(entry.Invoke)
		switch {
		case invoked.Before(from):
			before.add(entry)
		case invoked.Before(to):
			during.add(entry)
		default:
			after.add(entry)
		}
	}
	return fmt.Sprintf("  before the %s outage: %s\n  during it (%.1fs):     %s\n  after it:             %s", target, &before, to.Sub(from).Seconds(), &during, &after)
}
