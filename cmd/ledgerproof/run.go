package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// runKDFArgs make the gateways of a stack the run starts hash passwords
// cheaply: the load's setup signs up every account of the load, and the production
// cost (tens of MiB per hash) would make a 200-account setup take most of a
// CI minute on two CPUs. The load's money operations do not hash passwords.
var runKDFArgs = []string{"--kdf-memory-kib=1024", "--kdf-iterations=1"}

// runOptions are the flags of `ledgerproof run`.
type runOptions struct {
	scenario string
	plan     string
	stack    string
	stackDir string
	// keepStack leaves a stack the run started running; purgeStack removes
	// its directory after stopping it.
	keepStack, purgeStack bool
	// The stack the run starts.
	postgresPort, redisPort, brokerPort, gatewayPort, workerMetricsPort int
	gateways, workers                                                   int
	gatewayArgs, workerArgs                                             stackArgumentList

	composeFile, composeProject string

	baseURL, postgresURL, redisAddr, brokers, ledgerExport, exportCommand, metricsURLs, ledgerSQL, profile string

	seededBugs seededBugFlags

	out          string
	sets         stackArgumentList
	generators   int
	seed         string
	duration     string
	rate         string
	setupTimeout time.Duration
	drainTimeout time.Duration
	quietPeriod  time.Duration

	// replay is --replay DIR: run that run again.
	replay string
	// givenArgs are the flags set on the command line (--name=value, one
	// per value), without --out, --seed and --replay: the run records them
	// with its seed so it can be replayed.
	givenArgs []string
	// withheldArgs name the flags givenArgs leaves out: their values held a
	// password; a replay takes them from LEDGERPROOF_<FLAG>.
	withheldArgs []string
	// planSeed, when not 0, is the seed of the plan's random section (a
	// replay's: the seed the replayed run used, whatever the plan says).
	planSeed uint64
}

// runCommand is the main job: load + chaos + drain + audit + report, with an
// exit code a CI pipeline can gate on (docs/ci.md, docs/run-directory.md).
func runCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	var o runOptions
	flags := newRunFlags(&o)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if o.replay != "" {
			replayed, err := replayOptions(flags, o)
			if err != nil {
				fmt.Fprintf(os.Stderr, "ledgerproof run: %v\nnothing was started (exit %d, could-not-run)\n", err, runner.ExitCouldNotRun)
				os.Exit(runner.ExitCouldNotRun)
			}
			fmt.Fprintf(os.Stdout, "replaying the run in %s\n", o.replay)
			os.Exit(runMain(ctx, replayed, os.Stdout, os.Stderr))
		}
		o.givenArgs, o.withheldArgs = givenArguments(flags)
		os.Exit(runMain(ctx, o, os.Stdout, os.Stderr))
		return nil
	}
}

