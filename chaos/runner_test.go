package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingExecutor records every call with its time; calls on targets in
// fail return an error, calls take delay.
type recordingExecutor struct {
	Extensions
	mutex  sync.Mutex
	calls  []call
	fail   map[string]bool
	delay  time.Duration
	owners []string // successive answers of PartitionOwner
}

type call struct {
	at     time.Time
	action string
	target string
}

func (e *recordingExecutor) record(action, target string) error {
	e.mutex.Lock()
	e.calls = append(e.calls, call{time.Now(), action, target})
	e.mutex.Unlock()
	time.Sleep(e.delay)
	if e.fail[target] {
		return fmt.Errorf("%s %s: refused", action, target)
	}
	return nil
}

func (e *recordingExecutor) Describe() string { return "recording" }
func (e *recordingExecutor) Inventory(context.Context) (Inventory, error) {
	return fullInventory, nil
}
func (e *recordingExecutor) PartitionOwner(ctx context.Context, partition int) (string, error) {
	e.mutex.Lock()
	defer e.mutex.Unlock()
	if len(e.owners) == 0 {
		return "", errors.New("no owner")
	}
	owner := e.owners[0]
	e.owners = e.owners[1:]
	return owner, nil
}
func (e *recordingExecutor) Process(ctx context.Context, action Action, target string) error {
	return e.record(string(action), target)
}

func (e *recordingExecutor) snapshot() []call {
	e.mutex.Lock()
	defer e.mutex.Unlock()
	return append([]call(nil), e.calls...)
}

// timelineOf parses a plan and expands it.
func timelineOf(t *testing.T, text string) []Step {
	t.Helper()
	plan, err := ParsePlan([]byte(text), "test")
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(1, fullInventory)
	if err != nil {
		t.Fatal(err)
	}
	return timeline
}

func TestRunnerAppliesStepsAtTheirOffsets(t *testing.T) {
	timeline := timelineOf(t, `
duration: 2s
steps:
  - {at: 100ms, action: kill, target: broker}
  - {at: 400ms, action: start, target: broker}
  - {at: 200ms, action: pause, target: redis}
  - {at: 300ms, action: resume, target: redis}
`)
	executor := &recordingExecutor{}
	var log, output bytes.Buffer
	runner := &Runner{Executor: executor, ChaosLog: &log, Output: &output}
	start := time.Now()
	summary, err := runner.Run(context.Background(), "test", 1, timeline, start)
	if err != nil {
		t.Fatal(err)
	}
	calls := executor.snapshot()
	want := map[string]time.Duration{"kill broker": 100 * time.Millisecond, "pause redis": 200 * time.Millisecond,
		"resume redis": 300 * time.Millisecond, "start broker": 400 * time.Millisecond}
	if len(calls) != len(want) || len(summary.Records) != len(want) {
		t.Fatalf("calls %v, records %d, want %d", calls, len(summary.Records), len(want))
	}
	for _, call := range calls {
		planned, ok := want[call.action+" "+call.target]
		if !ok {
			t.Fatalf("unexpected call %v", call)
		}
		offset := call.at.Sub(start)
		// Never early. How late is the machine's scheduling (a loaded 2-core machine delayed a timer by 90 ms):
		// no upper bound here, but each target's steps come in their planned order.
		if offset < planned {
			t.Errorf("%s %s at %s, planned %s: early", call.action, call.target, offset, planned)
		}
	}
	at := map[string]time.Time{}
	for _, call := range calls {
		at[call.action+" "+call.target] = call.at
	}
	if !at["kill broker"].Before(at["start broker"]) || !at["pause redis"].Before(at["resume redis"]) {
		t.Errorf("a target's steps out of their planned order: %v", calls)
	}
	for i := 1; i < len(summary.Records); i++ {
		if summary.Records[i].Time.Before(summary.Records[i-1].Time) {
			t.Errorf("records not in time order")
		}
	}
	if lines := strings.Count(output.String(), "\n"); lines != 4 {
		t.Errorf("printed %d lines, want 4:\n%s", lines, output.String())
	}
	if !strings.Contains(output.String(), "(planned 100ms) kill broker: ok in") {
		t.Errorf("output:\n%s", output.String())
	}
}

