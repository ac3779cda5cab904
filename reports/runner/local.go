package runner

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

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// LocalOptions make a LocalStack.
type LocalOptions struct {
	// Config is the stack the run starts: its directory (where a running
	// stack is attached), ports, processes and their arguments.
	Config stack.Config
	// SeededBugs are the seeded bugs the stack is started with: the run
	// then always starts a fresh stack in a temporary directory on free
	// ports, removed after the run.
	SeededBugs []string
	// Keep leaves a stack the run started running; Purge removes its
	// directory after stopping it.
	Keep, Purge bool
	// KeepDir keeps the directory of a stack the run started and stopped,
	// even a seeded bug's (the mutation matrix's --keep-stacks, to inspect
	// it).
	KeepDir bool
}

// LocalStack is the Target of `ledgerproof run --stack local`: the
// reference stack in Config.Dir, attached when it runs, else started (and
// stopped at the end); with a seeded bug, always a fresh one in a temporary
// directory on free ports, removed after the run.
type LocalStack struct {
	LocalOptions

	// dir is the stack's directory, resolved by Prepare.
	dir string
	// start is the stack to start (nil: attach); fresh says its directory
	// held no stack before.
	start *stack.Config
	fresh bool
	// inventory is what the plan is checked against: the running stack's,
	// or the one the stack the run starts will have.
	inventory chaos.Inventory
	// planned says CheckPlan was given a plan: plan and timeline.
	planned  bool
	plan     string
	timeline []chaos.Step

	// After Start: startedByRun says Start started the stack; file is its
	// stack file; executor applies the plan.
	startedByRun bool
	file         *stack.File
	executor     chaos.Executor
}

var _ Target = (*LocalStack)(nil)

// NewLocalStack makes the local stack of the options.
func NewLocalStack(o LocalOptions) *LocalStack {
	return &LocalStack{LocalOptions: o}
}

// Describe names the stack as its executor does.
func (l *LocalStack) Describe() string {
	if l.start != nil {
		return "local stack " + l.dir + " (to be started)"
	}
	return "local stack " + l.dir
}

// Prepare decides whether the run attaches to the stack in Config.Dir or
// starts one (a seeded bug: always a fresh one in a temporary directory on
// free ports), and returns the inventory the plan is checked against.
func (l *LocalStack) Prepare(ctx context.Context) (chaos.Inventory, error) {
	config := l.Config
	if config.Gateways < 1 {
		return chaos.Inventory{}, errors.New("--gateways: the load needs at least one gateway")
	}
	if len(l.SeededBugs) > 0 {
		// A seeded bug changes the schema for good (docs/seeded-bugs.md):
		// its stack is fresh, on free ports, and removed after the run.
		// A short path: the Postgres unix socket lives under it.
		dir, err := os.MkdirTemp("", "lpr-")
		if err != nil {
			return chaos.Inventory{}, err
		}
		_ = os.Remove(dir) // created by the run when it starts the stack
		if err := UseFreePorts(&config); err != nil {
			return chaos.Inventory{}, err
		}
		config.Dir = dir
		config.SeededBugs, config.UnsafeAllowSeededBugs = l.SeededBugs, true
	}
	l.dir = config.Dir
	if len(l.SeededBugs) == 0 {
		if file, err := stack.Load(config.Dir); err == nil {
			var running, notRunning []string
			for _, component := range file.Components {
				if component.Alive() {
					running = append(running, component.Name)
				} else {
					notRunning = append(notRunning, component.Name)
				}
			}
			switch {
			case len(notRunning) == 0:
				// Attach: the stack is someone else's; it stays as it is.
				executor, err := chaos.NewLocalExecutor(config.Dir)
				if err != nil {
					return chaos.Inventory{}, err
				}
				l.inventory, err = executor.Inventory(ctx)
				return l.inventory, err
			case len(running) > 0:
				return chaos.Inventory{}, fmt.Errorf("the stack in %s is half up: running %s; not running %s (start them with 'ledgerproof stack --dir %s --action start --component NAME', or 'ledgerproof down --dir %s')",
					config.Dir, strings.Join(running, ", "), strings.Join(notRunning, ", "), config.Dir, config.Dir)
			}
			// Stopped: started again on its own data; not fresh.
		} else if !errors.Is(err, os.ErrNotExist) {
			return chaos.Inventory{}, err
		} else {
			l.fresh = true
		}
	} else {
		l.fresh = true
	}
	if _, err := stack.PostgresBinDir(config.PostgresBinDir); err != nil {
		return chaos.Inventory{}, fmt.Errorf("the local stack needs the Postgres server binaries (run .ci/deps.sh): %w", err)
	}
	l.start = &config
	// The inventory the stack will have (stack.Up names its components so).
	l.inventory = chaos.Inventory{Processes: []string{stack.KindPostgres, stack.KindRedis, stack.KindBroker}, Partitions: config.Partitions}
	for i := range config.Gateways {
		l.inventory.Processes = append(l.inventory.Processes, stack.KindGateway+"-"+strconv.Itoa(i))
	}
	for i := range config.Workers {
		l.inventory.Processes = append(l.inventory.Processes, stack.KindWorker+"-"+strconv.Itoa(i))
	}
	if config.Settlement {
		l.inventory.Processes = append(l.inventory.Processes, stack.KindRelay, stack.KindSettler)
	}
	l.inventory.Processes = append(l.inventory.Processes, stack.ShardProcesses(config)...)
	return l.inventory, nil
}

