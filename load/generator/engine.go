// Package generator is Jepsen's generator role: it prepares the accounts a load needs (setup), then starts
// operations on the schedule a scenario describes (open model: arrival rates, stages, capacity steps; closed
// model: loops), hands them to the client, records their metrics and journals them. The schedule decides when
// an operation starts, never the previous response; an operation that cannot start (every slot busy) is
// counted as dropped, never delayed; latency is measured from the intended start.
package generator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/internal/syncwriter"
	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/history"
	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/load/profile"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// Exit codes of a load run (docs/scenarios.md), as k6 users expect them.
const (
	ExitPassed = 0
	// ExitCouldNotRun: the configuration was unusable or setup could not prepare the accounts.
	ExitCouldNotRun = 2
	// ExitThresholdsFailed: a threshold failed.
	ExitThresholdsFailed = 99
)

// journalBufferEntries bounds the journal's queue: a few MiB and several seconds of 20,000 operations per
// second before an iteration blocks on a stalled disk.
const journalBufferEntries = 65536

// File names in the run directory (docs/run-directory.md); with segments the index is in the name.
const (
	JournalBaseName    = "journal"
	SummaryBaseName    = "load-summary"
	TimeSeriesBaseName = "load-timeseries"
)

// FileName is base + ".jsonl"/".json" for a single process, base + "-<i>" before the extension for segment i.
func FileName(base, extension string, segment, segments int) string {
	if segments > 1 {
		return base + "-" + strconv.Itoa(segment) + extension
	}
	return base + extension
}

// Config is one load run of one generator process.
type Config struct {
	Scenario *scenario.Scenario
	// BaseURLs are the system's base URLs.
	BaseURLs []string
	// RunDir receives the journal, the summary and the time series.
	RunDir string
	// Segment and Segments: this process is segment Segment (from 0) of Segments (default 1/1).
	Segment, Segments int
	// Seed is the resolved seed (never 0).
	Seed int64
	// Ledger is the client; nil: the reference API's HTTP client built from the scenario's client section.
	Ledger client.Ledger
	// StartGate, when set, is called after setup and returns the time the schedule starts (shared by every
	// generator process). Nil: at once.
	StartGate func(ctx context.Context) (time.Time, error)
	// MetricsAddress, when set, serves Prometheus /metrics there while the load runs.
	MetricsAddress string
	// CPUProfile, when set, is the file that gets a CPU profile (runtime/pprof) of this process over the
	// schedule, from its start to its end: setup is left out. It shows where a load generator's own CPU goes,
	// which on a machine it shares with the system under test is CPU the system does not get.
	CPUProfile string
	// Profile is the system's dialect (load/profile); nil: the reference API.
	Profile *profile.Profile
	// Output receives the progress lines. Default io.Discard.
	Output io.Writer
	// ProgressInterval is the period of the progress line. Default 2s.
	ProgressInterval time.Duration
}

// Result is what a load run did.
type Result struct {
	ExitCode int
	Summary  *metrics.Summary
	// Problem says why the run could not run (setup incomplete, a file not written), or "".
	Problem string
	// JournalPath, SummaryPath and TimeSeriesPath are the files written.
	JournalPath, SummaryPath, TimeSeriesPath string
}

type engine struct {
	config   Config
	scenario *scenario.Scenario
	ledger   client.Ledger
	recorder *metrics.Recorder
	accounts []Account
	workload *Workload
	// replays holds the money operations to send again later (client.replays).
	replays replayQueue
	output  *syncwriter.Writer
	started time.Time
}

