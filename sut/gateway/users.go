package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// credentialsRequest is the body of signup and sign-in, decoded by
// decodeStrict: both members are JSON strings; a missing one is empty.
type credentialsRequest struct {
	Email    jsonString `json:"email"`
	Password jsonString `json:"password"`
}

// decodeCredentials decodes the body of signup or sign-in. Its errors are
// invalid_request.
func decodeCredentials(body []byte) (email, password string, err error) {
	var request credentialsRequest
	if err := decodeStrict(body, &request); err != nil {
		return "", "", err
	}
	return string(request.Email), string(request.Password), nil
}

type userResponse struct {
	UserID    int64  `json:"user_id"`
	AccountID int64  `json:"account_id"`
	Email     string `json:"email"`
}

type sessionResponse struct {
	Token     string    `json:"token"`
	UserID    int64     `json:"user_id"`
	AccountID int64     `json:"account_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Password length limits: long enough to matter, short enough that the KDF
// cannot be made to hash megabytes.
const (
	passwordMinimum = 8
	passwordMaximum = 256
)

// limit takes a token of key's bucket, or refuses with 429 rate_limited and
// Retry-After; reason names the refusal in the metrics.
func (g *Gateway) limit(w http.ResponseWriter, limiter *keyedLimiter[string], key, reason, what string) error {
	allowed, wait := limiter.allow(key, g.clock())
	if allowed {
		return nil
	}
	g.metrics.refusals.WithLabelValues(reason).Inc()
	w.Header().Set("Retry-After", retryAfterSeconds(wait))
	return ledger.Errorf(ledger.CodeRateLimited, "too many %s; retry in %s seconds", what, retryAfterSeconds(wait))
}

// signup creates a user. It answers 409 email_taken for an email (or a
// look-alike of one) that has an account, after the same password hash as
// a new user costs: what signup tells of which emails have accounts is
// bounded by the signup limits per address and per email, not hidden
// (docs/security.md).
func (g *Gateway) signup(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	if err := g.limit(w, g.signupPerAddress, stateOf(r).clientKey, "signup_per_address", "signups from your address"); err != nil {
		return 0, nil, err
	}
	requestEmail, password, err := decodeCredentials(requestBodyOf(r))
	if err != nil {
		return 0, nil, err
	}
	email, err := normaliseEmail(requestEmail)
	if err != nil {
		return 0, nil, err
	}
	if err := g.limit(w, g.signupPerEmail, email.key, "signup_per_email", "signups for this email"); err != nil {
		return 0, nil, err
	}
	if err := checkPassword(password, email); err != nil {
		return 0, nil, err
	}
	release, err := g.hashing.acquire(r.Context())
	if err != nil {
		g.metrics.refusals.WithLabelValues("hashing_busy").Inc()
		return 0, nil, err
	}
	hash, err := g.config.PasswordHashing.hash(password)
	release()
	if err != nil {
		return 0, nil, err
	}
	user, err := g.createUser(r.Context(), email.address, email.key, hash)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, marshal(userResponse{UserID: user.ID, AccountID: user.AccountID, Email: user.Email}), nil
}

// signin verifies credentials and creates a session. An unknown email and a
// wrong password get the same 401 after the same work: one lookup and one
// hash with the configured cost (the decoy hash for an unknown email). A
// malformed email gets the same 401 at once: its shape is public, no
// account can have it, so answering it fast tells nothing. Limits come first: per address, the email's lock, per
// email; then a hashing slot.
func (g *Gateway) signin(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	ctx := r.Context()
	if err := g.limit(w, g.signinPerAddress, stateOf(r).clientKey, "signin_per_address", "sign-ins from your address"); err != nil {
		return 0, nil, err
	}
	requestEmail, password, err := decodeCredentials(requestBodyOf(r))
	if err != nil {
		return 0, nil, err
	}
	invalid := ledger.Errorf(ledger.CodeInvalidCredentials, "the email or the password is wrong")
	email, err := normaliseEmail(requestEmail)
	if err != nil {
		return 0, nil, invalid
	}
	failures, err := g.signinAttempt(w, ctx, email.key)
	if err != nil {
		return 0, nil, err
	}
	decided := false
	defer func() {
		if !decided {
			g.signinUndecided(ctx, email.key)
		}
	}()
	// After the lock, so a locked email's attempts take no token of its
	// owner's; a refusal here takes the attempt back (above).
	if err := g.limit(w, g.signinPerEmail, email.key, "signin_per_email", "sign-ins for this email"); err != nil {
		return 0, nil, err
	}
	user, err := g.findUser(ctx, email.key, email.address)
	known := err == nil
	if err != nil && ledger.ErrorCode(err) != ledger.CodeNotFound {
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "find the user: %v", err)
	}
	encoded := g.decoyHash
	if known {
		encoded = user.PasswordHash
	}
	release, err := g.hashing.acquire(ctx)
	if err != nil {
		g.metrics.refusals.WithLabelValues("hashing_busy").Inc()
		return 0, nil, err
	}
	matches, err := verifyPassword(password, encoded)
	release()
	if err != nil {
		return 0, nil, err
	}
	decided = true
	if !known || !matches {
		g.signinDecided(ctx, r, email.key, failures, false)
		return 0, nil, invalid
	}
	g.signinDecided(ctx, r, email.key, failures, true)
	if user, err = g.userWithAccount(ctx, user); err != nil {
		return 0, nil, err
	}
	return g.createSession(ctx, user)
}

// createSession issues a token for user: stored in the ledger database (the
// session of record, whose clock gives its issue time), then in Redis (the
// fast path; its failure only costs other gateways a database lookup) and
// in this gateway's memory.
func (g *Gateway) createSession(ctx context.Context, user ledger.User) (int, []byte, error) {
	tokenBytes := make([]byte, 32)
	if _, err := rand.Read(tokenBytes); err != nil {
		return 0, nil, err
	}
	token := base64.RawURLEncoding.EncodeToString(tokenBytes)
	stored, err := g.store.CreateSession(ctx, tokenHash(token), user.ID, user.AccountID, g.config.SessionTTL)
	if err != nil {
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "store the session: %v", err)
	}
	session := redis.Session{UserID: user.ID, AccountID: user.AccountID, IssuedAt: stored.IssuedAt, ExpiresAt: stored.ExpiresAt}
	if err := g.cache.CreateSession(ctx, token, session, g.config.SessionTTL); err != nil {
		g.metrics.cacheErrors.Inc()
	}
	g.sessions.remember(token, session, g.clock(), sessionFallbackLifetime)
	return http.StatusCreated, marshal(sessionResponse{Token: token, UserID: user.ID, AccountID: user.AccountID,
		ExpiresAt: stored.ExpiresAt.UTC().Truncate(time.Second)}), nil
}

// signout ends every session of the caller: the user's revocation time in
// the ledger database becomes now, which every gateway reads within
// SessionCheckInterval; this gateway applies it at once. 204 No Content.
func (g *Gateway) signout(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	ctx := r.Context()
	caller := callerOf(r)
	ended, err := g.store.EndSessions(ctx, caller.session.UserID)
	if err != nil {
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "end the sessions: %v", err)
	}
	g.endedSessions.apply(ended)
	g.sessions.forget(caller.token)
	if err := g.cache.DeleteSession(context.WithoutCancel(ctx), caller.token); err != nil {
		g.metrics.cacheErrors.Inc()
	}
	return http.StatusNoContent, nil, nil
}
