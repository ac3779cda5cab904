package gateway

import (
	"context"
	"strings"
	"testing"
)

// TestShardWorkersCheck: with shards, the gateway is ready only while every
// shard's consumer group ("<group>-shard-<i>") has a member, and says which
// shard has none.
func TestShardWorkersCheck(t *testing.T) {
	members := map[string]int{"ledger-workers-shard-0": 1, "ledger-workers-shard-1": 0}
	check, err := ShardWorkersCheck("ledger-workers", 2, func(_ context.Context, group string) (int, error) {
		count, known := members[group]
		if !known {
			t.Fatalf("asked about group %q", group)
		}
		return count, nil
	}, 1, nil) // a cache of 1ns: every check asks again
	if err != nil {
		t.Fatal(err)
	}
	if err := check(context.Background()); err == nil || !strings.Contains(err.Error(), "shard 1: consumer group ledger-workers-shard-1 has no member") {
		t.Fatalf("shard 1 without a worker: %v, want it named", err)
	}
	members["ledger-workers-shard-1"] = 2
	if err := check(context.Background()); err != nil {
		t.Fatalf("every shard with a worker: %v", err)
	}
	members["ledger-workers-shard-0"] = 0
	if err := check(context.Background()); err == nil || !strings.Contains(err.Error(), "shard 0:") {
		t.Fatalf("shard 0 without a worker: %v, want it named", err)
	}
	if _, err := ShardWorkersCheck("ledger-workers", 1, func(context.Context, string) (int, error) { return 1, nil }, 0, nil); err == nil {
		t.Error("a shards' check of one shard accepted")
	}
}
