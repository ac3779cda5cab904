// Package metrics is the load engine's measurements: a Recorder the generator's goroutines feed with every
// operation, HTTP exchange, iteration and check; the thresholds evaluated on it (during the run for
// abort_on_fail, at the end for the verdict); the end-of-run summary (load-summary.json, in the outer shape of
// k6's --summary-export, plus the raw histograms and counts that let Merge combine the summaries of several
// generator processes exactly); one time-series row per second (load-timeseries.jsonl); a Prometheus /metrics
// handler; and the progress line printed while the load runs.
//
// Latencies are kept in HDR histograms (microseconds, 1 µs to 1 hour, 3 significant digits) and reported in
// milliseconds; percentiles always come from histograms, never from averaged percentiles.
//
// Every sample belongs to one series: a metric and one value of each tag threshold.Known gives it (kind,
// outcome, step, route, status). A (sub)metric such as `accept_duration{kind:transfer}` is the union of the
// series carrying its tags, computed when asked. The number of series is bounded: kinds and outcomes are closed
// sets, and each of step, route and status keeps at most maxTagValues distinct values (later ones are recorded
// as "other").
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// Operation kinds and outcomes, as in the journal (load/JOURNAL.md).
const (
	kindSignup     = "signup"
	kindDeposit    = "deposit"
	kindWithdrawal = "withdrawal"
	kindTransfer   = "transfer"
	kindMisuse     = "misuse"

	outcomeOK   = "ok"
	outcomeFail = "fail"
	outcomeInfo = "info"

	// reasonInsufficientFunds is a rejection that is a correct answer to a random load, not an error; so is the
	// reference system's daily debit limit (docs/limits.md).
	reasonInsufficientFunds  = "insufficient_funds"
	reasonDailyLimitExceeded = "daily_limit_exceeded"
)

// Limits on what the recorder keeps, so that its memory does not grow with the run's length or with values the
// engine did not foresee.
const (
	// maxTagValues bounds the distinct values of one tag (steps, routes, statuses); a value beyond it is
	// recorded as otherTagValue. A capacity run has about ten steps, the reference API eight routes and a
	// dozen statuses.
	maxTagValues = 64
	// otherTagValue stands for every tag value beyond maxTagValues, and every check name beyond maxCheckNames.
	otherTagValue = "other"
	// maxCheckNames bounds the named checks kept in the summary (the smoke walk has about twenty).
	maxCheckNames = 256
	// maxCachedCells bounds each cache of resolved series; past it a call resolves its series again (slower,
	// still correct).
	maxCachedCells = 4096
)

// Operation is one logical operation as the generator saw it complete.
type Operation struct {
	// Kind is signup, deposit, withdrawal, transfer or misuse; Outcome ok, fail or info; Reason the rejection
	// reason or error code ("" when none).
	Kind, Outcome, Reason string
	// Step is the capacity step's label ("1000"), "" outside capacity-steps.
	Step string
	// Completed is when the outcome was known to the client.
	Completed time.Time
	// Accepted says the system accepted the operation (a first 200 or 202); Accept is invoke to that answer.
	// An operation never accepted has no accept time: it is not recorded in accept_duration at all (its
	// time to the outcome measures the client's retries and timeouts, not the system's acceptance; it is
	// counted in errors instead).
	Accepted bool
	Accept   time.Duration
	// Settled says the outcome became final (ok or fail); Settle is invoke to that outcome.
	Settled bool
	Settle  time.Duration
	// Retries is the HTTP attempts beyond the first.
	Retries int
	// Duplicate says the harness sent a duplicate of this operation; Misuse that this operation is an injected
	// key misuse. Each is counted once (duplicates_sent, misuse_sent, tagged with Kind).
	Duplicate, Misuse bool
}

// kindClass is how an operation kind is counted.
type kindClass int

const (
	// moneyClass (deposit, withdrawal, transfer) feeds every operation metric.
	moneyClass kindClass = iota + 1
	// misuseClass is an injected key misuse: its expected answer is fail/idempotency_key_reused, so it is
	// counted in operations, retries and misuse_sent but never in errors, unknown outcomes or latencies.
	misuseClass
	// signupClass is setup's sign-ups: counted in operations only.
	signupClass
)

