package generator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/history"
	"github.com/ledgerproof/ledgerproof/load/metrics"
)

// figure returns a figure of a metric of the summary (0 when absent).
func figure(summary *metrics.Summary, metric, name string) float64 {
	return summary.Metrics[metric].Figures[name]
}

// readSummary reads a summary file back, as the report and the run engine do.
func readSummary(t *testing.T, path string) *metrics.Summary {
	t.Helper()
	summary, err := metrics.ReadSummary(path)
	if err != nil {
		t.Fatalf("summary: %v", err)
	}
	return summary
}

// verdict returns the threshold verdict of a metric and expression.
func verdict(t *testing.T, summary *metrics.Summary, metric, expression string) metrics.Result {
	t.Helper()
	for _, result := range summary.Thresholds {
		if result.Metric == metric && result.Expression == expression {
			return result
		}
	}
	t.Fatalf("no verdict for %s %s in %+v", metric, expression, summary.Thresholds)
	return metrics.Result{}
}

// mixedScenario is a mixed load of rate per second for duration over 4 accounts, with extra YAML appended.
func mixedScenario(rate, duration, extra string) string {
	return `
name: engine-test
setup: {accounts: 4, funding: 100000, concurrency: 4, timeout: 20s}
schedule:
  executor: constant-arrival-rate
  rate: ` + rate + `
  duration: ` + duration + `
  graceful_stop: 2s
` + extra
}

func TestRunJournalsSetupAndLoadAndWritesTheSummary(t *testing.T) {
	t.Parallel()
	// Funding answered 202 and settled when polled: setup waits for it rather than giving up.
	fake, server := newFakeSystem(t, func(f *fakeSystem) { f.fundingAccepted = true })
	s := parseScenario(t, mixedScenario("20", "1s", `
thresholds:
  operations: ["count>0"]
`))
	result, output := runLoad(t, context.Background(), server, s, nil)
	if result.ExitCode != ExitPassed || result.Problem != "" {
		t.Fatalf("exit %d, problem %q; want a passed run", result.ExitCode, result.Problem)
	}
	runDir := filepath.Dir(result.JournalPath)
	if got, want := filesIn(t, runDir), []string{"journal.jsonl", "load-summary.json", "load-timeseries.jsonl"}; !slices.Equal(got, want) {
		t.Errorf("run directory holds %v, want %v", got, want)
	}

	setup, load := splitJournal(t, readJournal(t, result.JournalPath))
	prepared := map[int64]bool{}
	for _, entry := range setup {
		switch entry.Kind {
		case client.KindSignup:
			if entry.Outcome == client.OutcomeOK {
				prepared[entry.To] = true
			}
		case client.KindDeposit:
			if !strings.HasPrefix(entry.Key, fundingKeyPrefix) || entry.Amount != 100000 {
				t.Errorf("setup deposit %+v: want a funding deposit", entry)
			}
		default:
			t.Errorf("setup journaled a %s", entry.Kind)
		}
	}
	if len(prepared) != 4 {
		t.Errorf("setup journaled sign-ups of accounts %v, want 4", prepared)
	}

	summary := result.Summary
	started := int(figure(summary, "iterations", "count"))
	if dropped := figure(summary, "dropped_iterations", "count"); started+int(dropped) != 20 {
		t.Errorf("%d iterations started and %v dropped, want the schedule's 20", started, dropped)
	}
	if len(load) != started {
		t.Errorf("%d load operations journaled, %d iterations started: one money operation per iteration", len(load), started)
	}
	iterations := map[int64]bool{}
	for _, entry := range load {
		if iterations[entry.Iter] {
			t.Errorf("iteration %d journaled twice", entry.Iter)
		}
		iterations[entry.Iter] = true
		if entry.Iter >= 20 {
			t.Errorf("iteration %d beyond the schedule's 20", entry.Iter)
		}
		for _, account := range []int64{entry.From, entry.To} {
			if account != 0 && !prepared[account] {
				t.Errorf("load operation %+v on account %d, which setup did not prepare", entry, account)
			}
		}
		if entry.Key == "" || strings.HasPrefix(entry.Key, fundingKeyPrefix) || entry.Outcome == "" {
			t.Errorf("load operation %+v: want its own key and an outcome", entry)
		}
	}
	if got := fake.loadMoneyRequests(); got != len(load) {
		t.Errorf("the system got %d load money requests, the journal has %d", got, len(load))
	}

	// The file is what the report reads: the same verdicts, the seed, the operations.
	written := readSummary(t, result.SummaryPath)
	if !written.ThresholdsPassed || !verdict(t, written, "operations", "count>0").Passed || written.Seed != testSeed ||
		written.Aborted != "" || written.Segment != "" {
		t.Errorf("summary file: passed %v, seed %d, aborted %q, segment %q, verdicts %+v",
			written.ThresholdsPassed, written.Seed, written.Aborted, written.Segment, written.Thresholds)
	}
	if got := figure(written, "operations", "count"); int(got) != len(load) {
		t.Errorf("summary counts %v operations, the journal %d", got, len(load))
	}
	// Setup's requests are not the load's: the HTTP metrics count no sign-up.
	if figure(written, "http_reqs{route:POST /v1/users}", "count") != 0 {
		t.Errorf("setup's sign-ups counted in the load's metrics")
	}
	for metric := range written.Metrics {
		if strings.Contains(metric, "/v1/users") || strings.Contains(metric, "/v1/sessions") {
			t.Errorf("setup's requests counted in the load's metrics: %s", metric)
		}
	}

	lines := timeSeriesLines(t, result.TimeSeriesPath)
	if lines == 0 {
		t.Errorf("the time series is empty")
	}
	if text := output.String(); !strings.Contains(text, "seed 7 (replay with --set seed=7)") {
		t.Errorf("the output does not print the seed:\n%s", text)
	}
}

