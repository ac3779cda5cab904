package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Second is one row of the load's time series (load-timeseries.jsonl, one JSON object per line): what happened
// between the previous TakeSecond and this one. The engine takes a row every second, so a row is one second; a
// late tick makes a longer row, which IntervalSeconds says. Samples count in the row they are recorded in.
//
// Memory does not grow with the run: the counters and the accept histogram are reset when a row is taken, and
// HTTP holds at most one entry per distinct status (bounded by the tag limit).
type Second struct {
	// T is the Unix second the row's interval began.
	T int64 `json:"t"`
	// IntervalSeconds is the row's length.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Started and Dropped are the iterations started and dropped.
	Started int64 `json:"started"`
	Dropped int64 `json:"dropped"`
	// Completed is the money operations completed; OK, Fail and Info split them by outcome.
	Completed int64 `json:"completed"`
	OK        int64 `json:"ok"`
	Fail      int64 `json:"fail"`
	Info      int64 `json:"info"`
	// Errors is the completed operations counted as errors (info, or fail for a reason other than
	// insufficient_funds).
	Errors int64 `json:"errors"`
	// HTTP counts the HTTP exchanges by status ("0": no answer).
	HTTP map[string]int64 `json:"http"`
	// Accepted is the operations accepted in the row; the percentiles are their accept times in milliseconds
	// (0 when Accepted is 0).
	Accepted              int64   `json:"accepted"`
	AcceptP50Milliseconds float64 `json:"accept_p50_ms"`
	AcceptP95Milliseconds float64 `json:"accept_p95_ms"`
	AcceptP99Milliseconds float64 `json:"accept_p99_ms"`
	// InFlight is the iterations in flight when the row was taken (the engine's count).
	InFlight int `json:"in_flight"`
	// Late is the iterations started LateStart or more after their due time, LateMaxMilliseconds the latest of
	// them (0 when none): the generator behind its own schedule.
	Late                int64   `json:"late"`
	LateMaxMilliseconds float64 `json:"late_max_ms"`
}

// TakeSecond returns the row for the interval since the previous call (or the load's start) and starts the
// next one at now. inFlight is the engine's count of iterations in flight at now.
func (r *Recorder) TakeSecond(now time.Time, inFlight int) Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	row := Second{
		T:               r.secondStart.Unix(),
		IntervalSeconds: now.Sub(r.secondStart).Seconds(),
		Started:         r.second.started,
		Dropped:         r.second.dropped,
		Completed:       r.second.completed,
		OK:              r.second.ok,
		Fail:            r.second.fail,
		Info:            r.second.info,
		Errors:          r.second.errors,
		HTTP:            map[string]int64{},
		InFlight:        inFlight,
		Late:            r.second.late,
	}
	if r.second.late > 0 {
		row.LateMaxMilliseconds = float64(r.second.latest.Microseconds()) / 1000
	}
	for index, count := range r.second.httpByStatus {
		if count > 0 {
			row.HTTP[r.statuses.values[index]] = count
		}
	}
	if accept := r.secondAccept; accept.count > 0 {
		row.Accepted = accept.count
		row.AcceptP50Milliseconds = accept.percentileMilliseconds(50)
		row.AcceptP95Milliseconds = accept.percentileMilliseconds(95)
		row.AcceptP99Milliseconds = accept.percentileMilliseconds(99)
	}
	r.second = secondCounters{}
	r.secondAccept.reset()
	r.secondStart = now
	return row
}

// WriteSecond writes a row as one line of JSON.
func WriteSecond(w io.Writer, row Second) error {
	line, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("encode time-series row: %w", err)
	}
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("write time-series row: %w", err)
	}
	return nil
}

// WriteSecond takes the row for the interval ending at now (TakeSecond) and writes it to w as one line.
func (r *Recorder) WriteSecond(w io.Writer, now time.Time, inFlight int) error {
	return WriteSecond(w, r.TakeSecond(now, inFlight))
}