func classOf(kind string) kindClass {
	switch kind {
	case kindDeposit, kindWithdrawal, kindTransfer:
		return moneyClass
	case kindMisuse:
		return misuseClass
	case kindSignup:
		return signupClass
	}
	panic("metrics: unknown operation kind " + strconv.Quote(kind)) // the engine only has these five
}

// dimension keeps the distinct values of one tag, at most maxTagValues of them.
type dimension struct {
	index  map[string]int
	values []string
}

// intern returns the value's position and the value to record: itself, or otherTagValue once the dimension is
// full. The empty value (no tag) is always itself.
func (d *dimension) intern(value string) (int, string) {
	if position, ok := d.index[value]; ok {
		return position, d.values[position]
	}
	if d.index == nil {
		d.index = map[string]int{}
	}
	recorded := value
	if len(d.values) >= maxTagValues && value != "" {
		recorded = otherTagValue
		if position, ok := d.index[recorded]; ok {
			return position, recorded
		}
	}
	position := len(d.values)
	d.values = append(d.values, recorded)
	d.index[recorded] = position
	return position, recorded
}

// stepState is what a capacity step needs beyond its series: the window its achieved rate is measured over.
type stepState struct {
	label string
	// holdStart and holdEnd are the step's hold, when the engine declared it (StepHold).
	holdDeclared       bool
	holdStart, holdEnd time.Time
	firstDue           time.Time // the first iteration the schedule started or dropped in the step
	lastCompleted      time.Time // the last money operation completed in the step
	completed          int64     // money operations completed in the step
	completedInHold    int64     // of which completed within the declared hold
}

// window is the step's measurement window: the declared hold, else from its first due iteration to its last
// completed operation.
func (s *stepState) window() stepWindow {
	if s.holdDeclared {
		return stepWindow{Label: s.label, Kind: windowHold, Start: s.holdStart, End: s.holdEnd,
			Completed: s.completedInHold}
	}
	return stepWindow{Label: s.label, Kind: windowObserved, Start: s.firstDue, End: s.lastCompleted,
		Completed: s.completed}
}

type operationKey struct{ kind, outcome, step string }

// operationCells are the series one (kind, outcome, step) feeds, resolved once.
type operationCells struct {
	class                                   kindClass
	outcome                                 string
	operations, retries, duplicates, misuse *counterSeries
	errors, unknown                         *rateSeries // money only
	accept, settle                          *trendSeries
	step                                    *stepState // nil outside capacity steps
}

type httpKey struct {
	route  string
	status int
}

// httpCells are the series one (route, status) feeds.
type httpCells struct {
	requests    *counterSeries
	duration    *trendSeries
	failed      *rateSeries
	statusIndex int
}

// iterationCells are the series one step's iterations feed.
type iterationCells struct {
	started, dropped *counterSeries
	step             *stepState
}

// CheckCounts is one check's tally.
type CheckCounts struct {
	Passes int64 `json:"passes"`
	Fails  int64 `json:"fails"`
}

// secondCounters are the counts of the current time-series interval.
type secondCounters struct {
	started, completed, dropped, ok, fail, info, errors int64
	httpByStatus                                        [maxTagValues + 1]int64
	// late and latest are the iterations started LateStart or more after they were due, and the latest of
	// them (IterationLate).
	late   int64
	latest time.Duration
}

// totals are the run's counts the progress line shows, and the late starts the end of the run reports.
type totals struct {
	started, completed, errors, dropped int64
	late                                int64
	latest                              time.Duration
}

// LateStart is how long after its due time an iteration of the open model may start before it counts as
// late (IterationLate): the generator itself fell behind its schedule (its CPU, its scheduler), and the
// latency of that iteration, which counts from the due time, includes the generator's own delay.
const LateStart = 10 * time.Millisecond