// timeSeriesLines checks that every line of the time series is a JSON object and counts them.
func timeSeriesLines(t *testing.T, path string) int {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("time series: %v", err)
	}
	defer file.Close()
	lines := 0
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		var second map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &second); err != nil {
			t.Errorf("time series line %q: %v", scanner.Text(), err)
		}
		lines++
	}
	return lines
}

func TestRunExitCodeFollowsTheThresholds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		thresholds string
		metric     string
		expression string
		exitCode   int
	}{
		{name: "accept p95 under a microsecond fails", thresholds: `accept_duration: ["p(95)<0.001"]`,
			metric: "accept_duration", expression: "p(95)<0.001", exitCode: ExitThresholdsFailed},
		{name: "accept p95 under a minute passes", thresholds: `accept_duration: ["p(95)<60000"]`,
			metric: "accept_duration", expression: "p(95)<60000", exitCode: ExitPassed},
		{name: "a tagged submetric fails", thresholds: `"operations{kind:deposit}": ["count==0"]`,
			metric: "operations{kind:deposit}", expression: "count==0", exitCode: ExitThresholdsFailed},
		{name: "no errors passes", thresholds: `errors: ["rate==0"]`,
			metric: "errors", expression: "rate==0", exitCode: ExitPassed},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			_, server := newFakeSystem(t, nil)
			s := parseScenario(t, mixedScenario("20", "1s", "workload:\n  mix: {deposit: 1, withdrawal: 0, transfer: 0}\nthresholds:\n  "+test.thresholds+"\n"))
			result, _ := runLoad(t, context.Background(), server, s, nil)
			if result.ExitCode != test.exitCode || result.Problem != "" {
				t.Errorf("exit %d (problem %q), want %d", result.ExitCode, result.Problem, test.exitCode)
			}
			written := readSummary(t, result.SummaryPath)
			got := verdict(t, written, test.metric, test.expression)
			if wantPassed := test.exitCode == ExitPassed; got.Passed != wantPassed || got.NotObserved || written.ThresholdsPassed != wantPassed {
				t.Errorf("verdict %+v, thresholds passed %v; want passed %v, observed", got, written.ThresholdsPassed, wantPassed)
			}
			// k6's shape: the metric's thresholds map says whether each expression was crossed.
			if crossed, ok := written.Metrics[test.metric].Thresholds[test.expression]; !ok || crossed == got.Passed {
				t.Errorf("metrics[%s].thresholds = %v, want %s crossed=%v", test.metric, written.Metrics[test.metric].Thresholds,
					test.expression, !got.Passed)
			}
		})
	}
}

