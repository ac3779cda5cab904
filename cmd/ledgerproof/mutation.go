package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// mutationOptions are the flags of `ledgerproof mutation`.
type mutationOptions struct {
	out          string
	doc          string
	only         string
	scenario     string
	binary       string
	duration     time.Duration
	drainTimeout time.Duration
	seed         int
	keepStacks   bool
}

// mutationCommand runs the mutation matrix: every seeded bug, and the clean
// system, under the fault profile that makes the bug show itself, each on a
// fresh local stack; then prints which invariants caught what
// (docs/mutation.md). It fails unless every bug is caught by an expected
// invariant and the clean system passes every profile.
func mutationCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("mutation", flag.ContinueOnError)
	var o mutationOptions
	flags.StringVar(&o.out, "out", "reports/runs", "parent of the run folder mutation-<timestamp>/ (matrix.json, one subfolder per run)")
	flags.StringVar(&o.doc, "doc", "docs/mutation.md", "Markdown file whose generated section (between the markers) receives the matrix; written only for a full matrix (no --only); empty: none")
	flags.StringVar(&o.only, "only", "", "comma-separated seeded bugs to run (with the clean system under their profiles); default every bug")
	flags.StringVar(&o.scenario, "scenario", "scenarios/gate.yaml", "the scenario every run's load drives, with each profile's overrides (docs/scenarios.md)")
	flags.StringVar(&o.binary, "binary", "", "ledgerproof binary the stacks and the load run (default: this binary)")
	flags.DurationVar(&o.duration, "duration", 0, "override every profile's load duration (0: the profile's, 30s; at most 60s)")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 90*time.Second, "bound of each audit's wait for the pipeline to drain")
	flags.IntVar(&o.seed, "seed", 0, "seed of every run's load (0: each run draws one, printed in its load.log)")
	flags.BoolVar(&o.keepStacks, "keep-stacks", false, "stop but do not purge each run's stack directory (its path is printed)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return runMutationMatrix(ctx, o, os.Stdout)
	}
}

func runMutationMatrix(ctx context.Context, o mutationOptions, out io.Writer) error {
	if o.duration < 0 || o.duration > 60*time.Second {
		return fmt.Errorf("--duration %s: want 0 (the profiles') or at most 60s", o.duration)
	}
	var only []string
	if o.only != "" {
		only = strings.Split(o.only, ",")
	}
	runs, err := mutation.Plan(only)
	if err != nil {
		return err
	}
	// Every profile's load is checked before any stack starts: a set the
	// scenario refuses would otherwise fail each run in turn.
	for _, profile := range mutation.Profiles() {
		if _, err := scenario.Load(o.scenario, mutationSets(profile, o.duration)); err != nil {
			return fmt.Errorf("profile %s: %w (run from the repository root)", profile.Name, err)
		}
	}
	if o.binary == "" {
		if o.binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find the ledgerproof binary: %w", err)
		}
	}
	started := time.Now().UTC()
	root, err := filepath.Abs(filepath.Join(o.out, "mutation-"+started.Format("20060102T150405Z")))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	matrix := &mutation.Matrix{
		Version: 1, StartedAt: started, Dir: root, Profiles: mutation.Profiles(), Cases: mutation.Cases(),
		Complete: len(only) == 0, Command: "ledgerproof mutation " + strings.Join(os.Args[2:], " "),
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Commit: vcsRevision(),
	}
	matrix.Hostname, _ = os.Hostname()
	fmt.Fprintf(out, "mutation: %d runs (%d fault profiles), run folder %s\n", len(runs), countProfiles(runs), root)
	for i, run := range runs {
		if ctx.Err() != nil {
			matrix.Unfinished = true
			break
		}
		result := runOneMutation(ctx, o, root, i, len(runs), run, out)
		matrix.Results = append(matrix.Results, result)
		if ctx.Err() != nil {
			matrix.Unfinished = true
		}
	}
	matrix.Seconds = time.Since(started).Seconds()
	matrix.Finish()

	content, err := json.MarshalIndent(matrix, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "matrix.json"), append(content, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmutation matrix (%s, %s):\n\n%s\n", root, (time.Duration(matrix.Seconds) * time.Second).String(), matrix.Text())
	if err := os.WriteFile(filepath.Join(root, "matrix.md"), []byte(matrix.Markdown()), 0o644); err != nil {
		return err
	}
	switch {
	case o.doc == "":
	case !matrix.Complete || matrix.Unfinished:
		fmt.Fprintf(out, "%s not updated: only a full, finished matrix is written there (this one: %s/matrix.md)\n", o.doc, root)
	default:
		if err := writeMatrixDoc(o.doc, matrix.Markdown()); err != nil {
			return err
		}
		fmt.Fprintf(out, "matrix written to %s and %s\n", o.doc, filepath.Join(root, "matrix.json"))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if !matrix.Passed {
		return fmt.Errorf("%d of %d run(s) not as required:\n  %s", len(matrix.Failures), len(matrix.Results),
			strings.Join(matrix.Failures, "\n  "))
	}
	fmt.Fprintf(out, "mutation: PASSED — every seeded bug caught by an expected invariant; the clean system passed every profile\n")
	return nil
}

func countProfiles(runs []mutation.Run) int {
	seen := map[string]bool{}
	for _, run := range runs {
		seen[run.Profile.Name] = true
	}
	return len(seen)
}

func vcsRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	revision, modified := "", false
	for _, setting := range info.Settings {
		switch setting.Key {
		case "vcs.revision":
			revision = setting.Value
		case "vcs.modified":
			modified = setting.Value == "true"
		}
	}
	if revision != "" && modified {
		revision += " (modified)"
	}
	return revision
}