// newRunFlags declares the run command's flags into o.
func newRunFlags(o *runOptions) *flag.FlagSet {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	defaults := stack.DefaultConfig()
	flags.StringVar(&o.scenario, "scenario", "scenarios/gate.yaml", "the scenario file (docs/scenarios.md)")
	flags.StringVar(&o.plan, "plan", "", "chaos plan applied in step with the load (docs/chaos.md); offsets count from the load's first operation after setup; default none")
	flags.StringVar(&o.stack, "stack", runner.KindLocal, "the system: local (the stack in --stack-dir, started if not running), compose (docker compose project of --compose-file), external (any payment system: --base-url, --profile for an API of another dialect, and one ledger: --postgres-url, --ledger-sql or --ledger-export with --export-command; docs/external.md)")
	flags.StringVar(&o.stackDir, "stack-dir", defaults.Dir, "local stack directory; a stack the run starts there is stopped at the end")
	flags.BoolVar(&o.keepStack, "keep-stack", false, "leave a stack the run started running at the end")
	flags.BoolVar(&o.purgeStack, "purge-stack", false, "remove the directory of a stack the run started after stopping it (a seeded-bug stack is always removed)")
	flags.IntVar(&o.postgresPort, "postgres-port", defaults.PostgresPort, "local stack the run starts: Postgres port")
	flags.IntVar(&o.redisPort, "redis-port", defaults.RedisPort, "local stack the run starts: redis-server port")
	flags.IntVar(&o.brokerPort, "broker-port", defaults.BrokerPort, "local stack the run starts: broker port")
	flags.IntVar(&o.gatewayPort, "gateway-port", defaults.GatewayPort, "local stack the run starts: first gateway's port")
	flags.IntVar(&o.workerMetricsPort, "worker-metrics-port", defaults.WorkerMetricsPort, "local stack the run starts: first worker's metrics port")
	flags.IntVar(&o.gateways, "gateways", defaults.Gateways, "local stack the run starts: gateway processes")
	flags.IntVar(&o.workers, "workers", defaults.Workers, "local stack the run starts: worker processes")
	flags.Var(&o.gatewayArgs, "gateway-arg", "local stack the run starts: argument appended to every gateway's command line, after the cheap KDF defaults "+strings.Join(runKDFArgs, " ")+" (repeatable)")
	flags.Var(&o.workerArgs, "worker-arg", "local stack the run starts: argument appended to every worker's command line (repeatable)")
	flags.StringVar(&o.composeFile, "compose-file", "docker-compose.yml", "with --stack compose: the compose file (load to "+runner.ComposeBaseURL+", audit through the published Postgres)")
	flags.StringVar(&o.composeProject, "compose-project", "", "with --stack compose: the project name (-p); default compose's own")
	flags.StringVar(&o.baseURL, "base-url", "", "the system's base URL(s), comma-separated (external: required; compose: default "+runner.ComposeBaseURL+")")
	flags.StringVar(&o.postgresURL, "postgres-url", "", "the ledger database the audit reads (external; compose default "+runner.ComposePostgresURL+")")
	flags.StringVar(&o.redisAddr, "redis-addr", "", "Redis host:port for the cache-coherence check (external; compose default "+runner.ComposeRedisAddr+")")
	flags.StringVar(&o.brokers, "brokers", "", "Kafka brokers to drain by high watermarks (external; compose default "+runner.ComposeBrokers+"); none: drained when the ledger is quiet")
	flags.StringVar(&o.profile, "profile", "", "external: the system profile, how to speak to an API that is not the reference's (profiles/, docs/external.md)")
	flags.StringVar(&o.ledgerSQL, "ledger-sql", "", "external: audit your own Postgres or MySQL ledger through the queries of this YAML file (docs/external.md)")
	flags.StringVar(&o.ledgerExport, "ledger-export", "", "external: audit this ledger export directory (docs/audit.md) instead of a database, written by --export-command")
	flags.StringVar(&o.exportCommand, "export-command", "", "external with --ledger-export: shell command that writes the export into that directory, run after the load until two exports --quiet-period apart agree (the system has finished)")
	flags.StringVar(&o.metricsURLs, "metrics-url", "", "external: comma-separated Prometheus /metrics URLs to scrape every second (compose and local: their gateways and workers)")
	o.seededBugs.register(flags)
	flags.StringVar(&o.out, "out", "", "run directory (default reports/runs/<UTC timestamp>-<scenario name>); must not exist or be empty")
	flags.Var(&o.sets, "set", "override a scenario field, e.g. schedule.rate=500 or 'thresholds.errors=rate<0.01' (repeatable; docs/scenarios.md)")
	flags.IntVar(&o.generators, "generators", 1, "load generator processes: each runs 1/N of the schedule with its own accounts and journal (journal-<i>.jsonl), from one shared start")
	flags.StringVar(&o.seed, "seed", "", "seed of the load and of a random plan without a seed of its own; default the scenario's, else drawn and printed")
	flags.StringVar(&o.duration, "duration", "", "the scenario's schedule.duration (shortcut for --set schedule.duration=...)")
	flags.StringVar(&o.rate, "rate", "", "the scenario's schedule.rate in operations per second (shortcut for --set schedule.rate=...)")
	flags.DurationVar(&o.setupTimeout, "setup-timeout", runner.DefaultSetupTimeout, "bound on the load's setup (signups and funding) before its first operation")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 60*time.Second, "how long the audit waits for the pipeline to drain")
	flags.DurationVar(&o.quietPeriod, "quiet-period", 2*time.Second, "drained means unchanged this long: the ledger without brokers, or two exports of --export-command this far apart")
	flags.StringVar(&o.replay, "replay", "", "run the run in this run directory again: its flags, seed, plan seed, seeded bugs and its own copies of the scenario and plan (run.json's replay); only --out may be given with it")
	return flags
}

