package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// RunKDFArgs make the gateways of a stack the run starts hash passwords
// cheaply: the load's setup signs up every account of the load, and the production
// cost (tens of MiB per hash) would make a 200-account setup take most of a
// CI minute on two CPUs. The load's money operations do not hash passwords.
var RunKDFArgs = []string{"--kdf-memory-kib=1024", "--kdf-iterations=1"}

// JobOptions are the settings of `ledgerproof run` (the CLI's flags of the
// same names; their defaults are the CLI's). validate rejects the
// combinations the run cannot make sense of, before anything starts.
type JobOptions struct {
	// Scenario is the scenario file (--scenario; CLI default scenarios/gate.yaml).
	Scenario string
	// Plan is the chaos plan file applied in step with the load (--plan); "": none.
	Plan string
	// Stack is the kind of system: KindLocal, KindCompose or KindExternal (--stack).
	Stack string
	// StackDir is the local stack directory; a stack the run starts there is stopped at the end.
	StackDir string
	// KeepStack leaves a stack the run started running; PurgeStack removes
	// its directory after stopping it.
	KeepStack, PurgeStack bool
	// The stack the run starts (KindLocal): its ports, process counts and
	// extra arguments (the gateways' come after RunKDFArgs).
	PostgresPort, RedisPort, BrokerPort, GatewayPort, WorkerMetricsPort int
	// SettlementPort is the relay's metrics port (the settler's is the next,
	// the other shards' relays the ones after); 0: stack.DefaultSettlementPort.
	SettlementPort          int
	Gateways, Workers       int
	GatewayArgs, WorkerArgs []string
	// Shards is the number of ledger shards of the stack the run starts
	// (--shards; docs/sharding.md): 1 to shard.MaxShards, 0 read as 1.
	// Workers is then per shard. Only for KindLocal.
	Shards int

	// ComposeFile and ComposeProject name the docker compose project of KindCompose.
	ComposeFile, ComposeProject string

	// The endpoints and audit source of an external system (some also of
	// a compose project; see validate).
	BaseURL, PostgresURL, RedisAddr, Brokers, LedgerExport, ExportCommand, MetricsURLs, LedgerSQL, Profile string

	// SeededBugs are the names of the deliberate bugs the fresh local stack
	// starts with (the CLI has checked them and their unsafe switch).
	SeededBugs []string

	// Out is the run directory; "": reports/runs/<UTC timestamp>-<scenario name>.
	// It must not exist or be empty.
	Out string
	// Sets are the scenario overrides (--set key=value), in order.
	Sets []string
	// Generators is the number of load generator processes: 1 to 64.
	Generators int
	// Seed is the load's seed as given (a positive integer); "": the
	// scenario's, else drawn and printed.
	Seed string
	// Duration and Rate are shortcuts for the schedule.duration and
	// schedule.rate overrides; "": the scenario's.
	Duration, Rate string
	// SetupTimeout bounds the load's setup (CLI default DefaultSetupTimeout).
	SetupTimeout time.Duration
	// DrainTimeout is how long the audit waits for the pipeline to drain
	// (CLI default 60s); QuietPeriod how long the ledger, or two exports,
	// must stay unchanged to be drained (CLI default 2s). Both positive.
	DrainTimeout, QuietPeriod time.Duration

	// GivenArgs are the flags set on the command line (--name=value, one
	// per value), without --out, --seed and --replay: the run records them
	// with its seed so it can be replayed.
	GivenArgs []string
	// WithheldArgs name the flags GivenArgs leaves out: their values held a
	// password; a replay takes them from the variable EnvName names.
	WithheldArgs []string
	// EnvName names the environment variable that sets a flag (the CLI's
	// LEDGERPROOF_<FLAG>); required with WithheldArgs.
	EnvName func(flag string) string
	// PlanSeed, when not 0, is the seed of the plan's random section (a
	// replay's: the seed the replayed run used, whatever the plan says).
	PlanSeed uint64

	// HardStop, when it ends, cuts short the recovery, the audit and the
	// report too, as RunJob's ctx cuts the load short: the CLI ends it at a
	// second Ctrl-C (SIGINT or SIGTERM), the first having ended ctx. The
	// engine listens for no signal itself. Default nil: they run to their
	// bound (Config.AuditTimeout) whatever happens.
	HardStop context.Context
}

