package metrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// loadStart is the start of every test load: tests pass times explicitly, never the wall clock.
var loadStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(seconds float64) time.Time {
	return loadStart.Add(time.Duration(seconds * float64(time.Second)))
}

// newThreshold builds a threshold by hand, as threshold.Parse would from `source: expression`.
func newThreshold(metric string, tags map[string]string, aggregate string, operator threshold.Operator,
	value float64) threshold.Threshold {
	t := threshold.Threshold{Metric: metric, Tags: tags, Aggregate: aggregate, Operator: operator, Value: value}
	if n, ok := percentileOf(aggregate, 0); ok {
		t.Percentile = n
	}
	chosen, err := selectionOf(metric, tags)
	if err != nil {
		panic(err)
	}
	t.Source = chosen.name()
	t.Expression = expressionOf(t)
	return t
}

func moneyOperation(kind, outcome, reason string, acceptMilliseconds int) Operation {
	accept := time.Duration(acceptMilliseconds) * time.Millisecond
	return Operation{
		Kind: kind, Outcome: outcome, Reason: reason, Completed: at(1),
		Accepted: true, Accept: accept,
		Settled: outcome != outcomeInfo, Settle: accept + 5*time.Millisecond,
	}
}

// feedReference records a small load whose figures the threshold cases below know: transfers accepted in
// 10, 20, ..., 100 ms (one failing for a reason that is an error), deposits accepted in 200 ms (one info), and
// a withdrawal refused for insufficient funds.
func feedReference(recorder *Recorder) {
	for i := 1; i <= 10; i++ {
		outcome, reason := outcomeOK, ""
		if i == 10 {
			outcome, reason = outcomeFail, "validation"
		}
		recorder.Operation(moneyOperation(kindTransfer, outcome, reason, 10*i))
	}
	recorder.Operation(moneyOperation(kindDeposit, outcomeOK, "", 200))
	recorder.Operation(moneyOperation(kindDeposit, outcomeInfo, "", 200))
	recorder.Operation(moneyOperation(kindWithdrawal, outcomeFail, reasonInsufficientFunds, 200))
	for i := 0; i < 13; i++ {
		recorder.IterationStarted("", at(0))
	}
	recorder.HTTP("POST /transfers", 200, 30*time.Millisecond, false, at(1))
	recorder.HTTP("POST /transfers", 503, 40*time.Millisecond, true, at(1))
	recorder.Check("balance", true)
	recorder.Check("balance", false)
}

