package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// LogFileName is the chaos log inside a run directory.
const LogFileName = "chaos-log.jsonl"

// LogVersion is the version of the chaos log's lines.
const LogVersion = 1

// Results of a chaos-log record.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// Record is one line of the chaos log: one applied fault.
type Record struct {
	Version int `json:"v"`
	// Plan and Seed name the plan and the seed of its random choices.
	Plan string `json:"plan"`
	Seed uint64 `json:"seed"`
	// Source is the plan entry the step came from: steps[2], steps[2]
	// recovery, random #3 (kill-broker), cleanup.
	Source string `json:"source"`
	// Start is the run's start; Planned the step's offset from it; Time
	// when the action began; OffsetMs = Time - Start.
	Start     time.Time `json:"start"`
	Planned   string    `json:"planned"`
	PlannedMs int64     `json:"planned_ms"`
	Time      time.Time `json:"time"`
	OffsetMs  int64     `json:"offset_ms"`
	Action    string    `json:"action"`
	// Target is the plan's target; Resolved the concrete one it meant
	// (the owner of a worker:partition=N target), when they differ.
	Target   string            `json:"target"`
	Resolved string            `json:"resolved,omitempty"`
	Params   map[string]string `json:"params"`
	// Result is ok or error; Error says why.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// DurationMs is how long the action took (a start includes the wait
	// until the process is ready again).
	DurationMs int64 `json:"duration_ms"`
	// Cleanup marks the runner's own actions at the end of a run: resuming
	// paused processes, healing links that the plan left faulted, running
	// the recover command of a command fault whose recovery did not run.
	Cleanup bool `json:"cleanup,omitempty"`
}

