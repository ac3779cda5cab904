package main

import (
	"strings"
	"testing"
)

// TestWorkerShardFlagsAreValidated: a sharded worker's flags that cannot
// work are refused before it connects to anything, each with its reason.
func TestWorkerShardFlagsAreValidated(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"shard without its database", []string{"--shard", "1"}, "--shard 1 is not a shard of 1"},
		{"shard beyond the URLs", []string{"--shard", "2", "--shard-postgres-url", "postgres://ledger@127.0.0.1:15433/ledger"}, "--shard 2 is not a shard of 2"},
		{"empty shard URL", []string{"--shard-postgres-url", ""}, "empty URL"},
		{"shard 0's database again", []string{"--postgres-url", "postgres://ledger@127.0.0.1:15432/ledger", "--shard-postgres-url", "postgres://ledger@127.0.0.1:15432/ledger"},
			"shards 0 and 1 have the same Postgres URL"},
		{"saga bug on one ledger", []string{"--seeded-bug", "saga-no-compensation", "--unsafe-allow-seeded-bugs"},
			"saga-no-compensation lives in cross-shard sagas, which one ledger never runs"},
		{"negative recovery interval", []string{"--saga-recovery-interval", "-1s", "--shard-postgres-url", "postgres://ledger@127.0.0.1:15433/ledger"},
			"saga recovery interval -1s must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := startError(t, "worker", c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}