func TestThresholds(t *testing.T) {
	transfer := map[string]string{"kind": kindTransfer}
	deposit := map[string]string{"kind": kindDeposit}
	tests := []struct {
		name      string
		threshold threshold.Threshold
		observed  float64
		passed    bool
	}{
		{"trend avg holds", newThreshold(threshold.AcceptDuration, transfer, "avg", threshold.Less, 56), 55, true},
		{"trend avg fails", newThreshold(threshold.AcceptDuration, transfer, "avg", threshold.Less, 55), 55, false},
		{"trend min holds", newThreshold(threshold.AcceptDuration, nil, "min", threshold.GreaterEqual, 10), 10, true},
		{"trend min fails", newThreshold(threshold.AcceptDuration, nil, "min", threshold.Greater, 10), 10, false},
		{"trend max holds", newThreshold(threshold.AcceptDuration, nil, "max", threshold.LessEqual, 200), 200, true},
		{"trend max fails", newThreshold(threshold.AcceptDuration, nil, "max", threshold.Less, 200), 200, false},
		// The 5th of 10 samples: 50 ms, reported as its bucket's highest value (3 significant digits).
		{"trend med holds", newThreshold(threshold.AcceptDuration, transfer, "med", threshold.Less, 50.1), 50.015, true},
		{"trend med fails", newThreshold(threshold.AcceptDuration, transfer, "med", threshold.Less, 50), 50.015, false},
		{"trend percentile holds", newThreshold(threshold.AcceptDuration, transfer, "p(90)", threshold.Less, 91), 90.047, true},
		{"trend percentile fails", newThreshold(threshold.AcceptDuration, transfer, "p(90)", threshold.Less, 90), 90.047, false},
		{"trend count holds", newThreshold(threshold.AcceptDuration, nil, "count", threshold.Equal, 13), 13, true},
		{"trend count fails", newThreshold(threshold.AcceptDuration, nil, "count", threshold.Equal, 12), 13, false},
		{"settle is tagged too", newThreshold(threshold.SettleDuration, deposit, "max", threshold.Less, 206), 205, true},
		{"submetric excludes other tags", newThreshold(threshold.AcceptDuration, deposit, "min", threshold.Equal, 200), 200, true},
		// Errors: the validation failure and the info deposit; not the insufficient funds.
		{"rate holds", newThreshold(threshold.Errors, nil, "rate", threshold.LessEqual, 2.0/13), 2.0 / 13, true},
		{"rate fails", newThreshold(threshold.Errors, nil, "rate", threshold.Less, 0.1), 2.0 / 13, false},
		{"rate value is the rate", newThreshold(threshold.Errors, transfer, "value", threshold.Equal, 0.1), 0.1, true},
		{"rate count is the ones", newThreshold(threshold.Errors, nil, "count", threshold.Equal, 2), 2, true},
		{"rate total is the samples", newThreshold(threshold.Errors, nil, "total", threshold.Equal, 13), 13, true},
		{"unknown outcomes", newThreshold(threshold.UnknownOutcomes, deposit, "rate", threshold.Equal, 0.5), 0.5, true},
		{"http failed by route", newThreshold(threshold.HTTPRequestFailed, map[string]string{"route": "POST /transfers"}, "rate", threshold.Less, 0.5), 0.5, false},
		{"checks", newThreshold(threshold.Checks, nil, "rate", threshold.Equal, 1), 0.5, false},
		{"counter count holds", newThreshold(threshold.Operations, map[string]string{"outcome": outcomeOK}, "count", threshold.Equal, 10), 10, true},
		{"counter count fails", newThreshold(threshold.Operations, nil, "count", threshold.Less, 13), 13, false},
		// 13 iterations over the 10 elapsed seconds.
		{"counter rate holds", newThreshold(threshold.Iterations, nil, "rate", threshold.GreaterEqual, 1.3), 1.3, true},
		{"counter rate fails", newThreshold(threshold.Iterations, nil, "rate", threshold.Greater, 2), 1.3, false},
		{"counter of nothing is zero", newThreshold(threshold.DroppedIterations, nil, "count", threshold.Equal, 0), 0, true},
		{"http requests by status", newThreshold(threshold.HTTPRequests, map[string]string{"status": "503"}, "count", threshold.Equal, 1), 1, true},
		{"http duration by route", newThreshold(threshold.HTTPRequestDuration, map[string]string{"route": "POST /transfers"}, "max", threshold.Equal, 40), 40, true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			recorder := NewRecorder(loadStart, []threshold.Threshold{test.threshold})
			feedReference(recorder)
			results := recorder.Results(at(10))
			if len(results) != 1 {
				t.Fatalf("results = %d, want 1", len(results))
			}
			result := results[0]
			if result.NotObserved || result.Observed == nil {
				t.Fatalf("result not observed: %+v", result)
			}
			if math.Abs(*result.Observed-test.observed) > 1e-9 {
				t.Errorf("observed = %v, want %v", *result.Observed, test.observed)
			}
			if result.Passed != test.passed {
				t.Errorf("passed = %v, want %v", result.Passed, test.passed)
			}
			summary := recorder.Summary(RunInfo{Scenario: "reference"}, at(10))
			if summary.ThresholdsPassed != test.passed {
				t.Errorf("summary thresholds_passed = %v, want %v", summary.ThresholdsPassed, test.passed)
			}
			entry, ok := summary.Metrics[result.Metric]
			if !ok {
				t.Fatalf("summary has no metric %s", result.Metric)
			}
			if crossed := entry.Thresholds[result.Expression]; crossed != !test.passed {
				t.Errorf("summary metrics[%s].thresholds[%s] = %v, want %v", result.Metric, result.Expression, crossed, !test.passed)
			}
		})
	}
}

func TestThresholdWithoutSamplesIsNotObserved(t *testing.T) {
	tests := []struct {
		name        string
		threshold   threshold.Threshold
		notObserved bool
	}{
		{"trend of a kind never drawn", newThreshold(threshold.AcceptDuration, map[string]string{"kind": kindWithdrawal}, "p(95)", threshold.Less, 1), true},
		{"trend of a step never reached", newThreshold(threshold.SettleDuration, map[string]string{"step": "9000"}, "avg", threshold.Less, 1), true},
		{"rate without samples", newThreshold(threshold.Checks, nil, "rate", threshold.Equal, 1), true},
		{"counter without events is observed", newThreshold(threshold.DroppedIterations, nil, "count", threshold.Greater, 0), false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			recorder := NewRecorder(loadStart, []threshold.Threshold{test.threshold})
			recorder.Operation(moneyOperation(kindTransfer, outcomeOK, "", 10))
			result := recorder.Results(at(1))[0]
			if result.NotObserved != test.notObserved {
				t.Fatalf("not observed = %v, want %v", result.NotObserved, test.notObserved)
			}
			if test.notObserved && (!result.Passed || result.Observed != nil) {
				t.Errorf("a threshold with nothing observed: passed %v observed %v, want passed and no value",
					result.Passed, result.Observed)
			}
			if !test.notObserved && result.Passed {
				t.Errorf("count 0 > 0 passed")
			}
			content, err := json.Marshal(recorder.Summary(RunInfo{}, at(1)).Thresholds[0])
			if err != nil {
				t.Fatal(err)
			}
			if test.notObserved && !strings.Contains(string(content), `"observed":null,"not_observed":true`) {
				t.Errorf("summary threshold = %s, want observed null and not_observed true", content)
			}
		})
	}
}