// Run prepares the accounts, runs the schedule, and writes the summary. The error is for a configuration that
// could not start; every later problem is in the result (exit code 2 with the problem).
func Run(ctx context.Context, config Config) (*Result, error) {
	if config.Scenario == nil || len(config.BaseURLs) == 0 || config.RunDir == "" {
		return nil, errors.New("load: a scenario, base URLs and a run directory are needed")
	}
	if config.Segments == 0 {
		config.Segments = 1
	}
	if config.Segment < 0 || config.Segment >= config.Segments {
		return nil, fmt.Errorf("load: segment %d/%d: want 0 <= i < N", config.Segment, config.Segments)
	}
	if config.Output == nil {
		config.Output = io.Discard
	}
	if config.ProgressInterval <= 0 {
		config.ProgressInterval = 2 * time.Second
	}
	// The profile's file is made now, so a path that cannot be written stops the run before its setup.
	profileFile, err := createProfile(config.CPUProfile)
	if err != nil {
		return nil, fmt.Errorf("load: --cpu-profile: %w", err)
	}
	if profileFile != nil {
		defer profileFile.Close()
	}
	s := config.Scenario
	accountsHere, firstIndex := segmentShare(s.Setup.Accounts, config.Segment, config.Segments)
	if accountsHere < 2 {
		return nil, fmt.Errorf("load: segment %d/%d gets %d of the %d accounts; each segment needs at least 2 (raise setup.accounts)",
			config.Segment, config.Segments, accountsHere, s.Setup.Accounts)
	}
	if err := os.MkdirAll(config.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("load: run directory: %w", err)
	}
	result := &Result{
		JournalPath:    filepath.Join(config.RunDir, FileName(JournalBaseName, ".jsonl", config.Segment, config.Segments)),
		SummaryPath:    filepath.Join(config.RunDir, FileName(SummaryBaseName, ".json", config.Segment, config.Segments)),
		TimeSeriesPath: filepath.Join(config.RunDir, FileName(TimeSeriesBaseName, ".jsonl", config.Segment, config.Segments)),
	}
	journal, err := history.OpenJournal(result.JournalPath, journalBufferEntries)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	e := &engine{config: config, scenario: s, output: syncwriter.New(config.Output)}
	// The load's metrics start with the schedule: setup's requests are not the load's.
	observer := &switchObserver{}
	e.ledger = config.Ledger
	if e.ledger == nil {
		httpClient, err := client.NewHTTP(client.Options{
			BaseURLs: config.BaseURLs, Timeout: s.Client.Timeout, Wait: s.Client.Wait, Engine: s.Client.HTTPEngine,
			PollInterval: s.Client.PollInterval, PollFor: s.Client.PollFor,
			RetryAttempts: s.Client.RetryAttempts, RetryBackoff: s.Client.RetryBackoff, RetryMaxBackoff: s.Client.RetryMaxBackoff,
			RetryJitter: s.Client.RetryJitter, DuplicateDelay: s.Client.DuplicateDelay,
			// At most 1,024 connections per base URL, fewer when fewer can be in flight. Past the bound a request
			// waits in the client for a connection (its latency still counts from when it was due). Without it,
			// a generator whose own CPU falls behind (a cold start, a stall on a shared machine) dials one more
			// connection per late request and collapses: at 10,000/s, 13,000-17,000 connections, 3x the CPU per
			// operation and half the rate (docs/performance.md, "The load engine's own cost"). Connections idle
			// for the client's default 10 s close, so those a latency episode opened do not stay open (and
			// in the gateway's memory) for long.
			MaxConnections:  min(1024, max(64, s.Schedule.MaxInFlight*2)),
			OperationPrefix: "s" + strconv.Itoa(config.Segment) + "p" + strconv.Itoa(os.Getpid()),
			Seed:            config.Seed, Journal: journal, Observer: observer, Profile: config.Profile,
		})
		if err != nil {
			journal.Close()
			return nil, fmt.Errorf("load: %w", err)
		}
		defer httpClient.Close()
		e.ledger = httpClient
	}
	defer func() {
		if err := journal.Close(); err != nil && result.Problem == "" {
			result.Problem = "journal: " + err.Error()
			result.ExitCode = ExitCouldNotRun
		}
	}()

	segmentText := ""
	if config.Segments > 1 {
		segmentText = fmt.Sprintf(", segment %d/%d", config.Segment, config.Segments)
	}
	e.say("load: scenario %s (%s), seed %d (replay with --set seed=%d)%s, %d accounts, journal %s",
		s.Name, s.Path, config.Seed, config.Seed, segmentText, accountsHere, result.JournalPath)

	// Setup.
	setupStarted := time.Now()
	runTag := strconv.FormatInt(setupStarted.UnixMilli(), 36) + strconv.FormatInt(int64(os.Getpid()), 36)
	lastSaid := time.Now()
	var sayMutex sync.Mutex
	accounts, err := Prepare(ctx, e.ledger, SetupConfig{
		Count: accountsHere, FundingMinor: s.Setup.FundingMinor, Concurrency: s.Setup.Concurrency, Timeout: s.Setup.Timeout,
		Password: s.Setup.Password, EmailPrefix: s.Setup.EmailPrefix, RunTag: runTag, FirstIndex: firstIndex,
		Progress: func(ready int) {
			sayMutex.Lock()
			defer sayMutex.Unlock()
			if time.Since(lastSaid) >= config.ProgressInterval || ready == accountsHere {
				lastSaid = time.Now()
				e.say("[setup %6s] %d/%d accounts signed up, signed in and funded", time.Since(setupStarted).Truncate(time.Second), ready, accountsHere)
			}
		},
	})
	if err != nil {
		result.ExitCode, result.Problem = ExitCouldNotRun, err.Error()
		e.say("load: %v", err)
		e.say("load: setup did not finish within %s (setup.timeout): no load was started (exit %d)", s.Setup.Timeout, ExitCouldNotRun)
		return result, nil
	}
	e.accounts = accounts
	if s.Workload.Kind == scenario.WorkloadMixed {
		if e.workload, err = NewWorkload(s.Workload, len(accounts), config.Seed); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		// Beliefs of the balances size the edge debits (overdraft_rate,
		// drain_rate) and the limit races (limit_race_rate: the day's
		// debits). Without them amounts are drawn as they fall, and debits
		// exceeding what an account holds happen by themselves.
		if s.Workload.OverdraftRate > 0 || s.Workload.DrainRate > 0 || s.Workload.LimitRaceRate > 0 {
			opening := make([]int64, len(accounts))
			for i, account := range accounts {
				opening[i] = account.FundingMinor
			}
			if err := e.workload.TrackBalances(opening, s.Setup.FundingMinor); err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
		}
	}
	start := time.Now()
	if config.StartGate != nil {
		if start, err = config.StartGate(ctx); err != nil {
			result.ExitCode, result.Problem = ExitCouldNotRun, "start: "+err.Error()
			e.say("load: %s", result.Problem)
			return result, nil
		}
	}
	if wait := time.Until(start); wait > 0 {
		e.say("load: setup took %s; the schedule starts at %s", time.Since(setupStarted).Truncate(time.Millisecond), start.UTC().Format("15:04:05.000"))
		if !sleepUntil(ctx, start) {
			result.ExitCode, result.Problem = ExitCouldNotRun, "interrupted before the load started"
			return result, nil
		}
	}
	e.started = start
	e.recorder = metrics.NewRecorder(start, s.Thresholds)
	observer.recorder.Store(e.recorder)
	if config.MetricsAddress != "" {
		stop, address, err := serveMetrics(config.MetricsAddress, e.recorder.Handler())
		if err != nil {
			result.ExitCode, result.Problem = ExitCouldNotRun, "--metrics-address: "+err.Error()
			return result, nil
		}
		defer stop()
		e.say("load: Prometheus metrics at http://%s/metrics", address)
	}

	timeSeries, err := os.Create(result.TimeSeriesPath)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer timeSeries.Close()
	if profileFile != nil {
		if err := pprof.StartCPUProfile(profileFile); err != nil {
			result.ExitCode, result.Problem = ExitCouldNotRun, "--cpu-profile: "+err.Error()
			return result, nil
		}
	}
	aborted := e.runSchedule(ctx, timeSeries)
	if profileFile != nil {
		pprof.StopCPUProfile()
		if err := profileFile.Close(); err != nil {
			e.say("load: --cpu-profile: %v", err)
		} else {
			e.say("load: CPU profile of the schedule in %s", config.CPUProfile)
		}
	}
	if s.Workload.Kind == scenario.WorkloadMixed && s.Client.ReplayRate > 0 {
		waiting, refused := e.replays.pending()
		e.say("load: replays: %d not yet due when the schedule ended, %d not queued (more than %d waiting)", waiting, refused, maxPendingReplays)
	}

	now := time.Now()
	summary := e.recorder.Summary(metrics.RunInfo{
		Scenario: s.Name, ScenarioPath: s.Path, Seed: config.Seed, Segment: segmentLabel(config.Segment, config.Segments),
		Aborted: aborted,
	}, now)
	result.Summary = summary
	if err := metrics.WriteSummary(result.SummaryPath, summary); err != nil {
		result.ExitCode, result.Problem = ExitCouldNotRun, err.Error()
		return result, nil
	}
	switch {
	case !summary.ThresholdsPassed:
		result.ExitCode = ExitThresholdsFailed
	case aborted == "interrupted":
		// The schedule did not run to its end: thresholds that held over part of it prove nothing.
		result.ExitCode, result.Problem = ExitCouldNotRun, "interrupted before the schedule ended"
	}
	e.printSummary(summary, result)
	return result, nil
}