// writeMatrixDoc replaces the generated section of the doc.
func writeMatrixDoc(path, generated string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("matrix doc: %w", err)
	}
	updated, err := mutation.ReplaceGenerated(string(doc), generated)
	if err != nil {
		return fmt.Errorf("matrix doc %s: %w", path, err)
	}
	return os.WriteFile(path, []byte(updated), 0o644)
}

// runOneMutation runs one cell: a fresh stack (the bug, if any), the load
// with the profile's faults, recovery, drain and audit, then the stack
// stopped and purged (a seeded bug changes the schema for good). It never
// returns without stopping the stack it started.
func runOneMutation(ctx context.Context, o mutationOptions, root string, index, total int, run mutation.Run, out io.Writer) mutation.Result {
	began := time.Now()
	profile := run.Profile
	if o.duration > 0 {
		profile.Duration = o.duration
	}
	result := mutation.Result{System: run.Label(), Profile: profile.Name, LoadExit: -1}
	if run.Case != nil {
		result.Expected = run.Case.Expected
	}
	name := fmt.Sprintf("%02d-%s-%s", index+1, profile.Name, run.Label())
	dir := filepath.Join(root, name)
	result.Dir = dir
	prefix := fmt.Sprintf("[%d/%d] %s / %s", index+1, total, run.Label(), profile.Name)
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

	// A short path: the Postgres unix socket lives under it.
	stackDir, err := os.MkdirTemp("", "lpm-")
	if err != nil {
		return fail(err)
	}
	if err := os.Chmod(stackDir, 0o755); err != nil { // the postgres OS user must reach it
		return fail(err)
	}
	config, err := mutationStackConfig(stackDir, o.binary, run)
	if err != nil {
		return fail(err)
	}
	config.Output = progress
	say("stack up in %s%s", stackDir, seededText(config))
	defer func() {
		// Always stopped, even on Ctrl-C; logs copied, then the directory
		// purged (a seeded bug changed its schema for good).
		downContext, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err := stack.Down(downContext, stackDir, stack.DownOptions{Output: progress})
		runner.CopyStackFiles(stackDir, filepath.Join(dir, "stack"))
		switch {
		case err != nil:
			say("ERROR stopping the stack (kept in %s): %v", stackDir, err)
		case o.keepStacks:
			say("stack stopped, kept in %s", stackDir)
		default:
			if err := os.RemoveAll(stackDir); err != nil {
				say("ERROR purging %s: %v", stackDir, err)
			}
		}
	}()
	upContext, cancel := context.WithTimeout(ctx, 3*time.Minute)
	up, err := stack.Up(upContext, config)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("stack up: %w", err))
	}

	// The load and the faults. The load's setup (sign-ups, funding settled)
	// runs first; the fault plan is timed from the schedule's start, which
	// this process gives the load once setup is done.
	loadContext, stopLoad := context.WithCancel(ctx)
	var watchdog sync.WaitGroup
	var restarts []string
	var restartsMutex sync.Mutex
	if profile.RestartExited {
		// From before setup: a seeded crash may hit the funding deposits.
		watchdog.Add(1)
		go func() {
			defer watchdog.Done()
			runner.RestartExited(loadContext, stackDir, func(line string) {
				restartsMutex.Lock()
				restarts = append(restarts, line)
				restartsMutex.Unlock()
				say("%s", line)
			})
		}()
	}
	stopAll := func() {
		stopLoad()
		watchdog.Wait()
	}
	loadLog, err := os.Create(filepath.Join(dir, loadLogFileName))
	if err != nil {
		stopAll()
		return fail(err)
	}
	defer loadLog.Close()
	say("load %s for %s (%s)", filepath.Base(o.scenario), profile.Duration, profileSetsText(profile, o.duration))
	setupStarted := time.Now()
	// Bounded: setup (setup.timeout), the schedule, the graceful stop.
	boundedLoad, cancelBoundedLoad := context.WithTimeout(loadContext, profile.Duration+mutationSetupTimeout+2*time.Minute)
	defer cancelBoundedLoad()
	load, err := runner.StartGatedLoad(boundedLoad, o.binary, mutationLoadArgs(o, dir, up.File.Endpoints.Gateways, profile), dir, loadLog)
	if err != nil {
		stopAll()
		return fail(err)
	}
	if err := load.WaitReady(boundedLoad); err != nil {
		load.Stop()
		result.LoadExit = load.ExitCode()
		if ctx.Err() != nil || load.ExitCode() != generator.ExitCouldNotRun {
			stopAll()
			return fail(fmt.Errorf("load setup: %w (see %s)", err, loadLog.Name()))
		}
		// Setup gave up (exit 2): a funding deposit or a sign-up never
		// settled. Under a seeded bug that is often the bug itself (a 202
		// whose command was lost), so the journal of the setup is drained
		// and audited like any other: the money decides, not the load.
		result.SetupProblem = fmt.Sprintf("the load's setup did not finish (exit %d, see %s)", load.ExitCode(), loadLog.Name())
		say("%s; draining and auditing what it journaled", result.SetupProblem)
	} else {
		say("setup done in %.1fs; the schedule starts", time.Since(setupStarted).Seconds())
		if err := runMutationSchedule(ctx, boundedLoad, load, loadLog, profile, stackDir, &result, say); err != nil {
			stopAll()
			return fail(err)
		}
	}

	// Recovery: everything up again before the drain (a lost command must
	// not be one still queued behind a dead component).
	if err := runner.RecoverStack(ctx, stackDir, func(line string) { say("%s", line) }); err != nil {
		stopAll()
		return fail(err)
	}
	summary, err := os.Create(filepath.Join(dir, "audit-summary.txt"))
	if err != nil {
		stopAll()
		return fail(err)
	}
	say("drain and audit")
	code := runner.RunAudit(ctx, runner.AuditOptions{RunDir: dir, StackDir: stackDir, Topic: invariants.DefaultTopic,
		DrainTimeout: o.drainTimeout, QuietPeriod: 2 * time.Second, MaxViolations: 20}, summary, progress)
	summary.Close()
	stopAll()
	result.Faults = append(result.Faults, restarts...)
	audit, err := invariants.ReadResult(filepath.Join(dir, "audit.json"))
	if err != nil {
		return fail(fmt.Errorf("audit exited %d without a result: %w (see %s)", code, err, filepath.Join(dir, "progress.log")))
	}
	result.FromAudit(audit)
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
	say("audit %s, violated: %s; %s (%.0fs)", audit.Verdict, strings.Join(nonEmpty(result.Violated, "none"), ", "), verdict, result.Seconds)
	return result
}

