package generator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/load/profile"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// CommandOptions are the settings of `ledgerproof load` (the CLI's flags of
// the same names).
type CommandOptions struct {
	// Scenario is the scenario file (CLI default scenarios/gate.yaml).
	Scenario string
	// Profile is the system profile file; "": the reference API.
	Profile string
	// BaseURLs are the system's base URLs, used round-robin; at least one.
	BaseURLs []string
	// Out is the run directory; "": reports/runs/<UTC timestamp>-<scenario>-load.
	Out string
	// Sets are the scenario overrides (key=value), in order.
	Sets []string
	// Seed is the seed of every random choice; 0: the scenario's, else drawn and printed.
	Seed int64
	// Segment is "i/N": this process runs segment i (from 0) of N; "": the whole schedule.
	Segment string
	// StartAt is the shared start of the schedule after setup (RFC 3339 or
	// Unix milliseconds); "": at once, or through ReadyFile and StartFile.
	StartAt string
	// ReadyFile is created after setup; then the process waits up to
	// StartTimeout for StartFile and its start time. Both or neither.
	ReadyFile, StartFile string
	StartTimeout         time.Duration
	// MetricsAddress serves Prometheus /metrics at this host:port while the load runs; "": none.
	MetricsAddress string
	// CPUProfile is Config.CPUProfile: a CPU profile of the schedule is written there; "": none.
	CPUProfile string
}

// validate rejects settings that contradict each other or cannot be read;
// the scenario and the profile are checked by prepare.
func (o CommandOptions) validate() error {
	if len(o.BaseURLs) == 0 {
		return errors.New("--base-url: none given")
	}
	if o.Segment != "" {
		if _, _, err := parseSegment(o.Segment); err != nil {
			return err
		}
	}
	switch {
	case o.StartAt != "" && (o.ReadyFile != "" || o.StartFile != ""):
		return errors.New("--start-at and --ready-file/--start-file are two ways to share a start: give one")
	case o.StartAt != "":
		if _, err := parseStartTime(o.StartAt); err != nil {
			return fmt.Errorf("--start-at %q: %w", o.StartAt, err)
		}
	case (o.ReadyFile == "") != (o.StartFile == ""):
		return errors.New("--ready-file and --start-file go together")
	}
	return nil
}

// RunCommand is `ledgerproof load`, one load generator process: it checks
// the options and the scenario, then runs (Run) and returns the exit code:
// 0 passed, 99 a threshold failed, 2 (ExitCouldNotRun) could not run.
func RunCommand(ctx context.Context, o CommandOptions, stdout, stderr io.Writer) int {
	config, err := o.prepare()
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof load: %v\nno load was started (exit %d)\n", err, ExitCouldNotRun)
		return ExitCouldNotRun
	}
	config.Output = stdout
	result, err := Run(ctx, *config)
	if err != nil {
		fmt.Fprintf(stderr, "ledgerproof load: %v\n", err)
		return ExitCouldNotRun
	}
	if result.Problem != "" {
		fmt.Fprintf(stderr, "ledgerproof load: %s\n", result.Problem)
	}
	return result.ExitCode
}

// prepare checks everything before anything is sent.
func (o CommandOptions) prepare() (*Config, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	s, err := scenario.Load(o.Scenario, o.Sets)
	if err != nil {
		return nil, err
	}
	config := &Config{Scenario: s, BaseURLs: o.BaseURLs, MetricsAddress: o.MetricsAddress, CPUProfile: o.CPUProfile}
	if o.Profile != "" {
		if config.Profile, err = profile.Load(o.Profile); err != nil {
			return nil, err
		}
	}
	if o.Segment != "" {
		config.Segment, config.Segments, _ = parseSegment(o.Segment) // validated
	}
	switch {
	case o.Seed != 0:
		config.Seed = o.Seed
	case s.Seed != 0:
		config.Seed = s.Seed
	default:
		config.Seed = 1 + rand.Int64N(1<<31-2)
	}
	if o.Out == "" {
		o.Out = filepath.Join("reports", "runs", time.Now().UTC().Format("20060102T150405Z")+"-"+s.Name+"-load")
	}
	config.RunDir = o.Out
	journal := filepath.Join(o.Out, FileName(JournalBaseName, ".jsonl", config.Segment, max(config.Segments, 1)))
	if info, err := os.Stat(journal); err == nil && info.Size() > 0 {
		return nil, fmt.Errorf("--out %s already holds %s: give a new run directory (one run's journal must not mix with another's)", o.Out, filepath.Base(journal))
	}
	switch {
	case o.StartAt != "":
		at, _ := parseStartTime(o.StartAt) // validated
		config.StartGate = func(context.Context) (time.Time, error) { return at, nil }
	case o.ReadyFile != "":
		config.StartGate = fileStartGate(o.ReadyFile, o.StartFile, o.StartTimeout)
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