func TestRunDropsIterationsThatCannotStart(t *testing.T) {
	t.Parallel()
	// The client's timeout (the scenario's client.timeout), and how long the
	// fake system holds each operation in the cases that end.
	const clientTimeout, hold = 9 * time.Second, 300 * time.Millisecond
	tests := []struct {
		name        string
		configure   func(*fakeSystem)
		maxInFlight int
		// started and dropped bound the iterations (of the 20 the schedule calls for).
		startedMin, startedMax, droppedMin, droppedMax int
		// cancelled is true when the operation in flight outlives the graceful stop.
		cancelled bool
		// waiting is how long the load would last at the least if it waited
		// for a slot, or for the operation in flight to time out, instead
		// of dropping and cancelling; 0 when nothing would wait.
		waiting time.Duration
	}{
		{name: "one slot held by an operation that never ends", configure: func(f *fakeSystem) { f.hangLoad = true },
			maxInFlight: 1, startedMin: 1, startedMax: 1, droppedMin: 19, droppedMax: 19, cancelled: true,
			waiting: clientTimeout},
		{name: "one slot, each operation held 6 intervals", configure: func(f *fakeSystem) { f.loadDelay = hold },
			maxInFlight: 1, startedMin: 1, startedMax: 5, droppedMin: 15, droppedMax: 19,
			waiting: 20 * hold}, // the 20 operations one after another
		{name: "room for every operation held", configure: func(f *fakeSystem) { f.loadDelay = hold },
			maxInFlight: 20, startedMin: 20, startedMax: 20, droppedMin: 0, droppedMax: 0},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			_, server := newFakeSystem(t, test.configure)
			// 20 per second for 1s, an interval of 50ms; after the schedule, 500ms to finish.
			s := parseScenario(t, `
name: drops
setup: {accounts: 4, funding: 100000, concurrency: 4, timeout: 20s}
schedule:
  executor: constant-arrival-rate
  rate: 20
  duration: 1s
  graceful_stop: 500ms
  max_in_flight: `+itoa(test.maxInFlight)+`
`+strings.Replace(fastClient, "timeout: 5s", "timeout: "+clientTimeout.String(), 1))
			result, _ := runLoad(t, context.Background(), server, s, nil)
			summary := result.Summary
			started, dropped := int(figure(summary, "iterations", "count")), int(figure(summary, "dropped_iterations", "count"))
			if started+dropped != 20 || started < test.startedMin || started > test.startedMax || dropped < test.droppedMin || dropped > test.droppedMax {
				t.Errorf("%d started, %d dropped; want 20 in all, %d to %d started, %d to %d dropped",
					started, dropped, test.startedMin, test.startedMax, test.droppedMin, test.droppedMax)
			}
			// Dropped, not delayed: the load ends with the schedule and its graceful stop (1.5s), where
			// iterations waiting for a slot would take 20 × 300ms, or the 9s timeout of the one that hangs.
			// The bound is what waiting would take, not a speed: a slow machine does not fail it.
			if test.waiting > 0 && summary.DurationSeconds >= test.waiting.Seconds() {
				t.Errorf("the load took %.1fs, as long as waiting would (%s): want it to end with the schedule and graceful stop",
					summary.DurationSeconds, test.waiting)
			}
			_, load := splitJournal(t, readJournal(t, result.JournalPath))
			if len(load) != started {
				t.Errorf("%d load operations journaled, %d started", len(load), started)
			}
			for _, entry := range load {
				wantOutcome := client.OutcomeOK
				if test.cancelled {
					// Cancelled after the graceful stop: its fate is unknown, and journaled as such.
					wantOutcome = client.OutcomeInfo
				}
				if entry.Outcome != wantOutcome && !(entry.Outcome == client.OutcomeFail && entry.Reason == "insufficient_funds") {
					t.Errorf("load operation %+v: want outcome %s", entry, wantOutcome)
				}
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestRunAborts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		extra  string
		rate   string
		length string
		// interruptAfter cancels the run's context at the system's n-th load money request (0: never).
		interruptAfter int
		// aborted is what the summary's reason must contain ("": not aborted); total the iterations the whole
		// schedule calls for.
		aborted  []string
		total    int
		exitCode int
	}{
		{name: "abort_on_fail threshold fails", rate: "20", length: "30s",
			extra: "thresholds:\n  operations:\n    - {threshold: \"count<5\", abort_on_fail: true}\n",
			// The threshold is checked every second: the load stops then, long before its 600 iterations.
			aborted: []string{"threshold operations: count<5 failed (abort_on_fail)"}, total: 600, exitCode: ExitThresholdsFailed},
		{name: "interrupted", rate: "20", length: "30s", interruptAfter: 5,
			// What an interrupted run's exit code should be is the command's business: not checked (-1).
			aborted: []string{"interrupted"}, total: 600, exitCode: -1},
		{name: "abort_on_fail threshold that holds", rate: "20", length: "1s",
			extra: "thresholds:\n  operations:\n    - {threshold: \"count<100000\", abort_on_fail: true}\n",
			total: 20, exitCode: ExitPassed},
		{name: "abort_on_fail threshold failing within its delay", rate: "20", length: "2s",
			extra: "thresholds:\n  operations:\n    - {threshold: \"count<5\", abort_on_fail: true, delay_abort_eval: 1h}\n",
			total: 40, exitCode: ExitThresholdsFailed},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			_, server := newFakeSystem(t, func(f *fakeSystem) {
				if test.interruptAfter > 0 {
					f.onLoadMoney = func(count int) {
						if count == test.interruptAfter {
							cancel()
						}
					}
				}
			})
			s := parseScenario(t, mixedScenario(test.rate, test.length, test.extra))
			result, _ := runLoad(t, ctx, server, s, nil)
			summary := readSummary(t, result.SummaryPath)
			if test.exitCode >= 0 && result.ExitCode != test.exitCode {
				t.Errorf("exit %d, want %d", result.ExitCode, test.exitCode)
			}
			started, dropped := int(figure(summary, "iterations", "count")), int(figure(summary, "dropped_iterations", "count"))
			if len(test.aborted) == 0 {
				if summary.Aborted != "" || started+dropped != test.total {
					t.Errorf("aborted %q after %d iterations; want the whole schedule's %d", summary.Aborted, started+dropped, test.total)
				}
				return
			}
			for _, want := range test.aborted {
				if !strings.Contains(summary.Aborted, want) {
					t.Errorf("aborted %q, want it to say %q", summary.Aborted, want)
				}
			}
			if started+dropped >= test.total/2 || started == 0 {
				t.Errorf("%d iterations started and %d dropped of %d: the load did not stop early", started, dropped, test.total)
			}
		})
	}
}

func TestRunThatCannotPrepareStartsNoLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(*fakeSystem)
		timeout   string
		// problem lists what the run's problem must say; refusedEmails adds the emails the system refused.
		problem       []string
		refusedEmails bool
	}{
		{name: "a sign-up refused", configure: func(f *fakeSystem) {
			f.refuseSignup = func(email string) bool { return strings.HasSuffix(email, "-2@ledgerproof.test") }
		}, timeout: "20s", problem: []string{"setup prepared 3 of 4 accounts", "sign-up refused", "invalid_email"}, refusedEmails: true},
		{name: "funding never settles", configure: func(f *fakeSystem) { f.fundingUnavailable = 1 << 30 },
			timeout: "2s", problem: []string{"setup prepared 0 of 4 accounts", "funding deposit", "not settled", "-3@ledgerproof.test"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			fake, server := newFakeSystem(t, test.configure)
			s := parseScenario(t, `
name: no-setup
setup: {accounts: 4, funding: 100000, concurrency: 4, timeout: `+test.timeout+`}
schedule: {executor: constant-arrival-rate, rate: 20, duration: 1s}
`)
			result, output := runLoad(t, context.Background(), server, s, nil)
			if result.ExitCode != ExitCouldNotRun || result.Summary != nil {
				t.Errorf("exit %d with a summary %v, want %d and none", result.ExitCode, result.Summary != nil, ExitCouldNotRun)
			}
			want := test.problem
			if test.refusedEmails {
				_, refused := fake.signedUp()
				if len(refused) == 0 {
					t.Fatalf("the system refused no sign-up: the test checks nothing")
				}
				want = append(want, refused...)
			}
			for _, part := range want {
				if !strings.Contains(result.Problem, part) {
					t.Errorf("problem %q does not say %q", result.Problem, part)
				}
			}
			if !strings.Contains(output.String(), "no load was started") {
				t.Errorf("the output does not say no load was started:\n%s", output.String())
			}
			setup, load := splitJournal(t, readJournal(t, result.JournalPath))
			if len(load) != 0 || fake.loadMoneyRequests() != 0 {
				t.Errorf("%d load operations journaled, %d sent: setup did not finish, no load may start", len(load), fake.loadMoneyRequests())
			}
			if len(setup) == 0 {
				t.Errorf("setup journaled nothing")
			}
			for _, name := range []string{"load-summary.json", "load-timeseries.jsonl"} {
				if _, err := os.Stat(filepath.Join(filepath.Dir(result.JournalPath), name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: %v; a run that could not run writes no summary nor time series", name, err)
				}
			}
		})
	}
}