// Recorder collects the load's measurements. Its methods are safe for concurrent use; the recording methods
// (Operation, HTTP, IterationStarted, IterationLate, IterationDropped, Check) hold one mutex for a few dozen nanoseconds and
// do not allocate once a series exists.
type Recorder struct {
	start      time.Time
	thresholds []compiledThreshold

	mu     sync.Mutex
	data   *dataset
	steps  dimension
	routes dimension
	// statuses holds HTTP statuses as text ("200"; "0" for no answer).
	statuses   dimension
	stepStates map[string]*stepState
	stepOrder  []*stepState

	operationCache map[operationKey]*operationCells
	httpCache      map[httpKey]*httpCells
	iterationCache map[string]*iterationCells
	checks         map[string]*CheckCounts
	checksSeries   *rateSeries

	totals totals
	// second, secondAccept and secondStart are the current time-series interval (TakeSecond).
	second       secondCounters
	secondAccept *trendSeries
	secondStart  time.Time
	// progressAccept, progressAt and progressCompleted are the current progress interval (Progress).
	progressAccept    *trendSeries
	progressAt        time.Time
	progressCompleted int64
	// scratch is where submetrics spanning several series are merged, under mu.
	scratch *trendSeries
}

// NewRecorder returns a recorder for a load that starts at start (elapsed time, counter rates and abort delays
// count from it) and is judged by thresholds. It panics on a threshold Validate refuses: threshold.Parse
// never builds one.
func NewRecorder(start time.Time, thresholds []threshold.Threshold) *Recorder {
	compiled, err := compileThresholds(thresholds)
	if err != nil {
		panic("metrics: " + err.Error())
	}
	data := newDataset()
	return &Recorder{
		checksSeries:   data.rate(seriesKey{metric: threshold.Checks}),
		start:          start,
		thresholds:     compiled,
		data:           data,
		stepStates:     map[string]*stepState{},
		operationCache: map[operationKey]*operationCells{},
		httpCache:      map[httpKey]*httpCells{},
		iterationCache: map[string]*iterationCells{},
		checks:         map[string]*CheckCounts{},
		secondAccept:   newTrendSeries(),
		secondStart:    start,
		progressAccept: newTrendSeries(),
		progressAt:     start,
		scratch:        newTrendSeries(),
	}
}

// Operation records one completed operation. Money operations (deposit, withdrawal, transfer) feed operations,
// errors, unknown_outcomes, accept_duration, settle_duration, retries, duplicates_sent and misuse_sent; a
// misuse feeds operations, retries and misuse_sent (its expected answer is a refusal, which is not an error);
// a signup feeds operations only. It panics on a kind or outcome the journal does not have.
func (r *Recorder) Operation(o Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cells := r.operationCellsLocked(o.Kind, o.Outcome, o.Step)
	cells.operations.count++
	if cells.class == signupClass {
		return
	}
	if o.Retries > 0 {
		cells.retries.count += int64(o.Retries)
	}
	if o.Duplicate {
		cells.duplicates.count++
	}
	if o.Misuse {
		cells.misuse.count++
	}
	if cells.class != moneyClass {
		return
	}
	unknown := cells.outcome == outcomeInfo
	failed := unknown || (cells.outcome == outcomeFail && o.Reason != reasonInsufficientFunds && o.Reason != reasonDailyLimitExceeded)
	cells.errors.add(failed)
	cells.unknown.add(unknown)
	if o.Accepted {
		microseconds := o.Accept.Microseconds()
		cells.accept.record(microseconds)
		r.secondAccept.record(microseconds)
		r.progressAccept.record(microseconds)
	}
	if o.Settled {
		cells.settle.record(o.Settle.Microseconds())
	}

	r.totals.completed++
	r.second.completed++
	switch cells.outcome {
	case outcomeOK:
		r.second.ok++
	case outcomeFail:
		r.second.fail++
	case outcomeInfo:
		r.second.info++
	}
	if failed {
		r.totals.errors++
		r.second.errors++
	}
	if step := cells.step; step != nil {
		step.completed++
		if o.Completed.After(step.lastCompleted) {
			step.lastCompleted = o.Completed
		}
		if step.holdDeclared && !o.Completed.Before(step.holdStart) && o.Completed.Before(step.holdEnd) {
			step.completedInHold++
		}
	}
}

