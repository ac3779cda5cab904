package capacity

import (
	"strings"
	"testing"
)

func busy(value float64) *float64 { return &value }

// TestAgingOf: the soak is compared with the held step nearest its rate (the lower of two as near; a failed step
// never), process by process, largest rise first and the machine last; without a held step or CPU figures there
// is nothing to compare.
func TestAgingOf(t *testing.T) {
	steps := []capacityStep{
		{TargetTPS: 5000, Held: true, MachineBusy: busy(0.73),
			CPUPer1000: map[string]float64{"postgres": 0.077, "redis": 0.032, "gateway-0": 0.089, "load": 0.039, "machine": 0.290}},
		{TargetTPS: 5500, Held: false, CPUPer1000: map[string]float64{"postgres": 0.2, "machine": 0.5}},
		{TargetTPS: 6000, Held: true, CPUPer1000: map[string]float64{"postgres": 0.085, "machine": 0.294}},
	}
	soak := &capacityStep{TargetTPS: 5250, MachineBusy: busy(0.89),
		CPUPer1000: map[string]float64{"postgres": 0.111, "redis": 0.044, "gateway-0": 0.087, "load": 0.044, "machine": 0.339, "settler": 0.01}}
	aging := agingOf(steps, soak)
	if aging == nil || aging.StepTPS != 5000 {
		t.Fatalf("compared with %+v, want the 5000 TPS step (the 5500 one failed; 5000 and 6000 are as near, the lower wins)", aging)
	}
	var order []string
	for _, cost := range aging.Costs {
		order = append(order, cost.Component)
	}
	// The settler was not measured in the step: not compared.
	if got := strings.Join(order, " "); got != "postgres redis load gateway-0 machine" {
		t.Errorf("order %q, want the largest rise first and the machine last", got)
	}
	if first := aging.Costs[0]; first.StepMs != 0.077 || first.SoakMs != 0.111 || first.ChangePercent == nil || *first.ChangePercent != 44.2 {
		t.Errorf("postgres %+v, want 0.077 -> 0.111, +44.2%%", first)
	}
	sentence := aging.sentence()
	for _, want := range []string{"beside the 5000 TPS step's", "the machine 0.339 against 0.290 (+16.9%), 89% busy against 73%;",
		"postgres 0.111 against 0.077 (+44.2%), redis 0.044 against 0.032 (+37.5%)", "gateway-0 0.087 against 0.089 (-2.2%)."} {
		if !strings.Contains(sentence, want) {
			t.Errorf("the sentence lacks %q: %s", want, sentence)
		}
	}
	page := (&soakResult{TargetTPS: 5250, Fraction: 0.7, HoldSeconds: 600, Reasons: []string{}, Step: soak, Aging: aging}).markdown()
	if !strings.Contains(page, sentence) {
		t.Errorf("the soak's report lacks the comparison:\n%s", page)
	}

	// Nearest from below when the soak is below every step: the lowest held.
	low := &capacityStep{TargetTPS: 175, CPUPer1000: map[string]float64{"machine": 0.6}}
	if aging := agingOf([]capacityStep{{TargetTPS: 250, Held: true, CPUPer1000: map[string]float64{"machine": 0.5}}}, low); aging == nil || aging.StepTPS != 250 {
		t.Errorf("soak below every step: %+v, want the 250 TPS step", aging)
	} else if sentence := aging.sentence(); !strings.Contains(sentence, "the machine 0.600 against 0.500 (+20.0%);") || strings.Contains(sentence, "by process") {
		t.Errorf("the machine alone: %s", sentence)
	}
	for name, c := range map[string]struct {
		steps []capacityStep
		soak  *capacityStep
	}{
		"no soak figures":   {steps, nil},
		"no soak CPU":       {steps, &capacityStep{TargetTPS: 5250}},
		"no held step":      {[]capacityStep{steps[1]}, soak},
		"no step CPU":       {[]capacityStep{{TargetTPS: 5000, Held: true}}, soak},
		"nothing in common": {[]capacityStep{{TargetTPS: 5000, Held: true, CPUPer1000: map[string]float64{"worker-0": 0.03}}}, soak},
	} {
		if aging := agingOf(c.steps, c.soak); aging != nil {
			t.Errorf("%s: %+v, want no comparison", name, aging)
		}
	}
	if page := (&soakResult{TargetTPS: 5250, Fraction: 0.7, Reasons: []string{}, Step: soak}).markdown(); strings.Contains(page, "younger stack") {
		t.Errorf("a soak without a comparison states one:\n%s", page)
	}
}
