package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"strings"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

func auditCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("audit", flag.ContinueOnError)
	var o runner.AuditOptions
	flags.StringVar(&o.RunDir, "run", "", "run directory: reads journal*.jsonl (and cache-staleness.jsonl), writes audit.json and audit.txt (required)")
	flags.StringVar(&o.StackDir, "stack", "", "local stack directory: its stack.json gives the Postgres URL, Redis address and brokers")
	flags.StringVar(&o.PostgresURL, "postgres-url", "", "the reference ledger's database (overrides the stack file's)")
	flags.StringVar(&o.RedisAddr, "redis-addr", "", "Redis host:port for cache-coherence (overrides the stack file's); none: skipped")
	flags.StringVar(&o.Brokers, "brokers", "", "comma-separated Kafka brokers, to drain by high watermarks (overrides the stack file's); none: wait until the ledger is quiet")
	flags.StringVar(&o.LedgerSQL, "ledger-sql", "", "read the ledger from your own Postgres or MySQL database through the queries of this YAML file (docs/external.md)")
	flags.StringVar(&o.LedgerExport, "ledger-export", "", "read the ledger from this export directory (accounts/transactions/postings.jsonl, docs/audit.md) instead of Postgres")
	flags.StringVar(&o.ExportLedger, "export-ledger", "", "do not audit: dump the reference ledger (--postgres-url or --stack) into this directory in the export format")
	flags.StringVar(&o.Topic, "topic", invariants.DefaultTopic, "the commands topic whose consumption must be complete before the audit")
	flags.DurationVar(&o.DrainTimeout, "drain-timeout", runner.DefaultDrainTimeout, "how long to wait for the pipeline to drain; after it the audit runs anyway and says not drained")
	flags.DurationVar(&o.QuietPeriod, "quiet-period", runner.DefaultQuietPeriod, "without brokers, the ledger is drained when unchanged for this long")
	flags.IntVar(&o.MaxViolations, "max-violations", runner.DefaultMaxViolations, "violations listed per invariant (all are counted)")
	flags.StringVar(&o.Scope, "scope", invariants.ScopeRun, "no-phantoms scope: run (transactions of the users this journal mentions; others, from earlier runs on the same ledger, are counted and reported) or ledger (every transaction)")
	flags.StringVar(&o.Require, "require", "", "coverage classes the run must have exercised, comma-separated ("+strings.Join(invariants.ClassNames(), ", ")+"), beyond what its scenario promised; one that did not happen makes the verdict weak (exit 4)")
	flags.StringVar(&o.Scenario, "scenario", "", "the scenario the load ran, whose promises (duplicates, misuse, replays, early timeouts, overdrafts) the audit requires; default: run.json's, with its overrides")
	flags.Int64Var(&o.MaxBalance, "max-balance", 0, "the system's largest balance in minor units, to judge balance_limit rejections; 0: the reference system's with its Postgres, not known for an export")
	flags.Int64Var(&o.DailyDebitLimit, "daily-debit-limit", 0, "the system's daily debit limit in minor units per user per UTC day, to judge limits-respected; 0: the stack's (its stack.json) with --stack, else not known (the invariant is then not exercised)")
	flags.Int64Var(&o.MaxAmount, "max-amount", 0, "the system's largest amount in minor units, to judge invalid_amount rejections; 0: the reference system's with its Postgres, not known for an export")
	flags.Func("shard-postgres-url", "the database of the next shard (1, 2...) of a sharded reference ledger, --postgres-url (or the stack's) being shard 0 (docs/sharding.md); repeatable. The audit reads the union of the shards and their sagas, and drains by waiting until every shard is quiet (with --stack: until every shard's stored offsets reach the topic's high watermarks, through the stack's brokers) and no saga is in flight. Default none: one ledger", func(value string) error {
		if value == "" {
			return errors.New("empty URL")
		}
		o.ShardPostgresURLs = append(o.ShardPostgresURLs, value)
		return nil
	})
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		// The audit has more outcomes than the generic error path's exit 1,
		// and has said which on its outputs.
		return exitWith(runner.RunAudit(ctx, o, os.Stdout, os.Stderr), nil)
	}
}
