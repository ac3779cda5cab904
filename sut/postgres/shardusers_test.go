package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// TestUsersOfShards: shard 0 of two stores every user and only the
// accounts of its own users (user id mod 2 = 0), finds users with or without
// their account, and another shard finds the accounts it created; an
// account numbered for another shard is refused with nothing stored.
func TestUsersOfShards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layout := shard.Layout{Shards: 2}
	shard0, shard1 := newShardStore(t), newShardStore(t)
	if err := shard0.NumberAccountsForShard(ctx, layout, 0); err != nil {
		t.Fatal(err)
	}
	if err := shard1.NumberAccountsForShard(ctx, layout, 1); err != nil {
		t.Fatal(err)
	}
	var users []ledger.User
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		user, err := shard0.CreateUserOfShards(ctx, email, email, "hash", layout)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case layout.Of(user.ID) == 0 && (user.AccountID == 0 || layout.Of(user.AccountID) != 0):
			t.Errorf("user %d of shard 0 has account %d, want one of shard 0", user.ID, user.AccountID)
		case layout.Of(user.ID) == 1 && user.AccountID != 0:
			t.Errorf("user %d of shard 1 got account %d in shard 0", user.ID, user.AccountID)
		}
		if layout.Of(user.ID) == 1 {
			if user.AccountID, err = shard1.CreateShardAccount(ctx, user.ID); err != nil {
				t.Fatal(err)
			}
		}
		users = append(users, user)
	}
	for _, user := range users {
		found, err := shard0.UserByEmailKeyOfShards(ctx, user.Email, user.Email)
		if err != nil || found.ID != user.ID {
			t.Fatalf("find %s: %+v, %v", user.Email, found, err)
		}
		home := map[int]int64{0: 0, 1: 0}
		home[layout.Of(user.ID)] = user.AccountID
		if found.AccountID != home[0] {
			t.Errorf("shard 0 finds user %d with account %d, want %d", user.ID, found.AccountID, home[0])
		}
		for index, store := range map[int]interface {
			UserAccount(context.Context, int64) (int64, error)
		}{0: shard0, 1: shard1} {
			accountID, err := store.UserAccount(ctx, user.ID)
			if home[index] == 0 && ledger.ErrorCode(err) != ledger.CodeAccountNotFound || home[index] != 0 && (err != nil || accountID != home[index]) {
				t.Errorf("shard %d: account of user %d is %d, %v; want %d", index, user.ID, accountID, err, home[index])
			}
		}
	}
	if _, err := shard0.UserByEmailKeyOfShards(ctx, "nobody", "nobody@example.com"); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Errorf("an unknown user: %v, want not found", err)
	}
	// Shard 1's database used as shard 0 numbers accounts 1, 3...: the
	// account of a user of shard 0 would route to shard 1.
	for attempt := 0; ; attempt++ {
		email := "misplaced" + strings.Repeat("x", attempt) + "@example.com"
		user, err := shard1.CreateUserOfShards(ctx, email, email, "hash", layout)
		if err == nil && user.AccountID == 0 {
			continue // a user of shard 1: no account here
		}
		if err == nil || !strings.Contains(err.Error(), "migrate --shard 0/2") {
			t.Fatalf("a shard 0 numbered for shard 1: %+v, %v; want refused", user, err)
		}
		if _, err := shard1.UserByEmailKeyOfShards(ctx, email, email); ledger.ErrorCode(err) != ledger.CodeNotFound {
			t.Fatalf("the refused user was stored: %v", err)
		}
		break
	}
}
