package capacity

import (
	"fmt"
	"strings"
	"time"
)

// componentCost is one part of the pipeline's CPU per request at the batched
// knee beside what the bare program doing its job at the least costs
// (the calibration's parts, same run).
type componentCost struct {
	Part string `json:"part"`
	// Components are the processes summed (stack component names, "load").
	Components []string `json:"components"`
	// MsPerRequest is their CPU-ms per request at the knee; BareMs the
	// calibration's CPU-ms per operation of the bare program named by Bare.
	MsPerRequest float64 `json:"cpu_ms_per_request"`
	Bare         string  `json:"bare"`
	BareMs       float64 `json:"bare_cpu_ms_per_operation"`
	Ratio        float64 `json:"ratio"`
	// Target is the ratio the issue of capacity asks for (0: none).
	Target float64 `json:"target_ratio,omitempty"`
}

// Targets of the pipeline's parts against the bare programs (docs/performance.md).
const (
	gatewayTargetRatio = 3
	applyTargetRatio   = 2
)

// Latency targets at the knee (docs/performance.md).
const (
	kneeP95AcceptTargetMs = 100
	kneeP99SettleTargetMs = 500
)

// kneeCosts compares the batched knee's step with the calibration: nil
// without either.
func (r *capacityResult) kneeCosts() []componentCost {
	batched := r.mode(ModeBatched)
	if r.Calibration == nil || batched == nil || batched.KneeTPS == 0 {
		return nil
	}
	knee := batched.step(batched.KneeTPS)
	if knee == nil {
		return nil
	}
	parts := map[string]calibrationPart{}
	for _, part := range r.Calibration.Parts {
		parts[part.Name] = part
	}
	perOperation := func(part calibrationPart, process string) float64 {
		if part.Operations == 0 {
			return 0
		}
		if process == "" {
			return part.CPUMsPerOperation
		}
		return round3(part.ByProcess[process] * 1000 / float64(part.Operations))
	}
	sum := func(match func(string) bool) (float64, []string) {
		var total float64
		var names []string
		for _, name := range cpuColumns(knee.CPUPer1000) {
			if match(name) {
				total += knee.CPUPer1000[name]
				names = append(names, name)
			}
		}
		return round3(total), names
	}
	var costs []componentCost
	add := func(part string, match func(string) bool, bare string, bareMs, target float64) {
		ms, names := sum(match)
		if len(names) == 0 || bareMs <= 0 {
			return
		}
		costs = append(costs, componentCost{Part: part, Components: names, MsPerRequest: ms, Bare: bare, BareMs: bareMs,
			Ratio: round3(ms / bareMs), Target: target})
	}
	add("gateway", func(name string) bool { return strings.HasPrefix(name, "gateway-") },
		"the bare JSON POST endpoint's server", perOperation(parts["http"], "endpoint"), gatewayTargetRatio)
	add("worker + Postgres", func(name string) bool { return strings.HasPrefix(name, "worker-") || name == "postgres" },
		"the bare batched apply (Postgres and the applying process)", perOperation(parts["postgres"], ""), applyTargetRatio)
	add("Redis", func(name string) bool { return name == "redis" }, "one bare Redis round trip (Redis and client)", perOperation(parts["redis"], ""), 0)
	add("broker", func(name string) bool { return name == "broker" }, "one bare produce (broker and producer)", perOperation(parts["produce"], ""), 0)
	add("load generator", func(name string) bool { return name == loadComponent }, "the load engine against the bare endpoint", perOperation(parts["http"], "load"), 0)
	return costs
}

// kneeCostMarkdown is the report's table of kneeCosts and the knee's
// latencies against their targets.
func (r *capacityResult) kneeCostMarkdown() string {
	costs := r.kneeCosts()
	if len(costs) == 0 {
		return ""
	}
	batched := r.mode(ModeBatched)
	var b strings.Builder
	fmt.Fprintf(&b, "\n**CPU per request at the batched knee (%d TPS) beside the bare programs** (same run):\n\n", batched.KneeTPS)
	b.WriteString("| part | processes | CPU-ms per request | bare program | bare CPU-ms | ratio | target |\n|---|---|---:|---|---:|---:|---|\n")
	for _, c := range costs {
		target := "–"
		if c.Target > 0 {
			met := "met"
			if c.Ratio > c.Target {
				met = "**not met**"
			}
			target = fmt.Sprintf("≤ %g×: %s", c.Target, met)
		}
		fmt.Fprintf(&b, "| %s | %s | %.3f | %s | %.3f | %.2f× | %s |\n", c.Part, strings.Join(c.Components, ", "), c.MsPerRequest, c.Bare, c.BareMs, c.Ratio, target)
	}
	if knee := batched.step(batched.KneeTPS); knee != nil {
		fmt.Fprintf(&b, "\nAt the knee: p95 accept %s ms (target < %d: %s), p99 settle %s ms (target < %d: %s).\n",
			formatOptional(knee.P95AcceptMs, 1), kneeP95AcceptTargetMs, belowWord(knee.P95AcceptMs, kneeP95AcceptTargetMs),
			formatOptional(knee.P99SettleMs, 1), kneeP99SettleTargetMs, belowWord(knee.P99SettleMs, kneeP99SettleTargetMs))
		if batched.P95KneeTPS > 0 && batched.P95KneeTPS < batched.KneeTPS {
			fmt.Fprintf(&b, "The highest step with a p95 accept under %d ms, every step below it under it too: %d TPS", kneeP95AcceptTargetMs, batched.P95KneeTPS)
			if r.Calibration != nil && r.Calibration.CeilingTPS > 0 {
				fmt.Fprintf(&b, " (%.1f%% of the ceiling)", float64(batched.P95KneeTPS)/r.Calibration.CeilingTPS*100)
			}
			b.WriteString(".\n")
		}
		b.WriteString(holdSentences(knee, "the knee's hold"))
		b.WriteString(acceptMeaning(r.ClientWaitSeconds))
	}
	return b.String()
}

// acceptMeaning says what the accept figures measured: with a wait, the
// gateway holds its answer until the outcome, so the accept includes the
// settle, and the knee's p95 accept target is met by the outcome itself;
// without one, accept is the 202 and the load polls for the outcome.
func acceptMeaning(waitSeconds float64) string {
	if waitSeconds > 0 {
		return fmt.Sprintf("Each request asked the gateway to hold its answer up to %s for the outcome (`client.wait`, "+
			"`Prefer: wait`), so its first answer was nearly always the final one: the accept figures include the settle "+
			"(the worker's batch and commit), not only the broker's acknowledgement.\n",
			time.Duration(waitSeconds*float64(time.Second)))
	}
	return "The requests did not wait for their outcome (`client.wait` 0): accept is the gateway's 202, after the " +
		"broker's acknowledgement; settle is the outcome, found by polling.\n"
}

func belowWord(value *float64, target float64) string {
	switch {
	case value == nil:
		return "no data"
	case *value < target:
		return "met"
	default:
		return "**not met**"
	}
}
