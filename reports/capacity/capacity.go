package capacity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/load/scenario"
	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// capacityMode is one system configuration the capacity run measures.
type capacityMode struct {
	// Name is "batched" (the reference pipeline) or "naive" (gateway
	// --apply-mode naive, no worker).
	Name        string   `json:"name"`
	Gateways    int      `json:"gateways"`
	Workers     int      `json:"workers"`
	GatewayArgs []string `json:"gateway_args"`
	WorkerArgs  []string `json:"worker_args"`
	// BrokerArgs are the broker's arguments beyond the stack's own (the
	// retention's).
	BrokerArgs []string `json:"broker_args,omitempty"`
}

// capacityStep is one step's figures: the load's view (load-summary.json of
// the step's load run) and the CPU each process used during the step's hold.
type capacityStep struct {
	TargetTPS          int      `json:"target_tps"`
	AchievedTPS        float64  `json:"achieved_tps"`
	Iterations         float64  `json:"iterations"`
	ExpectedIterations float64  `json:"expected_iterations"`
	Dropped            float64  `json:"dropped"`
	ErrorRate          *float64 `json:"error_rate"`
	P50AcceptMs        *float64 `json:"p50_accept_ms"`
	P95AcceptMs        *float64 `json:"p95_accept_ms"`
	P99AcceptMs        *float64 `json:"p99_accept_ms"`
	P50SettleMs        *float64 `json:"p50_settle_ms"`
	P95SettleMs        *float64 `json:"p95_settle_ms"`
	P99SettleMs        *float64 `json:"p99_settle_ms"`
	Held               bool     `json:"held"`
	Reasons            []string `json:"reasons"`
	// WindowStart and WindowSeconds are the step's hold: AchievedTPS is
	// CompletedInWindow (money operations completed in it) over its length.
	WindowStart       time.Time `json:"window_start"`
	WindowSeconds     float64   `json:"window_seconds"`
	CompletedInWindow int64     `json:"completed_in_window"`
	// CPUSeconds is the CPU each process tree used in the window
	// ("postgres" counts every backend; "load" is the load generator;
	// "machine" is the whole machine, other people's work included);
	// CPUPer1000 divides it by CompletedInWindow in thousands.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	CPUPer1000 map[string]float64 `json:"cpu_seconds_per_1000_requests"`
	// MachineBusy is the share of the machine's cores busy in the hold:
	// CPUSeconds["machine"] ÷ (cores × WindowSeconds). Near 1 the step ran
	// out of machine, and its latency says so; well under 1, a failed step
	// met something else (nil: the machine's CPU was not sampled).
	MachineBusy *float64 `json:"machine_busy,omitempty"`
	// LoadAverage is /proc/loadavg's first figure when the step ended.
	LoadAverage float64 `json:"load_average"`
	// RecordsPerBatch is the workers' mean batch size during the step (from
	// their metrics; 0 without workers).
	RecordsPerBatch float64 `json:"records_per_batch"`
	// LoadExitCode is the step's `ledgerproof load` exit status (0: it ran;
	// the capacity scenario has no thresholds).
	LoadExitCode int `json:"load_exit_code"`
	// Autovacuum is what Postgres's autovacuum did in the hold, from the
	// stack's Postgres log (nil: the log was not read).
	Autovacuum *autovacuumShare `json:"autovacuum,omitempty"`
	// SecondsP95 is the p95 accept second by second over the hold, from
	// the load's time series (nil: not read, or nothing accepted).
	SecondsP95 *secondsP95 `json:"seconds_p95,omitempty"`
	// Refinement marks a step run between the mode's first failed step and
	// the held step below it (Options.Refine), after the failed one.
	Refinement bool `json:"refinement,omitempty"`
}

// rateLabel is the step's rate in the report's tables, a refinement's
// marked.
func (s *capacityStep) rateLabel() string {
	if s.Refinement {
		return strconv.Itoa(s.TargetTPS) + " (refinement)"
	}
	return strconv.Itoa(s.TargetTPS)
}

// windowEnd is the end of the step's hold.
func (s *capacityStep) windowEnd() time.Time {
	return s.WindowStart.Add(time.Duration(s.WindowSeconds * float64(time.Second)))
}

// capacityModeResult is what one mode measured.
type capacityModeResult struct {
	Mode  capacityMode   `json:"mode"`
	Steps []capacityStep `json:"steps"`
	// KneeTPS is the highest step held with every step below it held too;
	// 0 when the first step failed.
	KneeTPS int `json:"knee_tps"`
	// P95KneeTPS is the highest step held with a p95 accept under the
	// knee's target (kneeP95AcceptTargetMs), every step below it likewise
	// (p95KneeOf); 0: none.
	P95KneeTPS int `json:"p95_knee_tps"`
	// StoppedEarly says why stepping stopped before the last step.
	StoppedEarly string `json:"stopped_early,omitempty"`
	AuditPassed  bool   `json:"audit_passed"`
	AuditSummary string `json:"audit_summary"`
	RunDir       string `json:"run_dir"`
	// CeilingFraction is KneeTPS over the calibration's ceiling (nil
	// without a calibration).
	CeilingFraction *float64 `json:"ceiling_fraction,omitempty"`
	// CeilingFractionAfter is KneeTPS over the ceiling of the calibration
	// after the modes (nil without one).
	CeilingFractionAfter *float64 `json:"ceiling_fraction_after,omitempty"`
	// Soak is the soak after the steps (batched mode with --soak; nil
	// otherwise).
	Soak *soakResult `json:"soak,omitempty"`
}

// capacityResult is the whole run: capacity.json.
type capacityResult struct {
	StartedAt    time.Time            `json:"started_at"`
	FinishedAt   time.Time            `json:"finished_at"`
	Command      string               `json:"command"`
	Machine      string               `json:"machine"`
	Criteria     string               `json:"criteria"`
	StepSeconds  float64              `json:"step_hold_seconds"`
	RampSeconds  float64              `json:"ramp_seconds"`
	Accounts     int                  `json:"accounts"`
	Seed         int64                `json:"seed"`
	Modes        []capacityModeResult `json:"modes"`
	KneeRatio    *float64             `json:"knee_ratio"`
	RequireTPS   int                  `json:"require_tps"`
	RequireRatio float64              `json:"require_ratio"`
	// Calibration is this machine's own limits, measured before the steps
	// (nil with --calibrate=false); RequireCeilingFraction the batched
	// knee's required fraction of its ceiling.
	Calibration            *capacityCalibration `json:"calibration,omitempty"`
	RequireCeilingFraction float64              `json:"require_ceiling_fraction"`
	// CalibrationAfter is the same calibration measured again after the
	// modes (Options.Recalibrate; drift.go), CalibrationDrift how far its
	// cost moved from the first's, CalibrationAfterError why it is missing
	// when it failed.
	CalibrationAfter      *capacityCalibration `json:"calibration_after,omitempty"`
	CalibrationDrift      *calibrationDrift    `json:"calibration_drift,omitempty"`
	CalibrationAfterError string               `json:"calibration_after_error,omitempty"`
	// KneeCosts is the batched knee's CPU per request by part beside the
	// bare programs of the calibration.
	KneeCosts []componentCost `json:"knee_costs,omitempty"`
	// ClientWaitSeconds is the scenario's client.wait: how long each money
	// request asked the gateway to hold its answer for the outcome (Prefer:
	// wait). Above 0 the first answer is usually the final one, so the
	// accept figures include the settle.
	ClientWaitSeconds float64 `json:"client_wait_seconds"`
	Verdict           string  `json:"verdict"`
	// RetentionSeconds is Options.Retention: how long the stacks kept
	// idempotency records, outcome records and broker records (0: the
	// reference's defaults, 24h, 24h and forever).
	RetentionSeconds float64 `json:"retention_seconds"`
	// Refine is Options.Refine: how many refinement steps a mode could run
	// after its first failed step.
	Refine int `json:"refine"`
}

