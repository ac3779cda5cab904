package generator

import (
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ledgerproof/ledgerproof/load/scenario"
)

func constantSchedule(rate float64, duration time.Duration) scenario.Schedule {
	return scenario.Schedule{Executor: scenario.ExecutorConstantArrivalRate, Rate: rate, Duration: duration}
}

func rampingSchedule(start float64, stages ...scenario.Stage) scenario.Schedule {
	return scenario.Schedule{Executor: scenario.ExecutorRampingArrivalRate, StartRate: start, Stages: stages}
}

func stepsSchedule(ramp, hold, gap time.Duration, steps ...float64) scenario.Schedule {
	return scenario.Schedule{Executor: scenario.ExecutorCapacitySteps, Steps: steps, StepRamp: ramp, StepHold: hold, StepGap: gap}
}

func mustPlan(t *testing.T, schedule scenario.Schedule, share float64) *Plan {
	t.Helper()
	plan, err := NewPlan(schedule, share)
	if err != nil {
		t.Fatalf("NewPlan(%+v, %v): %v", schedule, share, err)
	}
	return plan
}

// checkDue checks that Due numbers exactly Total iterations, each within the schedule, in non-decreasing order,
// and nothing before the first or after the last.
func checkDue(t *testing.T, plan *Plan) {
	t.Helper()
	if _, _, ok := plan.Due(0); ok {
		t.Errorf("Due(0) is ok: iterations are numbered from 1")
	}
	if _, _, ok := plan.Due(plan.Total() + 1); ok {
		t.Errorf("Due(%d) is ok beyond the total %d", plan.Total()+1, plan.Total())
	}
	previous := time.Duration(0)
	for n := int64(1); n <= plan.Total(); n++ {
		at, _, ok := plan.Due(n)
		if !ok {
			t.Fatalf("Due(%d) not ok within the total %d", n, plan.Total())
		}
		if at < 0 || at > plan.Length() {
			t.Fatalf("Due(%d) = %s: outside the schedule [0, %s]", n, at, plan.Length())
		}
		if at < previous {
			t.Fatalf("Due(%d) = %s is before Due(%d) = %s", n, at, n-1, previous)
		}
		previous = at
	}
}

// dueBy counts the iterations due at or before offset.
func dueBy(plan *Plan, offset time.Duration) int64 {
	var count int64
	for n := int64(1); n <= plan.Total(); n++ {
		if at, _, _ := plan.Due(n); at <= offset {
			count++
		}
	}
	return count
}

