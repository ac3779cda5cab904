package reports

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// FaultEffect is what a fault window was seen to do to the run (Antithesis
// calls the check a "sometimes" assertion: a drill claims a fault, and the
// run must show that the fault bit). It is read from the journal's money
// operations that completed in the window or within effectGrace after it,
// and from the workers' consumer lag in metrics.jsonl, each against the
// seconds outside every window (the baseline): a gate's workload has
// rejections, early timeouts and in-flight duplicates of its own, so a count
// is an effect only when it is well above what the baseline's rate gives.
type FaultEffect struct {
	// Operations completed in the span; Failed those that failed for
	// another reason than a business answer (insufficient funds, a reused
	// key...); Unknown those whose outcome is unknown (info); Retried
	// those sent more than once; AttemptErrors the HTTP attempts answered
	// 5xx or not at all. Each Expected* is what the baseline's rate per
	// operation gives for the span's operations.
	Operations            int64   `json:"operations"`
	Failed                int64   `json:"failed"`
	ExpectedFailed        float64 `json:"expected_failed"`
	Unknown               int64   `json:"unknown"`
	ExpectedUnknown       float64 `json:"expected_unknown"`
	Retried               int64   `json:"retried"`
	ExpectedRetried       float64 `json:"expected_retried"`
	AttemptErrors         int64   `json:"attempt_errors"`
	ExpectedAttemptErrors float64 `json:"expected_attempt_errors"`
	// P95Ms is the span's p95 latency; BaselineP95Ms the p95 of the
	// baseline (0: no such seconds). Slowed says the span's p95 was above
	// effectFactor times the baseline's.
	P95Ms         float64 `json:"p95_ms"`
	BaselineP95Ms float64 `json:"baseline_p95_ms"`
	Slowed        bool    `json:"slowed"`
	// MaxLag is the workers' largest summed consumer lag in the span;
	// BaselineMaxLag the largest outside every window. LagBuilt says the
	// span's was above effectFactor times the baseline's (and at least
	// minLagBuilt records).
	MaxLag         float64 `json:"max_lag"`
	BaselineMaxLag float64 `json:"baseline_max_lag"`
	LagBuilt       bool    `json:"lag_built"`
	// Bit is whether any of the above shows the fault: more failures,
	// unknown outcomes, retries or attempt errors than the baseline gives
	// (effectFactor times, and at least minExcess more), a p95 that rose,
	// lag that built up. A fault that did not bite is flagged: the drill did
	// not test what it claims.
	Bit bool `json:"bit"`
	// Observed says it in words.
	Observed string `json:"observed"`
}

const (
	// effectGrace extends a window: what a fault does shows after it too
	// (operations in flight complete late, a crash point fires at its next
	// hit, lag drains after the worker is back).
	effectGrace = 5 * time.Second
	// markerSpan is how long after a marker (a failover, a crash point no
	// start followed) its effects are looked for.
	markerSpan = 15 * time.Second
	// effectFactor is how much worse than the baseline a span must be for
	// a count, its latency or its lag to be an effect; minExcess how many
	// more events than expected a count needs, so that a handful in a
	// short span is not one.
	effectFactor = 2.0
	minExcess    = 3.0
	minLagBuilt  = 10.0
)

// excess reports whether observed is an effect against expected.
func excess(observed int64, expected float64) bool {
	return float64(observed) > effectFactor*expected && float64(observed)-expected >= minExcess
}

