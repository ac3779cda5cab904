package gateway

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// localSessionsMaximum bounds the gateway's own memory of sessions; when it
// is full the memory is cleared, which only sends some lookups back to Redis.
const localSessionsMaximum = 100_000

// localSessions is the gateway's own memory of the sessions it issued or
// looked up, until each one's expiry: most requests need neither Redis nor
// the database to find their session. It never decides alone that a
// session is valid: authenticated checks every session it returns against
// the user's revocation time.
type localSessions struct {
	mutex    sync.Mutex
	sessions map[string]redis.Session
}

func newLocalSessions() *localSessions {
	return &localSessions{sessions: map[string]redis.Session{}}
}

// remember keeps a session until it expires; a session without an expiry
// (issued before expiries were recorded) is kept for fallback.
func (l *localSessions) remember(token string, session redis.Session, now time.Time, fallback time.Duration) {
	if session.ExpiresAt.IsZero() {
		session.ExpiresAt = now.Add(fallback)
	}
	l.mutex.Lock()
	defer l.mutex.Unlock()
	if len(l.sessions) >= localSessionsMaximum {
		l.sessions = map[string]redis.Session{}
	}
	l.sessions[token] = session
}

// lookup returns a remembered session that has not expired.
func (l *localSessions) lookup(token string, now time.Time) (redis.Session, bool) {
	l.mutex.Lock()
	defer l.mutex.Unlock()
	session, ok := l.sessions[token]
	if !ok {
		return redis.Session{}, false
	}
	if !now.Before(session.ExpiresAt) {
		delete(l.sessions, token)
		return redis.Session{}, false
	}
	return session, true
}

// forget drops a token (signed out).
func (l *localSessions) forget(token string) {
	l.mutex.Lock()
	defer l.mutex.Unlock()
	delete(l.sessions, token)
}

// tokenHash is how the ledger database knows a token: its SHA-256.
func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// caller is an authenticated request's session and token.
type caller struct {
	session redis.Session
	token   string
}

type callerKey struct{}

// callerOf returns the caller of a request that passed authenticated.
func callerOf(r *http.Request) caller {
	value, ok := r.Context().Value(callerKey{}).(caller)
	if !ok {
		panic("gateway: handler reached without a session")
	}
	return value
}

func sessionOf(r *http.Request) redis.Session { return callerOf(r).session }

// sessionFallbackLifetime is how long a session read from Redis without an
// expiry is remembered locally.
const sessionFallbackLifetime = 10 * time.Minute

// authenticated resolves the bearer token to a session that has not ended
// and applies the per-user rate limit.
//
// A session is looked up in this gateway's memory, then in Redis, then in
// the ledger database, which holds every session: losing Redis, or a
// gateway that never saw a token, sends the lookup further, never to a 401.
// Wherever it was found, the session is then checked against its user's
// revocation time (endedSessions), which every gateway reads from the
// database every SessionCheckInterval: memories and Redis may remember an
// ended session, none of them can revive it.
func (g *Gateway) authenticated(next handler) handler {
	return func(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
		const prefix = "Bearer "
		header := r.Header.Get("Authorization")
		if len(header) <= len(prefix) || header[:len(prefix)] != prefix {
			return 0, nil, ledger.Errorf(ledger.CodeUnauthenticated, "an Authorization: Bearer <token> header is required")
		}
		token := header[len(prefix):]
		session, err := g.lookupSession(r.Context(), token)
		if err != nil {
			return 0, nil, err
		}
		ended, err := g.endedSessions.ended(r.Context(), session)
		if err != nil {
			return 0, nil, err
		}
		if ended {
			g.sessions.forget(token)
			return 0, nil, ledger.Errorf(ledger.CodeUnauthenticated, "the session was ended (signed out); sign in again")
		}
		if allowed, wait := g.userLimits.allow(session.UserID, g.clock()); !allowed {
			g.metrics.refusals.WithLabelValues("user_rate").Inc()
			w.Header().Set("Retry-After", retryAfterSeconds(wait))
			return 0, nil, ledger.Errorf(ledger.CodeRateLimited, "more than %g requests per second for this user", g.config.RateLimitPerSecond)
		}
		return next(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{session: session, token: token})))
	}
}

