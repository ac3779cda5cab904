// Package bench measures the load engine's own cost (`ledgerproof bench-load`, `make bench-load`): the
// generator (`ledgerproof load`, with its journal, its metrics and its client) against a trivial endpoint,
// side by side in one run with a bare net/http client loop that sends the same requests at the same rate. Each
// runs in its own process, and so does the endpoint, so that a process's CPU (user + system) is the client
// side's alone; the figure is CPU per operation, and the finding is their ratio and whether one generator
// process held the rate without dropping iterations.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/metrics"
)

// ErrTargetMissed is returned by Run when the measured figures miss the target (the result is complete).
var ErrTargetMissed = errors.New("target missed (figures above)")

// generatorStartPrefix starts the line `ledgerproof load` prints as its schedule starts (load/generator).
const generatorStartPrefix = "load: constant-arrival-rate, "

// Config is one benchmark run. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Executable is the ledgerproof binary: it is run as the endpoint (bench-load --serve), the generator
	// (load) and the bare client (bench-load --bare). Required.
	Executable string
	// Address is the endpoint's 127.0.0.1:port. Required.
	Address string
	// Rate is the operations per second both sides send. Default 10,000: the rate the generator must hold.
	Rate float64
	// Duration is how long each side sends at the rate. Default 10s.
	Duration time.Duration
	// Rounds is how many times each side runs, alternating (the order flips every round so that a noisy moment
	// does not always hit the same side); medians are reported. Default 3.
	Rounds int
	// Accounts is the generator's setup.accounts, and the account ids the bare client names. Default 200.
	Accounts int
	// Workers bounds the bare client's goroutines (and so its requests in flight). Default 64.
	Workers int
	// Seed seeds both sides' choices (kinds, accounts, amounts). Default 1.
	Seed int64
	// LoadSets are extra `--set` overrides for the generator's scenario (e.g. schedule.max_in_flight=1000).
	LoadSets []string
	// MaxRatio is the target: the generator's CPU per operation over the bare client's, at most. Default 1.5.
	MaxRatio float64
	// MinAchieved is the target: the generator's achieved operations per second over Rate, at least.
	// Default 0.95.
	MinAchieved float64
	// WorkDir receives the scenario and the generator's run directories (removed after each round unless
	// KeepRuns). Default: a new temporary directory, removed at the end.
	WorkDir  string
	KeepRuns bool
	// Verbose, when set, receives the child processes' output.
	Verbose io.Writer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Rate: 10_000, Duration: 10 * time.Second, Rounds: 3, Accounts: 200, Workers: 64, Seed: 1,
		MaxRatio: 1.5, MinAchieved: 0.95}
}

func (c *Config) validate() error {
	defaults := DefaultConfig()
	if c.Executable == "" || c.Address == "" {
		return errors.New("the executable and the endpoint's address are needed")
	}
	if host, _, err := net.SplitHostPort(c.Address); err != nil || host != "127.0.0.1" {
		return fmt.Errorf("endpoint address %q: want 127.0.0.1:port", c.Address)
	}
	if c.Rate == 0 {
		c.Rate = defaults.Rate
	}
	if c.Duration == 0 {
		c.Duration = defaults.Duration
	}
	if c.Rounds == 0 {
		c.Rounds = defaults.Rounds
	}
	if c.Accounts == 0 {
		c.Accounts = defaults.Accounts
	}
	if c.Workers == 0 {
		c.Workers = defaults.Workers
	}
	if c.Seed == 0 {
		c.Seed = defaults.Seed
	}
	if c.MaxRatio == 0 {
		c.MaxRatio = defaults.MaxRatio
	}
	if c.MinAchieved == 0 {
		c.MinAchieved = defaults.MinAchieved
	}
	switch {
	case c.Rate < 1 || c.Rate > 1_000_000:
		return fmt.Errorf("rate %v: want 1 to 1000000", c.Rate)
	case c.Duration < time.Second || c.Duration > 10*time.Minute:
		return fmt.Errorf("duration %s: want 1s to 10m", c.Duration)
	case c.Rounds < 1 || c.Rounds > 20:
		return fmt.Errorf("%d rounds: want 1 to 20", c.Rounds)
	case c.Accounts < 2 || c.Accounts > 100_000:
		return fmt.Errorf("%d accounts: want 2 to 100000", c.Accounts)
	case c.Workers < 1 || c.Workers > 10_000:
		return fmt.Errorf("%d workers: want 1 to 10000", c.Workers)
	case c.MaxRatio < 1 || c.MinAchieved <= 0 || c.MinAchieved > 1:
		return fmt.Errorf("target ratio %v, achieved %v: want a ratio of 1 or more and a fraction in (0, 1]", c.MaxRatio, c.MinAchieved)
	}
	return nil
}

