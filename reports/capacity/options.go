// Package capacity is `ledgerproof capacity` (`make capacity`,
// docs/performance.md "End-to-end capacity"): this machine's own limits
// measured with bare programs (the calibration), then for each mode
// (batched, naive) a fresh local stack (a runner.LocalStack), the capacity
// steps (one gated `ledgerproof load` run of the capacity scenario per step,
// so stepping can stop after consecutive failed steps), the CPU of every
// process sampled from /proc, the audit of the mode's journals
// (runner.RunAudit), and the report: capacity.json, capacity.md and the
// marked section of a markdown file.
package capacity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// The modes a capacity run measures.
const (
	// ModeBatched is the reference pipeline: gateways, the broker, workers.
	ModeBatched = "batched"
	// ModeNaive is the gateway with --apply-mode naive and no worker: one
	// Postgres transaction per request.
	ModeNaive = "naive"
)

// Options are a capacity run's settings (the flags of `ledgerproof
// capacity`, whose defaults are given there); Run validates them together.
type Options struct {
	// Out is the run directory: capacity.json, capacity.md, one folder per
	// mode (journals, each step's load log and summary, the audit).
	Out string
	// Scenario is the capacity scenario; each step is one `ledgerproof
	// load` run of it with its schedule.steps, step_ramp, step_hold and
	// setup.accounts set from Steps, Ramp, Hold and Accounts.
	Scenario string
	// StackRoot is the parent of the stacks' directories (one per mode and
	// one for the calibration, each purged before and after).
	StackRoot string
	// Docs is a markdown file whose capacity section (between the
	// capacity-report markers) receives the summary; "": none.
	Docs string
	// Modes are the modes measured, in order (ModeBatched, ModeNaive).
	Modes []string
	// Steps are the arrival rates (TPS), ascending.
	Steps []int
	// Hold is each step's hold (at least 1s); Ramp its ramp from 0.
	Hold, Ramp time.Duration
	// Accounts are the accounts each step's load signs up and funds.
	Accounts int
	// Seed is the load's seed (a mode's i-th load run, counting its steps
	// in the order they ran and then its soak, uses Seed+i); 0: drawn by Run and
	// printed.
	Seed int64
	// Gateways are the gateway processes of both modes; Workers the worker
	// processes of the batched mode; Partitions those of the commands topic.
	Gateways, Workers, Partitions int
	// GatewayArgs and WorkerArgs are appended to every gateway's and
	// worker's arguments, after capacity's own.
	GatewayArgs, WorkerArgs []string
	// StackEnv are NAME=value entries of the stack's Go processes'
	// environment, after the defaults GOMAXPROCS=1 GOGC=400.
	StackEnv []string
	// PostgresSettings are name=value server settings of the stacks'
	// Postgres (--postgres-setting), after the stack's own, to measure a
	// setting's effect. A setting that weakens durability (fsync,
	// synchronous_commit, full_page_writes, wal_sync_method) is refused: the
	// reference commits durably, and so do its capacity figures.
	PostgresSettings []string
	// FailuresToStop stops a mode's stepping after this many consecutive
	// failed steps.
	FailuresToStop int
	// Refine is how many steps a mode runs, right after its first failed
	// step, between that step and the held step below it, each halving the
	// gap between the highest rate held and the lowest failed
	// (refinementRate): the ladder's steps are up to a quarter apart, and
	// the knee is measured to within the last gap (0: none; at most
	// MaximumRefine).
	Refine int
	// RequireTPS (the batched knee, TPS), RequireRatio (batched knee over
	// naive knee) and RequireCeilingFraction (the batched knee's fraction of
	// the calibrated ceiling, 0 to 1) make Run return 3 when missed; 0: no
	// requirement.
	RequireTPS             int
	RequireRatio           float64
	RequireCeilingFraction float64
	// LoadMaxProcs is the load generator's --max-procs (GOMAXPROCS); 0:
	// one per LoadRatePerProc operations a second of the step's rate, at
	// most every core (loadMaxProcs); -1: Go's default, every core.
	LoadMaxProcs int
	// ProfileAt is the step (a rate of Steps) during whose hold gateway-0 and
	// worker-0 are profiled for ProfileSeconds (below the hold) and
	// Postgres's statement statistics taken, and whose load profiles its
	// whole schedule (load --cpu-profile); 0: none.
	ProfileAt, ProfileSeconds int
	// PortBase is the first of the stacks' ports, each mode 100 above the
	// previous and the calibration's after them; 0: the stacks' defaults
	// shifted by 200 (and 20 per mode).
	PortBase int
	// Soak is the length of the soak's hold after the batched mode's steps,
	// at SoakFraction (0 to 1) of its knee, on the same stack (0: no soak;
	// else at least MinimumSoak); a soak that does not pass makes Run
	// return 3.
	Soak         time.Duration
	SoakFraction float64
	// Calibrate measures this machine's own limits before the steps;
	// Recalibrate, with it, measures them again after the modes, to say how
	// far the machine's speed moved during the run (drift.go).
	Calibrate, Recalibrate bool
	// Retention is how long the stacks keep what each transaction leaves
	// behind (retention.go): the gateways' idempotency records
	// (--idempotency-ttl), the workers' outcome records (--outcome-ttl) and
	// the broker's records (--retention); 0: the reference's defaults (24h,
	// 24h, every record kept), under which memory grows for a day; else at
	// least MinimumRetention.
	Retention time.Duration
	// Binary is the ledgerproof executable the stacks and the loads run;
	// "": this process's own.
	Binary string
	// Command is the command line capacity.json records.
	Command string
}

