package worker

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// dailyDebitsTTL is how long a user's daily total stays in the cache: a
// day and a margin, since only the current UTC day's totals are read.
const dailyDebitsTTL = 48 * time.Hour

// invalidateBalances deletes the cached balances of every user account the
// batch names, before the batch's transaction: a worker killed after the
// commit and before the cache update then leaves misses, never a balance
// the ledger no longer holds, which the gateway's soft balance check would
// otherwise trust (docs/limits.md). It is best effort, like every cache
// write: a failure costs a metric, and the batch is applied all the same.
func (w *Worker) invalidateBalances(ctx context.Context, batch postgres.Batch) {
	if w.cache == nil {
		return
	}
	ids := w.userAccounts(batch)
	if len(ids) == 0 {
		return
	}
	cacheContext, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := w.cache.InvalidateBalances(cacheContext, ids); err != nil {
		w.metrics.cacheErrors.Inc()
		if !errors.Is(err, context.Canceled) {
			w.logger.Debug("cached balance invalidation failed", "error", err)
		}
	}
}

// publishDailyDebits writes the batch's daily debit totals for the
// gateways' soft daily-limit check. A total the cache misses (Redis down,
// a worker killed first) only lets the gateway pass debits the worker's
// hard check then rejects.
func (w *Worker) publishDailyDebits(ctx context.Context, result postgres.BatchResult) {
	if len(result.DailyDebits) == 0 {
		return
	}
	totals := make([]redis.DailyDebits, 0, len(result.DailyDebits))
	for key, debited := range result.DailyDebits {
		totals = append(totals, redis.DailyDebits{UserID: key.UserID, Day: key.Day, DebitedMinor: debited})
	}
	sort.Slice(totals, func(i, j int) bool { return totals[i].UserID < totals[j].UserID })
	if err := w.cache.SetDailyDebits(ctx, totals, dailyDebitsTTL); err != nil {
		w.metrics.cacheErrors.Inc()
		if !errors.Is(err, context.Canceled) {
			w.logger.Debug("daily debits cache update failed", "error", err)
		}
	}
}

// userAccounts lists the user accounts the batch's own records name.
func (w *Worker) userAccounts(batch postgres.Batch) []int64 {
	seen := map[int64]bool{}
	ids := make([]int64, 0, 2*len(batch.Records))
	for _, record := range batch.Records {
		if w.foreign(record) {
			continue
		}
		for _, id := range []int64{record.Command.SourceAccountID, record.Command.DestinationAccountID} {
			if id > ledger.ExternalAccountID && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// cachedBalancesBeforeBatch is ledger.BugTrustCacheBalance
// (Config.CachedBalancesBeforeBatch): the batch's cached balances as they
// were when it began, read before invalidateBalances drops them, handed to
// the store's overdraft check. A read that fails leaves ctx as it is (the
// store then reads the cache itself, and finds the dropped balances
// missing: the check falls back to the rows).
func (w *Worker) cachedBalancesBeforeBatch(ctx context.Context, batch postgres.Batch) context.Context {
	if w.config.CachedBalancesBeforeBatch == nil {
		return ctx
	}
	ids := w.userAccounts(batch)
	if len(ids) == 0 {
		return ctx
	}
	readContext, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	balances, err := w.config.CachedBalancesBeforeBatch(readContext, ids)
	if err != nil {
		return ctx
	}
	return postgres.WithCachedBalances(ctx, balances)
}
