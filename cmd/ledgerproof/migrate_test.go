package main

import (
	"context"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestMigrateShardNumbersTheAccounts: `migrate --shard 1/2` numbers the
// shard's accounts 1, 3, 5...; the default leaves 1, 2, 3...; a bad value
// is refused before anything is touched.
func TestMigrateShardNumbersTheAccounts(t *testing.T) {
	stacktest.SkipIfShort(t)
	ctx := context.Background()
	migrateWith := func(args ...string) error {
		flags, run := migrateCommand()
		if err := flags.Parse(args); err != nil {
			return err
		}
		return run(ctx, flags)
	}
	accountsOf := func(url string) []int64 {
		store, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		var ids []int64
		for _, email := range []string{"a@example.com", "b@example.com"} {
			user, err := store.CreateUser(ctx, email, "hash")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, user.AccountID)
		}
		return ids
	}
	sharded := stacktest.PostgresURL(t)
	if err := migrateWith("--postgres-url", sharded, "--shard", "1/2"); err != nil {
		t.Fatal(err)
	}
	if ids := accountsOf(sharded); ids[0] != 1 || ids[1] != 3 {
		t.Errorf("shard 1 of 2 numbered its accounts %v, want [1 3]", ids)
	}
	single := stacktest.PostgresURL(t)
	if err := migrateWith("--postgres-url", single); err != nil {
		t.Fatal(err)
	}
	if ids := accountsOf(single); ids[0] != 1 || ids[1] != 2 {
		t.Errorf("one ledger numbered its accounts %v, want [1 2]", ids)
	}
	if err := migrateWith("--postgres-url", single, "--shard", "2/2"); err == nil {
		t.Error("--shard 2/2 accepted")
	}
}
