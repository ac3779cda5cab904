package capacity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// series is n samples of base KiB plus step KiB more at each sample, and a sawtooth of noise KiB (a heap's
// collection cycle).
func series(n int, base, step, noise float64) []float64 {
	values := make([]float64, n)
	for i := range values {
		values[i] = base + step*float64(i) + noise*float64(i%3)
	}
	return values
}

// TestJudgeMemorySeries: a flat or sawtooth series is flat, one that grows steadily is not, a warm-up's growth is
// forgiven, too few samples are not judged.
func TestJudgeMemorySeries(t *testing.T) {
	const mib = 1024.0
	warmUp := append(series(12, 20*mib, 5*mib, 0), series(48, 80*mib, 0, 4*mib)...)
	cases := []struct {
		name          string
		kib           []float64
		judged, flat  bool
		start, growth float64
	}{
		{"flat", series(60, 100*mib, 0, 0), true, true, 100, 0},
		{"sawtooth of 8 MiB", series(60, 100*mib, 0, 4*mib), true, true, 104, 0},
		{"warm-up growth, then flat", warmUp, true, true, 84, 0},
		{"leak: 1 MiB a sample", series(60, 100*mib, mib, 0), true, false, 0, 0},
		{"small leak under the slack", series(60, 400*mib, 0.2*mib, 0), true, true, 0, 0},
		{"growth above 10% + 16 MiB", append(series(30, 400*mib, 0, 0), series(30, 460*mib, 0, 0)...), true, false, 400, 15},
		{"too few samples", series(7, 100*mib, 0, 0), false, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := judgeMemorySeries("gateway-0", c.kib)
			if m.Judged != c.judged || m.Flat != c.flat {
				t.Fatalf("judged %v flat %v, want %v %v: %+v", m.Judged, m.Flat, c.judged, c.flat, m)
			}
			if c.start > 0 && (m.StartMiB != c.start || m.GrowthPercent != c.growth) {
				t.Errorf("start %.1f MiB growth %.1f%%, want %.1f and %.1f", m.StartMiB, m.GrowthPercent, c.start, c.growth)
			}
			if len(c.kib) >= soakTimelinePoints && len(m.Timeline) != soakTimelinePoints {
				t.Errorf("timeline of %d points, want %d", len(m.Timeline), soakTimelinePoints)
			}
		})
	}
}

// TestSoakJudgement: the soak passes only when its load held and every process's memory was judged flat; each
// failure names itself, and the run's verdict carries it with exit 3.
func TestSoakJudgement(t *testing.T) {
	flat := soakMemory{Component: "postgres", Samples: 40, Judged: true, Flat: true}
	leak := soakMemory{Component: "load", Samples: 40, Judged: true, Flat: false, StartMiB: 30, EndMiB: 90, GrowthPercent: 200}
	cases := []struct {
		name   string
		result soakResult
		want   string
	}{
		{"held and flat", soakResult{Step: &capacityStep{Held: true}, Memory: []soakMemory{flat}}, ""},
		{"dropped", soakResult{Step: &capacityStep{Held: false, Reasons: []string{"12 dropped"}}, Memory: []soakMemory{flat}}, "the load did not hold: 12 dropped"},
		{"leak", soakResult{Step: &capacityStep{Held: true}, Memory: []soakMemory{flat, leak}}, "load's memory grew 30 -> 90 MiB (+200.0%)"},
		{"unjudged", soakResult{Step: &capacityStep{Held: true}, Memory: []soakMemory{{Component: "redis", Samples: 3}}}, "too few to judge"},
		{"no memory", soakResult{Step: &capacityStep{Held: true}}, "no memory samples"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.result.judge()
			if got := strings.Join(c.result.Reasons, "; "); c.result.Passed != (c.want == "") || !strings.Contains(got, c.want) {
				t.Fatalf("passed %v, reasons %q; want %q", c.result.Passed, got, c.want)
			}
			run := &capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}, KneeTPS: 1000, Soak: &c.result}}}
			code := run.judge(Options{Soak: time.Minute}, true)
			if c.want == "" && (code != 0 || run.Verdict != "passed") || c.want != "" && (code != 3 || !strings.Contains(run.Verdict, "soak failed: ")) {
				t.Errorf("run: exit %d, verdict %q", code, run.Verdict)
			}
		})
	}
	notRun := &capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}}}}
	if code := notRun.judge(Options{Soak: time.Minute}, true); code != 3 || !strings.Contains(notRun.Verdict, "soak failed: not run") {
		t.Errorf("a soak asked for and not run: exit %d, verdict %q", code, notRun.Verdict)
	}
}

