package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/reports"
)

// execute starts or attaches the stack, runs, stops what it started, and
// prints the verdict last.
func (p *preparedRun) execute(ctx context.Context, stdout, stderr io.Writer) int {
	record := p.executeRun(ctx, stdout, stderr)
	printVerdict(stdout, record, p.options.Out)
	return record.ExitCode
}

// executeRun does the run; the stack it started is stopped when it returns.
func (p *preparedRun) executeRun(ctx context.Context, stdout, stderr io.Writer) *RunFile {
	o := p.options
	fmt.Fprintf(stdout, "ledgerproof run %s: scenario %s, seed %d (replay with --seed %d)\n", p.record.ID, o.Scenario, p.seed, p.seed)
	if p.plan != nil {
		chaos.WriteTimeline(stdout, p.plan, p.planSeed, "run", p.timeline)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return p.failBeforeLoad(stderr, fmt.Errorf("run directory: %w", err))
	}
	fmt.Fprintf(stdout, "run directory %s\n", o.Out)
	if err := p.keepReplayFiles(); err != nil {
		return p.failBeforeLoad(stderr, err)
	}
	fmt.Fprintf(stdout, "replay: ledgerproof run --replay %s\n    (the same as: ledgerproof run %s, with the scenario and plan as they are now)\n",
		reports.ShellQuote(o.Out), shellJoin(p.record.Replay.Args))
	for _, name := range o.WithheldArgs {
		fmt.Fprintf(stdout, "    %s holds a password and is not recorded: a replay takes it from %s\n", name, o.EnvName(strings.TrimPrefix(name, "--")))
	}

	binary, err := os.Executable()
	if err != nil {
		return p.failBeforeLoad(stderr, fmt.Errorf("the ledgerproof binary for the load: %w", err))
	}
	config := Config{
		RunDir: o.Out, Scenario: o.Scenario, Binary: binary, Sets: p.sets, Seed: p.seed, Generators: o.Generators, Profile: o.Profile,
		Thresholds: p.scenario.Thresholds, SetupTimeout: o.SetupTimeout,
		Record: p.record, Output: stdout, HardStop: o.HardStop,
	}
	// The generators serve their metrics on free loopback ports, scraped beside the system's: the report
	// shows what the load cost as well as what the system did.
	if ports, err := FreePorts(1, map[int]int{0: o.Generators}); err == nil {
		config.LoadMetricsPort = ports[0]
	} else {
		fmt.Fprintf(stdout, "no free ports for the load's metrics (%v): the load's own figures are in its summary only\n", err)
	}
	if p.loadTime > 0 {
		config.LoadTimeout = o.SetupTimeout + p.loadTime + 5*time.Minute
	}

	// The stack.
	stackPhase := Phase{Name: "stack", StartedAt: time.Now().UTC()}
	p.record.StartedAt = stackPhase.StartedAt
	stop, err := p.target.Start(ctx, o.Out, stdout)
	defer stop()
	p.record.Stack = p.target.Stack()
	if err != nil {
		return p.failBeforeLoad(stderr, err)
	}
	config.ScrapeTargets = p.target.ScrapeTargets()
	if version := p.target.PostgresVersion(ctx); version != "" {
		p.record.Versions["postgres"] = version
	}
	config.Recover = p.target.Recovery()
	stackPhase.FinishedAt = time.Now().UTC()
	p.record.Phases = append(p.record.Phases, stackPhase)
	config.Gateways = p.record.Stack.Gateways
	if p.plan != nil {
		config.Plan = &PlanRun{Name: p.plan.Name, Seed: p.planSeed, Timeline: p.timeline, Executor: p.target.Executor()}
	}
	config.Audit = p.audit
	config.Report = generateReport

	if ctx.Err() != nil {
		return p.failBeforeLoad(stderr, errors.New("interrupted before the load"))
	}
	record, err := Run(ctx, config)
	if err != nil {
		return p.failBeforeLoad(stderr, err)
	}
	return record
}

// failBeforeLoad records a run that could not start its load.
func (p *preparedRun) failBeforeLoad(stderr io.Writer, err error) *RunFile {
	fmt.Fprintf(stderr, "ledgerproof run: %v\n", err)
	p.record.Version = RunFileVersion
	p.record.LoadExitCode = -1
	p.record.Verdict, p.record.ExitCode, p.record.Note = VerdictCouldNotRun, ExitCouldNotRun, err.Error()
	p.record.FinishedAt = time.Now().UTC()
	if writeErr := p.record.Write(p.options.Out); writeErr != nil {
		fmt.Fprintf(stderr, "ledgerproof run: %v\n", writeErr)
	}
	return p.record
}

