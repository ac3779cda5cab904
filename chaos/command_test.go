package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCommandStepValidation(t *testing.T) {
	good := `duration: 30s
steps:
  - {at: 5s, action: command, target: payments-worker, params: {run: "docker kill w-1", duration: 10s, recover: "docker start w-1", timeout: 20s}}
  - {at: 6s, action: command, target: db/primary, params: {run: "true"}}
`
	plan, err := ParsePlan([]byte(good), "good")
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(1, Inventory{CommandsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(timeline) != 3 {
		t.Fatalf("timeline %v: want the two commands and one recovery", timeline)
	}
	recovery := timeline[2]
	if recovery.At != 15*time.Second || recovery.Action != ActionCommand || recovery.Params.Run != "docker start w-1" ||
		recovery.Params.Timeout != 20*time.Second || recovery.Source != "steps[0] recovery" || recovery.Target != "payments-worker" {
		t.Errorf("recovery step %+v: want docker start w-1 at 15s, timeout 20s, target payments-worker", recovery)
	}
	if err := ValidateTargets("good", timeline, Inventory{CommandsOnly: true}); err != nil {
		t.Errorf("command steps against an external system: %v", err)
	}
	if err := ValidateTargets("good", timeline, fullInventory); err != nil {
		t.Errorf("command steps against a local stack: %v", err)
	}

	for name, tc := range map[string]struct{ plan, want string }{
		"no run":            {`{at: 1s, action: command, target: w}`, "params.run: missing"},
		"no target":         {`{at: 1s, action: command, params: {run: "true"}}`, "target: missing"},
		"bad target":        {`{at: 1s, action: command, target: "two words", params: {run: "true"}}`, "want a name"},
		"recover alone":     {`{at: 1s, action: command, target: w, params: {run: "true", recover: "true"}}`, "recover and duration go together"},
		"duration alone":    {`{at: 1s, action: command, target: w, params: {run: "true", duration: 5s}}`, "recover and duration go together"},
		"bad timeout":       {`{at: 1s, action: command, target: w, params: {run: "true", timeout: soon}}`, "params.timeout"},
		"huge timeout":      {`{at: 1s, action: command, target: w, params: {run: "true", timeout: 2h}}`, "above"},
		"unknown parameter": {`{at: 1s, action: command, target: w, params: {run: "true", point: x}}`, `"point" not allowed`},
	} {
		_, err := ParsePlan([]byte("duration: 30s\nsteps:\n  - "+tc.plan+"\n"), name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", name, err, tc.want)
		}
	}

	// Against an external system only command steps are possible, and the
	// refusal says so.
	kill := timelineOf(t, "duration: 30s\nsteps:\n  - {at: 1s, action: kill, target: worker-0}\n")
	err = ValidateTargets("kill", kill, Inventory{CommandsOnly: true})
	if err == nil || !strings.Contains(err.Error(), "command steps") {
		t.Errorf("kill against an external system: %v, want a refusal naming command steps", err)
	}
}

func TestCommandStepsRunLogAndRecover(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "events")
	plan := `duration: 10s
steps:
  - at: 0s
    action: command
    target: payments-worker
    params: {run: "echo killed $LEDGERPROOF_CHAOS_TARGET >> ` + marker + `", duration: 200ms, recover: "echo started >> ` + marker + `"}
  - {at: 100ms, action: command, target: broken, params: {run: "echo no such container >&2; exit 3"}}
  - {at: 100ms, action: command, target: slow, params: {run: "sleep 30", timeout: 300ms}}
`
	var log, output bytes.Buffer
	runner := &Runner{Executor: ExternalExecutor{Name: "http://127.0.0.1:1"}, ChaosLog: &log, Output: &output}
	began := time.Now()
	summary, err := runner.Run(context.Background(), "commands", 1, timelineOf(t, plan), began)
	if err == nil || summary.Failed != 2 {
		t.Fatalf("run: %v, failed %d; want the failing and the timed-out command counted (2)\n%s", err, summary.Failed, output.String())
	}
	if took := time.Since(began); took >= 30*time.Second {
		t.Errorf("the run took %s: the 30s command was not killed at its 300ms timeout", took)
	}
	content, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if string(content) != "killed payments-worker\nstarted\n" {
		t.Errorf("the commands did %q, want the fault then its recovery", content)
	}
	records, err := decodeLog(log.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]Record{}
	for _, record := range records {
		results[record.Source] = record
	}
	if r := results["steps[0]"]; r.Result != ResultOK || r.Action != "command" || r.Target != "payments-worker" || !strings.Contains(r.Params["run"], "echo killed") {
		t.Errorf("the fault's record %+v", r)
	}
	if r := results["steps[0] recovery"]; r.Result != ResultOK || r.OffsetMs < 200 {
		t.Errorf("the recovery's record %+v: want ok, at 200ms or later", r)
	}
	if r := results["steps[1]"]; r.Result != ResultError || !strings.Contains(r.Error, "exit status 3") || !strings.Contains(r.Error, "no such container") {
		t.Errorf("the failing command's record %+v: want its exit status and output", r)
	}
	if r := results["steps[2]"]; r.Result != ResultError || !strings.Contains(r.Error, "timed out") {
		t.Errorf("the slow command's record %+v: want timed out", r)
	}
}

func TestCommandFaultIsRecoveredWhenTheRunIsCancelled(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "events")
	plan := `duration: 60s
steps:
  - {at: 0s, action: command, target: db, params: {run: "echo stopped >> ` + marker + `", duration: 50s, recover: "echo started >> ` + marker + `"}}
`
	var log bytes.Buffer
	runner := &Runner{Executor: ExternalExecutor{Name: "x"}, ChaosLog: &log}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the fault ran.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if content, _ := os.ReadFile(marker); len(content) > 0 {
				break
			}
		}
		cancel()
	}()
	summary, err := runner.Run(ctx, "cancelled", 1, timelineOf(t, plan), time.Now())
	if err == nil || summary.NotRun != 1 {
		t.Errorf("run: %v, %+v: want the recovery step counted as not run", err, summary)
	}
	content, _ := os.ReadFile(marker)
	if string(content) != "stopped\nstarted\n" {
		t.Fatalf("commands did %q: want the recovery run by the cleanup", content)
	}
	records, err := decodeLog(log.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(records) == 0 {
		t.Fatal("no chaos log records")
	}
	last := records[len(records)-1]
	if !last.Cleanup || last.Source != "cleanup of steps[0]" || last.Params["run"] != "echo started >> "+marker {
		t.Errorf("last record %+v: want the recovery as cleanup", last)
	}
}