func TestRunSegments(t *testing.T) {
	t.Parallel()
	const segments = 2
	runDir := t.TempDir()
	s := parseScenario(t, mixedScenario("20", "1s", ""))
	s.Setup.Accounts = 6
	results := make([]*Result, segments)
	fakes := make([]*fakeSystem, segments)
	var wait sync.WaitGroup
	for segment := range segments {
		fake, server := newFakeSystem(t, nil)
		fakes[segment] = fake
		wait.Add(1)
		go func() {
			defer wait.Done()
			result, err := Run(context.Background(), Config{Scenario: s, BaseURLs: []string{server.URL}, RunDir: runDir,
				Segment: segment, Segments: segments, Seed: testSeed})
			if err != nil {
				t.Errorf("segment %d: %v", segment, err)
				return
			}
			results[segment] = result
		}()
	}
	wait.Wait()
	if t.Failed() {
		return
	}
	want := []string{"journal-0.jsonl", "journal-1.jsonl", "load-summary-0.json", "load-summary-1.json",
		"load-timeseries-0.jsonl", "load-timeseries-1.jsonl"}
	if got := filesIn(t, runDir); !slices.Equal(got, want) {
		t.Errorf("run directory holds %v, want %v", got, want)
	}
	indexes := make([][]int, segments)
	for segment, result := range results {
		if result.ExitCode != ExitPassed {
			t.Errorf("segment %d: exit %d (%s)", segment, result.ExitCode, result.Problem)
		}
		signups, _ := fakes[segment].signedUp()
		for _, email := range signups {
			indexes[segment] = append(indexes[segment], emailIndex(t, email))
		}
		slices.Sort(indexes[segment])
		summary := readSummary(t, result.SummaryPath)
		if want := itoa(segment) + "/2"; summary.Segment != want {
			t.Errorf("segment %d's summary says segment %q, want %q", segment, summary.Segment, want)
		}
		// Each segment runs half of the 20 iterations.
		if started, dropped := figure(summary, "iterations", "count"), figure(summary, "dropped_iterations", "count"); started+dropped != 10 {
			t.Errorf("segment %d: %v started, %v dropped, want 10 in all", segment, started, dropped)
		}
		_, load := splitJournal(t, readJournal(t, result.JournalPath))
		if len(load) == 0 {
			t.Errorf("segment %d journaled no load", segment)
		}
	}
	// Disjoint shares of the 6 accounts: 0, 1, 2 and 3, 4, 5.
	if !slices.Equal(indexes[0], []int{0, 1, 2}) || !slices.Equal(indexes[1], []int{3, 4, 5}) {
		t.Errorf("segments prepared account indexes %v and %v, want [0 1 2] and [3 4 5]", indexes[0], indexes[1])
	}
}

func TestSegmentShare(t *testing.T) {
	tests := []struct {
		name                   string
		total, segments        int
		wantCounts, wantFirsts []int
	}{
		{name: "even", total: 6, segments: 2, wantCounts: []int{3, 3}, wantFirsts: []int{0, 3}},
		{name: "remainder to the first", total: 7, segments: 3, wantCounts: []int{3, 2, 2}, wantFirsts: []int{0, 3, 5}},
		{name: "one process", total: 5, segments: 1, wantCounts: []int{5}, wantFirsts: []int{0}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			next := 0
			for segment := range test.segments {
				count, first := segmentShare(test.total, segment, test.segments)
				if count != test.wantCounts[segment] || first != test.wantFirsts[segment] || first != next {
					t.Errorf("segment %d: %d from %d, want %d from %d (contiguous)", segment, count, first,
						test.wantCounts[segment], test.wantFirsts[segment])
				}
				next = first + count
			}
			if next != test.total {
				t.Errorf("segments cover %d of %d accounts", next, test.total)
			}
		})
	}
}

func TestFileName(t *testing.T) {
	tests := []struct {
		name              string
		segment, segments int
		want              string
	}{
		{name: "one process", segment: 0, segments: 1, want: "journal.jsonl"},
		{name: "segments unset", segment: 0, segments: 0, want: "journal.jsonl"},
		{name: "segment 1 of 3", segment: 1, segments: 3, want: "journal-1.jsonl"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := FileName(JournalBaseName, ".jsonl", test.segment, test.segments); got != test.want {
				t.Errorf("FileName = %q, want %q", got, test.want)
			}
		})
	}
}

func TestRunClosedModel(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	s := parseScenario(t, `
name: closed
setup: {accounts: 6, funding: 100000, concurrency: 4, timeout: 20s}
schedule: {executor: closed, vus: 3, iterations: 4, max_duration: 1m}
`)
	result, _ := runLoad(t, context.Background(), server, s, nil)
	if result.ExitCode != ExitPassed {
		t.Fatalf("exit %d (%s)", result.ExitCode, result.Problem)
	}
	if started, dropped := figure(result.Summary, "iterations", "count"), figure(result.Summary, "dropped_iterations", "count"); started != 12 || dropped != 0 {
		t.Errorf("%v iterations started, %v dropped; want 3 VUs × 4 = 12, none dropped", started, dropped)
	}
	_, load := splitJournal(t, readJournal(t, result.JournalPath))
	perVU := map[uint64]int{}
	var iterations []int64
	for _, entry := range load {
		perVU[entry.VU]++
		iterations = append(iterations, entry.Iter)
	}
	slices.Sort(iterations)
	if len(perVU) != 3 || perVU[1] != 4 || perVU[2] != 4 || perVU[3] != 4 {
		t.Errorf("operations per VU %v, want 4 for each of VUs 1, 2, 3", perVU)
	}
	if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(iterations, want) {
		t.Errorf("iterations journaled %v, want %v", iterations, want)
	}
}