// segmentShare returns how many of total accounts segment i of n prepares, and the index of its first.
func segmentShare(total, segment, segments int) (count, first int) {
	base, extra := total/segments, total%segments
	count = base
	if segment < extra {
		count++
	}
	first = segment*base + min(segment, extra)
	return count, first
}

func segmentLabel(segment, segments int) string {
	if segments <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", segment, segments)
}

// runSchedule runs the schedule, the progress line, the time series and the abort check until the schedule
// and its graceful stop are over; it returns why the load was aborted, or "".
func (e *engine) runSchedule(ctx context.Context, timeSeries io.Writer) string {
	s := e.scenario
	scheduleContext, stopSchedule := context.WithCancel(ctx)
	defer stopSchedule()
	// Iterations get a context of their own, cancelled only after the graceful stop, so that a schedule that
	// ends (or is interrupted) lets the operations in flight finish and be journaled with their real fate.
	iterationContext, cancelIterations := context.WithCancel(context.Background())
	defer cancelIterations()

	var abortReason string
	var abortMutex sync.Mutex
	inFlight := &inFlightCounter{}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		e.watch(scheduleContext, timeSeries, inFlight, func(reason string) {
			abortMutex.Lock()
			if abortReason == "" {
				abortReason = reason
				e.say("load: aborting: %s", reason)
			}
			abortMutex.Unlock()
			stopSchedule()
		})
	}()

	var iterations sync.WaitGroup
	if s.Schedule.Executor == scenario.ExecutorClosed {
		e.runClosed(scheduleContext, iterationContext, &iterations, inFlight)
	} else {
		e.runOpen(scheduleContext, iterationContext, &iterations, inFlight)
	}
	if ctx.Err() != nil {
		abortMutex.Lock()
		if abortReason == "" {
			abortReason = "interrupted"
		}
		abortMutex.Unlock()
	}
	// Graceful stop: operations in flight get GracefulStop to finish, then their context ends.
	finished := make(chan struct{})
	go func() {
		iterations.Wait()
		close(finished)
	}()
	timer := time.NewTimer(s.Schedule.GracefulStop)
	select {
	case <-finished:
	case <-timer.C:
		e.say("load: %d operations still in flight after the graceful stop (%s): cancelling them (their outcome is unknown)",
			inFlight.load(), s.Schedule.GracefulStop)
		cancelIterations()
		<-finished
	}
	timer.Stop()
	stopSchedule()
	<-watchDone
	abortMutex.Lock()
	defer abortMutex.Unlock()
	return abortReason
}

