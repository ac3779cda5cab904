package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// recordingCache is a Cache that stores the balances it is given, refuses
// them when its context has ended (as go-redis does), and fails the first
// failFirst calls.
type recordingCache struct {
	mutex     sync.Mutex
	failFirst int
	balances  map[int64]int64
}

func (c *recordingCache) AfterCommit(ctx context.Context, balances, _ map[int64]int64, _ []ledger.OutcomeNotice, _ time.Duration) error {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.failFirst > 0 {
		c.failFirst--
		return errors.New("redis unreachable")
	}
	for id, balance := range balances {
		c.balances[id] = balance
	}
	return nil
}

func (c *recordingCache) InvalidateBalances(context.Context, []int64) error { return nil }

func (c *recordingCache) SetDailyDebits(context.Context, []redis.DailyDebits, time.Duration) error {
	return nil
}

func (c *recordingCache) balance(id int64) (int64, bool) {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	balance, ok := c.balances[id]
	return balance, ok
}

// quietSource has no records: Poll waits for its context to end.
type quietSource struct{}

func (quietSource) Poll(ctx context.Context, _ int) ([]kafka.PartitionRecords, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (quietSource) Done(context.Context)                       {}
func (quietSource) Pause(int32)                                {}
func (quietSource) Resume(int32)                               {}
func (quietSource) SetReleaseHandler(func(partitions []int32)) {}

// A batch that committed while the worker was being stopped still reaches
// the cache: otherwise the cache keeps the account's older balance.
func TestAfterCommitFinishesWhenTheWorkerStops(t *testing.T) {
	cache := &recordingCache{balances: map[int64]int64{}}
	w, err := New(Config{}, nil, cache, quietSource{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopping, stop := context.WithCancel(context.Background())
	stop()
	w.afterCommit(stopping, postgres.BatchResult{Balances: map[int64]int64{4: 210}, BalanceVersions: map[int64]int64{4: 9}})
	if balance, ok := cache.balance(4); !ok || balance != 210 {
		t.Errorf("account 4 in the cache: %d (cached %v), want 210: the committed batch's update was dropped because the worker was stopping", balance, ok)
	}
}

// A cache update that failed is tried once more when the worker stops, so
// that the balance does not stay stale in Redis with no worker left to
// retry it.
func TestRunSavesFailedCacheUpdatesWhenItStops(t *testing.T) {
	cache := &recordingCache{balances: map[int64]int64{}, failFirst: 1}
	w, err := New(Config{}, nil, cache, quietSource{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.afterCommit(context.Background(), postgres.BatchResult{Balances: map[int64]int64{4: 210}, BalanceVersions: map[int64]int64{4: 9}})
	if _, ok := cache.balance(4); ok {
		t.Fatal("the first cache update succeeded; the test needs it to fail")
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if balance, ok := cache.balance(4); !ok || balance != 210 {
		t.Errorf("account 4 in the cache after the worker stopped: %d (cached %v), want 210", balance, ok)
	}
}