// lookupSession finds the unexpired session of a token: this gateway's
// memory, Redis, then the ledger database (whose answer is written back to
// Redis and remembered).
func (g *Gateway) lookupSession(ctx context.Context, token string) (redis.Session, error) {
	now := g.clock()
	if session, remembered := g.sessions.lookup(token, now); remembered {
		g.metrics.localSessions.Inc()
		return session, nil
	}
	cached, found, err := g.cache.LookupSession(ctx, token)
	if err != nil {
		g.metrics.cacheErrors.Inc()
	}
	if err == nil && found && (cached.ExpiresAt.IsZero() || now.Before(cached.ExpiresAt)) {
		g.sessions.remember(token, cached, now, sessionFallbackLifetime)
		return cached, nil
	}
	stored, found, err := g.store.LookupSession(ctx, tokenHash(token))
	if err != nil {
		return redis.Session{}, ledger.Errorf(ledger.CodeUnavailable, "sessions are unavailable: %v", err)
	}
	if !found {
		return redis.Session{}, ledger.Errorf(ledger.CodeUnauthenticated, "the token is unknown or expired; sign in again")
	}
	g.metrics.ledgerSessions.Inc()
	session := redis.Session{UserID: stored.UserID, AccountID: stored.AccountID, IssuedAt: stored.IssuedAt, ExpiresAt: stored.ExpiresAt}
	if ttl := stored.ExpiresAt.Sub(now); ttl > 0 {
		if err := g.cache.CreateSession(context.WithoutCancel(ctx), token, session, ttl); err != nil {
			g.metrics.cacheErrors.Inc()
		}
	}
	g.sessions.remember(token, session, now, sessionFallbackLifetime)
	return session, nil
}

// endedSessionsOverlap is how far back each look at the users' revocation
// times starts before the previous look's clock: a revocation written by a
// transaction that began before that look but committed after it carries an
// earlier time, and must not be missed.
const endedSessionsOverlap = 30 * time.Second

// endedSessionsPage is how many revocations one query reads.
const endedSessionsPage = 10_000

// endedSessions is this gateway's copy of the users' revocation times
// (users.sessions_valid_after), for the users whose revocation can still
// end an unexpired session (set within SessionTTL). It is read in full at
// the first use, then the rows changed since the last look are read every
// interval (by follow, and by a request finding the copy older than that):
// a query a second, whatever the load, instead of one per request. While
// the database does not answer the copy stays as it was: no revocation can
// be written meanwhile, and the next look reads everything changed since
// the last good one.
type endedSessions struct {
	store    Store
	clock    func() time.Time
	interval time.Duration
	ttl      time.Duration
	logger   *slog.Logger

	mutex      sync.Mutex
	validAfter map[int64]time.Time
	loaded     bool
	// watermark is the database's clock at the last good look.
	watermark time.Time
	// lookedAt is this gateway's clock at the last look, good or not.
	lookedAt time.Time
	// looking is closed when the look under way ends; nil when none is.
	looking chan struct{}
}

func newEndedSessions(store Store, clock func() time.Time, interval, ttl time.Duration, logger *slog.Logger) *endedSessions {
	return &endedSessions{store: store, clock: clock, interval: interval, ttl: ttl, logger: logger, validAfter: map[int64]time.Time{}}
}

