package capacity

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// soakAging is the soak's CPU per request beside a step's: the held step
// nearest the soak's rate, which ran for a step's hold on a younger stack.
// A soak that fails on latency at 70 % of a knee its step held may have
// met a stack that costs more per request once its tables, their indexes
// and Redis have grown; this says how much more, and where.
type soakAging struct {
	// StepTPS is the step compared with (its target rate).
	StepTPS int `json:"step_tps"`
	// Costs are the CPU-ms per request of each process tree in the step's
	// hold and in the soak's, largest rise first, the machine last.
	Costs []agingCost `json:"costs"`
	// StepBusy and SoakBusy are the machine's busy share in each hold (nil:
	// not sampled).
	StepBusy *float64 `json:"step_machine_busy,omitempty"`
	SoakBusy *float64 `json:"soak_machine_busy,omitempty"`
}

// agingCost is one process tree's CPU per request in the step and in the
// soak.
type agingCost struct {
	Component string  `json:"component"`
	StepMs    float64 `json:"step_cpu_ms_per_request"`
	SoakMs    float64 `json:"soak_cpu_ms_per_request"`
	// ChangePercent is (SoakMs - StepMs) / StepMs in per cent; nil when the
	// step's figure is 0.
	ChangePercent *float64 `json:"change_percent"`
}

// agingOf compares the soak's hold with the held step nearest its rate (the
// lower of two as near); nil when no step held or either has no CPU
// figures. Only the process trees both holds measured are compared.
func agingOf(steps []capacityStep, soak *capacityStep) *soakAging {
	if soak == nil || len(soak.CPUPer1000) == 0 {
		return nil
	}
	// Steps are in ascending rate, so the first of two as near is the lower.
	var nearest *capacityStep
	nearestDistance := 0
	for i := range steps {
		step := &steps[i]
		if !step.Held || len(step.CPUPer1000) == 0 {
			continue
		}
		if distance := abs(step.TargetTPS - soak.TargetTPS); nearest == nil || distance < nearestDistance {
			nearest, nearestDistance = step, distance
		}
	}
	if nearest == nil {
		return nil
	}
	aging := &soakAging{StepTPS: nearest.TargetTPS, StepBusy: nearest.MachineBusy, SoakBusy: soak.MachineBusy}
	var machine *agingCost
	for _, name := range cpuColumns(soak.CPUPer1000) {
		stepMs, ok := nearest.CPUPer1000[name]
		if !ok {
			continue
		}
		cost := agingCost{Component: name, StepMs: stepMs, SoakMs: soak.CPUPer1000[name]}
		if stepMs > 0 {
			change := math.Round((cost.SoakMs-stepMs)/stepMs*1000) / 10
			cost.ChangePercent = &change
		}
		if name == machineComponent {
			machine = &cost
			continue
		}
		aging.Costs = append(aging.Costs, cost)
	}
	sort.SliceStable(aging.Costs, func(i, j int) bool {
		return aging.Costs[i].SoakMs-aging.Costs[i].StepMs > aging.Costs[j].SoakMs-aging.Costs[j].StepMs
	})
	if machine != nil {
		aging.Costs = append(aging.Costs, *machine)
	}
	if len(aging.Costs) == 0 {
		return nil
	}
	return aging
}

func abs(value int) int {
	if value < 0 {
		return -value
	}
	return value
}

// sentence is the report's line: the machine first, then each process tree.
func (a *soakAging) sentence() string {
	var machine string
	var parts []string
	for _, cost := range a.Costs {
		text := fmt.Sprintf("%.3f against %.3f", cost.SoakMs, cost.StepMs)
		if cost.ChangePercent != nil {
			text += fmt.Sprintf(" (%+.1f%%)", *cost.ChangePercent)
		}
		if cost.Component == machineComponent {
			machine = text
			continue
		}
		parts = append(parts, cost.Component+" "+text)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CPU-ms per request in the soak's hold beside the %d TPS step's (the held step nearest the soak's rate, measured on a younger stack):", a.StepTPS)
	if machine != "" {
		fmt.Fprintf(&b, " the machine %s", machine)
		if a.SoakBusy != nil && a.StepBusy != nil {
			fmt.Fprintf(&b, ", %.0f%% busy against %.0f%%", *a.SoakBusy*100, *a.StepBusy*100)
		}
		b.WriteString(";")
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, " by process, largest rise first: %s.", strings.Join(parts, ", "))
	}
	return b.String()
}
