package metrics

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// TestMergeSegmentsAfterTheFact: two segments' summaries in a run directory (as a Kubernetes Job leaves them)
// merge into load-summary.json with the thresholds rebuilt from the segments' verdicts and judged on the whole
// load: the first segment's p95 holds alone, the whole load's does not.
func TestMergeSegmentsAfterTheFact(t *testing.T) {
	dir := t.TempDir()
	if SummaryMissing(dir) {
		t.Fatal("an empty directory reports a missing merged summary")
	}
	if _, err := MergeSegments(dir, nil); err == nil {
		t.Fatal("merging a directory without segment summaries succeeded")
	}
	p95, err := threshold.Parse("accept_duration", "p(95)<100")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_700_000_000, 0)
	// Segment 0: 100 fast operations; segment 1: 10 slow ones. Together the slow ones are 1 in 11 (over 5%),
	// so the merged p95 is slow: a merge that averaged or kept the first segment's figures would pass.
	for segment, latencies := range [][]time.Duration{repeat(100, 10*time.Millisecond), repeat(10, 500*time.Millisecond)} {
		recorder := NewRecorder(start, []threshold.Threshold{p95})
		for _, latency := range latencies {
			recorder.Operation(Operation{Kind: "deposit", Outcome: "ok", Completed: start.Add(time.Second),
				Accepted: true, Accept: latency, Settled: true, Settle: latency})
		}
		summary := recorder.Summary(RunInfo{Scenario: "gate", Seed: 7, Segment: []string{"0/2", "1/2"}[segment]}, start.Add(2*time.Second))
		name := filepath.Join(dir, []string{"load-summary-0.json", "load-summary-1.json"}[segment])
		if err := WriteSummary(name, summary); err != nil {
			t.Fatal(err)
		}
	}
	if !SummaryMissing(dir) {
		t.Fatal("segment summaries without load-summary.json: not reported missing")
	}
	merged, err := MergeSegments(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Thresholds) != 1 || merged.Thresholds[0].Passed || merged.ThresholdsPassed {
		t.Fatalf("merged thresholds %+v (passed %v): want p(95)<100 failed on the whole load", merged.Thresholds, merged.ThresholdsPassed)
	}
	if count := merged.Metrics["accept_duration"].Figures["count"]; count != 110 {
		t.Fatalf("merged accept_duration count %v, want 110", count)
	}
	if _, err := os.Stat(filepath.Join(dir, SummaryFile)); err != nil || SummaryMissing(dir) {
		t.Fatalf("load-summary.json not written: %v", err)
	}
}

func repeat(n int, latency time.Duration) []time.Duration {
	latencies := make([]time.Duration, n)
	for i := range latencies {
		latencies[i] = latency
	}
	return latencies
}