func TestAbortOnFailRespectsItsDelay(t *testing.T) {
	abortErrors := newThreshold(threshold.Errors, nil, "rate", threshold.Less, 0.5)
	abortErrors.AbortOnFail = true
	abortErrors.AbortDelaySeconds = 10
	abortLatency := newThreshold(threshold.AcceptDuration, nil, "p(95)", threshold.Less, 100)
	abortLatency.AbortOnFail = true // no delay
	reportOnly := newThreshold(threshold.Errors, nil, "rate", threshold.Equal, 0)

	tests := []struct {
		name   string
		feed   func(*Recorder)
		now    time.Time
		failed []threshold.Threshold
	}{
		{"nothing observed aborts nothing", func(*Recorder) {}, at(20), nil},
		{"failing within its delay", func(r *Recorder) {
			r.Operation(moneyOperation(kindTransfer, outcomeInfo, "", 10))
		}, at(9.999), nil},
		{"failing after its delay", func(r *Recorder) {
			r.Operation(moneyOperation(kindTransfer, outcomeInfo, "", 10))
		}, at(10), []threshold.Threshold{abortErrors}},
		{"no delay aborts at once", func(r *Recorder) {
			r.Operation(moneyOperation(kindTransfer, outcomeOK, "", 150))
		}, at(0.5), []threshold.Threshold{abortLatency}},
		{"holding thresholds do not abort", func(r *Recorder) {
			r.Operation(moneyOperation(kindTransfer, outcomeOK, "", 50))
		}, at(60), nil},
		{"both fail", func(r *Recorder) {
			r.Operation(moneyOperation(kindTransfer, outcomeInfo, "", 150))
		}, at(11), []threshold.Threshold{abortErrors, abortLatency}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			recorder := NewRecorder(loadStart, []threshold.Threshold{abortErrors, abortLatency, reportOnly})
			test.feed(recorder)
			failed := recorder.FailedAbortThresholds(test.now)
			if !reflect.DeepEqual(failed, test.failed) {
				t.Errorf("failed = %v, want %v", names(failed), names(test.failed))
			}
		})
	}
}

func names(thresholds []threshold.Threshold) []string {
	var list []string
	for _, t := range thresholds {
		list = append(list, t.Name())
	}
	return list
}

func TestOperationsAreCountedByKind(t *testing.T) {
	tests := []struct {
		name      string
		operation Operation
		// want maps a metric (canonical name) to its count (counters) or passes/fails (rates).
		want map[string][2]int64
	}{
		{"insufficient funds is not an error",
			moneyOperation(kindWithdrawal, outcomeFail, reasonInsufficientFunds, 10),
			map[string][2]int64{"operations": {1}, "errors": {0, 1}, "unknown_outcomes": {0, 1}}},
		{"another rejection is an error",
			moneyOperation(kindTransfer, outcomeFail, "account_closed", 10),
			map[string][2]int64{"operations": {1}, "errors": {1, 0}, "unknown_outcomes": {0, 1}}},
		{"info is an error and unknown",
			moneyOperation(kindDeposit, outcomeInfo, "", 10),
			map[string][2]int64{"operations": {1}, "errors": {1, 0}, "unknown_outcomes": {1, 0}}},
		{"a misuse counts in operations, retries and misuse sent only",
			Operation{Kind: kindMisuse, Outcome: outcomeFail, Reason: "idempotency_key_reused", Retries: 2, Misuse: true, Accepted: true, Accept: time.Millisecond},
			map[string][2]int64{"operations": {1}, "retries": {2}, "misuse_sent": {1}, "errors": {0, 0}, "accept_duration": {0}}},
		{"a signup counts in operations only",
			Operation{Kind: kindSignup, Outcome: outcomeOK, Retries: 3, Accepted: true, Accept: time.Millisecond},
			map[string][2]int64{"operations": {1}, "retries": {0}, "errors": {0, 0}, "accept_duration": {0}}},
		{"an operation never accepted has no accept time",
			Operation{Kind: kindTransfer, Outcome: outcomeInfo, Retries: 1, Duplicate: true},
			map[string][2]int64{"accept_duration": {0}, "settle_duration": {0}, "retries": {1}, "duplicates_sent": {1}}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			recorder := NewRecorder(loadStart, nil)
			recorder.Operation(test.operation)
			summary := recorder.Summary(RunInfo{}, at(1))
			for metric, want := range test.want {
				figures := summary.Metrics[metric].Figures
				var got [2]int64
				switch typeOf(metric) {
				case rateMetric:
					got = [2]int64{int64(figures["passes"]), int64(figures["fails"])}
				default:
					got = [2]int64{int64(figures["count"])}
				}
				if got != want {
					t.Errorf("%s = %v, want %v (figures %v)", metric, got, want, figures)
				}
			}
		})
	}
}

