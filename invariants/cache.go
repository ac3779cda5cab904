package invariants

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// StalenessFile is the optional run-directory file of cache staleness
// samples taken during the run (format in docs/audit.md).
const StalenessFile = "cache-staleness.jsonl"

// cacheBatch is how many balances one MGET asks for: big enough for few
// round trips, small enough to keep each reply small.
const cacheBatch = 1000

// CacheReader reads cached balances. found[i] is false when ids[i] has no
// cached balance (expired or never cached), which is not a violation.
type CacheReader interface {
	CachedBalances(ctx context.Context, ids []int64) (balances []int64, found []bool, err error)
}

// RedisCache reads the reference system's balance cache, keys
// balance:<account id>.
type RedisCache struct {
	client *goredis.Client
}

// OpenRedis builds a client for addr (host:port), with a 2s timeout on every
// command: the audit runs after the load, it can afford to wait a little.
func OpenRedis(addr string) *RedisCache {
	return &RedisCache{client: goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: 1})}
}

// Ping checks Redis answers.
func (r *RedisCache) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// Close closes the client.
func (r *RedisCache) Close() error { return r.client.Close() }

// CachedBalances implements CacheReader with MGET.
func (r *RedisCache) CachedBalances(ctx context.Context, ids []int64) ([]int64, []bool, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = "balance:" + strconv.FormatInt(id, 10)
	}
	values, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read cached balances: %w", err)
	}
	balances, found := make([]int64, len(ids)), make([]bool, len(ids))
	for i, value := range values {
		text, ok := value.(string)
		if !ok {
			continue
		}
		balance, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("cached balance of account %d is %q, not an integer", ids[i], text)
		}
		balances[i], found[i] = balance, true
	}
	return balances, found, nil
}

func (a *auditor) checkCache(ctx context.Context) {
	invariant := a.invariants[CacheCoherence]
	if a.config.Cache == nil {
		invariant.Status = StatusSkipped
		invariant.Note = a.config.CacheNote
		if invariant.Note == "" {
			invariant.Note = "no cache to read"
		}
		return
	}
	ids := make([]int64, 0, len(a.accounts))
	for id, account := range a.accounts {
		if account.listed && !account.external {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var missing int64
	for start := 0; start < len(ids); start += cacheBatch {
		batch := ids[start:min(start+cacheBatch, len(ids))]
		balances, found, err := a.config.Cache.CachedBalances(ctx, batch)
		if err != nil {
			invariant.Status = StatusSkipped
			invariant.Note = fmt.Sprintf("cache unreadable after %d account(s): %v", start, err)
			a.warn("cache-coherence skipped: %v", err)
			return
		}
		for i, id := range batch {
			if !found[i] {
				missing++
				continue
			}
			a.checked(CacheCoherence, "cached balances", 1)
			account := a.accounts[id]
			if balances[i] != account.balance {
				id, cached := id, balances[i]
				a.report(CacheCoherence, func() Violation {
					ref := accountRef(id, account)
					ref.Cached = ptr(cached)
					return Violation{Summary: fmt.Sprintf("account %d: the cache says %d, the ledger %d (after drain)", id, cached, account.balance),
						Accounts: []int64{id}, Rows: []RowRef{ref}}
				})
			}
		}
	}
	invariant.Checked["accounts not cached"] = missing
	if !a.result.Drained && invariant.Status == StatusViolated {
		invariant.Note = "not drained: the cache may be behind work still queued"
	}
}

// stalenessSample is one line of cache-staleness.jsonl.
type stalenessSample struct {
	Time    int64  `json:"time"`
	Account int64  `json:"account"`
	Cached  *int64 `json:"cached"`
	Ledger  *int64 `json:"ledger"`
	LagMs   int64  `json:"lag_ms"`
}

// readStaleness summarises the staleness samples of the run, if any. The
// p99 comes from a power-of-two histogram (memory stays fixed however many
// samples there are), so it is an upper bound within a factor of two.
func readStaleness(path string) Staleness {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Staleness{Note: "not recorded (the run wrote no " + StalenessFile + ")"}
	}
	if err != nil {
		return Staleness{Note: "unreadable: " + err.Error()}
	}
	defer file.Close()
	summary := Staleness{Recorded: true}
	var histogram [65]int64
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	var invalid int64
	for scanner.Scan() {
		var sample stalenessSample
		if len(scanner.Bytes()) == 0 {
			continue
		}
		if err := json.Unmarshal(scanner.Bytes(), &sample); err != nil {
			invalid++
			continue
		}
		summary.Samples++
		stale := sample.LagMs > 0 || (sample.Cached != nil && sample.Ledger != nil && *sample.Cached != *sample.Ledger)
		if stale {
			summary.StaleSamples++
		}
		lag := max(sample.LagMs, 0)
		summary.LagMaxMs = max(summary.LagMaxMs, lag)
		histogram[bits.Len64(uint64(lag))]++
	}
	if err := scanner.Err(); err != nil {
		summary.Note = "read stopped early: " + err.Error()
	}
	if invalid > 0 {
		summary.Note += fmt.Sprintf(" %d invalid line(s) skipped", invalid)
	}
	target := summary.Samples - summary.Samples/100
	var seen int64
	for bucket, count := range histogram {
		seen += count
		if seen >= target && count > 0 {
			if bucket > 0 {
				summary.LagP99Ms = min(int64(1)<<bucket-1, summary.LagMaxMs)
			}
			break
		}
	}
	return summary
}
