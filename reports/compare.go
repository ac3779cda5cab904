package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// CompareOptions say what counts as a regression.
type CompareOptions struct {
	// MaxRegressionPercent is the largest allowed regression of the
	// candidate's p95 latency (higher) and mean throughput (lower), in
	// percent of the baseline's. Nil: the figures are compared and shown,
	// never judged. Violated invariants in the candidate are always a
	// finding, whatever this says.
	MaxRegressionPercent *float64
}

// Comparison is a candidate run set against a baseline run.
type Comparison struct {
	Baseline             string   `json:"baseline"`
	Candidate            string   `json:"candidate"`
	BaselineVerdict      string   `json:"baseline_verdict"`
	CandidateVerdict     string   `json:"candidate_verdict"`
	MaxRegressionPercent *float64 `json:"max_regression_percent,omitempty"`
	// Metrics are the figures side by side, with their deltas.
	Metrics []MetricDelta `json:"metrics"`
	// Invariants are the violation counts side by side.
	Invariants []InvariantDelta `json:"invariants"`
	// CandidateViolations counts the candidate's violations over every
	// invariant (an audit that did not pass without counting any counts as
	// one).
	CandidateViolations int64 `json:"candidate_violations"`
	// Regressions say, one sentence each, what regressed beyond the
	// limit; Regressed is true when there is any.
	Regressions []string `json:"regressions"`
	Regressed   bool     `json:"regressed"`
}

// MetricDelta is one figure of both runs.
type MetricDelta struct {
	Name      string  `json:"name"`
	Unit      string  `json:"unit"`
	Baseline  float64 `json:"baseline"`
	Candidate float64 `json:"candidate"`
	Delta     float64 `json:"delta"`
	// DeltaPercent is the delta in percent of the baseline; nil when the
	// baseline is zero.
	DeltaPercent *float64 `json:"delta_percent,omitempty"`
	// Better is "higher" or "lower": which way is an improvement.
	Better string `json:"better"`
	// Gated is true for the figures --max-regression judges; Regressed
	// when a gated figure moved the wrong way beyond the limit.
	Gated     bool `json:"gated"`
	Regressed bool `json:"regressed"`
}

// InvariantDelta is one invariant's violations in both runs.
type InvariantDelta struct {
	Name                string `json:"name"`
	BaselineStatus      string `json:"baseline_status"`
	CandidateStatus     string `json:"candidate_status"`
	BaselineViolations  int64  `json:"baseline_violations"`
	CandidateViolations int64  `json:"candidate_violations"`
}

// ParsePercent reads a percentage: "10%", "10" or "2.5 %" are 10, 10, 2.5.
func ParsePercent(text string) (float64, error) {
	number := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(text), "%"))
	value, err := strconv.ParseFloat(number, 64)
	if err != nil || math.IsNaN(value) || math.IsInf(value, 0) || value < 0 {
		return 0, fmt.Errorf("%q is not a percentage (want e.g. 10%%)", text)
	}
	return value, nil
}

// Compare analyses two run directories (writing nothing into them) and
// compares the candidate with the baseline: mean throughput, latency
// percentiles, error rates, operations by outcome and invariant
// violations.
func Compare(baselineDir, candidateDir string, options CompareOptions) (Comparison, error) {
	baseline, err := Analyze(baselineDir)
	if err != nil {
		return Comparison{}, fmt.Errorf("baseline %s: %w", baselineDir, err)
	}
	candidate, err := Analyze(candidateDir)
	if err != nil {
		return Comparison{}, fmt.Errorf("candidate %s: %w", candidateDir, err)
	}
	return compareSummaries(baselineDir, candidateDir, baseline, candidate, options), nil
}

// moneyOutcomes counts a summary's money operations (signups excluded) by
// outcome.
func moneyOutcomes(summary Summary) map[string]int64 {
	counts := map[string]int64{}
	for kind, byOutcome := range summary.Operations {
		if kind == invariants.KindSignup {
			continue
		}
		for outcome, n := range byOutcome {
			counts[outcome] += n
		}
	}
	return counts
}

