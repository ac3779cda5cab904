package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Sign-in failures are counted here so that every gateway sees the same
// count for an email: a password guesser who spreads its guesses over the
// gateways behind a balancer gets no more tries than one who does not. Each
// gateway also counts on its own (sut/gateway/signin.go), so losing Redis,
// or flushing it, gives a guesser no fresh tries on a gateway that saw
// them.

// SigninLock is the lock policy: after FailuresBeforeLock counted attempts
// the email is locked for Lock after its last attempt, doubled with every
// further attempt (each one is possible only once the lock ended), at most
// LockMaximum. A record is forgotten Memory after its last attempt.
type SigninLock struct {
	FailuresBeforeLock int
	Lock, LockMaximum  time.Duration
	Memory             time.Duration
}

// LockFor returns how long failures attempts lock an email, counted from
// the last of them: zero below FailuresBeforeLock. The Lua script below
// computes the same.
func (p SigninLock) LockFor(failures int) time.Duration {
	if failures < p.FailuresBeforeLock {
		return 0
	}
	lock := p.Lock
	for range failures - p.FailuresBeforeLock {
		if lock >= p.LockMaximum {
			break
		}
		lock *= 2
	}
	return min(lock, p.LockMaximum)
}

// SigninAttemptAnswer is what Redis decided for one attempt.
type SigninAttemptAnswer struct {
	// Allowed attempts were counted; the others found the email locked
	// until LockedUntil and counted nothing.
	Allowed     bool
	LockedUntil time.Time
	// Failures is the count, this attempt included when it was allowed.
	Failures int
}

// signinAttemptScript counts one attempt unless the email is locked:
// KEYS[1] the record; ARGV: now (ms), FailuresBeforeLock, Lock (ms),
// LockMaximum (ms), Memory (ms). It answers {1, 0, failures} for a counted
// attempt, {0, locked until (ms), failures} for a locked email.
var signinAttemptScript = goredis.NewScript(`
local failures = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if failures >= limit then
  local lock = tonumber(ARGV[3])
  local maximum = tonumber(ARGV[4])
  for _ = 1, failures - limit do
    if lock >= maximum then break end
    lock = lock * 2
  end
  if lock > maximum then lock = maximum end
  if now < last + lock then
    return {0, last + lock, failures}
  end
end
redis.call('HSET', KEYS[1], 'f', failures + 1, 't', now, 'p', last)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, 0, failures + 1}`)

// undecidedScript takes back one counted attempt, never below zero, and
// the time it stamped (a taken-back attempt must not restart a lock).
var undecidedScript = goredis.NewScript(`
local failures = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if failures > 0 then
  local previous = redis.call('HGET', KEYS[1], 'p') or '0'
  redis.call('HSET', KEYS[1], 'f', failures - 1, 't', previous)
end
return 0`)

// signinKey hashes the email key, so a dump of Redis lists no email.
func signinKey(emailKey string) string {
	sum := sha256.Sum256([]byte(emailKey))
	return "signin-failures:" + hex.EncodeToString(sum[:])
}

// SigninAttempt counts a sign-in attempt for an email (by its key) at now,
// counted as a failure until SigninSucceeded clears it or SigninUndecided
// takes it back, unless the email is locked by policy. Counting before the
// password is checked means concurrent guesses cannot all pass a check made
// before any of them failed.
func (c *Client) SigninAttempt(ctx context.Context, emailKey string, now time.Time, policy SigninLock) (SigninAttemptAnswer, error) {
	values, err := signinAttemptScript.Run(ctx, c.client, []string{signinKey(emailKey)}, now.UnixMilli(),
		policy.FailuresBeforeLock, policy.Lock.Milliseconds(), policy.LockMaximum.Milliseconds(), policy.Memory.Milliseconds()).Int64Slice()
	if err != nil {
		return SigninAttemptAnswer{}, fmt.Errorf("count sign-in attempt: %w", err)
	}
	if len(values) != 3 {
		return SigninAttemptAnswer{}, fmt.Errorf("count sign-in attempt: the script answered %d values", len(values))
	}
	answer := SigninAttemptAnswer{Allowed: values[0] == 1, Failures: int(values[2])}
	if !answer.Allowed {
		answer.LockedUntil = time.UnixMilli(values[1])
	}
	return answer, nil
}

// SigninSucceeded forgets an email's failures: the right password was given.
func (c *Client) SigninSucceeded(ctx context.Context, emailKey string) error {
	if err := c.client.Del(ctx, signinKey(emailKey)).Err(); err != nil {
		return fmt.Errorf("clear sign-in failures: %w", err)
	}
	return nil
}

// SigninUndecided takes back an attempt that ended before the password was
// checked (the ledger did not answer, the hashing slots were full), so a
// fault does not lock anybody out.
func (c *Client) SigninUndecided(ctx context.Context, emailKey string) error {
	if err := undecidedScript.Run(ctx, c.client, []string{signinKey(emailKey)}).Err(); err != nil {
		return fmt.Errorf("take back a sign-in attempt: %w", err)
	}
	return nil
}
