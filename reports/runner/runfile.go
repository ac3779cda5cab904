// Package runner is the main job of Ledgerproof, `ledgerproof run`, as a
// library: it drives the load (`ledgerproof load` processes and their journals), applies a
// chaos plan in step with it, scrapes the system's metrics, waits for the
// load to end, then recovers, drains and audits, renders the report, and
// writes run.json with the verdict (docs/run-directory.md is the contract of
// what it writes).
//
// The stack itself (start, attach, stop) and the audit's and report's
// sources are wired by the caller (RunJob in job.go, for `ledgerproof run`): this package
// sees the system only through base URLs, metrics targets, a chaos executor
// and three hooks (Recover, Audit, Report).
package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// RunFileName is the run's configuration and result inside the run directory.
const RunFileName = "run.json"

// RunFileVersion is the version of run.json's format.
const RunFileVersion = 1

// Verdicts of a run and their exit codes (docs/run-directory.md). An
// invariant violation wins over everything else: money lost or duplicated
// is the finding, whatever else went wrong.
const (
	VerdictPassed            = "passed"
	VerdictInvariantViolated = "invariant-violated"
	VerdictCouldNotRun       = "could-not-run"
	VerdictThresholdFailed   = "threshold-failed"
	// VerdictWeak: the audit found no violation but is weak: the run did
	// not exercise what it had to (no money operation, or a class of
	// outcome its scenario promised never happened).
	VerdictWeak = "weak"
)

// Exit codes of `ledgerproof run`, one per verdict.
const (
	ExitPassed            = 0
	ExitInvariantViolated = 1
	ExitCouldNotRun       = 2
	ExitThresholdFailed   = 3
	ExitWeak              = 4
)

// ExitCode returns the exit code of a verdict.
func ExitCode(verdict string) int {
	switch verdict {
	case VerdictPassed:
		return ExitPassed
	case VerdictInvariantViolated:
		return ExitInvariantViolated
	case VerdictThresholdFailed:
		return ExitThresholdFailed
	case VerdictWeak:
		return ExitWeak
	}
	return ExitCouldNotRun
}

// Why the engine stopped the load (RunFile.LoadStopped): its setup did not end within Config.SetupTimeout,
// the generators did not finish within Config.LoadTimeout, the run was interrupted, or a generator could not
// start (or the generators' shared start time could not be written).
const (
	LoadStoppedSetupTimeout = "setup timeout"
	LoadStoppedLoadTimeout  = "load timeout"
	LoadStoppedInterrupted  = "interrupted"
	LoadStoppedStartFailed  = "start failed"
)

// StackInfo is what run.json records of the system under test.
type StackInfo struct {
	// Kind is local, compose or external.
	Kind string `json:"kind"`
	// Dir is the local stack's directory; File the compose file.
	Dir  string `json:"dir,omitempty"`
	File string `json:"file,omitempty"`
	// StartedByRun says the run started the stack (and stopped it after,
	// unless kept).
	StartedByRun bool `json:"started_by_run"`
	// Gateways are the base URLs the load was sent to.
	Gateways []string `json:"gateways"`
}

// Phase is one span of the run: stack, setup, load, recover, audit, report.
type Phase struct {
	Name       string    `json:"name"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// RunFile is run.json (docs/run-directory.md).
type RunFile struct {
	Version    int       `json:"version"`
	ID         string    `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Scenario is the scenario file; ScenarioSets the overrides given to it (--set key=value, in order).
	Scenario     string   `json:"scenario"`
	ScenarioSets []string `json:"scenario_sets"`
	// Generators is the number of load generator processes.
	Generators int `json:"generators"`
	// Plan is the chaos plan file ("" for none); PlanSeed the seed of its
	// random section (0 when it has none).
	Plan       string    `json:"plan"`
	PlanName   string    `json:"plan_name,omitempty"`
	PlanSeed   uint64    `json:"plan_seed"`
	Stack      StackInfo `json:"stack"`
	SeededBugs []string  `json:"seeded_bugs"`
	// Seed is the load's seed: replay with --seed.
	Seed     int64             `json:"seed"`
	Versions map[string]string `json:"versions"`
	Phases   []Phase           `json:"phases"`
	// LoadStartedAt is when the load began (the first operation after
	// the load's setup); the chaos plan's offsets count from it.
	LoadStartedAt *time.Time `json:"load_started_at,omitempty"`
	// LoadExitCode is the load's exit status over every generator (99: a threshold failed; 2: it could not
	// run; -1: it did not finish).
	LoadExitCode     int  `json:"load_exit_code"`
	ThresholdsPassed bool `json:"thresholds_passed"`
	// LoadStopped says the engine stopped the load before it ended by itself, and why (LoadStopped*); ""
	// when the load ended by itself.
	LoadStopped string `json:"load_stopped,omitempty"`
	// AuditVerdict is the auditor's: passed, violated, incomplete, or empty
	// when the audit could not run.
	AuditVerdict string `json:"audit_verdict"`
	// FaultsApplied and FaultsFailed count the chaos log's records.
	FaultsApplied int `json:"faults_applied"`
	FaultsFailed  int `json:"faults_failed"`
	// Report is the report's index.html, when it was written.
	Report   string `json:"report,omitempty"`
	ExitCode int    `json:"exit_code"`
	Verdict  string `json:"verdict"`
	// Note says why a run could not run, or was interrupted.
	Note string `json:"note,omitempty"`
	// Replay is how to run it again (`ledgerproof run --replay DIR`).
	Replay *Replay `json:"replay,omitempty"`
}