func compareSummaries(baselineDir, candidateDir string, baseline, candidate Summary, options CompareOptions) Comparison {
	c := Comparison{Baseline: baselineDir, Candidate: candidateDir, BaselineVerdict: baseline.Verdict,
		CandidateVerdict: candidate.Verdict, MaxRegressionPercent: options.MaxRegressionPercent,
		Regressions: []string{}, Invariants: []InvariantDelta{}}
	add := func(name, unit, better string, gated bool, b, k float64) {
		metric := MetricDelta{Name: name, Unit: unit, Baseline: b, Candidate: k, Delta: round(k-b, 6), Better: better, Gated: gated}
		if b != 0 {
			percent := round((k-b)/b*100, 2)
			metric.DeltaPercent = &percent
		}
		if gated && options.MaxRegressionPercent != nil && metric.DeltaPercent != nil {
			worse := *metric.DeltaPercent
			if better == "higher" {
				worse = -worse
			}
			if worse > *options.MaxRegressionPercent {
				metric.Regressed = true
				c.Regressions = append(c.Regressions, fmt.Sprintf("%s %s by %.1f %% (%s → %s %s; limit %.1f %%)",
					name, map[string]string{"higher": "fell", "lower": "rose"}[better], worse,
					formatFigure(b), formatFigure(k), unit, *options.MaxRegressionPercent))
			}
		}
		c.Metrics = append(c.Metrics, metric)
	}
	add("mean throughput", "ops/s", "higher", true, baseline.Throughput.MeanPerSecond, candidate.Throughput.MeanPerSecond)
	add("settled throughput", "ops/s", "higher", false, baseline.Throughput.SettledPerSecond, candidate.Throughput.SettledPerSecond)
	add("peak throughput", "ops/s", "higher", false, baseline.Throughput.PeakPerSecond, candidate.Throughput.PeakPerSecond)
	add("latency p50", "ms", "lower", false, baseline.LatencyMs.P50, candidate.LatencyMs.P50)
	add("latency p95", "ms", "lower", true, baseline.LatencyMs.P95, candidate.LatencyMs.P95)
	add("latency p99", "ms", "lower", false, baseline.LatencyMs.P99, candidate.LatencyMs.P99)
	add("not settled (fail+info)", "%", "lower", false, round(baseline.ErrorRate*100, 4), round(candidate.ErrorRate*100, 4))
	add("HTTP 5xx / no answer", "%", "lower", false, round(baseline.HTTPErrorRate*100, 4), round(candidate.HTTPErrorRate*100, 4))
	baseOutcomes, candidateOutcomes := moneyOutcomes(baseline), moneyOutcomes(candidate)
	add("operations", "ops", "higher", false, float64(baseline.Throughput.Operations), float64(candidate.Throughput.Operations))
	for _, outcome := range outcomeNames {
		better := "lower"
		if outcome == invariants.OutcomeOK {
			better = "higher"
		}
		add("operations "+outcome, "ops", better, false, float64(baseOutcomes[outcome]), float64(candidateOutcomes[outcome]))
	}
	add("faults", "windows", "", false, float64(baseline.Faults), float64(candidate.Faults))

	byName := map[string]*InvariantDelta{}
	var names []string
	get := func(name string) *InvariantDelta {
		if delta, ok := byName[name]; ok {
			return delta
		}
		delta := &InvariantDelta{Name: name, BaselineStatus: notRecorded, CandidateStatus: notRecorded}
		byName[name] = delta
		names = append(names, name)
		return delta
	}
	for _, invariant := range baseline.Invariants {
		delta := get(invariant.Name)
		delta.BaselineStatus, delta.BaselineViolations = invariant.Status, invariant.ViolationCount
	}
	for _, invariant := range candidate.Invariants {
		delta := get(invariant.Name)
		delta.CandidateStatus, delta.CandidateViolations = invariant.Status, invariant.ViolationCount
		c.CandidateViolations += invariant.ViolationCount
	}
	for _, name := range names {
		c.Invariants = append(c.Invariants, *byName[name])
	}
	if c.CandidateViolations == 0 && candidate.Verdict == VerdictInvariantViolated {
		c.CandidateViolations = 1
	}
	if c.CandidateViolations > 0 {
		var violated []string
		for _, delta := range c.Invariants {
			if delta.CandidateViolations > 0 {
				violated = append(violated, fmt.Sprintf("%s (%d)", delta.Name, delta.CandidateViolations))
			}
		}
		sort.Strings(violated)
		c.Regressions = append(c.Regressions, "the candidate violates invariants: "+nonEmpty(strings.Join(violated, ", "), candidate.Verdict))
	}
	c.Regressed = len(c.Regressions) > 0
	return c
}

