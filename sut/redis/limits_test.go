package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

func TestDailyDebitsOnlyGrow(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, found, err := client.CachedDailyDebits(ctx, 41, day); err != nil || found {
		t.Fatalf("unknown day: found %v err %v, want a miss", found, err)
	}
	for _, total := range []int64{300, 900, 500} { // 500 arrives late: it must not lower the total
		if err := client.SetDailyDebits(ctx, []redis.DailyDebits{{UserID: 41, Day: day.Add(5 * time.Hour), DebitedMinor: total}}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if total, found, err := client.CachedDailyDebits(ctx, 41, day); err != nil || !found || total != 900 {
		t.Fatalf("cached total %d found %v err %v, want 900", total, found, err)
	}
	if _, found, _ := client.CachedDailyDebits(ctx, 41, day.AddDate(0, 0, 1)); found {
		t.Error("the next day shares the first day's total")
	}
	if _, found, _ := client.CachedDailyDebits(ctx, 42, day); found {
		t.Error("another user shares the total")
	}
	if err := client.SetDailyDebits(ctx, []redis.DailyDebits{{UserID: 41, Day: day, DebitedMinor: -1}}, time.Minute); err == nil {
		t.Error("a negative total was accepted")
	}
}

func TestInvalidateBalancesLeavesAMissAndKeepsTheVersion(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	if err := client.AfterCommit(ctx, map[int64]int64{61: 500}, map[int64]int64{61: 10}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := client.InvalidateBalances(ctx, []int64{61}); err != nil {
		t.Fatal(err)
	}
	if _, found, err := client.CachedBalance(ctx, 61); err != nil || found {
		t.Fatalf("after invalidation: found %v err %v, want a miss", found, err)
	}
	// A late write of an older balance is still refused by its version.
	if err := client.AfterCommit(ctx, map[int64]int64{61: 100}, map[int64]int64{61: 9}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := client.CachedBalance(ctx, 61); found {
		t.Error("an older balance was cached after the invalidation")
	}
	if err := client.AfterCommit(ctx, map[int64]int64{61: 700}, map[int64]int64{61: 11}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if balance, found, _ := client.CachedBalance(ctx, 61); !found || balance != 700 {
		t.Errorf("after the next commit: %d found %v, want 700", balance, found)
	}
}
