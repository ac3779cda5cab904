package capacity

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/metrics"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// TestCapacitySetsMakeOneStep: a step's overrides, read by scenarios/capacity.yaml as its load reads them,
// give one capacity step at the step's rate with the flags' ramp, hold and accounts.
func TestCapacitySetsMakeOneStep(t *testing.T) {
	o := Options{Scenario: "../../scenarios/capacity.yaml", Hold: 20 * time.Second, Ramp: 5 * time.Second, Accounts: 2000}
	s, err := scenario.Load(o.Scenario, capacitySets(o, 3600))
	if err != nil {
		t.Fatal(err)
	}
	if s.Schedule.Executor != scenario.ExecutorCapacitySteps || !slices.Equal(s.Schedule.Steps, []float64{3600}) ||
		s.Schedule.StepRamp != o.Ramp || s.Schedule.StepHold != o.Hold || s.Setup.Accounts != o.Accounts {
		t.Errorf("executor %s, steps %v, ramp %s, hold %s, accounts %d", s.Schedule.Executor, s.Schedule.Steps,
			s.Schedule.StepRamp, s.Schedule.StepHold, s.Setup.Accounts)
	}
	if len(s.Thresholds) != 0 {
		t.Errorf("the capacity scenario has thresholds %v: a step's load would exit 99 on them", s.Thresholds)
	}
	plan, err := capacityPlan(o, 3600)
	if err != nil {
		t.Fatal(err)
	}
	// A 5 s ramp from 0 to 3600/s, then 20 s at 3600/s.
	if want := int64(3600*5/2 + 3600*20); plan.Total() != want {
		t.Errorf("plan of %d iterations, want %d", plan.Total(), want)
	}
	args := strings.Join(capacityLoadArgs(o, []string{"http://a", "http://b"}, "/run/step", 2, 3600), " ")
	for _, want := range []string{"load --scenario ../../scenarios/capacity.yaml --base-url http://a,http://b --out /run/step",
		"--set schedule.steps=[3600]", "--set schedule.step_ramp=5s", "--set schedule.step_hold=20s", "--set setup.accounts=2000"} {
		if !strings.Contains(args, want) {
			t.Errorf("arguments %q lack %q", args, want)
		}
	}
}

func TestCapacityStepFigures(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	figures := func(change func(*metrics.StepFigures)) metrics.StepFigures {
		f := metrics.StepFigures{Step: "2000", Started: 45000, Completed: 45000, Window: "hold", WindowStart: start,
			WindowEnd: start.Add(20 * time.Second), CompletedInWindow: 39900, OperationsPerSecond: 1995,
			AcceptSamples: 45000, AcceptP50Milliseconds: 30, AcceptP95Milliseconds: 48, AcceptP99Milliseconds: 60,
			SettleSamples: 45000, SettleP95Milliseconds: 49}
		if change != nil {
			change(&f)
		}
		return f
	}
	summaryOf := func(steps ...metrics.StepFigures) *metrics.Summary {
		settle := int64(0)
		if len(steps) > 0 {
			settle = steps[0].SettleSamples
		}
		return &metrics.Summary{Steps: steps, Metrics: map[string]metrics.MetricSummary{
			"settle_duration": {Figures: map[string]float64{"count": float64(settle), "med": 31, "p(95)": 49, "p(99)": 61}}}}
	}
	cases := []struct {
		name    string
		summary *metrics.Summary
		held    bool
		reasons []string
		err     string
	}{
		{"held", summaryOf(figures(nil)), true, []string{}, ""},
		{"dropped iterations", summaryOf(figures(func(f *metrics.StepFigures) { f.Dropped = 12 })), false, []string{"12 dropped"}, ""},
		{"errors at the bound", summaryOf(figures(func(f *metrics.StepFigures) { f.Errors, f.ErrorRate = 45, 0.001 })), false,
			[]string{"errors 0.100%"}, ""},
		{"errors under the bound", summaryOf(figures(func(f *metrics.StepFigures) { f.Errors, f.ErrorRate = 44, 44.0/45000 })), true,
			[]string{}, ""},
		{"p95 at the bound", summaryOf(figures(func(f *metrics.StepFigures) { f.AcceptP95Milliseconds = 250 })), false,
			[]string{"p95 250.0 ms"}, ""},
		{"nothing ran", summaryOf(figures(func(f *metrics.StepFigures) {
			*f = metrics.StepFigures{Step: "2000", Window: "hold", WindowStart: start, WindowEnd: start.Add(20 * time.Second)}
		})), false, []string{"no iterations", "no error data", "no latency data"}, ""},
		{"two steps", summaryOf(figures(nil), figures(nil)), false, nil, "2 steps"},
		{"another step", summaryOf(figures(func(f *metrics.StepFigures) { f.Step = "1500" })), false, nil, `"1500"`},
		{"settle samples outside the step", func() *metrics.Summary {
			s := summaryOf(figures(nil))
			s.Metrics["settle_duration"].Figures["count"] = 45001
			return s
		}(), false, nil, "45001 settle samples"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			step := capacityStep{TargetTPS: 2000}
			err := step.setFigures(c.summary)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if step.Held != c.held || !slices.Equal(step.Reasons, c.reasons) {
				t.Errorf("held %v reasons %q, want %v %q", step.Held, step.Reasons, c.held, c.reasons)
			}
		})
	}

	step := capacityStep{TargetTPS: 2000}
	if err := step.setFigures(summaryOf(figures(nil))); err != nil {
		t.Fatal(err)
	}
	if step.AchievedTPS != 1995 || step.Iterations != 45000 || step.CompletedInWindow != 39900 || step.WindowSeconds != 20 ||
		!step.WindowStart.Equal(start) {
		t.Errorf("achieved %v, iterations %v, completed in window %d, window %v from %s", step.AchievedTPS, step.Iterations,
			step.CompletedInWindow, step.WindowSeconds, step.WindowStart)
	}
	for name, pair := range map[string][2]*float64{"p50 accept": {step.P50AcceptMs, optional(30)}, "p95 accept": {step.P95AcceptMs, optional(48)},
		"p99 accept": {step.P99AcceptMs, optional(60)}, "p50 settle": {step.P50SettleMs, optional(31)},
		"p95 settle": {step.P95SettleMs, optional(49)}, "p99 settle": {step.P99SettleMs, optional(61)}, "error rate": {step.ErrorRate, optional(0)}} {
		if pair[0] == nil || *pair[0] != *pair[1] {
			t.Errorf("%s %v, want %v", name, formatOptional(pair[0], 1), *pair[1])
		}
	}
}

