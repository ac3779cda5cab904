package invariants

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DrainState is one observation of the pipeline.
type DrainState struct {
	// Done is true when nothing is left to apply.
	Done bool
	// Progress says how far it is, for people ("lag 120 records on 3 of
	// 16 partitions").
	Progress string
	// Lag is the lag in records of each partition still behind, when the
	// probe knows it (a liveness violation names them).
	Lag map[int32]int64
}

// DrainProbe observes the pipeline once. An error is reported and the
// probing goes on until the deadline: a broker restarting is no reason to
// give up early.
type DrainProbe func(ctx context.Context) (DrainState, error)

// drain waits, bounded by DrainTimeout, until the probe says done.
func (a *auditor) drain(ctx context.Context) {
	if a.config.Drain == nil {
		a.result.Drained = true
		a.result.DrainNote = "nothing to drain (the ledger source is not a live pipeline)"
		return
	}
	deadline := a.config.Now().Add(a.config.DrainTimeout)
	var last string
	for attempt := 0; ; attempt++ {
		probeContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		state, err := a.config.Drain(probeContext)
		cancel()
		progress := state.Progress
		if err != nil {
			progress = "probe failed: " + err.Error()
		}
		if progress != last || attempt%20 == 0 {
			fmt.Fprintf(a.config.Progress, "audit: drain: %s\n", progress)
			last = progress
		}
		if err == nil {
			a.lastLag = state.Lag
		}
		if err == nil && state.Done {
			a.result.Drained = true
			a.result.DrainNote = "drained: " + state.Progress
			return
		}
		if !a.config.Now().Before(deadline) || ctx.Err() != nil {
			a.result.Drained = false
			a.result.DrainNote = fmt.Sprintf("not drained after %s: %s", a.config.DrainTimeout, progress)
			fmt.Fprintf(a.config.Progress, "audit: %s; auditing anyway\n", a.result.DrainNote)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(a.config.DrainPoll):
		}
	}
}

// QuietProbe turns a ledger fingerprint (anything that changes when the
// ledger does: row counts, the highest posting id) into a DrainProbe that is
// done once the fingerprint has not changed for quiet. It is the fallback
// when the broker cannot be asked for its high watermarks.
func QuietProbe(fingerprint func(ctx context.Context) (string, error), quiet time.Duration, now func() time.Time) DrainProbe {
	if now == nil {
		now = time.Now
	}
	var last string
	var since time.Time
	return func(ctx context.Context) (DrainState, error) {
		value, err := fingerprint(ctx)
		if err != nil {
			return DrainState{}, err
		}
		current := now()
		if value != last || since.IsZero() {
			last, since = value, current
		}
		still := current.Sub(since)
		return DrainState{Done: still >= quiet,
			Progress: fmt.Sprintf("ledger %s, unchanged for %s (waiting for %s)", value, still.Round(100*time.Millisecond), quiet)}, nil
	}
}

// LagProbe is a DrainProbe from a function that returns, per partition, the
// broker's high watermark and the next offset the ledger stored.
func LagProbe(positions func(ctx context.Context) (ends, stored map[int32]int64, err error)) DrainProbe {
	return func(ctx context.Context) (DrainState, error) {
		ends, stored, err := positions(ctx)
		if err != nil {
			return DrainState{}, err
		}
		if len(ends) == 0 {
			return DrainState{}, errors.New("the broker listed no partition for the topic")
		}
		var lag int64
		behind := 0
		lagging := map[int32]int64{}
		for partition, end := range ends {
			if next := stored[partition]; next < end {
				lag += end - next
				behind++
				lagging[partition] = end - next
			}
		}
		return DrainState{Done: lag == 0, Lag: lagging,
			Progress: fmt.Sprintf("lag %d record(s) on %d of %d partition(s)", lag, behind, len(ends))}, nil
	}
}

// SettlementsTopic is the reference system's settlements topic
// (docs/settlement.md).
const SettlementsTopic = "ledger.settlements"

// SettlementDrainProbe extends commands, the probe of the commands' drain,
// to the reference system's settlements downstream: once commands is done,
// it is done when the outbox has nothing unpublished and, when settlements
// is not nil (the broker of the settlements topic), the settler's stored
// offsets (consumer_offsets of that topic) have reached every partition's
// high watermark. Without it a clean run's last settlements look lost. A
// ledger without an outbox (before migration 006) has nothing more to
// drain. While the settlements topic's broker cannot answer, the drain is not
// done.
func SettlementDrainProbe(commands DrainProbe, ledger *PostgresSource, settlements *BrokerOffsets) DrainProbe {
	return func(ctx context.Context) (DrainState, error) {
		state, err := commands(ctx)
		if err != nil || !state.Done {
			return state, err
		}
		unpublished, hasOutbox, err := ledger.UnpublishedOutbox(ctx)
		if err != nil {
			return DrainState{Progress: state.Progress, Lag: state.Lag}, err
		}
		if !hasOutbox {
			return state, nil
		}
		if unpublished > 0 {
			return DrainState{Progress: fmt.Sprintf("%s; outbox: %d event(s) unpublished", state.Progress, unpublished)}, nil
		}
		if settlements == nil {
			state.Progress += "; outbox: all published"
			return state, nil
		}
		brokerContext, cancel := context.WithTimeout(ctx, 3*time.Second)
		ends, err := settlements.Ends(brokerContext)
		cancel()
		if err != nil {
			// Not done: the settler's last events may still be on their way,
			// and an audit now would call them lost. The drain's timeout
			// bounds the wait (an undrained audit says so).
			return DrainState{Progress: fmt.Sprintf("%s; outbox: all published; settlements topic unavailable (%v), waiting for it", state.Progress, err)}, nil
		}
		stored, err := ledger.StoredOffsets(ctx, settlements.topic)
		if err != nil {
			return DrainState{Progress: state.Progress}, err
		}
		var lag int64
		for partition, end := range ends {
			if next := stored[partition]; next < end {
				lag += end - next
			}
		}
		if lag > 0 {
			return DrainState{Progress: fmt.Sprintf("%s; outbox: all published; settler: %d event(s) behind", state.Progress, lag)}, nil
		}
		state.Progress += "; outbox: all published; settler: caught up"
		return state, nil
	}
}
