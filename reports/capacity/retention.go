package capacity

import (
	"time"
)

// Retention on capacity stacks (Options.Retention, docs/performance.md
// "Bounded memory"). With the reference's defaults each transaction leaves
// an idempotency record (--idempotency-ttl, 24h)
// and an outcome record (--outcome-ttl, 24h) in Redis, and a record in the
// broker, which keeps every record: a soak of minutes sees Redis and the
// broker grow for its whole length, and cannot tell growth that stops from
// a leak. With a short retention what the steady load adds, expiry removes
// at the same rate, and a flat memory line is what a bounded system shows;
// the bytes each transaction holds in Redis are measured (redismemory.go),
// so the report states what the reference's 24h would hold at the same
// rate.
const (
	// DefaultRetention is `ledgerproof capacity --retention`'s default: a
	// minute, a few times the longest a healthy pipeline keeps a command
	// (a step's queue drains in seconds) and short enough that a soak of a
	// few minutes reaches the plateau.
	DefaultRetention = time.Minute
	// MinimumRetention is the shortest retention: above the gateway's
	// longest wait for an outcome (30s by default), so an idempotency key
	// outlives the request that reserved it, and far above the time a
	// worker takes to consume a record, which the broker deletes unread
	// after it (the audit's durability would report that).
	MinimumRetention = 30 * time.Second
)

// retentionArgs are the gateways', workers' and broker's arguments of a
// retention (none for 0: the reference's defaults).
func retentionArgs(retention time.Duration) (gateway, worker, broker []string) {
	if retention <= 0 {
		return nil, nil, nil
	}
	value := retention.String()
	return []string{"--idempotency-ttl", value}, []string{"--outcome-ttl", value}, []string{"--retention", value}
}