// watch prints the progress line, writes the time series every second and checks the abort-on-fail
// thresholds, until ctx ends.
func (e *engine) watch(ctx context.Context, timeSeries io.Writer, inFlight *inFlightCounter, abort func(string)) {
	second := time.NewTicker(time.Second)
	defer second.Stop()
	progress := time.NewTicker(e.config.ProgressInterval)
	defer progress.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := e.recorder.WriteSecond(timeSeries, time.Now(), inFlight.load()); err != nil {
				e.say("load: time series: %v", err)
			}
			return
		case now := <-second.C:
			if err := e.recorder.WriteSecond(timeSeries, now, inFlight.load()); err != nil {
				e.say("load: time series: %v", err)
			}
			if failed := e.recorder.FailedAbortThresholds(now); len(failed) > 0 {
				abort(fmt.Sprintf("threshold %s failed (abort_on_fail)", failed[0].Name()))
			}
		case now := <-progress.C:
			e.say("%s  in flight %d", e.recorder.Progress(now).Line(), inFlight.load())
		}
	}
}

// runOpen starts the open model's iterations on schedule, each on a free slot; with none free the iteration
// is dropped.
func (e *engine) runOpen(scheduleContext, iterationContext context.Context, iterations *sync.WaitGroup, inFlight *inFlightCounter) {
	s := e.scenario
	plan, err := NewPlan(s.Schedule, 1/float64(e.config.Segments))
	if err != nil {
		// The scenario was validated: an executor without a plan is a bug.
		panic(fmt.Sprintf("load: %v", err))
	}
	for _, step := range plan.Steps() {
		e.recorder.StepHold(step.Label, e.started.Add(step.HoldStart), e.started.Add(step.HoldEnds))
	}
	slots := make(chan uint64, s.Schedule.MaxInFlight)
	for slot := 1; slot <= s.Schedule.MaxInFlight; slot++ {
		slots <- uint64(slot)
	}
	e.say("load: %s, %d iterations over %s, at most %d in flight", s.Schedule.Executor, plan.Total(), plan.Length(), s.Schedule.MaxInFlight)
	// Iterations run on reused workers (workers.go); when the schedule is over, idle workers exit, busy ones
	// after their iteration.
	pool := &workerPool{}
	defer pool.close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for n := int64(1); n <= plan.Total(); n++ {
		offset, step, _ := plan.Due(n)
		due := e.started.Add(offset)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-scheduleContext.Done():
				return
			}
		} else if scheduleContext.Err() != nil {
			return
		}
		select {
		case slot := <-slots:
			e.recorder.IterationStarted(step, due)
			e.recorder.IterationLate(time.Since(due))
			inFlight.add(1)
			iterations.Add(1)
			job := openIteration{n: n, slot: slot, due: due, step: step}
			if idle := pool.take(time.Now()); idle != nil {
				idle.jobs <- job
			} else {
				go e.openWorker(iterationContext, newWorker(), job, pool, slots, iterations, inFlight)
			}
		default:
			e.recorder.IterationDropped(step, due)
		}
	}
}

