package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/google/renameio/v2"

	"github.com/ledgerproof/ledgerproof/sut/bench"
)

// benchCommand measures the worker's batched apply against the naive
// one-transaction-per-request design on the same Postgres, in the same run
// (package sut/bench). `make bench` runs it with --require-ratio 5.
func benchCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	config := bench.DefaultConfig()
	flags.StringVar(&config.PostgresURL, "postgres-url", "", "existing Postgres server to run on (postgres://user@host:port/db); each mode run creates and drops a fresh database on it, so the role needs CREATEDB (default: start a private durable cluster, fsync=on, synchronous_commit=on)")
	flags.StringVar(&config.PostgresBinDir, "postgres-bin-dir", "", "directory holding initdb and postgres for the private cluster (default: /usr/lib/postgresql/15/bin, then PATH)")
	flags.StringVar(&config.WorkDir, "work-dir", "", "where the private cluster's temporary directory is created (default: the OS temporary directory)")
	flags.IntVar(&config.Accounts, "accounts", config.Accounts, "user accounts, each funded equally")
	flags.Int64Var(&config.InitialBalanceMinor, "initial-balance", config.InitialBalanceMinor, "funding of each account, in minor units")
	flags.IntVar(&config.Partitions, "partitions", config.Partitions, "partitions: sequential streams applied concurrently, one goroutine each")
	flags.IntVar(&config.PoolSize, "pool-size", config.PoolSize, "Postgres connections of the timed store, the same for every mode (at least --partitions)")
	batchSizes := flags.String("batch-sizes", bench.JoinBatchSizes(config.BatchSizes), "comma-separated batch sizes of the batched modes; --require-ratio checks the largest")
	flags.IntVar(&config.Transfers, "transfers", config.Transfers, "timed transfers per batched mode run")
	flags.IntVar(&config.NaiveTransfers, "naive-transfers", config.NaiveTransfers, "timed transfers per naive mode run (a prefix of the batched workload; rates are per second)")
	flags.IntVar(&config.WarmupTransfers, "warmup-transfers", config.WarmupTransfers, "untimed warm-up transfers before each mode run's timed section (0: none)")
	flags.DurationVar(&config.ModeTimeCap, "mode-time-cap", config.ModeTimeCap, "longest timed section of one mode run; the rate is then what was applied in that time")
	flags.IntVar(&config.Repeats, "repeats", config.Repeats, "runs of each mode, interleaved; the median is reported")
	flags.Uint64Var(&config.Seed, "seed", config.Seed, "seed of the workload (printed; the same seed replays the same transfers)")
	flags.Float64Var(&config.RequireRatio, "require-ratio", 0, "fail unless the largest batch size's median is at least this many times the naive median (0: report only)")
	outputFile := flags.String("output", "", "also write the results as JSON to this file")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		sizes, err := bench.ParseBatchSizes(*batchSizes)
		if err != nil {
			return fmt.Errorf("--batch-sizes: %w", err)
		}
		config.BatchSizes = sizes
		result, err := bench.Run(ctx, config, os.Stdout)
		// The results are written when the run completed, also when the
		// required ratio was not met: that is when they are most needed.
		if err == nil || errors.Is(err, bench.ErrRatioNotMet) {
			err = errors.Join(err, writeResults(*outputFile, result, "bench"))
		}
		return err
	}
}

// writeResults writes a benchmark's results as JSON to path ("": nowhere)
// and says so.
func writeResults(path string, results any, command string) error {
	if path == "" {
		return nil
	}
	content, err := json.MarshalIndent(results, "", "  ")
	if err == nil {
		err = renameio.WriteFile(path, append(content, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Printf("%s: results written to %s\n", command, path)
	return nil
}