// runMain runs the command and returns its exit code.
func runMain(ctx context.Context, o runOptions, stdout, stderr io.Writer) int {
	prepared, err := prepareRun(ctx, o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof run: %v\nnothing was started (exit %d, could-not-run)\n", err, runner.ExitCouldNotRun)
		return runner.ExitCouldNotRun
	}
	return prepared.execute(ctx, stdout, stderr)
}

// preparedRun is a run whose configuration was checked: nothing is started.
type preparedRun struct {
	options  runOptions
	record   *runner.RunFile
	scenario *scenario.Scenario
	sets     []string
	seed     int64
	plan     *chaos.Plan
	planSeed uint64
	// timeline was checked against the stack's inventory; for a local
	// stack the run starts, against the inventory it will have.
	timeline []chaos.Step
	loadTime time.Duration

	// target is the system the run acts on.
	target runner.Target
}

// prepareRun resolves and checks everything before anything starts: the
// scenario and its overrides, the seeded bugs, the stack's state, the
// plan and its targets, the run directory.
func prepareRun(ctx context.Context, o runOptions, stdout io.Writer) (*preparedRun, error) {
	p := &preparedRun{options: o}
	// The scenario, with its overrides: checked here, before anything starts.
	p.sets = append([]string{}, o.sets...)
	if o.duration != "" {
		p.sets = append(p.sets, "schedule.duration="+o.duration)
	}
	if o.rate != "" {
		if rate, err := strconv.Atoi(o.rate); err != nil || rate <= 0 {
			return nil, fmt.Errorf("--rate %q: want a positive whole number of operations per second", o.rate)
		}
		p.sets = append(p.sets, "schedule.rate="+o.rate)
	}
	loaded, err := scenario.Load(o.scenario, p.sets)
	if err != nil {
		return nil, err
	}
	p.scenario = loaded
	if o.generators < 1 || o.generators > 64 {
		return nil, fmt.Errorf("--generators %d: want 1 to 64", o.generators)
	}
	if loaded.Setup.Accounts < 2*o.generators {
		return nil, fmt.Errorf("--generators %d: the scenario's %d accounts leave fewer than 2 per generator (raise setup.accounts)", o.generators, loaded.Setup.Accounts)
	}
	p.loadTime = runner.ScheduleLength(loaded.Schedule)
	seedGiven := o.seed != "" || loaded.Seed != 0
	switch {
	case o.seed != "":
		if p.seed, err = strconv.ParseInt(o.seed, 10, 64); err != nil || p.seed <= 0 {
			return nil, fmt.Errorf("--seed %q: want a positive integer", o.seed)
		}
	case loaded.Seed != 0:
		p.seed = loaded.Seed
	default:
		p.seed = 1 + rand.Int64N(2147483646)
	}

	// Seeded bugs: only on a fresh local stack the run starts.
	bugs, err := o.seededBugs.parse()
	if err != nil {
		return nil, err
	}
	var bugNames []string
	for _, bug := range bugs {
		bugNames = append(bugNames, string(bug))
	}

	// The stack.
	if p.target, err = newTarget(o, bugNames); err != nil {
		return nil, err
	}
	inventory, err := p.target.Prepare(ctx)
	if err != nil {
		return nil, err
	}

	// The plan, checked against the stack.
	if o.plan != "" {
		if p.plan, err = chaos.LoadPlan(o.plan); err != nil {
			return nil, err
		}
		var override *uint64
		if p.plan.Random != nil && (seedGiven || (p.plan.Seed == nil && p.plan.Random.Seed == nil)) {
			seed := uint64(p.seed)
			override = &seed
		}
		if p.plan.Random != nil && o.planSeed != 0 {
			override = &o.planSeed
		}
		seed, _ := p.plan.ResolveSeed(override, time.Now)
		if p.timeline, err = p.plan.Timeline(seed, inventory); err != nil {
			return nil, err
		}
		if err := p.target.CheckPlan(p.plan.Name, p.timeline); err != nil {
			return nil, err
		}
		if p.plan.Random != nil {
			p.planSeed = seed
		}
		if p.loadTime > 0 {
			for _, step := range p.timeline {
				if step.At > p.loadTime {
					return nil, fmt.Errorf("plan %s: step %s at %s comes after the load ends (its schedule lasts %s): lengthen the load or shorten the plan", p.plan.Name, step.Source, step.At, p.loadTime)
				}
			}
		}
	}

	// The system answers, or the run stops now (after the plan's own
	// mistakes, which need no network to find).
	if err := p.target.Preflight(ctx); err != nil {
		return nil, err
	}

	// The run directory: a new one, so two runs' journals never mix.
	name := strings.TrimSuffix(filepath.Base(o.scenario), filepath.Ext(o.scenario))
	id := time.Now().UTC().Format("20060102T150405Z") + "-" + name
	if o.out == "" {
		o.out = filepath.Join("reports", "runs", id)
		p.options.out = o.out
	} else {
		id = filepath.Base(o.out)
	}
	if entries, err := os.ReadDir(o.out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("--out %s is not empty: give a new run directory", o.out)
	}

	p.record = &runner.RunFile{
		ID: id, Scenario: o.scenario, ScenarioSets: append([]string{}, p.sets...), Plan: o.plan, PlanSeed: p.planSeed,
		Stack: p.target.Stack(), SeededBugs: append([]string{}, bugNames...), Seed: p.seed, Generators: o.generators,
		Versions: map[string]string{"ledgerproof": ledgerproofVersion(), "go": runtime.Version()},
	}
	if p.plan != nil {
		p.record.PlanName = p.plan.Name
	}
	p.record.Replay = &runner.Replay{Args: append(append([]string{}, o.givenArgs...), fmt.Sprintf("--seed=%d", p.seed)), Withheld: o.withheldArgs}
	return p, nil
}

