package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// DedupeConfig is the worker's two-tier dedupe (docs/two-tier-dedupe.md):
// a Bloom filter of recent transaction ids in front of the exact lookup by
// id, the ledger's keys behind it.
type DedupeConfig struct {
	// Enabled turns the filter on. Default false: the exact lookup of
	// every id is one index probe per command in a statement the batch
	// sends anyway, and the filter's saving has not been measured to pay
	// for what it adds (memory, a batch applied twice after each wrong
	// negative, another moving part in the path teams copy).
	Enabled bool
	// Filter sizes the filter (dedupe.Config: capacity 1,000,000 ids per
	// generation, false-positive rate 0.001 by default).
	Filter dedupe.Config
	// WarmTimeout bounds the filling of the filter from the ledger's newest
	// transactions at start, in the background while the worker applies.
	// Default 30s.
	WarmTimeout time.Duration
}

// Default of DedupeConfig.WarmTimeout.
const DefaultDedupeWarmTimeout = 30 * time.Second

// validate checks the filter's settings whether or not it is enabled, so a
// typo in a flag is an error at once rather than when the filter is turned
// on.
func (c *DedupeConfig) validate() error {
	if c.WarmTimeout == 0 {
		c.WarmTimeout = DefaultDedupeWarmTimeout
	}
	if c.WarmTimeout < 0 {
		return fmt.Errorf("worker: bloom warm timeout %s must be positive", c.WarmTimeout)
	}
	return c.Filter.Validate()
}

// newDedupeFilter returns the filter the worker's store uses: nil when the
// two-tier dedupe is off, unless the store runs ledger.BugBloomOnlyDedupe,
// whose filter is its only dedupe.
func newDedupeFilter(config DedupeConfig, storeBugs ledger.Bugs) (*dedupe.Filter, error) {
	if !config.Enabled && !storeBugs.Has(ledger.BugBloomOnlyDedupe) {
		return nil, nil
	}
	return dedupe.New(config.Filter)
}

// warmDedupe fills the store's filter from the ledger, retrying while
// Postgres does not answer (it may still be starting), until timeout. A
// filter left cold is logged, not fatal: what it lacks, the ledger's keys
// catch.
func warmDedupe(ctx context.Context, store *postgres.Store, timeout time.Duration, logger *slog.Logger) {
	started := time.Now()
	deadline := started.Add(timeout)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		loaded, err := store.WarmDedupe(ctx, time.Until(deadline))
		if err == nil {
			logger.Info("dedupe filter warmed from the ledger", "ids", loaded, "elapsed", time.Since(started).Round(time.Millisecond))
			return
		}
		if ctx.Err() != nil || time.Until(deadline) <= backoff {
			logger.Warn("dedupe filter not fully warmed: ids it lacks are caught by the ledger's keys", "ids", loaded, "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

var (
	dedupeSavedDescription = prometheus.NewDesc("ledger_worker_dedupe_lookups_saved_total",
		"Commands whose transaction id the Bloom filter had never seen: they skipped the exact lookup (counted per attempt at a batch).", nil, nil)
	dedupePositivesDescription = prometheus.NewDesc("ledger_worker_dedupe_filter_positives_total",
		"Commands whose transaction id the Bloom filter may have seen: looked up.", nil, nil)
	dedupeFalsePositivesDescription = prometheus.NewDesc("ledger_worker_dedupe_false_positives_total",
		"Bloom positives the exact lookup did not find in the ledger.", nil, nil)
	dedupeFalsePositiveRateDescription = prometheus.NewDesc("ledger_worker_dedupe_false_positive_ratio",
		"Observed false-positive rate: false positives over false positives plus lookups saved (0 before any new id).", nil, nil)
	dedupeConflictsDescription = prometheus.NewDesc("ledger_worker_dedupe_backstop_conflicts_total",
		"Batches the ledger's unique keys refused while the Bloom filter was in use (a wrong negative), applied again with every id looked up.", nil, nil)
	dedupeIDsDescription = prometheus.NewDesc("ledger_worker_dedupe_filter_ids",
		"Distinct transaction ids the Bloom filter's two generations hold.", nil, nil)
	dedupeRotationsDescription = prometheus.NewDesc("ledger_worker_dedupe_filter_rotations_total",
		"Generations of the Bloom filter dropped (their ids forgotten) because the newer one was full.", nil, nil)
)

// dedupeCollector reads the filter's counters at each scrape.
type dedupeCollector struct{ filter *dedupe.Filter }

// registerDedupeMetrics registers the filter's metrics on registerer; with
// no filter there is none.
func registerDedupeMetrics(registerer prometheus.Registerer, filter *dedupe.Filter) {
	if filter != nil && registerer != nil {
		registerer.MustRegister(dedupeCollector{filter: filter})
	}
}

func (c dedupeCollector) Describe(descriptions chan<- *prometheus.Desc) {
	for _, description := range []*prometheus.Desc{dedupeSavedDescription, dedupePositivesDescription, dedupeFalsePositivesDescription,
		dedupeFalsePositiveRateDescription, dedupeConflictsDescription, dedupeIDsDescription, dedupeRotationsDescription} {
		descriptions <- description
	}
}

func (c dedupeCollector) Collect(metrics chan<- prometheus.Metric) {
	stats := c.filter.Stats()
	metrics <- prometheus.MustNewConstMetric(dedupeSavedDescription, prometheus.CounterValue, float64(stats.LookupsSaved))
	metrics <- prometheus.MustNewConstMetric(dedupePositivesDescription, prometheus.CounterValue, float64(stats.Positives))
	metrics <- prometheus.MustNewConstMetric(dedupeFalsePositivesDescription, prometheus.CounterValue, float64(stats.FalsePositives))
	metrics <- prometheus.MustNewConstMetric(dedupeFalsePositiveRateDescription, prometheus.GaugeValue, stats.ObservedFalsePositiveRate())
	metrics <- prometheus.MustNewConstMetric(dedupeConflictsDescription, prometheus.CounterValue, float64(stats.BackstopConflicts))
	metrics <- prometheus.MustNewConstMetric(dedupeIDsDescription, prometheus.GaugeValue, float64(stats.IDs))
	metrics <- prometheus.MustNewConstMetric(dedupeRotationsDescription, prometheus.CounterValue, float64(stats.Rotations))
}