func nonEmpty(values []string, empty string) []string {
	if len(values) == 0 {
		return []string{empty}
	}
	return values
}

func seededText(config stack.Config) string {
	if len(config.SeededBugs) == 0 {
		return " (clean)"
	}
	text := " with seeded bug " + strings.Join(config.SeededBugs, ",")
	if len(config.WorkerArgs) > 2 {
		text += " and worker args " + strings.Join(config.WorkerArgs[2:], " ")
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
		return " (see " + loadLogFileName + ")"
	}
}

// profileSetsText is the profile's load as the progress line shows it.
func profileSetsText(profile mutation.Profile, duration time.Duration) string {
	parts := mutationSets(profile, duration)
	if len(profile.Steps) > 0 {
		parts = append(parts, fmt.Sprintf("%d fault step(s)", len(profile.Steps)))
	}
	return strings.Join(parts, " ")
}

// mutationStackConfig is a fresh stack on free ports: two gateways, two
// workers, a cheap KDF, and the run's seeded bug with the unsafe switch.
func mutationStackConfig(dir, binary string, run mutation.Run) (stack.Config, error) {
	config := stack.DefaultConfig()
	config.Dir = dir
	config.Binary = binary
	config.Gateways, config.Workers = mutation.Gateways, mutation.Workers
	config.GatewayArgs = []string{"--kdf-memory-kib=1024", "--kdf-iterations=1"}
	config.WorkerArgs = []string{}
	if run.Case != nil {
		config.SeededBugs = []string{string(run.Case.Bug)}
		config.UnsafeAllowSeededBugs = true
		config.WorkerArgs = append(config.WorkerArgs, run.Case.WorkerArgs...)
	}
	err := runner.UseFreePorts(&config)
	return config, err
}