// newTarget makes the system of --stack from the flags.
func newTarget(o runOptions, bugs []string) (runner.Target, error) {
	if len(bugs) > 0 && o.stack != runner.KindLocal {
		return nil, fmt.Errorf("--seeded-bug needs --stack local: the run starts a fresh reference stack with the bug")
	}
	// The audit's bounds, checked now rather than after a whole load.
	if o.drainTimeout <= 0 || o.quietPeriod <= 0 {
		return nil, fmt.Errorf("--drain-timeout %s and --quiet-period %s must be positive", o.drainTimeout, o.quietPeriod)
	}
	switch o.stack {
	case runner.KindLocal:
		if o.baseURL != "" || o.postgresURL != "" || o.ledgerExport != "" || o.ledgerSQL != "" || o.metricsURLs != "" || o.profile != "" {
			return nil, errors.New("--base-url, --postgres-url, --ledger-export, --ledger-sql, --metrics-url and --profile are for --stack external (--base-url and --postgres-url also for compose); a local stack's endpoints are in its stack file")
		}
		config := stack.DefaultConfig()
		config.Dir = o.stackDir
		config.PostgresPort, config.RedisPort, config.BrokerPort = o.postgresPort, o.redisPort, o.brokerPort
		config.GatewayPort, config.WorkerMetricsPort = o.gatewayPort, o.workerMetricsPort
		config.Gateways, config.Workers = o.gateways, o.workers
		config.GatewayArgs = append(append([]string{}, runKDFArgs...), o.gatewayArgs...)
		config.WorkerArgs = append([]string{}, o.workerArgs...)
		return runner.NewLocalStack(runner.LocalOptions{Config: config, SeededBugs: bugs, Keep: o.keepStack, Purge: o.purgeStack}), nil
	case runner.KindCompose:
		if o.ledgerExport != "" || o.exportCommand != "" || o.ledgerSQL != "" || o.metricsURLs != "" || o.profile != "" {
			return nil, errors.New("--ledger-export, --export-command, --ledger-sql, --metrics-url and --profile are for --stack external; the compose project is the reference system, audited through its Postgres")
		}
		return &runner.ComposeProject{File: o.composeFile, Project: o.composeProject,
			BaseURLs: o.baseURL, PostgresURL: o.postgresURL, RedisAddr: o.redisAddr, Brokers: o.brokers}, nil
	case runner.KindExternal:
		return &runner.ExternalSystem{BaseURLs: o.baseURL, PostgresURL: o.postgresURL, LedgerSQL: o.ledgerSQL,
			LedgerExport: o.ledgerExport, ExportCommand: o.exportCommand, RedisAddr: o.redisAddr, Brokers: o.brokers,
			MetricsURLs: o.metricsURLs, Profile: o.profile, QuietPeriod: o.quietPeriod, DrainTimeout: o.drainTimeout}, nil
	}
	return nil, fmt.Errorf("--stack %q: want local, compose or external", o.stack)
}