// capacityGatewayArgs are what every gateway of a capacity stack runs with:
// a cheap password KDF (the setup signs up thousands of users; argon2id at
// its production cost would take minutes of the machine's two cores, and no
// money request hashes a password) and no per-user rate limits, of all
// requests and of money requests (the load's accounts are few and busy by
// design; the limits would measure themselves), and
// a producer linger of 1 ms (the broker's CPU per request halves, 0.04 ->
// 0.02 ms at 3,600 TPS, for a millisecond of accept latency).
var capacityGatewayArgs = []string{"--kdf-memory-kib", "64", "--kdf-iterations", "1", "--rate-limit", "-1", "--money-rate-limit", "-1", "--producer-linger", "1ms"}

// capacityWorkerArgs are what every worker of a capacity stack runs with: a
// linger of 30 ms fills batches (about 70 records at 3,600 TPS on two
// partitions, where 10 ms left 15), and Postgres pays per batch; and the
// two-tier dedupe (docs/two-tier-dedupe.md): a batch of only new commands
// skips the lookup of its transactions by id, which Postgres planned and ran
// for every batch (6-9 % of Postgres's CPU per request at 3,600 and 5,000
// TPS, docs/performance.md "Eighteenth pass"); the ledger's keys still
// refuse any copy the filter misses.
var capacityWorkerArgs = []string{"--linger", "30ms", "--bloom-dedupe"}

// capacityStackEnv is the environment of the stack's Go processes (broker,
// gateways, workers), before --stack-env. GOMAXPROCS=1: seven busy processes
// share two cores; with GOMAXPROCS=2 every Go process wakes a second thread
// for each goroutine hand-off and spins looking for work; in consecutive
// runs (2 partitions, linger 30 ms) the machine's CPU per request fell
// from 0.99 to 0.78 ms and the sustained rate at the 3,600 step rose from
// 2,000 to 2,520 TPS with it. GOGC=400: their heaps are small and memory
// plentiful; fewer collections (3,600 step: p95 accept 191-227 ms in three
// runs with it, 271 ms without).
var capacityStackEnv = []string{"GOMAXPROCS=1", "GOGC=400"}

func runCapacity(ctx context.Context, o Options, out io.Writer) (int, error) {
	self := o.Binary
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return 2, err
	}
	result := capacityResult{StartedAt: time.Now().UTC(), Command: o.Command, Machine: machineDescription(),
		Criteria: "errors < 0.1%, p95 accept < 250 ms, no dropped iterations", StepSeconds: o.Hold.Seconds(), RampSeconds: o.Ramp.Seconds(),
		Accounts: o.Accounts, Seed: o.Seed, RetentionSeconds: o.Retention.Seconds(), RequireTPS: o.RequireTPS, RequireRatio: o.RequireRatio, RequireCeilingFraction: o.RequireCeilingFraction,
		Refine: o.Refine}
	fmt.Fprintf(out, "capacity: %s; steps %v (refining the knee with up to %d more), hold %s, ramp %s, seed %d, out %s\n", result.Machine, o.Steps, o.Refine, o.Hold, o.Ramp, o.Seed, o.Out)
	wait, err := capacityClientWait(o)
	if err != nil {
		return 2, err
	}
	result.ClientWaitSeconds = wait.Seconds()
	if o.Calibrate {
		calibration, err := calibrate(ctx, o, self, calibrationBefore, out)
		if err != nil {
			return 2, err
		}
		result.Calibration = &calibration
	}
	auditsPassed := true
	retentionGatewayArgs, retentionWorkerArgs, retentionBrokerArgs := retentionArgs(o.Retention)
	for modeIndex, name := range o.Modes {
		// The retention's arguments come before the user's, which override
		// them (a flag given twice takes the last value).
		mode := capacityMode{Name: name, Gateways: o.Gateways, BrokerArgs: retentionBrokerArgs,
			GatewayArgs: slices.Concat(capacityGatewayArgs, retentionGatewayArgs, o.GatewayArgs)}
		if name == "batched" {
			mode.Workers, mode.WorkerArgs = o.Workers, slices.Concat(capacityWorkerArgs, retentionWorkerArgs, o.WorkerArgs)
		} else {
			mode.GatewayArgs = append(mode.GatewayArgs, "--apply-mode", "naive")
		}
		if o.ProfileAt > 0 {
			mode.GatewayArgs = append(mode.GatewayArgs, "--pprof")
			if mode.Workers > 0 {
				mode.WorkerArgs = append(mode.WorkerArgs, "--pprof")
			}
		}
		modeResult, err := runCapacityMode(ctx, o, self, modeIndex, mode, out)
		if err != nil {
			return 2, fmt.Errorf("mode %s: %w", name, err)
		}
		auditsPassed = auditsPassed && modeResult.AuditPassed
		if result.Calibration != nil && result.Calibration.CeilingTPS > 0 {
			fraction := math.Round(float64(modeResult.KneeTPS)/result.Calibration.CeilingTPS*1000) / 1000
			modeResult.CeilingFraction = &fraction
		}
		result.Modes = append(result.Modes, modeResult)
		if ctx.Err() != nil {
			return 2, ctx.Err()
		}
	}
	if o.Calibrate && o.Recalibrate && result.Calibration != nil {
		after, err := calibrate(ctx, o, self, calibrationAfter, out)
		if ctx.Err() != nil {
			return 2, ctx.Err()
		}
		// A run of half an hour is not thrown away for its last
		// measurement: the report says it is missing, and why.
		if err != nil {
			result.CalibrationAfterError = err.Error()
			fmt.Fprintf(out, "calibration after the modes failed: %v\n", err)
		} else {
			result.noteCalibrationAfter(after)
			if drift := result.CalibrationDrift; drift != nil {
				fmt.Fprintf(out, "calibration after the modes: %.3f CPU-ms per request, %s against the start's %.3f; ceiling %.0f TPS\n",
					after.CPUMsPerOperation, signedPercent(drift.Change), result.Calibration.CPUMsPerOperation, after.CeilingTPS)
			}
		}
	}
	result.FinishedAt = time.Now().UTC()
	code := result.judge(o, auditsPassed)
	result.KneeCosts = result.kneeCosts()
	content, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return 2, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "capacity.json"), append(content, '\n'), 0o644); err != nil {
		return 2, err
	}
	markdown := result.markdown(o.Out)
	if err := os.WriteFile(filepath.Join(o.Out, "capacity.md"), []byte(markdown), 0o644); err != nil {
		return 2, err
	}
	if o.Docs != "" {
		if err := replaceMarkedSection(o.Docs, markdown); err != nil {
			return 2, err
		}
	}
	fmt.Fprintf(out, "\n%s\ncapacity: %s; report %s\n", markdown, result.Verdict, filepath.Join(o.Out, "capacity.md"))
	return code, nil
}