// validate rejects settings that contradict each other or are out of
// range; the scenario and the plan are checked by the run itself.
func (o *JobOptions) validate() error {
	if o.Rate != "" {
		if rate, err := strconv.Atoi(o.Rate); err != nil || rate <= 0 {
			return fmt.Errorf("--rate %q: want a positive whole number of operations per second", o.Rate)
		}
	}
	if o.Generators < 1 || o.Generators > 64 {
		return fmt.Errorf("--generators %d: want 1 to 64", o.Generators)
	}
	if o.Seed != "" {
		if seed, err := strconv.ParseInt(o.Seed, 10, 64); err != nil || seed <= 0 {
			return fmt.Errorf("--seed %q: want a positive integer", o.Seed)
		}
	}
	if len(o.WithheldArgs) > 0 && o.EnvName == nil {
		return errors.New("withheld flags without EnvName to say where a replay reads them (a bug)")
	}
	if o.Shards < 0 || o.Shards > shard.MaxShards {
		return fmt.Errorf("--shards %d: want 1 to %d", o.Shards, shard.MaxShards)
	}
	if o.Shards > 1 && o.Stack != KindLocal {
		return fmt.Errorf("--shards %d needs --stack local: the run starts a sharded reference stack (a compose or external system is sharded by its own configuration)", o.Shards)
	}
	if len(o.SeededBugs) > 0 && o.Stack != KindLocal {
		return fmt.Errorf("--seeded-bug needs --stack local: the run starts a fresh reference stack with the bug")
	}
	// The audit's bounds, checked now rather than after a whole load.
	if o.DrainTimeout <= 0 || o.QuietPeriod <= 0 {
		return fmt.Errorf("--drain-timeout %s and --quiet-period %s must be positive", o.DrainTimeout, o.QuietPeriod)
	}
	switch o.Stack {
	case KindLocal:
		if o.BaseURL != "" || o.PostgresURL != "" || o.LedgerExport != "" || o.LedgerSQL != "" || o.MetricsURLs != "" || o.Profile != "" {
			return errors.New("--base-url, --postgres-url, --ledger-export, --ledger-sql, --metrics-url and --profile are for --stack external (--base-url and --postgres-url also for compose); a local stack's endpoints are in its stack file")
		}
		return nil
	case KindCompose:
		if o.LedgerExport != "" || o.ExportCommand != "" || o.LedgerSQL != "" || o.MetricsURLs != "" || o.Profile != "" {
			return errors.New("--ledger-export, --export-command, --ledger-sql, --metrics-url and --profile are for --stack external; the compose project is the reference system, audited through its Postgres")
		}
		return nil
	case KindExternal:
		return o.externalSystem().checkSettings()
	}
	return fmt.Errorf("--stack %q: want local, compose or external", o.Stack)
}

// RunJob is `ledgerproof run`: it checks the options, prepares the target
// (nothing started yet), runs (Run: load, plan, recovery, audit, report),
// stops what it started, and prints the verdict last. It returns the exit
// code a CI pipeline gates on: ExitPassed, ExitInvariantViolated,
// ExitCouldNotRun, ExitThresholdFailed or ExitWeak (docs/ci.md, docs/run-directory.md).
func RunJob(ctx context.Context, o JobOptions, stdout, stderr io.Writer) int {
	if err := o.validate(); err != nil {
		return RefuseJob(stderr, err)
	}
	prepared, err := prepareRun(ctx, o, stdout)
	if err != nil {
		return RefuseJob(stderr, err)
	}
	return prepared.execute(ctx, stdout, stderr)
}

// RefuseJob says on stderr that the run could not start for err, and
// returns ExitCouldNotRun.
func RefuseJob(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "ledgerproof run: %v\nnothing was started (exit %d, could-not-run)\n", err, ExitCouldNotRun)
	return ExitCouldNotRun
}

// preparedRun is a run whose configuration was checked: nothing is started.
type preparedRun struct {
	options  JobOptions
	record   *RunFile
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
	target Target
}

