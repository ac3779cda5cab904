package metrics

import (
	"fmt"
	"strconv"
	"time"
)

// Progress is what the terminal's progress line shows: the load's totals so far, and the rate and accept p95 of
// the interval since the previous Progress call (the engine asks every two seconds).
type Progress struct {
	// Elapsed is the time since the load started.
	Elapsed time.Duration
	// Started is the iterations started; Dropped those the schedule could not start.
	Started int64
	Dropped int64
	// Completed is the money operations completed; Errors those counted as errors.
	Completed int64
	Errors    int64
	// Interval is the time since the previous Progress call (or the start).
	Interval time.Duration
	// OperationsPerSecond is the money operations completed in the interval, per second.
	OperationsPerSecond float64
	// IntervalAccepted is the operations accepted in the interval; AcceptP95Milliseconds their p95 accept
	// time (0 when IntervalAccepted is 0).
	IntervalAccepted      int64
	AcceptP95Milliseconds float64
}

// Progress returns the totals at now and the rates since the previous call, and starts the next interval.
func (r *Recorder) Progress(now time.Time) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	progress := Progress{
		Elapsed:   now.Sub(r.start),
		Started:   r.totals.started,
		Dropped:   r.totals.dropped,
		Completed: r.totals.completed,
		Errors:    r.totals.errors,
		Interval:  now.Sub(r.progressAt),
	}
	progress.OperationsPerSecond = perSecond(r.totals.completed-r.progressCompleted, progress.Interval.Seconds())
	if accept := r.progressAccept; accept.count > 0 {
		progress.IntervalAccepted = accept.count
		progress.AcceptP95Milliseconds = accept.percentileMilliseconds(95)
	}
	r.progressAccept.reset()
	r.progressAt = now
	r.progressCompleted = r.totals.completed
	return progress
}

// Line is the progress as one terminal line:
//
//	1m04s  started 12800  completed 12790  200.1 ops/s  errors 0  dropped 0  p95 accept 21.4 ms
//
// The p95 is the last interval's ("-" when nothing was accepted in it).
func (p Progress) Line() string {
	accept := "-"
	if p.IntervalAccepted > 0 {
		accept = strconv.FormatFloat(p.AcceptP95Milliseconds, 'f', 1, 64) + " ms"
	}
	return fmt.Sprintf("%s  started %d  completed %d  %.1f ops/s  errors %d  dropped %d  p95 accept %s",
		p.Elapsed.Truncate(time.Second), p.Started, p.Completed, p.OperationsPerSecond, p.Errors, p.Dropped,
		accept)
}
