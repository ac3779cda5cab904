package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// Repeated sign-in failures lock an email (Config.SigninLock). Every
// attempt is counted before its password is checked, as a failure until it
// succeeds, so concurrent guesses cannot all pass a check made before any of
// them failed; an attempt that ends without a verdict on the password (the
// ledger did not answer, no hashing slot) is taken back, so faults lock
// nobody out. The count lives in Redis, shared by every gateway, and here
// too: Redis down or flushed gives a guesser no fresh tries on a gateway
// that saw them. A locked attempt is answered 429 with Retry-After, without
// hashing, whether the email has an account or not.

// signinFailuresMaximum bounds the emails a gateway remembers failures of.
const signinFailuresMaximum = 100_000

// signinFailures is a gateway's own count of sign-in attempts per email key.
type signinFailures struct {
	policy  redis.SigninLock
	mutex   sync.Mutex
	records map[string]failureRecord
}

type failureRecord struct {
	failures int
	last     time.Time
	// previous is last before the latest attempt: an attempt taken back
	// (undecided) restores it, so it neither counts nor restarts a lock.
	previous time.Time
}

func newSigninFailures(policy redis.SigninLock) *signinFailures {
	return &signinFailures{policy: policy, records: map[string]failureRecord{}}
}

// lockedUntil is when record's lock ends (the zero time: not locked).
func (s *signinFailures) lockedUntil(record failureRecord) time.Time {
	lock := s.policy.LockFor(record.failures)
	if lock == 0 {
		return time.Time{}
	}
	return record.last.Add(lock)
}

// attempt counts an attempt for key at now unless key is locked; it returns
// the count with this attempt, or when the lock ends.
func (s *signinFailures) attempt(key string, now time.Time) (allowed bool, lockedUntil time.Time, failures int) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	record, known := s.records[key]
	if until := s.lockedUntil(record); now.Before(until) {
		return false, until, record.failures
	}
	if !known && len(s.records) >= signinFailuresMaximum {
		s.forget(now)
		if len(s.records) >= signinFailuresMaximum {
			// Every remembered email is locked right now: this one is
			// counted by Redis alone rather than another lock forgotten.
			return true, time.Time{}, 1
		}
	}
	record = failureRecord{failures: record.failures + 1, last: now, previous: record.last}
	s.records[key] = record
	return true, time.Time{}, record.failures
}

// forget drops the records past their memory, then those not locked now.
func (s *signinFailures) forget(now time.Time) {
	for key, record := range s.records {
		if now.Sub(record.last) > s.policy.Memory {
			delete(s.records, key)
		}
	}
	if len(s.records) < signinFailuresMaximum {
		return
	}
	for key, record := range s.records {
		if !now.Before(s.lockedUntil(record)) {
			delete(s.records, key)
		}
	}
}

// succeeded forgets key's failures.
func (s *signinFailures) succeeded(key string) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	delete(s.records, key)
}

// undecided takes back one counted attempt of key.
func (s *signinFailures) undecided(key string) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	record, ok := s.records[key]
	if !ok {
		return
	}
	record.failures--
	record.last = record.previous
	if record.failures <= 0 {
		delete(s.records, key)
		return
	}
	s.records[key] = record
}

// signinAttempt is the gateway's decision on one attempt: counted here and
// in Redis (Redis failing, this gateway's count decides), or refused with
// 429 and Retry-After when either finds the email locked. It returns the
// failures counted with this attempt.
func (g *Gateway) signinAttempt(w http.ResponseWriter, ctx context.Context, emailKey string) (int, error) {
	now := g.clock()
	allowed, until, failures := g.signinFailures.attempt(emailKey, now)
	if allowed {
		answer, err := g.cache.SigninAttempt(ctx, emailKey, now, g.config.SigninLock)
		switch {
		case err != nil:
			g.metrics.cacheErrors.Inc()
		case !answer.Allowed:
			g.signinFailures.undecided(emailKey)
			allowed, until = false, answer.LockedUntil
		default:
			failures = max(failures, answer.Failures)
		}
	}
	if !allowed {
		g.metrics.refusals.WithLabelValues("signin_locked").Inc()
		wait := until.Sub(now)
		w.Header().Set("Retry-After", retryAfterSeconds(wait))
		return 0, ledger.Errorf(ledger.CodeRateLimited, "too many failed sign-ins for this email; retry in %s seconds", retryAfterSeconds(wait))
	}
	return failures, nil
}

// signinDecided records the verdict on an attempt's password: a success
// forgets the email's failures; a failure stays counted, and one that
// locks the email is logged.
func (g *Gateway) signinDecided(ctx context.Context, r *http.Request, emailKey string, failures int, succeeded bool) {
	if succeeded {
		g.signinFailures.succeeded(emailKey)
		if err := g.cache.SigninSucceeded(context.WithoutCancel(ctx), emailKey); err != nil {
			g.metrics.cacheErrors.Inc()
		}
		return
	}
	g.metrics.signinFailures.Inc()
	if lock := g.config.SigninLock.LockFor(failures); lock > 0 && g.detailLogs.Allow() {
		state := stateOf(r)
		g.logger.Warn("repeated sign-in failures lock an email", "email_key_sha256", shortHash(emailKey),
			"client", state.client.String(), "request_id", state.requestID, "failures", failures, "locked_for", lock)
	}
}

// signinUndecided takes back an attempt that ended before its verdict.
func (g *Gateway) signinUndecided(ctx context.Context, emailKey string) {
	g.signinFailures.undecided(emailKey)
	if err := g.cache.SigninUndecided(context.WithoutCancel(ctx), emailKey); err != nil {
		g.metrics.cacheErrors.Inc()
	}
}

// shortHash names an email in the logs without writing it there.
func shortHash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:6])
}
