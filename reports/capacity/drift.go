package capacity

import (
	"fmt"
	"math"
	"strings"
)

// The calibration after the modes (Options.Recalibrate): the same bare
// programs, the same work, measured again once every mode has run. A run of
// `make capacity` takes about half an hour, and on a shared host the machine's
// speed moves within that (others' work, not this run's): in an A B B A of
// docs/performance.md (twenty-third pass) the same binary cost the machine
// 0.315 CPU-ms per request at 5,000 TPS in the first run and 0.279 in the
// last, ten minutes later. The first calibration's ceiling is
// what the requirements are judged against; the second says how far the
// machine moved while the knees were measured, so a knee's fraction of the
// ceiling is read with that uncertainty.

// calibrationDriftNotable is the move of the bare programs' cost between the
// two calibrations from which the report says the machine's speed changed
// during the run.
const calibrationDriftNotable = 0.05

// calibrationDrift is the second calibration set beside the first.
type calibrationDrift struct {
	// Change is the second calibration's CPU per request over the first's,
	// minus 1: +0.08 when the bare programs cost 8 % more at the end.
	Change float64 `json:"change"`
	// Parts is each bare program's change, in the first calibration's order
	// (a part only one calibration measured is left out).
	Parts []partDrift `json:"parts"`
}

type partDrift struct {
	Name   string  `json:"name"`
	Before float64 `json:"cpu_ms_before"`
	After  float64 `json:"cpu_ms_after"`
	Change float64 `json:"change"`
}

// driftOf compares two calibrations; ok is false when either measured
// nothing.
func driftOf(before, after capacityCalibration) (calibrationDrift, bool) {
	if before.CPUMsPerOperation <= 0 || after.CPUMsPerOperation <= 0 {
		return calibrationDrift{}, false
	}
	drift := calibrationDrift{Change: round3(after.CPUMsPerOperation/before.CPUMsPerOperation - 1)}
	for _, first := range before.Parts {
		for _, second := range after.Parts {
			if second.Name != first.Name {
				continue
			}
			// The change from the unrounded figures: the produce's 0.0085
			// and 0.0084 CPU-ms print as 0.009 and 0.008.
			from, to := first.unroundedCPUMs(), second.unroundedCPUMs()
			if from > 0 && to > 0 {
				drift.Parts = append(drift.Parts, partDrift{Name: first.Name, Before: first.CPUMsPerOperation, After: second.CPUMsPerOperation,
					Change: round3(to/from - 1)})
			}
		}
	}
	return drift, true
}

// unroundedCPUMs is the part's CPU-ms per operation before rounding (its
// rounded figure when the seconds or operations are missing).
func (p calibrationPart) unroundedCPUMs() float64 {
	if p.Operations > 0 && p.CPUSeconds > 0 {
		return p.CPUSeconds * 1000 / float64(p.Operations)
	}
	return p.CPUMsPerOperation
}

// noteCalibrationAfter records the calibration after the modes: the drift
// against the first, and each mode's knee as a fraction of the second
// ceiling. The requirements stay judged against the first.
func (r *capacityResult) noteCalibrationAfter(after capacityCalibration) {
	r.CalibrationAfter = &after
	if r.Calibration == nil {
		return
	}
	if drift, ok := driftOf(*r.Calibration, after); ok {
		r.CalibrationDrift = &drift
	}
	if after.CeilingTPS <= 0 {
		return
	}
	for i := range r.Modes {
		fraction := round3(float64(r.Modes[i].KneeTPS) / after.CeilingTPS)
		r.Modes[i].CeilingFractionAfter = &fraction
	}
}

// driftMarkdown is the report's paragraph on the calibration after the
// modes ("" when none was asked for).
func (r *capacityResult) driftMarkdown() string {
	if r.CalibrationAfterError != "" {
		return fmt.Sprintf("\nThe calibration after the modes failed (%s), so this run does not say whether the machine's speed moved while the knees were measured.\n", r.CalibrationAfterError)
	}
	after, drift := r.CalibrationAfter, r.CalibrationDrift
	if after == nil || drift == nil || r.Calibration == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n")
	if math.Abs(drift.Change) >= calibrationDriftNotable {
		fmt.Fprintf(&b, "**The machine's speed moved during the run** (%.0f%% or more). ", calibrationDriftNotable*100)
	}
	fmt.Fprintf(&b, "Calibrated again after the modes, the same bare programs cost %.3f CPU-ms per request against %.3f at the start (%s; ceiling %.0f TPS against %.0f)",
		after.CPUMsPerOperation, r.Calibration.CPUMsPerOperation, signedPercent(drift.Change), after.CeilingTPS, r.Calibration.CeilingTPS)
	if len(drift.Parts) > 0 {
		parts := make([]string, len(drift.Parts))
		for i, part := range drift.Parts {
			parts[i] = fmt.Sprintf("%s %.3f → %.3f (%s)", part.Name, part.Before, part.After, signedPercent(part.Change))
		}
		fmt.Fprintf(&b, "; by part: %s", strings.Join(parts, ", "))
	}
	b.WriteString(".")
	var fractions []string
	for _, mode := range r.Modes {
		if mode.CeilingFractionAfter != nil {
			fractions = append(fractions, fmt.Sprintf("%s %d ÷ %.0f = %.3f", mode.Mode.Name, mode.KneeTPS, after.CeilingTPS, *mode.CeilingFractionAfter))
		}
	}
	if len(fractions) > 0 {
		fmt.Fprintf(&b, " Against the second ceiling the knees are: %s.", strings.Join(fractions, "; "))
	}
	b.WriteString(" The requirements are judged against the first calibration. Both ran the same work on fresh stacks, so a difference of more than a few per cent is the machine's own speed changing during the run (others' work on a shared host), and every figure of the steps between them carries that much uncertainty.\n")
	return b.String()
}

// signedPercent is "+8.0%" or "-3.1%".
func signedPercent(change float64) string {
	return fmt.Sprintf("%+.1f%%", change*100)
}
