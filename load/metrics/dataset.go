package metrics

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// Histogram geometry: latencies are recorded in microseconds from 1 µs to one hour with 3 significant digits
// (a recorded value is within 0.1% of the true one). A longer latency is recorded as one hour: the load's own
// timeouts are far below it, so only a broken clock produces one.
const (
	histogramLowestMicroseconds  = 1
	histogramHighestMicroseconds = int64(3600 * 1000 * 1000)
	histogramSignificantDigits   = 3
)

// newHistogram returns an empty latency histogram (about 184 KB: the dense histogram is the cheap one to record
// into, and the number of histograms is bounded by the tag limits below).
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histogramLowestMicroseconds, histogramHighestMicroseconds, histogramSignificantDigits)
}

// sameGeometry reports whether a decoded histogram was recorded with this package's geometry, so merging it
// loses nothing.
func sameGeometry(histogram *hdrhistogram.Histogram) bool {
	return histogram.LowestTrackableValue() == histogramLowestMicroseconds &&
		histogram.HighestTrackableValue() == histogramHighestMicroseconds &&
		histogram.SignificantFigures() == histogramSignificantDigits
}

// metricType is how a metric aggregates: as k6's trend, rate and counter.
type metricType int

const (
	trendMetric metricType = iota + 1
	rateMetric
	counterMetric
)

func (t metricType) String() string {
	switch t {
	case trendMetric:
		return "trend"
	case rateMetric:
		return "rate"
	case counterMetric:
		return "counter"
	}
	return "unknown"
}

// typeOf is the type of a metric threshold.Known lists; 0 for any other name.
func typeOf(metric string) metricType {
	switch metric {
	case threshold.AcceptDuration, threshold.SettleDuration, threshold.HTTPRequestDuration:
		return trendMetric
	case threshold.Errors, threshold.UnknownOutcomes, threshold.HTTPRequestFailed, threshold.Checks:
		return rateMetric
	case threshold.Operations, threshold.HTTPRequests, threshold.Iterations, threshold.DroppedIterations,
		threshold.Retries, threshold.DuplicatesSent, threshold.MisuseSent:
		return counterMetric
	}
	return 0
}

// maxTags is the most tags threshold.Known gives one metric (operations: kind, outcome, step).
const maxTags = 3

// tagPosition is where a tag's value sits in a seriesKey of the metric, or -1 when the metric has no such tag.
func tagPosition(metric, tag string) int {
	for position, name := range threshold.Known[metric] {
		if name == tag {
			return position
		}
	}
	return -1
}

// seriesKey names one series: a metric and one value for each of its tags, in threshold.Known's order ("" for a
// tag the sample did not carry, such as the step outside capacity steps). Every sample belongs to exactly one
// series; a (sub)metric is the union of the series it selects.
type seriesKey struct {
	metric string
	tags   [maxTags]string
}

