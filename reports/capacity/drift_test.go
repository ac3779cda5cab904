package capacity

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// calibrationOf is a calibration of four parts whose CPU per operation is
// seconds × 1000 / operations.
func calibrationOf(httpSeconds, postgresSeconds, redisSeconds, produceSeconds float64) capacityCalibration {
	c := capacityCalibration{Cores: 2}
	for _, part := range []struct {
		name    string
		seconds float64
		ops     int64
	}{{"http", httpSeconds, 30000}, {"postgres", postgresSeconds, 20000}, {"redis", redisSeconds, 30000}, {"produce", produceSeconds, 30000}} {
		p := calibrationPart{Name: part.name, Operations: part.ops, ByProcess: map[string]float64{"server": part.seconds}}
		p.finish()
		c.Parts = append(c.Parts, p)
		c.CPUMsPerOperation += p.CPUMsPerOperation
	}
	c.CPUMsPerOperation = round3(c.CPUMsPerOperation)
	c.CeilingTPS = math.Round(float64(c.Cores) * 1000 / c.CPUMsPerOperation)
	return c
}

// TestCalibrationDrift: the calibration after the modes is set beside the first, as a change of the whole and of
// each part (from the unrounded figures), the knees as fractions of its ceiling, a paragraph of the report that
// says when the move is large, the JSON fields, and nothing when there was no second calibration or it failed.
func TestCalibrationDrift(t *testing.T) {
	before := calibrationOf(3.0, 1.2, 0.45, 0.255) // 0.100 + 0.060 + 0.015 + 0.0085 = 0.1835 → 0.184 (0.009 printed)
	after := calibrationOf(3.3, 1.2, 0.42, 0.252)  // 0.110 + 0.060 + 0.014 + 0.0084 = 0.1924 → 0.192 (0.008 printed)
	if before.CPUMsPerOperation != 0.184 || after.CPUMsPerOperation != 0.192 {
		t.Fatalf("fixture: %.3f and %.3f CPU-ms, want 0.184 and 0.192", before.CPUMsPerOperation, after.CPUMsPerOperation)
	}

	drift, ok := driftOf(before, after)
	if !ok || drift.Change != round3(0.192/0.184-1) {
		t.Fatalf("drift %+v (ok %v), want a change of %.3f", drift, ok, round3(0.192/0.184-1))
	}
	wantParts := []struct {
		name   string
		change float64
	}{{"http", 0.1}, {"postgres", 0}, {"redis", round3(0.014/0.015 - 1)}, {"produce", round3(0.0084/0.0085 - 1)}}
	if len(drift.Parts) != len(wantParts) {
		t.Fatalf("parts %+v, want %d", drift.Parts, len(wantParts))
	}
	for i, want := range wantParts {
		if got := drift.Parts[i]; got.Name != want.name || got.Change != want.change {
			t.Errorf("part %d: %+v, want %s %.3f", i, got, want.name, want.change)
		}
	}
	// Rounded, the produce went from 0.009 to 0.008 (-11 %); unrounded, it moved 1.2 %.
	if produce := drift.Parts[3]; produce.Before != 0.009 || produce.After != 0.008 || produce.Change != -0.012 {
		t.Errorf("produce %+v: want 0.009 → 0.008 printed and a change of -0.012 from the unrounded figures", produce)
	}

	// A part only one calibration measured is left out; a calibration that measured nothing is no drift.
	short := after
	short.Parts = short.Parts[:2]
	if d, _ := driftOf(before, short); len(d.Parts) != 2 {
		t.Errorf("with two parts after: %+v, want the two both measured", d.Parts)
	}
	if _, ok := driftOf(before, capacityCalibration{}); ok {
		t.Error("a drift against an empty calibration")
	}
	if _, ok := driftOf(capacityCalibration{}, after); ok {
		t.Error("a drift from an empty calibration")
	}

	result := func(first capacityCalibration) *capacityResult {
		fraction := 7500 / first.CeilingTPS
		return &capacityResult{Calibration: &first, Modes: []capacityModeResult{
			{Mode: capacityMode{Name: "batched"}, KneeTPS: 7500, CeilingFraction: &fraction, AuditPassed: true},
			{Mode: capacityMode{Name: "naive"}, KneeTPS: 1650, AuditPassed: true},
		}}
	}

	// +4.3 %: said, without the warning.
	small := result(before)
	small.noteCalibrationAfter(after)
	if small.CalibrationDrift == nil || small.CalibrationAfter == nil {
		t.Fatal("noteCalibrationAfter recorded no drift")
	}
	if f := small.Modes[0].CeilingFractionAfter; f == nil || *f != math.Round(7500/after.CeilingTPS*1000)/1000 {
		t.Errorf("batched fraction after %v, want %.3f", f, math.Round(7500/after.CeilingTPS*1000)/1000)
	}
	paragraph := small.driftMarkdown()
	for _, want := range []string{
		"Calibrated again after the modes, the same bare programs cost 0.192 CPU-ms per request against 0.184 at the start (+4.3%; ceiling 10417 TPS against 10870)",
		"by part: http 0.100 → 0.110 (+10.0%), postgres 0.060 → 0.060 (+0.0%), redis 0.015 → 0.014 (-6.7%), produce 0.009 → 0.008 (-1.2%).",
		"Against the second ceiling the knees are: batched 7500 ÷ 10417 = 0.720; naive 1650 ÷ 10417 = 0.158.",
		"The requirements are judged against the first calibration.",
	} {
		if !strings.Contains(paragraph, want) {
			t.Errorf("the drift paragraph lacks %q:\n%s", want, paragraph)
		}
	}
	if strings.Contains(paragraph, "moved during the run**") {
		t.Errorf("a move of 4.3%% is called large:\n%s", paragraph)
	}
	if page := small.markdown("/run"); !strings.Contains(page, paragraph) {
		t.Errorf("capacity.md lacks the drift paragraph:\n%s", page)
	}
	content, err := json.Marshal(small)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"calibration_after":{`, `"calibration_drift":{"change":0.043,`, `"ceiling_fraction_after":0.72`} {
		if !strings.Contains(string(content), want) {
			t.Errorf("capacity.json lacks %s:\n%s", want, content)
		}
	}

	// Slower by 10.9 % and faster by 5.9 %: both are large.
	for _, c := range []struct {
		name  string
		first capacityCalibration
		want  string
	}{
		{"slower", calibrationOf(3.0, 1.2, 0.45, 0.255), "(+10.9%"},
		{"faster", calibrationOf(3.6, 1.2, 0.45, 0.255), "(-5.9%"},
	} {
		second := calibrationOf(3.3, 1.4, 0.45, 0.255)
		if c.name == "faster" {
			second = calibrationOf(3.3, 1.2, 0.42, 0.252)
		}
		large := result(c.first)
		large.noteCalibrationAfter(second)
		paragraph := large.driftMarkdown()
		if !strings.HasPrefix(paragraph, "\n**The machine's speed moved during the run** (5% or more).") || !strings.Contains(paragraph, c.want) {
			t.Errorf("%s: the paragraph does not warn of a large move %s:\n%s", c.name, c.want, paragraph)
		}
	}

	// No second calibration, one that failed, or no first: no drift, and the report says only what it knows.
	if paragraph := result(before).driftMarkdown(); paragraph != "" {
		t.Errorf("without a second calibration: %q", paragraph)
	}
	failed := result(before)
	failed.CalibrationAfterError = "calibration stack: postgres did not start"
	if paragraph := failed.driftMarkdown(); !strings.Contains(paragraph, "The calibration after the modes failed (calibration stack: postgres did not start)") {
		t.Errorf("a failed second calibration: %q", paragraph)
	}
	alone := &capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: "batched"}, KneeTPS: 7500}}}
	alone.noteCalibrationAfter(after)
	if alone.CalibrationDrift != nil || alone.Modes[0].CeilingFractionAfter != nil || alone.driftMarkdown() != "" {
		t.Errorf("a second calibration without a first: drift %+v, fraction %v", alone.CalibrationDrift, alone.Modes[0].CeilingFractionAfter)
	}
}
