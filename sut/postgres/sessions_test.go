package postgres_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestSessions: a session is stored with the database's times and found by
// its token's hash until it expires; ending a user's sessions sets its
// revocation time, deletes the ended rows and is listed by
// SessionsEndedSince, also when an operator writes the time directly; the
// first look leaves out revocations older than the session lifetime.
func TestSessions(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	alice, bob := newUser(t, store, "alice@example.com"), newUser(t, store, "bob@example.com")
	aliceHash, bobHash := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)

	session, err := store.CreateSession(ctx, aliceHash, alice.ID, alice.AccountID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := session.ExpiresAt.Sub(session.IssuedAt); got != time.Hour {
		t.Fatalf("session from %s to %s: %s, want an hour", session.IssuedAt, session.ExpiresAt, got)
	}
	found, ok, err := store.LookupSession(ctx, aliceHash)
	if err != nil || !ok || found.UserID != alice.ID || found.AccountID != alice.AccountID || !found.IssuedAt.Equal(session.IssuedAt) {
		t.Fatalf("lookup: %+v %v %v, want %+v", found, ok, err, session)
	}
	if _, err := store.CreateSession(ctx, bobHash, bob.ID, bob.AccountID, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the one sleep: a session must expire
	if _, ok, err := store.LookupSession(ctx, bobHash); ok || err != nil {
		t.Fatalf("an expired session was found: %v %v", ok, err)
	}
	if deleted, err := store.DeleteExpiredSessions(ctx, 10); err != nil || deleted != 1 {
		t.Fatalf("delete expired: %d %v, want 1", deleted, err)
	}

	before, databaseNow, err := store.SessionsEndedSince(ctx, time.Time{}, time.Hour, true, 100)
	if err != nil || len(before) != 0 || databaseNow.IsZero() {
		t.Fatalf("ended sessions before any sign-out: %+v %s %v", before, databaseNow, err)
	}
	ended, err := store.EndSessions(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !ended.Ended(session.IssuedAt) || ended.ChangedAt.IsZero() {
		t.Fatalf("revocation %+v does not end the session issued at %s", ended, session.IssuedAt)
	}
	if _, ok, _ := store.LookupSession(ctx, aliceHash); ok {
		t.Fatal("the ended session's row is still there")
	}
	later, err := store.CreateSession(ctx, aliceHash, alice.ID, alice.AccountID, time.Hour)
	if err != nil || ended.Ended(later.IssuedAt) {
		t.Fatalf("a session issued after the sign-out (%s, revocation %s) is ended: %v", later.IssuedAt, ended.ValidAfter, err)
	}
	changes, _, err := store.SessionsEndedSince(ctx, databaseNow, time.Hour, false, 100)
	if err != nil || len(changes) != 1 || changes[0].UserID != alice.ID || !changes[0].ValidAfter.Equal(ended.ValidAfter) {
		t.Fatalf("changes since before the sign-out: %+v %v", changes, err)
	}
	if _, err := store.EndSessions(ctx, 987654); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("ending an unknown user's sessions: %v", err)
	}

	// An operator's revocation time, written by hand, is listed too (the
	// trigger stamps the change), an old one only when asked for all.
	if _, err := store.Pool().Exec(ctx, `UPDATE users SET sessions_valid_after = now() - interval '2 hours' WHERE id = $1`, bob.ID); err != nil {
		t.Fatal(err)
	}
	all, _, err := store.SessionsEndedSince(ctx, databaseNow, time.Hour, false, 100)
	if err != nil || len(all) != 2 {
		t.Fatalf("changes: %+v %v, want alice's and bob's", all, err)
	}
	recent, _, err := store.SessionsEndedSince(ctx, time.Time{}, time.Hour, true, 100)
	if err != nil || len(recent) != 1 || recent[0].UserID != alice.ID {
		t.Fatalf("recent revocations: %+v %v, want alice's only (bob's is older than the session lifetime)", recent, err)
	}
	page, _, err := store.SessionsEndedSince(ctx, time.Time{}, time.Hour, false, 1)
	if err != nil || len(page) != 1 {
		t.Fatalf("a page of one: %+v %v", page, err)
	}
	// Taking a revocation back (-infinity) is listed as the zero time.
	if _, err := store.Pool().Exec(ctx, `UPDATE users SET sessions_valid_after = '-infinity' WHERE id = $1`, bob.ID); err != nil {
		t.Fatal(err)
	}
	back, _, err := store.SessionsEndedSince(ctx, databaseNow, time.Hour, false, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, change := range back {
		if change.UserID == bob.ID && (!change.ValidAfter.IsZero() || change.Ended(time.Now())) {
			t.Fatalf("bob's revocation taken back: %+v", change)
		}
	}
}

// TestEmailKeys: a key is unique, a user is found by its key or, without
// one, by its email, and a user without a key gets one.
func TestEmailKeys(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	keyed, err := store.CreateUserWithKey(ctx, "alice@example.com", "alice-key", "hash")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateUserWithKey(ctx, "alice2@example.com", "alice-key", "hash"); ledger.ErrorCode(err) != ledger.CodeEmailTaken {
		t.Fatalf("a second user with the key: %v, want email_taken", err)
	}
	old := newUser(t, store, "old@example.com")
	if found, err := store.UserByEmailKey(ctx, "alice-key", "whatever@example.com"); err != nil || found.ID != keyed.ID {
		t.Fatalf("by key: %+v %v", found, err)
	}
	if found, err := store.UserByEmailKey(ctx, "old-key", "old@example.com"); err != nil || found.ID != old.ID {
		t.Fatalf("a user without a key, by its email: %+v %v", found, err)
	}
	without, err := store.UsersWithoutEmailKey(ctx, 0, 10)
	if err != nil || len(without) != 1 || without[0].ID != old.ID || without[0].Email != "old@example.com" {
		t.Fatalf("users without a key: %+v %v", without, err)
	}
	if err := store.SetEmailKey(ctx, old.ID, "alice-key"); ledger.ErrorCode(err) != ledger.CodeEmailTaken {
		t.Fatalf("setting a taken key: %v", err)
	}
	if err := store.SetEmailKey(ctx, old.ID, "old-key"); err != nil {
		t.Fatal(err)
	}
	if without, err := store.UsersWithoutEmailKey(ctx, 0, 10); err != nil || len(without) != 0 {
		t.Fatalf("users without a key after the backfill: %+v %v", without, err)
	}
	if found, err := store.UserByEmailKey(ctx, "old-key", "other@example.com"); err != nil || found.ID != old.ID {
		t.Fatalf("by its new key: %+v %v", found, err)
	}
}
