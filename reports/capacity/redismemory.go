package capacity

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// What a transaction leaves in Redis, measured at the end of the soak, so a
// team can size Redis for the reference's 24h key and outcome TTLs (or
// choose shorter ones): each key prefix's count and the mean MEMORY USAGE
// of a sample of its keys, and the bytes of the two records each
// transaction keeps for the TTLs (the idempotency record with its stored
// response, idem:, and the outcome record, outcome:; its pending record is
// deleted when it settles).
const (
	// referenceTTL is the reference's default --idempotency-ttl and
	// --outcome-ttl.
	referenceTTL = 24 * time.Hour
	// redisSamplePerPrefix bounds the keys of a prefix whose memory is
	// asked for: the mean of a few hundred same-shaped records is steady.
	redisSamplePerPrefix = 300
	// redisScanBatch is the SCAN COUNT hint.
	redisScanBatch = 1000
	// redisMeasureTimeout bounds the whole measurement.
	redisMeasureTimeout = time.Minute
)

// transactionPrefixes are the key prefixes each transaction leaves for the
// TTLs.
var transactionPrefixes = []string{"idem", "outcome"}

// redisFootprint is Redis's memory at the end of the soak
// (capacity.json's modes[].soak.redis).
type redisFootprint struct {
	// UsedMiB is INFO's used_memory; Keys DBSIZE.
	UsedMiB float64 `json:"used_memory_mib"`
	Keys    int64   `json:"keys"`
	// Prefixes are the keys by prefix (the text before the first ':').
	Prefixes []redisPrefix `json:"prefixes"`
	// BytesPerTransaction is the mean MEMORY USAGE of an idem: record plus
	// that of an outcome: record.
	BytesPerTransaction float64 `json:"bytes_per_transaction"`
	// Projections are what the transactions' records would take at the
	// reference's 24h TTLs: BytesPerTransaction × rate × 86,400 s.
	Projections []redisProjection `json:"projections"`
	// Error says why the measurement is missing or partial.
	Error string `json:"error,omitempty"`
}

// redisPrefix is one key prefix's count and the mean MEMORY USAGE (bytes,
// key, value and Redis's own overhead) of a sample of its keys.
type redisPrefix struct {
	Prefix    string  `json:"prefix"`
	Keys      int64   `json:"keys"`
	Sampled   int     `json:"sampled"`
	MeanBytes float64 `json:"mean_bytes"`
}

// redisProjection is the memory of a day of transactions at a rate.
type redisProjection struct {
	Label string  `json:"label"`
	TPS   int     `json:"tps"`
	GiB   float64 `json:"gib"`
}

// measureRedis takes Redis's footprint at address and projects it for the
// rates (label → TPS, in order).
func measureRedis(ctx context.Context, address string, rates []redisProjection) redisFootprint {
	ctx, cancel := context.WithTimeout(ctx, redisMeasureTimeout)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: address, PoolSize: 2})
	defer client.Close()
	var footprint redisFootprint
	info, err := client.Info(ctx, "memory").Result()
	if err != nil {
		footprint.Error = fmt.Sprintf("INFO memory: %v", err)
		return footprint
	}
	footprint.UsedMiB = round3(float64(infoField(info, "used_memory")) / (1 << 20))
	if footprint.Keys, err = client.DBSize(ctx).Result(); err != nil {
		footprint.Error = fmt.Sprintf("DBSIZE: %v", err)
		return footprint
	}
	counts := map[string]int64{}
	samples := map[string][]string{}
	var cursor uint64
	for {
		var keys []string
		keys, cursor, err = client.Scan(ctx, cursor, "*", redisScanBatch).Result()
		if err != nil {
			footprint.Error = fmt.Sprintf("SCAN: %v", err)
			break
		}
		for _, key := range keys {
			prefix, _, _ := strings.Cut(key, ":")
			counts[prefix]++
			if len(samples[prefix]) < redisSamplePerPrefix {
				samples[prefix] = append(samples[prefix], key)
			}
		}
		if cursor == 0 {
			break
		}
	}
	for prefix, count := range counts {
		entry := redisPrefix{Prefix: prefix, Keys: count}
		pipeline := client.Pipeline()
		usages := make([]*goredis.IntCmd, len(samples[prefix]))
		for i, key := range samples[prefix] {
			usages[i] = pipeline.MemoryUsage(ctx, key, 0)
		}
		_, _ = pipeline.Exec(ctx) // a key may expire between SCAN and MEMORY USAGE: each command's own error is read
		var total int64
		for _, usage := range usages {
			if bytes, err := usage.Result(); err == nil {
				total += bytes
				entry.Sampled++
			}
		}
		if entry.Sampled > 0 {
			entry.MeanBytes = math.Round(float64(total) / float64(entry.Sampled))
		}
		footprint.Prefixes = append(footprint.Prefixes, entry)
	}
	sort.Slice(footprint.Prefixes, func(i, j int) bool {
		a, b := footprint.Prefixes[i], footprint.Prefixes[j]
		if a.Keys != b.Keys {
			return a.Keys > b.Keys
		}
		return a.Prefix < b.Prefix
	})
	footprint.project(rates)
	return footprint
}

