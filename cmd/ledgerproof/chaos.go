package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// chaosOptions are the flags of `ledgerproof chaos`.
type chaosOptions struct {
	plan           string
	stackDir       string
	composeFile    string
	composeProject string
	services       string
	runDir         string
	seed           string
	dryRun         bool
	stopOnError    bool
	leaveFaults    bool
	stepTimeout    time.Duration
}

// chaosCommand runs a chaos plan against a running stack on its own, for
// drills by hand (docs/chaos.md):
//
//	ledgerproof chaos --plan chaos/plans/ci.yaml --stack .ledgerproof/stack --run reports/runs/x
//	ledgerproof chaos --plan chaos/plans/random.yaml --seed 42 --dry-run
func chaosCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var o chaosOptions
	flags.StringVar(&o.plan, "plan", "", "the plan file (YAML, docs/chaos.md); - reads standard input (required)")
	flags.StringVar(&o.stackDir, "stack", stack.DefaultConfig().Dir, "local stack directory (its stack.json); ignored with --compose")
	flags.StringVar(&o.composeFile, "compose", "", "apply the plan to this docker compose project's file instead of the local stack")
	flags.StringVar(&o.composeProject, "compose-project", "", "docker compose project name (-p); default compose's own")
	flags.StringVar(&o.services, "service", "", "with --compose: comma-separated TARGET=SERVICE overrides of the target→service mapping (default broker=kafka-1)")
	flags.StringVar(&o.runDir, "run", "", "run directory receiving chaos-log.jsonl (default reports/runs/chaos-<time>)")
	flags.StringVar(&o.seed, "seed", "", "seed of the plan's random choices (default: the plan's, else drawn and printed)")
	flags.BoolVar(&o.dryRun, "dry-run", false, "print the expanded timeline and check the targets against the stack; apply nothing")
	flags.BoolVar(&o.stopOnError, "stop-on-error", false, "end the run at the first failed step (default: log it and go on)")
	flags.BoolVar(&o.leaveFaults, "leave-faults", false, "do not resume paused processes and heal faulted links when the plan ends")
	flags.DurationVar(&o.stepTimeout, "step-timeout", 2*time.Minute, "bound on each action (a start includes the wait for readiness)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return runChaos(ctx, o, os.Stdout)
	}
}

func runChaos(ctx context.Context, o chaosOptions, out io.Writer) error {
	if o.plan == "" {
		return errors.New("--plan FILE is required")
	}
	if o.stepTimeout <= 0 {
		return errors.New("--step-timeout must be positive")
	}
	var seedOverride *uint64
	if o.seed != "" {
		seed, err := strconv.ParseUint(o.seed, 10, 64)
		if err != nil {
			return fmt.Errorf("--seed %q: want a non-negative integer", o.seed)
		}
		seedOverride = &seed
	}
	plan, err := chaos.LoadPlan(o.plan)
	if err != nil {
		return err
	}
	executor, err := chaosExecutor(o)
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
	chaos.WriteTimeline(out, plan, seed, seedSource, timeline)
	if err := chaos.ValidateTargets(plan.Name, timeline, inventory); err != nil {
		return fmt.Errorf("against %s: %w", executor.Describe(), err)
	}
	if o.dryRun {
		fmt.Fprintf(out, "dry run: every target exists in %s; nothing applied\n", executor.Describe())
		return nil
	}
	if o.runDir == "" {
		o.runDir = filepath.Join("reports", "runs", "chaos-"+time.Now().UTC().Format("20060102-150405"))
	}
	logFile, err := chaos.OpenLog(o.runDir)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(out, "applying to %s; chaos log %s\n", executor.Describe(), logFile.Name())
	runner := &chaos.Runner{Executor: executor, ChaosLog: logFile, Output: out,
		StopOnError: o.stopOnError, StepTimeout: o.stepTimeout, LeaveFaults: o.leaveFaults}
	summary, runError := runner.Run(ctx, plan.Name, seed, timeline, time.Now())
	if err := logFile.Sync(); err != nil && runError == nil {
		runError = fmt.Errorf("chaos log: %w", err)
	}
	if summary != nil {
		fmt.Fprintf(out, "plan %s done: %d applied, %d failed, %d not run\n", plan.Name, len(summary.Records), summary.Failed, summary.NotRun)
	}
	return runError
}

// chaosExecutor builds the executor the flags name.
func chaosExecutor(o chaosOptions) (chaos.Executor, error) {
	if o.composeFile != "" {
		executor := chaos.NewComposeExecutor(o.composeFile, o.composeProject)
		if o.services != "" {
			executor.Services = map[string]string{}
			for _, pair := range strings.Split(o.services, ",") {
				target, service, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || target == "" || service == "" {
					return nil, fmt.Errorf("--service %q: want TARGET=SERVICE[,TARGET=SERVICE...]", o.services)
				}
				executor.Services[target] = service
			}
		}
		return executor, nil
	}
	if o.services != "" {
		return nil, errors.New("--service maps targets to compose services: it needs --compose")
	}
	if _, err := os.Stat(filepath.Join(o.stackDir, stack.FileName)); err != nil {
		return nil, fmt.Errorf("no local stack in %s (start one with 'ledgerproof up --dir %s', or give --stack DIR or --compose FILE): %w", o.stackDir, o.stackDir, err)
	}
	return chaos.NewLocalExecutor(o.stackDir)
}
