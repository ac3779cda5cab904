package runner

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// TestAuditShardOptions: shard URLs add shards to the reference ledger
// only, and exclude draining by one ledger's broker offsets.
func TestAuditShardOptions(t *testing.T) {
	base := func() AuditOptions {
		return AuditOptions{RunDir: "run", PostgresURL: "postgres://shard-0", ShardPostgresURLs: []string{"postgres://shard-1"},
			DrainTimeout: 1, QuietPeriod: 1, MaxViolations: 1}
	}
	if o := base(); o.validate() != nil {
		t.Fatalf("two shards refused: %v", o.validate())
	}
	cases := []struct {
		name   string
		change func(*AuditOptions)
		want   string
	}{
		{"with an export", func(o *AuditOptions) { o.PostgresURL, o.LedgerExport = "", "dir" }, "--shard-postgres-url"},
		{"with SQL queries", func(o *AuditOptions) { o.PostgresURL, o.LedgerSQL = "", "ledger.yaml" }, "--shard-postgres-url"},
		{"exporting", func(o *AuditOptions) { o.ExportLedger = "dir" }, "--shard-postgres-url"},
		{"with brokers", func(o *AuditOptions) { o.Brokers = "127.0.0.1:9092" }, "quiet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base()
			c.change(&o)
			if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("validate: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// TestShardedCommandsDrain: with the brokers known, a shard whose offsets
// lag the topic's high watermark is not drained even when every shard is
// quiet (its worker killed); the quiet shards decide only while the
// brokers cannot answer, or when no broker is known.
func TestShardedCommandsDrain(t *testing.T) {
	ctx := context.Background()
	quiet := func(context.Context) (invariants.DrainState, error) {
		return invariants.DrainState{Done: true, Progress: "quiet for 2s"}, nil
	}
	ends := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 5, 1: 5}, nil }
	shard0 := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 5, 1: 5}, nil }
	shard1Offsets := map[int32]int64{0: 5, 1: 2}
	shard1 := func(context.Context) (map[int32]int64, error) { return shard1Offsets, nil }
	lag := invariants.ShardsLagProbe(ends, []func(context.Context) (map[int32]int64, error){shard0, shard1})
	drain := shardedCommandsDrain(lag, quiet)
	if state, err := drain(ctx); err != nil || state.Done {
		t.Fatalf("shard 1 lagging, every shard quiet: %+v %v, want not drained", state, err)
	}
	shard1Offsets[1] = 5
	if state, err := drain(ctx); err != nil || !state.Done {
		t.Fatalf("every shard at the high watermark: %+v %v, want drained", state, err)
	}
	down := invariants.ShardsLagProbe(func(context.Context) (map[int32]int64, error) { return nil, errors.New("no broker") },
		[]func(context.Context) (map[int32]int64, error){shard0, shard1})
	if state, err := shardedCommandsDrain(down, quiet)(ctx); err != nil || !state.Done || !strings.Contains(state.Progress, "brokers unavailable") {
		t.Errorf("brokers down: %+v %v, want the quiet shards to decide, saying so", state, err)
	}
	if state, err := shardedCommandsDrain(nil, quiet)(ctx); err != nil || !state.Done {
		t.Errorf("no broker known: %+v %v, want the quiet shards to decide", state, err)
	}
}