// Replay is what `ledgerproof run --replay DIR` needs to run a run again:
// its command-line flags with the seed it drew, and copies of the scenario
// and plan files as they were (ScenarioFile, PlanFile: names in the run
// directory), so a later edit of either does not change the replay.
type Replay struct {
	// Args are the run's flags, one per element (--name=value), with
	// --seed set to the seed the run used and without --out.
	Args []string `json:"args"`
	// Withheld names flags left out of Args because their value held a
	// password (a URL with one): a replay takes them from LEDGERPROOF_<FLAG>.
	Withheld     []string `json:"withheld,omitempty"`
	ScenarioFile string   `json:"scenario_file,omitempty"`
	PlanFile     string   `json:"plan_file,omitempty"`
	// ProfileFile is the system profile as it was (--profile), when given.
	ProfileFile string `json:"profile_file,omitempty"`
}

// Write writes run.json into dir atomically (temporary file, rename), so a
// reader never sees half a file.
func (r *RunFile) Write(dir string) error {
	content, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("run.json: %w", err)
	}
	temporary, err := os.CreateTemp(dir, RunFileName+".*.tmp")
	if err != nil {
		return fmt.Errorf("run.json: %w", err)
	}
	defer os.Remove(temporary.Name())
	if _, err := temporary.Write(append(content, '\n')); err != nil {
		temporary.Close()
		return fmt.Errorf("run.json: %w", err)
	}
	if err := temporary.Close(); err != nil {
		return fmt.Errorf("run.json: %w", err)
	}
	if err := os.Rename(temporary.Name(), filepath.Join(dir, RunFileName)); err != nil {
		return fmt.Errorf("run.json: %w", err)
	}
	return nil
}

// ReadRunFile reads a run directory's run.json.
func ReadRunFile(dir string) (*RunFile, error) {
	content, err := os.ReadFile(filepath.Join(dir, RunFileName))
	if err != nil {
		return nil, err
	}
	var file RunFile
	if err := json.Unmarshal(content, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, RunFileName), err)
	}
	return &file, nil
}

// Judge returns the run's verdict from its parts: the audit's verdict
// (invariants: passed, violated, incomplete, weak; empty when it did not
// run), the load's exit status, and whether anything else kept the run from
// doing what it said (interrupted, a fault that could not be applied, no
// report). Severity: invariant-violated, could-not-run, weak,
// threshold-failed, passed. Weak wins over crossed thresholds, so a job that
// tolerates threshold-failed never takes an untested run for a pass.
func Judge(auditVerdict string, loadExitCode int, otherProblem bool) string {
	switch {
	case auditVerdict == invariants.VerdictViolated:
		return VerdictInvariantViolated
	case auditVerdict != invariants.VerdictPassed && auditVerdict != invariants.VerdictWeak, otherProblem:
		return VerdictCouldNotRun
	case loadExitCode != 0 && loadExitCode != loadExitThresholds:
		return VerdictCouldNotRun
	case auditVerdict == invariants.VerdictWeak:
		return VerdictWeak
	case loadExitCode == loadExitThresholds:
		return VerdictThresholdFailed
	}
	return VerdictPassed
}