func TestUnknownKindOrOutcomePanics(t *testing.T) {
	tests := []struct {
		name      string
		operation Operation
	}{
		{"kind", Operation{Kind: "refund", Outcome: outcomeOK}},
		{"outcome", Operation{Kind: kindTransfer, Outcome: "maybe"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			NewRecorder(loadStart, nil).Operation(test.operation)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		threshold threshold.Threshold
		problem   string // "" when valid
	}{
		{"valid trend percentile", threshold.Threshold{Metric: "accept_duration", Aggregate: "p(99.9)", Operator: "<", Value: 1}, ""},
		{"parsed percentile", threshold.Threshold{Metric: "accept_duration", Aggregate: "p", Percentile: 95, Operator: "<", Value: 1}, ""},
		{"unknown metric", threshold.Threshold{Metric: "scenario_errors", Aggregate: "rate", Operator: "<", Value: 1}, "unknown metric"},
		{"unknown tag", threshold.Threshold{Metric: "accept_duration", Tags: map[string]string{"scenario": "x"}, Aggregate: "avg", Operator: "<", Value: 1}, "no tag"},
		{"percentile of a rate", threshold.Threshold{Metric: "errors", Aggregate: "p(95)", Operator: "<", Value: 1}, "no percentiles"},
		{"rate of a trend", threshold.Threshold{Metric: "accept_duration", Aggregate: "rate", Operator: "<", Value: 1}, "not one of"},
		{"percentile above 100", threshold.Threshold{Metric: "accept_duration", Aggregate: "p(101)", Operator: "<", Value: 1}, "outside 0-100"},
		{"unknown operator", threshold.Threshold{Metric: "errors", Aggregate: "rate", Operator: "~", Value: 1}, "unknown operator"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			err := Validate([]threshold.Threshold{test.threshold})
			switch {
			case test.problem == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case test.problem != "" && (err == nil || !strings.Contains(err.Error(), test.problem)):
				t.Errorf("Validate = %v, want an error with %q", err, test.problem)
			}
		})
	}
}

func TestStepFigures(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	recorder.StepHold("1000", at(5), at(15))
	for i := 0; i < 40; i++ {
		second := float64(i) / 2 // 0 to 19.5 s
		recorder.IterationStarted("1000", at(second))
		operation := moneyOperation(kindTransfer, outcomeOK, "", 10+i)
		if i%10 == 0 {
			operation.Outcome, operation.Settled = outcomeInfo, false
		}
		operation.Step = "1000"
		operation.Completed = at(second + 0.01)
		recorder.Operation(operation)
	}
	recorder.IterationDropped("1000", at(19))
	recorder.IterationStarted("2000", at(21)) // another step: not in 1000's figures
	recorder.Operation(Operation{Kind: kindTransfer, Outcome: outcomeOK, Step: "2000", Completed: at(21), Accepted: true, Accept: time.Second})

	figures := recorder.StepFigures("1000")
	want := StepFigures{
		Step: "1000", Started: 40, Dropped: 1, Completed: 40,
		Window: windowHold, WindowStart: at(5), WindowEnd: at(15), CompletedInWindow: 20,
		OperationsPerSecond: 2, Errors: 4, ErrorRate: 0.1,
		AcceptSamples: 40, AcceptP50Milliseconds: 29.007, AcceptP95Milliseconds: 47.007, AcceptP99Milliseconds: 49,
		SettleSamples: 36, SettleP95Milliseconds: 52.031,
	}
	if !reflect.DeepEqual(figures, want) {
		t.Errorf("step figures\n got %+v\nwant %+v", figures, want)
	}

	observed := recorder.StepFigures("2000")
	if observed.Window != windowObserved || observed.Completed != 1 || !observed.WindowStart.Equal(at(21)) {
		t.Errorf("step without a declared hold: %+v", observed)
	}
	summary := recorder.Summary(RunInfo{}, at(30))
	if len(summary.Steps) != 2 || summary.Steps[0].Step != "1000" || summary.Steps[1].Step != "2000" {
		t.Errorf("summary steps = %+v, want 1000 then 2000", summary.Steps)
	}
}

func TestTagValuesAreBounded(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	for i := 0; i < 3*maxTagValues; i++ {
		recorder.HTTP(fmt.Sprintf("GET /route/%d", i), 100+i, time.Millisecond, false, at(1))
		recorder.IterationStarted(fmt.Sprintf("%d", i), at(1))
	}
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	if len(recorder.routes.values) > maxTagValues+1 || len(recorder.statuses.values) > maxTagValues+1 ||
		len(recorder.steps.values) > maxTagValues+1 || len(recorder.stepStates) > maxTagValues+1 {
		t.Errorf("tag values: %d routes, %d statuses, %d steps, want at most %d each", len(recorder.routes.values),
			len(recorder.statuses.values), len(recorder.steps.values), maxTagValues+1)
	}
	if got := recorder.data.counterOf(selection{metric: threshold.HTTPRequests}); got != 3*maxTagValues {
		t.Errorf("http_reqs = %d, want every request counted (%d)", got, 3*maxTagValues)
	}
}

func TestTimeSeriesRows(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	var output bytes.Buffer
	var completed, requests int64
	const seconds = 100
	for second := 0; second < seconds; second++ {
		for i := 0; i <= second%7; i++ {
			recorder.IterationStarted("", at(float64(second)))
			recorder.Operation(moneyOperation(kindTransfer, outcomeOK, "", 10+second))
			recorder.HTTP("POST /transfers", 200+second, time.Millisecond, false, at(float64(second)))
			completed++
			requests++
		}
		if err := recorder.WriteSecond(&output, at(float64(second+1)), second%7); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(output.String(), "\n"), "\n")
	if len(lines) != seconds {
		t.Fatalf("rows = %d, want %d", len(lines), seconds)
	}
	var rowsCompleted, rowsRequests int64
	for i, line := range lines {
		var row Second
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		wantCount := int64(i%7 + 1)
		if row.T != at(float64(i)).Unix() || row.IntervalSeconds != 1 || row.Completed != wantCount ||
			row.OK != wantCount || row.Started != wantCount || row.InFlight != i%7 {
			t.Errorf("row %d = %+v", i, row)
		}
		if row.AcceptP95Milliseconds != float64(10+i) || row.Accepted != wantCount {
			t.Errorf("row %d accept p95 = %v over %d, want %d ms over %d: the histogram is per row", i,
				row.AcceptP95Milliseconds, row.Accepted, 10+i, wantCount)
		}
		if len(row.HTTP) > maxTagValues+1 {
			t.Errorf("row %d has %d statuses, more than the bound %d", i, len(row.HTTP), maxTagValues+1)
		}
		rowsCompleted += row.Completed
		for _, count := range row.HTTP {
			rowsRequests += count
		}
	}
	if rowsCompleted != completed || rowsRequests != requests {
		t.Errorf("rows count %d operations and %d requests, want %d and %d", rowsCompleted, rowsRequests, completed, requests)
	}
	if empty := recorder.TakeSecond(at(seconds+1), 0); empty.Completed != 0 || len(empty.HTTP) != 0 || empty.Accepted != 0 {
		t.Errorf("a row after nothing happened = %+v, want zeros", empty)
	}
}

func TestProgress(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	for i := 0; i < 10; i++ {
		recorder.IterationStarted("", at(0))
		recorder.Operation(moneyOperation(kindTransfer, outcomeOK, "", 100))
	}
	recorder.IterationDropped("", at(1))
	first := recorder.Progress(at(2))
	for i := 0; i < 4; i++ {
		recorder.Operation(moneyOperation(kindTransfer, outcomeInfo, "", 20))
	}
	second := recorder.Progress(at(4))
	third := recorder.Progress(at(6))
	tests := []struct {
		name     string
		progress Progress
		line     string
	}{
		{"first interval", first, "2s  started 10  completed 10  5.0 ops/s  errors 0  dropped 1  p95 accept 100.0 ms"},
		{"second interval", second, "4s  started 10  completed 14  2.0 ops/s  errors 4  dropped 1  p95 accept 20.0 ms"},
		{"quiet interval", third, "6s  started 10  completed 14  0.0 ops/s  errors 4  dropped 1  p95 accept -"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if line := test.progress.Line(); line != test.line {
				t.Errorf("line\n got %q\nwant %q", line, test.line)
			}
		})
	}
}