// tagMap is the key's tags as a map, without empty values (nil when there are none).
func (k seriesKey) tagMap() map[string]string {
	var tags map[string]string
	for position, name := range threshold.Known[k.metric] {
		if k.tags[position] == "" {
			continue
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[name] = k.tags[position]
	}
	return tags
}

// seriesKeyOf builds a key from a summary record's metric and tags, refusing what this package never writes.
func seriesKeyOf(metric string, tags map[string]string) (seriesKey, error) {
	key := seriesKey{metric: metric}
	if typeOf(metric) == 0 {
		return key, fmt.Errorf("unknown metric %q", metric)
	}
	for name, value := range tags {
		position := tagPosition(metric, name)
		if position < 0 {
			return key, fmt.Errorf("metric %s has no tag %q", metric, name)
		}
		key.tags[position] = value
	}
	return key, nil
}

// less orders keys by metric, then tag values, so that summaries list series in a stable order.
func (k seriesKey) less(other seriesKey) bool {
	if k.metric != other.metric {
		return k.metric < other.metric
	}
	for position := range k.tags {
		if k.tags[position] != other.tags[position] {
			return k.tags[position] < other.tags[position]
		}
	}
	return false
}

// selection is a (sub)metric: a metric narrowed to the series carrying some tag values, as in
// `accept_duration{kind:transfer}`.
type selection struct {
	metric string
	tags   [maxTags]string
	set    [maxTags]bool
}

// selectionOf builds the selection a threshold or a summary entry names.
func selectionOf(metric string, tags map[string]string) (selection, error) {
	chosen := selection{metric: metric}
	if typeOf(metric) == 0 {
		return chosen, fmt.Errorf("unknown metric %q", metric)
	}
	for name, value := range tags {
		position := tagPosition(metric, name)
		if position < 0 {
			return chosen, fmt.Errorf("metric %s has no tag %q (it has %s)", metric, name,
				strings.Join(threshold.Known[metric], ", "))
		}
		chosen.tags[position] = value
		chosen.set[position] = true
	}
	return chosen, nil
}

// matches reports whether a series belongs to the selection.
func (s selection) matches(key seriesKey) bool {
	if key.metric != s.metric {
		return false
	}
	for position := range s.tags {
		if s.set[position] && key.tags[position] != s.tags[position] {
			return false
		}
	}
	return true
}

// name is the selection's name in a summary: the metric, then its tags in threshold.Known's order, as k6 names
// submetrics (`operations{kind:transfer,outcome:ok}`). One canonical spelling, whatever spacing the scenario
// file used, so that one submetric has one entry.
func (s selection) name() string {
	var builder strings.Builder
	builder.WriteString(s.metric)
	first := true
	for position, tag := range threshold.Known[s.metric] {
		if !s.set[position] {
			continue
		}
		if first {
			builder.WriteByte('{')
			first = false
		} else {
			builder.WriteByte(',')
		}
		builder.WriteString(tag)
		builder.WriteByte(':')
		builder.WriteString(s.tags[position])
	}
	if !first {
		builder.WriteByte('}')
	}
	return builder.String()
}

// prometheusBucketMicroseconds are the upper bounds of the Prometheus histogram buckets, from 1 ms to 30 s: the
// range a ledger's latency objectives live in. Prometheus needs fixed buckets to aggregate across generators;
// the HDR histograms keep the exact picture.
var prometheusBucketMicroseconds = [...]int64{
	1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
	1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
}

// trendSeries is one series of a trend metric: an HDR histogram of microseconds for percentiles, and the exact
// count, sum, minimum and maximum (so that avg, min and max are not quantised).
type trendSeries struct {
	histogram       *hdrhistogram.Histogram
	count           int64
	sumMicroseconds int64
	minMicroseconds int64
	maxMicroseconds int64
	// bucketCounts counts samples per Prometheus bucket (the last one: above every bound); only the live
	// recorder keeps it, for its /metrics handler.
	bucketCounts [len(prometheusBucketMicroseconds) + 1]int64
}

func newTrendSeries() *trendSeries { return &trendSeries{histogram: newHistogram()} }

// clampMicroseconds keeps a duration in the histogram's range; a negative one (a clock stepping back) is 0.
func clampMicroseconds(microseconds int64) int64 {
	if microseconds < 0 {
		return 0
	}
	if microseconds > histogramHighestMicroseconds {
		return histogramHighestMicroseconds
	}
	return microseconds
}

// record adds one sample. It does not allocate.
func (t *trendSeries) record(microseconds int64) {
	microseconds = clampMicroseconds(microseconds)
	if err := t.histogram.RecordValue(microseconds); err != nil {
		panic("metrics: a clamped value did not fit the histogram: " + err.Error())
	}
	if t.count == 0 || microseconds < t.minMicroseconds {
		t.minMicroseconds = microseconds
	}
	if microseconds > t.maxMicroseconds {
		t.maxMicroseconds = microseconds
	}
	t.count++
	t.sumMicroseconds += microseconds
	bucket := 0
	for bucket < len(prometheusBucketMicroseconds) && microseconds > prometheusBucketMicroseconds[bucket] {
		bucket++
	}
	t.bucketCounts[bucket]++
}

// add merges another series into this one (Merge, and submetrics spanning several series).
func (t *trendSeries) add(other *trendSeries) error {
	if other.count == 0 {
		return nil
	}
	if dropped := t.histogram.Merge(other.histogram); dropped != 0 {
		return fmt.Errorf("%d samples did not fit the histogram", dropped)
	}
	if t.count == 0 || other.minMicroseconds < t.minMicroseconds {
		t.minMicroseconds = other.minMicroseconds
	}
	if other.maxMicroseconds > t.maxMicroseconds {
		t.maxMicroseconds = other.maxMicroseconds
	}
	t.count += other.count
	t.sumMicroseconds += other.sumMicroseconds
	for bucket, count := range other.bucketCounts {
		t.bucketCounts[bucket] += count
	}
	return nil
}

// clone is an independent copy, so a summary can be built outside the recorder's lock.
func (t *trendSeries) clone() *trendSeries {
	copied := *t
	copied.histogram = t.histogram.Clone()
	return &copied
}

// reset empties the series, keeping its histogram's memory (the per-second and progress histograms).
func (t *trendSeries) reset() {
	if t.count == 0 {
		return // Reset zeroes every bucket; skip it when nothing was recorded
	}
	t.histogram.Reset()
	*t = trendSeries{histogram: t.histogram}
}

// percentileMilliseconds is the p-th percentile in milliseconds, kept within the exact minimum and maximum (a
// histogram reports a bucket's highest equivalent value, which can exceed the largest sample by 0.1%).
func (t *trendSeries) percentileMilliseconds(percentile float64) float64 {
	value := t.histogram.ValueAtPercentile(percentile)
	value = max(t.minMicroseconds, min(value, t.maxMicroseconds))
	return milliseconds(value)
}

// averageMilliseconds is the exact mean in milliseconds.
func (t *trendSeries) averageMilliseconds() float64 {
	return float64(t.sumMicroseconds) / float64(t.count) / 1000
}

func milliseconds(microseconds int64) float64 { return float64(microseconds) / 1000 }

// rateSeries is one series of a rate metric: samples that were 1 (passes, as k6 calls them) and 0 (fails).
type rateSeries struct{ passes, fails int64 }

func (r *rateSeries) add(one bool) {
	if one {
		r.passes++
	} else {
		r.fails++
	}
}

// counterSeries is one series of a counter metric.
type counterSeries struct{ count int64 }

// dataset holds every series of a run. The live recorder fills one; Merge rebuilds one from summaries. Summaries
// and threshold results are computed from a dataset by the same code in both cases, which is what makes a
// merged summary equal to the one a single recorder fed every sample would write.
type dataset struct {
	trends   map[seriesKey]*trendSeries
	rates    map[seriesKey]*rateSeries
	counters map[seriesKey]*counterSeries
}

func newDataset() *dataset {
	return &dataset{
		trends:   map[seriesKey]*trendSeries{},
		rates:    map[seriesKey]*rateSeries{},
		counters: map[seriesKey]*counterSeries{},
	}
}

func (d *dataset) trend(key seriesKey) *trendSeries {
	series, ok := d.trends[key]
	if !ok {
		series = newTrendSeries()
		d.trends[key] = series
	}
	return series
}

func (d *dataset) rate(key seriesKey) *rateSeries {
	series, ok := d.rates[key]
	if !ok {
		series = &rateSeries{}
		d.rates[key] = series
	}
	return series
}

func (d *dataset) counter(key seriesKey) *counterSeries {
	series, ok := d.counters[key]
	if !ok {
		series = &counterSeries{}
		d.counters[key] = series
	}
	return series
}

// clone copies the dataset (histograms included).
func (d *dataset) clone() *dataset {
	copied := newDataset()
	for key, series := range d.trends {
		if series.count > 0 { // an empty series is the same as none, and cloning costs a whole histogram
			copied.trends[key] = series.clone()
		}
	}
	for key, series := range d.rates {
		value := *series
		copied.rates[key] = &value
	}
	for key, series := range d.counters {
		value := *series
		copied.counters[key] = &value
	}
	return copied
}

// trendOf aggregates the series a selection covers. With one series it returns that series itself; with more it
// merges them into scratch (which it resets), so callers must not keep the result past scratch's next use.
func (d *dataset) trendOf(chosen selection, scratch *trendSeries) *trendSeries {
	var only *trendSeries
	matched := 0
	for key, series := range d.trends {
		if !chosen.matches(key) || series.count == 0 {
			continue
		}
		matched++
		if matched == 1 {
			only = series
			continue
		}
		if matched == 2 {
			scratch.reset()
			if err := scratch.add(only); err != nil {
				panic("metrics: series of one geometry did not merge: " + err.Error())
			}
		}
		if err := scratch.add(series); err != nil {
			panic("metrics: series of one geometry did not merge: " + err.Error())
		}
	}
	switch matched {
	case 0:
		scratch.reset()
		return scratch
	case 1:
		return only
	}
	return scratch
}

// rateOf sums the rate series a selection covers.
func (d *dataset) rateOf(chosen selection) rateSeries {
	var total rateSeries
	for key, series := range d.rates {
		if chosen.matches(key) {
			total.passes += series.passes
			total.fails += series.fails
		}
	}
	return total
}

// counterOf sums the counter series a selection covers.
func (d *dataset) counterOf(chosen selection) int64 {
	var total int64
	for key, series := range d.counters {
		if chosen.matches(key) {
			total += series.count
		}
	}
	return total
}

// percentileOf reads N from an aggregate `p(N)`, preferring the threshold's parsed Percentile.
func percentileOf(aggregate string, parsed float64) (float64, bool) {
	if aggregate == "p" {
		return parsed, true
	}
	if !strings.HasPrefix(aggregate, "p(") || !strings.HasSuffix(aggregate, ")") {
		return 0, false
	}
	if parsed != 0 {
		return parsed, true
	}
	value, err := strconv.ParseFloat(aggregate[2:len(aggregate)-1], 64)
	if err != nil {
		return 0, false
	}
	return value, true
}

// evaluate computes one aggregate of a selection. observed is false when a trend or rate has no samples: there
// is nothing to compare (a counter is always observed: zero events is a measurement). elapsedSeconds turns a
// counter's count into its per-second rate.
func (d *dataset) evaluate(chosen selection, aggregate string, percentile float64, elapsedSeconds float64,
	scratch *trendSeries) (value float64, observed bool) {
	switch typeOf(chosen.metric) {
	case trendMetric:
		series := d.trendOf(chosen, scratch)
		if series.count == 0 {
			return 0, false
		}
		switch aggregate {
		case "avg":
			return series.averageMilliseconds(), true
		case "min":
			return milliseconds(series.minMicroseconds), true
		case "max":
			return milliseconds(series.maxMicroseconds), true
		case "med":
			return series.percentileMilliseconds(50), true
		case "count":
			return float64(series.count), true
		}
		if n, ok := percentileOf(aggregate, percentile); ok {
			return series.percentileMilliseconds(n), true
		}
	case rateMetric:
		total := d.rateOf(chosen)
		samples := total.passes + total.fails
		if samples == 0 {
			return 0, false
		}
		switch aggregate {
		case "rate", "value":
			return float64(total.passes) / float64(samples), true
		case "count":
			return float64(total.passes), true
		case "total":
			return float64(samples), true
		}
	case counterMetric:
		count := d.counterOf(chosen)
		switch aggregate {
		case "count", "value":
			return float64(count), true
		case "rate":
			return perSecond(count, elapsedSeconds), true
		}
	}
	panic(fmt.Sprintf("metrics: aggregate %q of %s was not validated", aggregate, chosen.metric))
}

// perSecond is a count over elapsed seconds, 0 before any time has elapsed.
func perSecond(count int64, elapsedSeconds float64) float64 {
	if elapsedSeconds <= 0 {
		return 0
	}
	return float64(count) / elapsedSeconds
}

// sortedKeys returns a map's series keys in a stable order.
func sortedKeys[V any](series map[seriesKey]V) []seriesKey {
	keys := make([]seriesKey, 0, len(series))
	for key := range series {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	return keys
}

// finite asserts that a figure can be written as JSON.
func finite(value float64) float64 {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		panic("metrics: a figure is not a finite number")
	}
	return value
}