// openWorker runs job, then parks in the pool and runs the iterations it is handed, until the pool retires it
// or closes. A worker is only started when none is idle, so there are never many more than the iterations in
// flight (at most max_in_flight).
func (e *engine) openWorker(iterationContext context.Context, w *worker, job openIteration, pool *workerPool,
	slots chan<- uint64, iterations *sync.WaitGroup, inFlight *inFlightCounter) {
	for {
		// The walk is allowed under any executor (scenario files accept it): it has no mixed workload to draw from.
		if e.scenario.Workload.Kind == scenario.WorkloadWalk {
			e.walkIteration(iterationContext, job.n, job.slot)
		} else {
			e.mixedIteration(iterationContext, job.n, job.slot, job.due, job.step)
		}
		slots <- job.slot
		inFlight.add(-1)
		iterations.Done()
		if !pool.park(w, time.Now()) {
			return
		}
		var open bool
		if job, open = <-w.jobs; !open {
			return
		}
	}
}

// runClosed runs VUs loops of Iterations each, bounded by MaxDuration.
func (e *engine) runClosed(scheduleContext, iterationContext context.Context, iterations *sync.WaitGroup, inFlight *inFlightCounter) {
	s := e.scenario
	bounded, cancel := context.WithTimeout(scheduleContext, s.Schedule.MaxDuration)
	defer cancel()
	e.say("load: closed model, %d VUs x %d iterations (at most %s)", s.Schedule.VUs, s.Schedule.Iterations, s.Schedule.MaxDuration)
	var loops sync.WaitGroup
	for vu := 1; vu <= s.Schedule.VUs; vu++ {
		loops.Add(1)
		go func(slot uint64) {
			defer loops.Done()
			for i := 0; i < s.Schedule.Iterations && bounded.Err() == nil; i++ {
				n := int64(i*s.Schedule.VUs) + int64(slot)
				now := time.Now()
				e.recorder.IterationStarted("", now)
				inFlight.add(1)
				iterations.Add(1)
				if s.Workload.Kind == scenario.WorkloadWalk {
					e.walkIteration(iterationContext, n, slot)
				} else {
					e.mixedIteration(iterationContext, n, slot, now, "")
				}
				inFlight.add(-1)
				iterations.Done()
			}
		}(uint64(vu))
	}
	loops.Wait()
}