// judge sets the knee ratio and the verdict, and returns the exit code: 1
// when an audit failed, 3 when a requirement was missed, else 0.
func (r *capacityResult) judge(o Options, auditsPassed bool) int {
	code := 0
	var verdicts []string
	batched, naive := r.mode("batched"), r.mode("naive")
	if batched != nil && naive != nil && naive.KneeTPS > 0 {
		ratio := float64(batched.KneeTPS) / float64(naive.KneeTPS)
		r.KneeRatio = &ratio
	}
	if !auditsPassed {
		code = 1
		verdicts = append(verdicts, "AUDIT FAILED")
	}
	if o.RequireTPS > 0 && (batched == nil || batched.KneeTPS < o.RequireTPS) {
		code = max(code, 3)
		verdicts = append(verdicts, fmt.Sprintf("batched knee below the required %d TPS", o.RequireTPS))
	}
	if o.RequireRatio > 0 && (r.KneeRatio == nil || *r.KneeRatio < o.RequireRatio) {
		code = max(code, 3)
		verdicts = append(verdicts, fmt.Sprintf("knee ratio below the required %gx", o.RequireRatio))
	}
	if o.RequireCeilingFraction > 0 && (batched == nil || batched.CeilingFraction == nil || *batched.CeilingFraction < o.RequireCeilingFraction) {
		code = max(code, 3)
		verdicts = append(verdicts, fmt.Sprintf("batched knee below %.0f%% of the calibrated ceiling", o.RequireCeilingFraction*100))
	}
	if o.Soak > 0 && batched != nil && (batched.Soak == nil || !batched.Soak.Passed) {
		code = max(code, 3)
		reason := "not run"
		if batched.Soak != nil {
			reason = strings.Join(batched.Soak.Reasons, "; ")
		}
		verdicts = append(verdicts, "soak failed: "+reason)
	}
	if code == 0 {
		verdicts = append(verdicts, "passed")
	}
	r.Verdict = strings.Join(verdicts, "; ")
	return code
}

func (r *capacityResult) mode(name string) *capacityModeResult {
	for i := range r.Modes {
		if r.Modes[i].Mode.Name == name {
			return &r.Modes[i]
		}
	}
	return nil
}