// Side is one process's figures in one round.
type Side struct {
	// Operations completed in the measured window (the generator's money operations; the bare client's
	// answered requests).
	Operations int64 `json:"operations"`
	// CPUSeconds is the process's user + system CPU from its schedule's start to its exit (start-up and the
	// generator's setup excluded).
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUMillisecondsPerOperation is CPUSeconds per operation, in milliseconds.
	CPUMillisecondsPerOperation float64 `json:"cpu_ms_per_operation"`
	// WallSeconds is from the schedule's start to the process's exit; CPUCores is CPUSeconds over it.
	WallSeconds float64 `json:"wall_seconds"`
	CPUCores    float64 `json:"cpu_cores"`
	// OperationsPerSecond is the achieved rate: the generator's from its summary, the bare client's over its
	// loop.
	OperationsPerSecond float64 `json:"operations_per_second"`
	// Dropped iterations (generator only); Failed operations (errors for the generator, failed requests for
	// the bare client).
	Dropped int64 `json:"dropped"`
	Failed  int64 `json:"failed"`
	// JournalLines is the generator's journal's line count (its setup's sign-ups and fundings included).
	JournalLines int64 `json:"journal_lines,omitempty"`
	// BehindMaxMilliseconds is the most the bare loop sent a request after it was due.
	BehindMaxMilliseconds float64 `json:"behind_max_ms,omitempty"`
}

// Round is one round: both sides, and the ratio of their CPU per operation.
type Round struct {
	Number    int     `json:"round"`
	Order     string  `json:"order"`
	Generator Side    `json:"generator"`
	Bare      Side    `json:"bare"`
	Ratio     float64 `json:"ratio"`
}

// Result is the benchmark's result.
type Result struct {
	Rate            float64 `json:"rate"`
	DurationSeconds float64 `json:"duration_seconds"`
	Accounts        int     `json:"accounts"`
	Seed            int64   `json:"seed"`
	Rounds          []Round `json:"rounds"`
	// Medians over the rounds.
	GeneratorCPUMillisecondsPerOperation float64 `json:"generator_cpu_ms_per_operation"`
	BareCPUMillisecondsPerOperation      float64 `json:"bare_cpu_ms_per_operation"`
	// Ratio is the median of the rounds' ratios (each round's pair ran side by side).
	Ratio                        float64 `json:"ratio"`
	GeneratorOperationsPerSecond float64 `json:"generator_operations_per_second"`
	GeneratorDropped             int64   `json:"generator_dropped"`
	// Misses says which targets were missed (empty: met).
	Misses []string `json:"misses"`
}

