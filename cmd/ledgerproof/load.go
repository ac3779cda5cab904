package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/reports/capacity"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// loadCommand runs one load generator process: setup, the scenario's schedule, the journal, the summary.
func loadCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("load", flag.ContinueOnError)
	var o generator.CommandOptions
	flags.StringVar(&o.Scenario, "scenario", "scenarios/gate.yaml", "the scenario file (docs/scenarios.md)")
	baseURLs := flags.String("base-url", "http://127.0.0.1:18080", "the system's base URL(s), comma-separated, used round-robin")
	flags.StringVar(&o.Out, "out", "", "run directory for the journal, load-summary.json and load-timeseries.jsonl (default reports/runs/<UTC timestamp>-<scenario>-load)")
	flags.Var((*stackArgumentList)(&o.Sets), "set", "override a scenario field, e.g. schedule.rate=500 or client.duplicates.rate=0.05 (repeatable)")
	flags.Int64Var(&o.Seed, "seed", 0, "seed of every random choice (0: the scenario's, else drawn and printed)")
	flags.StringVar(&o.Segment, "segment", "", "i/N: this process is segment i (from 0) of N: 1/N of the schedule and its own share of the accounts; journal-<i>.jsonl")
	flags.StringVar(&o.StartAt, "start-at", "", "start the schedule at this time (RFC 3339, or Unix milliseconds) after setup: one shared start for many processes")
	flags.StringVar(&o.ReadyFile, "ready-file", "", "after setup, create this file, then wait for --start-file")
	flags.StringVar(&o.StartFile, "start-file", "", "with --ready-file: the file that holds the shared start time (RFC 3339); written by whoever starts the processes")
	flags.DurationVar(&o.StartTimeout, "start-timeout", 10*time.Minute, "how long to wait for --start-file")
	flags.StringVar(&o.Profile, "profile", "", "the system profile: how to speak to a system whose API is not the reference's (profiles/, docs/external.md); default the reference API")
	flags.StringVar(&o.MetricsAddress, "metrics-address", "", "serve Prometheus /metrics at this host:port while the load runs (default: none)")
	flags.StringVar(&o.CPUProfile, "cpu-profile", "", "write a CPU profile of this process over the schedule (setup left out) to this file, for go tool pprof (default: none)")
	maxProcs := flags.Int("max-procs", 0, fmt.Sprintf("the most threads running Go code at once (GOMAXPROCS): a load sharing its machine with the system under test spends less CPU waking threads with fewer; capacity gives one per %d operations a second (docs/performance.md) (0: Go's default, every core)", capacity.LoadRatePerProc))
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if *maxProcs < 0 {
			return exitWith(generator.ExitCouldNotRun, fmt.Errorf("--max-procs %d: want 0 (every core) or more", *maxProcs))
		}
		if *maxProcs > 0 {
			runtime.GOMAXPROCS(*maxProcs)
		}
		o.BaseURLs = runner.SplitList(*baseURLs)
		return exitWith(generator.RunCommand(ctx, o, os.Stdout, os.Stderr), nil)
	}
}
