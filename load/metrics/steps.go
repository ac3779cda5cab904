package metrics

import (
	"time"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// Kinds of step window.
const (
	// windowHold is the hold the engine declared (Recorder.StepHold).
	windowHold = "hold"
	// windowObserved runs from the step's first due iteration to its last completed operation.
	windowObserved = "observed"
)

// stepWindow is what a step's achieved rate is measured over, and the money operations completed within it.
type stepWindow struct {
	Label     string
	Kind      string
	Start     time.Time
	End       time.Time
	Completed int64
}

// StepFigures is one capacity step's measurements.
type StepFigures struct {
	// Step is the step's label, its target rate ("1000").
	Step string `json:"step"`
	// Started and Dropped are the iterations the schedule started and could not start in the step.
	Started int64 `json:"started"`
	Dropped int64 `json:"dropped"`
	// Completed is the money operations (deposit, withdrawal, transfer) completed in the step.
	Completed int64 `json:"completed"`
	// Window is "hold" (the step's hold, declared by the engine) or "observed" (first due iteration to last
	// completed operation); WindowStart and WindowEnd bound it; CompletedInWindow counts the money operations
	// completed within it.
	Window            string    `json:"window"`
	WindowStart       time.Time `json:"window_start"`
	WindowEnd         time.Time `json:"window_end"`
	CompletedInWindow int64     `json:"completed_in_window"`
	// OperationsPerSecond is CompletedInWindow over the window's length: the rate the system achieved.
	OperationsPerSecond float64 `json:"operations_per_second"`
	// Errors counts the step's errors (as the errors metric counts them); ErrorRate is Errors over Completed.
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// AcceptSamples is the accepted operations; the accept percentiles are over them, in milliseconds (0 when
	// AcceptSamples is 0).
	AcceptSamples         int64   `json:"accept_samples"`
	AcceptP50Milliseconds float64 `json:"accept_p50_ms"`
	AcceptP95Milliseconds float64 `json:"accept_p95_ms"`
	AcceptP99Milliseconds float64 `json:"accept_p99_ms"`
	// SettleSamples is the operations with a final outcome; SettleP95Milliseconds their p95 settle time.
	SettleSamples         int64   `json:"settle_samples"`
	SettleP95Milliseconds float64 `json:"settle_p95_ms"`
}

// stepFiguresOf computes a step's figures from the series tagged with its label.
func stepFiguresOf(data *dataset, window stepWindow, scratch *trendSeries) StepFigures {
	byStep := func(metric string) selection {
		chosen, err := selectionOf(metric, map[string]string{"step": window.Label})
		if err != nil {
			panic("metrics: " + err.Error()) // every metric named here has the step tag
		}
		return chosen
	}
	figures := StepFigures{
		Step:              window.Label,
		Started:           data.counterOf(byStep(threshold.Iterations)),
		Dropped:           data.counterOf(byStep(threshold.DroppedIterations)),
		Window:            window.Kind,
		WindowStart:       window.Start.UTC(),
		WindowEnd:         window.End.UTC(),
		CompletedInWindow: window.Completed,
	}
	// Every money operation is one errors sample, so the errors series also count the completed operations.
	errors := data.rateOf(byStep(threshold.Errors))
	figures.Completed = errors.passes + errors.fails
	figures.Errors = errors.passes
	if figures.Completed > 0 {
		figures.ErrorRate = float64(errors.passes) / float64(figures.Completed)
	}
	if seconds := window.End.Sub(window.Start).Seconds(); seconds > 0 {
		figures.OperationsPerSecond = float64(window.Completed) / seconds
	}
	if accept := data.trendOf(byStep(threshold.AcceptDuration), scratch); accept.count > 0 {
		figures.AcceptSamples = accept.count
		figures.AcceptP50Milliseconds = accept.percentileMilliseconds(50)
		figures.AcceptP95Milliseconds = accept.percentileMilliseconds(95)
		figures.AcceptP99Milliseconds = accept.percentileMilliseconds(99)
	}
	if settle := data.trendOf(byStep(threshold.SettleDuration), scratch); settle.count > 0 {
		figures.SettleSamples = settle.count
		figures.SettleP95Milliseconds = settle.percentileMilliseconds(95)
	}
	return figures
}

// windowOf recovers a step's window from its figures (Merge).
func (f StepFigures) windowOf() stepWindow {
	return stepWindow{Label: f.Step, Kind: f.Window, Start: f.WindowStart, End: f.WindowEnd,
		Completed: f.CompletedInWindow}
}
