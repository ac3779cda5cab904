package gateway

import (
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// localSessionsMaximum bounds the gateway's own memory of sessions; when it
// is full the memory is cleared, which only sends some lookups back to Redis.
const localSessionsMaximum = 100_000

// localSessions is the gateway's own memory of the sessions it issued or
// looked up, until each one's expiry. Redis is not on the correctness path:
// while it is down, or after it restarted empty, a user who already has a
// token keeps working on this gateway instead of getting 503 or 401.
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
