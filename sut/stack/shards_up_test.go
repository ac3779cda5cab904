package stack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestUpShardedStack starts a real 2-shard stack (no gateway, one worker
// per shard, the settlement pipeline): each shard's database is migrated
// and numbers its accounts for its shard; the stack file records shard 1's
// URL; shard 1's Postgres and worker are components that can be killed
// and started again; down stops everything.
func TestUpShardedStack(t *testing.T) {
	stacktest.SkipIfShort(t)
	dir := stackDirectory(t)
	config := testConfig(t, dir)
	if !config.Migrate {
		t.Skip("ledgerproof migrate is not implemented in this binary")
	}
	config.Shards = 2
	config.PostgresShardPort = stacktest.FreePort(t)
	config.Workers = 1
	// worker-0 and worker-s1-0's metrics; the relay, the settler and
	// relay-shard-1.
	config.WorkerMetricsPort = stacktest.FreeRange(t, 2)
	config.SettlementPort = stacktest.FreeRange(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := stack.Down(context.Background(), dir, stack.DownOptions{StopTimeout: 10 * time.Second}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	result, err := stack.Up(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	file := result.File
	if len(file.Endpoints.ShardPostgresURLs) != 1 {
		t.Fatalf("shard URLs %v, want shard 1's", file.Endpoints.ShardPostgresURLs)
	}
	var names []string
	for _, component := range file.Components {
		names = append(names, component.Name)
		if !component.Alive() {
			t.Errorf("%s is not running after up", component.Name)
		}
	}
	for _, want := range []string{"postgres", "postgres-shard-1", "worker-0", "worker-s1-0", "relay", "relay-shard-1", "settler"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("no component %s in %v", want, names)
		}
	}
	// Each shard numbers its new accounts so that id mod 2 is the shard:
	// the next id of shard 0 is even, of shard 1 odd, both with a step of 2.
	for shardIndex, url := range []string{file.Endpoints.PostgresURL, file.Endpoints.ShardPostgresURLs[0]} {
		var increment, next int64
		queryRow(t, ctx, url, `SELECT increment_by FROM pg_sequences WHERE sequencename = 'accounts_id_seq'`, &increment)
		queryRow(t, ctx, url, `SELECT nextval('accounts_id_seq')`, &next) // an id spent, in a throwaway stack
		if increment != 2 || next%2 != int64(shardIndex) || next < 1 {
			t.Errorf("shard %d: accounts numbered from %d by %d, want ids of shard %d of 2", shardIndex, next, increment, shardIndex)
		}
	}
	for _, name := range []string{"postgres-shard-1", "worker-s1-0"} {
		if _, err := stack.Kill(ctx, dir, name); err != nil {
			t.Fatalf("kill %s: %v", name, err)
		}
		component, err := stack.Start(ctx, dir, name)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		if !component.Alive() {
			t.Errorf("%s not running after start", name)
		}
	}
	if err := stack.Down(ctx, dir, stack.DownOptions{StopTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	after, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, component := range after.Components {
		if component.Alive() {
			t.Errorf("%s still running after down", component.Name)
		}
	}
}
