package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// TestSigninLock drives the Lua script and LockFor through the same
// attempts: the first FailuresBeforeLock are counted, then the email is
// locked for Lock after the last one, one more attempt is counted once the
// lock ended and doubles it, a success forgets everything, and an undecided
// attempt is taken back.
func TestSigninLock(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	ctx := context.Background()
	policy := redis.SigninLock{FailuresBeforeLock: 3, Lock: time.Second, LockMaximum: 4 * time.Second, Memory: time.Hour}
	for failures, want := range []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got := policy.LockFor(failures); got != want {
			t.Errorf("LockFor(%d) = %s, want %s", failures, got, want)
		}
	}
	now := time.UnixMilli(1_700_000_000_000)
	attempt := func(at time.Time) redis.SigninAttemptAnswer {
		t.Helper()
		answer, err := client.SigninAttempt(ctx, "alice@example.com", at, policy)
		if err != nil {
			t.Fatal(err)
		}
		return answer
	}
	for i := 1; i <= 3; i++ {
		if answer := attempt(now); !answer.Allowed || answer.Failures != i {
			t.Fatalf("attempt %d: %+v, want counted as failure %d", i, answer, i)
		}
	}
	if answer := attempt(now.Add(999 * time.Millisecond)); answer.Allowed || !answer.LockedUntil.Equal(now.Add(time.Second)) {
		t.Fatalf("attempt during the lock: %+v, want locked until %s", answer, now.Add(time.Second))
	}
	later := now.Add(time.Second)
	if answer := attempt(later); !answer.Allowed || answer.Failures != 4 {
		t.Fatalf("attempt after the lock: %+v", answer)
	}
	if answer := attempt(later.Add(1500 * time.Millisecond)); answer.Allowed || !answer.LockedUntil.Equal(later.Add(policy.LockFor(4))) {
		t.Fatalf("the lock did not double: %+v", answer)
	}
	if err := client.SigninUndecided(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	// The count is back at 3; the time of the last attempt stays, so the
	// lock of 3 failures runs from it.
	if answer := attempt(later.Add(time.Second)); !answer.Allowed || answer.Failures != 4 {
		t.Fatalf("after an undecided attempt was taken back: %+v, want failure 4 counted again", answer)
	}
	if err := client.SigninSucceeded(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if answer := attempt(later); !answer.Allowed || answer.Failures != 1 {
		t.Fatalf("after a success: %+v, want a fresh count", answer)
	}
	if answer, err := client.SigninAttempt(ctx, "bob@example.com", later, policy); err != nil || !answer.Allowed || answer.Failures != 1 {
		t.Fatalf("another email shares the count: %+v %v", answer, err)
	}
}
