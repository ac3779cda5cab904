package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/capacity"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// capacityCommand is `make capacity` (package reports/capacity): for each
// mode a fresh local stack, the capacity steps (one `ledgerproof load` run
// of scenarios/capacity.yaml per step, so stepping can stop after two failed
// steps), CPU per process (the load generator's included) sampled from
// /proc, the audit, and the report.
func capacityCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("capacity", flag.ContinueOnError)
	var o capacity.Options
	var gatewayArgs, workerArgs, stackEnv, postgresSettings stackArgumentList
	stamp := time.Now().UTC().Format("20060102T150405Z")
	flags.StringVar(&o.Out, "out", filepath.Join("reports", "runs", "capacity-"+stamp), "run directory: capacity.json, capacity.md, one folder per mode (journals, each step's load log and summary, audit)")
	flags.StringVar(&o.Scenario, "scenario", "scenarios/capacity.yaml", "capacity scenario; each step is one ledgerproof load run of it with schedule.steps=[RATE], step_ramp, step_hold and setup.accounts set from the flags below")
	flags.StringVar(&o.StackRoot, "stack-dir", ".ledgerproof/capacity", "parent of the stacks' directories (one per mode, purged after)")
	flags.StringVar(&o.Docs, "docs", "", "markdown file whose capacity section (between the capacity-report markers) receives the summary; empty: none")
	modes := flags.String("modes", "batched,naive", "modes measured, in order: batched (the pipeline), naive (one transaction per request)")
	steps := flags.String("steps", capacity.DefaultSteps, "arrival rates (TPS), ascending (from 250, so a slow machine's knees are measured too; from 1,000 up each step at most a quarter above the one before, 10,000 a third: a knee to within that much, and finer with --refine)")
	flags.DurationVar(&o.Hold, "step-duration", 20*time.Second, "hold of each step")
	flags.DurationVar(&o.Ramp, "ramp-duration", 5*time.Second, "ramp into each step from 0 (each step is a load run of its own; the step is judged on its hold)")
	flags.IntVar(&o.Accounts, "accounts", 2000, "accounts each step's load run signs up and funds (setup.accounts)")
	flags.Int64Var(&o.Seed, "seed", 0, "seed of the load (0: drawn and printed); a mode's i-th load run (its steps in the order they ran, then the soak) uses seed+i")
	flags.IntVar(&o.Partitions, "partitions", 2, "partitions of the commands topic: with one worker on two cores, 2 fill batches (about 50 records at 3,600 TPS with the worker's 10 ms linger) where 4 left 15-17 and 16 left 6, and Postgres pays per batch")
	flags.IntVar(&o.Gateways, "gateways", 1, "gateway processes of both modes")
	flags.IntVar(&o.Workers, "workers", 1, "worker processes of the batched mode (the naive mode has none)")
	flags.Var(&gatewayArgs, "gateway-arg", "extra argument for every gateway (repeatable)")
	flags.Var(&workerArgs, "worker-arg", "extra argument for every worker (repeatable)")
	flags.Var(&stackEnv, "stack-env", "NAME=value in the environment of the stack's broker, gateways and workers, after the defaults GOMAXPROCS=1 GOGC=400 (repeatable)")
	flags.Var(&postgresSettings, "postgres-setting", "name=value server setting of the stacks' Postgres, after their own, to measure its effect (repeatable; fsync, synchronous_commit, full_page_writes and wal_sync_method are refused: the figures are of durable commits; so are log_line_prefix and other values of log_autovacuum_min_duration=0 and log_timezone=UTC: the report reads each step's autovacuum from the log)")
	flags.IntVar(&o.FailuresToStop, "stop-after-failures", 2, "stop a mode's stepping after this many consecutive failed steps")
	flags.IntVar(&o.Refine, "refine", 2, fmt.Sprintf("right after a mode's first failed step, run this many steps between it and the held step below it, each halving the gap between the highest rate held and the lowest failed (rounded down to %d TPS): the knee to within the last gap instead of the ladder's (0: none; at most %d)", capacity.RefineGranularity, capacity.MaximumRefine))
	flags.IntVar(&o.RequireTPS, "require-tps", 0, "exit 3 unless the batched mode's knee reaches this rate (0: no requirement)")
	flags.Float64Var(&o.RequireRatio, "require-ratio", 0, "exit 3 unless batched knee / naive knee reaches this (0: no requirement)")
	flags.BoolVar(&o.Calibrate, "calibrate", true, "before the steps, measure this machine's own limits with bare programs (HTTP, a batched Postgres apply, a Redis round trip, a produce) and state each knee as a fraction of the ceiling they give")
	flags.BoolVar(&o.Recalibrate, "recalibrate", true, "with --calibrate, measure the bare programs again after the modes and report how far their cost moved: on a shared host the machine's speed changes within a run, and the knees' fractions of the ceiling carry that uncertainty (the requirements stay judged against the first calibration)")
	flags.Float64Var(&o.RequireCeilingFraction, "require-ceiling-fraction", 0, "exit 3 unless the batched knee reaches this fraction of the calibrated ceiling (0: no requirement; needs --calibrate)")
	flags.IntVar(&o.ProfileAt, "profile-at", 0, "at this step, take CPU profiles of gateway-0 and worker-0 during the hold (starts them with --pprof) and Postgres's statement statistics with the WAL each statement wrote, and the load generator's own profile of the step's whole schedule (load.cpu.pprof); 0: none")
	flags.IntVar(&o.ProfileSeconds, "profile-seconds", 15, "length of each CPU profile")
	flags.IntVar(&o.LoadMaxProcs, "load-max-procs", 0, fmt.Sprintf("the load generator's --max-procs (GOMAXPROCS): 0 one per %d TPS of the step's rate, at most every core (it shares the machine with the pipeline); -1 Go's default, every core", capacity.LoadRatePerProc))
	flags.DurationVar(&o.Soak, "soak", 0, "after the batched steps, on the same stack, hold a load at --soak-fraction of the knee this long, sampling every process's private memory: the soak passes when the load held and every process's memory stayed flat, else exit 3 (0: no soak; else at least 10s; make capacity: 10m)")
	flags.Float64Var(&o.SoakFraction, "soak-fraction", capacity.DefaultSoakFraction, "the soak's rate as a fraction of the batched knee")
	flags.DurationVar(&o.Retention, "retention", capacity.DefaultRetention, "how long the stacks keep what each transaction leaves behind: the gateways' idempotency records (--idempotency-ttl), the workers' outcome records (--outcome-ttl) and the broker's records (broker --retention), so a soak sees memory plateau; the report measures Redis's bytes per transaction and states what the reference's 24h would hold (0: the reference's defaults, under which Redis and the broker grow for a day; else at least 30s)")
	flags.IntVar(&o.PortBase, "port-base", 23400, "first of the ports of the stacks, each mode 100 above the previous (below the ephemeral port range, so no outgoing connection holds one; 0: the stacks' defaults shifted by 200)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		var err error
		if o.Steps, err = capacity.ParseSteps(*steps); err != nil {
			// An invalid option: exit 2, could not run, as capacity.Run
			// exits for the options it refuses.
			return exitWith(2, err)
		}
		o.Modes = runner.SplitList(*modes)
		o.GatewayArgs, o.WorkerArgs, o.StackEnv, o.PostgresSettings = gatewayArgs, workerArgs, stackEnv, postgresSettings
		o.Command = strings.Join(os.Args, " ")
		// capacity.Run's code with its error: 2, could not run (not 1, an audit failed).
		return exitWith(capacity.Run(ctx, o, os.Stdout))
	}
}