func TestPlanIterationsAreTheIntegralOfTheRate(t *testing.T) {
	tests := []struct {
		name     string
		schedule scenario.Schedule
		// total is the integral of the rate over the schedule; length its duration.
		total  int64
		length time.Duration
		// halfway is the integral over the first half of the schedule (the shape of the rate, not only its sum).
		halfway int64
	}{
		{name: "constant 100/s for 2s", schedule: constantSchedule(100, 2*time.Second), total: 200, length: 2 * time.Second, halfway: 100},
		{name: "ramp 0 to 100/s over 2s", schedule: rampingSchedule(0, scenario.Stage{Target: 100, Duration: 2 * time.Second}),
			total: 100, length: 2 * time.Second, halfway: 25},
		{name: "ramp down 100 to 0/s over 2s", schedule: rampingSchedule(100, scenario.Stage{Target: 0, Duration: 2 * time.Second}),
			total: 100, length: 2 * time.Second, halfway: 75},
		{name: "up, hold, down", schedule: rampingSchedule(0,
			scenario.Stage{Target: 100, Duration: time.Second}, scenario.Stage{Target: 100, Duration: time.Second},
			scenario.Stage{Target: 0, Duration: time.Second}, scenario.Stage{Target: 0, Duration: time.Second}),
			total: 200, length: 4 * time.Second, halfway: 150},
		// 3→21/s over 2.4s is 28.8 iterations, 21→0/s over 2.4s 25.2: the last iteration is due at the very end of
		// a ramp down to 0, where floating point once made its time NaN (due 292 years before the start).
		{name: "ramp down to 0 ending on a whole iteration", schedule: rampingSchedule(3,
			scenario.Stage{Target: 21, Duration: 2400 * time.Millisecond}, scenario.Stage{Target: 0, Duration: 2400 * time.Millisecond}),
			total: 54, length: 4800 * time.Millisecond, halfway: 28},
		{name: "a stage of 0s jumps to its target", schedule: rampingSchedule(0,
			scenario.Stage{Target: 60, Duration: 0}, scenario.Stage{Target: 60, Duration: 2 * time.Second}),
			total: 120, length: 2 * time.Second, halfway: 60},
		{name: "capacity steps 10 and 20/s: ramps 1s, holds 2s, gap 1s", schedule: stepsSchedule(time.Second, 2*time.Second, time.Second, 10, 20),
			// 5 (ramp 0→10) + 20 (hold) + 0 (gap) + 15 (ramp 10→20) + 40 (hold); no gap after the last step.
			total: 80, length: 7 * time.Second, halfway: 5 + 20 + 0 + 0},
		{name: "capacity steps without ramps nor gaps", schedule: stepsSchedule(0, time.Second, 0, 30, 50),
			total: 80, length: 2 * time.Second, halfway: 30},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			plan := mustPlan(t, test.schedule, 1)
			if plan.Total() != test.total || plan.Length() != test.length {
				t.Fatalf("total %d over %s, want %d over %s", plan.Total(), plan.Length(), test.total, test.length)
			}
			checkDue(t, plan)
			// Iterations due exactly at the half may fall on either side of it by rounding: ±1.
			if got := dueBy(plan, test.length/2); got < test.halfway-1 || got > test.halfway+1 {
				t.Errorf("%d iterations due in the first half, want %d (the integral of the rate)", got, test.halfway)
			}
			if last, _, _ := plan.Due(plan.Total()); plan.Length()-last > time.Second {
				t.Errorf("the last iteration is due at %s, long before the end %s", last, plan.Length())
			}

			half := mustPlan(t, test.schedule, 0.5)
			if half.Total() != test.total/2 || half.Length() != test.length {
				t.Errorf("share 1/2: total %d over %s, want %d over %s", half.Total(), half.Length(), test.total/2, test.length)
			}
			checkDue(t, half)
		})
	}
}

func TestPlanConstantRateIsEvenlySpaced(t *testing.T) {
	plan := mustPlan(t, constantSchedule(100, 2*time.Second), 1)
	for _, n := range []int64{1, 50, 100, 199, 200} {
		at, step, ok := plan.Due(n)
		want := time.Duration(n) * 10 * time.Millisecond
		if !ok || step != "" || (at-want).Abs() > time.Microsecond {
			t.Errorf("Due(%d) = %s %q %v, want %s \"\" true", n, at, step, ok, want)
		}
	}
}

func TestPlanShareSplitsTheSchedule(t *testing.T) {
	tests := []struct {
		name     string
		schedule scenario.Schedule
		shares   int
	}{
		{name: "constant in 2", schedule: constantSchedule(100, 2*time.Second), shares: 2},
		{name: "constant in 3", schedule: constantSchedule(300, time.Second), shares: 3},
		{name: "ramp in 4", schedule: rampingSchedule(0, scenario.Stage{Target: 400, Duration: time.Second}), shares: 4},
		{name: "steps in 2", schedule: stepsSchedule(time.Second, time.Second, time.Second, 100, 200), shares: 2},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			whole := mustPlan(t, test.schedule, 1)
			part := mustPlan(t, test.schedule, 1/float64(test.shares))
			// Each of N processes runs 1/N of the iterations (the floor of it at most one short).
			if got, want := part.Total()*int64(test.shares), whole.Total(); got > want || got < want-int64(test.shares) {
				t.Errorf("%d shares of %d iterations = %d, want about %d", test.shares, part.Total(), got, want)
			}
			if math.Abs(part.MaxRate()*float64(test.shares)-whole.MaxRate()) > 1e-9 {
				t.Errorf("max rate %v per share, %v in all", part.MaxRate(), whole.MaxRate())
			}
			if part.Length() != whole.Length() {
				t.Errorf("a share lasts %s, the schedule %s", part.Length(), whole.Length())
			}
		})
	}
}