func (m MetricDelta) percentText() string {
	if m.DeltaPercent == nil {
		return "—"
	}
	return fmt.Sprintf("%+.1f %%", *m.DeltaPercent)
}

func (m MetricDelta) flag() string {
	switch {
	case m.Regressed:
		return "REGRESSION"
	case m.Gated:
		return "gated"
	}
	return ""
}

func (c Comparison) limitText() string {
	if c.MaxRegressionPercent == nil {
		return "no --max-regression: figures shown, not judged"
	}
	return fmt.Sprintf("max regression %.1f %% (p95 latency, mean throughput)", *c.MaxRegressionPercent)
}

// Text is the comparison as an aligned table for a terminal.
func (c Comparison) Text() string {
	var out strings.Builder
	fmt.Fprintf(&out, "baseline:  %s (%s)\ncandidate: %s (%s)\n%s\n\n", c.Baseline, c.BaselineVerdict, c.Candidate, c.CandidateVerdict, c.limitText())
	row := "%-34s %12s %12s %12s %10s  %s\n"
	fmt.Fprintf(&out, row, "metric", "baseline", "candidate", "delta", "delta %", "")
	for _, m := range c.Metrics {
		fmt.Fprintf(&out, row, m.Name+" ("+m.Unit+")", formatFigure(m.Baseline), formatFigure(m.Candidate), formatSigned(m.Delta), m.percentText(), m.flag())
	}
	fmt.Fprintf(&out, "\n%-34s %12s %12s\n", "invariant (violations)", "baseline", "candidate")
	for _, delta := range c.Invariants {
		fmt.Fprintf(&out, "%-34s %12s %12s\n", delta.Name, fmt.Sprintf("%d %s", delta.BaselineViolations, delta.BaselineStatus),
			fmt.Sprintf("%d %s", delta.CandidateViolations, delta.CandidateStatus))
	}
	if c.Regressed {
		fmt.Fprintln(&out, "\nREGRESSION:")
		for _, regression := range c.Regressions {
			fmt.Fprintf(&out, "  - %s\n", regression)
		}
	} else {
		fmt.Fprintln(&out, "\nno regression")
	}
	return out.String()
}

// formatFigure writes a figure with the precision it deserves: whole
// numbers from 1000, one decimal from 100, else up to three decimals.
func formatFigure(v float64) string {
	switch abs := math.Abs(v); {
	case abs >= 1000, v == math.Trunc(v) && abs < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case abs >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	text := strconv.FormatFloat(v, 'f', 3, 64)
	text = strings.TrimRight(strings.TrimRight(text, "0"), ".")
	if text == "-0" {
		return "0"
	}
	return text
}

func formatSigned(v float64) string {
	text := formatFigure(v)
	if !strings.HasPrefix(text, "-") {
		text = "+" + text
	}
	return text
}

// Markdown is the comparison as a Markdown document (for a pull request
// comment or a CI summary).
func (c Comparison) Markdown() string {
	var out strings.Builder
	fmt.Fprintf(&out, "# Ledgerproof comparison\n\n- baseline: `%s` (%s)\n- candidate: `%s` (%s)\n- %s\n\n", c.Baseline, c.BaselineVerdict, c.Candidate, c.CandidateVerdict, c.limitText())
	out.WriteString("| metric | baseline | candidate | delta | delta % | |\n|---|---:|---:|---:|---:|---|\n")
	for _, m := range c.Metrics {
		fmt.Fprintf(&out, "| %s (%s) | %s | %s | %s | %s | %s |\n", m.Name, m.Unit, formatFigure(m.Baseline), formatFigure(m.Candidate), formatSigned(m.Delta), m.percentText(), m.flag())
	}
	out.WriteString("\n| invariant | baseline violations | candidate violations |\n|---|---:|---:|\n")
	for _, delta := range c.Invariants {
		fmt.Fprintf(&out, "| %s | %d (%s) | %d (%s) |\n", delta.Name, delta.BaselineViolations, delta.BaselineStatus, delta.CandidateViolations, delta.CandidateStatus)
	}
	if c.Regressed {
		out.WriteString("\n**Regression:**\n\n")
		for _, regression := range c.Regressions {
			fmt.Fprintf(&out, "- %s\n", regression)
		}
	} else {
		out.WriteString("\nNo regression.\n")
	}
	return out.String()
}

// JSON is the comparison as indented JSON.
func (c Comparison) JSON() ([]byte, error) {
	content, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(content, '\n'), nil
}
