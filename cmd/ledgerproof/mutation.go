package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// mutationOptions are the flags of `ledgerproof mutation`.
type mutationOptions struct {
	out          string
	doc          string
	only         string
	k6           string
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
	flags.StringVar(&o.k6, "k6", "bin/k6", "the custom k6 (make k6)")
	flags.StringVar(&o.scenario, "scenario", "scenarios/gate.js", "the k6 scenario every run drives")
	flags.StringVar(&o.binary, "binary", "", "ledgerproof binary the stacks run (default: this binary)")
	flags.DurationVar(&o.duration, "duration", 0, "override every profile's load duration (0: the profile's, 30s; at most 60s)")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 90*time.Second, "bound of each audit's wait for the pipeline to drain")
	flags.IntVar(&o.seed, "seed", 0, "k6 SEED of every run (0: each run draws one, printed in its k6.log)")
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
	for _, path := range []string{o.k6, o.scenario} {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%w (build the custom k6 with 'make k6'; run from the repository root)", err)
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
	result := mutation.Result{System: run.Label(), Profile: profile.Name, K6Exit: -1}
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
		copyStackFiles(stackDir, filepath.Join(dir, "stack"))
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

	// The load and the faults.
	loadContext, stopLoad := context.WithCancel(ctx)
	var watchdog sync.WaitGroup
	var restarts []string
	var restartsMutex sync.Mutex
	if profile.RestartExited {
		watchdog.Add(1)
		go func() {
			defer watchdog.Done()
			restartExited(loadContext, stackDir, func(line string) {
				restartsMutex.Lock()
				restarts = append(restarts, line)
				restartsMutex.Unlock()
				say("%s", line)
			})
		}()
	}
	loadStart := time.Now()
	var plan sync.WaitGroup
	var faults []string
	var faultErr error
	plan.Add(1)
	go func() {
		defer plan.Done()
		faults, faultErr = mutation.Execute(loadContext, loadStart, profile.Steps, func(ctx context.Context, component, action string) error {
			_, err := stack.Operate(ctx, stackDir, component, action)
			return err
		}, func(line string) { say("fault %s", line) })
	}()
	say("load %s for %s (%s)", filepath.Base(o.scenario), profile.Duration, profileEnvText(profile))
	k6Exit, k6Err := runK6(loadContext, o, dir, up.File, profile)
	result.K6Exit = k6Exit
	plan.Wait() // steps all fall inside the load; the plan ends with it or before
	result.Faults = faults
	if k6Err != nil {
		stopLoad()
		watchdog.Wait()
		return fail(k6Err)
	}
	say("k6 exited %d after %.0fs%s", k6Exit, time.Since(loadStart).Seconds(), k6ExitText(k6Exit))
	if faultErr != nil {
		stopLoad()
		watchdog.Wait()
		return fail(fmt.Errorf("fault plan: %w", faultErr))
	}

	// Recovery: everything up again before the drain (a lost command must
	// not be one still queued behind a dead component).
	if err := recoverStack(ctx, stackDir, func(line string) { say("%s", line) }); err != nil {
		stopLoad()
		watchdog.Wait()
		return fail(err)
	}
	summary, err := os.Create(filepath.Join(dir, "audit-summary.txt"))
	if err != nil {
		stopLoad()
		watchdog.Wait()
		return fail(err)
	}
	say("drain and audit")
	code := runAudit(ctx, auditOptions{runDir: dir, stackDir: stackDir, topic: invariants.DefaultTopic,
		drainTimeout: o.drainTimeout, quietPeriod: 2 * time.Second, maxViolations: 20}, summary, progress)
	summary.Close()
	stopLoad()
	watchdog.Wait()
	result.Faults = append(result.Faults, restarts...)
	audit, err := readAuditResult(filepath.Join(dir, "audit.json"))
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

func k6ExitText(code int) string {
	switch code {
	case 0:
		return ""
	case 99:
		return " (thresholds crossed: expected under faults; the audit judges the money)"
	default:
		return " (see k6.log)"
	}
}

func profileEnvText(profile mutation.Profile) string {
	keys := make([]string, 0, len(profile.Env))
	for k := range profile.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+profile.Env[k])
	}
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
	ports, err := freePorts(5, map[int]int{3: mutation.Gateways, 4: mutation.Workers})
	if err != nil {
		return config, err
	}
	config.PostgresPort, config.RedisPort, config.BrokerPort, config.GatewayPort, config.WorkerMetricsPort =
		ports[0], ports[1], ports[2], ports[3], ports[4]
	return config, nil
}


