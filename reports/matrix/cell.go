package matrix

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// SetupTimeout bounds each run's load setup (setup.timeout): 50 accounts
// signed up and funded take seconds; a setup still stuck after this names
// the accounts it could not prepare in load.log.
const SetupTimeout = 2 * time.Minute

// cell is one run of the matrix while the engine runs it: what its hooks
// learn, for the result.
type cell struct {
	ctx      context.Context
	dir      string
	stackDir string
	say      func(format string, args ...any)
	result   *mutation.Result
	// err makes the run one that cannot be judged (interrupted, the load
	// killed or unable to run, the plan or the recovery failed, no audit
	// result); audit is the audit's result.
	err   error
	audit *invariants.Result
	// record is the engine's run record (run.json), read once the load
	// ended; loadJudged says loadEnded ran.
	record     *runner.RunFile
	loadJudged bool
	// setupTimeout and loadTimeout are the engine's bounds of the load (runner.Config's), named when the
	// engine had to stop it.
	setupTimeout, loadTimeout time.Duration
}

// runCell runs one cell through the run engine: a fresh stack (the bug, if
// any: runner.LocalStack), then runner.Run for the load with the profile's
// faults, recovery, drain and audit, then the stack stopped and purged (a
// seeded bug changes the schema for good). It never returns without
// stopping the stack it started.
func runCell(ctx context.Context, o Options, root string, index, total int, run mutation.Run, out io.Writer) mutation.Result {
	began := time.Now()
	profile := cellProfile(o, run)
	result := mutation.Result{System: run.Label(), Profile: profile.Name, LoadExit: -1, Shards: run.Shards}
	if run.Case != nil {
		result.Expected = run.Case.Expected
	}
	name := fmt.Sprintf("%02d-%s-%s", index+1, profile.Name, run.Label())
	if run.Shards > 1 {
		name = fmt.Sprintf("%02d-%s-%s-%dshards", index+1, profile.Name, run.Label(), run.Shards)
	}
	dir := filepath.Join(root, name)
	result.Dir = dir
	prefix := fmt.Sprintf("[%d/%d] %s / %s", index+1, total, run.Label(), profile.Name)
	if run.Shards > 1 {
		prefix += fmt.Sprintf(" / %d shards", run.Shards)
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "%s: %s\n", prefix, fmt.Sprintf(format, args...))
	}
	fail := func(err error) mutation.Result {
		result.Error = err.Error()
		result.Seconds = time.Since(began).Seconds()
		result.Judge()
		say("ERROR: %v", err)
		return result
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	progress, err := os.Create(filepath.Join(dir, "progress.log"))
	if err != nil {
		return fail(err)
	}
	defer progress.Close()

	target, err := cellTarget(o, run)
	if err != nil {
		return fail(err)
	}
	if _, err := target.Prepare(ctx); err != nil {
		if run.Case == nil {
			_ = os.Remove(target.Config.Dir) // the clean stack's empty directory
		}
		return fail(err)
	}
	timeline := profileTimeline(profile, run.Shards)
	if len(timeline) > 0 {
		if err := target.CheckPlan(profile.Name, timeline); err != nil {
			return fail(err)
		}
	}
	stackDir := target.Stack().Dir
	say("stack up in %s%s", stackDir, seededText(target.SeededBugs, target.Config.WorkerArgs))
	stop, err := target.Start(ctx, dir, progress)
	defer func() {
		// Always stopped, even on Ctrl-C; logs copied, then the directory
		// purged (a seeded bug changed its schema for good). What stopping
		// said is in progress.log.
		stop()
		_, statErr := os.Stat(stackDir)
		switch {
		case o.KeepStacks:
			say("stack stopped, kept in %s", stackDir)
		case statErr == nil:
			say("ERROR stopping or purging the stack (kept in %s): see %s", stackDir, progress.Name())
		}
	}()
	if err != nil {
		return fail(err)
	}

	// A seeded crash is restarted as a process supervisor would, from
	// before setup (it may hit the funding deposits) until the audit ends.
	watchContext, stopWatching := context.WithCancel(ctx)
	var watchdog sync.WaitGroup
	var restarts []string
	var restartsMutex sync.Mutex
	if profile.RestartExited {
		watchdog.Add(1)
		go func() {
			defer watchdog.Done()
			stack.RestartExited(watchContext, stackDir, func(line string) {
				restartsMutex.Lock()
				restarts = append(restarts, line)
				restartsMutex.Unlock()
				say("%s", line)
			})
		}()
	}
	stopWatchdog := func() {
		stopWatching()
		watchdog.Wait()
	}
	defer stopWatchdog()

	say("load %s for %s (%s)", filepath.Base(o.Scenario), profile.Duration, profileSetsText(profile, o.Duration))
	config := cellConfig(ctx, o, profile, run.Shards, name, dir, target.SeededBugs, target, progress)
	c := &cell{ctx: ctx, dir: dir, stackDir: stackDir, say: say, result: &result, record: config.Record,
		setupTimeout: config.SetupTimeout, loadTimeout: config.LoadTimeout}
	config.Hooks = runner.Hooks{Recover: c.recoverStack, Audit: c.auditHook(o)}
	_, err = runner.Run(ctx, config)
	stopWatchdog()
	if err != nil {
		return fail(err)
	}
	c.loadEnded() // done by the Recover hook already
	if c.err == nil && c.audit == nil {
		c.err = fmt.Errorf("the run ended without an audit (see %s)", progress.Name())
	}
	if c.err != nil {
		return fail(c.err)
	}
	result.Faults = append(result.Faults, restarts...)
	result.FromAudit(c.audit)
	result.Seconds = time.Since(began).Seconds()
	result.Judge()
	verdict := "caught"
	switch {
	case result.Clean() && result.Pass:
		verdict = "clean: passed"
	case result.Clean():
		verdict = "clean: FAILED — " + result.Note
	case !result.Caught:
		verdict = "NOT CAUGHT — " + result.Note
	}
	say("audit %s, violated: %s; %s (%.0fs)", c.audit.Verdict, strings.Join(nonEmpty(result.Violated, "none"), ", "), verdict, result.Seconds)
	return result
}