func TestPlanCapacitySteps(t *testing.T) {
	plan := mustPlan(t, stepsSchedule(time.Second, 2*time.Second, time.Second, 10, 20), 1)
	want := []StepInfo{
		{Label: "10", Rate: 10, HoldStart: time.Second, HoldEnds: 3 * time.Second},
		{Label: "20", Rate: 20, HoldStart: 5 * time.Second, HoldEnds: 7 * time.Second},
	}
	steps := plan.Steps()
	if len(steps) != len(want) {
		t.Fatalf("steps %+v, want %+v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, steps[i], want[i])
		}
	}
	// Every iteration is tagged with its step: the ramp's and the hold's, none in the gap.
	perStep := map[string]int64{}
	for n := int64(1); n <= plan.Total(); n++ {
		at, step, _ := plan.Due(n)
		perStep[step]++
		if step == "10" && at > 3*time.Second || step == "20" && at < 4*time.Second {
			t.Errorf("iteration %d at %s tagged step %q: outside that step's time", n, at, step)
		}
	}
	if perStep["10"] != 25 || perStep["20"] != 55 || len(perStep) != 2 {
		t.Errorf("iterations per step %v, want 10: 25 (5 ramp + 20 hold), 20: 55 (15 ramp + 40 hold)", perStep)
	}
	// The holds are at the step's rate.
	for _, step := range steps {
		middle := (step.HoldStart + step.HoldEnds) / 2
		if got := plan.RateAt(middle); got != step.Rate {
			t.Errorf("rate in the middle of step %s's hold: %v, want %v", step.Label, got, step.Rate)
		}
	}
	if got := mustPlan(t, constantSchedule(10, time.Second), 1).Steps(); len(got) != 0 {
		t.Errorf("a constant rate has steps %+v", got)
	}
	// A share scales the rates of the plan, not the steps' labels.
	if got := mustPlan(t, stepsSchedule(time.Second, 2*time.Second, time.Second, 10, 20), 0.5).Steps(); got[1].Label != "20" {
		t.Errorf("share 1/2: steps %+v, want labels as the file writes them", got)
	}
}

func TestPlanRateAt(t *testing.T) {
	ramp := rampingSchedule(0, scenario.Stage{Target: 100, Duration: 2 * time.Second}, scenario.Stage{Target: 100, Duration: time.Second})
	steps := stepsSchedule(time.Second, time.Second, time.Second, 10, 20)
	tests := []struct {
		name     string
		schedule scenario.Schedule
		share    float64
		offset   time.Duration
		want     float64
	}{
		{name: "constant at the start", schedule: constantSchedule(100, 2*time.Second), share: 1, offset: 0, want: 100},
		{name: "constant in the middle", schedule: constantSchedule(100, 2*time.Second), share: 1, offset: time.Second, want: 100},
		{name: "constant after the end", schedule: constantSchedule(100, 2*time.Second), share: 1, offset: 2 * time.Second, want: 0},
		{name: "constant before the start", schedule: constantSchedule(100, 2*time.Second), share: 1, offset: -time.Second, want: 0},
		{name: "constant, share 1/2", schedule: constantSchedule(100, 2*time.Second), share: 0.5, offset: time.Second, want: 50},
		{name: "ramp at a quarter", schedule: ramp, share: 1, offset: 500 * time.Millisecond, want: 25},
		{name: "ramp halfway", schedule: ramp, share: 1, offset: time.Second, want: 50},
		{name: "ramp's hold", schedule: ramp, share: 1, offset: 2500 * time.Millisecond, want: 100},
		{name: "ramp halfway, share 1/4", schedule: ramp, share: 0.25, offset: time.Second, want: 12.5},
		{name: "step's ramp", schedule: steps, share: 1, offset: 500 * time.Millisecond, want: 5},
		{name: "step's gap", schedule: steps, share: 1, offset: 2500 * time.Millisecond, want: 0},
		{name: "second step's ramp from the first's rate", schedule: steps, share: 1, offset: 3500 * time.Millisecond, want: 15},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := mustPlan(t, test.schedule, test.share).RateAt(test.offset); math.Abs(got-test.want) > 1e-9 {
				t.Errorf("RateAt(%s) = %v, want %v", test.offset, got, test.want)
			}
		})
	}
	if got := mustPlan(t, ramp, 1).MaxRate(); got != 100 {
		t.Errorf("MaxRate %v, want 100", got)
	}
}