// runSummary builds a summary with every kind of figure: thresholds, steps, checks, tagged series.
func runSummary(t *testing.T) *Summary {
	t.Helper()
	thresholds := []threshold.Threshold{
		newThreshold(threshold.AcceptDuration, map[string]string{"kind": kindTransfer}, "p(99.9)", threshold.Less, 250),
		newThreshold(threshold.Errors, nil, "rate", threshold.Less, 0.01),
		newThreshold(threshold.DroppedIterations, nil, "count", threshold.Equal, 0),
		newThreshold(threshold.SettleDuration, map[string]string{"step": "4000"}, "p(95)", threshold.Less, 250),
	}
	recorder := NewRecorder(loadStart, thresholds)
	recorder.StepHold("1000", at(0), at(10))
	feedReference(recorder)
	operation := moneyOperation(kindTransfer, outcomeOK, "", 30)
	operation.Step = "1000"
	recorder.Operation(operation)
	recorder.IterationDropped("1000", at(2))
	return recorder.Summary(RunInfo{Scenario: "gate", ScenarioPath: "scenarios/gate.yaml", Seed: 42, Segment: "1/2",
		Aborted: "threshold errors: rate<0.01 failed"}, at(12.5))
}

func TestSummaryRoundTrip(t *testing.T) {
	summary := runSummary(t)
	path := filepath.Join(t.TempDir(), SummaryFile)
	if err := WriteSummary(path, summary); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d files after the write, want the summary only", len(entries))
	}
	read, err := ReadSummary(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range summary.Thresholds {
		summary.Thresholds[i].Threshold = threshold.Threshold{} // not written
	}
	if !reflect.DeepEqual(read, summary) {
		t.Errorf("summary changed in the round trip\n got %+v\nwant %+v", read, summary)
	}

	// The outer shape k6's export readers (reports/inputs.go) rely on.
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k6Shape struct {
		Metrics map[string]map[string]json.RawMessage `json:"metrics"`
	}
	if err := json.Unmarshal(content, &k6Shape); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		metric, field, want string
	}{
		{"accept_duration{kind:transfer}", "thresholds", `{"p(99.9)<250":false}`},
		{"accept_duration{kind:transfer}", "p(99.9)", "100"},
		{"accept_duration{kind:transfer}", "count", "11"},
		{"accept_duration{kind:deposit}", "max", "200"},
		{"errors", "thresholds", `{"rate<0.01":true}`},
		{"errors", "passes", "2"},
		{"errors", "fails", "12"},
		{"dropped_iterations", "count", "1"},
		{"dropped_iterations", "thresholds", `{"count==0":true}`},
		{"settle_duration{step:4000}", "count", "0"},
		{"settle_duration{step:4000}", "thresholds", `{"p(95)<250":false}`},
		{"duplicates_sent", "count", "0"},
	}
	for _, test := range tests {
		t.Run(test.metric+" "+test.field, func(t *testing.T) {
			var compact bytes.Buffer
			if err := json.Compact(&compact, k6Shape.Metrics[test.metric][test.field]); err != nil {
				t.Fatalf("metrics[%s][%s]: %v", test.metric, test.field, err)
			}
			if compact.String() != test.want {
				t.Errorf("metrics[%s][%s] = %s, want %s", test.metric, test.field, compact.String(), test.want)
			}
		})
	}
	if summary.ThresholdsPassed || summary.Thresholds[3].NotObserved != true || len(summary.Steps) != 1 ||
		summary.Checks["balance"] != (CheckCounts{Passes: 1, Fails: 1}) {
		t.Errorf("summary: passed %v, thresholds %+v, steps %+v, checks %v", summary.ThresholdsPassed,
			summary.Thresholds, summary.Steps, summary.Checks)
	}
}