// Runner applies a timeline to a stack through an Executor.
//
// Steps run at their offsets from the start. Steps on one target run one
// after the other in timeline order (a start waits for the kill before it);
// steps on different targets run concurrently, so a slow restart of
// Postgres does not delay the broker's fault. A step that fails is logged
// and the run goes on, unless StopOnError.
type Runner struct {
	// Executor applies the faults. Required.
	Executor Executor
	// ChaosLog receives one JSON line per applied fault (Record). Nil: none.
	ChaosLog io.Writer
	// Output receives one human line per applied fault. Nil: discarded.
	Output io.Writer
	// StopOnError ends the run at the first failed step. Default false: a
	// failed fault is a finding; the rest of the plan still runs.
	StopOnError bool
	// StepTimeout bounds each action. Default 2m: a start waits for
	// readiness (Postgres recovering after a crash takes the longest).
	StepTimeout time.Duration
	// LeaveFaults keeps processes paused, links faulted and command faults
	// unrecovered when the run ends. Default false: the runner resumes,
	// heals and recovers what the plan left (logged as cleanup), so an
	// interrupted drill does not leave a frozen stack behind.
	LeaveFaults bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Summary is what a run did.
type Summary struct {
	Records []Record
	// Failed counts failed steps; NotRun the steps not reached (the run was
	// cancelled or stopped on an error).
	Failed int
	NotRun int
}

// defaultStepTimeout bounds each action when Runner.StepTimeout is zero.
const defaultStepTimeout = 2 * time.Minute

// cleanupTimeout bounds the end-of-run cleanup.
const cleanupTimeout = 30 * time.Second

// Run applies timeline, whose offsets count from start, and returns when
// every step ran, or ctx ended, or (StopOnError) a step failed. The error
// says how many steps failed or were not run.
func (r *Runner) Run(ctx context.Context, planName string, seed uint64, timeline []Step, start time.Time) (*Summary, error) {
	if r.Executor == nil {
		return nil, errors.New("chaos runner: no executor")
	}
	run := &runState{runner: r, plan: planName, seed: seed, start: start, paused: map[string]bool{}, faulted: map[string]bool{},
		recoveries: map[string]Step{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run.cancel = cancel

	// Lanes: the steps of one target, in timeline order.
	lanes := map[string][]Step{}
	var order []string
	for _, step := range timeline {
		if _, ok := lanes[step.Target]; !ok {
			order = append(order, step.Target)
		}
		lanes[step.Target] = append(lanes[step.Target], step)
	}
	var wait sync.WaitGroup
	for _, lane := range order {
		wait.Add(1)
		go func(steps []Step) {
			defer wait.Done()
			// A worker:partition=N lane resolves its worker once, at its
			// first step, so its start acts on the worker its kill killed
			// even if the partition moved meanwhile.
			var owner string
			for index, step := range steps {
				if !run.waitUntil(ctx, step.At) {
					run.notRun(len(steps) - index)
					return
				}
				owner = run.apply(ctx, step, owner, false)
			}
		}(lanes[lane])
	}
	wait.Wait()
	if !r.LeaveFaults {
		run.cleanup()
	}
	sort.SliceStable(run.summary.Records, func(i, j int) bool { return run.summary.Records[i].Time.Before(run.summary.Records[j].Time) })
	var problems []error
	if run.summary.Failed > 0 {
		problems = append(problems, fmt.Errorf("%d of %d steps failed", run.summary.Failed, len(timeline)))
	}
	if run.summary.NotRun > 0 {
		cause := ctx.Err()
		if parent := context.Cause(ctx); parent != nil {
			cause = parent
		}
		problems = append(problems, fmt.Errorf("%d steps not run (%v)", run.summary.NotRun, cause))
	}
	if run.logError != nil {
		problems = append(problems, fmt.Errorf("chaos log: %w", run.logError))
	}
	return &run.summary, errors.Join(problems...)
}

// runState is one run's shared state.
type runState struct {
	runner *Runner
	plan   string
	seed   uint64
	start  time.Time
	cancel context.CancelFunc

	mutex    sync.Mutex
	summary  Summary
	logError error
	// paused and faulted are what a cleanup must undo: paused processes
	// and faulted links, by resolved target.
	paused  map[string]bool
	faulted map[string]bool
	// recoveries are the command faults (by source) whose recovery has not
	// run yet.
	recoveries map[string]Step
}

func (s *runState) now() time.Time {
	if s.runner.Now != nil {
		return s.runner.Now()
	}
	return time.Now()
}

// waitUntil sleeps until the offset; false if ctx ended first.
func (s *runState) waitUntil(ctx context.Context, offset time.Duration) bool {
	delay := s.start.Add(offset).Sub(s.now())
	if delay <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (s *runState) notRun(count int) {
	s.mutex.Lock()
	s.summary.NotRun += count
	s.mutex.Unlock()
}

// apply runs one step and records it; owner is the worker a partition
// target resolved to earlier in its lane (empty: resolve now). It returns the
// target the step resolved to.
func (s *runState) apply(ctx context.Context, step Step, owner string, cleanup bool) string {
	timeout := s.runner.StepTimeout
	if timeout <= 0 {
		timeout = defaultStepTimeout
	}
	if step.Action == ActionCommand {
		timeout = commandTimeout(step) + 5*time.Second // the command's own bound ends it first
	}
	stepContext, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if step.Action == ActionCommand && step.Params.Recover != "" && !cleanup {
		// Its recovery is owed from the moment the fault starts: a fault
		// command interrupted or timed out may still have done its work
		// (the daemon it asked carries on), so the cleanup runs the
		// recovery unless the plan's recovery step ran.
		s.mutex.Lock()
		s.recoveries[step.Source] = step
		s.mutex.Unlock()
	}
	// The record's time is when the action itself began: resolving a
	// worker:partition=N target first may wait for the group's owner.
	resolved, began, err := s.execute(stepContext, step, owner)
	took := s.now().Sub(began)

	record := Record{
		Version: LogVersion, Plan: s.plan, Seed: s.seed, Source: step.Source,
		Start: s.start.UTC(), Planned: step.At.String(), PlannedMs: step.At.Milliseconds(),
		Time: began.UTC(), OffsetMs: began.Sub(s.start).Milliseconds(),
		Action: string(step.Action), Target: step.Target, Params: step.Params.Map(),
		Result: ResultOK, DurationMs: took.Milliseconds(), Cleanup: cleanup,
	}
	if resolved != step.Target {
		record.Resolved = resolved
	}
	if err != nil {
		record.Result, record.Error = ResultError, err.Error()
	}
	line, marshalError := marshalRecord(record)

	s.mutex.Lock()
	defer s.mutex.Unlock()
	if err == nil {
		s.track(step, resolved)
	}
	s.summary.Records = append(s.summary.Records, record)
	if s.runner.ChaosLog != nil && s.logError == nil {
		if marshalError != nil {
			s.logError = marshalError
		} else if _, writeError := s.runner.ChaosLog.Write(line); writeError != nil {
			s.logError = writeError
		}
	}
	if s.runner.Output != nil {
		fmt.Fprintln(s.runner.Output, describeRecord(record))
	}
	if err != nil {
		s.summary.Failed++
		if s.runner.StopOnError && !cleanup {
			s.cancel()
		}
	}
	if resolved == step.Target {
		return owner
	}
	return resolved
}

// marshalRecord renders a record as one JSON line, without escaping the
// ">" of link names.
func marshalRecord(record Record) ([]byte, error) {
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(record); err != nil {
		return nil, err
	}
	return buffer.Bytes(), nil
}

// describeRecord is the human line of a record.
func describeRecord(record Record) string {
	target := record.Target
	if record.Resolved != "" {
		target += " (" + record.Resolved + ")"
	}
	step := Step{Action: Action(record.Action), Target: target}
	text := fmt.Sprintf("chaos t+%.3fs (planned %s) %s %s", float64(record.OffsetMs)/1000, record.Planned, step.Action, step.Target)
	if len(record.Params) > 0 {
		keys := make([]string, 0, len(record.Params))
		for key := range record.Params {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			text += " " + key + "=" + record.Params[key]
		}
	}
	if record.Cleanup {
		text += " [cleanup]"
	}
	if record.Result == ResultOK {
		return fmt.Sprintf("%s: ok in %dms", text, record.DurationMs)
	}
	return fmt.Sprintf("%s: ERROR after %dms: %s", text, record.DurationMs, record.Error)
}

// execute resolves the step's target and dispatches its action.
func (s *runState) execute(ctx context.Context, step Step, owner string) (resolved string, began time.Time, err error) {
	executor := s.runner.Executor
	resolved = step.Target
	if step.Action == ActionCommand {
		began = s.now()
		return resolved, began, runCommandStep(ctx, step)
	}
	if partition, ok := PartitionOf(step.Target); ok && owner != "" {
		resolved = owner
	} else if ok {
		resolved, err = executor.PartitionOwner(ctx, partition)
		if err != nil {
			return step.Target, s.now(), err
		}
	}
	began = s.now()
	switch {
	case processActions[step.Action]:
		return resolved, began, executor.Process(ctx, step.Action, resolved)
	case step.Action == ActionLink:
		return resolved, began, executor.Link(ctx, resolved, LinkParams{Fault: step.Params.Fault,
			Latency: step.Params.Latency, Jitter: step.Params.Jitter, RateKilobytesPerSecond: step.Params.RateKilobytesPerSecond})
	case step.Action == ActionFailover:
		return resolved, began, executor.Failover(ctx)
	case step.Action == ActionCrashPoint:
		return resolved, began, executor.ArmCrashPoint(ctx, resolved, step.Params.Point)
	}
	// Validation admits only the actions above.
	panic(fmt.Sprintf("chaos: step %s has unknown action %q", step.Source, step.Action))
}

// track remembers what a cleanup must undo; the caller holds the mutex.
func (s *runState) track(step Step, resolved string) {
	switch {
	case step.Action == ActionPause:
		s.paused[resolved] = true
	case step.Action == ActionResume, step.Action == ActionKill, step.Action == ActionStop,
		step.Action == ActionStart, step.Action == ActionRestart:
		// A killed or restarted process is no longer frozen.
		delete(s.paused, resolved)
	case step.Action == ActionCommand && strings.HasSuffix(step.Source, " recovery"):
		delete(s.recoveries, strings.TrimSuffix(step.Source, " recovery"))
	case step.Action == ActionLink && step.Params.Fault == FaultHeal:
		delete(s.faulted, resolved)
	case step.Action == ActionLink:
		s.faulted[resolved] = true
	}
}

// cleanup resumes paused processes, heals faulted links and runs the recover
// command of each command fault whose recovery step did not succeed, each
// with a context of its own: it also runs after the run's context was
// cancelled.
func (s *runState) cleanup() {
	s.mutex.Lock()
	var steps []Step
	offset := s.now().Sub(s.start).Truncate(time.Millisecond)
	for target := range s.paused {
		steps = append(steps, Step{At: offset, Action: ActionResume, Target: target, Source: "cleanup"})
	}
	for link := range s.faulted {
		steps = append(steps, Step{At: offset, Action: ActionLink, Target: link, Params: Params{Fault: FaultHeal}, Source: "cleanup"})
	}
	for source, fault := range s.recoveries {
		// A command fault whose recovery the run did not reach: run it now.
		steps = append(steps, Step{At: offset, Action: ActionCommand, Target: fault.Target,
			Params: Params{Run: fault.Params.Recover, Timeout: fault.Params.Timeout}, Source: "cleanup of " + source})
	}
	s.mutex.Unlock()
	sort.Slice(steps, func(i, j int) bool { return steps[i].Target < steps[j].Target })
	for _, step := range steps {
		// Each its own bound: a slow recovery command must not eat the
		// others' time, nor be cut short of its own timeout.
		timeout := cleanupTimeout
		if step.Action == ActionCommand {
			timeout = commandTimeout(step) + 5*time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		s.apply(ctx, step, "", true)
		cancel()
	}
}

// OpenLog opens (creating the run directory) <runDir>/chaos-log.jsonl for
// appending: several chaos runs of one run directory add to one log.
func OpenLog(runDir string) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	file, err := os.OpenFile(filepath.Join(runDir, LogFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos log: %w", err)
	}
	return file, nil
}

// ReadLog reads a chaos log.
func ReadLog(path string) ([]Record, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var records []Record
	for index, line := range splitLines(content) {
		var record Record
		if err := json.Unmarshal(line, &record); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, index+1, err)
		}
		records = append(records, record)
	}
	return records, nil
}

func splitLines(content []byte) [][]byte {
	var lines [][]byte
	for _, line := range bytes.Split(content, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			lines = append(lines, line)
		}
	}
	return lines
}

// WriteTimeline prints an expanded plan: its seed and each step.
func WriteTimeline(w io.Writer, plan *Plan, seed uint64, seedSource string, timeline []Step) {
	fmt.Fprintf(w, "plan %s: %d steps over %s", plan.Name, len(timeline), plan.Duration)
	if plan.Random != nil {
		fmt.Fprintf(w, ", seed %d (%s; replay with --seed %d)", seed, seedSource, seed)
	}
	fmt.Fprintln(w)
	if plan.Description != "" {
		fmt.Fprintf(w, "  %s\n", plan.Description)
	}
	for _, step := range timeline {
		fmt.Fprintf(w, "  %-60s  [%s]\n", step.String(), step.Source)
	}
}