// TestMachineBusy: a step's busy share is the machine's CPU seconds over cores × the hold, unknown without the
// machine's sample or a hold, and the report prints it beside each step's CPU.
func TestMachineBusy(t *testing.T) {
	busy := machineBusy(map[string]float64{machineComponent: 30, "gateway-0": 10}, 2, 20)
	if busy == nil || *busy != 0.75 {
		t.Fatalf("30 CPU seconds of 2 cores over 20 s: busy %v, want 0.75", formatPercent(busy, 0))
	}
	if got := machineBusy(map[string]float64{"gateway-0": 10}, 2, 20); got != nil {
		t.Errorf("without the machine's sample: busy %v, want unknown", *got)
	}
	if got := machineBusy(map[string]float64{machineComponent: 30}, 2, 0); got != nil {
		t.Errorf("without a hold: busy %v, want unknown", *got)
	}
	step := capacityStep{TargetTPS: 3000, Held: true, MachineBusy: busy,
		CPUSeconds: map[string]float64{machineComponent: 30}, CPUPer1000: map[string]float64{machineComponent: 0.5}}
	unknown := capacityStep{TargetTPS: 3600, Held: true, CPUSeconds: map[string]float64{machineComponent: 1}, CPUPer1000: map[string]float64{machineComponent: 1}}
	page := (&capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: "batched"}, Steps: []capacityStep{step, unknown}}}}).markdown("/run")
	for _, want := range []string{"| machine | busy | records/batch | load avg |", "| 3000 | 0.500 (30.0) | 75% | 0.0 | 0.00 |", "| 3600 | 1.000 (1.0) | - |"} {
		if !strings.Contains(page, want) {
			t.Errorf("capacity.md lacks %q:\n%s", want, page)
		}
	}
}

