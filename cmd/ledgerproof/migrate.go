package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

func migrateCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("migrate", flag.ContinueOnError)
	postgresURL := flags.String("postgres-url", daemon.DefaultPostgresURL, "Postgres connection URL")
	timeout := flags.Duration("timeout", 60*time.Second, "give up if the database is not reachable and migrated within this time")
	member := flags.String("shard", "0/1", "this database is shard I of N of a sharded ledger (docs/sharding.md), as I/N: its new accounts are numbered I, I+N, I+2N... (shard 0: N, 2N...) so every id routes to it; 0/1 (the default): one ledger, accounts numbered 1, 2, 3...")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		layout, index, err := shard.ParseMember(*member)
		if err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
		if err := postgres.MigrateWhenReady(ctx, *postgresURL, *timeout); err != nil {
			return err
		}
		if layout.Shards > 1 {
			store, err := postgres.Open(ctx, postgres.Config{URL: *postgresURL, MaxConnections: 1})
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.NumberAccountsForShard(ctx, layout, index); err != nil {
				return err
			}
			fmt.Printf("accounts numbered for shard %d of %d\n", index, layout.Shards)
		}
		fmt.Println("migrations applied")
		return nil
	}
}
