package worker

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// SagaRecoverer is a Ledger that runs cross-shard transfers as sagas
// (postgres.ShardedLedger): the worker runs its recovery passes at start and
// every Config.SagaRecoveryInterval, announcing the outcomes of the sagas a
// pass finished and caching the balances they moved, as a batch's.
type SagaRecoverer interface {
	RecoverSagas(ctx context.Context) (postgres.BatchResult, error)
}

var _ SagaRecoverer = (*postgres.ShardedLedger)(nil)

// shardMetrics are the metrics of a sharded worker; they stay at zero on one
// ledger.
type shardMetrics struct {
	foreign        prometheus.Counter
	sagas          *prometheus.CounterVec
	recovered      *prometheus.CounterVec
	recoveryErrors prometheus.Counter
}

func newShardMetrics() shardMetrics {
	return shardMetrics{
		foreign: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_foreign_records_total",
			Help: "Records of another shard's accounts: the offset moved past them, their shard's workers apply them."}),
		sagas: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_worker_sagas_total",
			Help: "Cross-shard transfers run as sagas by batches, by where they stood after the batch: completed, compensated, " +
				"refused (the debit refused, nothing written), debited (in flight: the destination shard did not answer, left to the recovery), " +
				"failed (only under a seeded bug), duplicate (a copy of a transfer that had its outcome)."}, []string{"state"}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_worker_sagas_recovered_total",
			Help: "Sagas found in flight past the timeout and finished by a recovery pass, by their state after it."}, []string{"state"}),
		recoveryErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_worker_saga_recovery_errors_total",
			Help: "Recovery passes that left sagas in flight (a destination shard down) or could not scan the saga log."}),
	}
}

func (m shardMetrics) register(registerer prometheus.Registerer) {
	registerer.MustRegister(m.foreign, m.sagas, m.recovered, m.recoveryErrors)
}

func (m shardMetrics) observeBatch(result postgres.BatchResult) {
	m.foreign.Add(float64(result.ForeignSkipped))
	for state, count := range result.Sagas {
		m.sagas.WithLabelValues(state).Add(float64(count))
	}
}

// runSagaRecovery runs a recovery pass of recoverer at once, then every
// interval until ctx ends.
func (w *Worker) runSagaRecovery(ctx context.Context, recoverer SagaRecoverer, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		w.recoverSagas(ctx, recoverer)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// recoverSagas runs one recovery pass: it logs and counts what it finished,
// announces the outcomes and caches the balances.
func (w *Worker) recoverSagas(ctx context.Context, recoverer SagaRecoverer) {
	result, err := recoverer.RecoverSagas(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.metrics.sharding.recoveryErrors.Inc()
		w.logger.Warn("saga recovery pass left sagas in flight", "error", err)
	}
	if len(result.Sagas) == 0 {
		return
	}
	for state, count := range result.Sagas {
		w.metrics.sharding.recovered.WithLabelValues(state).Add(float64(count))
	}
	w.logger.Info("saga recovery pass finished sagas left in flight", "sagas", result.Sagas)
	w.afterCommit(ctx, result)
}

// router is a Ledger that applies only some records of the topic
// (postgres.ShardedLedger).
type router interface {
	Route(record postgres.Record) postgres.Route
}

// foreign reports whether record is another shard's: its accounts are not
// this worker's to invalidate.
func (w *Worker) foreign(record postgres.Record) bool {
	r, ok := w.ledger.(router)
	return ok && r.Route(record) == postgres.RouteForeign
}

// dailyDebitsForgetter is a Cache that can drop cached daily totals
// (redis.Client).
type dailyDebitsForgetter interface {
	ForgetDailyDebits(ctx context.Context, days []redis.DailyDebits) error
}

var _ dailyDebitsForgetter = (*redis.Client)(nil)

// forgetDailyDebits drops the cached daily totals of the users' days a
// compensated saga lowered in the ledger (after the batch's own totals were
// written): the cache only raises a total, and one left above the ledger's
// would make the gateways' soft check refuse debits the ledger allows.
func (w *Worker) forgetDailyDebits(ctx context.Context, result postgres.BatchResult) {
	forgetter, ok := w.cache.(dailyDebitsForgetter)
	if !ok || len(result.DailyDebitsLowered) == 0 {
		return
	}
	days := make([]redis.DailyDebits, len(result.DailyDebitsLowered))
	for i, key := range result.DailyDebitsLowered {
		days[i] = redis.DailyDebits{UserID: key.UserID, Day: key.Day}
	}
	if err := forgetter.ForgetDailyDebits(ctx, days); err != nil {
		w.metrics.cacheErrors.Inc()
		if !errors.Is(err, context.Canceled) {
			w.logger.Debug("daily debits cache update failed", "error", err)
		}
	}
}