// cellProfile is the run's profile as the cell runs it: its duration is --duration's when given; on a sharded
// stack its load also sends transfers to missing accounts (mutation.ShardedSets).
func cellProfile(o Options, run mutation.Run) mutation.Profile {
	profile := run.Profile
	if o.Duration > 0 {
		profile.Duration = o.Duration
	}
	if run.Shards > 1 {
		// First, so that a profile's own setting wins.
		profile.Sets = append(append([]string(nil), mutation.ShardedSets...), profile.Sets...)
	}
	return profile
}

// cellStack is what the engine's configuration of a cell takes from its started stack (a runner.LocalStack).
type cellStack interface {
	Stack() runner.StackInfo
	ScrapeTargets() []runner.ScrapeTarget
	Executor() chaos.Executor
}

// cellConfig is the engine's configuration of a cell's run, hooks aside, on its started stack: the scenario
// with the profile's sets, then the duration and the setup bound; the matrix's seed; the stack's gateways
// and metrics; the profile's faults on a stack of shards shards as the plan; the engine's bounds of the load; and run.json's record,
// with the seeded bugs. profile's duration is the run's (--duration applied).
func cellConfig(ctx context.Context, o Options, profile mutation.Profile, shards int, name, dir string, seededBugs []string,
	target cellStack, output io.Writer) runner.Config {
	sets := profileSets(profile, o.Duration)
	stackInfo := target.Stack()
	config := runner.Config{
		RunDir: dir, Scenario: o.Scenario, Binary: o.Binary, Sets: sets, Seed: int64(o.Seed),
		Gateways: stackInfo.Gateways, ScrapeTargets: target.ScrapeTargets(),
		// run.json names no scenario: the audit then requires no coverage
		// class from it, as the matrix's audits always did (the expected
		// invariants and the clean verdict judge a cell).
		Record: &runner.RunFile{ID: name, ScenarioSets: sets, Stack: stackInfo,
			SeededBugs: seededBugs, Seed: int64(o.Seed), Versions: map[string]string{"go": runtime.Version()}},
		// The load's own setup.timeout gives up first (exit 2, audited);
		// the engine's bound is a backstop. The load: setup, the schedule,
		// the graceful stop.
		SetupTimeout: SetupTimeout + time.Minute,
		LoadTimeout:  profile.Duration + SetupTimeout + 2*time.Minute,
		AuditTimeout: o.DrainTimeout + 5*time.Minute,
		HardStop:     ctx,
		Output:       output,
	}
	if timeline := profileTimeline(profile, shards); len(timeline) > 0 {
		config.Plan = &runner.PlanRun{Name: profile.Name, Timeline: timeline, Executor: target.Executor()}
	}
	return config
}