// CheckPlan checks the plan against the stack; a stack the run starts gets
// the crash points the plan arms.
func (l *LocalStack) CheckPlan(plan string, timeline []chaos.Step) error {
	if l.start != nil {
		enableCrashPointsForPlan(timeline, l.start, &l.inventory)
	}
	if err := chaos.ValidateTargets(plan, timeline, l.inventory); err != nil {
		if l.start != nil && needsStackFeatures(timeline) {
			return fmt.Errorf("%w (the stack the run starts has no fault proxies, standby or crash points: for plans that need them, start it yourself with 'ledgerproof up --dir %s --proxies ...' and run again)", err, l.dir)
		}
		return fmt.Errorf("against %s: %w", l.Describe(), err)
	}
	l.planned, l.plan, l.timeline = true, plan, timeline
	return nil
}

// needsStackFeatures says whether a timeline has faults that a stack must
// be started for: link faults (--proxies), failover (--postgres-standby),
// crash points (--crash-points).
func needsStackFeatures(timeline []chaos.Step) bool {
	for _, step := range timeline {
		if step.Action == chaos.ActionLink || step.Action == chaos.ActionFailover || step.Action == chaos.ActionCrashPoint {
			return true
		}
	}
	return false
}

// Preflight has nothing to check: Prepare read the stack's state.
func (l *LocalStack) Preflight(context.Context) error { return nil }

// Start starts the stack or attaches to the running one, reads its stack
// file and, with a plan, checks the plan again against the stack as it
// runs. stop stops a stack it started (unless Keep) and copies the
// stack's logs into the run directory.
func (l *LocalStack) Start(ctx context.Context, runDir string, out io.Writer) (func(), error) {
	var stop func()
	if l.start != nil {
		var err error
		if stop, err = l.up(ctx, runDir, out); err != nil {
			return stop, fmt.Errorf("stack up: %w", err)
		}
	} else {
		fmt.Fprintf(out, "attached to the running stack in %s (left running)\n", l.dir)
		stop = func() { copyRunStackLogs(l.dir, runDir) }
	}
	file, err := stack.Load(l.dir)
	if err != nil {
		return stop, err
	}
	l.file = file
	if l.planned {
		local, err := chaos.NewLocalExecutor(l.dir)
		if err != nil {
			return stop, err
		}
		inventory, err := local.Inventory(ctx)
		if err == nil {
			err = chaos.ValidateTargets(l.plan, l.timeline, inventory)
		}
		if err != nil {
			return stop, err
		}
		l.executor = local
	}
	return stop, nil
}

