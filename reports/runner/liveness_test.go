package runner

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestLivenessNamesAWorkerThatDiesOnEveryBatch runs a real local stack whose
// only worker dies in every batch it applies (its crash point
// worker.mid-batch armed with probability 1: it exits inside the batch's
// open transaction, as an unrecovered panic would end it), loads it, starts
// the worker again as a run's recovery does (it dies again on its first
// batch), and audits with the stack: the audit must report liveness violated,
// naming worker-0, its state and the last error of its log, rather than
// only a count of lost operations.
func TestLivenessNamesAWorkerThatDiesOnEveryBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local stack")
	}
	binary := stacktest.Binary(t)
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1,
		WorkerArgs: []string{"--enable-crash-points", "--crash-point", "worker.mid-batch@1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The load's setup signs up and funds two accounts; the deposits are
	// queued and never settle, so the setup gives up (exit 2) after 5s.
	runDir := t.TempDir()
	load := exec.CommandContext(ctx, binary, "load", "--scenario", filepath.Join("..", "..", "scenarios", "gate.yaml"),
		"--base-url", file.Endpoints.Gateways[0], "--out", runDir,
		"--set", "setup.accounts=2", "--set", "setup.timeout=5s", "--set", "schedule.duration=2s", "--set", "schedule.rate=5")
	output, err := load.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) {
		t.Fatalf("load: %v (want exit 2: the setup cannot settle its deposits)\n%s", err, output)
	}

	waitDead := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			current, err := stack.Load(file.Dir)
			if err != nil {
				t.Fatal(err)
			}
			component, err := current.Component("worker-0")
			if err != nil {
				t.Fatal(err)
			}
			if !component.Alive() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker-0 still runs 30s %s; it should have died on its first batch", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitDead("after the load")
	// The run's recovery starts every component that is not running: the
	// worker comes back, takes the same batch, and dies again. Its start may
	// or may not see it ready first; either is this worker.
	_, _ = stack.Start(ctx, file.Dir, "worker-0")
	waitDead("after its restart")

	var stdout, stderr strings.Builder
	code := RunAudit(ctx, AuditOptions{RunDir: runDir, StackDir: file.Dir, Topic: invariants.DefaultTopic,
		DrainTimeout: 5 * time.Second, QuietPeriod: time.Second, MaxViolations: 20, Scope: invariants.ScopeRun}, &stdout, &stderr)
	if code != AuditExitViolated {
		t.Fatalf("audit exit %d, want %d (violated)\nstdout:\n%s\nstderr:\n%s", code, AuditExitViolated, stdout.String(), stderr.String())
	}
	content, err := os.ReadFile(filepath.Join(runDir, "audit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var audit struct {
		Invariants []invariants.InvariantResult `json:"invariants"`
	}
	if err := json.Unmarshal(content, &audit); err != nil {
		t.Fatal(err)
	}
	var liveness *invariants.InvariantResult
	for index := range audit.Invariants {
		if audit.Invariants[index].Name == invariants.Liveness {
			liveness = &audit.Invariants[index]
		}
	}
	if liveness == nil || liveness.Status != invariants.StatusViolated || len(liveness.Violations) == 0 {
		t.Fatalf("liveness: %+v, want violated\nstdout:\n%s", liveness, stdout.String())
	}
	summary := liveness.Violations[0].Summary
	t.Logf("liveness: %s", summary)
	for _, want := range []string{"worker-0 stalled", "dead (", "CRASH POINT worker.mid-batch HIT"} {
		if !strings.Contains(summary, want) {
			t.Errorf("liveness violation %q lacks %q", summary, want)
		}
	}
}