// cellTarget is the cell's stack: a fresh one on free ports in a temporary
// directory (a short path: the Postgres unix socket lives under it), two
// gateways, two workers, a cheap KDF, the profile's gateway and worker
// arguments, and the run's seeded bug with the unsafe switch and the case's
// worker arguments.
func cellTarget(o Options, run mutation.Run) (*runner.LocalStack, error) {
	config := stack.DefaultConfig()
	config.Binary = o.Binary
	config.Gateways, config.Workers = mutation.Gateways, mutation.Workers
	config.Shards = max(run.Shards, 1)
	config.GatewayArgs = []string{"--kdf-memory-kib=1024", "--kdf-iterations=1"}
	config.WorkerArgs = []string{}
	// The profile's settings of the system, in its clean run too.
	config.GatewayArgs = append(config.GatewayArgs, run.Profile.GatewayArgs...)
	config.WorkerArgs = append(config.WorkerArgs, run.Profile.WorkerArgs...)
	options := runner.LocalOptions{Purge: !o.KeepStacks, KeepDir: o.KeepStacks}
	if run.Case != nil {
		// LocalStack makes the fresh directory and picks the free ports.
		options.SeededBugs = []string{string(run.Case.Bug)}
		config.WorkerArgs = append(config.WorkerArgs, run.Case.WorkerArgs...)
	} else {
		dir, err := os.MkdirTemp("", "lpm-")
		if err != nil {
			return nil, err
		}
		config.Dir = dir
		if err := runner.UseFreePorts(&config); err != nil {
			_ = os.Remove(dir)
			return nil, err
		}
	}
	options.Config = config
	return runner.NewLocalStack(options), nil
}

// profileTimeline is the profile's fault steps on a stack of shards shards
// as the chaos plan the engine runs: one step per component, timed from the
// load's start (the first operation of the schedule). The chaos runner
// applies the steps of one component in order and those of different
// components at once, as the profile's steps did. A profile with
// EveryShard names worker j of every shard where its step names worker-<j>.
func profileTimeline(profile mutation.Profile, shards int) []chaos.Step {
	var timeline []chaos.Step
	for index, step := range profile.Steps {
		for _, component := range step.Components {
			targets := []string{component}
			if j, isWorker := workerIndex(component); isWorker && profile.EveryShard {
				for s := 1; s < shards; s++ {
					targets = append(targets, stack.ShardWorkerName(s, j))
				}
			}
			for _, target := range targets {
				timeline = append(timeline, chaos.Step{At: step.At, Action: chaos.Action(step.Action), Target: target,
					Source: fmt.Sprintf("steps[%d]", index)})
			}
		}
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].At < timeline[j].At })
	return timeline
}

// workerIndex is j when component is shard 0's worker-<j>.
func workerIndex(component string) (int, bool) {
	digits, found := strings.CutPrefix(component, stack.KindWorker+"-")
	j, err := strconv.Atoi(digits)
	if !found || err != nil || j < 0 || stack.ShardWorkerName(0, j) != component {
		return 0, false
	}
	return j, true
}