// up starts the stack and returns the function that stops it (unless
// Keep), copies its logs into the run directory and, for a seeded
// bug or Purge, removes it.
func (l *LocalStack) up(ctx context.Context, runDir string, stdout io.Writer) (func(), error) {
	config := *l.start
	config.Output = stdout
	if bugs := config.SeededBugs; len(bugs) > 0 {
		fmt.Fprintf(stdout, "starting a fresh stack in %s with SEEDED BUG %s (it loses or duplicates money on purpose; removed after the run)\n", config.Dir, strings.Join(bugs, ","))
	} else {
		fmt.Fprintf(stdout, "starting the local stack in %s (stopped at the end%s)\n", config.Dir, map[bool]string{true: " and removed", false: ""}[l.Purge])
	}
	if err := os.MkdirAll(config.Dir, 0o755); err != nil {
		return func() {}, err
	}
	// Postgres runs as the postgres OS user when ledgerproof runs as root.
	if err := os.Chmod(config.Dir, 0o755); err != nil {
		return func() {}, err
	}
	l.startedByRun = true
	upContext, cancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err := stack.Up(upContext, config)
	cancel()
	purge := (l.Purge || len(config.SeededBugs) > 0) && !l.KeepDir
	stop := func() {
		if l.Keep {
			copyRunStackLogs(config.Dir, runDir)
			fmt.Fprintf(stdout, "stack left running in %s (--keep-stack): stop it with 'ledgerproof down --dir %s%s'\n",
				config.Dir, config.Dir, map[bool]string{true: " --purge", false: ""}[purge])
			return
		}
		downContext, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := stack.Down(downContext, config.Dir, stack.DownOptions{Output: stdout}); err != nil {
			fmt.Fprintf(stdout, "ERROR stopping the stack in %s: %v\n", config.Dir, err)
			return
		}
		copyRunStackLogs(config.Dir, runDir)
		if purge {
			if err := os.RemoveAll(config.Dir); err != nil {
				fmt.Fprintf(stdout, "ERROR removing %s: %v\n", config.Dir, err)
				return
			}
			fmt.Fprintf(stdout, "stack stopped and removed (%s)\n", config.Dir)
			return
		}
		fmt.Fprintf(stdout, "stack stopped (%s)\n", config.Dir)
	}
	return stop, err
}

// Stack records the directory, whether the run started the stack and,
// once it runs, its gateways.
func (l *LocalStack) Stack() StackInfo {
	info := StackInfo{Kind: KindLocal, Dir: l.dir, StartedByRun: l.startedByRun}
	if l.file != nil {
		info.Gateways = l.file.Endpoints.Gateways
	}
	return info
}

// Executor is the local executor of the running stack, with a plan.
func (l *LocalStack) Executor() chaos.Executor { return l.executor }

// ScrapeTargets are the stack's gateways' and workers' /metrics.
func (l *LocalStack) ScrapeTargets() []ScrapeTarget {
	var targets []ScrapeTarget
	for _, component := range l.file.Components {
		switch component.Kind {
		case stack.KindGateway:
			targets = append(targets, ScrapeTarget{Name: component.Name, URL: component.Endpoint + "/metrics"})
		case stack.KindWorker:
			targets = append(targets, ScrapeTarget{Name: component.Name, URL: component.Endpoint})
		}
	}
	return targets
}

// PostgresVersion asks the stack's Postgres.
func (l *LocalStack) PostgresVersion(ctx context.Context) string {
	return PostgresVersion(ctx, l.file.Endpoints.PostgresURL)
}

// Recovery starts every component that is not running (RecoverStack: a
// Postgres primary fenced by a failover stays down).
func (l *LocalStack) Recovery() func(ctx context.Context, output io.Writer) error {
	return func(ctx context.Context, output io.Writer) error {
		return RecoverStack(ctx, l.dir, func(line string) { fmt.Fprintln(output, line) })
	}
}

// Ledger is the stack's: the whole ledger when the run started a fresh
// stack (every transaction must be the load's).
func (l *LocalStack) Ledger(context.Context, io.Writer) (LedgerSource, error) {
	return LedgerSource{StackDir: l.dir, WholeLedger: l.fresh && l.startedByRun}, nil
}

// copyRunStackLogs copies the stack file and the components' logs into
// <run>/stack-logs/.
func copyRunStackLogs(stackDir, runDir string) {
	CopyStackFiles(stackDir, filepath.Join(runDir, "stack-logs"))
}