// audit drains and audits the run as `ledgerproof audit` does (RunAudit):
// the ledger of the local stack, of the compose project's published
// Postgres, or of an external system (database or export). The scope is
// the whole ledger when the run started a fresh stack (every transaction
// must be the load's), else the run's users.
func (p *preparedRun) audit(ctx context.Context, runDir string, output io.Writer) (string, error) {
	o := p.options
	source, err := p.target.Ledger(ctx, output)
	if err != nil {
		return "", err
	}
	options := AuditOptions{RunDir: runDir, StackDir: source.StackDir, PostgresURL: source.PostgresURL, LedgerSQL: source.LedgerSQL,
		LedgerExport: source.LedgerExport, RedisAddr: source.RedisAddr, Brokers: source.Brokers, Topic: invariants.DefaultTopic,
		DrainTimeout: o.DrainTimeout, QuietPeriod: o.QuietPeriod, MaxViolations: DefaultMaxViolations, Scope: invariants.ScopeRun,
		ExportAfterLoad: true, DailyDebitLimit: source.DailyDebitLimit}
	if source.WholeLedger {
		options.Scope = invariants.ScopeLedger
	}
	code := RunAudit(ctx, options, output, output)
	result, err := invariants.ReadResult(filepath.Join(runDir, "audit.json"))
	if err != nil {
		return "", fmt.Errorf("the audit exited %d without a result: %w", code, err)
	}
	return result.Verdict, nil
}

// generateReport renders index.html, junit.xml and summary.json.
func generateReport(_ context.Context, runDir string) (string, error) {
	summary, err := reports.Generate(runDir)
	if err != nil {
		return "", err
	}
	// The report judges from the same files; a different verdict is a bug
	// in one of the two, never something to pass silently.
	if record, err := ReadRunFile(runDir); err == nil && record.Verdict != summary.Verdict {
		return "", fmt.Errorf("the report's verdict %s differs from the run's %s (a bug: see summary.json and run.json)", summary.Verdict, record.Verdict)
	}
	return filepath.Join(runDir, "index.html"), nil
}

// printVerdict prints the run's last lines: verdict, exit code, report.
func printVerdict(w io.Writer, record *RunFile, runDir string) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "VERDICT %s (exit %d) — audit %s, load exit %d, faults applied %d", strings.ToUpper(record.Verdict), record.ExitCode,
		FirstNonEmpty(record.AuditVerdict, "not run"), record.LoadExitCode, record.FaultsApplied)
	if record.FaultsFailed > 0 {
		fmt.Fprintf(w, " (%d failed)", record.FaultsFailed)
	}
	fmt.Fprintln(w)
	if record.Note != "" {
		fmt.Fprintf(w, "note: %s\n", record.Note)
	}
	// Faults that did not bite: the drill did not test what it claims.
	if content, err := os.ReadFile(filepath.Join(runDir, reports.SummaryFile)); err == nil {
		var summary reports.Summary
		if json.Unmarshal(content, &summary) == nil && summary.FaultsWithoutEffect > 0 {
			fmt.Fprintf(w, "WARNING: %d of %d faults had no observable effect (the report's fault windows say what each did):\n", summary.FaultsWithoutEffect, summary.Faults)
			for _, window := range summary.FaultWindows {
				if window.Effect != nil && !window.Effect.Bit {
					fmt.Fprintf(w, "  %s at %.1f s: %s\n", window.Label, window.StartSeconds, window.Effect.Observed)
				}
			}
		}
	}
	if record.Report != "" {
		fmt.Fprintf(w, "report: %s\n", record.Report)
	}
	fmt.Fprintf(w, "run directory: %s\n", runDir)
}

// Version is the module version, or the VCS revision the binary
// was built from, or (devel).
func Version() string {
	stamp := readBuildStamp()
	if !stamp.ok {
		return "(devel)"
	}
	version := stamp.version
	if len(stamp.revision) >= 12 {
		version += " " + stamp.revision[:12]
	}
	if stamp.modified {
		version += "+dirty"
	}
	return version
}