// ended reports whether session was ended by its user's revocation time.
// Before the first good look it waits for one; if that fails the request
// is refused (503): no session is trusted unchecked.
func (e *endedSessions) ended(ctx context.Context, session redis.Session) (bool, error) {
	e.mutex.Lock()
	if !e.loaded || e.clock().Sub(e.lookedAt) >= e.interval {
		e.startLook()
	}
	if !e.loaded {
		looking := e.looking
		e.mutex.Unlock()
		select {
		case <-looking:
		case <-ctx.Done():
			return false, ledger.Errorf(ledger.CodeUnavailable, "the request ended before the sessions could be checked")
		}
		e.mutex.Lock()
		if !e.loaded {
			e.mutex.Unlock()
			return false, ledger.Errorf(ledger.CodeUnavailable, "the ended sessions could not be read yet")
		}
	}
	validAfter, revoked := e.validAfter[session.UserID]
	e.mutex.Unlock()
	return revoked && !session.IssuedAt.After(validAfter), nil
}

// startLook starts a look unless one is under way. The caller holds mutex.
func (e *endedSessions) startLook() {
	if e.looking != nil {
		return
	}
	e.looking = make(chan struct{})
	e.lookedAt = e.clock()
	go e.look()
}

// look reads the revocation times changed since the last good look.
func (e *endedSessions) look() {
	ctx, cancel := context.WithTimeout(context.Background(), max(5*time.Second, e.interval))
	defer cancel()
	e.mutex.Lock()
	first, since := !e.loaded, e.watermark.Add(-endedSessionsOverlap)
	e.mutex.Unlock()
	if first {
		since = time.Time{}
	}
	var changes []ledger.SessionsValidAfter
	var watermark time.Time
	var err error
	for page := 0; ; page++ {
		var rows []ledger.SessionsValidAfter
		var databaseNow time.Time
		rows, databaseNow, err = e.store.SessionsEndedSince(ctx, since, e.ttl+endedSessionsOverlap, first, endedSessionsPage)
		if err != nil {
			break
		}
		if page == 0 {
			watermark = databaseNow
		}
		changes = append(changes, rows...)
		if len(rows) < endedSessionsPage {
			break
		}
		if page == 100 {
			err = fmt.Errorf("more than %d revocations changed at once", 100*endedSessionsPage)
			break
		}
		// Rows changed at the same microsecond as the page's last are read
		// again rather than skipped.
		since = rows[len(rows)-1].ChangedAt.Add(-time.Microsecond)
	}
	e.mutex.Lock()
	defer e.mutex.Unlock()
	defer func() {
		close(e.looking)
		e.looking = nil
	}()
	if err != nil {
		e.logger.Warn("could not read the ended sessions; the last copy stays in use", "error", err)
		return
	}
	for _, change := range changes {
		e.validAfter[change.UserID] = change.ValidAfter
	}
	e.watermark, e.loaded = watermark, true
	// A revocation time older than the session lifetime ends only sessions
	// that expired anyway.
	horizon := e.clock().Add(-e.ttl - time.Minute)
	for userID, validAfter := range e.validAfter {
		if validAfter.Before(horizon) {
			delete(e.validAfter, userID)
		}
	}
}

// apply takes a revocation this gateway wrote (sign-out) at once.
func (e *endedSessions) apply(change ledger.SessionsValidAfter) {
	e.mutex.Lock()
	defer e.mutex.Unlock()
	if current, ok := e.validAfter[change.UserID]; !ok || change.ValidAfter.After(current) {
		e.validAfter[change.UserID] = change.ValidAfter
	}
}

// follow looks every interval until ctx ends, so requests find a fresh
// copy rather than start a look.
func (e *endedSessions) follow(ctx context.Context) {
	ticker := time.NewTicker(e.interval)
	defer ticker.Stop()
	for {
		e.mutex.Lock()
		e.startLook()
		e.mutex.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// tidySessionsInterval is how often a gateway deletes expired sessions
// from the database, at most tidySessionsBatch at a time.
const (
	tidySessionsInterval = 10 * time.Minute
	tidySessionsBatch    = 10_000
)

// tidySessions deletes expired sessions until ctx ends.
func (g *Gateway) tidySessions(ctx context.Context) {
	ticker := time.NewTicker(tidySessionsInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if _, err := g.store.DeleteExpiredSessions(ctx, tidySessionsBatch); err != nil {
			g.logger.Warn("could not delete expired sessions", "error", err)
		}
	}
}
