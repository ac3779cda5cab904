package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// prometheusNamespace prefixes every metric the handler exposes: ledgerproof_load_accept_duration_seconds.
const prometheusNamespace = "ledgerproof_load"

// collector exposes a recorder's series at each scrape. Names follow the load's metrics, with Prometheus's units
// and suffixes: a counter is <name>_total; a rate is <name>_total (samples that were 1) and
// <name>_samples_total (all samples), so that a rate() of one over the other is the fraction; a trend is a
// histogram <name>_seconds with fixed buckets from 1 ms to 30 s. Labels are the metric's tags.
type collector struct {
	recorder *Recorder
	// descriptions holds each metric's descriptions: one for counters and trends, two for rates.
	descriptions map[string][]*prometheus.Desc
}

func newCollector(recorder *Recorder) *collector {
	c := &collector{recorder: recorder, descriptions: map[string][]*prometheus.Desc{}}
	for metric, tags := range threshold.Known {
		name := prometheusNamespace + "_" + metric
		switch typeOf(metric) {
		case counterMetric:
			c.descriptions[metric] = []*prometheus.Desc{
				prometheus.NewDesc(name+"_total", "Load engine counter "+metric+".", tags, nil),
			}
		case rateMetric:
			c.descriptions[metric] = []*prometheus.Desc{
				prometheus.NewDesc(name+"_total", "Samples of the load engine rate "+metric+" that were 1.", tags, nil),
				prometheus.NewDesc(name+"_samples_total", "Samples of the load engine rate "+metric+".", tags, nil),
			}
		case trendMetric:
			c.descriptions[metric] = []*prometheus.Desc{
				prometheus.NewDesc(name+"_seconds", "Load engine trend "+metric+".", tags, nil),
			}
		}
	}
	return c
}

// Describe sends every description.
func (c *collector) Describe(descriptions chan<- *prometheus.Desc) {
	for _, list := range c.descriptions {
		for _, description := range list {
			descriptions <- description
		}
	}
}

// scrapedTrend is a trend series' figures copied under the recorder's lock.
type scrapedTrend struct {
	key             seriesKey
	count           int64
	sumMicroseconds int64
	bucketCounts    [len(prometheusBucketMicroseconds) + 1]int64
}

// Collect copies the series under the recorder's lock (a few hundred numbers), then builds the metrics outside
// it.
func (c *collector) Collect(metrics chan<- prometheus.Metric) {
	type scrapedCount struct {
		key           seriesKey
		count, passes int64
	}
	var counts []scrapedCount
	var trends []scrapedTrend
	c.recorder.mu.Lock()
	data := c.recorder.data
	for key, series := range data.counters {
		counts = append(counts, scrapedCount{key: key, count: series.count})
	}
	for key, series := range data.rates {
		counts = append(counts, scrapedCount{key: key, count: series.passes + series.fails, passes: series.passes})
	}
	for key, series := range data.trends {
		trends = append(trends, scrapedTrend{key: key, count: series.count, sumMicroseconds: series.sumMicroseconds,
			bucketCounts: series.bucketCounts})
	}
	c.recorder.mu.Unlock()

	for _, scraped := range counts {
		descriptions := c.descriptions[scraped.key.metric]
		labels := labelValues(scraped.key)
		if typeOf(scraped.key.metric) == rateMetric {
			metrics <- prometheus.MustNewConstMetric(descriptions[0], prometheus.CounterValue, float64(scraped.passes), labels...)
			metrics <- prometheus.MustNewConstMetric(descriptions[1], prometheus.CounterValue, float64(scraped.count), labels...)
			continue
		}
		metrics <- prometheus.MustNewConstMetric(descriptions[0], prometheus.CounterValue, float64(scraped.count), labels...)
	}
	for _, scraped := range trends {
		buckets := make(map[float64]uint64, len(prometheusBucketMicroseconds))
		var cumulative int64
		for i, bound := range prometheusBucketMicroseconds {
			cumulative += scraped.bucketCounts[i]
			buckets[float64(bound)/1e6] = uint64(cumulative)
		}
		metrics <- prometheus.MustNewConstHistogram(c.descriptions[scraped.key.metric][0], uint64(scraped.count),
			float64(scraped.sumMicroseconds)/1e6, buckets, labelValues(scraped.key)...)
	}
}

// labelValues are a series' tag values in its description's label order.
func labelValues(key seriesKey) []string {
	return append([]string(nil), key.tags[:len(threshold.Known[key.metric])]...)
}

// newPrometheusHandler serves the recorder's collector from a registry of its own (no global state), with the
// process's CPU and memory (process_cpu_seconds_total: what the load generator itself costs) and Go's runtime.
func newPrometheusHandler(recorder *Recorder) http.Handler {
	registry := prometheus.NewRegistry()
	registry.MustRegister(newCollector(recorder), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