// recoverStack is the engine's Recover hook: once the load and the plan ended,
// it says how they went, then starts every component that is not running
// (a lost command must not be one still queued behind a dead component).
func (c *cell) recoverStack(ctx context.Context, output io.Writer) error {
	c.loadEnded()
	if c.err != nil {
		return nil // not judged: nothing to recover for
	}
	err := runner.RecoverStack(ctx, c.stackDir, func(line string) {
		c.say("%s", line)
		fmt.Fprintln(output, line)
	})
	if err != nil {
		c.err = err
	}
	return err
}

// loadEnded reads what the load and the plan did into the result, once:
// the load's exit, the faults applied. A setup that gave up (exit 2) is
// audited like any other run; any other failure makes the run one that
// cannot be judged, and so does a load the engine cut short at one of its
// bounds, whatever it exited with (a load stopped early often exits 99,
// as a load under faults does). The engine calls it through the Recover hook, in the
// goroutine that writes the record, once the load and the plan ended.
func (c *cell) loadEnded() {
	if c.loadJudged {
		return
	}
	c.loadJudged = true
	record := c.record
	loadLog := filepath.Join(c.dir, runner.LoadLogFileName)
	code := record.LoadExitCode
	c.result.LoadExit = code
	faults, failed := faultLines(c.dir)
	c.result.Faults = faults
	switch record.LoadStopped {
	case "":
	case runner.LoadStoppedSetupTimeout:
		c.err = fmt.Errorf("the load was cut short: its setup did not end within the engine's setup timeout (%s), so the engine stopped it (exit %d; see %s and progress.log)",
			c.setupTimeout, code, loadLog)
		return
	case runner.LoadStoppedLoadTimeout:
		c.err = fmt.Errorf("the load was cut short: it did not finish within the engine's load timeout (%s), so the engine stopped it (exit %d; see %s and progress.log)",
			c.loadTimeout, code, loadLog)
		return
	case runner.LoadStoppedInterrupted:
		if c.ctx.Err() == nil {
			c.err = fmt.Errorf("the load was interrupted (exit %d; see %s and progress.log)", code, loadLog)
			return
		}
		// Said below, as an interruption.
	default:
		c.err = fmt.Errorf("the engine stopped the load (%s; exit %d; see %s and progress.log)", record.LoadStopped, code, loadLog)
		return
	}
	if record.LoadStartedAt == nil {
		if c.ctx.Err() != nil || code != generator.ExitCouldNotRun {
			c.err = fmt.Errorf("load setup: the load exited %d (see %s)", code, loadLog)
			return
		}
		// Setup gave up (exit 2): a funding deposit or a sign-up never
		// settled. Under a seeded bug that is often the bug itself (a 202
		// whose command was lost), so the journal of the setup is drained
		// and audited like any other: the money decides, not the load.
		c.result.SetupProblem = fmt.Sprintf("the load's setup did not finish (exit %d, see %s)", code, loadLog)
		c.say("%s; draining and auditing what it journaled", c.result.SetupProblem)
		return
	}
	loadStart := *record.LoadStartedAt
	for _, phase := range record.Phases {
		if phase.Name == "setup" {
			c.say("setup done in %.1fs; the schedule started", loadStart.Sub(phase.StartedAt).Seconds())
		}
	}
	for _, line := range faults {
		c.say("fault %s", line)
	}
	switch {
	case c.ctx.Err() != nil:
		c.err = fmt.Errorf("load interrupted: %w", c.ctx.Err())
		return
	case code != generator.ExitPassed && code != generator.ExitThresholdsFailed:
		c.err = fmt.Errorf("the load exited %d (see %s and progress.log)", code, loadLog)
		return
	}
	// The load's log is last written as it exits (the plan may go on
	// after it).
	loadEnd := time.Now()
	if info, err := os.Stat(loadLog); err == nil {
		loadEnd = info.ModTime()
	}
	c.say("load exited %d after %.0fs%s", code, loadEnd.Sub(loadStart).Seconds(), loadExitText(code))
	if len(failed) > 0 {
		c.err = fmt.Errorf("fault plan: %s", strings.Join(failed, "; "))
	}
}

