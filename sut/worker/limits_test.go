package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// limitsCache records what the worker asks of the cache for the soft
// checks; fail makes every call fail.
type limitsCache struct {
	invalidated [][]int64
	totals      []redis.DailyDebits
	fail        bool
}

func (c *limitsCache) AfterCommit(context.Context, map[int64]int64, map[int64]int64, []ledger.OutcomeNotice, time.Duration) error {
	return nil
}

func (c *limitsCache) InvalidateBalances(_ context.Context, accountIDs []int64) error {
	if c.fail {
		return errors.New("redis down")
	}
	c.invalidated = append(c.invalidated, accountIDs)
	return nil
}

func (c *limitsCache) SetDailyDebits(_ context.Context, totals []redis.DailyDebits, _ time.Duration) error {
	if c.fail {
		return errors.New("redis down")
	}
	c.totals = append(c.totals, totals...)
	return nil
}

func limitsWorker(cache *limitsCache) *Worker {
	return &Worker{cache: cache, metrics: NewMetrics(prometheus.NewRegistry()), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestInvalidateBalancesOfTheBatchsUserAccounts(t *testing.T) {
	cache := &limitsCache{}
	w := limitsWorker(cache)
	batch := postgres.Batch{Records: []postgres.Record{
		{Command: ledger.Command{Kind: ledger.KindDeposit, SourceAccountID: ledger.ExternalAccountID, DestinationAccountID: 7}},
		{Command: ledger.Command{Kind: ledger.KindTransfer, SourceAccountID: 7, DestinationAccountID: 9}},
		{Command: ledger.Command{Kind: ledger.KindWithdrawal, SourceAccountID: 9, DestinationAccountID: ledger.ExternalAccountID}},
	}}
	w.invalidateBalances(context.Background(), batch)
	if len(cache.invalidated) != 1 || !slices.Equal(cache.invalidated[0], []int64{7, 9}) {
		t.Fatalf("invalidated %v, want one call for accounts 7 and 9 (each once, never the external account)", cache.invalidated)
	}
	// A cache error is counted and logged, never returned: the batch is
	// applied all the same.
	cache.fail = true
	w.invalidateBalances(context.Background(), batch)
	if len(cache.invalidated) != 1 {
		t.Errorf("a failed invalidation was recorded: %v", cache.invalidated)
	}
}

func TestPublishDailyDebits(t *testing.T) {
	cache := &limitsCache{}
	w := limitsWorker(cache)
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	w.publishDailyDebits(context.Background(), postgres.BatchResult{DailyDebits: map[postgres.DailyDebitKey]int64{
		{UserID: 3, Day: day}: 700, {UserID: 1, Day: day}: 200}})
	want := []redis.DailyDebits{{UserID: 1, Day: day, DebitedMinor: 200}, {UserID: 3, Day: day, DebitedMinor: 700}}
	if !slices.Equal(cache.totals, want) {
		t.Fatalf("published %v, want %v", cache.totals, want)
	}
	w.publishDailyDebits(context.Background(), postgres.BatchResult{})
	if len(cache.totals) != 2 {
		t.Errorf("a batch without daily debits published %v", cache.totals[2:])
	}
}

// TestCachedBalancesBeforeBatch: under trust-cache-balance the worker reads
// the batch's user accounts' cached balances (each once, never the external
// account) before it drops them; without the hook, or when the read fails,
// nothing changes.
func TestCachedBalancesBeforeBatch(t *testing.T) {
	cache := &limitsCache{}
	w := limitsWorker(cache)
	batch := postgres.Batch{Records: []postgres.Record{
		{Command: ledger.Command{Kind: ledger.KindTransfer, SourceAccountID: 7, DestinationAccountID: 9}},
		{Command: ledger.Command{Kind: ledger.KindWithdrawal, SourceAccountID: 7, DestinationAccountID: ledger.ExternalAccountID}},
	}}
	ctx := context.Background()
	if got := w.cachedBalancesBeforeBatch(ctx, batch); got != ctx {
		t.Fatal("a worker without the bug changed the batch's context")
	}
	var asked []int64
	w.config.CachedBalancesBeforeBatch = func(_ context.Context, ids []int64) (map[int64]int64, error) {
		if len(cache.invalidated) > 0 {
			t.Error("read after the invalidation")
		}
		asked = ids
		return map[int64]int64{7: 100}, nil
	}
	if got := w.cachedBalancesBeforeBatch(ctx, batch); got == ctx {
		t.Error("the balances read were not handed to the store")
	}
	if !slices.Equal(asked, []int64{7, 9}) {
		t.Errorf("read accounts %v, want 7 and 9", asked)
	}
	w.config.CachedBalancesBeforeBatch = func(context.Context, []int64) (map[int64]int64, error) { return nil, errors.New("redis down") }
	if got := w.cachedBalancesBeforeBatch(ctx, batch); got != ctx {
		t.Error("a failed read changed the batch's context")
	}
}