// randomOperation draws an operation of a seeded load, so the merge test is replayable.
func randomOperation(random *rand.Rand) Operation {
	kinds := []string{kindDeposit, kindWithdrawal, kindTransfer, kindMisuse, kindSignup}
	outcomes := []string{outcomeOK, outcomeOK, outcomeOK, outcomeFail, outcomeInfo}
	reasons := []string{"", reasonInsufficientFunds, "validation"}
	steps := []string{"", "1000", "2000"}
	// Log-uniform latencies from 100 µs to 10 s exercise every histogram bucket range.
	latency := time.Duration(math.Exp(math.Log(100)+random.Float64()*math.Log(1e5))) * time.Microsecond
	return Operation{
		Kind: kinds[random.IntN(len(kinds))], Outcome: outcomes[random.IntN(len(outcomes))],
		Reason: reasons[random.IntN(len(reasons))], Step: steps[random.IntN(len(steps))],
		Completed: at(random.Float64() * 30),
		Accepted:  random.IntN(10) > 0, Accept: latency,
		Settled: random.IntN(5) > 0, Settle: latency * 2,
		Retries: random.IntN(3), Duplicate: random.IntN(10) == 0, Misuse: random.IntN(20) == 0,
	}
}

func TestMergeEqualsOneRecorder(t *testing.T) {
	thresholds := []threshold.Threshold{
		newThreshold(threshold.AcceptDuration, nil, "p(95)", threshold.Less, 250),
		newThreshold(threshold.AcceptDuration, map[string]string{"kind": kindTransfer}, "p(99.9)", threshold.Less, 5000),
		newThreshold(threshold.SettleDuration, map[string]string{"step": "2000"}, "med", threshold.Less, 100),
		newThreshold(threshold.Errors, nil, "rate", threshold.Less, 0.01),
		newThreshold(threshold.HTTPRequests, nil, "rate", threshold.Greater, 10),
		newThreshold(threshold.Checks, nil, "rate", threshold.Equal, 1),
	}
	const seed = 20260301
	t.Logf("seed %d", seed)
	random := rand.New(rand.NewPCG(seed, seed))
	whole := NewRecorder(loadStart, thresholds)
	segments := []*Recorder{NewRecorder(loadStart, thresholds), NewRecorder(loadStart, thresholds)}
	for _, recorder := range append([]*Recorder{whole}, segments...) {
		recorder.StepHold("1000", at(0), at(15))
		recorder.StepHold("2000", at(15), at(30))
	}
	for i := 0; i < 20000; i++ {
		segment := segments[i%2]
		operation := randomOperation(random)
		whole.Operation(operation)
		segment.Operation(operation)
		step := operation.Step
		whole.IterationStarted(step, operation.Completed)
		segment.IterationStarted(step, operation.Completed)
		if i%100 == 0 {
			whole.IterationDropped(step, operation.Completed)
			segment.IterationDropped(step, operation.Completed)
		}
		route := []string{"POST /transfers", "POST /deposits", "GET /transactions/{id}"}[random.IntN(3)]
		status := []int{200, 202, 409, 422, 503, 0}[random.IntN(6)]
		duration := time.Duration(random.IntN(2_000_000)) * time.Microsecond
		whole.HTTP(route, status, duration, status >= 500 || status == 0, operation.Completed)
		segment.HTTP(route, status, duration, status >= 500 || status == 0, operation.Completed)
		name := []string{"balance", "status", "replay"}[random.IntN(3)]
		ok := random.IntN(50) > 0
		whole.Check(name, ok)
		segment.Check(name, ok)
	}
	finished := at(31)
	info := RunInfo{Scenario: "capacity", Seed: 7}
	want := whole.Summary(info, finished)
	var parts []*Summary
	for i, recorder := range segments {
		segmentInfo := info
		segmentInfo.Segment = fmt.Sprintf("%d/2", i+1)
		parts = append(parts, recorder.Summary(segmentInfo, finished))
	}
	merged, err := Merge(parts, thresholds)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(merged.Metrics, want.Metrics) {
		for name, entry := range want.Metrics {
			if !reflect.DeepEqual(merged.Metrics[name], entry) {
				t.Errorf("metrics[%s]\n merged %v\n   want %v", name, merged.Metrics[name], entry)
			}
		}
		t.Fatalf("merged metrics differ (%d entries, want %d)", len(merged.Metrics), len(want.Metrics))
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"thresholds", merged.Thresholds, want.Thresholds},
		{"steps", merged.Steps, want.Steps},
		{"checks", merged.Checks, want.Checks},
		{"histograms", merged.Histograms, want.Histograms},
		{"counts", merged.Counts, want.Counts},
		{"duration", merged.DurationSeconds, want.DurationSeconds},
		{"segments", merged.Segments, []string{"1/2", "2/2"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if !reflect.DeepEqual(test.got, test.want) {
				t.Errorf("merged %s\n got %+v\nwant %+v", test.name, test.got, test.want)
			}
		})
	}
	if want.Metrics["accept_duration"].Figures["count"] < 1000 {
		t.Errorf("the load recorded too few accept samples to test percentiles: %v", want.Metrics["accept_duration"])
	}
}