// auditHook is the engine's Audit hook: drain and audit as `ledgerproof
// audit --run DIR --stack STACK` does, its stdout in audit-summary.txt.
// A run that cannot be judged is not audited.
func (c *cell) auditHook(o Options) func(ctx context.Context, runDir string, output io.Writer) (string, error) {
	return func(ctx context.Context, runDir string, output io.Writer) (string, error) {
		if c.err != nil {
			return "", c.err
		}
		summary, err := os.Create(filepath.Join(runDir, "audit-summary.txt"))
		if err != nil {
			c.err = err
			return "", err
		}
		c.say("drain and audit")
		code := runner.RunAudit(ctx, runner.AuditOptions{RunDir: runDir, StackDir: c.stackDir, Topic: invariants.DefaultTopic,
			DrainTimeout: o.DrainTimeout, QuietPeriod: runner.DefaultQuietPeriod, MaxViolations: runner.DefaultMaxViolations}, summary, output)
		summary.Close()
		audit, err := invariants.ReadResult(filepath.Join(runDir, "audit.json"))
		if err != nil {
			c.err = fmt.Errorf("audit exited %d without a result: %w (see %s)", code, err, filepath.Join(runDir, "progress.log"))
			return "", c.err
		}
		c.audit = audit
		return audit.Verdict, nil
	}
}

// faultLines are the plan's applied faults from the chaos log, in time
// order, as the matrix lists them ("t+6.0s kill worker-0: ok (0.1s)"), and
// those that failed.
func faultLines(runDir string) (lines, failed []string) {
	records, err := chaos.ReadLog(filepath.Join(runDir, chaos.LogFileName))
	if err != nil {
		return nil, nil // no plan, or it never started
	}
	sort.SliceStable(records, func(i, j int) bool { return records[i].OffsetMs < records[j].OffsetMs })
	for _, record := range records {
		if record.Cleanup {
			continue
		}
		line := fmt.Sprintf("t+%.1fs %s %s: ", float64(record.OffsetMs)/1000, record.Action, record.Target)
		if record.Result != chaos.ResultOK {
			line += "FAILED: " + record.Error
			failed = append(failed, line)
		} else {
			line += fmt.Sprintf("ok (%.1fs)", float64(record.DurationMs)/1000)
		}
		lines = append(lines, line)
	}
	return lines, failed
}

func nonEmpty(values []string, empty string) []string {
	if len(values) == 0 {
		return []string{empty}
	}
	return values
}

func seededText(bugs, workerArgs []string) string {
	if len(bugs) == 0 {
		return " (clean)"
	}
	text := " with seeded bug " + strings.Join(bugs, ",")
	if len(workerArgs) > 2 {
		text += " and worker args " + strings.Join(workerArgs[2:], " ")
	}
	return text
}

func loadExitText(code int) string {
	switch code {
	case generator.ExitPassed:
		return ""
	case generator.ExitThresholdsFailed:
		return " (thresholds crossed: expected under faults; the audit judges the money)"
	default:
		return " (see " + runner.LoadLogFileName + ")"
	}
}

// profileSetsText is the profile's load as the progress line shows it.
func profileSetsText(profile mutation.Profile, duration time.Duration) string {
	parts := profileSets(profile, duration)
	if len(profile.Steps) > 0 {
		parts = append(parts, fmt.Sprintf("%d fault step(s)", len(profile.Steps)))
	}
	return strings.Join(parts, " ")
}

// profileSets are the scenario overrides of a profile's load: the
// profile's, then its duration (or the --duration override) and the setup
// bound.
func profileSets(profile mutation.Profile, override time.Duration) []string {
	duration := profile.Duration
	if override > 0 {
		duration = override
	}
	return append(append([]string(nil), profile.Sets...),
		"schedule.duration="+duration.String(), "setup.timeout="+SetupTimeout.String())
}