// highestPort is the last TCP port.
const highestPort = 65535

// validate checks the options as `ledgerproof capacity` did before any
// stack starts: the steps, the bounds, the modes, contradictions between
// requirements and modes, and every step's load against the scenario.
func (o *Options) validate() error {
	if err := checkSteps(o.Steps); err != nil {
		return err
	}
	switch {
	case len(o.Steps) == 0:
		return errors.New("--steps: none")
	case o.Hold < time.Second || o.Ramp < 0:
		return errors.New("--step-duration must be at least 1s and --ramp-duration not negative")
	case o.FailuresToStop < 1:
		return errors.New("--stop-after-failures must be at least 1")
	case o.Refine < 0 || o.Refine > MaximumRefine:
		return fmt.Errorf("--refine %d must be between 0 and %d", o.Refine, MaximumRefine)
	case o.Gateways < 1 || o.Workers < 1:
		return errors.New("--gateways and --workers must be at least 1")
	case o.RequireCeilingFraction < 0 || o.RequireCeilingFraction > 1:
		return errors.New("--require-ceiling-fraction must be between 0 and 1")
	case o.RequireCeilingFraction > 0 && !o.Calibrate:
		return errors.New("--require-ceiling-fraction needs the calibration (--calibrate)")
	}
	for i, mode := range o.Modes {
		if mode != ModeBatched && mode != ModeNaive {
			return fmt.Errorf("--modes: unknown mode %q", mode)
		}
		if slices.Contains(o.Modes[:i], mode) {
			return fmt.Errorf("--modes: %s twice (each mode has one run directory)", mode)
		}
	}
	batched, naive := slices.Contains(o.Modes, ModeBatched), slices.Contains(o.Modes, ModeNaive)
	switch {
	case len(o.Modes) == 0:
		return errors.New("--modes: none")
	case o.Out == "" || o.Scenario == "" || o.StackRoot == "":
		return errors.New("--out, --scenario and --stack-dir must not be empty")
	case o.Accounts < 1 || o.Partitions < 1:
		return errors.New("--accounts and --partitions must be at least 1")
	case o.RequireTPS < 0 || o.RequireRatio < 0:
		return errors.New("--require-tps and --require-ratio must not be negative")
	case (o.RequireTPS > 0 || o.RequireCeilingFraction > 0) && !batched:
		return errors.New("--require-tps and --require-ceiling-fraction judge the batched knee: --modes must include batched")
	case o.RequireRatio > 0 && !(batched && naive):
		return errors.New("--require-ratio divides the batched knee by the naive one: --modes must include both")
	case o.LoadMaxProcs < -1:
		return fmt.Errorf("--load-max-procs %d: want -1 (every core), 0 (by the rate) or more", o.LoadMaxProcs)
	case o.ProfileAt < 0 || (o.ProfileAt > 0 && !slices.Contains(o.Steps, o.ProfileAt)):
		return fmt.Errorf("--profile-at %d is not one of --steps", o.ProfileAt)
	case o.ProfileAt > 0 && (o.ProfileSeconds < 1 || time.Duration(o.ProfileSeconds)*time.Second >= o.Hold):
		// The profiles start a second into the hold and must end in it.
		return fmt.Errorf("--profile-seconds %d must be at least 1 and below the hold (%s)", o.ProfileSeconds, o.Hold)
	case o.PortBase < 0 || (o.PortBase > 0 && o.PortBase+100*len(o.Modes)+50 > highestPort):
		// The calibration's stack takes the ports after the modes'.
		return fmt.Errorf("--port-base %d: the stacks' ports must lie between 1 and %d", o.PortBase, highestPort)
	}
	for _, setting := range o.PostgresSettings {
		name, value, found := strings.Cut(setting, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case !found || name == "" || strings.TrimSpace(value) == "":
			return fmt.Errorf("--postgres-setting %q: want name=value", setting)
		case slices.Contains(durabilitySettings, name):
			return fmt.Errorf("--postgres-setting %q: %s is the stack's own (durable commits); capacity figures are never measured with it changed", setting, name)
		case name == "log_line_prefix" || (slices.ContainsFunc(autovacuumLogSettings, func(own string) bool { return strings.HasPrefix(own, name+"=") }) &&
			!slices.Contains(autovacuumLogSettings, name+"="+strings.TrimSpace(value))):
			return fmt.Errorf("--postgres-setting %q: the report reads each step's autovacuum from the stack's Postgres log, written with %s and the default log_line_prefix",
				setting, strings.Join(autovacuumLogSettings, " "))
		}
	}
	switch {
	case o.Soak < 0 || (o.Soak > 0 && o.Soak < MinimumSoak):
		return fmt.Errorf("--soak %s: 0 (no soak) or at least %s (its memory is judged on the samples after a warm-up)", o.Soak, MinimumSoak)
	case o.Soak > 0 && !batched:
		return errors.New("--soak runs at a fraction of the batched knee: --modes must include batched")
	case o.Soak > 0 && (o.SoakFraction <= 0 || o.SoakFraction > 1):
		return fmt.Errorf("--soak-fraction %g must be above 0 and at most 1", o.SoakFraction)
	case o.Retention < 0 || (o.Retention > 0 && o.Retention < MinimumRetention):
		return fmt.Errorf("--retention %s: 0 (the reference's defaults) or at least %s", o.Retention, MinimumRetention)
	}
	if o.Soak > 0 {
		// The soak's load, at the first step's rate (its own is known only
		// from the knee), with the soak's hold.
		soak := *o
		soak.Hold = o.Soak
		if _, err := capacityPlan(soak, o.Steps[0]); err != nil {
			return fmt.Errorf("--soak: %w", err)
		}
	}
	// Every step's load is checked before any stack starts.
	for _, rate := range o.Steps {
		if _, err := capacityPlan(*o, rate); err != nil {
			return err
		}
	}
	return nil
}