// Run starts the endpoint, runs the rounds, prints each round and the verdict to out, and stops every process
// it started. It returns ErrTargetMissed (with the complete result) when the target was missed.
func Run(ctx context.Context, config Config, out io.Writer) (*Result, error) {
	if err := config.validate(); err != nil {
		return nil, err
	}
	workDir := config.WorkDir
	if workDir == "" {
		created, err := os.MkdirTemp("", "ledgerproof-bench-load-")
		if err != nil {
			return nil, fmt.Errorf("work directory: %w", err)
		}
		workDir = created
		if !config.KeepRuns {
			defer os.RemoveAll(created)
		}
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	scenarioPath := filepath.Join(workDir, "bench-load.yaml")
	if err := os.WriteFile(scenarioPath, []byte(scenarioText(config)), 0o644); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}

	endpoint, err := startChild(ctx, childSpec{name: "endpoint", executable: config.Executable,
		args:    []string{"bench-load", "--serve", config.Address},
		timeout: time.Duration(2*config.Rounds)*childTimeout(config) + time.Minute, verbose: config.Verbose})
	if err != nil {
		return nil, err
	}
	defer endpoint.stop()
	if _, err := endpoint.waitForLine(endpointReadyPrefix, 30*time.Second); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "bench-load: endpoint %s (pid %d); %s/s for %s per side, %d accounts, %d rounds, seed %d; bare client: %d goroutines\n",
		config.Address, endpoint.command.Process.Pid, formatNumber(config.Rate), config.Duration, config.Accounts,
		config.Rounds, config.Seed, config.Workers)
	fmt.Fprintf(out, "bench-load: generator = %s load --scenario %s --base-url http://%s --seed %d%s\n",
		filepath.Base(config.Executable), scenarioPath, config.Address, config.Seed, setsText(config.LoadSets))

	result := &Result{Rate: config.Rate, DurationSeconds: config.Duration.Seconds(), Accounts: config.Accounts, Seed: config.Seed}
	for number := 1; number <= config.Rounds; number++ {
		round := Round{Number: number, Order: "generator, bare"}
		if number%2 == 0 {
			round.Order = "bare, generator"
		}
		for _, side := range strings.Split(round.Order, ", ") {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var err error
			if side == "generator" {
				round.Generator, err = runGenerator(ctx, config, scenarioPath, filepath.Join(workDir, "round-"+strconv.Itoa(number)))
			} else {
				round.Bare, err = runBare(ctx, config)
			}
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", number, side, err)
			}
		}
		if round.Bare.CPUMillisecondsPerOperation > 0 {
			round.Ratio = round.Generator.CPUMillisecondsPerOperation / round.Bare.CPUMillisecondsPerOperation
		}
		result.Rounds = append(result.Rounds, round)
		printRound(out, round)
	}
	summarise(result, config)
	printResult(out, result, config)
	if len(result.Misses) > 0 {
		return result, ErrTargetMissed
	}
	return result, nil
}

// scenarioText is the generator's scenario: the gate's mix at the benchmark's rate, no thresholds (it measures).
func scenarioText(config Config) string {
	return fmt.Sprintf(`# bench-load: the load engine's own cost against a trivial endpoint (written by ledgerproof bench-load).
name: bench-load
description: the generator's CPU per operation, beside a bare net/http loop
seed: %d
setup:
  accounts: %d
  timeout: 60s
schedule:
  executor: constant-arrival-rate
  rate: %s
  duration: %s
  graceful_stop: 10s
workload:
  kind: mixed
  mix: {deposit: 3, withdrawal: 2, transfer: 5}
`, config.Seed, config.Accounts, strconv.FormatFloat(config.Rate, 'f', -1, 64), config.Duration)
}

func setsText(sets []string) string {
	var b strings.Builder
	for _, set := range sets {
		b.WriteString(" --set ")
		b.WriteString(set)
	}
	return b.String()
}

// childTimeout bounds one side's process: its schedule, which a generator that fell behind stretches (its
// last iteration starts late), the generator's setup (bounded to 60s by the scenario) and graceful stop (10s),
// with room to start and write its files.
func childTimeout(config Config) time.Duration {
	return 3*config.Duration + 3*time.Minute
}

