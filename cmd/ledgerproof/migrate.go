package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

func migrateCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("migrate", flag.ContinueOnError)
	postgresURL := flags.String("postgres-url", daemon.DefaultPostgresURL, "Postgres connection URL")
	timeout := flags.Duration("timeout", 60*time.Second, "give up if the database is not reachable and migrated within this time")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		// The database may still be starting (compose starts everything at
		// once): retry until the timeout.
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
			err := postgres.Migrate(ctx, *postgresURL)
			if err == nil {
				fmt.Println("migrations applied")
				return nil
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(backoff):
			}
		}
	}
}
