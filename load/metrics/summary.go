package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// SummaryVersion is the version of the summary format this package writes and reads.
const SummaryVersion = 1

// SummaryFile is the summary's name in a run directory.
const SummaryFile = "load-summary.json"

// TimeSeriesFile is the time series' name in a run directory.
const TimeSeriesFile = "load-timeseries.jsonl"

// RunInfo is the summary's descriptive fields, which the recorder does not know.
type RunInfo struct {
	// Scenario is the scenario's name; ScenarioPath the file it was read from.
	Scenario     string
	ScenarioPath string
	// Seed is the seed the load ran with.
	Seed int64
	// Segment is this process's share of the load, "i/N", or "" when one process ran all of it.
	Segment string
	// Aborted is why the load stopped early ("" when it ran to the end).
	Aborted string
}

// Summary is the end-of-run summary, written to load-summary.json (docs/load-summary.md describes every field).
//
// Metrics has the outer shape of k6's --summary-export, so readers of that export read it too: each
// (sub)metric by name, with its figures and a "thresholds" map from expression to true when the threshold was
// crossed (failed). The other fields are this engine's: the run's description, the threshold verdicts as a
// list, capacity steps, checks, and the raw data (Histograms, Counts) from which Merge recomputes everything
// exactly.
type Summary struct {
	// Version is SummaryVersion.
	Version int `json:"version"`
	// Scenario, ScenarioPath, Seed and Segment come from RunInfo.
	Scenario     string `json:"scenario"`
	ScenarioPath string `json:"scenario_path"`
	Seed         int64  `json:"seed"`
	Segment      string `json:"segment"`
	// Segments lists the segments a merged summary combines (absent in a single process's summary).
	Segments []string `json:"segments,omitempty"`
	// StartedAt is the load's start, FinishedAt the summary's time; DurationSeconds the time between them
	// (counter rates are over it).
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Metrics is every metric with samples (every counter, even at zero), every submetric a threshold names,
	// and accept_duration and settle_duration by kind.
	Metrics map[string]MetricSummary `json:"metrics"`
	// Thresholds is every threshold's verdict, in the scenario's order; ThresholdsPassed is true when all
	// passed (a threshold with nothing observed passes).
	Thresholds       []Result `json:"thresholds"`
	ThresholdsPassed bool     `json:"thresholds_passed"`
	// Aborted is why the load stopped early, or "".
	Aborted string `json:"aborted"`
	// Steps is each capacity step's figures, in the order the steps ran (empty outside capacity-steps).
	Steps []StepFigures `json:"steps"`
	// Checks tallies the smoke walk's checks by name.
	Checks map[string]CheckCounts `json:"checks"`
	// Histograms is every series of a trend metric with samples: its HDR histogram and exact count, sum,
	// minimum and maximum.
	Histograms []HistogramRecord `json:"histograms"`
	// Counts is every series of a rate or counter metric with samples: its raw counts.
	Counts []CountRecord `json:"counts"`
}

// MetricSummary is one (sub)metric in Summary.Metrics: figures by name, and its thresholds. In JSON the figures
// and "thresholds" are fields of one object, as in k6's export:
//
//	trend:   {"count": 1200, "avg": 21.3, "min": 4.1, "med": 18.2, "max": 310.5, "p(90)": 35.1, "p(95)": 48.0, "p(99)": 120.7}
//	rate:    {"value": 0.001, "passes": 1, "fails": 999}
//	counter: {"count": 1000, "rate": 199.8}
//
// Durations are in milliseconds. A rate's passes are its samples that were 1 (for errors: the errors), as k6
// counts them. A trend or rate without samples has only count (0) or passes and fails (0). A figure a
// threshold tests that is not among these (`p(99.9)`, a rate's `count`) is added under the name its
// expression uses.
type MetricSummary struct {
	Figures map[string]float64
	// Thresholds maps each threshold expression on this (sub)metric to true when it was crossed.
	Thresholds map[string]bool
}

// MarshalJSON writes the figures and thresholds as one object.
func (m MetricSummary) MarshalJSON() ([]byte, error) {
	object := make(map[string]any, len(m.Figures)+1)
	for name, value := range m.Figures {
		object[name] = value
	}
	if len(m.Thresholds) > 0 {
		object["thresholds"] = m.Thresholds
	}
	return marshalReadable(object, "")
}