// execute starts or attaches the stack, runs, stops what it started, and
// prints the verdict last.
func (p *preparedRun) execute(ctx context.Context, stdout, stderr io.Writer) int {
	record := p.executeRun(ctx, stdout, stderr)
	printVerdict(stdout, record, p.options.out)
	return record.ExitCode
}

// executeRun does the run; the stack it started is stopped when it returns.
func (p *preparedRun) executeRun(ctx context.Context, stdout, stderr io.Writer) *runner.RunFile {
	o := p.options
	fmt.Fprintf(stdout, "ledgerproof run %s: scenario %s, seed %d (replay with --seed %d)\n", p.record.ID, o.scenario, p.seed, p.seed)
	if p.plan != nil {
		chaos.WriteTimeline(stdout, p.plan, p.planSeed, "run", p.timeline)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return p.failBeforeLoad(stderr, fmt.Errorf("run directory: %w", err))
	}
	fmt.Fprintf(stdout, "run directory %s\n", o.out)
	if err := p.keepReplayFiles(); err != nil {
		return p.failBeforeLoad(stderr, err)
	}
	fmt.Fprintf(stdout, "replay: ledgerproof run --replay %s\n    (the same as: ledgerproof run %s, with the scenario and plan as they are now)\n",
		reports.ShellQuote(o.out), shellJoin(p.record.Replay.Args))
	for _, name := range o.withheldArgs {
		fmt.Fprintf(stdout, "    %s holds a password and is not recorded: a replay takes it from %s\n", name, envName(strings.TrimPrefix(name, "--")))
	}

	// A second Ctrl-C cuts the audit and report short too.
	hardStop, hardCancel := context.WithCancel(context.Background())
	defer hardCancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-hardStop.Done():
			return
		}
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(signals)
		select {
		case <-signals:
			fmt.Fprintln(stderr, "ledgerproof run: second interrupt: cutting the audit and report short")
			hardCancel()
		case <-hardStop.Done():
		}
	}()

	binary, err := os.Executable()
	if err != nil {
		return p.failBeforeLoad(stderr, fmt.Errorf("the ledgerproof binary for the load: %w", err))
	}
	config := runner.Config{
		RunDir: o.out, Scenario: o.scenario, Binary: binary, Sets: p.sets, Seed: p.seed, Generators: o.generators, Profile: o.profile,
		Thresholds: p.scenario.Thresholds, SetupTimeout: o.setupTimeout,
		Record: p.record, Output: stdout, HardStop: hardStop,
	}
	// The generators serve their metrics on free loopback ports, scraped beside the system's: the report
	// shows what the load cost as well as what the system did.
	if ports, err := runner.FreePorts(1, map[int]int{0: o.generators}); err == nil {
		config.LoadMetricsPort = ports[0]
	} else {
		fmt.Fprintf(stdout, "no free ports for the load's metrics (%v): the load's own figures are in its summary only\n", err)
	}
	if p.loadTime > 0 {
		config.LoadTimeout = o.setupTimeout + p.loadTime + 5*time.Minute
	}

	// The stack.
	stackPhase := runner.Phase{Name: "stack", StartedAt: time.Now().UTC()}
	p.record.StartedAt = stackPhase.StartedAt
	stop, err := p.target.Start(ctx, o.out, stdout)
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
		config.Plan = &runner.PlanRun{Name: p.plan.Name, Seed: p.planSeed, Timeline: p.timeline, Executor: p.target.Executor()}
	}
	config.Audit = p.audit
	config.Report = generateReport

	if ctx.Err() != nil {
		return p.failBeforeLoad(stderr, errors.New("interrupted before the load"))
	}
	record, err := runner.Run(ctx, config)
	if err != nil {
		return p.failBeforeLoad(stderr, err)
	}
	return record
}

