package reports

import (
	"math"
	"time"
)

// series is one chart's data as uPlot takes it: X, then one array per line
// (nil for "no value in this second").
type series struct {
	X     []float64    `json:"x"`
	Lines [][]*float64 `json:"lines"`
}

// timeline is the charts' data, every X in seconds from the origin.
type timeline struct {
	// XMin and XMax bound every chart, so the charts line up.
	XMin, XMax float64
	// Throughput lines: ok, fail, info (operations completed per second).
	Throughput *series
	// Latency lines: p50, p95, p99 in milliseconds.
	Latency *series
	// Lag: consumer lag summed over the workers; Batch: mean batch size
	// and batches per second.
	Lag   *series
	Batch *series
	// faults are the chaos log's fault windows.
	faults []FaultWindow
}

func value(v float64) *float64 { return &v }

func buildTimeline(a *analysis) timeline {
	origin := a.origin
	at := func(unixSecond int64) float64 {
		return round(time.Unix(unixSecond, 0).Sub(origin).Seconds(), 3)
	}
	t := timeline{XMin: math.Inf(1), XMax: math.Inf(-1)}
	extend := func(x float64) {
		t.XMin = math.Min(t.XMin, x)
		t.XMax = math.Max(t.XMax, x)
	}

	if first, last, ok := a.journal.secondRange(); ok {
		throughput := &series{Lines: make([][]*float64, outcomeCount)}
		latency := &series{Lines: make([][]*float64, 3)}
		for second := first; second <= last; second++ {
			x := at(second)
			throughput.X = append(throughput.X, x)
			latency.X = append(latency.X, x)
			bucket := a.journal.seconds[second]
			for outcome := range outcomeCount {
				n := 0.0
				if bucket != nil {
					n = float64(bucket.outcomes[outcome])
				}
				throughput.Lines[outcome] = append(throughput.Lines[outcome], value(n))
			}
			for i, q := range []float64{0.50, 0.95, 0.99} {
				var point *float64
				if bucket != nil && bucket.latency.total > 0 {
					point = value(round(bucket.latency.quantile(q)/1000, 3))
				}
				latency.Lines[i] = append(latency.Lines[i], point)
			}
		}
		extend(at(first))
		extend(at(last + 1))
		t.Throughput, t.Latency = throughput, latency
	}

	if metrics := a.metrics; metrics != nil && (metrics.hasLag || metrics.hasBatch) {
		seconds := metrics.sortedSeconds()
		lag := &series{Lines: make([][]*float64, 1)}
		batch := &series{Lines: make([][]*float64, 2)}
		for _, second := range seconds {
			bucket := metrics.seconds[second]
			x := at(second)
			if metrics.hasLag {
				var point *float64
				if len(bucket.lag) > 0 {
					total := 0.0
					for _, lag := range bucket.lag {
						total += lag
					}
					point = value(total)
				}
				lag.X = append(lag.X, x)
				lag.Lines[0] = append(lag.Lines[0], point)
			}
			if metrics.hasBatch {
				var mean *float64
				if bucket.batches > 0 {
					mean = value(round(bucket.batchRecords/bucket.batches, 2))
				}
				batch.X = append(batch.X, x)
				batch.Lines[0] = append(batch.Lines[0], mean)
				batch.Lines[1] = append(batch.Lines[1], value(bucket.batches))
			}
		}
		if len(seconds) > 0 {
			extend(at(seconds[0]))
			extend(at(seconds[len(seconds)-1] + 1))
		}
		if metrics.hasLag {
			t.Lag = lag
		}
		if metrics.hasBatch {
			t.Batch = batch
		}
	}

	end := t.XMax
	if math.IsInf(end, -1) {
		end = 0
	}
	t.faults = faultWindows(a.in.chaos, origin, end)
	faultEffects(a, t.faults)
	for _, window := range t.faults {
		extend(window.StartSeconds)
		extend(window.EndSeconds)
	}
	if math.IsInf(t.XMin, 1) {
		t.XMin, t.XMax = 0, 1
	}
	return t
}
