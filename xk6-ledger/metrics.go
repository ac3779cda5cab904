package ledger

import (
	"context"
	"fmt"
	"time"

	"go.k6.io/k6/metrics"
)

// Names of the custom metrics (README.md lists them with their tags).
const (
	metricOperations      = "ledger_operations"
	metricAcceptDuration  = "ledger_accept_duration"
	metricSettleDuration  = "ledger_settle_duration"
	metricRetries         = "ledger_retries"
	metricUnknownOutcomes = "ledger_unknown_outcomes"
	metricDuplicatesSent  = "ledger_duplicates_sent"
	metricMisuseSent      = "ledger_misuse_sent"
)

// ledgerMetrics are the extension's custom metrics, registered once per VU in the test's registry (the registry
// returns the same metric to every VU).
type ledgerMetrics struct {
	// operations counts logical operations by kind and outcome (tags kind, outcome).
	operations *metrics.Metric
	// acceptDuration is the time from invoke to the gateway accepting the command (200 or 202) (tag kind).
	acceptDuration *metrics.Metric
	// settleDuration is the time from invoke to a final outcome, ok or fail (tag kind).
	settleDuration *metrics.Metric
	// retries counts HTTP attempts beyond the first (tag kind).
	retries *metrics.Metric
	// unknownOutcomes counts operations that ended info (tag kind).
	unknownOutcomes *metrics.Metric
	// duplicatesSent counts duplicate requests (same key, same body) the harness sent.
	duplicatesSent *metrics.Metric
	// misuseSent counts key-misuse requests (same key, different body) the harness sent.
	misuseSent *metrics.Metric
}

func registerMetrics(registry *metrics.Registry) (*ledgerMetrics, error) {
	var (
		m   ledgerMetrics
		err error
	)
	register := func(target **metrics.Metric, name string, kind metrics.MetricType, valueType ...metrics.ValueType) {
		if err != nil {
			return
		}
		if *target, err = registry.NewMetric(name, kind, valueType...); err != nil {
			err = fmt.Errorf("register metric %s: %w", name, err)
		}
	}
	register(&m.operations, metricOperations, metrics.Counter)
	register(&m.acceptDuration, metricAcceptDuration, metrics.Trend, metrics.Time)
	register(&m.settleDuration, metricSettleDuration, metrics.Trend, metrics.Time)
	register(&m.retries, metricRetries, metrics.Counter)
	register(&m.unknownOutcomes, metricUnknownOutcomes, metrics.Counter)
	register(&m.duplicatesSent, metricDuplicatesSent, metrics.Counter)
	register(&m.misuseSent, metricMisuseSent, metrics.Counter)
	return &m, err
}

// sampleBatch collects the samples of one operation, pushed together at its end.
type sampleBatch struct {
	tags     *metrics.TagSet
	metadata map[string]string
	at       time.Time
	samples  []metrics.Sample
}

func (b *sampleBatch) add(metric *metrics.Metric, value float64, extraTags ...string) {
	tags := b.tags
	for i := 0; i+1 < len(extraTags); i += 2 {
		tags = tags.With(extraTags[i], extraTags[i+1])
	}
	b.samples = append(b.samples, metrics.Sample{
		TimeSeries: metrics.TimeSeries{Metric: metric, Tags: tags},
		Time:       b.at,
		Value:      value,
		Metadata:   b.metadata,
	})
}

func (b *sampleBatch) push(ctx context.Context, output chan<- metrics.SampleContainer) {
	if len(b.samples) == 0 || output == nil {
		return
	}
	metrics.PushIfNotDone(ctx, output, metrics.Samples(b.samples))
}

// durationMilliseconds is how k6 Trend metrics of type time hold durations.
func durationMilliseconds(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
