package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// rewriteLoadSummary applies change to the run's load-summary.json as
// generic JSON.
func rewriteLoadSummary(t *testing.T, runDir string, change func(summary map[string]any)) {
	t.Helper()
	path := filepath.Join(runDir, LoadSummaryFile)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var summary map[string]any
	if err := json.Unmarshal(content, &summary); err != nil {
		t.Fatal(err)
	}
	change(summary)
	if content, err = json.Marshal(summary); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNotExercisedThresholdIsNeverShownAsPassed(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	summary, err := Generate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var notExercised []Threshold
	for _, threshold := range summary.Thresholds {
		if threshold.NotObserved {
			notExercised = append(notExercised, threshold)
		}
	}
	if len(notExercised) != 1 || notExercised[0].Name() != "checks: rate==1" || notExercised[0].Observed != nil {
		t.Fatalf("not exercised thresholds = %+v, want checks: rate==1 without an observed figure", notExercised)
	}
	if !strings.Contains(strings.Join(summary.Reasons, "\n"), "1 threshold(s) not exercised (their metric had no samples): checks: rate==1") {
		t.Errorf("the reasons do not say the threshold was not exercised: %q", summary.Reasons)
	}

	page, err := os.ReadFile(filepath.Join(runDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `data-threshold="checks: rate==1" data-result="not-exercised"`) {
		t.Error("index.html does not show checks: rate==1 as not exercised")
	}
	if strings.Contains(string(page), `data-threshold="checks: rate==1" data-result="passed"`) {
		t.Error("index.html shows a threshold with no samples as passed")
	}
	for _, test := range parseJUnit(t, runDir).Suites[0].Cases {
		if test.Name == "checks: rate==1" && (test.Skipped == nil || test.Failure != nil) {
			t.Errorf("junit: the threshold with no samples is not skipped: %+v", test)
		}
	}
}

func TestOnlyNotExercisedThresholdsDoNotFailTheRun(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	rewriteLoadSummary(t, runDir, func(summary map[string]any) {
		var kept []any
		for _, threshold := range summary["thresholds"].([]any) {
			if threshold.(map[string]any)["not_observed"] == true {
				kept = append(kept, threshold)
			}
		}
		summary["thresholds"] = kept
		summary["thresholds_passed"] = true
	})
	// run.json's verdict would raise the report's; this run has none.
	if err := os.Remove(filepath.Join(runDir, RunFile)); err != nil {
		t.Fatal(err)
	}
	summary, err := Analyze(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if summary.Verdict != VerdictPassed {
		t.Errorf("verdict %s, want passed: a threshold with no samples did not fail (reasons %q)", summary.Verdict, summary.Reasons)
	}
	for _, reason := range summary.Reasons {
		if strings.Contains(reason, "held") && !strings.Contains(reason, "invariants held") {
			t.Errorf("a threshold that was not exercised is said to have held: %q", reason)
		}
	}
}

func TestThresholdsFromTheMetricsMapMatchTheList(t *testing.T) {
	fromList, err := Analyze(recordedRun)
	if err != nil {
		t.Fatal(err)
	}
	runDir := copyRun(t, t.TempDir())
	rewriteLoadSummary(t, runDir, func(summary map[string]any) { delete(summary, "thresholds") })
	fromMap, err := Analyze(runDir)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(list []Threshold) []Threshold {
		sorted := append([]Threshold(nil), list...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name() < sorted[j].Name() })
		return sorted
	}
	want, got := byName(fromList.Thresholds), byName(fromMap.Thresholds)
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("thresholds from the metrics map:\n%s\nfrom the list:\n%s", describeThresholds(got), describeThresholds(want))
	}
	if fromMap.Verdict != fromList.Verdict {
		t.Errorf("verdict %s from the map, %s from the list", fromMap.Verdict, fromList.Verdict)
	}
}

func describeThresholds(list []Threshold) string {
	var lines []string
	for _, threshold := range list {
		observed := "nil"
		if threshold.Observed != nil {
			observed = formatNumber(*threshold.Observed)
		}
		lines = append(lines, threshold.Name()+" passed="+formatBool(threshold.Passed)+" not_observed="+
			formatBool(threshold.NotObserved)+" observed="+observed)
	}
	return strings.Join(lines, "\n")
}

func formatBool(value bool) string {
	if value {
		return "true"
	}
	return "false"
}

func TestReadLoadHeader(t *testing.T) {
	command := "$ /work/bin/ledgerproof load --scenario scenarios/gate.yaml --seed 42 --set schedule.rate=200"
	scenario := "load: scenario gate (scenarios/gate.yaml), seed 42 (replay with --set seed=42), segment 1/1, 100 accounts, journal /run/journal.jsonl"
	schedule := "load: constant-arrival-rate, 12000 iterations over 1m0s, at most 2000 in flight"
	tests := []struct {
		name string
		log  []string
		want []string
	}{
		{"up to the schedule, setup progress skipped",
			[]string{command, scenario, "[setup     2s] 40/100 accounts signed up, signed in and funded",
				"[setup     3s] 100/100 accounts signed up, signed in and funded", "load: setup took 3.2s; the schedule starts at 07:01:03.000",
				schedule, "load: aborting: accept_duration: p(95)<250", "load: summary /run/load-summary.json"},
			[]string{command, scenario, "load: setup took 3.2s; the schedule starts at 07:01:03.000", schedule}},
		{"a closed model",
			[]string{command, scenario, "load: closed model, 1 VUs x 3 iterations (at most 2m0s)", "load: summary /run/load-summary.json"},
			[]string{command, scenario, "load: closed model, 1 VUs x 3 iterations (at most 2m0s)"}},
		{"setup that did not finish",
			[]string{command, scenario, "[setup  5m0s] 12/100 accounts signed up, signed in and funded",
				"load: setup prepared 12 of 100 accounts; missing:", "  load-gate-1@example.com: timeout",
				"load: setup did not finish within 5m0s (setup.timeout): no load was started (exit 2)",
				"ledgerproof load: setup prepared 12 of 100 accounts; missing:"},
			[]string{command, scenario, "load: setup prepared 12 of 100 accounts; missing:", "  load-gate-1@example.com: timeout",
				"load: setup did not finish within 5m0s (setup.timeout): no load was started (exit 2)"}},
		{"the running load ends it even without a schedule line",
			[]string{command, scenario, "[load     2s] 400 iterations completed  in flight 3", "load: time series: disk full"},
			[]string{command, scenario}},
		{"no header", []string{"something else", command}, nil},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LoadLogFile)
			if err := os.WriteFile(path, []byte(strings.Join(test.log, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readLoadHeader(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, test.want) {
				t.Errorf("header:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(test.want, "\n"))
			}
		})
	}
}

func TestLoadLogsOfSeveralGenerators(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	if err := os.Remove(filepath.Join(runDir, LoadLogFile)); err != nil {
		t.Fatal(err)
	}
	for _, segment := range []string{"10", "0", "1"} {
		log := "$ ledgerproof load --scenario scenarios/gate.yaml --segment " + segment + "/11\n" +
			"load: scenario gate (scenarios/gate.yaml), seed 42 (replay with --set seed=42), segment " + segment + "/11\n" +
			"load: constant-arrival-rate, 100 iterations over 10s, at most 50 in flight\n"
		if err := os.WriteFile(filepath.Join(runDir, "load-"+segment+".log"), []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not a generator's log.
	if err := os.WriteFile(filepath.Join(runDir, "load-x.log"), []byte("load: not this one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := readInputs(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, header := range in.loadHeaders {
		files = append(files, header.File)
		if len(header.Lines) != 3 {
			t.Errorf("%s: header %q, want its 3 lines", header.File, header.Lines)
		}
	}
	if want := []string{"load-0.log", "load-1.log", "load-10.log"}; !reflect.DeepEqual(files, want) {
		t.Errorf("load logs read %q, want %q", files, want)
	}
	if want := "read (load-0.log, load-1.log, load-10.log)"; in.status[LoadLogFile] != want {
		t.Errorf("status %q, want %q", in.status[LoadLogFile], want)
	}
}

func TestReplayCommand(t *testing.T) {
	a, err := analyze(recordedRun)
	if err != nil {
		t.Fatal(err)
	}
	want := "bin/ledgerproof run --scenario scenarios/gate.yaml --seed 42 --set schedule.rate=40 --set schedule.duration=45s " +
		"--set setup.accounts=40 --plan 'recorded (kill broker 8s→11s, Postgres 18s→22s, worker-0 28s→32s)'"
	if got := a.replayCommand(); got != want {
		t.Errorf("replay:\n%s\nwant:\n%s", got, want)
	}
	page, err := a.html()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "bin/ledgerproof run --scenario scenarios/gate.yaml --seed 42 --set schedule.rate=40") {
		t.Error("index.html does not show the replay command")
	}
	if !strings.Contains(string(page), "load: constant-arrival-rate, 1800 iterations over 45s, at most 400 in flight") {
		t.Error("index.html does not show the load's schedule from load.log")
	}

	// A run.json with its replay section: the run's own flags and seed.
	runDir := copyRun(t, t.TempDir())
	var record map[string]any
	content, err := os.ReadFile(filepath.Join(runDir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(content, &record); err != nil {
		t.Fatal(err)
	}
	record["replay"] = map[string]any{"args": []string{"--scenario=scenarios/gate.yaml", "--seeded-bug=no-idempotency", "--unsafe-allow-seeded-bugs=true", "--set=thresholds.errors=rate<0.1", "--seed=7"}}
	if content, err = json.Marshal(record); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runDir, RunFile), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err = analyze(runDir); err != nil {
		t.Fatal(err)
	}
	if got, want := a.replayCommand(), "bin/ledgerproof run --scenario=scenarios/gate.yaml --seeded-bug=no-idempotency --unsafe-allow-seeded-bugs=true '--set=thresholds.errors=rate<0.1' --seed=7"; got != want {
		t.Errorf("replay from run.json's replay section:\n%s\nwant:\n%s", got, want)
	}

	// Without run.json the load summary still says the scenario and seed.
	runDir = copyRun(t, t.TempDir())
	if err := os.Remove(filepath.Join(runDir, RunFile)); err != nil {
		t.Fatal(err)
	}
	if a, err = analyze(runDir); err != nil {
		t.Fatal(err)
	}
	if got, want := a.replayCommand(), "bin/ledgerproof run --scenario scenarios/gate.yaml --seed 42"; got != want {
		t.Errorf("replay without run.json: %q, want %q", got, want)
	}
}

func TestTrendsWithSubmetrics(t *testing.T) {
	figures := map[string]json.RawMessage{"count": json.RawMessage("3"), "med": json.RawMessage("9.5"), "p(95)": json.RawMessage("20")}
	summary := &loadSummary{Metrics: map[string]map[string]json.RawMessage{
		"http_req_duration":                   figures,
		"settle_duration":                     figures,
		"accept_duration{kind:transfer}":      figures,
		"accept_duration":                     figures,
		"accept_duration{kind:deposit}":       figures,
		"accept_durationless":                 figures,
		"iterations":                          {"count": json.RawMessage("3")},
		"http_req_duration{route:/transfers}": figures,
	}}
	var got []string
	for _, trend := range summary.trends() {
		got = append(got, trend.Metric)
		if trend.P95 == nil || *trend.P95 != 20 || trend.P99 != nil {
			t.Errorf("%s: p95 %v p99 %v, want 20 and none", trend.Metric, trend.P95, trend.P99)
		}
	}
	want := []string{"accept_duration", "accept_duration{kind:deposit}", "accept_duration{kind:transfer}", "settle_duration",
		"http_req_duration", "http_req_duration{route:/transfers}"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("trends %q, want %q", got, want)
	}
}

func TestJudgeWithoutLoadSummary(t *testing.T) {
	passed := false
	a := &analysis{in: &inputs{status: map[string]string{}, audit: &invariants.Result{Verdict: invariants.VerdictPassed},
		run: &runInfo{ThresholdsPassed: &passed}}}
	verdict, reasons := a.judge(nil)
	if verdict != VerdictThresholdFailed {
		t.Errorf("verdict %s, want threshold-failed when run.json says thresholds failed (reasons %q)", verdict, reasons)
	}
}