func TestNewPlanRefuses(t *testing.T) {
	tests := []struct {
		name     string
		schedule scenario.Schedule
		share    float64
		want     string
	}{
		{name: "share 0", schedule: constantSchedule(10, time.Second), share: 0, want: "share"},
		{name: "share above 1", schedule: constantSchedule(10, time.Second), share: 1.5, want: "share"},
		{name: "closed model", schedule: scenario.Schedule{Executor: scenario.ExecutorClosed, VUs: 1, Iterations: 1}, share: 1,
			want: "not an arrival-rate executor"},
		{name: "stages of no time", schedule: rampingSchedule(0, scenario.Stage{Target: 10}), share: 1, want: "no time to run"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := NewPlan(test.schedule, test.share)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("NewPlan: %v, want an error containing %q", err, test.want)
			}
		})
	}
}

// TestPlanDueProperties draws ramping schedules (ups, downs, holds, jumps, pauses) and shares, and checks that
// every iteration is due once, in order, within the schedule, and that the total is the integral of the rate.
func TestPlanDueProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := float64(rapid.SampledFrom([]int{0, 3, 10, 100}).Draw(t, "start"))
		stageCount := rapid.IntRange(1, 4).Draw(t, "stages")
		stages := make([]scenario.Stage, stageCount)
		integral := 0.0
		previous := start
		for i := range stages {
			stages[i] = scenario.Stage{
				// Round values, as files have them: a ramp then often ends exactly on a whole iteration.
				Target:   float64(rapid.SampledFrom([]int{0, 0, 1, 7, 21, 35, 100, 300}).Draw(t, "target")),
				Duration: time.Duration(rapid.IntRange(0, 30).Draw(t, "tenths")) * 100 * time.Millisecond,
			}
			integral += (previous + stages[i].Target) / 2 * stages[i].Duration.Seconds()
			previous = stages[i].Target
		}
		share := 1 / float64(rapid.IntRange(1, 7).Draw(t, "shares"))
		plan, err := NewPlan(rampingSchedule(start, stages...), share)
		if err != nil {
			// Only a schedule of no time at all is refused.
			if !strings.Contains(err.Error(), "no time to run") {
				t.Fatalf("NewPlan: %v", err)
			}
			return
		}
		if want := integral * share; math.Abs(float64(plan.Total())-want) > 1+1e-6 {
			t.Fatalf("total %d, integral %v", plan.Total(), want)
		}
		previousAt := time.Duration(0)
		for n := int64(1); n <= plan.Total(); n++ {
			at, _, ok := plan.Due(n)
			if !ok || at < previousAt || at > plan.Length() {
				t.Fatalf("Due(%d) = %s %v after %s, schedule length %s", n, at, ok, previousAt, plan.Length())
			}
			previousAt = at
		}
	})
}
