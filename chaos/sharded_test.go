package chaos

import (
	"strings"
	"testing"
)

// shardedInventory is the local stack `ledgerproof run --shards 2` starts:
// the default stack plus shard 1's Postgres, workers and relay.
var shardedInventory = Inventory{
	Processes:  append(append([]string(nil), localInventory.Processes...), "postgres-shard-1", "worker-s1-0", "worker-s1-1", "relay-shard-1"),
	Partitions: 16,
}

// TestShardedTargets: a sharded stack's processes are targets, acted on
// like their shard-0 counterparts; malformed ones are refused naming the
// forms; and they exist only in a sharded stack.
func TestShardedTargets(t *testing.T) {
	for text, want := range map[string]target{
		"postgres-shard-1": {role: rolePostgres, instance: -1, partition: -1, shard: 1},
		"relay-shard-15":   {role: roleRelay, instance: -1, partition: -1, shard: 15},
		"worker-s1-0":      {role: roleWorker, instance: 0, partition: -1, shard: 1},
		"worker-s2-11":     {role: roleWorker, instance: 11, partition: -1, shard: 2},
	} {
		got, err := parseTarget(text)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", text, got, err, want)
		}
	}
	for _, text := range []string{"postgres-shard-0", "postgres-shard-", "relay-shard-01", "worker-s0-1", "worker-s1", "settler-shard-1"} {
		if _, err := parseTarget(text); err == nil || !strings.Contains(err.Error(), "postgres-shard-I") {
			t.Errorf("%s: %v, want an error naming the sharded forms", text, err)
		}
	}
	plan, err := LoadPlan("plans/sharded.yaml")
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := plan.Timeline(1, shardedInventory)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateTargets(plan.Name, timeline, shardedInventory); err != nil {
		t.Fatalf("sharded on the stack of run --shards 2: %v", err)
	}
	err = ValidateTargets(plan.Name, timeline, localInventory)
	if err == nil || !strings.Contains(err.Error(), `"postgres-shard-1" does not exist`) {
		t.Fatalf("sharded on a single-shard stack: %v, want postgres-shard-1 missing", err)
	}
	// What the plan promises: shard 1's Postgres and a worker of shard 1
	// killed, and both shards' relays.
	killed := map[string]bool{}
	for _, step := range timeline {
		if step.Action == ActionKill {
			killed[step.Target] = true
		}
	}
	for _, name := range []string{"postgres-shard-1", "relay", "relay-shard-1", "worker-s1-0"} {
		if !killed[name] {
			t.Errorf("sharded does not kill %s (kills %v)", name, killed)
		}
	}
	// The random kills draw from every shard's workers.
	drawn := map[string]bool{}
	for seed := uint64(1); seed <= 30; seed++ {
		timeline, err := plan.Timeline(seed, shardedInventory)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range timeline {
			if step.Action == ActionKill && strings.HasPrefix(step.Source, "random") {
				drawn[step.Target] = true
			}
		}
	}
	if !drawn["worker-0"] || !drawn["worker-s1-1"] {
		t.Errorf("random kills drew %v, want workers of both shards", drawn)
	}
}