func machineDescription() string {
	model := "unknown CPU"
	if content, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(content), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				model = strings.TrimSpace(value)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

// capacityPorts shifts the stack's default ports so a capacity stack runs
// beside `make up` and the demo.
// Each mode gets its own ports (shifted by 20 per mode), so a mode's stack
// never waits for the previous one's ports.
func capacityPorts(config *stack.Config, base, modeIndex int) {
	if base == 0 {
		shift := 200 + 20*modeIndex
		config.PostgresPort += shift
		config.RedisPort += shift
		config.BrokerPort += shift
		config.GatewayPort += shift
		config.WorkerMetricsPort += shift
		config.SettlementPort = stack.DefaultSettlementPort + shift
		return
	}
	base += 100 * modeIndex
	config.PostgresPort, config.RedisPort, config.BrokerPort = base, base+1, base+2
	config.GatewayPort, config.GatewayInternalPort, config.WorkerMetricsPort = base+10, base+30, base+50
	// The relay's and the settler's metrics ports too: their default
	// (18270) is the local stack's, which `make up` may hold.
	config.SettlementPort = base + 70
}

func runCapacityMode(ctx context.Context, o Options, self string, modeIndex int, mode capacityMode, out io.Writer) (capacityModeResult, error) {
	result := capacityModeResult{Mode: mode, RunDir: filepath.Join(o.Out, mode.Name)}
	stackDir := filepath.Join(o.StackRoot, mode.Name)
	if err := os.MkdirAll(result.RunDir, 0o755); err != nil {
		return result, err
	}
	// A stack left behind by an interrupted run is stopped and removed.
	_ = stack.Down(ctx, stackDir, stack.DownOptions{Purge: true})
	config := stack.DefaultConfig()
	config.Dir, config.Binary = stackDir, self
	capacityPorts(&config, o.PortBase, modeIndex)
	config.Gateways, config.Workers, config.Partitions = mode.Gateways, mode.Workers, o.Partitions
	config.GatewayArgs, config.WorkerArgs, config.BrokerArgs = mode.GatewayArgs, mode.WorkerArgs, mode.BrokerArgs
	// No daily debit limit: each step's 2,000 accounts would reach the local
	// stack's (100,000 a day) within seconds, and the steps would measure
	// refusals instead of money moving (docs/performance.md).
	config.DailyDebitLimitMinor = 0
	config.Env = append(append(config.Env, capacityStackEnv...), o.StackEnv...)
	config.PostgresSettings = append(config.PostgresSettings, autovacuumLogSettings...)
	if o.ProfileAt > 0 {
		// The profiled step also records what Postgres spent its time on.
		config.PostgresSettings = append(config.PostgresSettings, "shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_planning=on")
	}
	config.PostgresSettings = append(config.PostgresSettings, o.PostgresSettings...)
	fmt.Fprintf(out, "\n== %s: %d gateway(s), %d worker(s); gateway args %v; worker args %v; broker args %v\n", mode.Name, mode.Gateways, mode.Workers, mode.GatewayArgs, mode.WorkerArgs, mode.BrokerArgs)
	// The mode's stack is the run engine's local stack, started fresh (the
	// directory was purged above, so nothing is attached) and stopped and
	// removed after the audit, its logs copied into the run directory.
	target := runner.NewLocalStack(runner.LocalOptions{Config: config, Purge: true})
	if _, err := target.Prepare(ctx); err != nil {
		return result, err
	}
	stackLog, err := os.Create(filepath.Join(result.RunDir, stackLogFileName))
	if err != nil {
		return result, err
	}
	defer stackLog.Close()
	stopStack, err := target.Start(ctx, result.RunDir, stackOutput{log: stackLog, out: out, mode: mode.Name})
	defer stopStack()
	if err != nil {
		return result, err
	}
	if !target.Stack().StartedByRun {
		return result, fmt.Errorf("the stack in %s was already running: a capacity stack must be fresh", stackDir)
	}
	file, err := stack.Load(target.Stack().Dir)
	if err != nil {
		return result, err
	}

	sampler := newCPUSampler()
	for _, component := range file.Components {
		if component.PID > 0 {
			sampler.watch(component.Name, component.PID)
		}
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { sampler.run(time.Second, stop); close(sampled) }()
	defer func() { close(stop); <-sampled }()

	steps, stoppedEarly, err := climb(ctx, o, mode.Name, func(index, rate int) (capacityStep, error) {
		return runCapacityStep(ctx, o, self, mode, file, sampler, stepName(index, rate), index, rate, result.RunDir, out)
	}, out)
	result.Steps, result.StoppedEarly = steps, stoppedEarly
	if err != nil {
		return result, err
	}
	result.KneeTPS, result.P95KneeTPS = kneeOf(result.Steps), p95KneeOf(result.Steps)
	if mode.Name == ModeBatched && o.Soak > 0 && ctx.Err() == nil {
		soak, err := runSoak(ctx, o, self, mode, file, sampler, result.KneeTPS, len(result.Steps), result.RunDir, out)
		if err != nil {
			return result, err
		}
		if soak.Aging = agingOf(result.Steps, soak.Step); soak.Aging != nil {
			fmt.Fprintf(out, "%s soak: %s\n", mode.Name, soak.Aging.sentence())
		}
		result.Soak = &soak
	}
	// Autovacuum in each hold, the soak's too, now that the log has them all.
	var holds []*capacityStep
	for i := range result.Steps {
		holds = append(holds, &result.Steps[i])
	}
	if result.Soak != nil && result.Soak.Step != nil {
		holds = append(holds, result.Soak.Step)
	}
	for _, component := range file.Components {
		if component.Name == stack.KindPostgres && component.LogFile != "" {
			noteAutovacuum(holds, component.LogFile, out)
		}
	}

	// Audit everything the mode's steps journaled against the ledger.
	auditLog, err := os.Create(filepath.Join(result.RunDir, "audit.log"))
	if err != nil {
		return result, err
	}
	defer auditLog.Close()
	ledger, err := target.Ledger(ctx, out)
	if err != nil {
		return result, err
	}
	// `ledgerproof audit --stack DIR --run DIR` with its flags' defaults,
	// in this process; its output is audit.log.
	code := runner.RunAudit(ctx, runner.AuditOptions{RunDir: result.RunDir, StackDir: ledger.StackDir, Topic: invariants.DefaultTopic,
		DrainTimeout: runner.DefaultDrainTimeout, QuietPeriod: runner.DefaultQuietPeriod, MaxViolations: runner.DefaultMaxViolations, Scope: invariants.ScopeRun},
		auditLog, auditLog)
	var auditError error
	if code != runner.AuditExitPassed {
		// The words the audit's exit status had as a process.
		auditError = fmt.Errorf("exit status %d", code)
	}
	result.AuditPassed = auditError == nil
	result.AuditSummary = auditSummary(result.RunDir, auditError)
	fmt.Fprintf(out, "%s: knee %d TPS; audit %s\n", mode.Name, result.KneeTPS, result.AuditSummary)
	return result, nil
}

// stepLoadLogFileName is a step's load's output in its step directory.
const stepLoadLogFileName = "load.log"

// scheduleStartDelay is how far ahead of now a step's schedule start is
// written: the load reads its start file every 20 ms.
const scheduleStartDelay = 100 * time.Millisecond

// stackLogFileName is the mode's stack's progress lines (starting, ready,
// stopped) in the mode's run directory.
const stackLogFileName = "stack.log"

// stackOutput receives a mode's stack's lines: all of them go to its
// stack.log (capacity's own output never carried them), and those saying
// the stack could not be stopped or removed to out as well.
type stackOutput struct {
	log, out io.Writer
	mode     string
}

func (s stackOutput) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if strings.HasPrefix(line, "ERROR") {
			fmt.Fprintf(s.out, "%s: %s", s.mode, line)
		}
	}
	return s.log.Write(p)
}

// loadComponent is the load generator's name in the CPU tables.
const loadComponent = "load"

// The step criteria: a step holds with every iteration started (none
// dropped), errors below capacityErrorRateMax of its money operations and
// p95 accept below capacityP95Milliseconds.
const (
	capacityErrorRateMax    = 0.001
	capacityP95Milliseconds = 250
)

// capacitySets are the overrides of a step's load: the step's rate as the
// scenario's only step, the ramp (from 0) and hold, the accounts.
func capacitySets(o Options, rate int) []string {
	return []string{
		"schedule.steps=[" + strconv.Itoa(rate) + "]",
		"schedule.step_ramp=" + o.Ramp.String(),
		"schedule.step_hold=" + o.Hold.String(),
		"setup.accounts=" + strconv.Itoa(o.Accounts),
	}
}

// capacityScenario reads the scenario with a step's overrides, as its load
// will, and checks that it steps its rate.
func capacityScenario(o Options, rate int) (*scenario.Scenario, error) {
	s, err := scenario.Load(o.Scenario, capacitySets(o, rate))
	if err != nil {
		return nil, fmt.Errorf("step %d: %w", rate, err)
	}
	if s.Schedule.Executor != scenario.ExecutorCapacitySteps {
		return nil, fmt.Errorf("step %d: %s: executor %s, want %s", rate, o.Scenario, s.Schedule.Executor, scenario.ExecutorCapacitySteps)
	}
	return s, nil
}

// capacityPlan returns a step's arrival schedule (capacityScenario).
func capacityPlan(o Options, rate int) (*generator.Plan, error) {
	s, err := capacityScenario(o, rate)
	if err != nil {
		return nil, err
	}
	plan, err := generator.NewPlan(s.Schedule, 1)
	if err != nil {
		return nil, fmt.Errorf("step %d: %w", rate, err)
	}
	return plan, nil
}

// capacityClientWait is the scenario's client.wait, as the steps' loads read
// it.
func capacityClientWait(o Options) (time.Duration, error) {
	s, err := capacityScenario(o, o.Steps[0])
	if err != nil {
		return 0, err
	}
	return s.Client.Wait, nil
}

// capacityLoadArgs is the command line of a step's load: the engine's, one generator, with the step's sets and
// seed (StartGatedLoad adds the gate).
func capacityLoadArgs(o Options, gateways []string, stepDir string, index, rate int) []string {
	return runner.LoadArgs(stepDir, o.Scenario, gateways, capacitySets(o, rate), o.Seed+int64(index), 0, 1)
}

