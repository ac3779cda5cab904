package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricsFileName is the scraped metrics inside a run directory.
const MetricsFileName = "metrics.jsonl"

// ScrapeTarget is one /metrics endpoint of the system: a gateway or a worker.
type ScrapeTarget struct {
	// Name names it in metrics.jsonl: gateway-0, worker-1.
	Name string
	// URL is its Prometheus text endpoint, e.g. http://127.0.0.1:18180/metrics.
	URL string
}

// MetricsLine is one line of metrics.jsonl: one scrape of one target.
type MetricsLine struct {
	Time   time.Time          `json:"time"`
	Target string             `json:"target"`
	Up     bool               `json:"up"`
	Values map[string]float64 `json:"values,omitempty"`
	// Error says why a target that is not up did not answer.
	Error string `json:"error,omitempty"`
}

// keptFamily says whether a metric family goes into metrics.jsonl: the
// system's own (ledger_*) and its CPU, not the Go runtime's dozens of others.
func keptFamily(name string) bool {
	return strings.HasPrefix(name, "ledger_") || name == "process_cpu_seconds_total"
}

// maxScrapeBytes bounds one target's answer.
const maxScrapeBytes = 8 << 20

// scrapeTimeout bounds one scrape: a target that takes longer is down for
// that second (a paused process never answers).
const scrapeTimeout = 900 * time.Millisecond

// Scraper scrapes every target every Interval into one JSON line per target
// per scrape. Targets are scraped concurrently (one goroutine each, bounded
// by the target list) so one dead target does not delay the others.
type Scraper struct {
	Targets []ScrapeTarget
	// Interval between scrapes. Default 1s.
	Interval time.Duration
	// Client does the requests. Default http.DefaultClient (each request
	// is bounded by scrapeTimeout).
	Client *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Run scrapes until ctx ends, appending to w, and returns the first write
// error (scrape errors are recorded as up=false lines, not returned).
func (s *Scraper) Run(ctx context.Context, w io.Writer) error {
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	if len(s.Targets) == 0 {
		<-ctx.Done()
		return nil
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := s.scrapeAll(ctx, w); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// scrapeAll scrapes every target once and writes their lines in target order.
func (s *Scraper) scrapeAll(ctx context.Context, w io.Writer) error {
	lines := make([]MetricsLine, len(s.Targets))
	var wait sync.WaitGroup
	for index, target := range s.Targets {
		wait.Add(1)
		go func() {
			defer wait.Done()
			lines[index] = s.scrape(ctx, target)
		}()
	}
	wait.Wait()
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	encoder.SetEscapeHTML(false)
	for _, line := range lines {
		if err := encoder.Encode(line); err != nil {
			return fmt.Errorf("metrics line: %w", err)
		}
	}
	if _, err := w.Write(buffer.Bytes()); err != nil {
		return fmt.Errorf("write %s: %w", MetricsFileName, err)
	}
	return nil
}

func (s *Scraper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// scrape fetches and parses one target.
func (s *Scraper) scrape(ctx context.Context, target ScrapeTarget) MetricsLine {
	line := MetricsLine{Time: s.now().UTC(), Target: target.Name}
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, target.URL, nil)
	if err != nil {
		line.Error = err.Error()
		return line
	}
	request.Header.Set("Accept", "text/plain;version=0.0.4")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	response, err := client.Do(request)
	if err != nil {
		line.Error = err.Error()
		return line
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		line.Error = "HTTP " + response.Status
		return line
	}
	values, err := ParseMetrics(io.LimitReader(response.Body, maxScrapeBytes))
	if err != nil {
		line.Error = err.Error()
		return line
	}
	line.Up, line.Values = true, values
	return line
}

// ParseMetrics parses Prometheus text exposition into the kept samples,
// keyed as Prometheus prints them: name{label="value",...}; histograms give
// their _bucket (with le), _sum and _count samples, summaries their
// quantiles, _sum and _count.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	values := map[string]float64{}
	for name, family := range families {
		if !keptFamily(name) {
			continue
		}
		for _, metric := range family.GetMetric() {
			labels := metric.GetLabel()
			switch family.GetType() {
			case dto.MetricType_COUNTER:
				values[sampleKey(name, labels, "", "")] = metric.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				values[sampleKey(name, labels, "", "")] = metric.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				values[sampleKey(name, labels, "", "")] = metric.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				histogram := metric.GetHistogram()
				for _, bucket := range histogram.GetBucket() {
					values[sampleKey(name+"_bucket", labels, "le", formatFloat(bucket.GetUpperBound()))] = float64(bucket.GetCumulativeCount())
				}
				values[sampleKey(name+"_bucket", labels, "le", "+Inf")] = float64(histogram.GetSampleCount())
				values[sampleKey(name+"_sum", labels, "", "")] = histogram.GetSampleSum()
				values[sampleKey(name+"_count", labels, "", "")] = float64(histogram.GetSampleCount())
			case dto.MetricType_SUMMARY:
				summary := metric.GetSummary()
				for _, quantile := range summary.GetQuantile() {
					values[sampleKey(name, labels, "quantile", formatFloat(quantile.GetQuantile()))] = quantile.GetValue()
				}
				values[sampleKey(name+"_sum", labels, "", "")] = summary.GetSampleSum()
				values[sampleKey(name+"_count", labels, "", "")] = float64(summary.GetSampleCount())
			}
		}
	}
	return values, nil
}

// sampleKey prints a sample's name and labels as the text format does,
// labels sorted by name, then the extra label (le, quantile) last.
func sampleKey(name string, labels []*dto.LabelPair, extraName, extraValue string) string {
	sorted := append([]*dto.LabelPair(nil), labels...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetName() < sorted[j].GetName() })
	var parts []string
	for _, label := range sorted {
		parts = append(parts, label.GetName()+"="+strconv.Quote(label.GetValue()))
	}
	if extraName != "" {
		parts = append(parts, extraName+"="+strconv.Quote(extraValue))
	}
	if len(parts) == 0 {
		return name
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// formatFloat prints a bucket bound or quantile as Prometheus does.
func formatFloat(value float64) string {
	return strconv.FormatFloat(value, 'g', -1, 64)
}