func TestMergeRefuses(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(first, second *Summary)
		problem string
	}{
		{"one segment twice", func(first, second *Summary) { second.Segment = first.Segment }, "given twice"},
		{"another scenario", func(_, second *Summary) { second.Scenario = "soak" }, "scenario"},
		{"another version", func(_, second *Summary) { second.Version = 2 }, "version"},
		{"a corrupt histogram", func(_, second *Summary) { second.Histograms[0].Histogram = "not base64!" }, "histogram"},
		{"a histogram that disagrees with its count", func(_, second *Summary) { second.Histograms[0].Count++ }, "holds"},
		{"an unknown metric", func(_, second *Summary) { second.Counts[0].Metric = "vus" }, "unknown metric"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			first, second := runSummary(t), runSummary(t)
			second.Segment = "2/2"
			test.edit(first, second)
			_, err := Merge([]*Summary{first, second}, nil)
			if err == nil || !strings.Contains(err.Error(), test.problem) {
				t.Errorf("Merge = %v, want an error with %q", err, test.problem)
			}
		})
	}
}

func TestPrometheusHandler(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	feedReference(recorder)
	response := httptest.NewRecorder()
	recorder.Handler().ServeHTTP(response, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ledgerproof_load_operations_total{kind="transfer",outcome="ok",step=""} 9`,
		`ledgerproof_load_errors_total{kind="transfer",step=""} 1`,
		`ledgerproof_load_errors_samples_total{kind="transfer",step=""} 10`,
		`ledgerproof_load_accept_duration_seconds_bucket{kind="transfer",step="",le="0.05"} 5`,
		`ledgerproof_load_accept_duration_seconds_count{kind="deposit",step=""} 2`,
		`ledgerproof_load_http_reqs_total{route="POST /transfers",status="503"} 1`,
		`ledgerproof_load_http_req_failed_total{route="POST /transfers"} 1`,
		`ledgerproof_load_iterations_total{step=""} 13`,
		`ledgerproof_load_checks_samples_total 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

// TestConcurrentRecording records from many goroutines while the readers run; `go test -race` checks it.
func TestConcurrentRecording(t *testing.T) {
	abortLatency := newThreshold(threshold.AcceptDuration, map[string]string{"kind": kindTransfer}, "p(95)", threshold.Less, 250)
	abortLatency.AbortOnFail = true
	recorder := NewRecorder(loadStart, []threshold.Threshold{abortLatency})
	const writers, perWriter = 8, 500
	var group sync.WaitGroup
	for writer := 0; writer < writers; writer++ {
		group.Add(1)
		go func() {
			defer group.Done()
			step := fmt.Sprintf("%d", 1000*(writer%2))
			for i := 0; i < perWriter; i++ {
				recorder.IterationStarted(step, at(1))
				recorder.Operation(Operation{Kind: kindTransfer, Outcome: outcomeOK, Step: step, Completed: at(1),
					Accepted: true, Accept: time.Duration(i) * time.Millisecond})
				recorder.HTTP("POST /transfers", 200, time.Millisecond, false, at(1))
				recorder.Check("balance", true)
			}
		}()
	}
	done := make(chan struct{})
	readersDone := make(chan struct{})
	go func() {
		defer close(readersDone)
		for second := 1; ; second++ {
			select {
			case <-done:
				return
			default:
			}
			now := at(float64(second))
			recorder.Progress(now)
			recorder.TakeSecond(now, 0)
			recorder.FailedAbortThresholds(now)
			recorder.Results(now)
			recorder.StepFigures("1000")
			recorder.Summary(RunInfo{}, now)
			recorder.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metrics", nil))
		}
	}()
	group.Wait()
	close(done)
	<-readersDone
	summary := recorder.Summary(RunInfo{}, at(100))
	if got := summary.Metrics["operations"].Figures["count"]; got != writers*perWriter {
		t.Errorf("operations = %v, want %d", got, writers*perWriter)
	}
}

// BenchmarkRecorderOperation is the hot path: one money operation, as thousands of goroutines record them.
func BenchmarkRecorderOperation(b *testing.B) {
	recorder := NewRecorder(loadStart, nil)
	operations := []Operation{
		{Kind: kindTransfer, Outcome: outcomeOK, Step: "1000", Completed: at(1), Accepted: true, Accept: 20 * time.Millisecond, Settled: true, Settle: 25 * time.Millisecond},
		{Kind: kindDeposit, Outcome: outcomeOK, Step: "1000", Completed: at(1), Accepted: true, Accept: 120 * time.Millisecond, Settled: true, Settle: 130 * time.Millisecond, Retries: 1},
		{Kind: kindWithdrawal, Outcome: outcomeFail, Reason: reasonInsufficientFunds, Step: "1000", Completed: at(1), Accepted: true, Accept: 5 * time.Millisecond, Settled: true, Settle: 5 * time.Millisecond},
		{Kind: kindTransfer, Outcome: outcomeInfo, Step: "1000", Completed: at(1)},
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			recorder.Operation(operations[i%len(operations)])
			i++
		}
	})
}

