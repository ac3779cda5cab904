package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/bench"
)

// benchCommand measures the worker's batched apply against the naive
// one-transaction-per-request design on the same Postgres, in the same run
// (package sut/bench). `make bench` runs it with --require-ratio 5.
func benchCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	defaults := bench.DefaultConfig()
	postgresURL := flags.String("postgres-url", "", "existing Postgres server to run on (postgres://user@host:port/db); each mode run creates and drops a fresh database on it, so the role needs CREATEDB (default: start a private durable cluster, fsync=on, synchronous_commit=on)")
	postgresBinDir := flags.String("postgres-bin-dir", "", "directory holding initdb and postgres for the private cluster (default: /usr/lib/postgresql/15/bin, then PATH)")
	workDir := flags.String("work-dir", "", "where the private cluster's temporary directory is created (default: the OS temporary directory)")
	accounts := flags.Int("accounts", defaults.Accounts, "user accounts, each funded equally")
	initialBalance := flags.Int64("initial-balance", defaults.InitialBalanceMinor, "funding of each account, in minor units")
	partitions := flags.Int("partitions", defaults.Partitions, "partitions: sequential streams applied concurrently, one goroutine each")
	poolSize := flags.Int("pool-size", defaults.PoolSize, "Postgres connections of the timed store, the same for every mode (at least --partitions)")
	batchSizes := flags.String("batch-sizes", joinBatchSizes(defaults.BatchSizes), "comma-separated batch sizes of the batched modes; --require-ratio checks the largest")
	transfers := flags.Int("transfers", defaults.Transfers, "timed transfers per batched mode run")
	naiveTransfers := flags.Int("naive-transfers", defaults.NaiveTransfers, "timed transfers per naive mode run (a prefix of the batched workload; rates are per second)")
	warmup := flags.Int("warmup-transfers", defaults.WarmupTransfers, "untimed warm-up transfers before each mode run's timed section (0: none)")
	timeCap := flags.Duration("mode-time-cap", defaults.ModeTimeCap, "longest timed section of one mode run; the rate is then what was applied in that time")
	repeats := flags.Int("repeats", defaults.Repeats, "runs of each mode, interleaved; the median is reported")
	seed := flags.Uint64("seed", defaults.Seed, "seed of the workload (printed; the same seed replays the same transfers)")
	requireRatio := flags.Float64("require-ratio", 0, "fail unless the largest batch size's median is at least this many times the naive median (0: report only)")
	outputFile := flags.String("output", "", "also write the results as JSON to this file")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		sizes, err := parseBatchSizes(*batchSizes)
		if err != nil {
			return fmt.Errorf("--batch-sizes: %w", err)
		}
		config := defaults
		config.PostgresURL = *postgresURL
		config.PostgresBinDir = *postgresBinDir
		config.WorkDir = *workDir
		config.Accounts = *accounts
		config.InitialBalanceMinor = *initialBalance
		config.Partitions = *partitions
		config.PoolSize = *poolSize
		config.BatchSizes = sizes
		config.Transfers = *transfers
		config.NaiveTransfers = *naiveTransfers
		config.WarmupTransfers = *warmup
		config.ModeTimeCap = *timeCap
		config.Repeats = *repeats
		config.Seed = *seed
		config.RequireRatio = *requireRatio
		result, runError := bench.Run(ctx, config, os.Stdout)
		// The results are written when the run completed, also when the
		// required ratio was not met: that is when they are most needed.
		if *outputFile != "" && (runError == nil || errors.Is(runError, bench.ErrRatioNotMet)) {
			if err := writeBenchJSON(*outputFile, result); err != nil {
				return errors.Join(runError, err)
			}
			fmt.Printf("bench: results written to %s\n", *outputFile)
		}
		return runError
	}
}

func writeBenchJSON(path string, value any) error {
	content, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(content, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func joinBatchSizes(values []int) string {
	parts := make([]string, len(values))
	for i, value := range values {
		parts[i] = strconv.Itoa(value)
	}
	return strings.Join(parts, ",")
}

func parseBatchSizes(list string) ([]int, error) {
	var values []int
	for _, part := range strings.Split(list, ",") {
		value, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%q is not a comma-separated list of integers", list)
		}
		values = append(values, value)
	}
	return values, nil
}