// faultEffects fills each window's Effect from the journal and metrics.
func faultEffects(a *analysis, windows []FaultWindow) {
	if len(windows) == 0 || a.journal == nil {
		return
	}
	span := func(window FaultWindow) (time.Time, time.Time) {
		from := a.origin.Add(seconds(window.StartSeconds))
		to := a.origin.Add(seconds(window.EndSeconds)).Add(effectGrace)
		if window.Marker {
			to = from.Add(markerSpan)
		}
		return from, to
	}
	inAnyWindow := func(second int64) bool {
		t := time.Unix(second, 0)
		for _, window := range windows {
			from, to := span(window)
			if !t.Add(time.Second).Before(from) && t.Before(to) {
				return true
			}
		}
		return false
	}
	// The baseline is the load's seconds outside every window: the setup
	// before the load's start (sign-ups, fundings retried at once) is not
	// what the faults are compared with.
	inBaseline := func(second int64) bool { return second >= a.origin.Unix() && !inAnyWindow(second) }
	var baseline histogram
	var baselineOps, baselineFailed, baselineUnknown, baselineRetried, baselineErrors int64
	for second, bucket := range a.journal.seconds {
		if inBaseline(second) {
			baseline.merge(&bucket.latency)
			baselineOps += int64(bucket.latency.total)
			baselineFailed += bucket.failedOther
			baselineUnknown += bucket.outcomes[outcomeInfo]
			baselineRetried += bucket.retried
			baselineErrors += bucket.httpErrors
		}
	}
	perOperation := func(count int64) float64 {
		if baselineOps == 0 {
			return 0
		}
		return float64(count) / float64(baselineOps)
	}
	baselineLag := 0.0
	if a.metrics != nil && a.metrics.hasLag {
		for second, bucket := range a.metrics.seconds {
			if inBaseline(second) {
				baselineLag = math.Max(baselineLag, summedLag(bucket.lag))
			}
		}
	}
	for i := range windows {
		from, to := span(windows[i])
		effect := &FaultEffect{}
		if baseline.total > 0 {
			effect.BaselineP95Ms = round(baseline.quantile(0.95)/1000, 3)
		}
		effect.BaselineMaxLag = baselineLag
		var latency histogram
		for second := from.Unix(); second < to.Unix()+1; second++ {
			bucket := a.journal.seconds[second]
			if bucket == nil {
				continue
			}
			effect.Operations += int64(bucket.latency.total)
			effect.Failed += bucket.failedOther
			effect.Unknown += bucket.outcomes[outcomeInfo]
			effect.Retried += bucket.retried
			effect.AttemptErrors += bucket.httpErrors
			latency.merge(&bucket.latency)
		}
		if latency.total > 0 {
			effect.P95Ms = round(latency.quantile(0.95)/1000, 3)
		}
		operations := float64(effect.Operations)
		effect.ExpectedFailed = round(perOperation(baselineFailed)*operations, 1)
		effect.ExpectedUnknown = round(perOperation(baselineUnknown)*operations, 1)
		effect.ExpectedRetried = round(perOperation(baselineRetried)*operations, 1)
		effect.ExpectedAttemptErrors = round(perOperation(baselineErrors)*operations, 1)
		effect.Slowed = effect.BaselineP95Ms > 0 && effect.P95Ms > effectFactor*effect.BaselineP95Ms
		if a.metrics != nil && a.metrics.hasLag {
			for second := from.Unix(); second < to.Unix()+1; second++ {
				if bucket := a.metrics.seconds[second]; bucket != nil {
					effect.MaxLag = math.Max(effect.MaxLag, summedLag(bucket.lag))
				}
			}
			effect.LagBuilt = effect.MaxLag >= minLagBuilt && effect.MaxLag > effectFactor*baselineLag
		}
		effect.Bit = excess(effect.Failed, effect.ExpectedFailed) || excess(effect.Unknown, effect.ExpectedUnknown) ||
			excess(effect.Retried, effect.ExpectedRetried) || excess(effect.AttemptErrors, effect.ExpectedAttemptErrors) ||
			effect.Slowed || effect.LagBuilt
		effect.Observed = effect.describe()
		windows[i].Effect = effect
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func summedLag(lags map[string]float64) float64 {
	total := 0.0
	for _, lag := range lags {
		total += lag
	}
	return total
}

// describe says what the fault was seen to do, or that it did nothing.
func (e *FaultEffect) describe() string {
	var seen []string
	add := func(count int64, expected float64, what string) {
		if excess(count, expected) {
			seen = append(seen, fmt.Sprintf("%d %s (%.0f expected)", count, what, expected))
		}
	}
	add(e.Failed, e.ExpectedFailed, "failed")
	add(e.Unknown, e.ExpectedUnknown, "unknown")
	add(e.Retried, e.ExpectedRetried, "retried")
	add(e.AttemptErrors, e.ExpectedAttemptErrors, "attempt errors (5xx or no answer)")
	if e.Slowed {
		seen = append(seen, fmt.Sprintf("p95 %.0f ms against %.0f ms outside the faults", e.P95Ms, e.BaselineP95Ms))
	}
	if e.LagBuilt {
		seen = append(seen, fmt.Sprintf("lag up to %.0f records (%.0f outside the faults)", e.MaxLag, e.BaselineMaxLag))
	}
	if len(seen) == 0 {
		return fmt.Sprintf("no observable effect: %d operations, %d failed, %d unknown, %d retried, %d attempt errors (%.0f, %.0f, %.0f, %.0f expected from outside the faults), p95 %.0f ms (%.0f ms outside), lag at most %.0f: the drill did not test what it claims",
			e.Operations, e.Failed, e.Unknown, e.Retried, e.AttemptErrors, e.ExpectedFailed, e.ExpectedUnknown, e.ExpectedRetried, e.ExpectedAttemptErrors,
			e.P95Ms, e.BaselineP95Ms, e.MaxLag)
	}
	return strings.Join(seen, ", ")
}