// runK6 runs the scenario against the stack's gateways; the journal and the
// k6 summary go to dir. It returns k6's exit status; the error is for a k6
// that did not run (not for crossed thresholds, exit 99).
func runK6(ctx context.Context, o mutationOptions, dir string, file *stack.File, profile mutation.Profile) (int, error) {
	logFile, err := os.Create(filepath.Join(dir, "k6.log"))
	if err != nil {
		return -1, err
	}
	defer logFile.Close()
	env := map[string]string{
		"BASE_URL": strings.Join(file.Endpoints.Gateways, ","),
		"RUN_DIR":  dir,
		"DURATION": profile.Duration.String(),
	}
	if o.seed != 0 {
		env["SEED"] = strconv.Itoa(o.seed)
	}
	for k, v := range profile.Env {
		env[k] = v
	}
	args := []string{"run", "--no-usage-report", "--no-color", "--summary-export", filepath.Join(dir, "k6-summary.json")}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-e", k+"="+env[k])
	}
	args = append(args, o.scenario)
	// Bounded: setup, the load, the graceful stop and teardown.
	k6Context, cancel := context.WithTimeout(ctx, profile.Duration+4*time.Minute)
	defer cancel()
	command := exec.CommandContext(k6Context, o.k6, args...)
	command.Stdout, command.Stderr = logFile, logFile
	command.Env = os.Environ()
	fmt.Fprintf(logFile, "$ %s %s\n", o.k6, strings.Join(args, " "))
	err = command.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case ctx.Err() != nil:
		return -1, fmt.Errorf("k6 interrupted: %w", ctx.Err())
	case k6Context.Err() != nil:
		return -1, fmt.Errorf("k6 did not finish within %s (see %s)", profile.Duration+4*time.Minute, logFile.Name())
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 99:
		return 99, nil
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), fmt.Errorf("k6 exited %d (see %s)", exitErr.ExitCode(), logFile.Name())
	default:
		return -1, fmt.Errorf("k6: %w", err)
	}
}

// restartExited restarts, until ctx ends, every gateway or worker that
// exited on its own (recorded running or failed, process gone) for at least
// a second: a seeded crash, as a process supervisor would. Components the
// fault plan killed or stopped are left to the plan.
func restartExited(ctx context.Context, dir string, log func(string)) {
	deadSince := map[string]time.Time{}
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		file, err := stack.Load(dir)
		if err != nil {
			continue
		}
		for _, component := range file.Components {
			if component.Kind != stack.KindWorker && component.Kind != stack.KindGateway {
				continue
			}
			exited := !component.Alive() && (component.State == stack.StateRunning || component.State == stack.StateFailed)
			if !exited {
				delete(deadSince, component.Name)
				continue
			}
			since, seen := deadSince[component.Name]
			if !seen {
				deadSince[component.Name] = time.Now()
				continue
			}
			if time.Since(since) < time.Second {
				continue
			}
			_, err := stack.Operate(ctx, dir, component.Name, stack.ActionStart)
			if ctx.Err() != nil {
				return
			}
			delete(deadSince, component.Name)
			if err != nil {
				log(fmt.Sprintf("restart of %s (exited on its own) failed: %v", component.Name, firstLine(err.Error())))
			} else {
				log(fmt.Sprintf("restarted %s (exited on its own)", component.Name))
			}
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// recoverStack starts every component that is not running, in the stack's
// order (Postgres, Redis, broker, gateways, workers), retrying a few times.
func recoverStack(ctx context.Context, dir string, log func(string)) error {
	for attempt := 1; ; attempt++ {
		file, err := stack.Load(dir)
		if err != nil {
			return err
		}
		var failed []error
		for _, component := range file.Components {
			if component.Alive() {
				continue
			}
			startContext, cancel := context.WithTimeout(ctx, time.Minute)
			_, err := stack.Operate(startContext, dir, component.Name, stack.ActionStart)
			cancel()
			if err != nil {
				failed = append(failed, fmt.Errorf("%s: %s", component.Name, firstLine(err.Error())))
			} else {
				log(fmt.Sprintf("recovery: started %s", component.Name))
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if attempt == 3 || ctx.Err() != nil {
			return fmt.Errorf("recovery: %w", errors.Join(failed...))
		}
		time.Sleep(2 * time.Second)
	}
}

func readAuditResult(path string) (*invariants.Result, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var result invariants.Result
	if err := json.Unmarshal(content, &result); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &result, nil
}

// copyStackFiles copies the stack file and the components' logs into dest.
func copyStackFiles(stackDir, dest string) {
	_ = os.MkdirAll(dest, 0o755)
	copyFile := func(from, to string) {
		content, err := os.ReadFile(from)
		if err == nil {
			_ = os.WriteFile(to, content, 0o644)
		}
	}
	copyFile(filepath.Join(stackDir, stack.FileName), filepath.Join(dest, stack.FileName))
	logs, _ := filepath.Glob(filepath.Join(stackDir, "logs", "*.log"))
	for _, log := range logs {
		copyFile(log, filepath.Join(dest, filepath.Base(log)))
	}
}
