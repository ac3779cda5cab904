package runner

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) {
	// The export command of the tests against sut/testsystem is this test
	// binary again: it asks the running system to write its export.
	if url := os.Getenv(exportTriggerVariable); url != "" {
		response, err := http.Post(url, "text/plain", nil)
		if err == nil && response.StatusCode != http.StatusNoContent {
			err = fmt.Errorf("%s answered %s", url, response.Status)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "export:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	stacktest.Main(m)
}

// exportTriggerVariable makes the test binary an export command.
const exportTriggerVariable = "LEDGERPROOF_TEST_EXPORT_URL"

func TestJudge(t *testing.T) {
	cases := []struct {
		name         string
		audit        string
		loadExit     int
		otherProblem bool
		want         string
	}{
		{"clean", invariants.VerdictPassed, 0, false, VerdictPassed},
		{"thresholds crossed", invariants.VerdictPassed, 99, false, VerdictThresholdFailed},
		{"violation wins over thresholds", invariants.VerdictViolated, 99, false, VerdictInvariantViolated},
		{"violation wins over a broken run", invariants.VerdictViolated, -1, true, VerdictInvariantViolated},
		{"audit incomplete", invariants.VerdictIncomplete, 0, false, VerdictCouldNotRun},
		{"audit did not run", "", 0, false, VerdictCouldNotRun},
		{"load crashed", invariants.VerdictPassed, 107, false, VerdictCouldNotRun},
		{"interrupted or a fault failed", invariants.VerdictPassed, 0, true, VerdictCouldNotRun},
		{"weak audit", invariants.VerdictWeak, 0, false, VerdictWeak},
		{"weak wins over thresholds", invariants.VerdictWeak, 99, false, VerdictWeak},
		{"a broken run wins over weak", invariants.VerdictWeak, 0, true, VerdictCouldNotRun},
		{"a crashed load wins over weak", invariants.VerdictWeak, 2, false, VerdictCouldNotRun},
		{"violation wins over weak", invariants.VerdictViolated, 0, false, VerdictInvariantViolated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Judge(c.audit, c.loadExit, c.otherProblem)
			if got != c.want {
				t.Fatalf("Judge(%q, %d, %v) = %s, want %s", c.audit, c.loadExit, c.otherProblem, got, c.want)
			}
		})
	}
	for verdict, code := range map[string]int{VerdictPassed: 0, VerdictInvariantViolated: 1, VerdictCouldNotRun: 2, VerdictThresholdFailed: 3, VerdictWeak: 4} {
		if ExitCode(verdict) != code {
			t.Errorf("ExitCode(%s) = %d, want %d (docs/run-directory.md)", verdict, ExitCode(verdict), code)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP ledger_worker_commands_total Commands.
# TYPE ledger_worker_commands_total counter
ledger_worker_commands_total{result="settled"} 1234
ledger_worker_commands_total{result="rejected"} 5
# TYPE ledger_worker_consumer_lag_records gauge
ledger_worker_consumer_lag_records 12
# TYPE ledger_gateway_request_seconds histogram
ledger_gateway_request_seconds_bucket{route="deposit",le="0.1"} 3
ledger_gateway_request_seconds_bucket{route="deposit",le="+Inf"} 4
ledger_gateway_request_seconds_sum{route="deposit"} 0.5
ledger_gateway_request_seconds_count{route="deposit"} 4
# TYPE go_goroutines gauge
go_goroutines 42
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
`
	values, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`ledger_worker_commands_total{result="settled"}`:                   1234,
		`ledger_worker_commands_total{result="rejected"}`:                  5,
		`ledger_worker_consumer_lag_records`:                               12,
		`ledger_gateway_request_seconds_bucket{route="deposit",le="0.1"}`:  3,
		`ledger_gateway_request_seconds_bucket{route="deposit",le="+Inf"}`: 4,
		`ledger_gateway_request_seconds_sum{route="deposit"}`:              0.5,
		`ledger_gateway_request_seconds_count{route="deposit"}`:            4,
		`process_cpu_seconds_total`:                                        1.5,
	}
	for key, value := range want {
		if got, ok := values[key]; !ok || got != value {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, value)
		}
	}
	if len(values) != len(want) {
		t.Errorf("got %d samples, want %d (go_* must be left out): %v", len(values), len(want), values)
	}
	if _, err := ParseMetrics(strings.NewReader("not metrics {{{\n")); err == nil {
		t.Error("malformed text parsed")
	}
}

func TestJournalWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFileName)
	watcher := &JournalWatcher{Path: path}
	counts, err := watcher.Poll()
	if err != nil || counts.Lines != 0 {
		t.Fatalf("missing journal: %+v, %v", counts, err)
	}
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	loadStart := time.UnixMicro(1_700_000_000_000_000)
	write := func(text string) {
		t.Helper()
		if _, err := file.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	// Setup: a signup and a funding deposit, vu 0, iteration -1.
	write(`{"kind":"signup","vu":0,"iter":-1,"invoke":1699999999000000,"outcome":"ok"}` + "\n")
	write(`{"kind":"deposit","vu":0,"iter":-1,"invoke":1699999999500000,"outcome":"ok"}` + "\n")
	if counts, _ = watcher.Poll(); counts.Lines != 2 || counts.Load != 0 || !counts.LoadStart.IsZero() {
		t.Fatalf("setup only: %+v", counts)
	}
	// The load; lines in completion order; the last one half written.
	write(`{"kind":"transfer","vu":3,"iter":0,"invoke":1700000000200000,"outcome":"ok"}` + "\n")
	write(`{"kind":"deposit","vu":1,"iter":0,"invoke":1700000000000000,"outcome":"info"}` + "\n")
	write(`{"kind":"withdrawal","vu":2,"iter":0,"invoke":1700000000300000,"outcome":"fail","reason":"insufficient_funds"}` + "\n")
	write(`{"kind":"withdrawal","vu":2,"iter":1,"invoke":1700000000400000,"outc`)
	counts, _ = watcher.Poll()
	if counts.Lines != 5 || counts.Load != 3 || counts.Errors != 1 || !counts.LoadStart.Equal(loadStart) {
		t.Fatalf("load: %+v (want 5 lines, 3 load, 1 error, start %s)", counts, loadStart)
	}
	write(`ome":"fail","reason":"forbidden"}` + "\n")
	if counts, _ = watcher.Poll(); counts.Load != 4 || counts.Errors != 2 {
		t.Fatalf("after the partial line completed: %+v", counts)
	}
}

func TestLoadArgs(t *testing.T) {
	cases := []struct {
		name              string
		segment, segments int
		want              string
	}{
		{"one generator", 0, 1, "load --scenario scenarios/gate.yaml --base-url http://a,http://b --out /runs/x --seed 7 --set schedule.rate=10 --set setup.accounts=4"},
		{"second of two", 1, 2, "load --scenario scenarios/gate.yaml --base-url http://a,http://b --out /runs/x --seed 7 --set schedule.rate=10 --set setup.accounts=4 --segment 1/2 --ready-file /runs/x/.load-ready-1 --start-file /runs/x/.load-start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := LoadArgs("/runs/x", "scenarios/gate.yaml", []string{"http://a", "http://b"}, []string{"schedule.rate=10", "setup.accounts=4"}, 7, c.segment, c.segments)
			if got := strings.Join(args, " "); got != c.want {
				t.Fatalf("load args:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestRunFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	started := time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
	record := &RunFile{Version: RunFileVersion, ID: "x", StartedAt: started, Verdict: VerdictPassed, SeededBugs: []string{}}
	if err := record.Write(dir); err != nil {
		t.Fatal(err)
	}
	read, err := ReadRunFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if read.ID != "x" || !read.StartedAt.Equal(started) || read.Verdict != VerdictPassed {
		t.Fatalf("read back %+v", read)
	}
}
