package gateway

import (
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/redis"
)

func TestLocalSessions(t *testing.T) {
	sessions := newLocalSessions()
	now := time.Unix(1000, 0)
	sessions.remember("a", redis.Session{UserID: 1, ExpiresAt: now.Add(time.Minute)}, now, time.Hour)
	sessions.remember("b", redis.Session{UserID: 2}, now, 10*time.Second)
	if got, ok := sessions.lookup("a", now.Add(59*time.Second)); !ok || got.UserID != 1 {
		t.Fatalf("a before expiry: %+v %v", got, ok)
	}
	if _, ok := sessions.lookup("a", now.Add(time.Minute)); ok {
		t.Fatal("a after its expiry was found")
	}
	if _, ok := sessions.lookup("b", now.Add(11*time.Second)); ok {
		t.Fatal("a session without expiry outlived the fallback lifetime")
	}
	if _, ok := sessions.lookup("unknown", now); ok {
		t.Fatal("unknown token found")
	}
	for i := range localSessionsMaximum + 1 {
		sessions.remember(string(rune(i)), redis.Session{UserID: int64(i)}, now, time.Hour)
	}
	if len(sessions.sessions) > localSessionsMaximum {
		t.Fatalf("%d sessions remembered, the bound is %d", len(sessions.sessions), localSessionsMaximum)
	}
}