// LoadRatePerProc is how many operations a second capacity gives each of
// the load generator's Ps (GOMAXPROCS) by default. With every core's P, an
// idle P is woken and put back to sleep at each hand-off between
// goroutines: at 2,500 TPS that cost the load 30-60 % more CPU per request
// (docs/performance.md, "Eighth pass"), CPU the pipeline shares. It was
// 5,000 while the engine cost 0.09-0.11 CPU-ms per operation with one P; on
// the fasthttp engine it costs 0.04 (so one P holds about 25,000 a
// second), and a second P at 5,500 and 6,000 TPS raised that to 0.055-0.060
// and the machine's CPU per request by 2-9 % (A B B A, "Twenty-first
// pass").
const LoadRatePerProc = 10000

// loadMaxProcs is the load's --max-procs at rate: configured (> 0), Go's
// default (-1: 0, no flag), or one P per LoadRatePerProc, at most cores.
func loadMaxProcs(configured, rate, cores int) int {
	switch {
	case configured > 0:
		return configured
	case configured < 0:
		return 0
	}
	return min(max(1, (rate+LoadRatePerProc-1)/LoadRatePerProc), max(1, cores))
}

// stepName is the directory (under steps/) and journal suffix of the step
// of this index and rate.
func stepName(index, rate int) string { return fmt.Sprintf("step-%02d-%d", index+1, rate) }

// runCapacityStep runs one step as a load run of its own (`ledgerproof load`
// with the step's rate as the scenario's only step), sampling CPU meanwhile.
// Setup (sign-ups, funding) comes first; the schedule starts when this
// process says so, so the profiles are timed from it. The figures come from
// the load's summary.
func runCapacityStep(ctx context.Context, o Options, self string, mode capacityMode, file *stack.File, sampler *cpuSampler,
	name string, index, rate int, runDir string, out io.Writer) (capacityStep, error) {
	step := capacityStep{TargetTPS: rate, LoadExitCode: -1}
	stepDir, err := filepath.Abs(filepath.Join(runDir, "steps", name))
	if err != nil {
		return step, err
	}
	if err := os.MkdirAll(stepDir, 0o755); err != nil {
		return step, err
	}
	plan, err := capacityPlan(o, rate)
	if err != nil {
		return step, err
	}
	step.ExpectedIterations = float64(plan.Total())
	logFile, err := os.Create(filepath.Join(stepDir, stepLoadLogFileName))
	if err != nil {
		return step, err
	}
	defer logFile.Close()
	// The load is the run engine's load process, gated: its setup first, then
	// the schedule from the start time this process gives. It runs from this
	// process's environment, with --max-procs by the rate (loadMaxProcs).
	loadArgs := capacityLoadArgs(o, file.Endpoints.Gateways, stepDir, index, rate)
	if procs := loadMaxProcs(o.LoadMaxProcs, rate, runtime.NumCPU()); procs > 0 {
		loadArgs = append(loadArgs, "--max-procs", strconv.Itoa(procs))
	}
	if o.ProfileAt == rate {
		// The load profiles itself over its whole schedule (ramp and hold):
		// it shares the machine, so its CPU is CPU the pipeline does not get.
		loadArgs = append(loadArgs, "--cpu-profile", filepath.Join(stepDir, loadComponent+".cpu.pprof"))
	}
	load, err := runner.StartGatedLoad(ctx, self, loadArgs, stepDir, logFile)
	if err != nil {
		return step, err
	}
	sampler.watch(loadComponent, load.PID())
	defer sampler.watch(loadComponent, 0)
	if err := load.WaitReady(ctx); err != nil {
		load.Stop()
		return step, fmt.Errorf("%s: the load's setup: %w (see %s)", name, err, logFile.Name())
	}
	// Batches from here on are the step's: setup's funding deposits are not.
	batchesBefore := scrapeBatches(file)
	scheduleStart := time.Now().Add(scheduleStartDelay)
	if err := load.Start(scheduleStart); err != nil {
		load.Stop()
		return step, err
	}
	profiled := make(chan struct{})
	if o.ProfileAt == rate {
		go func() {
			defer close(profiled)
			// A second into the hold, so the profiles fall inside it
			// (--profile-seconds must be below the hold).
			takeProfiles(ctx, o, mode, file, scheduleStart.Add(o.Ramp+time.Second), stepDir, out)
		}()
	} else {
		close(profiled)
	}
	waitError := load.Wait()
	step.LoadExitCode = load.ExitCode()
	// One more sample while the load's process is still known, then forget it.
	sampler.sample()
	sampler.watch(loadComponent, 0)
	<-profiled
	if after := scrapeBatches(file); after[1] > batchesBefore[1] {
		step.RecordsPerBatch = round3((after[0] - batchesBefore[0]) / (after[1] - batchesBefore[1]))
	}
	if waitError != nil {
		return step, fmt.Errorf("%s: %w (see %s)", name, waitError, logFile.Name())
	}
	// The journal joins the mode's run directory, where the audit reads
	// journal*.jsonl.
	if err := os.Rename(filepath.Join(stepDir, "journal.jsonl"), filepath.Join(runDir, "journal-"+name+".jsonl")); err != nil {
		return step, fmt.Errorf("%s: the load left no journal (exit %d; see %s): %w", name, step.LoadExitCode, logFile.Name(), err)
	}
	summary, err := metrics.ReadSummary(filepath.Join(stepDir, metrics.SummaryFile))
	if err == nil {
		err = step.setFigures(summary)
	}
	if err != nil {
		return step, fmt.Errorf("%s: no step figures from the load (exit %d; see %s): %w", name, step.LoadExitCode, logFile.Name(), err)
	}
	windowEnd := step.windowEnd()
	if step.SecondsP95, err = readSecondsP95(filepath.Join(stepDir, metrics.TimeSeriesFile), step.WindowStart, windowEnd); err != nil {
		fmt.Fprintf(out, "%s: the p95 second by second was not read: %v\n", name, err)
	}
	step.CPUSeconds, step.CPUPer1000 = map[string]float64{}, map[string]float64{}
	names := []string{machineComponent, loadComponent}
	for _, component := range file.Components {
		names = append(names, component.Name)
	}
	for _, component := range names {
		used, ok := sampler.used(component, step.WindowStart, windowEnd)
		if !ok {
			continue
		}
		step.CPUSeconds[component] = round3(used)
		if step.CompletedInWindow > 0 {
			step.CPUPer1000[component] = round3(used / (float64(step.CompletedInWindow) / 1000))
		}
	}
	step.MachineBusy = machineBusy(step.CPUSeconds, runtime.NumCPU(), step.WindowSeconds)
	// Second by second over the ramp and the hold, from the schedule's start
	// as the load's own series: which process used the machine when the
	// latency rose.
	if err := writeCPUTimeseries(filepath.Join(stepDir, cpuTimeseriesFile), sampler.perSecond(names, scheduleStart, windowEnd)); err != nil {
		return step, err
	}
	if content, err := os.ReadFile("/proc/loadavg"); err == nil {
		fields := strings.Fields(string(content))
		if len(fields) > 0 {
			step.LoadAverage, _ = strconv.ParseFloat(fields[0], 64)
		}
	}
	verdict := "held"
	if !step.Held {
		verdict = "NOT HELD (" + strings.Join(step.Reasons, ", ") + ")"
	}
	fmt.Fprintf(out, "%s %6d TPS: achieved %.0f/s, p95 accept %s ms, errors %s, dropped %.0f, records/batch %.1f, machine busy %s, CPU/1k req: %s; %s\n",
		mode.Name, rate, step.AchievedTPS, formatOptional(step.P95AcceptMs, 1), formatPercent(step.ErrorRate, 3), step.Dropped,
		step.RecordsPerBatch, formatPercent(step.MachineBusy, 0), formatCPU(step.CPUPer1000), verdict)
	return step, nil
}

