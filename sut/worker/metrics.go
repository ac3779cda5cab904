package worker

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// Metrics are the worker's Prometheus metrics.
type Metrics struct {
	batches      prometheus.Counter
	batchSize    prometheus.Histogram
	applySeconds prometheus.Histogram
	commands     *prometheus.CounterVec
	applyErrors  prometheus.Counter
	cacheErrors  prometheus.Counter
	deadLetters  *prometheus.CounterVec
	lag          *prometheus.GaugeVec
	// sharding holds the metrics of a sharded worker (sharding.go).
	sharding shardMetrics
	// progress is read at each scrape for the stall metrics; set by New.
	progress atomic.Pointer[progressSource]
}

// progressSource is where the stall metrics read the partitions' progress.
type progressSource struct {
	partitions   func() []PartitionProgress
	stalledAfter time.Duration
}

// NewMetrics registers the worker's metrics on registerer (nil: unregistered).
func NewMetrics(registerer prometheus.Registerer) *Metrics {
	m := &Metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_batches_total", Help: "Batches committed."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_worker_batch_records",
			Help: "Records per committed batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_worker_apply_seconds",
			Help: "Time to apply and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_worker_commands_total",
			Help: "Records by result: settled, rejected, duplicate (key already had an effect, key collisions included), " +
				"already_applied (offset already stored), dead_letter (set aside in dead_letters, key collisions excluded)."}, []string{"result"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_apply_errors_total", Help: "Failed batch attempts (retried)."}),
		cacheErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_cache_errors_total", Help: "Failed after-commit Redis updates."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_worker_dead_letters_total",
			Help: "Records set aside in dead_letters, by reason (docs/dead-letters.md)."}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_worker_consumer_lag_records",
			Help: "Records behind the high watermark, per partition, after the last batch."}, []string{"partition"}),
	}
	m.sharding = newShardMetrics()
	if registerer != nil {
		registerer.MustRegister(m.batches, m.batchSize, m.applySeconds, m.commands, m.applyErrors, m.cacheErrors, m.deadLetters, m.lag,
			stallCollector{metrics: m})
		m.sharding.register(registerer)
	}
	return m
}

func (m *Metrics) observeBatch(result postgres.BatchResult, elapsed time.Duration) {
	m.batches.Inc()
	m.batchSize.Observe(float64(result.Applied + result.Duplicates + result.AlreadyApplied + result.DeadLettered))
	m.applySeconds.Observe(elapsed.Seconds())
	m.commands.WithLabelValues("settled").Add(float64(result.Settled))
	m.commands.WithLabelValues("rejected").Add(float64(result.Applied - result.Settled))
	m.commands.WithLabelValues("duplicate").Add(float64(result.Duplicates))
	m.commands.WithLabelValues("already_applied").Add(float64(result.AlreadyApplied))
	m.commands.WithLabelValues("dead_letter").Add(float64(result.DeadLettered))
	m.sharding.observeBatch(result)
}

var (
	stalledSecondsDescription = prometheus.NewDesc("ledger_worker_partition_stalled_seconds",
		"Seconds since the partition last advanced while it lags (the broker holds records past the last one applied); 0 when it does not lag.",
		[]string{"partition"}, nil)
	stalledPartitionsDescription = prometheus.NewDesc("ledger_worker_stalled_partitions",
		"Partitions stalled for longer than --stalled-after; any makes /readyz fail.", nil, nil)
)

// stallCollector computes the stall metrics at each scrape from the
// partitions' progress, so they grow while a partition is stuck without
// anything being applied.
type stallCollector struct{ metrics *Metrics }

func (c stallCollector) Describe(descriptions chan<- *prometheus.Desc) {
	descriptions <- stalledSecondsDescription
	descriptions <- stalledPartitionsDescription
}

func (c stallCollector) Collect(metrics chan<- prometheus.Metric) {
	source := c.metrics.progress.Load()
	if source == nil {
		return
	}
	stalled := 0
	for _, entry := range source.partitions() {
		metrics <- prometheus.MustNewConstMetric(stalledSecondsDescription, prometheus.GaugeValue, entry.StalledFor.Seconds(),
			strconv.Itoa(int(entry.Partition)))
		if entry.StalledFor > source.stalledAfter {
			stalled++
		}
	}
	metrics <- prometheus.MustNewConstMetric(stalledPartitionsDescription, prometheus.GaugeValue, float64(stalled))
}
