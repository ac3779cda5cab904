package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// runFlags are the flags of `ledgerproof run`: the run's options, and
// what the CLI resolves before handing them to runner.RunJob.
type runFlags struct {
	job        runner.JobOptions
	seededBugs seededBugFlags
	// replay is --replay DIR: run that run again.
	replay string
}

// runCommand is the main job: load + chaos + drain + audit + report, with an
// exit code a CI pipeline can gate on (docs/ci.md, docs/run-directory.md).
func runCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	var o runFlags
	flags := newRunFlags(&o)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		job, err := o.jobOptions(flags)
		if err != nil {
			return exitWith(runner.RefuseJob(os.Stderr, err), nil)
		}
		// ctx ends at the first Ctrl-C (main's); the second cuts the audit
		// and report short too.
		hardStop, stopListening := afterSecondInterrupt(ctx, os.Stderr, notifyInterrupts)
		defer stopListening()
		job.HardStop = hardStop
		return exitWith(runner.RunJob(ctx, job, os.Stdout, os.Stderr), nil)
	}
}

// afterSecondInterrupt returns a context that ends at the first interrupt
// received after ctx ends (ctx ends at the first one), saying so on stderr,
// or when stop is called. It listens for that interrupt only once ctx has
// ended, through listen, which returns the channel of interrupts and the
// function that stops their delivery (notifyInterrupts; a test's fake).
func afterSecondInterrupt(ctx context.Context, stderr io.Writer, listen func() (<-chan os.Signal, func())) (hardStop context.Context, stop func()) {
	hardStop, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-ctx.Done():
		case <-hardStop.Done():
			return
		}
		interrupts, stopListening := listen()
		defer stopListening()
		select {
		case <-interrupts:
			fmt.Fprintln(stderr, "ledgerproof run: second interrupt: cutting the audit and report short")
			cancel()
		case <-hardStop.Done():
		}
	}()
	return hardStop, cancel
}

// notifyInterrupts delivers the interruptSignals (SIGINT, SIGTERM) to the
// channel it returns until its stop function is called.
func notifyInterrupts() (<-chan os.Signal, func()) {
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, interruptSignals...)
	return interrupts, func() { signal.Stop(interrupts) }
}

// jobOptions are the options of the run the command line asks for: the
// run replayed with --replay, or the flags' run with the flags it records.
func (o runFlags) jobOptions(flags *flag.FlagSet) (runner.JobOptions, error) {
	if o.replay != "" {
		replayed, err := replayOptions(flags, o)
		if err != nil {
			return runner.JobOptions{}, err
		}
		fmt.Fprintf(os.Stdout, "replaying the run in %s\n", o.replay)
		o = replayed
	} else {
		o.job.GivenArgs, o.job.WithheldArgs = givenArguments(flags)
	}
	if o.job.Shards < 1 || o.job.Shards > shard.MaxShards {
		return runner.JobOptions{}, fmt.Errorf("--shards %d: want 1 to %d", o.job.Shards, shard.MaxShards)
	}
	bugs, err := o.seededBugs.parse()
	if err != nil {
		return runner.JobOptions{}, err
	}
	for _, bug := range bugs {
		o.job.SeededBugs = append(o.job.SeededBugs, string(bug))
	}
	o.job.EnvName = envName
	return o.job, nil
}

