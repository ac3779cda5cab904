package main

import (
	"context"
	"errors"
	"flag"
	"os"

	"github.com/ledgerproof/ledgerproof/load/bench"
)

// benchLoadCommand measures the load engine's own cost (package load/bench, `make bench-load`): the generator
// with its journal against a trivial endpoint, beside a bare net/http loop sending the same requests, each in
// its own process. It exits non-zero when the target is missed. --serve and --bare are the modes the benchmark
// starts its endpoint and its bare client in (the same binary, in processes of their own).
func benchLoadCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("bench-load", flag.ContinueOnError)
	o := bench.CommandOptions{Config: bench.DefaultConfig()}
	flags.Float64Var(&o.Rate, "rate", o.Rate, "operations per second each side sends")
	flags.DurationVar(&o.Duration, "duration", o.Duration, "how long each side sends at the rate, per round")
	flags.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds; each runs the generator and the bare client, alternating which goes first; medians are reported")
	flags.IntVar(&o.Accounts, "accounts", o.Accounts, "the generator's setup.accounts (and the account ids the bare client names)")
	flags.IntVar(&o.Workers, "workers", o.Workers, "goroutines of the bare client (its bound on requests in flight)")
	flags.Int64Var(&o.Seed, "seed", o.Seed, "seed of both sides' choices")
	flags.Float64Var(&o.MaxRatio, "max-ratio", o.MaxRatio, "target: the generator's CPU per operation over the bare client's, at most")
	flags.Float64Var(&o.MinAchieved, "min-achieved", o.MinAchieved, "target: the generator's achieved rate over --rate, at least")
	flags.IntVar(&o.Port, "port", 0, "the endpoint's port on 127.0.0.1 (default: a free one below 32768)")
	var sets stackArgumentList
	flags.Var(&sets, "set", "an extra `key=value` override of the generator's scenario, as load --set takes (repeatable)")
	flags.StringVar(&o.WorkDir, "work-dir", "", "where the scenario and the generator's run directories go (default: a temporary directory)")
	flags.BoolVar(&o.KeepRuns, "keep", false, "keep the generator's run directories (journal, summary) and the work directory")
	flags.BoolVar(&o.Verbose, "verbose", false, "print the child processes' output")
	output := flags.String("output", "", "also write the results as JSON to this file")
	flags.StringVar(&o.Serve, "serve", "", "internal: only run the trivial endpoint on this 127.0.0.1:port (the benchmark starts it as a process of its own)")
	flags.BoolVar(&o.Bare, "bare", false, "internal: only run the bare net/http client loop against --target")
	flags.StringVar(&o.Target, "target", "", "internal, with --bare: the endpoint's base URL")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		o.LoadSets = sets
		result, err := bench.RunCommand(ctx, o, os.Stdout)
		if result != nil {
			err = errors.Join(err, writeResults(*output, result, "bench-load"))
		}
		return err
	}
}