func TestRunnerRunsOneTargetInOrderAndOthersConcurrently(t *testing.T) {
	// Each action takes 150ms. broker's start (planned 50ms) must wait for
	// its kill; redis's kill (planned 20ms) must not wait for the broker.
	timeline := timelineOf(t, `
duration: 2s
steps:
  - {at: 0s, action: kill, target: broker}
  - {at: 50ms, action: start, target: broker}
  - {at: 20ms, action: kill, target: redis}
`)
	executor := &recordingExecutor{delay: 150 * time.Millisecond}
	start := time.Now()
	if _, err := (&Runner{Executor: executor}).Run(context.Background(), "test", 1, timeline, start); err != nil {
		t.Fatal(err)
	}
	offsets := map[string]time.Duration{}
	for _, call := range executor.snapshot() {
		offsets[call.action+" "+call.target] = call.at.Sub(start)
	}
	if offsets["start broker"] < 150*time.Millisecond {
		t.Errorf("start broker at %s, before its kill finished", offsets["start broker"])
	}
	if offsets["kill redis"] > 100*time.Millisecond {
		t.Errorf("kill redis at %s: waited for the broker's lane", offsets["kill redis"])
	}
}

func TestRunnerLogsFailuresAndGoesOn(t *testing.T) {
	timeline := timelineOf(t, `
duration: 2s
steps:
  - {at: 0s, action: kill, target: broker}
  - {at: 10ms, action: kill, target: redis}
  - {at: 50ms, action: start, target: broker}
`)
	executor := &recordingExecutor{fail: map[string]bool{"broker": true}}
	var log bytes.Buffer
	summary, err := (&Runner{Executor: executor, ChaosLog: &log}).Run(context.Background(), "test", 1, timeline, time.Now())
	if err == nil || !strings.Contains(err.Error(), "2 of 3 steps failed") {
		t.Fatalf("err = %v, want 2 of 3 steps failed", err)
	}
	if summary.Failed != 2 || len(summary.Records) != 3 {
		t.Fatalf("summary %+v", summary)
	}
	if !strings.Contains(log.String(), `"result":"error","error":"kill broker: refused"`) {
		t.Errorf("log:\n%s", log.String())
	}

	// With StopOnError the first failure ends the run.
	executor = &recordingExecutor{fail: map[string]bool{"broker": true}}
	summary, err = (&Runner{Executor: executor, StopOnError: true}).Run(context.Background(), "test", 1, timeline, time.Now())
	if err == nil || summary.Failed != 1 || summary.NotRun != 2 {
		t.Fatalf("stop on error: err %v, summary failed %d, not run %d", err, summary.Failed, summary.NotRun)
	}
}

func TestRunnerIsCancellableAndCleansUp(t *testing.T) {
	timeline := timelineOf(t, `
duration: 60s
steps:
  - {at: 0s, action: pause, target: redis}
  - {at: 0s, action: link, target: "worker->broker", params: {fault: cut}}
  - {at: 30s, action: resume, target: redis}
  - {at: 30s, action: link, target: "worker->broker", params: {fault: heal}}
`)
	links := &recordingLinks{}
	executor := &recordingExecutor{Extensions: Extensions{Links: links}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	summary, err := (&Runner{Executor: executor}).Run(ctx, "test", 1, timeline, began)
	if time.Since(began) > 5*time.Second {
		t.Fatalf("cancelled run took %s", time.Since(began))
	}
	if err == nil || !strings.Contains(err.Error(), "2 steps not run") {
		t.Fatalf("err = %v", err)
	}
	var cleanups []string
	for _, record := range summary.Records {
		if record.Cleanup {
			cleanups = append(cleanups, record.Action+" "+record.Target+" "+record.Params["fault"])
		}
	}
	want := "resume redis |link worker->broker heal"
	if got := strings.Join(cleanups, "|"); got != want {
		t.Errorf("cleanup %q, want %q", got, want)
	}
	if got := strings.Join(links.faults, ","); got != "worker->broker cut,worker->broker heal" {
		t.Errorf("link faults %q", got)
	}
}

type recordingLinks struct {
	mutex  sync.Mutex
	faults []string
}

func (l *recordingLinks) Links() []string { return Links }
func (l *recordingLinks) Link(ctx context.Context, link string, params LinkParams) error {
	l.mutex.Lock()
	defer l.mutex.Unlock()
	l.faults = append(l.faults, link+" "+params.Fault)
	return nil
}

func TestRunnerResolvesAPartitionOnceInItsLane(t *testing.T) {
	timeline := timelineOf(t, `
duration: 2s
steps:
  - {at: 0s, action: kill, target: "worker:partition=3"}
  - {at: 20ms, action: start, target: "worker:partition=3"}
`)
	// The second answer would be another worker: the partition moved after
	// the kill. The start must still go to the killed worker.
	executor := &recordingExecutor{owners: []string{"worker-1", "worker-0"}}
	var log bytes.Buffer
	if _, err := (&Runner{Executor: executor, ChaosLog: &log}).Run(context.Background(), "test", 1, timeline, time.Now()); err != nil {
		t.Fatal(err)
	}
	calls := executor.snapshot()
	if len(calls) != 2 || calls[0].target != "worker-1" || calls[1].target != "worker-1" {
		t.Fatalf("calls %v", calls)
	}
	if strings.Count(log.String(), `"target":"worker:partition=3","resolved":"worker-1"`) != 2 {
		t.Errorf("log:\n%s", log.String())
	}
}

func TestUnsupportedActionsSayHowToGetThem(t *testing.T) {
	executor := &LocalExecutor{Dir: t.TempDir()}
	ctx := context.Background()
	for _, err := range []error{
		executor.Link(ctx, "worker->broker", LinkParams{Fault: FaultCut}),
		executor.Failover(ctx),
		executor.ArmCrashPoint(ctx, "worker-0", "mid-batch"),
	} {
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "(start it") {
			t.Errorf("error %v: want ErrNotSupported saying how to start a stack that can", err)
		}
	}
}