// TestMemorySampler: this process's own private memory is read from /proc, a process that is gone is left out,
// and a status without RssAnon (a kernel thread) reads as 0 while a malformed one is an error.
func TestMemorySampler(t *testing.T) {
	cpu := newCPUSampler()
	cpu.watch("self", os.Getpid())
	cpu.watch("gone", 1<<22+7)
	memory := &memorySampler{source: cpu.watchedNow}
	memory.sample()
	samples := memory.all()
	if len(samples) != 1 || samples[0].KiB["self"] <= 0 {
		t.Fatalf("samples %+v: want this process's memory", samples)
	}
	if _, ok := samples[0].KiB["gone"]; ok {
		t.Errorf("a process that does not exist was sampled: %+v", samples[0])
	}
	if kib, err := parsePrivateMemory([]byte("Name:\tkthreadd\nState:\tS\n")); err != nil || kib != 0 {
		t.Errorf("kernel thread: %d, %v", kib, err)
	}
	if _, err := parsePrivateMemory([]byte("RssAnon:\t12 MB\n")); err == nil {
		t.Error("RssAnon in MB: no error")
	}
	if kib, err := parsePrivateMemory([]byte("VmRSS:\t900 kB\nRssAnon:\t  4321 kB\n")); err != nil || kib != 4321 {
		t.Errorf("RssAnon 4321 kB: %d, %v", kib, err)
	}
}

// TestSoakRateAndInterval: the soak's rate is the fraction of the knee (at least 1), its samples about 60, 1 to 10 s
// apart.
func TestSoakRateAndInterval(t *testing.T) {
	if got := soakRate(2500, 0.7); got != 1750 {
		t.Errorf("70%% of 2500: %d", got)
	}
	if got := soakRate(1, 0.1); got != 1 {
		t.Errorf("10%% of 1: %d", got)
	}
	for soak, want := range map[time.Duration]time.Duration{10 * time.Minute: 10 * time.Second, 2 * time.Minute: 2 * time.Second,
		10 * time.Second: time.Second, time.Hour: 10 * time.Second} {
		if got := soakSampleInterval(soak); got != want {
			t.Errorf("soak %s: samples every %s, want %s", soak, got, want)
		}
	}
}

