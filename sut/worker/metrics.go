package worker

import (
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
	poison       prometheus.Counter
	lag          *prometheus.GaugeVec
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
			Help: "Commands by result: settled, rejected, duplicate (key already had an effect), already_applied (offset already stored)."}, []string{"result"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_apply_errors_total", Help: "Failed batch attempts (retried)."}),
		cacheErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_cache_errors_total", Help: "Failed after-commit Redis updates."}),
		poison:      prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_poison_records_total", Help: "Records that did not decode as commands."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_worker_consumer_lag_records",
			Help: "Records behind the high watermark, per partition, after the last batch."}, []string{"partition"}),
	}
	if registerer != nil {
		registerer.MustRegister(m.batches, m.batchSize, m.applySeconds, m.commands, m.applyErrors, m.cacheErrors, m.poison, m.lag)
	}
	return m
}

func (m *Metrics) observeBatch(result postgres.BatchResult, elapsed time.Duration) {
	m.batches.Inc()
	m.batchSize.Observe(float64(result.Applied + result.Duplicates + result.AlreadyApplied))
	m.applySeconds.Observe(elapsed.Seconds())
	m.commands.WithLabelValues("settled").Add(float64(result.Settled))
	m.commands.WithLabelValues("rejected").Add(float64(result.Applied - result.Settled))
	m.commands.WithLabelValues("duplicate").Add(float64(result.Duplicates))
	m.commands.WithLabelValues("already_applied").Add(float64(result.AlreadyApplied))
}
