package reports

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// slowDown rewrites a run's journal so every operation took factor times
// as long (complete = invoke + factor × latency), keeping every other field.
func slowDown(t *testing.T, runDir string, factor int64) {
	t.Helper()
	path := filepath.Join(runDir, "journal.jsonl")
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	scanner := bufio.NewScanner(strings.NewReader(string(content)))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		var invoke, complete int64
		if err := json.Unmarshal(line["invoke"], &invoke); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(line["complete"], &complete); err != nil {
			t.Fatal(err)
		}
		line["complete"], _ = json.Marshal(invoke + factor*(complete-invoke))
		encoded, err := json.Marshal(line)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(encoded)
		out.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCompare(t *testing.T) {
	tenPercent := 10.0
	slower := copyRun(t, t.TempDir())
	slowDown(t, slower, 2)
	violated := copyRun(t, t.TempDir())
	violate(t, violated)

	tests := []struct {
		name            string
		candidate       string
		wantRegressed   bool
		wantViolations  bool
		wantRegressions []string
	}{
		{name: "identical runs", candidate: recordedRun},
		{name: "twice the latency", candidate: slower, wantRegressed: true, wantRegressions: []string{"latency p95 rose"}},
		{name: "violations in the candidate", candidate: violated, wantRegressed: true, wantViolations: true, wantRegressions: []string{"exactly-once (1)"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			comparison, err := Compare(recordedRun, test.candidate, CompareOptions{MaxRegressionPercent: &tenPercent})
			if err != nil {
				t.Fatal(err)
			}
			if comparison.Regressed != test.wantRegressed {
				t.Errorf("regressed = %v, want %v: %v\n%s", comparison.Regressed, test.wantRegressed, comparison.Regressions, comparison.Text())
			}
			if (comparison.CandidateViolations > 0) != test.wantViolations {
				t.Errorf("candidate violations = %d, want violations: %v", comparison.CandidateViolations, test.wantViolations)
			}
			joined := strings.Join(comparison.Regressions, "\n")
			for _, want := range test.wantRegressions {
				if !strings.Contains(joined, want) {
					t.Errorf("regressions %q do not mention %q", joined, want)
				}
			}
			for _, metric := range comparison.Metrics {
				if test.candidate == recordedRun && (metric.Delta != 0 || metric.Regressed) {
					t.Errorf("identical runs differ in %s: %+v", metric.Name, metric)
				}
			}
			// Every rendering names the verdict line and the p95 row.
			for format, text := range map[string]string{"text": comparison.Text(), "markdown": comparison.Markdown()} {
				if !strings.Contains(text, "latency p95") {
					t.Errorf("%s rendering has no p95 row:\n%s", format, text)
				}
			}
			content, err := comparison.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var decoded Comparison
			if err := json.Unmarshal(content, &decoded); err != nil {
				t.Fatalf("comparison JSON does not decode: %v", err)
			}
			if decoded.Regressed != comparison.Regressed {
				t.Error("the JSON loses the regression")
			}
		})
	}
}

func TestCompareWithoutLimitOnlyReportsPerformance(t *testing.T) {
	slower := copyRun(t, t.TempDir())
	slowDown(t, slower, 2)
	comparison, err := Compare(recordedRun, slower, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if comparison.Regressed {
		t.Errorf("without --max-regression slower latency is shown, not judged: %v", comparison.Regressions)
	}
	for _, metric := range comparison.Metrics {
		if metric.Name == "latency p95" && (metric.DeltaPercent == nil || *metric.DeltaPercent < 50) {
			t.Errorf("p95 delta %v, want about +100 %%", metric.DeltaPercent)
		}
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		text string
		want float64
		ok   bool
	}{{"10%", 10, true}, {"10", 10, true}, {" 2.5 % ", 2.5, true}, {"-5%", 0, false}, {"ten", 0, false}, {"", 0, false}}
	for _, test := range tests {
		got, err := ParsePercent(test.text)
		if (err == nil) != test.ok || got != test.want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v, ok %v", test.text, got, err, test.want, test.ok)
		}
	}
}