// TestKneeCosts: the knee's CPU per request by part beside the calibration's bare programs, with the gateway's and
// the apply's targets judged in the report.
func TestKneeCosts(t *testing.T) {
	calibration := &capacityCalibration{Cores: 2, CPUMsPerOperation: 0.5, CeilingTPS: 4000, Parts: []calibrationPart{
		{Name: "http", Operations: 10000, CPUMsPerOperation: 0.2, ByProcess: map[string]float64{"endpoint": 0.5, "load": 1.5}},
		{Name: "postgres", Operations: 20000, CPUMsPerOperation: 0.1},
		{Name: "redis", Operations: 30000, CPUMsPerOperation: 0.03},
		{Name: "produce", Operations: 30000, CPUMsPerOperation: 0.02},
	}}
	p95, p99 := 80.0, 700.0
	knee := capacityStep{TargetTPS: 2500, P95AcceptMs: &p95, P99SettleMs: &p99, CPUPer1000: map[string]float64{
		"gateway-0": 0.16, "worker-0": 0.05, "postgres": 0.12, "redis": 0.03, "broker": 0.02, loadComponent: 0.12, machineComponent: 0.6}}
	result := &capacityResult{Calibration: calibration, Modes: []capacityModeResult{
		{Mode: capacityMode{Name: ModeBatched}, KneeTPS: 2500, Steps: []capacityStep{knee}}}}
	costs := map[string]componentCost{}
	for _, c := range result.kneeCosts() {
		costs[c.Part] = c
	}
	if c := costs["gateway"]; c.BareMs != 0.05 || c.Ratio != 3.2 || c.Target != 3 {
		t.Errorf("gateway: %+v; want 0.16 over the bare endpoint's 0.05 = 3.2x, target 3", c)
	}
	if c := costs["worker + Postgres"]; c.MsPerRequest != 0.17 || c.Ratio != 1.7 || strings.Join(c.Components, ",") != "postgres,worker-0" {
		t.Errorf("worker + Postgres: %+v; want 0.17 over 0.1 = 1.7x", c)
	}
	if c := costs["load generator"]; c.BareMs != 0.15 || c.Ratio != 0.8 {
		t.Errorf("load: %+v; want 0.12 over 0.15", c)
	}
	page := result.kneeCostMarkdown()
	for _, want := range []string{"| gateway | gateway-0 | 0.160 |", "3.20× | ≤ 3×: **not met** |", "1.70× | ≤ 2×: met |",
		"p95 accept 80.0 ms (target < 100: met)", "p99 settle 700.0 ms (target < 500: **not met**)"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q:\n%s", want, page)
		}
	}
	if (&capacityResult{Modes: result.Modes}).kneeCosts() != nil {
		t.Error("costs without a calibration")
	}
	// What the accept figures measured follows the scenario's client.wait.
	if !strings.Contains(page, "did not wait for their outcome") {
		t.Errorf("without a wait the report must say accept is the 202:\n%s", page)
	}
	if strings.Contains(page, "autovacuum") {
		t.Errorf("the knee's autovacuum was not read, yet the report states it:\n%s", page)
	}
	if strings.Contains(page, "Second by second") {
		t.Errorf("the knee's p95 second by second was not read, yet the report states it:\n%s", page)
	}
	result.Modes[0].Steps[0].Autovacuum = &autovacuumShare{Actions: 3, CPUSeconds: 0.61}
	result.Modes[0].Steps[0].SecondsP95 = &secondsP95{Seconds: 20, MedianMs: 71.3, WorstMs: 297.7, OverTarget: 9}
	result.ClientWaitSeconds = 5
	page = result.kneeCostMarkdown()
	if !strings.Contains(page, "autovacuum in the knee's hold: 3 action(s), 0.61 CPU seconds") {
		t.Errorf("the report must state the knee's autovacuum:\n%s", page)
	}
	if !strings.Contains(page, "the p95 accept had a median of 71.3 ms and a worst of 297.7 ms; 9 of 20 seconds were at or above 100 ms") {
		t.Errorf("the report must state the knee's p95 second by second:\n%s", page)
	}
	if !strings.Contains(page, "hold its answer up to 5s for the outcome") || !strings.Contains(page, "the accept figures include the settle") {
		t.Errorf("with a wait the report must say accept includes the settle:\n%s", page)
	}
}

// TestCapacityClientWait: the wait the report states is the scenario's, as the steps' loads read it.
func TestCapacityClientWait(t *testing.T) {
	directory := t.TempDir()
	for _, c := range []struct {
		client string
		want   time.Duration
	}{{"", 5 * time.Second}, {"client:\n  wait: 0s\n", 0}, {"client:\n  wait: 250ms\n", 250 * time.Millisecond}} {
		path := filepath.Join(directory, "capacity.yaml")
		scenarioText := "name: capacity\nsetup:\n  accounts: 10\nschedule:\n  executor: capacity-steps\n  steps: [100]\n" +
			"  step_ramp: 1s\n  step_hold: 1s\n" + c.client + "workload:\n  kind: mixed\n"
		if err := os.WriteFile(path, []byte(scenarioText), 0o644); err != nil {
			t.Fatal(err)
		}
		wait, err := capacityClientWait(Options{Scenario: path, Steps: []int{250}, Hold: time.Second, Accounts: 10})
		if err != nil || wait != c.want {
			t.Errorf("client %q: wait %s, %v; want %s", c.client, wait, err, c.want)
		}
	}
	if _, err := capacityClientWait(Options{Scenario: filepath.Join(directory, "missing.yaml"), Steps: []int{250}, Hold: time.Second, Accounts: 10}); err == nil {
		t.Error("a missing scenario gave no error")
	}
}