// newRunFlags declares the run command's flags into o.
func newRunFlags(o *runFlags) *flag.FlagSet {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	defaults := stack.DefaultConfig()
	flags.StringVar(&o.job.Scenario, "scenario", "scenarios/gate.yaml", "the scenario file (docs/scenarios.md)")
	flags.StringVar(&o.job.Plan, "plan", "", "chaos plan applied in step with the load (docs/chaos.md); offsets count from the load's first operation after setup; default none")
	flags.StringVar(&o.job.Stack, "stack", runner.KindLocal, "the system: local (the stack in --stack-dir, started if not running), compose (docker compose project of --compose-file), external (any payment system: --base-url, --profile for an API of another dialect, and one ledger: --postgres-url, --ledger-sql or --ledger-export with --export-command; docs/external.md)")
	flags.StringVar(&o.job.StackDir, "stack-dir", defaults.Dir, "local stack directory; a stack the run starts there is stopped at the end")
	flags.BoolVar(&o.job.KeepStack, "keep-stack", false, "leave a stack the run started running at the end")
	flags.BoolVar(&o.job.PurgeStack, "purge-stack", false, "remove the directory of a stack the run started after stopping it (a seeded-bug stack is always removed)")
	flags.IntVar(&o.job.PostgresPort, "postgres-port", defaults.PostgresPort, "local stack the run starts: Postgres port")
	flags.IntVar(&o.job.RedisPort, "redis-port", defaults.RedisPort, "local stack the run starts: redis-server port")
	flags.IntVar(&o.job.BrokerPort, "broker-port", defaults.BrokerPort, "local stack the run starts: broker port")
	flags.IntVar(&o.job.GatewayPort, "gateway-port", defaults.GatewayPort, "local stack the run starts: first gateway's port")
	flags.IntVar(&o.job.WorkerMetricsPort, "worker-metrics-port", defaults.WorkerMetricsPort, "local stack the run starts: first worker's metrics port")
	flags.IntVar(&o.job.SettlementPort, "settlement-port", 0, fmt.Sprintf("local stack the run starts: the relay's metrics port, the settler's is the next and each other shard's relay the ones after (0: %d)", stack.DefaultSettlementPort))
	flags.IntVar(&o.job.Gateways, "gateways", defaults.Gateways, "local stack the run starts: gateway processes")
	flags.IntVar(&o.job.Workers, "workers", defaults.Workers, "local stack the run starts: worker processes (per shard with --shards)")
	flags.IntVar(&o.job.Shards, "shards", defaults.Shards, fmt.Sprintf("local stack the run starts: ledger shards, 1 to %d, each its own Postgres (postgres-shard-<i>), workers and outbox relay (docs/sharding.md); the audit reads their union", shard.MaxShards))
	flags.Var((*stackArgumentList)(&o.job.GatewayArgs), "gateway-arg", "local stack the run starts: argument appended to every gateway's command line, after the cheap KDF defaults "+strings.Join(runner.RunKDFArgs, " ")+" (repeatable)")
	flags.Var((*stackArgumentList)(&o.job.WorkerArgs), "worker-arg", "local stack the run starts: argument appended to every worker's command line (repeatable)")
	flags.StringVar(&o.job.ComposeFile, "compose-file", "docker-compose.yml", "with --stack compose: the compose file (load to "+runner.ComposeBaseURL+", audit through the published Postgres)")
	flags.StringVar(&o.job.ComposeProject, "compose-project", "", "with --stack compose: the project name (-p); default compose's own")
	flags.StringVar(&o.job.BaseURL, "base-url", "", "the system's base URL(s), comma-separated (external: required; compose: default "+runner.ComposeBaseURL+")")
	flags.StringVar(&o.job.PostgresURL, "postgres-url", "", "the ledger database the audit reads (external; compose default "+runner.ComposePostgresURL+")")
	flags.StringVar(&o.job.RedisAddr, "redis-addr", "", "Redis host:port for the cache-coherence check (external; compose default "+runner.ComposeRedisAddr+")")
	flags.StringVar(&o.job.Brokers, "brokers", "", "Kafka brokers to drain by high watermarks (external; compose default "+runner.ComposeBrokers+"); none: drained when the ledger is quiet")
	flags.StringVar(&o.job.Profile, "profile", "", "external: the system profile, how to speak to an API that is not the reference's (profiles/, docs/external.md)")
	flags.StringVar(&o.job.LedgerSQL, "ledger-sql", "", "external: audit your own Postgres or MySQL ledger through the queries of this YAML file (docs/external.md)")
	flags.StringVar(&o.job.LedgerExport, "ledger-export", "", "external: audit this ledger export directory (docs/audit.md) instead of a database, written by --export-command")
	flags.StringVar(&o.job.ExportCommand, "export-command", "", "external with --ledger-export: shell command that writes the export into that directory, run after the load until two exports --quiet-period apart agree (the system has finished)")
	flags.StringVar(&o.job.MetricsURLs, "metrics-url", "", "external: comma-separated Prometheus /metrics URLs to scrape every second (compose and local: their gateways and workers)")
	o.seededBugs.register(flags)
	flags.StringVar(&o.job.Out, "out", "", "run directory (default reports/runs/<UTC timestamp>-<scenario name>); must not exist or be empty")
	flags.Var((*stackArgumentList)(&o.job.Sets), "set", "override a scenario field, e.g. schedule.rate=500 or 'thresholds.errors=rate<0.01' (repeatable; docs/scenarios.md)")
	flags.IntVar(&o.job.Generators, "generators", 1, "load generator processes: each runs 1/N of the schedule with its own accounts and journal (journal-<i>.jsonl), from one shared start")
	flags.StringVar(&o.job.Seed, "seed", "", "seed of the load and of a random plan without a seed of its own; default the scenario's, else drawn and printed")
	flags.StringVar(&o.job.Duration, "duration", "", "the scenario's schedule.duration (shortcut for --set schedule.duration=...)")
	flags.StringVar(&o.job.Rate, "rate", "", "the scenario's schedule.rate in operations per second (shortcut for --set schedule.rate=...)")
	flags.DurationVar(&o.job.SetupTimeout, "setup-timeout", runner.DefaultSetupTimeout, "bound on the load's setup (signups and funding) before its first operation")
	flags.DurationVar(&o.job.DrainTimeout, "drain-timeout", runner.DefaultDrainTimeout, "how long the audit waits for the pipeline to drain")
	flags.DurationVar(&o.job.QuietPeriod, "quiet-period", runner.DefaultQuietPeriod, "drained means unchanged this long: the ledger without brokers, or two exports of --export-command this far apart")
	flags.StringVar(&o.replay, "replay", "", "run the run in this run directory again: its flags, seed, plan seed, seeded bugs and its own copies of the scenario and plan (run.json's replay); only --out may be given with it")
	return flags
}
