package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// chaosCommand runs a chaos plan against a running stack on its own, for
// drills by hand (docs/chaos.md):
//
//	ledgerproof chaos --plan chaos/plans/ci.yaml --stack .ledgerproof/stack --run reports/runs/x
//	ledgerproof chaos --plan chaos/plans/random.yaml --seed 42 --dry-run
func chaosCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var o chaos.DrillOptions
	flags.StringVar(&o.Plan, "plan", "", "the plan file (YAML, docs/chaos.md); - reads standard input (required)")
	flags.StringVar(&o.StackDir, "stack", stack.DefaultConfig().Dir, "local stack directory (its stack.json); ignored with --compose")
	flags.StringVar(&o.ComposeFile, "compose", "", "apply the plan to this docker compose project's file instead of the local stack")
	flags.StringVar(&o.ComposeProject, "compose-project", "", "docker compose project name (-p); default compose's own")
	flags.StringVar(&o.Services, "service", "", "with --compose: comma-separated TARGET=SERVICE overrides of the target→service mapping (default broker=kafka-1)")
	flags.StringVar(&o.RunDir, "run", "", "run directory receiving chaos-log.jsonl (default reports/runs/chaos-<time>)")
	flags.StringVar(&o.Seed, "seed", "", "seed of the plan's random choices (default: the plan's, else drawn and printed)")
	flags.BoolVar(&o.DryRun, "dry-run", false, "print the expanded timeline and check the targets against the stack; apply nothing")
	flags.BoolVar(&o.StopOnError, "stop-on-error", false, "end the run at the first failed step (default: log it and go on)")
	flags.BoolVar(&o.LeaveFaults, "leave-faults", false, "do not resume paused processes and heal faulted links when the plan ends")
	flags.DurationVar(&o.StepTimeout, "step-timeout", 2*time.Minute, "bound on each action (a start includes the wait for readiness)")
	flags.BoolVar(&o.Supervise, "supervise", false, "while the plan runs, restart a gateway, worker, relay or settler that exits on its own (a crash point, a seeded crash) a second later, as systemd or Kubernetes would; without it such a process stays down until a step starts it (local stack only)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return chaos.RunDrill(ctx, o, os.Stdout)
	}
}