// mixedIteration is one iteration of the mixed workload: one money operation, or the replay of an earlier one
// that is due.
func (e *engine) mixedIteration(ctx context.Context, n int64, slot uint64, intended time.Time, step string) {
	s := e.scenario
	caller := client.Caller{Slot: slot, Iteration: n - 1}
	// Due by the iteration's intended start, which is its journaled invoke: a replay is never invoked early.
	if due, ok := e.replays.take(intended); ok {
		e.replayIteration(ctx, due, caller, intended, step)
		return
	}
	// A generator per iteration, from the seed and the iteration's number: the same seed replays the same
	// choices for the same iteration whatever the timing.
	random := rand.New(rand.NewPCG(uint64(e.config.Seed), uint64(n)<<8|uint64(e.config.Segment)))
	operation := e.workload.Next(random, slot)
	request := client.MoneyRequest{Kind: operation.Kind, Amount: operation.Amount, Caller: caller, Intended: intended,
		Intent: operation.Intent}
	source := e.accounts[operation.Source].Session
	request.Session = source
	switch operation.Kind {
	case client.KindDeposit:
		request.To = source.AccountID
	case client.KindWithdrawal:
		request.From = source.AccountID
	case client.KindTransfer:
		if operation.Destination == MissingDestination {
			request.From, request.To = source.AccountID, MissingAccountID(source.AccountID)
			break
		}
		fallthrough
	default:
		request.From, request.To = source.AccountID, e.accounts[operation.Destination].Session.AccountID
	}
	if s.Client.DuplicateRate > 0 && random.Float64() < s.Client.DuplicateRate {
		request.Duplicate = s.Client.DuplicateMode
		if request.Duplicate == scenario.DuplicateMixed {
			request.Duplicate = client.DuplicateConcurrent
			if n%2 == 0 {
				request.Duplicate = client.DuplicateDelayed
			}
		}
	}
	if s.Client.MisuseRate > 0 && random.Float64() < s.Client.MisuseRate {
		request.Misuse = true
	}
	if s.Client.EarlyTimeoutRate > 0 && random.Float64() < s.Client.EarlyTimeoutRate {
		request.FirstAttemptTimeout = time.Duration(1 + random.Int64N(int64(s.Client.EarlyTimeoutMax)))
	}
	replayLater := s.Client.ReplayRate > 0 && random.Float64() < s.Client.ReplayRate
	// A whole-balance debit that drew a rival races it: both are sent at once, each with its own key.
	var rivalResult chan client.Result
	rival, raced := e.workload.Rival(operation)
	if raced {
		rivalRequest := client.MoneyRequest{Kind: rival.Kind, Amount: rival.Amount, Caller: caller, Intended: intended,
			Intent: rival.Intent, Session: source, From: source.AccountID}
		rivalResult = make(chan client.Result, 1)
		go func() { rivalResult <- e.ledger.Money(ctx, rivalRequest) }()
	}
	result := e.ledger.Money(ctx, request)
	e.workload.Finish(operation, result.Outcome, time.Now())
	e.record(result, step, request.Duplicate != "" && len(result.DuplicateStatuses) > 0)
	if raced {
		other := <-rivalResult
		e.workload.Finish(rival, other.Outcome, time.Now())
		e.record(other, step, false)
	}
	// Only an operation the ledger decided is replayed: its replay must find it there, never apply anything.
	if replayLater && ctx.Err() == nil && decidedByTheLedger(result) {
		again := request
		again.Key, again.ReplayOf = result.Key, result.Op
		// The replay repeats the body; the aim of its amount was the first operation's, not the replay's.
		again.Duplicate, again.Misuse, again.FirstAttemptTimeout, again.Intended, again.Intent = "", false, 0, time.Time{}, ""
		e.replays.add(replay{due: result.Complete.Add(s.Client.ReplayAfter), request: again, of: result.Op})
	}
	e.resync(ctx, operation.Source)
}