// project sets BytesPerTransaction from the prefixes and the projections
// of the rates.
func (f *redisFootprint) project(rates []redisProjection) {
	f.BytesPerTransaction = 0
	for _, prefix := range f.Prefixes {
		for _, name := range transactionPrefixes {
			if prefix.Prefix == name {
				f.BytesPerTransaction += prefix.MeanBytes
			}
		}
	}
	f.Projections = nil
	for _, rate := range rates {
		if rate.TPS <= 0 {
			continue
		}
		bytes := f.BytesPerTransaction * float64(rate.TPS) * referenceTTL.Seconds()
		f.Projections = append(f.Projections, redisProjection{Label: rate.Label, TPS: rate.TPS, GiB: round3(bytes / (1 << 30))})
	}
}

// infoField is an integer field of INFO's answer (0 when missing).
func infoField(info, name string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			return n
		}
	}
	return 0
}

// markdown is the footprint's paragraph in the soak's report.
func (f *redisFootprint) markdown(retention time.Duration) string {
	var b strings.Builder
	kept := "the reference's defaults (idempotency and outcome records 24h, broker records forever)"
	if retention > 0 {
		kept = fmt.Sprintf("idempotency records, outcome records and broker records kept %s (`--retention`)", retention)
	}
	fmt.Fprintf(&b, "**Redis at the end of the soak**, with %s: %d keys, used_memory %.1f MiB", kept, f.Keys, f.UsedMiB)
	if f.Error != "" {
		fmt.Fprintf(&b, " (measurement incomplete: %s)", f.Error)
	}
	b.WriteString(".")
	if len(f.Prefixes) > 0 {
		var parts []string
		for _, prefix := range f.Prefixes {
			parts = append(parts, fmt.Sprintf("%s: %d × %.0f B", prefix.Prefix, prefix.Keys, prefix.MeanBytes))
		}
		fmt.Fprintf(&b, " By key prefix (count × mean MEMORY USAGE of up to %d of them): %s.", redisSamplePerPrefix, strings.Join(parts, "; "))
	}
	if f.BytesPerTransaction > 0 {
		fmt.Fprintf(&b, " Each transaction keeps %.0f B for the TTLs (its idem: and outcome: records).", f.BytesPerTransaction)
		var projections []string
		for _, p := range f.Projections {
			projections = append(projections, fmt.Sprintf("**%.2f GiB** at %s (%d TPS)", p.GiB, p.Label, p.TPS))
		}
		if len(projections) > 0 {
			fmt.Fprintf(&b, " With the reference's 24h `--idempotency-ttl` and `--outcome-ttl`, Redis holds a day of them, bytes × rate × 86,400 s: %s, beyond its baseline: size Redis (maxmemory, with `noeviction`) for that, or shorten the TTLs.",
				strings.Join(projections, ", "))
		}
	}
	b.WriteString("\n\n")
	return b.String()
}