// TestChaosLogFormat checks the chaos log's lines field by field, as the
// report reads them.
func TestChaosLogFormat(t *testing.T) {
	timeline := timelineOf(t, `
duration: 2s
steps:
  - {at: 50ms, action: link, target: "gateway->broker", params: {fault: latency, latency: 200ms, jitter: 20ms}}
  - {at: 80ms, action: kill, target: worker-1}
`)
	runDir := filepath.Join(t.TempDir(), "run")
	logFile, err := OpenLog(runDir)
	if err != nil {
		t.Fatal(err)
	}
	executor := &recordingExecutor{Extensions: Extensions{Links: &recordingLinks{}}, fail: map[string]bool{"worker-1": true}}
	start := time.Now()
	if _, err := (&Runner{Executor: executor, ChaosLog: logFile}).Run(context.Background(), "format", 99, timeline, start); err == nil {
		t.Fatal("want the failed kill reported")
	}
	logFile.Close()
	content, err := os.ReadFile(filepath.Join(runDir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	// The link fault, the kill, and the cleanup that healed the link.
	lines := strings.Split(strings.TrimSpace(string(content)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"target":"gateway->broker"`) {
		t.Fatalf("%d lines:\n%s", len(lines), content)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"v", "plan", "seed", "source", "start", "planned", "planned_ms", "time", "offset_ms", "action", "target", "params", "result", "duration_ms"} {
		if _, ok := first[field]; !ok {
			t.Errorf("line lacks %q: %s", field, lines[0])
		}
	}
	records, err := ReadLog(filepath.Join(runDir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	link, kill, cleanup := records[0], records[1], records[2]
	if !cleanup.Cleanup || cleanup.Source != "cleanup" || cleanup.Params["fault"] != FaultHeal || cleanup.Target != "gateway->broker" {
		t.Errorf("cleanup record %+v", cleanup)
	}
	if link.Plan != "format" || link.Seed != 99 || link.Action != "link" || link.Target != "gateway->broker" ||
		link.Planned != "50ms" || link.PlannedMs != 50 || link.Result != ResultOK || link.Error != "" ||
		link.Params["fault"] != "latency" || link.Params["latency"] != "200ms" || link.Params["jitter"] != "20ms" {
		t.Errorf("link record %+v", link)
	}
	if link.OffsetMs < 50 || link.OffsetMs > 150 || !link.Start.Equal(start) {
		t.Errorf("link at offset %dms, start %s (want %s)", link.OffsetMs, link.Start, start)
	}
	if got := link.Time.Sub(link.Start).Milliseconds(); got != link.OffsetMs {
		t.Errorf("time - start = %dms, offset_ms %d", got, link.OffsetMs)
	}
	if kill.Result != ResultError || kill.Error != "kill worker-1: refused" || kill.Source != "steps[1]" {
		t.Errorf("kill record %+v", kill)
	}
}