func TestRunClosedModelStopsAtMaxDuration(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, func(f *fakeSystem) { f.loadDelay = 200 * time.Millisecond })
	// 1,000 iterations of 200ms each would take 200s: max_duration stops the loop.
	s := parseScenario(t, `
name: closed-bounded
setup: {accounts: 2, funding: 100000, concurrency: 2, timeout: 20s}
schedule: {executor: closed, vus: 1, iterations: 1000, max_duration: 1s}
`)
	result, _ := runLoad(t, context.Background(), server, s, nil)
	if started := figure(result.Summary, "iterations", "count"); started < 1 || started >= 100 {
		t.Errorf("%v iterations started, want max_duration to stop the loop early", started)
	}
}

func TestRunStartGate(t *testing.T) {
	t.Parallel()
	t.Run("the schedule starts when the gate says", func(t *testing.T) {
		t.Parallel()
		_, server := newFakeSystem(t, nil)
		var gateTime time.Time
		s := parseScenario(t, mixedScenario("10", "1s", ""))
		result, output := runLoad(t, context.Background(), server, s, func(c *Config) {
			c.StartGate = func(context.Context) (time.Time, error) {
				gateTime = time.Now().Add(300 * time.Millisecond)
				return gateTime, nil
			}
		})
		if result.ExitCode != ExitPassed || !result.Summary.StartedAt.Equal(gateTime) {
			t.Errorf("exit %d, load started at %s, want the gate's %s", result.ExitCode, result.Summary.StartedAt, gateTime)
		}
		if !strings.Contains(output.String(), "the schedule starts at") {
			t.Errorf("the output does not say when the schedule starts:\n%s", output.String())
		}
	})
	t.Run("a gate that fails starts no load", func(t *testing.T) {
		t.Parallel()
		fake, server := newFakeSystem(t, nil)
		s := parseScenario(t, mixedScenario("10", "1s", ""))
		result, _ := runLoad(t, context.Background(), server, s, func(c *Config) {
			c.StartGate = func(context.Context) (time.Time, error) { return time.Time{}, errors.New("the others never came") }
		})
		if result.ExitCode != ExitCouldNotRun || result.Problem != "start: the others never came" || fake.loadMoneyRequests() != 0 {
			t.Errorf("exit %d, problem %q, %d load requests; want %d, the gate's error, none", result.ExitCode, result.Problem,
				fake.loadMoneyRequests(), ExitCouldNotRun)
		}
	})
}

// A schedule that starts in the past makes its first iterations late: the time series counts them, and the
// end of the run says how many and how late. A start gate is the one way to put the start in the past.
func TestRunCountsLateStarts(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	s := parseScenario(t, mixedScenario("10", "1s", ""))
	result, output := runLoad(t, context.Background(), server, s, func(c *Config) {
		c.StartGate = func(context.Context) (time.Time, error) { return time.Now().Add(-350 * time.Millisecond), nil }
	})
	if result.ExitCode != ExitPassed {
		t.Fatalf("exit %d, want %d:\n%s", result.ExitCode, ExitPassed, output.String())
	}
	// Iterations are due every 100 ms, the first 100 ms after the start: the three due at 100, 200 and 300 ms were
	// due before the run began, the first of them 250 ms before.
	line := regexp.MustCompile(`load: (\d+) iterations started ` + regexp.QuoteMeta(metrics.LateStart.String()) +
		` or more after their due time \(the latest ([0-9.]+) ms\)`).FindStringSubmatch(output.String())
	if line == nil {
		t.Fatalf("no late-start line in the output:\n%s", output.String())
	}
	count, _ := strconv.Atoi(line[1])
	latest, _ := strconv.ParseFloat(line[2], 64)
	if count < 3 || latest < 240 {
		t.Errorf("%d late starts, the latest %.1f ms; want at least 3, the latest at least 240 ms", count, latest)
	}
	file, err := os.Open(result.TimeSeriesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var rowsLate int
	for scanner := bufio.NewScanner(file); scanner.Scan(); {
		var row struct {
			Late int `json:"late"`
		}
		if err := json.Unmarshal(scanner.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		rowsLate += row.Late
	}
	if rowsLate != count {
		t.Errorf("the time series counts %d late starts, the end of the run %d", rowsLate, count)
	}
}

func TestRunRefusesAConfigurationThatCannotStart(t *testing.T) {
	s := parseScenario(t, mixedScenario("10", "1s", ""))
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{name: "no scenario", change: func(c *Config) { c.Scenario = nil }, want: "a scenario, base URLs and a run directory"},
		{name: "no base URL", change: func(c *Config) { c.BaseURLs = nil }, want: "a scenario, base URLs and a run directory"},
		{name: "no run directory", change: func(c *Config) { c.RunDir = "" }, want: "a scenario, base URLs and a run directory"},
		{name: "segment beyond the segments", change: func(c *Config) { c.Segment, c.Segments = 2, 2 }, want: "segment 2/2"},
		{name: "negative segment", change: func(c *Config) { c.Segment, c.Segments = -1, 2 }, want: "segment -1/2"},
		{name: "segments with fewer than 2 accounts", change: func(c *Config) { c.Segment, c.Segments = 2, 3 }, want: "gets 1 of the 4 accounts"},
		{name: "a base URL that is not one", change: func(c *Config) { c.BaseURLs = []string{"ftp://example"} }, want: "not an http(s) URL"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := Config{Scenario: s, BaseURLs: []string{"http://127.0.0.1:1"}, RunDir: t.TempDir(), Seed: testSeed}
			test.change(&config)
			result, err := Run(context.Background(), config)
			if err == nil || !strings.Contains(err.Error(), test.want) || result != nil {
				t.Errorf("Run: %v (result %v), want an error containing %q", err, result, test.want)
			}
		})
	}
}