// climb runs a mode's steps through run (index: the order the steps run
// in, which names a step's directory and offsets its seed): the ladder
// (o.Steps) in order, stopping after o.FailuresToStop consecutive failed
// ladder steps, and right after the first failed step, if a step below it
// held, up to o.Refine refinement steps between the highest rate held and
// the lowest failed (refinementRate), each halving the gap. The steps come
// back in ascending rate, so the knee (kneeOf) is read as on the ladder.
func climb(ctx context.Context, o Options, modeName string, run func(index, rate int) (capacityStep, error), out io.Writer) (steps []capacityStep, stoppedEarly string, err error) {
	defer func() {
		sort.SliceStable(steps, func(i, j int) bool { return steps[i].TargetTPS < steps[j].TargetTPS })
	}()
	failures, refined := 0, false
	for index, rate := range o.Steps {
		if ctx.Err() != nil {
			return steps, stoppedEarly, ctx.Err()
		}
		step, err := run(len(steps), rate)
		if err != nil {
			return steps, stoppedEarly, err
		}
		steps = append(steps, step)
		if step.Held {
			failures = 0
			continue
		}
		if !refined && index > 0 {
			held, failed := o.Steps[index-1], rate
			for range o.Refine {
				between := refinementRate(held, failed)
				if between == 0 || ctx.Err() != nil {
					break
				}
				fmt.Fprintf(out, "%s: refining the knee between %d TPS (held) and %d TPS (not held): a step at %d TPS\n", modeName, held, failed, between)
				step, err := run(len(steps), between)
				if err != nil {
					return steps, stoppedEarly, err
				}
				step.Refinement = true
				steps = append(steps, step)
				if step.Held {
					held = between
				} else {
					failed = between
				}
			}
		}
		// Only the first failure is refined: it sets the knee.
		refined = true
		failures++
		if failures >= o.FailuresToStop && index < len(o.Steps)-1 {
			stoppedEarly = fmt.Sprintf("stopped after %d consecutive failed steps (%d and %d TPS); steps above %d TPS were not run",
				failures, o.Steps[index-failures+1], rate, rate)
			fmt.Fprintf(out, "%s: %s\n", modeName, stoppedEarly)
			break
		}
	}
	return steps, stoppedEarly, nil
}

// p95KneeOf is the highest rate held with a p95 accept below
// kneeP95AcceptTargetMs, with every step below it held and below it too
// (steps in ascending rate); 0 when the lowest was not.
func p95KneeOf(steps []capacityStep) int {
	return highestWhile(steps, func(step capacityStep) bool {
		return step.Held && step.P95AcceptMs != nil && *step.P95AcceptMs < kneeP95AcceptTargetMs
	})
}

// kneeOf is the highest rate held with every step below it held (steps in
// ascending rate); 0 when the lowest failed.
func kneeOf(steps []capacityStep) int {
	return highestWhile(steps, func(step capacityStep) bool { return step.Held })
}

// highestWhile is the rate of the last step, in ascending rate, of the run
// of steps from the lowest that all meet ok; 0 when the lowest does not.
func highestWhile(steps []capacityStep, ok func(capacityStep) bool) int {
	highest := 0
	for _, step := range steps {
		if !ok(step) {
			break
		}
		highest = step.TargetTPS
	}
	return highest
}

// heldAboveKnee is the highest step held above the knee (0: none) and the
// steps that failed between the knee and it: a run whose knee was set by a
// step that met an episode, while higher steps held, says so.
func (m capacityModeResult) heldAboveKnee() (highest int, failed []int) {
	for _, step := range m.Steps {
		if step.TargetTPS > m.KneeTPS && step.Held {
			highest = step.TargetTPS
		}
	}
	for _, step := range m.Steps {
		if step.TargetTPS > m.KneeTPS && step.TargetTPS < highest && !step.Held {
			failed = append(failed, step.TargetTPS)
		}
	}
	return highest, failed
}

// lowestFailedAboveKnee is the lowest rate run above the knee (which did
// not hold, or it would be the knee); 0: none was run.
func (m capacityModeResult) lowestFailedAboveKnee() int {
	for _, step := range m.Steps {
		if step.TargetTPS > m.KneeTPS && !step.Held {
			return step.TargetTPS
		}
	}
	return 0
}

// joinRates is "1750 TPS", "1750 and 2500 TPS", "1750, 2500 and 3600 TPS".
func joinRates(rates []int) string {
	texts := make([]string, len(rates))
	for i, rate := range rates {
		texts[i] = strconv.Itoa(rate)
	}
	if len(texts) < 2 {
		return strings.Join(texts, "") + " TPS"
	}
	return strings.Join(texts[:len(texts)-1], ", ") + " and " + texts[len(texts)-1] + " TPS"
}

// machineBusy is the share of cores busy over a window of seconds, from
// the machine's CPU seconds in it (nil when they were not sampled or the
// window is empty).
func machineBusy(cpuSeconds map[string]float64, cores int, seconds float64) *float64 {
	used, ok := cpuSeconds[machineComponent]
	if !ok || cores < 1 || seconds <= 0 {
		return nil
	}
	busy := round3(used / (float64(cores) * seconds))
	return &busy
}

