package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/profile"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// loadOptions are the flags of `ledgerproof load`.
type loadOptions struct {
	scenario       string
	profile        string
	baseURL        string
	out            string
	sets           stackArgumentList
	seed           int64
	segment        string
	startAt        string
	readyFile      string
	startFile      string
	startTimeout   time.Duration
	metricsAddress string
}

// loadCommand runs one load generator process: setup, the scenario's schedule, the journal, the summary.
func loadCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("load", flag.ContinueOnError)
	var o loadOptions
	flags.StringVar(&o.scenario, "scenario", "scenarios/gate.yaml", "the scenario file (docs/scenarios.md)")
	flags.StringVar(&o.baseURL, "base-url", "http://127.0.0.1:58080", "the system's base URL(s), comma-separated, used round-robin")
	flags.StringVar(&o.out, "out", "", "run directory for the journal, load-summary.json and load-timeseries.jsonl (default reports/runs/<UTC timestamp>-<scenario>-load)")
	flags.Var(&o.sets, "set", "override a scenario field, e.g. schedule.rate=500 or client.duplicates.rate=0.05 (repeatable)")
	flags.Int64Var(&o.seed, "seed", 0, "seed of every random choice (0: the scenario's, else drawn and printed)")
	flags.StringVar(&o.segment, "segment", "", "i/N: this process is segment i (from 0) of N: 1/N of the schedule and its own share of the accounts; journal-<i>.jsonl")
	flags.StringVar(&o.startAt, "start-at", "", "start the schedule at this time (RFC 3339, or Unix milliseconds) after setup: one shared start for many processes")
	flags.StringVar(&o.readyFile, "ready-file", "", "after setup, create this file, then wait for --start-file")
	flags.StringVar(&o.startFile, "start-file", "", "with --ready-file: the file that holds the shared start time (RFC 3339); written by whoever starts the processes")
	flags.DurationVar(&o.startTimeout, "start-timeout", 10*time.Minute, "how long to wait for --start-file")
	flags.StringVar(&o.profile, "profile", "", "the system profile: how to speak to a system whose API is not the reference's (profiles/, docs/external.md); default the reference API")
	flags.StringVar(&o.metricsAddress, "metrics-address", "", "serve Prometheus /metrics at this host:port while the load runs (default: none)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		os.Exit(loadMain(ctx, o, os.Stdout, os.Stderr))
		return nil
	}
}

// loadMain runs the command and returns its exit code: 0 passed, 99 a threshold failed, 2 could not run.
func loadMain(ctx context.Context, o loadOptions, stdout, stderr io.Writer) int {
	config, err := prepareLoad(o)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof load: %v\nno load was started (exit %d)\n", err, generator.ExitCouldNotRun)
		return generator.ExitCouldNotRun
	}
	config.Output = stdout
	result, err := generator.Run(ctx, *config)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof load: %v\n", err)
		return generator.ExitCouldNotRun
	}
	if result.Problem != "" {
		fmt.Fprintf(stderr, "ledgerproof load: %s\n", result.Problem)
	}
	return result.ExitCode
}

// prepareLoad checks everything before anything is sent.
func prepareLoad(o loadOptions) (*generator.Config, error) {
	s, err := scenario.Load(o.scenario, o.sets)
	if err != nil {
		return nil, err
	}
	config := &generator.Config{Scenario: s, BaseURLs: runner.SplitList(o.baseURL), MetricsAddress: o.metricsAddress}
	if o.profile != "" {
		if config.Profile, err = profile.Load(o.profile); err != nil {
			return nil, err
		}
	}
	if len(config.BaseURLs) == 0 {
		return nil, errors.New("--base-url: none given")
	}
	if o.segment != "" {
		if config.Segment, config.Segments, err = parseSegment(o.segment); err != nil {
			return nil, err
		}
	}
	switch {
	case o.seed != 0:
		config.Seed = o.seed
	case s.Seed != 0:
		config.Seed = s.Seed
	default:
		config.Seed = 1 + rand.Int64N(1<<31-2)
	}
	if o.out == "" {
		o.out = filepath.Join("reports", "runs", time.Now().UTC().Format("20060102T150405Z")+"-"+s.Name+"-load")
	}
	config.RunDir = o.out
	journal := filepath.Join(o.out, generator.FileName(generator.JournalBaseName, ".jsonl", config.Segment, max(config.Segments, 1)))
	if info, err := os.Stat(journal); err == nil && info.Size() > 0 {
		return nil, fmt.Errorf("--out %s already holds %s: give a new run directory (one run's journal must not mix with another's)", o.out, filepath.Base(journal))
	}
	switch {
	case o.startAt != "" && (o.readyFile != "" || o.startFile != ""):
		return nil, errors.New("--start-at and --ready-file/--start-file are two ways to share a start: give one")
	case o.startAt != "":
		at, err := parseStartTime(o.startAt)
		if err != nil {
			return nil, fmt.Errorf("--start-at %q: %w", o.startAt, err)
		}
		config.StartGate = func(context.Context) (time.Time, error) { return at, nil }
	case (o.readyFile == "") != (o.startFile == ""):
		return nil, errors.New("--ready-file and --start-file go together")
	case o.readyFile != "":
		config.StartGate = fileStartGate(o.readyFile, o.startFile, o.startTimeout)
	}
	return config, nil
}

// parseSegment reads "i/N" with 0 <= i < N.
func parseSegment(text string) (segment, segments int, err error) {
	left, right, ok := strings.Cut(text, "/")
	index, indexErr := strconv.Atoi(strings.TrimSpace(left))
	count, countErr := strconv.Atoi(strings.TrimSpace(right))
	switch {
	case !ok || indexErr != nil || countErr != nil:
		return 0, 0, fmt.Errorf("--segment %q: want i/N, e.g. 0/2 (segments count from 0)", text)
	case count < 1 || count > 1000:
		return 0, 0, fmt.Errorf("--segment %q: N must be 1 to 1000", text)
	case index < 0 || index >= count:
		return 0, 0, fmt.Errorf("--segment %q: i must be 0 to %d (segments count from 0)", text, count-1)
	}
	return index, count, nil
}

// parseStartTime reads RFC 3339 or Unix milliseconds.
func parseStartTime(text string) (time.Time, error) {
	if milliseconds, err := strconv.ParseInt(text, 10, 64); err == nil {
		return time.UnixMilli(milliseconds), nil
	}
	return time.Parse(time.RFC3339Nano, text)
}

// fileStartGate creates readyFile after setup, then waits for startFile and returns the time it holds.
func fileStartGate(readyFile, startFile string, timeout time.Duration) func(ctx context.Context) (time.Time, error) {
	return func(ctx context.Context) (time.Time, error) {
		if err := os.WriteFile(readyFile, []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
			return time.Time{}, fmt.Errorf("ready file: %w", err)
		}
		deadline := time.Now().Add(timeout)
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			if content, err := os.ReadFile(startFile); err == nil && strings.HasSuffix(string(content), "\n") {
				return parseStartTime(strings.TrimSpace(string(content)))
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("no start time in %s within %s", startFile, timeout)
			}
			select {
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			case <-ticker.C:
			}
		}
	}
}