// runGenerator runs `ledgerproof load` for one round and reads its summary and journal.
func runGenerator(ctx context.Context, config Config, scenarioPath, runDir string) (Side, error) {
	args := []string{"load", "--scenario", scenarioPath, "--base-url", "http://" + config.Address, "--out", runDir,
		"--seed", strconv.FormatInt(config.Seed, 10)}
	for _, set := range config.LoadSets {
		args = append(args, "--set", set)
	}
	process, err := startChild(ctx, childSpec{name: "generator", executable: config.Executable, args: args,
		timeout: childTimeout(config), startPrefix: generatorStartPrefix, verbose: config.Verbose})
	if err != nil {
		return Side{}, err
	}
	run, err := process.wait()
	if err != nil {
		return Side{}, err
	}
	if !config.KeepRuns {
		defer os.RemoveAll(runDir)
	}
	if run.exitCode != generator.ExitPassed || !run.started {
		return Side{}, fmt.Errorf("the generator exited %d (schedule started: %v):\n%s", run.exitCode, run.started, run.tail)
	}
	summary, err := metrics.ReadSummary(filepath.Join(runDir, generator.SummaryBaseName+".json"))
	if err != nil {
		return Side{}, err
	}
	figure := func(metric, name string) float64 { return summary.Metrics[metric].Figures[name] }
	side := Side{
		Operations:          int64(figure("operations", "count")),
		OperationsPerSecond: figure("operations", "rate"),
		Dropped:             int64(figure("dropped_iterations", "count")),
		Failed:              int64(figure("errors", "passes")),
	}
	if side.JournalLines, err = countLines(filepath.Join(runDir, generator.JournalBaseName+".jsonl")); err != nil {
		return Side{}, err
	}
	// Every money operation and, from setup, each account's sign-up and funding deposit.
	if want := side.Operations + 2*int64(config.Accounts); side.JournalLines != want {
		return Side{}, fmt.Errorf("the journal has %d lines, want %d (%d operations and %d accounts' sign-up and funding)",
			side.JournalLines, want, side.Operations, config.Accounts)
	}
	side.measured(run)
	return side, nil
}

// runBare runs the bare client process for one round.
func runBare(ctx context.Context, config Config) (Side, error) {
	args := []string{"bench-load", "--bare", "--target", "http://" + config.Address,
		"--rate", strconv.FormatFloat(config.Rate, 'f', -1, 64), "--duration", config.Duration.String(),
		"--workers", strconv.Itoa(config.Workers), "--accounts", strconv.Itoa(config.Accounts),
		"--seed", strconv.FormatInt(config.Seed, 10)}
	process, err := startChild(ctx, childSpec{name: "bare", executable: config.Executable, args: args,
		timeout: childTimeout(config), startPrefix: bareStartLine, resultPrefix: bareResultPrefix, verbose: config.Verbose})
	if err != nil {
		return Side{}, err
	}
	run, err := process.wait()
	if err != nil {
		return Side{}, err
	}
	if run.exitCode != 0 || !run.started || run.result == "" {
		return Side{}, fmt.Errorf("the bare client exited %d without its result:\n%s", run.exitCode, run.tail)
	}
	var bare BareResult
	if err := json.Unmarshal([]byte(run.result), &bare); err != nil {
		return Side{}, fmt.Errorf("the bare client's result %q: %w", run.result, err)
	}
	side := Side{Operations: bare.OK + bare.Failed, Failed: bare.Failed, BehindMaxMilliseconds: bare.BehindMaxMilliseconds}
	if bare.Seconds > 0 {
		side.OperationsPerSecond = float64(side.Operations) / bare.Seconds
	}
	side.measured(run)
	return side, nil
}

// measured fills the CPU figures from the process's run.
func (s *Side) measured(run childRun) {
	cpu := run.cpuTotal - run.cpuAtStart
	wall := run.exitAt.Sub(run.startAt)
	s.CPUSeconds = cpu.Seconds()
	s.WallSeconds = wall.Seconds()
	if wall > 0 {
		s.CPUCores = cpu.Seconds() / wall.Seconds()
	}
	if s.Operations > 0 {
		s.CPUMillisecondsPerOperation = s.CPUSeconds * 1000 / float64(s.Operations)
	}
}