// decodeLog reads chaos-log lines.
func decodeLog(content []byte) ([]Record, error) {
	var records []Record
	for _, line := range splitLines(content) {
		var record Record
		if err := json.Unmarshal(line, &record); err != nil {
			return nil, err
		}
		records = append(records, record)
	}
	return records, nil
}

// TestTimedOutFaultCommandIsStillRecovered: a fault command that timed out
// may have done its work anyway (the daemon it asked carries on), so the
// cleanup runs its recover command when the run ends before the recovery.
func TestTimedOutFaultCommandIsStillRecovered(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "events")
	plan := `duration: 60s
steps:
  - {at: 0s, action: command, target: db, params: {run: "echo stopping >> ` + marker + `; sleep 30", timeout: 200ms, duration: 50s, recover: "echo started >> ` + marker + `"}}
`
	log := &lockedBuffer{}
	runner := &Runner{Executor: ExternalExecutor{Name: "x"}, ChaosLog: log}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the fault's record is written (it timed out).
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if log.Len() > 0 {
				break
			}
		}
		cancel()
	}()
	_, _ = runner.Run(ctx, "timed-out", 1, timelineOf(t, plan), time.Now())
	content, _ := os.ReadFile(marker)
	if string(content) != "stopping\nstarted\n" {
		t.Fatalf("commands did %q: want the timed-out fault's recovery run by the cleanup", content)
	}
	records, err := decodeLog(log.Bytes())
	if err != nil || len(records) != 2 || records[0].Result != ResultError || !strings.Contains(records[0].Error, "timed out") || !records[1].Cleanup {
		t.Errorf("records %+v (%v): want the timed-out fault, then its recovery as cleanup", records, err)
	}
}

// lockedBuffer is a buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mutex  sync.Mutex
	buffer bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.buffer.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.buffer.Len()
}

func (b *lockedBuffer) Bytes() []byte {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return append([]byte(nil), b.buffer.Bytes()...)
}