func (r *Recorder) operationCellsLocked(kind, outcome, step string) *operationCells {
	key := operationKey{kind: kind, outcome: outcome, step: step}
	if cells, ok := r.operationCache[key]; ok {
		return cells
	}
	class := classOf(kind)
	switch outcome {
	case outcomeOK, outcomeFail, outcomeInfo:
	default:
		panic("metrics: unknown outcome " + strconv.Quote(outcome)) // the journal has only these three
	}
	state, stepLabel := r.stepStateLocked(step)
	cells := &operationCells{
		class:      class,
		outcome:    outcome,
		operations: r.data.counter(seriesKey{metric: threshold.Operations, tags: [maxTags]string{kind, outcome, stepLabel}}),
	}
	if class != signupClass {
		byKind := seriesKey{tags: [maxTags]string{kind}}
		byKind.metric = threshold.Retries
		cells.retries = r.data.counter(byKind)
		byKind.metric = threshold.DuplicatesSent
		cells.duplicates = r.data.counter(byKind)
		byKind.metric = threshold.MisuseSent
		cells.misuse = r.data.counter(byKind)
	}
	if class == moneyClass {
		byKindAndStep := seriesKey{tags: [maxTags]string{kind, stepLabel}}
		byKindAndStep.metric = threshold.Errors
		cells.errors = r.data.rate(byKindAndStep)
		byKindAndStep.metric = threshold.UnknownOutcomes
		cells.unknown = r.data.rate(byKindAndStep)
		byKindAndStep.metric = threshold.AcceptDuration
		cells.accept = r.data.trend(byKindAndStep)
		byKindAndStep.metric = threshold.SettleDuration
		cells.settle = r.data.trend(byKindAndStep)
		cells.step = state
	}
	if len(r.operationCache) < maxCachedCells {
		r.operationCache[key] = cells
	}
	return cells
}

// stepStateLocked returns the state of a step label (nil for "") and the label to record.
func (r *Recorder) stepStateLocked(step string) (*stepState, string) {
	if step == "" {
		return nil, ""
	}
	_, label := r.steps.intern(step)
	state, ok := r.stepStates[label]
	if !ok {
		state = &stepState{label: label}
		r.stepStates[label] = state
		r.stepOrder = append(r.stepOrder, state)
	}
	return state, label
}

// StepHold declares a capacity step's hold (after its ramp, before its gap): the step's achieved operations
// per second are then its money operations completed within [start, end) over the hold's length. Declare it
// before the step's operations complete (the engine knows every step's window when the schedule starts).
// Without it, a step's rate is measured from its first due iteration to its last completed operation.
func (r *Recorder) StepHold(step string, start, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	state, _ := r.stepStateLocked(step)
	if state == nil {
		return
	}
	state.holdDeclared = true
	state.holdStart = start
	state.holdEnd = end
}

// HTTP records one HTTP exchange: http_reqs (route, status), http_req_duration (route) and http_req_failed
// (route). status is 0 when no answer came; failed says the exchange counts as failed (no answer, or a status
// the client did not expect). at, when the exchange ended, is not used today: time-series rows count samples
// in the interval they are recorded in.
func (r *Recorder) HTTP(route string, status int, duration time.Duration, failed bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cells := r.httpCellsLocked(route, status)
	cells.requests.count++
	cells.duration.record(duration.Microseconds())
	cells.failed.add(failed)
	r.second.httpByStatus[cells.statusIndex]++
}

func (r *Recorder) httpCellsLocked(route string, status int) *httpCells {
	key := httpKey{route: route, status: status}
	if cells, ok := r.httpCache[key]; ok {
		return cells
	}
	_, routeLabel := r.routes.intern(route)
	statusIndex, statusLabel := r.statuses.intern(strconv.Itoa(status))
	cells := &httpCells{
		requests: r.data.counter(seriesKey{metric: threshold.HTTPRequests,
			tags: tagsInOrder(threshold.HTTPRequests, map[string]string{"status": statusLabel, "route": routeLabel})}),
		duration:    r.data.trend(seriesKey{metric: threshold.HTTPRequestDuration, tags: [maxTags]string{routeLabel}}),
		failed:      r.data.rate(seriesKey{metric: threshold.HTTPRequestFailed, tags: [maxTags]string{routeLabel}}),
		statusIndex: statusIndex,
	}
	if len(r.httpCache) < maxCachedCells {
		r.httpCache[key] = cells
	}
	return cells
}

// tagsInOrder places tag values in threshold.Known's order for the metric.
func tagsInOrder(metric string, values map[string]string) [maxTags]string {
	var tags [maxTags]string
	for name, value := range values {
		position := tagPosition(metric, name)
		if position < 0 {
			panic("metrics: " + metric + " has no tag " + name)
		}
		tags[position] = value
	}
	return tags
}