// countLines counts a file's newlines.
func countLines(path string) (int64, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	buffer := make([]byte, 256<<10)
	var lines int64
	for {
		n, err := file.Read(buffer)
		lines += int64(bytes.Count(buffer[:n], []byte{'\n'}))
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}

// summarise computes the medians and the misses.
func summarise(result *Result, config Config) {
	pick := func(value func(Round) float64) float64 {
		values := make([]float64, len(result.Rounds))
		for i, round := range result.Rounds {
			values[i] = value(round)
		}
		return median(values)
	}
	result.GeneratorCPUMillisecondsPerOperation = pick(func(r Round) float64 { return r.Generator.CPUMillisecondsPerOperation })
	result.BareCPUMillisecondsPerOperation = pick(func(r Round) float64 { return r.Bare.CPUMillisecondsPerOperation })
	result.Ratio = pick(func(r Round) float64 { return r.Ratio })
	result.GeneratorOperationsPerSecond = pick(func(r Round) float64 { return r.Generator.OperationsPerSecond })
	result.GeneratorDropped = int64(pick(func(r Round) float64 { return float64(r.Generator.Dropped) }))
	result.Misses = nil
	if result.Ratio > config.MaxRatio {
		result.Misses = append(result.Misses, fmt.Sprintf("CPU ratio %.2f > %.2f", result.Ratio, config.MaxRatio))
	}
	if result.GeneratorDropped > 0 {
		result.Misses = append(result.Misses, fmt.Sprintf("%d dropped iterations at %s/s", result.GeneratorDropped, formatNumber(config.Rate)))
	}
	if result.GeneratorOperationsPerSecond < config.MinAchieved*config.Rate {
		result.Misses = append(result.Misses, fmt.Sprintf("achieved %.0f ops/s < %.0f%% of %s/s",
			result.GeneratorOperationsPerSecond, config.MinAchieved*100, formatNumber(config.Rate)))
	}
}

// median of values (the mean of the middle two for an even count); 0 for none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	middle := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[middle]
	}
	return (sorted[middle-1] + sorted[middle]) / 2
}

func formatNumber(value float64) string { return strconv.FormatFloat(value, 'f', -1, 64) }

func printRound(out io.Writer, round Round) {
	g, b := round.Generator, round.Bare
	fmt.Fprintf(out, "round %d (%s):\n", round.Number, round.Order)
	fmt.Fprintf(out, "  generator: %7d ops, %8.1f ops/s, dropped %d, errors %d, journal %d lines; CPU %6.2f s over %5.1f s (%.2f cores) = %.4f ms/op\n",
		g.Operations, g.OperationsPerSecond, g.Dropped, g.Failed, g.JournalLines, g.CPUSeconds, g.WallSeconds, g.CPUCores, g.CPUMillisecondsPerOperation)
	fmt.Fprintf(out, "  bare:      %7d ops, %8.1f ops/s, failed %d, behind at most %.1f ms;       CPU %6.2f s over %5.1f s (%.2f cores) = %.4f ms/op\n",
		b.Operations, b.OperationsPerSecond, b.Failed, b.BehindMaxMilliseconds, b.CPUSeconds, b.WallSeconds, b.CPUCores, b.CPUMillisecondsPerOperation)
	fmt.Fprintf(out, "  ratio generator/bare: %.2f\n", round.Ratio)
}

func printResult(out io.Writer, result *Result, config Config) {
	fmt.Fprintf(out, "\nbench-load: medians of %d rounds at %s/s for %s:\n", len(result.Rounds), formatNumber(config.Rate), config.Duration)
	fmt.Fprintf(out, "  %-28s %12s %12s %10s\n", "", "CPU-ms/op", "ops/s", "dropped")
	fmt.Fprintf(out, "  %-28s %12.4f %12.1f %10d\n", "generator (load + journal)", result.GeneratorCPUMillisecondsPerOperation,
		result.GeneratorOperationsPerSecond, result.GeneratorDropped)
	bareRates := make([]float64, len(result.Rounds))
	for i, round := range result.Rounds {
		bareRates[i] = round.Bare.OperationsPerSecond
	}
	fmt.Fprintf(out, "  %-28s %12.4f %12.1f %10s\n", "bare net/http loop", result.BareCPUMillisecondsPerOperation, median(bareRates), "-")
	fmt.Fprintf(out, "  ratio generator/bare (median of the rounds' ratios): %.2f (target at most %.2f)\n", result.Ratio, config.MaxRatio)
	if len(result.Misses) == 0 {
		fmt.Fprintf(out, "bench-load: target met: ratio at most %.2f, no dropped iterations, at least %.0f%% of %s/s achieved\n",
			config.MaxRatio, config.MinAchieved*100, formatNumber(config.Rate))
		return
	}
	fmt.Fprintf(out, "bench-load: TARGET MISSED: %s\n", strings.Join(result.Misses, "; "))
}
