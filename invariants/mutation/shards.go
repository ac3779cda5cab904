package mutation

import (
	"fmt"
	"time"
)

// ShardedStack is the number of shards of the matrix's sharded stack
// (`ledgerproof mutation`, docs/mutation.md): the saga bugs run on it, and
// the clean system under every profile.
const ShardedStack = 2

// ShardedSets are added to every run's scenario overrides on a sharded
// stack: a share of the transfers go to accounts that do not exist, in the
// other shard, so every sharded run has sagas compensated as well as
// completed (docs/sharding.md).
var ShardedSets = []string{"workload.missing_rate=0.03"}

// shardKillsProfile is the profile of the saga bugs, on a sharded stack:
// the gate's load with 5% of the transfers to missing accounts, and shard
// 1's processes killed (its Postgres while sagas cross to it, its workers
// mid-saga, its relay), so that sagas are interrupted and recovered.
func shardKillsProfile(gate func(extra ...string) []string) Profile {
	return Profile{
		Name: ProfileShardKills,
		Summary: "gate load 150/s, 50 accounts, 5% of the transfers to missing accounts (sagas compensated); kill -9 " +
			"postgres-shard-1 at 5s (restarted at 9s), worker-s1-0 at 12s (restarted at 14s), relay-shard-1 at 16s " +
			"(restarted at 18s), worker-0 and worker-s1-1 at 21s (restarted at 23s); a worker that exits on its own " +
			"is restarted after 1s; only on a sharded stack",
		Duration: 30 * time.Second,
		Sets:     gate("workload.missing_rate=0.05"),
		Steps: []Step{
			{5 * time.Second, ActionKill, []string{"postgres-shard-1"}},
			{9 * time.Second, ActionStart, []string{"postgres-shard-1"}},
			{12 * time.Second, ActionKill, []string{"worker-s1-0"}},
			{14 * time.Second, ActionStart, []string{"worker-s1-0"}},
			{16 * time.Second, ActionKill, []string{"relay-shard-1"}},
			{18 * time.Second, ActionStart, []string{"relay-shard-1"}},
			{21 * time.Second, ActionKill, []string{"worker-0", "worker-s1-1"}},
			{23 * time.Second, ActionStart, []string{"worker-0", "worker-s1-1"}},
		},
		RestartExited: true,
		Shards:        ShardedStack,
	}
}

// profileText is the profile column of a result: the profile, and the
// stack's shards when it has more than one.
func (r *Result) profileText() string {
	if r.Shards > 1 {
		return fmt.Sprintf("%s (%d shards)", r.Profile, r.Shards)
	}
	return r.Profile
}