// failBeforeLoad records a run that could not start its load.
func (p *preparedRun) failBeforeLoad(stderr io.Writer, err error) *runner.RunFile {
	fmt.Fprintf(stderr, "ledgerproof run: %v\n", err)
	p.record.Version = runner.RunFileVersion
	p.record.LoadExitCode = -1
	p.record.Verdict, p.record.ExitCode, p.record.Note = runner.VerdictCouldNotRun, runner.ExitCouldNotRun, err.Error()
	p.record.FinishedAt = time.Now().UTC()
	if writeErr := p.record.Write(p.options.out); writeErr != nil {
		fmt.Fprintf(stderr, "ledgerproof run: %v\n", writeErr)
	}
	return p.record
}

// audit drains and audits the run as `ledgerproof audit` does (runAudit):
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
	options := runner.AuditOptions{RunDir: runDir, StackDir: source.StackDir, PostgresURL: source.PostgresURL, LedgerSQL: source.LedgerSQL,
		LedgerExport: source.LedgerExport, RedisAddr: source.RedisAddr, Brokers: source.Brokers, Topic: invariants.DefaultTopic,
		DrainTimeout: o.drainTimeout, QuietPeriod: o.quietPeriod, MaxViolations: 20, Scope: invariants.ScopeRun,
		ExportAfterLoad: true}
	if source.WholeLedger {
		options.Scope = invariants.ScopeLedger
	}
	code := runner.RunAudit(ctx, options, output, output)
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
	if record, err := runner.ReadRunFile(runDir); err == nil && record.Verdict != summary.Verdict {
		return "", fmt.Errorf("the report's verdict %s differs from the run's %s (a bug: see summary.json and run.json)", summary.Verdict, record.Verdict)
	}
	return filepath.Join(runDir, "index.html"), nil
}

// printVerdict prints the run's last lines: verdict, exit code, report.
func printVerdict(w io.Writer, record *runner.RunFile, runDir string) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "VERDICT %s (exit %d) — audit %s, load exit %d, faults applied %d", strings.ToUpper(record.Verdict), record.ExitCode,
		runner.FirstNonEmpty(record.AuditVerdict, "not run"), record.LoadExitCode, record.FaultsApplied)
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

// ledgerproofVersion is the module version, or the VCS revision the binary
// was built from, or (devel).
func ledgerproofVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	version := info.Main.Version
	for _, setting := range info.Settings {
		if setting.Key == "vcs.revision" && len(setting.Value) >= 12 {
			version += " " + setting.Value[:12]
		}
		if setting.Key == "vcs.modified" && setting.Value == "true" {
			version += "+dirty"
		}
	}
	return version
}