// TestTypesAgreeWithTheThresholdPackage keeps this package's metric types and aggregates in step with what
// threshold.Parse accepts: a parsed threshold must always be one the recorder can evaluate.
func TestTypesAgreeWithTheThresholdPackage(t *testing.T) {
	for metric := range threshold.Known {
		t.Run(metric, func(t *testing.T) {
			if got, want := typeOf(metric).String(), string(threshold.Types[metric]); got != want {
				t.Errorf("type = %s, threshold.Types says %s", got, want)
			}
			if got, want := aggregatesOf(typeOf(metric)), threshold.AggregatesOf(threshold.Types[metric]); !reflect.DeepEqual(got, want) {
				t.Errorf("aggregates = %v, threshold.AggregatesOf says %v", got, want)
			}
		})
	}
}

func TestParsedThresholdsEvaluate(t *testing.T) {
	tests := []struct {
		name, source, expression string
		observed                 float64
	}{
		{"percentile", "accept_duration{ kind : transfer }", "p( 95 ) < 250", 100},
		{"rate", "errors", "rate<0.01", 2.0 / 13},
		{"counter", "dropped_iterations", "count==0", 0},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			parsed, err := threshold.Parse(test.source, test.expression)
			if err != nil {
				t.Fatal(err)
			}
			recorder := NewRecorder(loadStart, []threshold.Threshold{parsed})
			feedReference(recorder)
			result := recorder.Results(at(10))[0]
			if result.Observed == nil || *result.Observed != test.observed {
				t.Errorf("observed = %v, want %v", result.Observed, test.observed)
			}
			summary := recorder.Summary(RunInfo{}, at(10))
			if _, ok := summary.Metrics[result.Metric].Thresholds[strings.TrimSpace(test.expression)]; !ok {
				t.Errorf("metrics[%s] has no threshold %q: %+v", result.Metric, test.expression, summary.Metrics[result.Metric])
			}
		})
	}
}

// The late starts of the open model: counted per row and over the run from LateStart on, with the latest;
// shorter delays are not counted, and a row's count does not leak into the next.
func TestLateStartsPerRowAndOverTheRun(t *testing.T) {
	recorder := NewRecorder(loadStart, nil)
	recorder.IterationLate(LateStart - time.Microsecond)
	recorder.IterationLate(0)
	recorder.IterationLate(LateStart)
	recorder.IterationLate(250 * time.Millisecond)
	recorder.IterationLate(40 * time.Millisecond)
	first := recorder.TakeSecond(at(1), 0)
	if first.Late != 3 || first.LateMaxMilliseconds != 250 {
		t.Errorf("first row: late %d, latest %.1f ms; want 3 and 250 ms", first.Late, first.LateMaxMilliseconds)
	}
	recorder.IterationLate(2 * time.Millisecond)
	second := recorder.TakeSecond(at(2), 0)
	if second.Late != 0 || second.LateMaxMilliseconds != 0 {
		t.Errorf("second row: late %d, latest %.1f ms; want none", second.Late, second.LateMaxMilliseconds)
	}
	recorder.IterationLate(15500 * time.Microsecond)
	third := recorder.TakeSecond(at(3), 0)
	if third.Late != 1 || third.LateMaxMilliseconds != 15.5 {
		t.Errorf("third row: late %d, latest %.1f ms; want 1 and 15.5 ms", third.Late, third.LateMaxMilliseconds)
	}
	if count, latest := recorder.LateStarts(); count != 4 || latest != 250*time.Millisecond {
		t.Errorf("over the run: %d late, latest %s; want 4 and 250ms", count, latest)
	}
}
