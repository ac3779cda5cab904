package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestOutcomeTTL checks that AfterCommit's outcome record lives for the
// configured OutcomeTTL (24h by default) and that it expires, after which
// LookupOutcome finds nothing (a waiting gateway then asks the ledger).
func TestOutcomeTTL(t *testing.T) {
	t.Parallel()
	addr := stacktest.RedisAddr(t)
	raw := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cases := []struct {
		name       string
		outcomeTTL time.Duration
		want       time.Duration
	}{
		{"default", 0, redis.DefaultOutcomeTTL},
		{"a minute", time.Minute, time.Minute},
		{"the minimum", redis.MinimumOutcomeTTL, redis.MinimumOutcomeTTL},
	}
	for _, tc := range cases {
		client, err := redis.New(redis.Config{Addr: addr, OutcomeTTL: tc.outcomeTTL})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		defer client.Close()
		transaction := "outcome-ttl-" + strings.ReplaceAll(tc.name, " ", "-")
		notice := ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: transaction, Status: ledger.StatusSettled}, Fingerprint: "fp"}
		if err := client.AfterCommit(ctx, nil, nil, []ledger.OutcomeNotice{notice}, time.Minute); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ttl, err := raw.PTTL(ctx, "outcome:"+transaction).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The TTL was set just now: within a few seconds of the configured one.
		if ttl > tc.want || ttl < tc.want-5*time.Second {
			t.Errorf("%s: outcome record's TTL %s, want %s", tc.name, ttl, tc.want)
		}
		if got, found, err := client.LookupOutcome(ctx, transaction); err != nil || !found || got != notice {
			t.Errorf("%s: lookup %+v found=%v err=%v", tc.name, got, found, err)
		}
		if tc.want != redis.MinimumOutcomeTTL {
			continue
		}
		for {
			_, found, err := client.LookupOutcome(ctx, transaction)
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: the outcome record did not expire", tc.name)
			}
			time.Sleep(100 * time.Millisecond) // polled until the context's deadline
		}
	}
}

func TestOutcomeTTLValidation(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{-time.Second, 500 * time.Millisecond} {
		if _, err := redis.New(redis.Config{Addr: "127.0.0.1:1", OutcomeTTL: ttl}); err == nil || !strings.Contains(err.Error(), "below the minimum") {
			t.Errorf("outcome TTL %s: error %v, want one about the minimum", ttl, err)
		}
	}
}
