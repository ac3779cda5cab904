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
		if err := postgres.MigrateWhenReady(ctx, *postgresURL, *timeout); err != nil {
			return err
		}
		fmt.Println("migrations applied")
		return nil
	}
}