// IterationStarted records an iteration the schedule started (iterations, tag step) at at.
func (r *Recorder) IterationStarted(step string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cells := r.iterationCellsLocked(step)
	cells.started.count++
	r.totals.started++
	r.second.started++
	cells.step.due(at)
}

// IterationLate records an iteration that started late after its due time, late being LateStart or more
// (shorter delays are ignored): the time series and the end of the run count them, with the latest.
func (r *Recorder) IterationLate(late time.Duration) {
	if late < LateStart {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.second.late++
	r.second.latest = max(r.second.latest, late)
	r.totals.late++
	r.totals.latest = max(r.totals.latest, late)
}

// LateStarts returns the iterations started late (IterationLate) over the run, and the latest.
func (r *Recorder) LateStarts() (count int64, latest time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.totals.late, r.totals.latest
}

// IterationDropped records an iteration the schedule called for at at that could not start
// (dropped_iterations, tag step).
func (r *Recorder) IterationDropped(step string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cells := r.iterationCellsLocked(step)
	cells.dropped.count++
	r.totals.dropped++
	r.second.dropped++
	cells.step.due(at)
}

// due notes an iteration due at at (nil: outside capacity steps).
func (s *stepState) due(at time.Time) {
	if s != nil && (s.firstDue.IsZero() || at.Before(s.firstDue)) {
		s.firstDue = at
	}
}

func (r *Recorder) iterationCellsLocked(step string) *iterationCells {
	if cells, ok := r.iterationCache[step]; ok {
		return cells
	}
	state, label := r.stepStateLocked(step)
	cells := &iterationCells{
		started: r.data.counter(seriesKey{metric: threshold.Iterations, tags: [maxTags]string{label}}),
		dropped: r.data.counter(seriesKey{metric: threshold.DroppedIterations, tags: [maxTags]string{label}}),
		step:    state,
	}
	if len(r.iterationCache) < maxCachedCells {
		r.iterationCache[step] = cells
	}
	return cells
}

// Check records one check of the smoke walk (checks: 1 when it held), and tallies it by name.
func (r *Recorder) Check(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checksSeries.add(ok)
	counts, found := r.checks[name]
	if !found {
		if len(r.checks) >= maxCheckNames {
			name = otherTagValue
		}
		if counts, found = r.checks[name]; !found {
			counts = &CheckCounts{}
			r.checks[name] = counts
		}
	}
	if ok {
		counts.Passes++
	} else {
		counts.Fails++
	}
}

// elapsedSeconds is the load's elapsed time at now.
func (r *Recorder) elapsedSeconds(now time.Time) float64 {
	return now.Sub(r.start).Seconds()
}

// Results evaluates every threshold at now, in the order given to NewRecorder.
func (r *Recorder) Results(now time.Time) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	results := make([]Result, len(r.thresholds))
	for i, compiled := range r.thresholds {
		results[i] = evaluateThreshold(r.data, compiled, r.elapsedSeconds(now), r.scratch)
	}
	return results
}

// FailedAbortThresholds returns the abort_on_fail thresholds that fail at now, leaving out those still within
// their abort delay (counted from the load's start) and those with nothing observed yet. The engine stops the
// load when it returns any.
func (r *Recorder) FailedAbortThresholds(now time.Time) []threshold.Threshold {
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := r.elapsedSeconds(now)
	var failed []threshold.Threshold
	for _, compiled := range r.thresholds {
		if !compiled.threshold.AbortOnFail || elapsed < compiled.threshold.AbortDelaySeconds {
			continue
		}
		if result := evaluateThreshold(r.data, compiled, elapsed, r.scratch); !result.Passed {
			failed = append(failed, compiled.threshold)
		}
	}
	return failed
}

// StepFigures computes one capacity step's figures so far.
func (r *Recorder) StepFigures(step string) StepFigures {
	r.mu.Lock()
	defer r.mu.Unlock()
	window := stepWindow{Label: step, Kind: windowObserved} // a step never seen: zeros
	if state, ok := r.stepStates[step]; ok {
		window = state.window()
	}
	return stepFiguresOf(r.data, window, r.scratch)
}

// Handler serves the recorder's metrics in the Prometheus text format, read at each scrape.
func (r *Recorder) Handler() http.Handler {
	return newPrometheusHandler(r)
}
