package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// runJobOptions returns the job options the run command makes of args
// (runCommand passes them to runner.RunJob).
func runJobOptions(t *testing.T, args ...string) (runner.JobOptions, error) {
	t.Helper()
	var o runFlags
	flags := newRunFlags(&o)
	if err := parseFlags(flags, args); err != nil {
		t.Fatal(err)
	}
	return o.jobOptions(flags)
}

// TestRunJobOptions: what the run command resolves besides the flags bound to
// runner.JobOptions reaches them: the seeded bugs (checked against their
// unsafe switch), the flags a replay repeats, EnvName; and a replay's
// recorded flags the same way.
func TestRunJobOptions(t *testing.T) {
	job, err := runJobOptions(t, "--seeded-bug", "skip-dedupe,no-idempotency", "--unsafe-allow-seeded-bugs", "--rate", "7")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(job.SeededBugs, []string{"no-idempotency", "skip-dedupe"}) || job.Rate != "7" ||
		!slices.Equal(job.GivenArgs, []string{"--rate=7", "--seeded-bug=skip-dedupe,no-idempotency", "--unsafe-allow-seeded-bugs=true"}) {
		t.Errorf("job options: seeded bugs %q, rate %q, given %q", job.SeededBugs, job.Rate, job.GivenArgs)
	}
	if job.EnvName == nil || job.EnvName("postgres-url") != "LEDGERPROOF_POSTGRES_URL" {
		t.Error("EnvName is not the CLI's")
	}
	if job.HardStop != nil {
		t.Error("HardStop set before the command runs: it is the command's, from the signals")
	}

	if _, err := runJobOptions(t, "--seeded-bug", "skip-dedupe"); err == nil || !strings.Contains(err.Error(), "--unsafe-allow-seeded-bugs") {
		t.Errorf("a seeded bug without the unsafe switch: %v, want it refused", err)
	}

	dir := t.TempDir()
	record := &runner.RunFile{ID: "run-1", Seed: 77, Replay: &runner.Replay{
		Args:         []string{"--seeded-bug=skip-dedupe", "--unsafe-allow-seeded-bugs=true", "--seed=77"},
		ScenarioFile: "scenario.yaml"}}
	if err := record.Write(dir); err != nil {
		t.Fatal(err)
	}
	job, err = runJobOptions(t, "--replay", dir, "--out", filepath.Join(dir, "again"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(job.SeededBugs, []string{"skip-dedupe"}) || job.Seed != "77" || job.EnvName == nil ||
		job.Scenario != filepath.Join(dir, "scenario.yaml") || job.Out != filepath.Join(dir, "again") {
		t.Errorf("replay's job options: seeded bugs %q, seed %q, scenario %s, out %s", job.SeededBugs, job.Seed, job.Scenario, job.Out)
	}
}

// TestRunRefusedExitsTwo: a run the job's checks refuse exits 2 through
// main's one exit, with the refusal printed once (RefuseJob's lines, nothing
// added), and nothing started: no run directory, no stack directory.
func TestRunRefusedExitsTwo(t *testing.T) {
	dir := t.TempDir()
	out, stackDir := filepath.Join(dir, "run"), filepath.Join(dir, "stack")
	code, stdout, stderr := runCLI(t, "run", "--generators", "0", "--out", out, "--stack-dir", stackDir)
	want := "ledgerproof run: --generators 0: want 1 to 64\nnothing was started (exit 2, could-not-run)\n"
	if code != runner.ExitCouldNotRun || stderr != want || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, no output and stderr %q", code, stdout, stderr, want)
	}
	for _, path := range []string{out, stackDir} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want nothing there", path, err)
		}
	}

	// A combination of flags the job refuses, seen by a caller of the command.
	err := startError(t, "run", "--stack", "compose", "--seeded-bug", "skip-dedupe", "--unsafe-allow-seeded-bugs", "--out", out)
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != runner.ExitCouldNotRun || exit.err != nil {
		t.Errorf("seeded bug on a compose project: %#v, want exit 2 with the message already printed", err)
	}
}

// TestAfterSecondInterrupt: the hard stop ends at the first interrupt after
// the run's context ended, saying so, and not before; listening for it
// starts only once that context has ended (the first interrupt is main's);
// stop ends it quietly.
func TestAfterSecondInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	interrupts := make(chan os.Signal, 1)
	listening, stoppedListening := make(chan struct{}), make(chan struct{})
	listen := func() (<-chan os.Signal, func()) {
		if ctx.Err() == nil {
			t.Error("listening before the first interrupt")
		}
		close(listening)
		return interrupts, func() { close(stoppedListening) }
	}
	var stderr lockedBuffer
	hardStop, stop := afterSecondInterrupt(ctx, &stderr, listen)
	defer stop()
	cancel() // the first interrupt
	<-listening
	if hardStop.Err() != nil {
		t.Fatal("hard stop before the second interrupt")
	}
	interrupts <- os.Interrupt
	select {
	case <-hardStop.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the second interrupt did not stop")
	}
	<-stoppedListening
	if got, want := stderr.String(), "ledgerproof run: second interrupt: cutting the audit and report short\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}

	// Stopped after the first interrupt, without a second: the hard stop
	// ends, nothing is said, and the listening stops.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	interrupts = make(chan os.Signal, 1)
	listening, stoppedListening = make(chan struct{}), make(chan struct{})
	stderr = lockedBuffer{}
	hardStop, stop = afterSecondInterrupt(ctx, &stderr, listen)
	<-listening
	stop()
	<-hardStop.Done()
	<-stoppedListening
	if got := stderr.String(); got != "" {
		t.Errorf("stderr %q after a stop, want nothing", got)
	}
}

// lockedBuffer is a strings.Builder safe for a writer and a reader in two goroutines.
type lockedBuffer struct {
	mutex   sync.Mutex
	builder strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.builder.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.builder.String()
}
