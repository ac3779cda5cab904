package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

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

func normaliseEmail(email string) (string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	address, err := mail.ParseAddress(email)
	if err != nil || address.Address != email || len(email) > 254 {
		return "", ledger.Errorf(ledger.CodeInvalidEmail, "%s is not a valid email address", quoteForMessage(email))
	}
	return email, nil
}

func (g *Gateway) signup(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	body, err := g.readBody(w, r)
	if err != nil {
		return 0, nil, err
	}
	requestEmail, password, err := decodeCredentials(body)
	if err != nil {
		return 0, nil, err
	}
	email, err := normaliseEmail(requestEmail)
	if err != nil {
		return 0, nil, err
	}
	length := utf8.RuneCountInString(password)
	if length < passwordMinimum || length > passwordMaximum {
		return 0, nil, ledger.Errorf(ledger.CodeWeakPassword, "the password must have %d to %d characters", passwordMinimum, passwordMaximum)
	}
	hash, err := g.config.PasswordHashing.hash(password)
	if err != nil {
		return 0, nil, err
	}
	user, err := g.store.CreateUser(r.Context(), email, hash)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, marshal(userResponse{UserID: user.ID, AccountID: user.AccountID, Email: user.Email}), nil
}

// dummyHash is verified against when the email is unknown, so the answer
// takes as long as for a known email with a wrong password.
var dummyHash = "$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func (g *Gateway) signin(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	body, err := g.readBody(w, r)
	if err != nil {
		return 0, nil, err
	}
	requestEmail, password, err := decodeCredentials(body)
	if err != nil {
		return 0, nil, err
	}
	invalid := ledger.Errorf(ledger.CodeInvalidCredentials, "the email or the password is wrong")
	email, err := normaliseEmail(requestEmail)
	if err != nil {
		return 0, nil, invalid
	}
	user, err := g.store.UserByEmail(r.Context(), email)
	if ledger.ErrorCode(err) == ledger.CodeNotFound {
		_, _ = verifyPassword(password, dummyHash)
		return 0, nil, invalid
	}
	if err != nil {
		return 0, nil, err
	}
	ok, err := verifyPassword(password, user.PasswordHash)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		return 0, nil, invalid
	}
	tokenBytes := make([]byte, 32)
	if _, err := rand.Read(tokenBytes); err != nil {
		return 0, nil, err
	}
	token := base64.RawURLEncoding.EncodeToString(tokenBytes)
	expiresAt := g.clock().Add(g.config.SessionTTL).UTC().Truncate(time.Second)
	session := redis.Session{UserID: user.ID, AccountID: user.AccountID, ExpiresAt: expiresAt}
	if err := g.cache.CreateSession(r.Context(), token, session, g.config.SessionTTL); err != nil {
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "sessions are unavailable: %v", err)
	}
	g.sessions.remember(token, session, g.clock(), sessionFallbackLifetime)
	return http.StatusCreated, marshal(sessionResponse{Token: token, UserID: user.ID, AccountID: user.AccountID,
		ExpiresAt: expiresAt}), nil
}
