package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/internal/syncwriter"
	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// PlanRun is the chaos plan of a run, expanded and checked against the stack.
type PlanRun struct {
	Name string
	Seed uint64
	// Timeline is the expanded plan (chaos.Plan.Timeline), offsets counted
	// from the load's start.
	Timeline []chaos.Step
	// Executor applies it to the stack.
	Executor chaos.Executor
}

// Hooks are the parts of a run that depend on the stack, given by the
// caller. Each gets a context of its own that outlives an interrupted load,
// so an interrupted run still audits and reports what it has.
type Hooks struct {
	// Recover brings every component up again after the plan and the load
	// (a command still queued behind a dead component is not lost money).
	// Nil: nothing to recover (an external system).
	Recover func(ctx context.Context, output io.Writer) error
	// Audit drains the pipeline, audits the run directory and writes
	// audit.json and audit.txt; it returns the auditor's verdict (passed,
	// violated, incomplete). Required.
	Audit func(ctx context.Context, runDir string, output io.Writer) (verdict string, err error)
	// Report renders index.html, junit.xml and summary.json from the run
	// directory (run.json included) and returns index.html's path. Nil: no
	// report.
	Report func(ctx context.Context, runDir string) (path string, err error)
}

// Config is one run. The caller has validated the scenario and the plan against the stack, and started or
// attached the stack.
type Config struct {
	// RunDir receives every file of the run; created if missing.
	RunDir string
	// Scenario is the scenario file; Binary the ledgerproof executable that runs `ledgerproof load`.
	Scenario, Binary string
	// Profile is the system profile the load speaks (load/profile); "": the reference API.
	Profile string
	// Sets are the scenario overrides (--set key=value), in order; Seed the load's seed.
	Sets []string
	Seed int64
	// Generators is the number of generator processes (default 1); each runs 1/N of the schedule with its own
	// accounts and journal, from one shared start time.
	Generators int
	// Thresholds are the scenario's, to judge the merged summary of several generators.
	Thresholds []threshold.Threshold
	// LoadMetricsPort, when positive, is the first of Generators loopback ports where the generators serve
	// their Prometheus /metrics (generator i on LoadMetricsPort+i), scraped with the targets as load-<i>.
	LoadMetricsPort int
	// Gateways are the system's base URLs.
	Gateways []string
	// ScrapeTargets are the /metrics endpoints scraped every ScrapeInterval.
	ScrapeTargets []ScrapeTarget
	// Plan is the chaos plan; nil for none.
	Plan *PlanRun
	Hooks
	// Record is run.json's configuration part (ID, scenario, stack, seeds,
	// versions, the phases before this run, such as starting the stack);
	// Run fills in the rest and writes it.
	Record *RunFile

	// SetupTimeout bounds the load's setup: from the generators' start to the first load operation in the
	// journal. Default 5m.
	SetupTimeout time.Duration
	// LoadTimeout bounds the whole generator process. Default 2h; the caller sets it from the scenario's
	// duration when known.
	LoadTimeout time.Duration
	// StopGrace is how long a generator gets to stop after SIGINT (it ends the schedule, lets the operations
	// in flight finish, writes its summary) before it is killed. Default 45s: the scenarios' graceful stop
	// is 30s.
	StopGrace time.Duration
	// AuditTimeout bounds recovery plus the audit (the drain included).
	// Default 10m.
	AuditTimeout time.Duration
	// ScrapeInterval is the metrics scrape period. Default 1s.
	ScrapeInterval time.Duration
	// ProgressInterval is the period of the progress line. Default 2s.
	ProgressInterval time.Duration
	// HardStop, when it ends, cuts short the recovery, the audit and the
	// report too (a second Ctrl-C). Nil: they run to their AuditTimeout.
	HardStop context.Context
	// Output receives the progress lines and every step's messages.
	// Default io.Discard.
	Output io.Writer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of Config's bounds.
const (
	DefaultSetupTimeout     = 5 * time.Minute
	DefaultLoadTimeout      = 2 * time.Hour
	DefaultStopGrace        = 45 * time.Second
	DefaultAuditTimeout     = 10 * time.Minute
	DefaultProgressInterval = 2 * time.Second
	// journalPollInterval is how often the journal is read for the load's
	// start and the progress counts.
	journalPollInterval = 100 * time.Millisecond
)

func (c *Config) validate() error {
	var problems []string
	if c.RunDir == "" {
		problems = append(problems, "no run directory")
	}
	if c.Scenario == "" || c.Binary == "" {
		problems = append(problems, "no scenario or no ledgerproof binary for the load")
	}
	if c.Generators < 0 || c.Generators > 64 {
		problems = append(problems, fmt.Sprintf("%d generators: want 1 to 64", c.Generators))
	}
	if c.Audit == nil {
		problems = append(problems, "no audit")
	}
	if c.Record == nil {
		problems = append(problems, "no run record")
	}
	if c.Plan != nil && c.Plan.Executor == nil {
		problems = append(problems, "a plan without an executor")
	}
	if len(c.Gateways) == 0 {
		problems = append(problems, "no gateway to send the load to")
	}
	if len(problems) > 0 {
		return fmt.Errorf("run config: %s", strings.Join(problems, "; "))
	}
	if c.Generators == 0 {
		c.Generators = 1
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = DefaultSetupTimeout
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = DefaultLoadTimeout
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.AuditTimeout <= 0 {
		c.AuditTimeout = DefaultAuditTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.Output == nil {
		c.Output = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// run is one run's state.
type run struct {
	config  Config
	record  *RunFile
	started time.Time
	output  *syncwriter.Writer

	mutex sync.Mutex
	phase string
	// faults counts the chaos runner's applied steps; lastFault is the
	// latest one's human line.
	faults, faultsFailed int
	lastFault            string
	notes                []string
}

// Run does the run and returns run.json as written. The error is for a run
// whose configuration is unusable (nothing was started); every other
// failure is in the record's verdict and note.
//
// Steps: the generators start with the run directory; the journal is watched for the
// first load operation (the end of setup), whose invoke time is the
// plan's zero; the chaos runner applies the plan from there while the
// metrics are scraped every second; the load ends; the plan ends; the Recover
// hook restarts what is down; the Audit hook drains and audits; run.json is
// written; the Report hook renders the report; run.json is written again
// with the report's path.
//
// When ctx ends (Ctrl-C) the load is stopped gracefully, the plan is cancelled
// (its runner resumes paused processes and heals links), and the run still
// recovers, audits and reports, then says could-not-run (or
// invariant-violated, which wins).
func Run(ctx context.Context, config Config) (*RunFile, error) {
	if err := config.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(config.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	r := &run{config: config, record: config.Record, started: config.Now(), output: syncwriter.New(config.Output)}
	if r.record.StartedAt.IsZero() {
		r.record.StartedAt = r.started.UTC()
	}
	r.record.Version = RunFileVersion
	r.record.LoadExitCode = -1
	r.record.Generators = config.Generators
	r.load(ctx)
	r.finish()
	return r.record, nil
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.output, format+"\n", args...)
}

func (r *run) note(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	r.mutex.Lock()
	r.notes = append(r.notes, text)
	r.mutex.Unlock()
	r.say("%s", text)
}

func (r *run) setPhase(name string) {
	r.mutex.Lock()
	r.phase = name
	r.mutex.Unlock()
}

// beginPhase closes the open phase and opens the named one.
func (r *run) beginPhase(name string) { r.beginPhaseAt(name, r.config.Now()) }

// beginPhaseAt is beginPhase at a given time (the load's, from the journal).
func (r *run) beginPhaseAt(name string, at time.Time) {
	now := at.UTC()
	r.endPhase(now)
	r.record.Phases = append(r.record.Phases, Phase{Name: name, StartedAt: now})
	r.setPhase(name)
}

func (r *run) endPhase(now time.Time) {
	if count := len(r.record.Phases); count > 0 && r.record.Phases[count-1].FinishedAt.IsZero() {
		r.record.Phases[count-1].FinishedAt = now
	}
}

// load runs the generators, the plan and the scraper until the load and the plan end.
func (r *run) load(ctx context.Context) {
	config := r.config
	// The scraper runs from before the load starts until the load and the plan are over.
	metricsFile, err := os.Create(filepath.Join(config.RunDir, MetricsFileName))
	if err != nil {
		r.note("could not create %s: %v", MetricsFileName, err)
		return
	}
	defer metricsFile.Close()
	targets := append([]ScrapeTarget{}, config.ScrapeTargets...)
	if config.LoadMetricsPort > 0 {
		for segment := range config.Generators {
			targets = append(targets, ScrapeTarget{Name: "load-" + strconv.Itoa(segment),
				URL: "http://" + loadMetricsAddress(config.LoadMetricsPort, segment) + "/metrics"})
		}
	}
	scraper := &Scraper{Targets: targets, Interval: config.ScrapeInterval, Now: config.Now}
	scrapeContext, stopScraping := context.WithCancel(context.Background())
	scrapeDone := make(chan error, 1)
	go func() { scrapeDone <- scraper.Run(scrapeContext, metricsFile) }()
	defer func() {
		stopScraping()
		if err := <-scrapeDone; err != nil {
			r.note("metrics scraper: %v", err)
		}
	}()

	r.beginPhase("setup")
	generators := make([]*LoadProcess, 0, config.Generators)
	watchers := make([]*JournalWatcher, 0, config.Generators)
	for segment := range config.Generators {
		logFile, err := os.Create(filepath.Join(config.RunDir, loadLogName(segment, config.Generators)))
		if err != nil {
			r.note("could not create the load log: %v", err)
			break
		}
		defer logFile.Close()
		args := LoadArgs(config.RunDir, config.Scenario, config.Gateways, config.Sets, config.Seed, segment, config.Generators)
		if config.Profile != "" {
			args = append(args, "--profile", config.Profile)
		}
		if config.LoadMetricsPort > 0 {
			args = append(args, "--metrics-address", loadMetricsAddress(config.LoadMetricsPort, segment))
		}
		r.say("load: %s %s (log %s)", config.Binary, strings.Join(args, " "), logFile.Name())
		generator, err := startLoad(config.Binary, args, logFile)
		if err != nil {
			r.note("start the load generator: %v", err)
			break
		}
		if config.Generators > 1 {
			// Gated: the run writes the shared start file once every generator is ready.
			generator.readyFile, generator.startFile = readyFile(config.RunDir, segment), startFile(config.RunDir)
		}
		generators = append(generators, generator)
		watchers = append(watchers, &JournalWatcher{Path: filepath.Join(config.RunDir, journalName(segment, config.Generators))})
	}
	loadStarted := time.Time{}
	generatorsStarted := config.Now()
	var stopOnce sync.Once
	stoppedByRun := false
	// stopGenerators stops the load before its end; the first reason is recorded (run.json's load_stopped).
	stopGenerators := func(reason string) {
		stopOnce.Do(func() {
			stoppedByRun = true
			r.record.LoadStopped = reason
			for _, generator := range generators {
				go generator.stop(config.StopGrace)
			}
		})
	}
	allDone := make(chan struct{})
	go func() {
		for _, generator := range generators {
			<-generator.done
		}
		close(allDone)
	}()
	if len(generators) < config.Generators {
		stopGenerators(LoadStoppedStartFailed)
	}

	// The plan waits for the load's start, then runs with a context that ends on Ctrl-C or when a generator
	// failed (not when the load merely finished: the plan's restarts must still happen).
	planContext, cancelPlan := context.WithCancel(ctx)
	defer cancelPlan()
	planStart := make(chan time.Time, 1)
	planDone := make(chan struct{})
	go func() {
		defer close(planDone)
		r.runPlan(planContext, planStart)
	}()

	progress := time.NewTicker(config.ProgressInterval)
	defer progress.Stop()
	poll := time.NewTicker(journalPollInterval)
	defer poll.Stop()
	setupDeadline := time.NewTimer(config.SetupTimeout)
	defer setupDeadline.Stop()
	loadDeadline := time.NewTimer(config.LoadTimeout)
	defer loadDeadline.Stop()
	startWritten := config.Generators == 1
	var lastCounts JournalCounts
	lastProgress := config.Now()
	interrupted := false
	pollAll := func() JournalCounts {
		var total JournalCounts
		for _, watcher := range watchers {
			counts, err := watcher.Poll()
			if err != nil {
				r.note("reading the journal %s: %v", watcher.Path, err)
			}
			total.Lines += counts.Lines
			total.Load += counts.Load
			total.Errors += counts.Errors
			if !counts.LoadStart.IsZero() && (total.LoadStart.IsZero() || counts.LoadStart.Before(total.LoadStart)) {
				total.LoadStart = counts.LoadStart
			}
		}
		return total
	}
	for waiting := true; waiting; {
		select {
		case <-allDone:
			waiting = false
		case <-ctx.Done():
			if !interrupted {
				interrupted = true
				r.note("interrupted: stopping the load (up to %s), then the plan; the run still audits and reports what it has", config.StopGrace)
				cancelPlan()
				stopGenerators(LoadStoppedInterrupted)
			}
		case <-setupDeadline.C:
			if loadStarted.IsZero() {
				r.note("the load's setup did not end within %s (no load operation in the journal): stopping the load", config.SetupTimeout)
				cancelPlan()
				stopGenerators(LoadStoppedSetupTimeout)
			}
		case <-loadDeadline.C:
			r.note("the load did not finish within %s: stopping it", config.LoadTimeout)
			cancelPlan()
			stopGenerators(LoadStoppedLoadTimeout)
		case <-poll.C:
			if !startWritten && allReady(generators, config.Generators) {
				// Every generator finished its setup: one start time for all, a moment ahead so that each
				// reads it before it comes.
				startWritten = true
				at := config.Now().Add(500 * time.Millisecond).UTC()
				if err := writeStartTime(startFile(config.RunDir), at); err != nil {
					r.note("could not write the generators' start time: %v", err)
					stopGenerators(LoadStoppedStartFailed)
				}
			}
			counts := pollAll()
			if loadStarted.IsZero() && !counts.LoadStart.IsZero() {
				loadStarted = counts.LoadStart
				started := loadStarted.UTC()
				r.record.LoadStartedAt = &started
				r.say("load started at %s, %.1fs after the generators (setup: %d operations)", started.Format("15:04:05.000"),
					loadStarted.Sub(generatorsStarted).Seconds(), counts.Lines-counts.Load)
				r.beginPhaseAt("load", loadStarted)
				planStart <- loadStarted
			}
		case <-progress.C:
			counts := pollAll()
			now := config.Now()
			r.printProgress(counts, lastCounts, now.Sub(lastProgress))
			lastCounts, lastProgress = counts, now
		}
	}
	close(planStart)
	counts := pollAll()
	r.record.LoadExitCode = combinedExitCode(generators, config.Generators)
	if config.Generators > 1 && len(generators) == config.Generators {
		r.mergeSummaries()
	}
	r.record.ThresholdsPassed = r.record.LoadExitCode == 0
	switch {
	case r.record.LoadExitCode == 0:
		r.say("load finished: thresholds passed; %d load operations, %d errors", counts.Load, counts.Errors)
	case r.record.LoadExitCode == loadExitThresholds:
		r.say("load finished: thresholds failed (exit 99, see %s); %d load operations, %d errors", LoadSummaryFileName, counts.Load, counts.Errors)
	case stoppedByRun:
		// Why it was stopped is noted already.
		r.say("load stopped (exit %d); %d load operations, %d errors", r.record.LoadExitCode, counts.Load, counts.Errors)
	default:
		for _, generator := range generators {
			if generator.exitCode != 0 && generator.exitCode != loadExitThresholds {
				r.say("the load's last lines (%s):\n%s", generator.log, tail(generator.log, 15))
				r.note("the load failed (exit %d: %v); see %s", generator.exitCode, generator.waitErr, generator.log)
			}
		}
		cancelPlan()
	}
	if loadStarted.IsZero() && config.Plan != nil {
		r.note("the load never started, so the plan was not applied")
	}
	// The plan ends by itself (its last step is within its duration); the
	// scraper keeps going meanwhile, so the recovery shows in the metrics.
	if config.Plan != nil && !loadStarted.IsZero() {
		select {
		case <-planDone:
		default:
			r.say("waiting for the plan's last steps")
			r.setPhase("chaos")
		}
	}
	<-planDone
	if ctx.Err() != nil && !interrupted {
		r.note("interrupted")
	}
	if ctx.Err() != nil {
		r.record.Note = "interrupted"
	}
}

// loadMetricsAddress is where generator i serves its /metrics.
func loadMetricsAddress(firstPort, segment int) string {
	return "127.0.0.1:" + strconv.Itoa(firstPort+segment)
}

// journalName is generator i's journal.
func journalName(segment, segments int) string {
	if segments > 1 {
		return "journal-" + strconv.Itoa(segment) + ".jsonl"
	}
	return JournalFileName
}

// allReady reports whether every wanted generator started and wrote its ready file.
func allReady(generators []*LoadProcess, wanted int) bool {
	if len(generators) < wanted {
		return false
	}
	for _, generator := range generators {
		if !generator.ready() {
			return false
		}
	}
	return true
}

// combinedExitCode is the load's exit code over every generator: a generator that failed (or did not start)
// makes it that failure; else 99 when any threshold failed; else 0.
func combinedExitCode(generators []*LoadProcess, wanted int) int {
	if len(generators) < wanted {
		return -1
	}
	code := 0
	for _, generator := range generators {
		switch generator.exitCode {
		case 0:
		case loadExitThresholds:
			if code == 0 {
				code = loadExitThresholds
			}
		default:
			return generator.exitCode
		}
	}
	return code
}

// mergeSummaries merges the generators' summaries into load-summary.json, percentiles from the merged
// histograms, and judges the thresholds on the whole load.
func (r *run) mergeSummaries() {
	merged, err := metrics.MergeSegments(r.config.RunDir, r.config.Thresholds)
	if err != nil {
		r.note("merging the generators' load summaries: %v", err)
		return
	}
	if r.record.LoadExitCode == 0 && !merged.ThresholdsPassed {
		r.record.LoadExitCode = loadExitThresholds
	}
	if r.record.LoadExitCode == loadExitThresholds && merged.ThresholdsPassed {
		// Each process judged its own share; the whole load is what counts.
		r.record.LoadExitCode = 0
	}
}

// runPlan applies the plan from the load's start; it returns at once when
// there is no plan or the load never started.
func (r *run) runPlan(ctx context.Context, loadStarted <-chan time.Time) {
	plan := r.config.Plan
	if plan == nil {
		return
	}
	var start time.Time
	select {
	case <-ctx.Done():
		return
	case started, ok := <-loadStarted:
		if !ok {
			return
		}
		start = started
	}
	logFile, err := chaos.OpenLog(r.config.RunDir)
	if err != nil {
		r.note("chaos log: %v", err)
		return
	}
	defer logFile.Close()
	runner := &chaos.Runner{Executor: plan.Executor, ChaosLog: logFile, Output: &faultCounter{run: r}, Now: r.config.Now}
	r.say("chaos: plan %s (%d steps) against %s, offsets from the load's start", plan.Name, len(plan.Timeline), plan.Executor.Describe())
	summary, err := runner.Run(ctx, plan.Name, plan.Seed, plan.Timeline, start)
	if summary != nil {
		r.mutex.Lock()
		r.faults, r.faultsFailed = len(summary.Records), summary.Failed
		r.mutex.Unlock()
	}
	if err != nil {
		r.note("chaos: %v", err)
	}
	if err := logFile.Sync(); err != nil {
		r.note("chaos log: %v", err)
	}
}

// faultCounter receives the chaos runner's human lines: one per applied
// fault, echoed to the terminal and counted for the progress line.
type faultCounter struct{ run *run }

func (f *faultCounter) Write(p []byte) (int, error) {
	text := strings.TrimSpace(string(p))
	f.run.mutex.Lock()
	f.run.faults++
	if strings.Contains(text, ": ERROR") {
		f.run.faultsFailed++
	}
	f.run.lastFault = text
	f.run.mutex.Unlock()
	f.run.say("%s", text)
	return len(p), nil
}

// printProgress prints one line: phase, elapsed time, throughput since the
// last line (completed load operations per second, from the journal),
// errors so far, faults applied.
func (r *run) printProgress(counts, last JournalCounts, interval time.Duration) {
	r.mutex.Lock()
	phase, faults, failed := r.phase, r.faults, r.faultsFailed
	r.mutex.Unlock()
	elapsed := r.config.Now().Sub(r.started).Truncate(time.Second)
	tps := 0.0
	if interval > 0 {
		tps = float64(counts.Load-last.Load) / interval.Seconds()
	}
	line := fmt.Sprintf("[%-6s %8s] tps %6.0f  ops %7d  errors %5d", phase, elapsed, tps, counts.Load, counts.Errors)
	if phase == "setup" {
		line = fmt.Sprintf("[%-6s %8s] setup operations %d", phase, elapsed, counts.Lines)
	}
	if r.config.Plan != nil {
		line += fmt.Sprintf("  faults %d/%d", faults, len(r.config.Plan.Timeline))
		if failed > 0 {
			line += fmt.Sprintf(" (%d FAILED)", failed)
		}
	}
	r.say("%s", line)
}

// finish recovers, audits, judges, writes run.json and the report.
func (r *run) finish() {
	config := r.config
	// A context of its own: an interrupted load is still audited. Bounded.
	parent := config.HardStop
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, config.AuditTimeout)
	defer cancel()
	problem := len(r.notes) > 0
	if config.Recover != nil {
		r.beginPhase("recover")
		if err := config.Recover(ctx, r.output); err != nil {
			r.note("recovery: %v", err)
			problem = true
		}
	}
	r.beginPhase("audit")
	// run.json before the audit: the audit reads the run's scenario and its
	// overrides from it (what the scenario promised is what the audit
	// requires), and a run killed during the audit leaves a record that
	// says it has no verdict.
	early := *r.record
	early.Verdict, early.ExitCode = VerdictCouldNotRun, ExitCouldNotRun
	early.Note = joinNote(early.Note, "the run ended before its verdict (this record was written before the audit)")
	if err := early.Write(config.RunDir); err != nil {
		r.say("ERROR: %v", err)
	}
	r.say("drain and audit")
	verdict, err := config.Audit(ctx, config.RunDir, r.output)
	if err != nil {
		r.note("audit: %v", err)
		problem = true
	}
	r.record.AuditVerdict = verdict
	if verdict == invariants.VerdictIncomplete {
		r.note("the audit is incomplete (the pipeline did not drain, or a source was missing): see %s", filepath.Join(config.RunDir, "audit.txt"))
	}
	r.mutex.Lock()
	r.record.FaultsApplied, r.record.FaultsFailed = r.faults, r.faultsFailed
	r.mutex.Unlock()
	if r.record.FaultsFailed > 0 {
		r.note("%d fault(s) of the plan could not be applied (see %s): the run did not test what it says", r.record.FaultsFailed, chaos.LogFileName)
		problem = true
	}
	r.judge(problem)
	if config.Report != nil {
		r.beginPhase("report")
		r.writeRecord()
		path, err := config.Report(ctx, config.RunDir)
		if err != nil {
			r.note("report: %v", err)
			r.judge(true)
		} else {
			r.record.Report = path
		}
	}
	r.writeRecord()
}

// judge sets the verdict and exit code from what happened so far.
func (r *run) judge(problem bool) {
	r.mutex.Lock()
	notes := strings.Join(r.notes, "; ")
	r.mutex.Unlock()
	if problem || r.record.Note != "" {
		r.record.Verdict = Judge(r.record.AuditVerdict, r.record.LoadExitCode, true)
	} else {
		r.record.Verdict = Judge(r.record.AuditVerdict, r.record.LoadExitCode, false)
	}
	if notes != "" {
		r.record.Note = notes
	}
	r.record.ExitCode = ExitCode(r.record.Verdict)
}

func joinNote(note, more string) string {
	if note == "" {
		return more
	}
	return note + "; " + more
}

func (r *run) writeRecord() {
	now := r.config.Now().UTC()
	r.endPhase(now)
	r.record.FinishedAt = now
	if err := r.record.Write(r.config.RunDir); err != nil {
		r.say("ERROR: %v", err)
		r.record.Verdict, r.record.ExitCode = VerdictCouldNotRun, ExitCouldNotRun
	}
}

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
	content, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(content), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "  " + strings.Join(all, "\n  ")
}
