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
// and from the workers' consumer lag in metrics.jsonl.
type FaultEffect struct {
	// Operations completed in the span; Failed and Unknown those that did
	// not settle (outcome fail, info); Retried those sent more than once;
	// AttemptErrors the HTTP attempts answered 5xx or not at all.
	Operations    int64 `json:"operations"`
	Failed        int64 `json:"failed"`
	Unknown       int64 `json:"unknown"`
	Retried       int64 `json:"retried"`
	AttemptErrors int64 `json:"attempt_errors"`
	// P95Ms is the span's p95 latency; BaselineP95Ms the p95 of the
	// seconds outside every window (0: no such seconds). Slowed says the
	// span's p95 was above slowFactor times the baseline's.
	P95Ms         float64 `json:"p95_ms"`
	BaselineP95Ms float64 `json:"baseline_p95_ms"`
	Slowed        bool    `json:"slowed"`
	// MaxLag is the workers' largest summed consumer lag in the span;
	// BaselineMaxLag the largest outside every window. LagBuilt says the
	// span's was above lagFactor times the baseline's (and at least
	// minLagBuilt records).
	MaxLag         float64 `json:"max_lag"`
	BaselineMaxLag float64 `json:"baseline_max_lag"`
	LagBuilt       bool    `json:"lag_built"`
	// Bit is whether any of the above shows the fault: an operation that
	// failed, went unknown, was retried or met an attempt error, a p95
	// that rose, lag that built up. A fault that did not bite is flagged:
	// the drill did not test what it claims.
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
	// slowFactor and lagFactor are how much worse than outside every
	// window a span must be for its latency or lag to count as an effect.
	slowFactor  = 2.0
	lagFactor   = 2.0
	minLagBuilt = 10.0
)

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
	var baseline histogram
	for second, bucket := range a.journal.seconds {
		if !inAnyWindow(second) {
			baseline.merge(&bucket.latency)
		}
	}
	baselineLag := 0.0
	if a.metrics != nil && a.metrics.hasLag {
		for second, bucket := range a.metrics.seconds {
			if !inAnyWindow(second) {
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
			effect.Failed += bucket.outcomes[outcomeFail]
			effect.Unknown += bucket.outcomes[outcomeInfo]
			effect.Retried += bucket.retried
			effect.AttemptErrors += bucket.httpErrors
			latency.merge(&bucket.latency)
		}
		if latency.total > 0 {
			effect.P95Ms = round(latency.quantile(0.95)/1000, 3)
		}
		effect.Slowed = effect.BaselineP95Ms > 0 && effect.P95Ms > slowFactor*effect.BaselineP95Ms
		if a.metrics != nil && a.metrics.hasLag {
			for second := from.Unix(); second < to.Unix()+1; second++ {
				if bucket := a.metrics.seconds[second]; bucket != nil {
					effect.MaxLag = math.Max(effect.MaxLag, summedLag(bucket.lag))
				}
			}
			effect.LagBuilt = effect.MaxLag >= minLagBuilt && effect.MaxLag > lagFactor*baselineLag
		}
		effect.Bit = effect.Failed+effect.Unknown+effect.Retried+effect.AttemptErrors > 0 || effect.Slowed || effect.LagBuilt
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
	add := func(count int64, what string) {
		if count > 0 {
			seen = append(seen, fmt.Sprintf("%d %s", count, what))
		}
	}
	add(e.Failed, "failed")
	add(e.Unknown, "unknown")
	add(e.Retried, "retried")
	add(e.AttemptErrors, "attempt errors (5xx or no answer)")
	if e.Slowed {
		seen = append(seen, fmt.Sprintf("p95 %.0f ms against %.0f ms outside the faults", e.P95Ms, e.BaselineP95Ms))
	}
	if e.LagBuilt {
		seen = append(seen, fmt.Sprintf("lag up to %.0f records (%.0f outside the faults)", e.MaxLag, e.BaselineMaxLag))
	}
	if len(seen) == 0 {
		return fmt.Sprintf("no observable effect: of %d operations none failed, went unknown or was retried, p95 %.0f ms (%.0f ms outside the faults), lag at most %.0f: the drill did not test what it claims",
			e.Operations, e.P95Ms, e.BaselineP95Ms, e.MaxLag)
	}
	return strings.Join(seen, ", ")
}