// decidedByTheLedger reports whether the client was told the ledger's final decision: settled, or rejected by
// the ledger (not refused by the gateway).
func decidedByTheLedger(result client.Result) bool {
	return result.Outcome == client.OutcomeOK || (result.Outcome == client.OutcomeFail && result.Status == client.StatusRejected)
}

// replayIteration sends a replay that is due: the same kind, key and body as the operation it replays, journaled
// as an operation of its own (replay_of). It moves no money, so the balance beliefs do not take it.
func (e *engine) replayIteration(ctx context.Context, due replay, caller client.Caller, intended time.Time, step string) {
	request := due.request
	request.Caller, request.Intended = caller, intended
	result := e.ledger.Money(ctx, request)
	e.record(result, step, true)
}

// resync reads an account's balance again when the workload's beliefs of it hold unknown effects that are old
// enough (Workload.ResyncDue), so that its edge debits are sized from the ledger's balance again.
func (e *engine) resync(ctx context.Context, index int) {
	version, due := e.workload.ResyncDue(index, time.Now())
	if !due || ctx.Err() != nil {
		return
	}
	session := e.accounts[index].Session
	balance, err := e.ledger.Balance(ctx, session, session.AccountID)
	if err != nil {
		return // read again after a later operation of the account
	}
	e.workload.Resync(index, version, balance)
}

// record hands a money operation's result (and its misuse's) to the metrics; duplicate says a duplicate of it
// was sent, or that it is itself a replay.
func (e *engine) record(result client.Result, step string, duplicate bool) {
	e.recorder.Operation(operationMetrics(result, step, duplicate, false))
	if result.Misuse != nil {
		e.recorder.Operation(operationMetrics(*result.Misuse, step, false, true))
	}
}

func operationMetrics(r client.Result, step string, duplicate, misuse bool) metrics.Operation {
	o := metrics.Operation{Kind: r.Kind, Outcome: r.Outcome, Reason: r.Reason, Step: step, Completed: r.Complete,
		Retries: r.Retries(), Duplicate: duplicate, Misuse: misuse}
	if !r.AcceptedAt.IsZero() {
		o.Accepted, o.Accept = true, r.AcceptedAt.Sub(r.Invoke)
	}
	if !r.FinalAt.IsZero() {
		o.Settled, o.Settle = true, r.FinalAt.Sub(r.Invoke)
	}
	return o
}