// TestHeldAboveKnee: a mode whose knee was set by a failed step while higher steps held says how high it held and
// which steps failed on the way; a mode that held up to its knee and failed above it says nothing of the kind.
func TestHeldAboveKnee(t *testing.T) {
	mode := func(held ...bool) capacityModeResult {
		m := capacityModeResult{Mode: capacityMode{Name: "batched"}, AuditSummary: "AUDIT PASSED"}
		for i, h := range held {
			m.Steps = append(m.Steps, capacityStep{TargetTPS: 1000 * (i + 1), Held: h})
			if h && m.KneeTPS == 1000*i {
				m.KneeTPS = 1000 * (i + 1)
			}
		}
		return m
	}
	episodes := mode(true, true, false, true, false, true, false, false)
	if episodes.KneeTPS != 2000 {
		t.Fatalf("knee %d, want 2000", episodes.KneeTPS)
	}
	highest, failed := episodes.heldAboveKnee()
	if highest != 6000 || !slices.Equal(failed, []int{3000, 5000}) {
		t.Errorf("held above the knee up to %d, failed %v; want 6000, [3000 5000]", highest, failed)
	}
	page := (&capacityResult{Modes: []capacityModeResult{episodes}}).markdown("/run")
	if want := "A step above the knee held too, up to 6000 TPS, but 3000 and 5000 TPS below it did not: the knee is set by those steps."; !strings.Contains(page, want) {
		t.Errorf("capacity.md lacks %q:\n%s", want, page)
	}
	one := mode(true, false, true)
	if _, failed := one.heldAboveKnee(); !slices.Equal(failed, []int{2000}) ||
		!strings.Contains((&capacityResult{Modes: []capacityModeResult{one}}).markdown("/run"), "but 2000 TPS below it did not: the knee is set by that step.") {
		t.Errorf("one failed step below a held one: failed %v", failed)
	}
	clean := mode(true, true, true, false, false)
	if highest, failed := clean.heldAboveKnee(); highest != 0 || failed != nil {
		t.Errorf("a clean ladder: held above the knee up to %d, failed %v; want none", highest, failed)
	}
	if page := (&capacityResult{Modes: []capacityModeResult{clean}}).markdown("/run"); strings.Contains(page, "above the knee held") {
		t.Errorf("a clean ladder's report speaks of a step held above the knee:\n%s", page)
	}
}

func TestCPUColumns(t *testing.T) {
	columns := cpuColumns(map[string]float64{machineComponent: 3, loadComponent: 1, "worker-0": 1, "gateway-0": 1, "postgres": 1})
	if want := []string{"gateway-0", "postgres", "worker-0", loadComponent, machineComponent}; !slices.Equal(columns, want) {
		t.Errorf("columns %v, want %v", columns, want)
	}
}

// TestCapacityCeilingFraction: the knees are stated as fractions of the calibrated ceiling, the report prints the
// calibration, the ceiling, both knees and both ratios, and a batched knee under the required fraction of the
// ceiling fails the run (exit 3) whatever its TPS.
func TestCapacityCeilingFraction(t *testing.T) {
	fraction := func(knee int, ceiling float64) *float64 { f := float64(knee) / ceiling; return &f }
	calibration := &capacityCalibration{Cores: 2, CPUMsPerOperation: 0.5, CeilingTPS: 4000, Parts: []calibrationPart{
		{Name: "http", What: "a JSON POST", Operations: 10000, CPUMsPerOperation: 0.2, ByProcess: map[string]float64{"endpoint": 1, "load": 1}},
		{Name: "postgres", What: "one transfer", Operations: 20000, CPUMsPerOperation: 0.15, ByProcess: map[string]float64{"postgres": 2, "client": 1}},
		{Name: "redis", What: "one round trip", Operations: 30000, CPUMsPerOperation: 0.1, ByProcess: map[string]float64{"redis": 1.5, "client": 1.5}},
		{Name: "produce", What: "one record", Operations: 30000, CPUMsPerOperation: 0.05, ByProcess: map[string]float64{"broker": 1, "client": 0.5}},
	}}
	result := func(batchedKnee, naiveKnee int) *capacityResult {
		return &capacityResult{Calibration: calibration, Modes: []capacityModeResult{
			{Mode: capacityMode{Name: "batched"}, KneeTPS: batchedKnee, CeilingFraction: fraction(batchedKnee, 4000), AuditPassed: true},
			{Mode: capacityMode{Name: "naive"}, KneeTPS: naiveKnee, CeilingFraction: fraction(naiveKnee, 4000), AuditPassed: true},
		}}
	}
	o := Options{RequireRatio: 3, RequireCeilingFraction: 0.5}
	low := result(1500, 250)
	if code := low.judge(o, true); code != 3 || !strings.Contains(low.Verdict, "below 50% of the calibrated ceiling") {
		t.Errorf("knee 1500 of a 4000 ceiling: exit %d, verdict %q; want 3 saying the ceiling fraction was missed", code, low.Verdict)
	}
	high := result(2500, 500)
	if code := high.judge(o, true); code != 0 || high.Verdict != "passed" {
		t.Errorf("knee 2500 of a 4000 ceiling, 5x naive: exit %d, verdict %q; want 0, passed", code, high.Verdict)
	}
	page := high.markdown("/run")
	for _, want := range []string{"**Calibration**", "| postgres | one transfer | 20000 | 0.150 |", "ceiling: 2 cores / 0.500 ms = **4000 TPS**",
		"knee **2500 TPS** (62.5% of the ceiling)", "knee **500 TPS** (12.5% of the ceiling)", "ratio batched ÷ naive 5.00×",
		"batched 2500 ÷ 4000 = 0.625;", "naive 500 ÷ 4000 = 0.125;"} {
		if !strings.Contains(page, want) {
			t.Errorf("capacity.md lacks %q:\n%s", want, page)
		}
	}
}
