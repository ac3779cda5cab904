package capacity

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestRefinementRate(t *testing.T) {
	for _, c := range []struct{ held, failed, want int }{
		{5000, 6000, 5500},
		{5500, 6000, 5750},
		{5000, 5500, 5250},
		{1250, 1500, 1350}, // 1,375 rounded down to 50
		{1000, 1100, 1050},
		{1000, 1050, 0}, // nothing strictly between at 50 TPS
		{1000, 1099, 0},
		{7500, 10000, 8750},
	} {
		if got := refinementRate(c.held, c.failed); got != c.want {
			t.Errorf("refinementRate(%d, %d) = %d, want %d", c.held, c.failed, got, c.want)
		}
	}
}

// fakeClimb runs climb with steps that hold at or below holdsUpTo, except the rates in episodes (which fail), and
// returns what climb returned and the rates in the order they ran.
func fakeClimb(t *testing.T, o Options, holdsUpTo int, episodes ...int) ([]capacityStep, string, []string) {
	t.Helper()
	var order []string
	steps, stopped, err := climb(context.Background(), o, ModeBatched, func(index, rate int) (capacityStep, error) {
		order = append(order, fmt.Sprintf("%d:%d", index, rate))
		return capacityStep{TargetTPS: rate, Held: rate <= holdsUpTo && !slices.Contains(episodes, rate)}, nil
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return steps, stopped, order
}

func rates(steps []capacityStep) (all, refinements []int) {
	for _, step := range steps {
		all = append(all, step.TargetTPS)
		if step.Refinement {
			refinements = append(refinements, step.TargetTPS)
		}
	}
	return all, refinements
}

// TestClimbRefinesTheKnee: right after the first failed step, the refinement steps bisect between it and the held
// step below, each run numbered in the order it ran (its seed's offset); the steps come back in ascending rate, the
// knee among them; a later failure refines nothing; Refine 0 is the plain ladder.
func TestClimbRefinesTheKnee(t *testing.T) {
	ladder := Options{Steps: []int{1000, 2000, 3000, 4000, 5000}, FailuresToStop: 2, Refine: 2}

	steps, stopped, order := fakeClimb(t, ladder, 2600)
	if want := []string{"0:1000", "1:2000", "2:3000", "3:2500", "4:2750", "5:4000"}; !slices.Equal(order, want) {
		t.Errorf("ran %v, want %v", order, want)
	}
	all, refinements := rates(steps)
	if !slices.Equal(all, []int{1000, 2000, 2500, 2750, 3000, 4000}) || !slices.Equal(refinements, []int{2500, 2750}) {
		t.Errorf("steps %v (refinements %v), want 1000 2000 2500 2750 3000 4000 (2500 2750)", all, refinements)
	}
	if knee := kneeOf(steps); knee != 2500 {
		t.Errorf("knee %d, want 2500", knee)
	}
	if !strings.Contains(stopped, "stopped after 2 consecutive failed steps (3000 and 4000 TPS)") {
		t.Errorf("stopped early: %q", stopped)
	}

	// A refinement that fails bisects downwards.
	steps, _, _ = fakeClimb(t, ladder, 2300)
	if all, _ := rates(steps); !slices.Equal(all, []int{1000, 2000, 2250, 2500, 3000, 4000}) || kneeOf(steps) != 2250 {
		t.Errorf("steps %v, knee %d; want 1000 2000 2250 2500 3000 4000, knee 2250", all, kneeOf(steps))
	}

	// The knee is set by the first failure: a step that failed by an episode is refined, a later failure is not.
	three := ladder
	three.FailuresToStop = 3
	steps, _, order = fakeClimb(t, three, 4000, 2000)
	if want := []string{"0:1000", "1:2000", "2:1500", "3:1750", "4:3000", "5:4000", "6:5000"}; !slices.Equal(order, want) {
		t.Errorf("ran %v, want %v", order, want)
	}
	if knee := kneeOf(steps); knee != 1750 {
		t.Errorf("knee %d, want 1750", knee)
	}

	plain := ladder
	plain.Refine = 0
	steps, _, _ = fakeClimb(t, plain, 2600)
	if all, refinements := rates(steps); !slices.Equal(all, []int{1000, 2000, 3000, 4000}) || refinements != nil || kneeOf(steps) != 2000 {
		t.Errorf("without refinement: steps %v (refinements %v), knee %d", all, refinements, kneeOf(steps))
	}

	// The first step failing leaves nothing to refine from.
	steps, _, order = fakeClimb(t, ladder, 500)
	if want := []string{"0:1000", "1:2000"}; !slices.Equal(order, want) || kneeOf(steps) != 0 {
		t.Errorf("ran %v (knee %d), want %v and knee 0", order, kneeOf(steps), want)
	}
}

// TestRefinementInTheReport: a refinement step is marked in the report's tables, and the mode's line says which
// step bounds its knee from above.
func TestRefinementInTheReport(t *testing.T) {
	steps, _, _ := fakeClimb(t, Options{Steps: []int{1000, 2000, 3000}, FailuresToStop: 2, Refine: 1}, 2600)
	mode := capacityModeResult{Mode: capacityMode{Name: ModeBatched}, Steps: steps, KneeTPS: kneeOf(steps), AuditSummary: "AUDIT PASSED"}
	page := (&capacityResult{Refine: 1, Modes: []capacityModeResult{mode}}).markdown("/run")
	for _, want := range []string{
		"knee **2500 TPS** (the lowest step run above it, 3000 TPS, did not hold)",
		"| 2500 (refinement) |",
		"up to 1 refinement steps",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("capacity.md lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "| 2000 (refinement) |") {
		t.Errorf("a ladder step is marked as a refinement:\n%s", page)
	}
}

// TestP95Knee: the highest step held with a p95 accept under the knee's target, every step below it likewise, is
// stated under the knee when it is below the knee, with its share of the ceiling; a step over the target below a
// step under it ends the count.
func TestP95Knee(t *testing.T) {
	step := func(rate int, p95 float64, held bool) capacityStep {
		return capacityStep{TargetTPS: rate, P95AcceptMs: &p95, Held: held, CPUPer1000: map[string]float64{"gateway-0": 0.1}}
	}
	steps := []capacityStep{step(1000, 40, true), step(2000, 90, true), step(3000, 120, true), step(3500, 95, true), step(4000, 900, false)}
	if knee, p95Knee := kneeOf(steps), p95KneeOf(steps); knee != 3500 || p95Knee != 2000 {
		t.Fatalf("knee %d, p95 knee %d; want 3500 and 2000", knee, p95Knee)
	}
	if p95KneeOf([]capacityStep{step(1000, 99.9, false)}) != 0 || p95KneeOf([]capacityStep{step(1000, 100, true)}) != 0 {
		t.Error("a failed step, or one at the target, counts")
	}
	result := &capacityResult{Calibration: &capacityCalibration{Cores: 2, CPUMsPerOperation: 0.2, CeilingTPS: 10000,
		Parts: []calibrationPart{{Name: "http", Operations: 1, CPUMsPerOperation: 0.1, ByProcess: map[string]float64{"endpoint": 1}}}},
		Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}, Steps: steps, KneeTPS: 3500, P95KneeTPS: 2000}}}
	if want := "The highest step with a p95 accept under 100 ms, every step below it under it too: 2000 TPS (20.0% of the ceiling)."; !strings.Contains(result.kneeCostMarkdown(), want) {
		t.Errorf("report lacks %q:\n%s", want, result.kneeCostMarkdown())
	}
	result.Modes[0].P95KneeTPS = 3500
	if page := result.kneeCostMarkdown(); strings.Contains(page, "The highest step with a p95") {
		t.Errorf("the p95 knee is the knee, yet stated apart:\n%s", page)
	}
}
