package capacity

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestRunMeasuresAModeOnTheRunEngine: one small step of the batched mode on the run engine's local stack, audited
// in-process: exit 0, capacity.json with the step and the audit's verdict, the audit's output in audit.log, the
// stack's lines in stack.log and its logs in stack-logs/, the docs section written, the stack removed.
func TestRunMeasuresAModeOnTheRunEngine(t *testing.T) {
	binary := stacktest.Binary(t)
	ports, err := runner.FreePorts(1, map[int]int{0: 60})
	if err != nil {
		t.Fatal(err)
	}
	// A short path: the Postgres unix socket lives under the stack's directory.
	stackRoot, err := os.MkdirTemp("", "lpc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stackRoot) })
	// Postgres runs as the postgres OS user when the test runs as root.
	if err := os.Chmod(stackRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	docs := filepath.Join(t.TempDir(), "performance.md")
	if err := os.WriteFile(docs, []byte("# Performance\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Out: out, Scenario: filepath.Join("..", "..", "scenarios", "capacity.yaml"), StackRoot: stackRoot, Docs: docs,
		Modes: []string{ModeBatched}, Steps: []int{20}, Hold: 2 * time.Second, Ramp: time.Second, Accounts: 10, Seed: 7,
		Gateways: 1, Workers: 1, Partitions: 2, FailuresToStop: 2, PortBase: ports[0], Binary: binary, Command: "capacity (test)"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout strings.Builder
	code, err := Run(ctx, o, &stdout)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, error %v; want 0\n%s", code, err, stdout.String())
	}
	content, err := os.ReadFile(filepath.Join(out, "capacity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var result capacityResult
	if err := json.Unmarshal(content, &result); err != nil {
		t.Fatal(err)
	}
	if len(result.Modes) != 1 || len(result.Modes[0].Steps) != 1 || !result.Modes[0].AuditPassed || result.Verdict != "passed" {
		t.Fatalf("capacity.json: %s", content)
	}
	mode := result.Modes[0]
	if !strings.HasPrefix(mode.AuditSummary, "passed") || mode.Steps[0].Iterations == 0 {
		t.Errorf("audit summary %q, iterations %v", mode.AuditSummary, mode.Steps[0].Iterations)
	}
	for _, name := range []string{"audit.log", "audit.txt", stackLogFileName, "stack-logs", "journal-step-01-20.jsonl",
		filepath.Join("steps", "step-01-20", stepLoadLogFileName)} {
		if info, err := os.Stat(filepath.Join(out, ModeBatched, name)); err != nil || (!info.IsDir() && info.Size() == 0) {
			t.Errorf("%s: %v (empty or missing)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stackRoot, ModeBatched)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mode's stack directory is still there (%v)", err)
	}
	section, err := os.ReadFile(docs)
	if err != nil || !strings.Contains(string(section), capacityBeginMarker) || !strings.Contains(string(section), "knee **") {
		t.Errorf("docs: %v\n%s", err, section)
	}
	if !strings.Contains(stdout.String(), "batched: knee ") || strings.Contains(stdout.String(), "ready in") {
		t.Errorf("stdout lacks the mode's line or carries the stack's progress lines:\n%s", stdout.String())
	}
}