// durabilitySettings are the Postgres settings --postgres-setting refuses:
// each can make a commit that was acknowledged vanish in a crash.
var durabilitySettings = []string{"fsync", "synchronous_commit", "full_page_writes", "wal_sync_method"}

// DefaultSteps is the ladder of arrival rates (TPS) a capacity run climbs
// unless --steps says otherwise. It starts at 250, so that a slow machine's
// knees are measured too, and from 1,000 up each step is at most a quarter
// above the one before it (the last, 10,000, a third), so that a knee is
// measured to within that much whichever mode it belongs to: a knee is the
// highest step held, and a coarse ladder would state a knee, and a ratio of
// two knees, lower or higher than the run showed. The refinement steps
// (Options.Refine) measure it more finely between the ladder's steps.
const DefaultSteps = "250,500,750,1000,1250,1500,1750,2000,2500,3000,3600,4300,5000,6000,7500,10000"

// MaximumRefine bounds Options.Refine: each refinement halves the gap, and
// four take a ladder gap of 1,000 TPS down to about the 50 TPS a
// refinement's rate is rounded to.
const MaximumRefine = 4

// RefineGranularity is what a refinement's rate is a multiple of (TPS).
const RefineGranularity = 50

// refinementRate is the rate of the step run between the highest rate held
// (held) and the lowest rate failed above it (failed): their midpoint,
// rounded down to a multiple of RefineGranularity; 0 when no such rate lies
// strictly between them.
func refinementRate(held, failed int) int {
	rate := (held + failed) / 2 / RefineGranularity * RefineGranularity
	if rate <= held || rate >= failed {
		return 0
	}
	return rate
}

// ParseSteps reads --steps: comma-separated positive rates, ascending.
func ParseSteps(text string) ([]int, error) {
	var steps []int
	for _, item := range runner.SplitList(text) {
		rate, err := strconv.Atoi(item)
		if err != nil || rate < 1 {
			return nil, fmt.Errorf("--steps: %q is not a positive rate", item)
		}
		steps = append(steps, rate)
		if err := checkSteps(steps); err != nil {
			return nil, err
		}
	}
	return steps, nil
}

// checkSteps checks that the rates are positive and ascend.
func checkSteps(steps []int) error {
	for i, rate := range steps {
		if rate < 1 {
			return fmt.Errorf("--steps: %q is not a positive rate", strconv.Itoa(rate))
		}
		if i > 0 && rate <= steps[i-1] {
			return fmt.Errorf("--steps must ascend (%d after %d)", rate, steps[i-1])
		}
	}
	return nil
}

// Run runs the capacity measurement of the options and writes its report.
// It returns the command's exit code: 0, 1 when an audit failed, 3 when a
// requirement was missed; with an error (invalid options, or the run could
// not go on), 2.
func Run(ctx context.Context, o Options, out io.Writer) (int, error) {
	if err := o.validate(); err != nil {
		return 2, err
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000_007
	}
	if o.Binary == "" {
		self, err := os.Executable()
		if err != nil {
			return 2, err
		}
		o.Binary = self
	}
	return runCapacity(ctx, o, out)
}