// setFigures fills the step's figures from its load's summary, whose only
// step is this one, and judges the step:
//   - achieved TPS is the money operations completed in the hold over its
//     length; iterations, dropped, errors and latencies are over the whole
//     step (ramp and hold);
//   - settle p50 and p99 are the run's settle_duration: every operation of a
//     one-step load is the step's (a count that differs is a bug);
//   - the step holds with at least one iteration, none dropped, errors below
//     0.1% and p95 accept below 250 ms.
func (step *capacityStep) setFigures(summary *metrics.Summary) error {
	if len(summary.Steps) != 1 {
		return fmt.Errorf("%d steps in the summary, want 1", len(summary.Steps))
	}
	figures := summary.Steps[0]
	if figures.Step != strconv.Itoa(step.TargetTPS) {
		return fmt.Errorf("the summary's step is %q, want %d", figures.Step, step.TargetTPS)
	}
	step.AchievedTPS = figures.OperationsPerSecond
	step.Iterations = float64(figures.Started)
	step.Dropped = float64(figures.Dropped)
	step.WindowStart = figures.WindowStart
	step.WindowSeconds = figures.WindowEnd.Sub(figures.WindowStart).Seconds()
	step.CompletedInWindow = figures.CompletedInWindow
	step.ErrorRate, step.P50AcceptMs, step.P95AcceptMs, step.P99AcceptMs = nil, nil, nil, nil
	step.P50SettleMs, step.P95SettleMs, step.P99SettleMs = nil, nil, nil
	if figures.Completed > 0 {
		step.ErrorRate = optional(figures.ErrorRate)
	}
	if figures.AcceptSamples > 0 {
		step.P50AcceptMs = optional(figures.AcceptP50Milliseconds)
		step.P95AcceptMs = optional(figures.AcceptP95Milliseconds)
		step.P99AcceptMs = optional(figures.AcceptP99Milliseconds)
	}
	if figures.SettleSamples > 0 {
		settle := summary.Metrics["settle_duration"].Figures
		if count := int64(settle["count"]); count != figures.SettleSamples {
			return fmt.Errorf("the run has %d settle samples, its only step %d", count, figures.SettleSamples)
		}
		step.P50SettleMs = optional(settle["med"])
		step.P95SettleMs = optional(figures.SettleP95Milliseconds)
		step.P99SettleMs = optional(settle["p(99)"])
	}
	step.Reasons = []string{}
	if figures.Started == 0 {
		step.Reasons = append(step.Reasons, "no iterations")
	}
	if figures.Dropped > 0 {
		step.Reasons = append(step.Reasons, fmt.Sprintf("%d dropped", figures.Dropped))
	}
	switch {
	case step.ErrorRate == nil:
		step.Reasons = append(step.Reasons, "no error data")
	case *step.ErrorRate >= capacityErrorRateMax:
		step.Reasons = append(step.Reasons, fmt.Sprintf("errors %.3f%%", *step.ErrorRate*100))
	}
	switch {
	case step.P95AcceptMs == nil:
		step.Reasons = append(step.Reasons, "no latency data")
	case *step.P95AcceptMs >= capacityP95Milliseconds:
		step.Reasons = append(step.Reasons, fmt.Sprintf("p95 %.1f ms", *step.P95AcceptMs))
	}
	step.Held = len(step.Reasons) == 0
	return nil
}

func optional(value float64) *float64 { return &value }

// scrapeBatches sums the workers' batch-size metric: [records, batches].
func scrapeBatches(file *stack.File) [2]float64 {
	var total [2]float64
	client := http.Client{Timeout: 2 * time.Second}
	for _, url := range file.Endpoints.WorkerMetrics {
		response, err := client.Get(url)
		if err != nil {
			continue
		}
		content, _ := io.ReadAll(response.Body)
		response.Body.Close()
		for _, line := range strings.Split(string(content), "\n") {
			for i, name := range []string{"ledger_worker_batch_records_sum ", "ledger_worker_batch_records_count "} {
				if value, ok := strings.CutPrefix(line, name); ok {
					number, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
					total[i] += number
				}
			}
		}
	}
	return total
}

// auditSummary is the audit's verdict line, from audit.txt when written.
func auditSummary(runDir string, auditError error) string {
	verdict := "passed"
	if auditError != nil {
		verdict = "FAILED (" + auditError.Error() + ")"
	}
	content, err := os.ReadFile(filepath.Join(runDir, "audit.txt"))
	if err != nil {
		return verdict
	}
	for _, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(strings.ToLower(line), "audit") || strings.Contains(line, "PASSED") || strings.Contains(line, "FAILED") {
			return verdict + ": " + line
		}
	}
	return verdict
}

func round3(value float64) float64 { return math.Round(value*1000) / 1000 }

func formatOptional(value *float64, decimals int) string {
	if value == nil {
		return "-"
	}
	return strconv.FormatFloat(*value, 'f', decimals, 64)
}

// formatPercent is a fraction as per cent with decimals ("-": unknown).
func formatPercent(value *float64, decimals int) string {
	if value == nil {
		return "-"
	}
	return strconv.FormatFloat(*value*100, 'f', decimals, 64) + "%"
}