// prepareRun resolves and checks everything before anything starts: the
// scenario and its overrides, the seeded bugs, the stack's state, the
// plan and its targets, the run directory.
func prepareRun(ctx context.Context, o JobOptions, stdout io.Writer) (*preparedRun, error) {
	p := &preparedRun{options: o}
	// The scenario, with its overrides: checked here, before anything starts.
	p.sets = append([]string{}, o.Sets...)
	if o.Duration != "" {
		p.sets = append(p.sets, "schedule.duration="+o.Duration)
	}
	if o.Rate != "" {
		p.sets = append(p.sets, "schedule.rate="+o.Rate)
	}
	loaded, err := scenario.Load(o.Scenario, p.sets)
	if err != nil {
		return nil, err
	}
	p.scenario = loaded
	if loaded.Setup.Accounts < 2*o.Generators {
		return nil, fmt.Errorf("--generators %d: the scenario's %d accounts leave fewer than 2 per generator (raise setup.accounts)", o.Generators, loaded.Setup.Accounts)
	}
	p.loadTime = ScheduleLength(loaded.Schedule)
	seedGiven := o.Seed != "" || loaded.Seed != 0
	switch {
	case o.Seed != "":
		p.seed, _ = strconv.ParseInt(o.Seed, 10, 64) // validated
	case loaded.Seed != 0:
		p.seed = loaded.Seed
	default:
		p.seed = 1 + rand.Int64N(2147483646)
	}

	// The stack (seeded bugs: only on a fresh local stack the run starts).
	bugNames := o.SeededBugs
	p.target = newTarget(o)
	inventory, err := p.target.Prepare(ctx)
	if err != nil {
		return nil, err
	}

	// The plan, checked against the stack.
	if o.Plan != "" {
		if p.plan, err = chaos.LoadPlan(o.Plan); err != nil {
			return nil, err
		}
		var override *uint64
		if p.plan.Random != nil && (seedGiven || (p.plan.Seed == nil && p.plan.Random.Seed == nil)) {
			seed := uint64(p.seed)
			override = &seed
		}
		if p.plan.Random != nil && o.PlanSeed != 0 {
			override = &o.PlanSeed
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
	name := strings.TrimSuffix(filepath.Base(o.Scenario), filepath.Ext(o.Scenario))
	id := time.Now().UTC().Format("20060102T150405Z") + "-" + name
	if o.Out == "" {
		o.Out = filepath.Join("reports", "runs", id)
		p.options.Out = o.Out
	} else {
		id = filepath.Base(o.Out)
	}
	if entries, err := os.ReadDir(o.Out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("--out %s is not empty: give a new run directory", o.Out)
	}

	p.record = &RunFile{
		ID: id, Scenario: o.Scenario, ScenarioSets: append([]string{}, p.sets...), Plan: o.Plan, PlanSeed: p.planSeed,
		Stack: p.target.Stack(), SeededBugs: append([]string{}, bugNames...), Seed: p.seed, Generators: o.Generators,
		Versions: map[string]string{"ledgerproof": Version(), "go": runtime.Version()},
	}
	if p.plan != nil {
		p.record.PlanName = p.plan.Name
	}
	p.record.Replay = &Replay{Args: append(append([]string{}, o.GivenArgs...), fmt.Sprintf("--seed=%d", p.seed)), Withheld: o.WithheldArgs}
	return p, nil
}

// newTarget makes the system of o.Stack from the validated options.
func newTarget(o JobOptions) Target {
	switch o.Stack {
	case KindCompose:
		return &ComposeProject{File: o.ComposeFile, Project: o.ComposeProject,
			BaseURLs: o.BaseURL, PostgresURL: o.PostgresURL, RedisAddr: o.RedisAddr, Brokers: o.Brokers}
	case KindExternal:
		return o.externalSystem()
	}
	config := stack.DefaultConfig()
	config.Dir = o.StackDir
	config.PostgresPort, config.RedisPort, config.BrokerPort = o.PostgresPort, o.RedisPort, o.BrokerPort
	config.GatewayPort, config.WorkerMetricsPort = o.GatewayPort, o.WorkerMetricsPort
	config.SettlementPort = o.SettlementPort
	config.Gateways, config.Workers = o.Gateways, o.Workers
	config.Shards = max(o.Shards, 1)
	config.GatewayArgs = append(append([]string{}, RunKDFArgs...), o.GatewayArgs...)
	config.WorkerArgs = append([]string{}, o.WorkerArgs...)
	return NewLocalStack(LocalOptions{Config: config, SeededBugs: o.SeededBugs, Keep: o.KeepStack, Purge: o.PurgeStack})
}

// externalSystem is the ExternalSystem of --stack external.
func (o JobOptions) externalSystem() *ExternalSystem {
	return &ExternalSystem{BaseURLs: o.BaseURL, PostgresURL: o.PostgresURL, LedgerSQL: o.LedgerSQL,
		LedgerExport: o.LedgerExport, ExportCommand: o.ExportCommand, RedisAddr: o.RedisAddr, Brokers: o.Brokers,
		MetricsURLs: o.MetricsURLs, Profile: o.Profile, QuietPeriod: o.QuietPeriod, DrainTimeout: o.DrainTimeout}
}