func (e *engine) say(format string, args ...any) {
	fmt.Fprintf(e.output, format+"\n", args...)
}

// printSummary prints the end of the run: the operations, the latencies, each capacity step and each
// threshold's verdict.
func (e *engine) printSummary(summary *metrics.Summary, result *Result) {
	figure := func(metric, name string) float64 { return summary.Metrics[metric].Figures[name] }
	e.say("load: %.0f operations in %.1fs (%.0f/s), %.0f iterations started, %.0f dropped; errors %.4f, unknown outcomes %.4f",
		figure("operations", "count"), summary.DurationSeconds, figure("operations", "rate"), figure("iterations", "count"),
		figure("dropped_iterations", "count"), figure("errors", "value"), figure("unknown_outcomes", "value"))
	for _, metric := range []string{"accept_duration", "settle_duration", "http_req_duration"} {
		if figure(metric, "count") > 0 {
			e.say("load: %-17s p50 %8.1f ms  p95 %8.1f ms  p99 %8.1f ms  max %8.1f ms  (%.0f)", metric, figure(metric, "med"),
				figure(metric, "p(95)"), figure(metric, "p(99)"), figure(metric, "max"), figure(metric, "count"))
		}
	}
	for _, step := range summary.Steps {
		e.say("load: step %6s/s: %8.1f ops/s achieved, %d started, %d dropped, error rate %.4f, accept p50/p95/p99 %.1f/%.1f/%.1f ms",
			step.Step, step.OperationsPerSecond, step.Started, step.Dropped, step.ErrorRate,
			step.AcceptP50Milliseconds, step.AcceptP95Milliseconds, step.AcceptP99Milliseconds)
	}
	for _, verdict := range summary.Thresholds {
		state := "passed"
		switch {
		case verdict.NotObserved:
			state = "NOT EXERCISED (no samples)"
		case !verdict.Passed:
			state = "FAILED"
		}
		observed := ""
		if verdict.Observed != nil {
			observed = fmt.Sprintf(" (observed %.4g)", *verdict.Observed)
		}
		e.say("load: threshold %s: %s %s%s", verdict.Metric, verdict.Expression, state, observed)
	}
	if late, latest := e.recorder.LateStarts(); late > 0 {
		e.say("load: %d iterations started %s or more after their due time (the latest %.1f ms): the generator fell behind its own schedule; their latency counts from the due time and includes that delay",
			late, metrics.LateStart, float64(latest.Microseconds())/1000)
	}
	if summary.Aborted != "" {
		e.say("load: aborted: %s", summary.Aborted)
	}
	e.say("load: summary %s, journal %s, time series %s", result.SummaryPath, result.JournalPath, result.TimeSeriesPath)
}

// serveMetrics serves handler at /metrics on address until stop is called.
func serveMetrics(address string, handler http.Handler) (stop func(), bound string, err error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler)
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }()
	return func() {
		shutdownContext, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdownContext)
	}, listener.Addr().String(), nil
}

// createProfile creates the file of Config.CPUProfile; nil for "".
func createProfile(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	return os.Create(path)
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// switchObserver hands HTTP exchanges to the recorder once the load started (setup's are not counted).
type switchObserver struct {
	recorder atomic.Pointer[metrics.Recorder]
}

func (o *switchObserver) HTTP(route string, status int, duration time.Duration, failed bool, at time.Time) {
	if recorder := o.recorder.Load(); recorder != nil {
		recorder.HTTP(route, status, duration, failed, at)
	}
}

// inFlightCounter counts the iterations running.
type inFlightCounter struct {
	mutex sync.Mutex
	count int
}

func (c *inFlightCounter) add(delta int) {
	c.mutex.Lock()
	c.count += delta
	c.mutex.Unlock()
}

func (c *inFlightCounter) load() int {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return c.count
}