func TestRunServesMetrics(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	s := parseScenario(t, mixedScenario("10", "1s", ""))
	result, output := runLoad(t, context.Background(), server, s, func(c *Config) { c.MetricsAddress = "127.0.0.1:0" })
	if result.ExitCode != ExitPassed || !strings.Contains(output.String(), "Prometheus metrics at http://127.0.0.1:") {
		t.Errorf("exit %d; output:\n%s\nwant the metrics address", result.ExitCode, output.String())
	}
}

// TestRunWritesACPUProfileOfTheSchedule: Config.CPUProfile (--cpu-profile) leaves a profile go tool pprof reads (gzip-compressed
// protocol buffers), and a file that cannot be created stops the load with the flag named, before its setup.
func TestRunWritesACPUProfileOfTheSchedule(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	s := parseScenario(t, mixedScenario("10", "1s", ""))
	path := filepath.Join(t.TempDir(), "load.cpu.pprof")
	result, output := runLoad(t, context.Background(), server, s, func(c *Config) { c.CPUProfile = path })
	if result.ExitCode != ExitPassed || !strings.Contains(output.String(), "CPU profile of the schedule in "+path) {
		t.Fatalf("exit %d; output:\n%s\nwant the profile's path", result.ExitCode, output.String())
	}
	profile, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(profile) < 2 || profile[0] != 0x1f || profile[1] != 0x8b {
		t.Errorf("the profile (%d bytes) is not gzip-compressed as pprof writes it", len(profile))
	}

	system, server := newFakeSystem(t, nil)
	_, err = Run(context.Background(), Config{Scenario: s, BaseURLs: []string{server.URL}, RunDir: t.TempDir(), Seed: testSeed,
		CPUProfile: filepath.Join(t.TempDir(), "missing", "x.pprof")})
	if err == nil || !strings.Contains(err.Error(), "--cpu-profile") {
		t.Errorf("an uncreatable profile: %v, want an error naming --cpu-profile", err)
	}
	if len(system.users) != 0 {
		t.Errorf("an uncreatable profile: setup signed up %d users; want none", len(system.users))
	}
}

func TestRunCapacityStepsReportEachStep(t *testing.T) {
	t.Parallel()
	_, server := newFakeSystem(t, nil)
	// Step 10/s: a 400ms ramp (2 iterations) and an 800ms hold (8); a 200ms gap; step 20/s: a ramp from 10/s
	// (6) and a hold (16).
	s := parseScenario(t, `
name: steps
setup: {accounts: 4, funding: 100000, concurrency: 4, timeout: 20s}
schedule: {executor: capacity-steps, steps: [10, 20], step_ramp: 400ms, step_hold: 800ms, step_gap: 200ms, graceful_stop: 2s}
`)
	result, _ := runLoad(t, context.Background(), server, s, nil)
	if result.ExitCode != ExitPassed {
		t.Fatalf("exit %d (%s)", result.ExitCode, result.Problem)
	}
	steps := readSummary(t, result.SummaryPath).Steps
	if len(steps) != 2 {
		t.Fatalf("steps %+v, want 10 and 20", steps)
	}
	for i, want := range []struct {
		label string
		total int64
	}{{"10", 10}, {"20", 22}} {
		step := steps[i]
		if step.Step != want.label || step.Started+step.Dropped != want.total || step.Window != "hold" {
			t.Errorf("step %d: %s, %d started, %d dropped, window %q; want %s with %d iterations judged on its hold",
				i, step.Step, step.Started, step.Dropped, step.Window, want.label, want.total)
		}
		if step.WindowEnd.Sub(step.WindowStart) != 800*time.Millisecond {
			t.Errorf("step %s's window %s to %s, want the 800ms hold", step.Step, step.WindowStart, step.WindowEnd)
		}
	}
}