// mutationSetupTimeout bounds each run's load setup (setup.timeout): 50
// accounts signed up and funded take seconds; a setup still stuck after this
// names the accounts it could not prepare in load.log.
const mutationSetupTimeout = 2 * time.Minute

// loadLogFileName is the load's output in a mutation run's folder.
const loadLogFileName = "load.log"

// loadStartDelay is how far ahead of now the schedule's start is written: the
// load reads its start file every 20 ms.
const loadStartDelay = 100 * time.Millisecond

// mutationSets are the scenario overrides of a profile's load: the profile's,
// then its duration (or the --duration override) and the setup bound.
func mutationSets(profile mutation.Profile, override time.Duration) []string {
	duration := profile.Duration
	if override > 0 {
		duration = override
	}
	return append(append([]string(nil), profile.Sets...),
		"schedule.duration="+duration.String(), "setup.timeout="+mutationSetupTimeout.String())
}

// mutationLoadArgs is the command line of a run's load (`ledgerproof load`):
// the scenario with the profile's overrides against the stack's gateways, the
// journal and summary into the run's folder.
func mutationLoadArgs(o mutationOptions, dir string, gateways []string, profile mutation.Profile) []string {
	args := []string{"load", "--scenario", o.scenario, "--base-url", strings.Join(gateways, ","), "--out", dir}
	if o.seed != 0 {
		args = append(args, "--seed", strconv.Itoa(o.seed))
	}
	for _, set := range mutationSets(profile, o.duration) {
		args = append(args, "--set", set)
	}
	return args
}

// runMutationSchedule starts the load's schedule once its setup is done,
// runs the fault plan beside it and waits for both. The error is for a run
// that cannot be judged (interrupted, the load killed or unable to run, the
// plan failed); a threshold the faults crossed (exit 99) is not one.
func runMutationSchedule(ctx, boundedLoad context.Context, load *runner.GatedLoad, loadLog *os.File, profile mutation.Profile,
	stackDir string, result *mutation.Result, say func(string, ...any)) error {
	loadStart := time.Now().Add(loadStartDelay)
	if err := load.Start(loadStart); err != nil {
		load.Stop()
		return err
	}
	var plan sync.WaitGroup
	var faults []string
	var faultErr error
	plan.Add(1)
	go func() {
		defer plan.Done()
		faults, faultErr = mutation.Execute(boundedLoad, loadStart, profile.Steps, func(ctx context.Context, component, action string) error {
			_, err := stack.Operate(ctx, stackDir, component, action)
			return err
		}, func(line string) { say("fault %s", line) })
	}()
	loadErr := load.Wait()
	result.LoadExit = load.ExitCode()
	plan.Wait() // steps all fall inside the load; the plan ends with it or before
	result.Faults = faults
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("load interrupted: %w", ctx.Err())
	case boundedLoad.Err() != nil:
		deadline, _ := boundedLoad.Deadline()
		return fmt.Errorf("the load did not finish by %s (see %s)", deadline.Format(time.TimeOnly), loadLog.Name())
	case loadErr != nil:
		return loadErr
	case load.ExitCode() != generator.ExitPassed && load.ExitCode() != generator.ExitThresholdsFailed:
		return fmt.Errorf("the load exited %d (see %s)", load.ExitCode(), loadLog.Name())
	}
	say("load exited %d after %.0fs%s", load.ExitCode(), time.Since(loadStart).Seconds(), loadExitText(load.ExitCode()))
	if faultErr != nil {
		return fmt.Errorf("fault plan: %w", faultErr)
	}
	return nil
}