// marshalReadable encodes without escaping <, > and & (threshold expressions are full of them, and the file is
// read by people as well as programs).
func marshalReadable(value any, indent string) ([]byte, error) {
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	encoder.SetEscapeHTML(false)
	encoder.SetIndent("", indent)
	if err := encoder.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buffer.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads an object written by MarshalJSON (or by k6's export).
func (m *MetricSummary) UnmarshalJSON(data []byte) error {
	var object map[string]json.RawMessage
	if err := json.Unmarshal(data, &object); err != nil {
		return err
	}
	m.Figures = map[string]float64{}
	m.Thresholds = nil
	for name, raw := range object {
		if name == "thresholds" {
			if err := json.Unmarshal(raw, &m.Thresholds); err != nil {
				return fmt.Errorf("thresholds: %w", err)
			}
			continue
		}
		var value float64
		if err := json.Unmarshal(raw, &value); err != nil {
			return fmt.Errorf("figure %s: %w", name, err)
		}
		m.Figures[name] = value
	}
	return nil
}

// HistogramRecord is one series of a trend metric.
type HistogramRecord struct {
	// Metric and Tags name the series (Tags leaves out empty values).
	Metric string            `json:"metric"`
	Tags   map[string]string `json:"tags,omitempty"`
	// Count, SumMicroseconds, MinMicroseconds and MaxMicroseconds are exact.
	Count           int64 `json:"count"`
	SumMicroseconds int64 `json:"sum_us"`
	MinMicroseconds int64 `json:"min_us"`
	MaxMicroseconds int64 `json:"max_us"`
	// Histogram is the HDR histogram of microseconds (1 µs to 1 h, 3 significant digits) in the standard V2
	// compressed encoding, base64: any HdrHistogram library decodes it.
	Histogram string `json:"hdr"`
}

// CountRecord is one series of a rate metric (Passes, Fails) or of a counter metric (Count).
type CountRecord struct {
	// Metric and Tags name the series (Tags leaves out empty values).
	Metric string            `json:"metric"`
	Tags   map[string]string `json:"tags,omitempty"`
	// Count is a counter's count.
	Count int64 `json:"count,omitempty"`
	// Passes and Fails are a rate's samples that were 1 and 0.
	Passes int64 `json:"passes,omitempty"`
	Fails  int64 `json:"fails,omitempty"`
}

// Summary returns the run's summary at now. It copies the recorder's data under its lock and builds the summary
// outside it, so the load can go on while it is written.
func (r *Recorder) Summary(info RunInfo, now time.Time) *Summary {
	r.mu.Lock()
	data := r.data.clone()
	windows := make([]stepWindow, len(r.stepOrder))
	for i, state := range r.stepOrder {
		windows[i] = state.window()
	}
	checks := make(map[string]CheckCounts, len(r.checks))
	for name, counts := range r.checks {
		checks[name] = *counts
	}
	r.mu.Unlock()
	summary, err := buildSummary(data, r.thresholds, windows, checks, info, r.start, now)
	if err != nil {
		panic("metrics: " + err.Error()) // encoding into memory does not fail
	}
	return summary
}

// buildSummary computes a summary from a dataset. Recorder.Summary and Merge both call it, which is why a
// merged summary equals the summary of one recorder fed every sample.
func buildSummary(data *dataset, thresholds []compiledThreshold, windows []stepWindow,
	checks map[string]CheckCounts, info RunInfo, startedAt, finishedAt time.Time) (*Summary, error) {
	summary := &Summary{
		Version:         SummaryVersion,
		Scenario:        info.Scenario,
		ScenarioPath:    info.ScenarioPath,
		Seed:            info.Seed,
		Segment:         info.Segment,
		StartedAt:       startedAt.UTC(),
		FinishedAt:      finishedAt.UTC(),
		DurationSeconds: finishedAt.Sub(startedAt).Seconds(),
		Metrics:         map[string]MetricSummary{},
		Thresholds:      []Result{},
		Aborted:         info.Aborted,
		Steps:           []StepFigures{},
		Checks:          map[string]CheckCounts{},
		Histograms:      []HistogramRecord{},
		Counts:          []CountRecord{},
	}
	scratch := newTrendSeries()

	// The (sub)metrics to summarise.
	selections := map[string]selection{}
	include := func(chosen selection) { selections[chosen.name()] = chosen }
	for metric := range threshold.Known {
		if typeOf(metric) == counterMetric {
			include(selection{metric: metric})
		}
	}
	for key, series := range data.trends {
		if series.count == 0 {
			continue
		}
		include(selection{metric: key.metric})
		if key.metric == threshold.AcceptDuration || key.metric == threshold.SettleDuration {
			byKind := selection{metric: key.metric}
			byKind.tags[0], byKind.set[0] = key.tags[0], true // kind is their first tag
			include(byKind)
		}
	}
	for key, series := range data.rates {
		if series.passes+series.fails > 0 {
			include(selection{metric: key.metric})
		}
	}
	for _, compiled := range thresholds {
		include(compiled.selection)
	}
	for name, chosen := range selections {
		summary.Metrics[name] = metricSummaryOf(data, chosen, summary.DurationSeconds, scratch)
	}

	summary.ThresholdsPassed = true
	for _, compiled := range thresholds {
		result := evaluateThreshold(data, compiled, summary.DurationSeconds, scratch)
		summary.Thresholds = append(summary.Thresholds, result)
		summary.ThresholdsPassed = summary.ThresholdsPassed && result.Passed
		entry := summary.Metrics[result.Metric]
		if entry.Thresholds == nil {
			entry.Thresholds = map[string]bool{}
		}
		entry.Thresholds[result.Expression] = entry.Thresholds[result.Expression] || !result.Passed
		field := fieldOf(compiled.threshold)
		_, present := entry.Figures[field]
		redundant := typeOf(compiled.selection.metric) == rateMetric && field == "rate" // k6 calls it value
		if result.Observed != nil && !present && !redundant {
			entry.Figures[field] = *result.Observed
		}
		summary.Metrics[result.Metric] = entry
	}

	sort.SliceStable(windows, func(i, j int) bool {
		if !windows[i].Start.Equal(windows[j].Start) {
			return windows[i].Start.Before(windows[j].Start)
		}
		return windows[i].Label < windows[j].Label
	})
	for _, window := range windows {
		summary.Steps = append(summary.Steps, stepFiguresOf(data, window, scratch))
	}
	for name, counts := range checks {
		summary.Checks[name] = counts
	}

	for _, key := range sortedKeys(data.trends) {
		series := data.trends[key]
		if series.count == 0 {
			continue
		}
		encoded, err := series.histogram.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("encode histogram of %s: %w", key.metric, err)
		}
		summary.Histograms = append(summary.Histograms, HistogramRecord{
			Metric: key.metric, Tags: key.tagMap(), Count: series.count, SumMicroseconds: series.sumMicroseconds,
			MinMicroseconds: series.minMicroseconds, MaxMicroseconds: series.maxMicroseconds,
			Histogram: string(encoded),
		})
	}
	for _, key := range sortedKeys(data.rates) {
		if series := data.rates[key]; series.passes+series.fails > 0 {
			summary.Counts = append(summary.Counts, CountRecord{Metric: key.metric, Tags: key.tagMap(),
				Passes: series.passes, Fails: series.fails})
		}
	}
	for _, key := range sortedKeys(data.counters) {
		if series := data.counters[key]; series.count > 0 {
			summary.Counts = append(summary.Counts, CountRecord{Metric: key.metric, Tags: key.tagMap(),
				Count: series.count})
		}
	}
	return summary, nil
}

// metricSummaryOf computes a (sub)metric's standard figures.
func metricSummaryOf(data *dataset, chosen selection, durationSeconds float64, scratch *trendSeries) MetricSummary {
	figures := map[string]float64{}
	switch typeOf(chosen.metric) {
	case trendMetric:
		series := data.trendOf(chosen, scratch)
		figures["count"] = float64(series.count)
		if series.count > 0 {
			figures["avg"] = finite(series.averageMilliseconds())
			figures["min"] = milliseconds(series.minMicroseconds)
			figures["med"] = series.percentileMilliseconds(50)
			figures["max"] = milliseconds(series.maxMicroseconds)
			figures["p(90)"] = series.percentileMilliseconds(90)
			figures["p(95)"] = series.percentileMilliseconds(95)
			figures["p(99)"] = series.percentileMilliseconds(99)
		}
	case rateMetric:
		total := data.rateOf(chosen)
		figures["passes"] = float64(total.passes)
		figures["fails"] = float64(total.fails)
		if samples := total.passes + total.fails; samples > 0 {
			figures["value"] = float64(total.passes) / float64(samples)
		}
	case counterMetric:
		count := data.counterOf(chosen)
		figures["count"] = float64(count)
		figures["rate"] = finite(perSecond(count, durationSeconds))
	}
	return MetricSummary{Figures: figures}
}

// WriteSummary writes a summary to path atomically: to a temporary file in the same directory, synced, then
// renamed over path, so a reader never sees half a summary.
func WriteSummary(path string, summary *Summary) (err error) {
	content, err := marshalReadable(summary, "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	content = append(content, '\n')
	file, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	defer func() {
		if err != nil {
			_ = file.Close()
			_ = os.Remove(file.Name()) // the error being returned says what went wrong
		}
	}()
	if _, err = file.Write(content); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if err = file.Sync(); err != nil {
		return fmt.Errorf("sync summary: %w", err)
	}
	if err = file.Close(); err != nil {
		return fmt.Errorf("close summary: %w", err)
	}
	if err = os.Rename(file.Name(), path); err != nil {
		return fmt.Errorf("rename summary into place: %w", err)
	}
	return nil
}

// maxSummaryBytes bounds a summary file read: a summary holds at most a few hundred series.
const maxSummaryBytes = 64 << 20

// ReadSummary reads a summary written by WriteSummary.
func ReadSummary(path string) (*Summary, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	if info.Size() > maxSummaryBytes {
		return nil, fmt.Errorf("read summary %s: %d bytes, more than the %d a summary can hold", path,
			info.Size(), maxSummaryBytes)
	}
	var summary Summary
	decoder := json.NewDecoder(file)
	if err := decoder.Decode(&summary); err != nil {
		return nil, fmt.Errorf("read summary %s: %w", path, err)
	}
	if summary.Version != SummaryVersion {
		return nil, fmt.Errorf("read summary %s: version %d, this program reads version %d", path,
			summary.Version, SummaryVersion)
	}
	return &summary, nil
}

// Merge combines the summaries of the generator processes of one run (one per segment) into the run's summary:
// histograms and counts are added series by series, and every figure, step and threshold is recomputed from
// them with thresholds, so percentiles are those of all the samples, never averages of percentiles. The merged
// run starts at the earliest start and finishes at the latest finish. Summaries of different scenarios or
// seeds, or two of one segment, are refused.
func Merge(summaries []*Summary, thresholds []threshold.Threshold) (*Summary, error) {
	if len(summaries) == 0 {
		return nil, errors.New("merge summaries: none given")
	}
	compiled, err := compileThresholds(thresholds)
	if err != nil {
		return nil, fmt.Errorf("merge summaries: %w", err)
	}
	first := summaries[0]
	info := RunInfo{Scenario: first.Scenario, ScenarioPath: first.ScenarioPath, Seed: first.Seed}
	startedAt, finishedAt := first.StartedAt, first.FinishedAt
	data := newDataset()
	windows := map[string]*stepWindow{}
	var windowOrder []string
	checks := map[string]CheckCounts{}
	var segments, aborted []string
	seenSegments := map[string]bool{}

	for i, summary := range summaries {
		if summary == nil {
			return nil, fmt.Errorf("merge summaries: summary %d is missing", i+1)
		}
		name := summary.Segment
		if name == "" {
			name = fmt.Sprintf("summary %d", i+1)
		}
		if summary.Version != SummaryVersion {
			return nil, fmt.Errorf("merge summaries: %s has version %d, want %d", name, summary.Version, SummaryVersion)
		}
		if summary.Scenario != first.Scenario || summary.Seed != first.Seed {
			return nil, fmt.Errorf("merge summaries: %s is scenario %q seed %d, the first is scenario %q seed %d",
				name, summary.Scenario, summary.Seed, first.Scenario, first.Seed)
		}
		if summary.Segment != "" {
			if seenSegments[summary.Segment] {
				return nil, fmt.Errorf("merge summaries: segment %s given twice", summary.Segment)
			}
			seenSegments[summary.Segment] = true
			segments = append(segments, summary.Segment)
		}
		if summary.StartedAt.Before(startedAt) {
			startedAt = summary.StartedAt
		}
		if summary.FinishedAt.After(finishedAt) {
			finishedAt = summary.FinishedAt
		}
		if summary.Aborted != "" {
			aborted = append(aborted, name+": "+summary.Aborted)
		}
		if err := addRecords(data, summary); err != nil {
			return nil, fmt.Errorf("merge summaries: %s: %w", name, err)
		}
		for _, step := range summary.Steps {
			window, ok := windows[step.Step]
			if !ok {
				copied := step.windowOf()
				windows[step.Step] = &copied
				windowOrder = append(windowOrder, step.Step)
				continue
			}
			if window.Kind != step.Window {
				return nil, fmt.Errorf("merge summaries: %s measures step %s over its %s window, another over its %s window",
					name, step.Step, step.Window, window.Kind)
			}
			if step.WindowStart.Before(window.Start) {
				window.Start = step.WindowStart
			}
			if step.WindowEnd.After(window.End) {
				window.End = step.WindowEnd
			}
			window.Completed += step.CompletedInWindow
		}
		for checkName, counts := range summary.Checks {
			total := checks[checkName]
			total.Passes += counts.Passes
			total.Fails += counts.Fails
			checks[checkName] = total
		}
	}
	info.Aborted = strings.Join(aborted, "; ")
	merged := make([]stepWindow, len(windowOrder))
	for i, label := range windowOrder {
		merged[i] = *windows[label]
	}
	summary, err := buildSummary(data, compiled, merged, checks, info, startedAt, finishedAt)
	if err != nil {
		return nil, fmt.Errorf("merge summaries: %w", err)
	}
	summary.Segments = segments
	return summary, nil
}

// addRecords adds a summary's raw series to a dataset.
func addRecords(data *dataset, summary *Summary) error {
	for _, record := range summary.Histograms {
		key, err := seriesKeyOf(record.Metric, record.Tags)
		if err != nil {
			return err
		}
		if typeOf(record.Metric) != trendMetric {
			return fmt.Errorf("histogram of %s, which is not a trend", record.Metric)
		}
		histogram, err := hdrhistogram.Decode([]byte(record.Histogram))
		if err != nil {
			return fmt.Errorf("histogram of %s: %w", record.Metric, err)
		}
		if !sameGeometry(histogram) {
			return fmt.Errorf("histogram of %s has another geometry (%d-%d, %d digits)", record.Metric,
				histogram.LowestTrackableValue(), histogram.HighestTrackableValue(), histogram.SignificantFigures())
		}
		if histogram.TotalCount() != record.Count {
			return fmt.Errorf("histogram of %s holds %d samples, its count says %d", record.Metric,
				histogram.TotalCount(), record.Count)
		}
		series := &trendSeries{histogram: histogram, count: record.Count, sumMicroseconds: record.SumMicroseconds,
			minMicroseconds: record.MinMicroseconds, maxMicroseconds: record.MaxMicroseconds}
		if _, ok := data.trends[key]; !ok {
			data.trends[key] = series // the first segment's series: adopt it rather than copy it
			continue
		}
		if err := data.trends[key].add(series); err != nil {
			return fmt.Errorf("histogram of %s: %w", record.Metric, err)
		}
	}
	for _, record := range summary.Counts {
		key, err := seriesKeyOf(record.Metric, record.Tags)
		if err != nil {
			return err
		}
		if record.Count < 0 || record.Passes < 0 || record.Fails < 0 {
			return fmt.Errorf("negative count of %s", record.Metric)
		}
		switch typeOf(record.Metric) {
		case rateMetric:
			series := data.rate(key)
			series.passes += record.Passes
			series.fails += record.Fails
		case counterMetric:
			data.counter(key).count += record.Count
		default:
			return fmt.Errorf("counts of %s, which is a trend", record.Metric)
		}
	}
	return nil
}