// TestRunEdgesReplaysAndEarlyTimeouts runs the gate's kinds of operations against the fake system, which
// rejects debits above the balance: the journal says what was aimed at (intent) and what was replayed
// (replay_of), and the system's answers agree with the aims. Twenty accounts at 100/s: each account's
// operations are 200 ms apart, so none overlaps the next (a deposit that starts while an edge debit of its
// account is in flight may land first: an aim is not a promise, docs/scenarios.md).
func TestRunEdgesReplaysAndEarlyTimeouts(t *testing.T) {
	t.Parallel()
	fake, server := newFakeSystem(t, nil)
	s := parseScenario(t, `
name: engine-test
setup: {accounts: 20, funding: 3000, concurrency: 4, timeout: 20s}
schedule: {executor: constant-arrival-rate, rate: 100, duration: 2s, graceful_stop: 2s}
workload: {overdraft_rate: 0.3, drain_rate: 0.1, minimum_rate: 0.1, pair_rate: 0.5, race_rate: 0.5}
client:
  wait: 0s
  timeout: 5s
  poll_interval: 5ms
  poll_for: 2s
  retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}
  early_timeouts: {rate: 0.3, max: 1ms}
  replays: {rate: 0.3, after: 300ms}
`)
	result, _ := runLoad(t, context.Background(), server, s, nil)
	if result.ExitCode != ExitPassed {
		t.Fatalf("exit %d (%s)", result.ExitCode, result.Problem)
	}
	_, load := splitJournal(t, readJournal(t, result.JournalPath))
	byOp := map[string]int{}
	for i, entry := range load {
		byOp[entry.Op] = i
	}
	intents := map[string]int{}
	replays, early := 0, 0
	type race struct{ entries []history.Entry }
	races := map[string]race{}
	rivalIterations := map[string]bool{}
	for _, entry := range load {
		if entry.Intent == IntentRival {
			rivalIterations[fmt.Sprintf("%d/%d", entry.VU, entry.Iter)] = true
		}
	}
	for _, entry := range load {
		if entry.ReplayOf != "" {
			replays++
			first, found := byOp[entry.ReplayOf]
			if !found {
				t.Errorf("replay %+v of an op the journal does not have", entry)
				continue
			}
			original := load[first]
			if entry.Key != original.Key || entry.Kind != original.Kind || entry.Amount != original.Amount || entry.From != original.From ||
				entry.To != original.To || entry.Outcome != original.Outcome || entry.Reason != original.Reason || entry.Intent != "" {
				t.Errorf("replay %+v of %+v: want the same key, kind and body, the same outcome, no intent", entry, original)
			}
			if entry.Invoke < original.Complete+300_000 {
				t.Errorf("replay %+v invoked %d µs after its original completed, want at least 300 ms", entry, entry.Invoke-original.Complete)
			}
			continue
		}
		intents[entry.Intent]++
		if len(entry.Statuses) > 1 && entry.Statuses[0] == 0 {
			early++
		}
		iteration := fmt.Sprintf("%d/%d", entry.VU, entry.Iter)
		switch {
		case entry.Intent == IntentOverBalance && (entry.Outcome != client.OutcomeFail || entry.Reason != "insufficient_funds"):
			t.Errorf("over-balance %+v: want fail, insufficient_funds", entry)
		case entry.Intent == IntentRival || entry.Intent == IntentWholeBalance && rivalIterations[iteration]:
			// Of a whole-balance debit and its rival, one settles and the other is rejected: checked below.
			race := races[iteration]
			race.entries = append(race.entries, entry)
			races[iteration] = race
		case entry.Intent != IntentOverBalance && entry.Outcome != client.OutcomeOK:
			t.Errorf("%+v: want ok, only over-balance debits may be refused", entry)
		}
	}
	if intents[IntentOverBalance] == 0 || intents[IntentMinimum] == 0 || intents[IntentRival] == 0 || replays == 0 || early == 0 {
		t.Errorf("intents %v, %d replays, %d first attempts given up: want every kind", intents, replays, early)
	}
	for iteration, race := range races {
		outcomes := map[string]int{}
		for _, entry := range race.entries {
			outcomes[entry.Outcome+" "+entry.Reason]++
		}
		if len(race.entries) != 2 || race.entries[0].From != race.entries[1].From || race.entries[0].Amount != race.entries[1].Amount ||
			outcomes["ok "] != 1 || outcomes["fail insufficient_funds"] != 1 {
			t.Errorf("race of iteration %s: %+v; want a whole-balance debit and its rival of the same account and amount, one settled, one rejected",
				iteration, race.entries)
		}
	}
	// The beliefs never let the generator debit more than an account held, except on purpose: the fake's
	// balances are never negative, and the system holds what was funded and deposited, less what was withdrawn.
	for _, entry := range load {
		for _, account := range []int64{entry.From, entry.To} {
			if account != 0 && fake.balanceOf(account) < 0 {
				t.Errorf("account %d ends at %d", account, fake.balanceOf(account))
			}
		}
	}
}