// cpuColumns orders the components in tables: the stack's, then the load
// generator, then the machine.
func cpuColumns(values map[string]float64) []string {
	var names []string
	for name := range values {
		if name != loadComponent && name != machineComponent {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range []string{loadComponent, machineComponent} {
		if _, ok := values[name]; ok {
			names = append(names, name)
		}
	}
	return names
}

func formatCPU(values map[string]float64) string {
	var parts []string
	for _, name := range cpuColumns(values) {
		parts = append(parts, fmt.Sprintf("%s %.2fs", name, values[name]))
	}
	return strings.Join(parts, ", ")
}

// markdown renders the run as the report's tables.
func (r *capacityResult) markdown(outDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Capacity run %s\n\n", r.StartedAt.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s. Each step: a load run of its own, a ramp of %gs from 0, a hold of %gs; %d accounts per step; seed %d. "+
		"A step holds with %s (the knee is the highest step held with every step below it held). Run directory: `%s`.\n\n",
		r.Machine, r.RampSeconds, r.StepSeconds, r.Accounts, r.Seed, r.Criteria, outDir)
	if r.Refine > 0 {
		fmt.Fprintf(&b, "Right after a mode's first failed step, up to %d refinement steps (marked \"refinement\") ran between it and the held step below it, each halving the gap between the highest rate held and the lowest failed, rounded down to %d TPS: the knee is measured to within that last gap. They are judged as every step.\n\n",
			r.Refine, RefineGranularity)
	}
	if c := r.Calibration; c != nil {
		b.WriteString("**Calibration** (this machine, this run, bare programs; CPU of every process involved):\n\n")
		b.WriteString("| part | what | operations | CPU-ms per operation | CPU seconds by process |\n|---|---|---:|---:|---|\n")
		for _, part := range c.Parts {
			fmt.Fprintf(&b, "| %s | %s | %d | %.3f | %s |\n", part.Name, part.What, part.Operations, part.CPUMsPerOperation, formatProcessSeconds(part.ByProcess))
		}
		fmt.Fprintf(&b, "\nBare cost of one request: %.3f CPU-ms; ceiling: %d cores / %.3f ms = **%.0f TPS**.\n\n", c.CPUMsPerOperation, c.Cores, c.CPUMsPerOperation, c.CeilingTPS)
	}
	for _, mode := range r.Modes {
		fmt.Fprintf(&b, "**%s** (%d gateway(s), %d worker(s)): knee **%d TPS**", mode.Mode.Name, mode.Mode.Gateways, mode.Mode.Workers, mode.KneeTPS)
		var about []string
		if mode.CeilingFraction != nil {
			about = append(about, fmt.Sprintf("%.1f%% of the ceiling", *mode.CeilingFraction*100))
		}
		if bound := mode.lowestFailedAboveKnee(); bound > 0 && mode.KneeTPS > 0 {
			about = append(about, fmt.Sprintf("the lowest step run above it, %d TPS, did not hold", bound))
		}
		if len(about) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(about, "; "))
		}
		fmt.Fprintf(&b, "; audit %s.", mode.AuditSummary)
		if highest, failed := mode.heldAboveKnee(); highest > 0 {
			which := "those steps"
			if len(failed) == 1 {
				which = "that step"
			}
			fmt.Fprintf(&b, " A step above the knee held too, up to %d TPS, but %s below it did not: the knee is set by %s.",
				highest, joinRates(failed), which)
		}
		if mode.StoppedEarly != "" {
			fmt.Fprintf(&b, " %s.", strings.TrimSuffix(mode.StoppedEarly, "."))
		}
		b.WriteString("\n\n")
		fmt.Fprintf(&b, "| target TPS | sustained TPS | accept p50 / p95 / p99 ms | settle p50 / p95 / p99 ms | dropped | errors | p95 accept per second: median / worst ms, seconds ≥ %d ms | verdict |\n", kneeP95AcceptTargetMs)
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, step := range mode.Steps {
			verdict := "held"
			if !step.Held {
				verdict = "not held: " + strings.Join(step.Reasons, ", ")
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s / %s / %s | %s / %s / %s | %.0f | %s | %s | %s |\n", step.rateLabel(), step.AchievedTPS,
				formatOptional(step.P50AcceptMs, 1), formatOptional(step.P95AcceptMs, 1), formatOptional(step.P99AcceptMs, 1),
				formatOptional(step.P50SettleMs, 1), formatOptional(step.P95SettleMs, 1), formatOptional(step.P99SettleMs, 1),
				step.Dropped, formatPercent(step.ErrorRate, 3), formatSecondsP95(step.SecondsP95), verdict)
		}
		b.WriteString("\n")
		if len(mode.Steps) > 0 {
			columns := cpuColumns(mode.Steps[0].CPUSeconds)
			b.WriteString("CPU seconds per 1,000 requests (CPU seconds in the step's hold in brackets; `load` is the load generator; `machine` is every process on the machine, others' work included; `busy` is the share of the machine's cores busy in the hold; `autovacuum` is the CPU seconds of Postgres's autovacuum actions in the hold, from its log, and how many there were, counted in `postgres` too):\n\n")
			b.WriteString("| target TPS | " + strings.Join(columns, " | ") + " | busy | records/batch | load avg | autovacuum |\n")
			b.WriteString("|---:|" + strings.Repeat("---:|", len(columns)) + "---:|---:|---:|---:|\n")
			for _, step := range mode.Steps {
				cells := []string{step.rateLabel()}
				for _, column := range columns {
					cells = append(cells, fmt.Sprintf("%.3f (%.1f)", step.CPUPer1000[column], step.CPUSeconds[column]))
				}
				cells = append(cells, formatPercent(step.MachineBusy, 0), strconv.FormatFloat(step.RecordsPerBatch, 'f', 1, 64), strconv.FormatFloat(step.LoadAverage, 'f', 2, 64), formatAutovacuum(step.Autovacuum))
				b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
			}
			b.WriteString("\n")
		}
		if mode.Soak != nil {
			b.WriteString(mode.Soak.markdown())
		}
	}
	batched, naive := r.mode("batched"), r.mode("naive")
	if batched != nil && naive != nil {
		b.WriteString("Side by side:\n\n| target TPS | batched sustained | batched p95 accept ms | batched verdict | naive sustained | naive p95 accept ms | naive verdict |\n|---:|---:|---:|---|---:|---:|---|\n")
		for _, step := range batched.Steps {
			cells := []string{step.rateLabel(), fmt.Sprintf("%.0f", step.AchievedTPS), formatOptional(step.P95AcceptMs, 1), heldWord(step.Held)}
			other := naive.step(step.TargetTPS)
			if other == nil {
				cells = append(cells, "–", "–", "not run")
			} else {
				cells = append(cells, fmt.Sprintf("%.0f", other.AchievedTPS), formatOptional(other.P95AcceptMs, 1), heldWord(other.Held))
			}
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
		ratio := "n/a (the naive mode held no step)"
		if r.KneeRatio != nil {
			ratio = fmt.Sprintf("%.2f×", *r.KneeRatio)
		}
		fmt.Fprintf(&b, "\nKnees: batched %d TPS, naive %d TPS; ratio batched ÷ naive %s.", batched.KneeTPS, naive.KneeTPS, ratio)
		if len(batched.Steps) > 0 {
			last := batched.Steps[len(batched.Steps)-1]
			fmt.Fprintf(&b, " Highest batched step run: %d TPS (sustained %.0f/s, %s).", last.TargetTPS, last.AchievedTPS, heldWord(last.Held))
		}
		b.WriteString("\n")
	}
	if r.Calibration != nil {
		b.WriteString("\nKnees as a fraction of the calibrated ceiling (" + fmt.Sprintf("%.0f TPS", r.Calibration.CeilingTPS) + "):")
		for _, mode := range r.Modes {
			if mode.CeilingFraction != nil {
				fmt.Fprintf(&b, " %s %d ÷ %.0f = %.3f;", mode.Mode.Name, mode.KneeTPS, r.Calibration.CeilingTPS, *mode.CeilingFraction)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(r.driftMarkdown())
	b.WriteString(r.kneeCostMarkdown())
	fmt.Fprintf(&b, "\nVerdict: %s.\n", r.Verdict)
	return b.String()
}

func (m *capacityModeResult) step(rate int) *capacityStep {
	for i := range m.Steps {
		if m.Steps[i].TargetTPS == rate {
			return &m.Steps[i]
		}
	}
	return nil
}

func heldWord(held bool) string {
	if held {
		return "held"
	}
	return "not held"
}

// The markers of the section replaceMarkedSection rewrites.
const (
	capacityBeginMarker = "<!-- capacity-report:begin (written by `make capacity`) -->"
	capacityEndMarker   = "<!-- capacity-report:end -->"
)

// replaceMarkedSection puts content between the capacity-report markers of
// path, appending the markers first if the file has none.
func replaceMarkedSection(path, content string) error {
	existing, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(existing)
	begin, end := strings.Index(text, capacityBeginMarker), strings.Index(text, capacityEndMarker)
	section := capacityBeginMarker + "\n" + content + capacityEndMarker
	if begin < 0 || end < begin {
		text = strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
	} else {
		text = text[:begin] + section + text[end+len(capacityEndMarker):]
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
