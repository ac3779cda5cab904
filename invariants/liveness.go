package invariants

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Liveness is the invariant that the pipeline kept applying what it had
// accepted: after the load (and the recovery of every component), the
// pipeline drains within the drain timeout. A pipeline that stopped (a
// worker panicking on every batch, a deadlock, a partition stuck on a
// record) is reported here, naming the component, the partition and the
// last error in its log, and never as thousands of lost operations.
const Liveness = "liveness"

const livenessDescription = "the pipeline kept applying what it accepted: once the load ended and every component was up, " +
	"it drained within the drain timeout; a stall names the component, the partitions it left behind and its last error"

// Stall is one component found not making progress when the pipeline did
// not drain.
type Stall struct {
	// Component is the process (worker-0, gateway-1) or what stands for it.
	Component string `json:"component"`
	// State is what the component was doing: running, exited, killed...
	State string `json:"state,omitempty"`
	// Partitions are the partitions it owns that lag, with their lag in
	// records, and StalledSeconds how long the longest has not advanced.
	Partitions     map[int32]int64 `json:"partitions,omitempty"`
	StalledSeconds float64         `json:"stalled_seconds,omitempty"`
	// LastError is the last error line of its log, if any.
	LastError string `json:"last_error,omitempty"`
}

// StallProbe names the components that are not making progress. It is asked
// only when the pipeline did not drain; a system that cannot say returns
// nil (the lagging partitions are then reported without an owner).
type StallProbe func(ctx context.Context) ([]Stall, error)

// checkLiveness turns the drain's outcome into the liveness verdict.
// lagging is the lag per partition the last drain probe saw (nil when the
// probe could not say).
func (a *auditor) checkLiveness(ctx context.Context, lagging map[int32]int64) InvariantResult {
	result := InvariantResult{Name: Liveness, Description: livenessDescription, Checked: map[string]int64{}}
	switch {
	case a.config.Drain == nil:
		result.Status = StatusSkipped
		result.Note = "not a live pipeline (an export): nothing to drain"
		return result
	case a.result.Drained:
		result.Status = StatusPassed
		result.Checked["drains"] = 1
		result.Note = a.result.DrainNote
		return result
	}
	result.Checked["drains"] = 1
	var stalls []Stall
	var probeError error
	if a.config.Stalls != nil {
		probeContext, cancel := context.WithTimeout(ctx, 10*time.Second)
		stalls, probeError = a.config.Stalls(probeContext)
		cancel()
	}
	result.Violations, result.ViolationCount = livenessViolations(a.config.DrainTimeout, a.result.DrainNote, lagging, stalls)
	result.Status = StatusViolated
	if probeError != nil {
		result.Note = "the components could not all be asked why: " + probeError.Error()
	}
	return result
}

// livenessViolations explains a pipeline that did not drain: one violation
// per stalled component (with the lagging partitions it owns), one for the
// lagging partitions no component claimed, and a general one when nothing
// more precise is known.
func livenessViolations(timeout time.Duration, drainNote string, lagging map[int32]int64, stalls []Stall) ([]Violation, int64) {
	var violations []Violation
	owned := map[int32]bool{}
	for _, stall := range stalls {
		var parts []string
		if stall.State != "" && stall.State != "running" {
			parts = append(parts, stall.State)
		}
		if len(stall.Partitions) > 0 {
			parts = append(parts, "partitions "+partitionList(stall.Partitions)+" not advancing")
			for partition := range stall.Partitions {
				owned[partition] = true
			}
		}
		if stall.StalledSeconds > 0 {
			parts = append(parts, fmt.Sprintf("for %.0fs", stall.StalledSeconds))
		}
		if stall.LastError != "" {
			parts = append(parts, "last error: "+stall.LastError)
		}
		if len(parts) == 0 {
			continue
		}
		violations = append(violations, Violation{Invariant: Liveness,
			Summary: fmt.Sprintf("%s stalled: %s", stall.Component, strings.Join(parts, "; "))})
	}
	orphans := map[int32]int64{}
	for partition, lag := range lagging {
		if lag > 0 && !owned[partition] {
			orphans[partition] = lag
		}
	}
	if len(orphans) > 0 {
		violations = append(violations, Violation{Invariant: Liveness,
			Summary: fmt.Sprintf("partitions %s still lag after %s and no component says it applies them", partitionList(orphans), timeout)})
	}
	if len(violations) == 0 {
		violations = append(violations, Violation{Invariant: Liveness,
			Summary: fmt.Sprintf("the pipeline did not drain within %s (%s)", timeout, drainNote)})
	}
	return violations, int64(len(violations))
}

// partitionList renders partitions and their lag: "3 (lag 120), 7 (lag 4)".
func partitionList(lag map[int32]int64) string {
	partitions := make([]int32, 0, len(lag))
	for partition := range lag {
		partitions = append(partitions, partition)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	parts := make([]string, 0, len(partitions))
	for _, partition := range partitions {
		if lag[partition] > 0 {
			parts = append(parts, fmt.Sprintf("%d (lag %d)", partition, lag[partition]))
		} else {
			parts = append(parts, fmt.Sprint(partition))
		}
	}
	return strings.Join(parts, ", ")
}
