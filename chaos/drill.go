package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/internal/syncwriter"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// DrillOptions are the settings of `ledgerproof chaos`, a plan applied to a
// running stack on its own, for drills by hand (docs/chaos.md).
type DrillOptions struct {
	// Plan is the plan file (YAML); - reads standard input. Required.
	Plan string
	// StackDir is the local stack directory (its stack.json); ignored with ComposeFile.
	StackDir string
	// ComposeFile, when set, applies the plan to this docker compose
	// project's file (project ComposeProject, "": compose's own) instead
	// of the local stack.
	ComposeFile, ComposeProject string
	// Services are comma-separated TARGET=SERVICE overrides of the
	// target→service mapping of ComposeFile (default broker=kafka-1).
	Services string
	// RunDir receives chaos-log.jsonl; "": reports/runs/chaos-<time>.
	RunDir string
	// Seed is the seed of the plan's random choices as given (a
	// non-negative integer); "": the plan's, else drawn and printed.
	Seed string
	// DryRun prints the expanded timeline and checks the targets; it applies nothing.
	DryRun bool
	// StopOnError ends the drill at the first failed step (else it is logged and the drill goes on).
	StopOnError bool
	// LeaveFaults keeps processes paused and links faulted when the plan ends.
	LeaveFaults bool
	// StepTimeout bounds each action (a start includes the wait for
	// readiness); positive (the CLI's default 2m).
	StepTimeout time.Duration
	// Supervise restarts, while the plan runs, a gateway, worker, relay or
	// settler of the local stack that exits on its own (a crash point, a
	// seeded crash) a second after it exits, as systemd or Kubernetes
	// would (stack.RestartExited). Without it such a process stays down
	// until a later step starts it. Local stack only.
	Supervise bool
}

// validate rejects settings the drill cannot use, before the plan is read.
func (o DrillOptions) validate() error {
	if o.Plan == "" {
		return errors.New("--plan FILE is required")
	}
	if o.StepTimeout <= 0 {
		return errors.New("--step-timeout must be positive")
	}
	if o.Seed != "" {
		if _, err := strconv.ParseUint(o.Seed, 10, 64); err != nil {
			return fmt.Errorf("--seed %q: want a non-negative integer", o.Seed)
		}
	}
	if o.Supervise && o.ComposeFile != "" {
		return errors.New("--supervise restarts the local stack's processes; with --compose, compose's restart policy does (restart: on-failure)")
	}
	if o.Services != "" {
		if o.ComposeFile == "" {
			return errors.New("--service maps targets to compose services: it needs --compose")
		}
		if _, err := o.services(); err != nil {
			return err
		}
	}
	return nil
}

// services reads Services into a target→service map.
func (o DrillOptions) services() (map[string]string, error) {
	services := map[string]string{}
	for _, pair := range strings.Split(o.Services, ",") {
		target, service, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || target == "" || service == "" {
			return nil, fmt.Errorf("--service %q: want TARGET=SERVICE[,TARGET=SERVICE...]", o.Services)
		}
		services[target] = service
	}
	return services, nil
}

// RunDrill is `ledgerproof chaos`: it expands the plan, checks its
// targets against the system, prints the timeline and, unless DryRun,
// applies it, writing the chaos log into RunDir.
func RunDrill(ctx context.Context, o DrillOptions, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	var seedOverride *uint64
	if o.Seed != "" {
		seed, _ := strconv.ParseUint(o.Seed, 10, 64) // validated
		seedOverride = &seed
	}
	plan, err := LoadPlan(o.Plan)
	if err != nil {
		return err
	}
	executor, err := o.executor()
	if err != nil {
		return err
	}
	inventoryContext, cancel := context.WithTimeout(ctx, 30*time.Second)
	inventory, err := executor.Inventory(inventoryContext)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", executor.Describe(), err)
	}
	seed, seedSource := plan.ResolveSeed(seedOverride, time.Now)
	timeline, err := plan.Timeline(seed, inventory)
	if err != nil {
		return err
	}
	WriteTimeline(out, plan, seed, seedSource, timeline)
	if err := ValidateTargets(plan.Name, timeline, inventory); err != nil {
		return fmt.Errorf("against %s: %w", executor.Describe(), err)
	}
	if o.DryRun {
		fmt.Fprintf(out, "dry run: every target exists in %s; nothing applied\n", executor.Describe())
		return nil
	}
	if o.RunDir == "" {
		o.RunDir = filepath.Join("reports", "runs", "chaos-"+time.Now().UTC().Format("20060102-150405"))
	}
	logFile, err := OpenLog(o.RunDir)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(out, "applying to %s; chaos log %s\n", executor.Describe(), logFile.Name())
	if o.Supervise {
		// The supervisor's lines and the runner's share out.
		out = syncwriter.New(out)
	}
	runner := &Runner{Executor: executor, ChaosLog: logFile, Output: out,
		StopOnError: o.StopOnError, StepTimeout: o.StepTimeout, LeaveFaults: o.LeaveFaults}
	stopSupervisor := o.supervise(ctx, out)
	summary, runError := runner.Run(ctx, plan.Name, seed, timeline, time.Now())
	stopSupervisor()
	if err := logFile.Sync(); err != nil && runError == nil {
		runError = fmt.Errorf("chaos log: %w", err)
	}
	if summary != nil {
		fmt.Fprintf(out, "plan %s done: %d applied, %d failed, %d not run\n", plan.Name, len(summary.Records), summary.Failed, summary.NotRun)
	}
	return runError
}

// supervise starts stack.RestartExited on the local stack when Supervise
// asks for it; the function it returns stops it and waits for it to end.
func (o DrillOptions) supervise(ctx context.Context, out io.Writer) func() {
	if !o.Supervise {
		return func() {}
	}
	supervisorContext, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		stack.RestartExited(supervisorContext, o.StackDir, func(line string) {
			fmt.Fprintf(out, "supervisor: %s\n", line)
		})
	}()
	return func() { stop(); <-done }
}

// executor builds the executor the options name.
func (o DrillOptions) executor() (Executor, error) {
	if o.ComposeFile != "" {
		executor := NewComposeExecutor(o.ComposeFile, o.ComposeProject)
		if o.Services != "" {
			executor.Services, _ = o.services() // validated
		}
		return executor, nil
	}
	if _, err := os.Stat(filepath.Join(o.StackDir, stack.FileName)); err != nil {
		return nil, fmt.Errorf("no local stack in %s (start one with 'ledgerproof up --dir %s', or give --stack DIR or --compose FILE): %w", o.StackDir, o.StackDir, err)
	}
	return NewLocalExecutor(o.StackDir)
}
