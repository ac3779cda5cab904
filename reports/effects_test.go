package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The recorded run's three faults (the broker, Postgres and worker-0 killed)
// each bit; a pause of a process that serves nothing, one second before the
// first of them, did not, and the report says so.
func TestFaultThatDidNotBiteIsFlagged(t *testing.T) {
	runDir := copyRun(t, t.TempDir())
	start, err := time.Parse(time.RFC3339Nano, "2026-11-21T07:01:06.187525817Z")
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(runDir, ChaosLogFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		action string
		at     time.Duration
	}{{"pause", 1 * time.Second}, {"resume", 2 * time.Second}} {
		line, err := json.Marshal(map[string]any{"v": 1, "plan": "recorded", "source": "extra", "start": start,
			"time": start.Add(step.at), "offset_ms": step.at.Milliseconds(), "action": step.action, "target": "worker-7",
			"params": map[string]string{}, "result": "ok", "duration_ms": 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := log.Write(append(line, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}

	a, err := analyze(runDir)
	if err != nil {
		t.Fatal(err)
	}
	windows := a.summary.FaultWindows
	if len(windows) != recordedFaultWindows+1 {
		t.Fatalf("%d fault windows, want %d", len(windows), recordedFaultWindows+1)
	}
	for _, window := range windows {
		if window.Effect == nil {
			t.Fatalf("window %s has no effect recorded", window.Label)
		}
		t.Logf("%s at %.1f s: %s", window.Label, window.StartSeconds, window.Effect.Observed)
		if quiet := window.Target == "worker-7"; window.Effect.Bit == quiet {
			t.Errorf("%s: bit %v, want %v (%+v)", window.Label, window.Effect.Bit, !quiet, *window.Effect)
		}
	}
	if a.summary.FaultsWithoutEffect != 1 {
		t.Errorf("faults without effect %d, want 1", a.summary.FaultsWithoutEffect)
	}
	warned := false
	for _, warning := range a.summary.Warnings {
		warned = warned || strings.Contains(warning, "worker-7 paused") && strings.Contains(warning, "no observable effect")
	}
	if !warned {
		t.Errorf("no warning names the fault that did not bite: %q", a.summary.Warnings)
	}
	page, err := a.html()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "did not bite:") {
		t.Error("index.html does not flag the fault that did not bite")
	}
}
