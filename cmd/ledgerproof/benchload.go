package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/ledgerproof/ledgerproof/load/bench"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// benchLoadCommand measures the load engine's own cost (package load/bench, `make bench-load`): the generator
// with its journal against a trivial endpoint, beside a bare net/http loop sending the same requests, each in
// its own process. It exits non-zero when the target is missed. --serve and --bare are the modes the benchmark
// starts its endpoint and its bare client in (the same binary, in processes of their own).
func benchLoadCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("bench-load", flag.ContinueOnError)
	defaults := bench.DefaultConfig()
	rate := flags.Float64("rate", defaults.Rate, "operations per second each side sends")
	duration := flags.Duration("duration", defaults.Duration, "how long each side sends at the rate, per round")
	rounds := flags.Int("rounds", defaults.Rounds, "rounds; each runs the generator and the bare client, alternating which goes first; medians are reported")
	accounts := flags.Int("accounts", defaults.Accounts, "the generator's setup.accounts (and the account ids the bare client names)")
	workers := flags.Int("workers", defaults.Workers, "goroutines of the bare client (its bound on requests in flight)")
	seed := flags.Int64("seed", defaults.Seed, "seed of both sides' choices")
	maxRatio := flags.Float64("max-ratio", defaults.MaxRatio, "target: the generator's CPU per operation over the bare client's, at most")
	minAchieved := flags.Float64("min-achieved", defaults.MinAchieved, "target: the generator's achieved rate over --rate, at least")
	port := flags.Int("port", 0, "the endpoint's port on 127.0.0.1 (default: a free one below 32768)")
	var sets stackArgumentList
	flags.Var(&sets, "set", "an extra `key=value` override of the generator's scenario, as load --set takes (repeatable)")
	workDir := flags.String("work-dir", "", "where the scenario and the generator's run directories go (default: a temporary directory)")
	keep := flags.Bool("keep", false, "keep the generator's run directories (journal, summary) and the work directory")
	verbose := flags.Bool("verbose", false, "print the child processes' output")
	output := flags.String("output", "", "also write the results as JSON to this file")
	serve := flags.String("serve", "", "internal: only run the trivial endpoint on this 127.0.0.1:port (the benchmark starts it as a process of its own)")
	bare := flags.Bool("bare", false, "internal: only run the bare net/http client loop against --target")
	target := flags.String("target", "", "internal, with --bare: the endpoint's base URL")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		switch {
		case *serve != "" && *bare:
			return errors.New("--serve and --bare are two modes: give one")
		case *serve != "":
			return bench.Serve(ctx, *serve, os.Stdout)
		case *bare:
			return bench.Bare(ctx, bench.BareConfig{BaseURL: *target, Rate: *rate, Duration: *duration, Workers: *workers,
				Accounts: *accounts, Seed: *seed}, os.Stdout)
		}
		executable, err := os.Executable()
		if err != nil {
			return fmt.Errorf("the benchmark runs its own executable: %w", err)
		}
		if *port == 0 {
			ports, err := runner.FreePorts(1, nil)
			if err != nil {
				return err
			}
			*port = ports[0]
		}
		config := bench.Config{Executable: executable, Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)),
			Rate: *rate, Duration: *duration, Rounds: *rounds, Accounts: *accounts, Workers: *workers, Seed: *seed,
			LoadSets: sets, MaxRatio: *maxRatio, MinAchieved: *minAchieved, WorkDir: *workDir, KeepRuns: *keep}
		if *verbose {
			config.Verbose = os.Stdout
		}
		started := time.Now()
		result, runError := bench.Run(ctx, config, os.Stdout)
		if result != nil {
			fmt.Printf("bench-load: %s of wall time\n", time.Since(started).Truncate(time.Second))
		}
		if *output != "" && result != nil {
			if err := writeBenchJSON(*output, result); err != nil {
				return errors.Join(runError, err)
			}
			fmt.Printf("bench-load: results written to %s\n", *output)
		}
		return runError
	}
}
