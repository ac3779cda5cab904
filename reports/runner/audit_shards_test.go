package runner

import (
	"strings"
	"testing"
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
