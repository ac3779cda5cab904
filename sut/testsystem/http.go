package testsystem

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Limits of the HTTP API.
const (
	// bodyMaximumBytes bounds a request body (413 beyond), as the reference's
	// default --max-body-bytes.
	bodyMaximumBytes = 16 << 10
	// sessionLifetime is how long a bearer token is valid.
	sessionLifetime = 24 * time.Hour
)

// statusOfCode maps every error code the system answers to its one HTTP
// status (sut/openapi.yaml, ErrorCode's x-http-status).
var statusOfCode = map[string]int{
	"invalid_request":           http.StatusBadRequest,
	"invalid_amount":            http.StatusBadRequest,
	"invalid_email":             http.StatusBadRequest,
	"weak_password":             http.StatusBadRequest,
	"idempotency_key_missing":   http.StatusBadRequest,
	"same_account":              http.StatusBadRequest,
	"invalid_credentials":       http.StatusUnauthorized,
	"unauthenticated":           http.StatusUnauthorized,
	"forbidden":                 http.StatusForbidden,
	"not_found":                 http.StatusNotFound,
	"account_not_found":         http.StatusNotFound,
	"email_taken":               http.StatusConflict,
	"idempotency_key_in_flight": http.StatusConflict,
	"body_too_large":            http.StatusRequestEntityTooLarge,
	"unsupported_media_type":    http.StatusUnsupportedMediaType,
	"idempotency_key_reused":    http.StatusUnprocessableEntity,
	"internal":                  http.StatusInternalServerError,
	"unavailable":               http.StatusServiceUnavailable,
}

// apiError is an answer other than success: a code of statusOfCode and a
// message for people.
type apiError struct {
	code, message string
}

// Handler returns the public API of the system's shape (Options.Shape):
// that of sut/openapi.yaml (the routes the load client uses) or the v2 API
// of v2.go. Both shapes have GET /healthz and one route for tests:
// POST /admin/export?dir=ABSOLUTE_DIR writes the ledger export (WriteExport)
// and answers 204, so a run's --export-command can ask the running system
// for its ledger. That route has no authentication: this is a test system.
func (s *System) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /admin/export", s.export)
	if s.options.Shape == ShapeV2 {
		s.routeV2(mux)
	} else {
		s.routeReference(mux)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := w.Header()
		header.Set("Cache-Control", "no-store")
		header.Set("X-Content-Type-Options", "nosniff")
		header.Set("X-Request-Id", "testsystem-"+strconv.FormatInt(s.requests.Add(1), 10))
		if s.options.Latency > 0 {
			// A network and a database away, as a deployed system is.
			time.Sleep(mathrand.N(s.options.Latency))
		}
		mux.ServeHTTP(w, r)
	})
}

// routeReference adds the routes of sut/openapi.yaml to mux.
func (s *System) routeReference(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/users", s.signup)
	mux.HandleFunc("POST /v1/sessions", s.signin)
	mux.HandleFunc("POST /v1/deposits", s.money(kindDeposit))
	mux.HandleFunc("POST /v1/withdrawals", s.money(kindWithdrawal))
	mux.HandleFunc("POST /v1/transfers", s.money(kindTransfer))
	mux.HandleFunc("GET /v1/transactions/{id}", s.getTransaction)
	mux.HandleFunc("GET /v1/accounts/{id}", s.getAccount)
	// Every other method and path, a listed path with another method
	// included, is 404 as in the reference, never 405.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{"not_found", "no route for " + r.Method + " " + strconv.QuoteToASCII(r.URL.Path)})
	})
}

// writeJSON answers status with value as JSON.
func writeJSON(w http.ResponseWriter, status int, value any) {
	body, err := json.Marshal(value, json.Deterministic(true))
	if err != nil {
		// Every value written is a struct or map of strings and integers.
		panic("testsystem: encoding an answer: " + err.Error())
	}
	writeBody(w, status, body)
}

// writeBody answers status with a JSON body already encoded.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do then
}

// writeError answers an error as {code, message, request_id}, with
// Retry-After on the answers a retry may change.
func writeError(w http.ResponseWriter, failure *apiError) {
	status, known := statusOfCode[failure.code]
	if !known {
		panic("testsystem: error code " + strconv.Quote(failure.code) + " has no status")
	}
	if status == http.StatusServiceUnavailable || failure.code == "idempotency_key_in_flight" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"code": failure.code, "message": failure.message,
		"request_id": w.Header().Get("X-Request-Id")})
}

// readJSON reads a request body into into, strictly: one JSON object of
// valid UTF-8 and nothing after it, no member name twice, only the
// documented members with their exact (case-sensitive) names and JSON types.
// The decoder is github.com/go-json-experiment/json, whose defaults refuse
// duplicate names and invalid UTF-8 and match names case-sensitively.
func readJSON(w http.ResponseWriter, r *http.Request, into any) *apiError {
	contentTypes := r.Header.Values("Content-Type")
	if len(contentTypes) != 1 {
		return &apiError{"unsupported_media_type", "send exactly one Content-Type: application/json header"}
	}
	mediaType, parameters, err := mime.ParseMediaType(contentTypes[0])
	charset, hasCharset := parameters["charset"]
	if err != nil || mediaType != "application/json" || len(parameters) > 1 ||
		(len(parameters) == 1 && (!hasCharset || !strings.EqualFold(charset, "utf-8"))) {
		return &apiError{"unsupported_media_type", "the body must be application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bodyMaximumBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{"body_too_large", "the body is larger than " + strconv.Itoa(bodyMaximumBytes) + " bytes"}
	case err != nil:
		return &apiError{"invalid_request", "the body could not be read"}
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return &apiError{"invalid_request", "the body must be one JSON object"}
	}
	if err := json.Unmarshal(body, into, json.RejectUnknownMembers(true)); err != nil {
		return &apiError{"invalid_request", "the body is not valid for this request (strict JSON, documented members only)"}
	}
	return nil
}

// credentials is the body of signup and sign-in.
type credentials struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`
}

// normalizeEmail trims and lower-cases an email and checks its shape: one @
// between a local part of at most 64 bytes and a domain, printable
// characters only, at most 254 bytes. It is far simpler than the reference's
// Unicode rules, which the load client never exercises.
func normalizeEmail(raw string) (string, bool) {
	email := strings.ToLower(strings.TrimSpace(raw))
	local, domain, found := strings.Cut(email, "@")
	if !found || local == "" || len(local) > 64 || domain == "" || strings.Contains(domain, "@") || len(email) > 254 {
		return "", false
	}
	for _, character := range email {
		if !unicode.IsPrint(character) || unicode.IsSpace(character) {
			return "", false
		}
	}
	return email, true
}

// passwordDigest hashes a password with its user's salt.
func passwordDigest(salt []byte, password string) []byte {
	digest := sha256.Sum256(append(append([]byte(nil), salt...), password...))
	return digest[:]
}

// signUp creates a user and its account, balance 0, from an email and a
// password (nil: left out of the request). It refuses with invalid_email,
// weak_password or email_taken.
func (s *System) signUp(rawEmail, password *string) (*user, *apiError) {
	email, valid := "", false
	if rawEmail != nil {
		email, valid = normalizeEmail(*rawEmail)
	}
	if !valid {
		return nil, &apiError{"invalid_email", "the email is missing or not an address"}
	}
	if password == nil || utf8.RuneCountInString(*password) < 8 || utf8.RuneCountInString(*password) > 256 {
		return nil, &apiError{"weak_password", "the password must have 8 to 256 characters"}
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24+)
	digest := passwordDigest(salt, *password)

	s.mutex.Lock()
	defer s.mutex.Unlock()
	if s.usersByEmail[email] != nil {
		return nil, &apiError{"email_taken", "a user with this email exists"}
	}
	a := &account{id: int64(len(s.accounts)), userID: int64(len(s.users)) + 1}
	u := &user{id: a.userID, accountID: a.id, email: email, passwordSalt: salt, passwordDigest: digest}
	s.accounts = append(s.accounts, a)
	s.users[u.id] = u
	s.usersByEmail[email] = u
	return u, nil
}

// signup serves POST /v1/users: a user and its account, balance 0.
func (s *System) signup(w http.ResponseWriter, r *http.Request) {
	var body credentials
	if failure := readJSON(w, r, &body); failure != nil {
		writeError(w, failure)
		return
	}
	u, failure := s.signUp(body.Email, body.Password)
	if failure != nil {
		writeError(w, failure)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user_id": u.id, "account_id": u.accountID, "email": u.email})
}

// signIn opens a session for the right email and password (nil: left out
// of the request) and returns its token, its user and its expiry. An
// unknown email and a wrong password are refused alike, with
// invalid_credentials.
func (s *System) signIn(rawEmail, password *string) (token string, u *user, expires time.Time, failure *apiError) {
	wrong := &apiError{"invalid_credentials", "the email or the password is wrong"}
	if rawEmail == nil || password == nil {
		return "", nil, time.Time{}, wrong
	}
	email, _ := normalizeEmail(*rawEmail)
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	token = base64.RawURLEncoding.EncodeToString(random)

	s.mutex.Lock()
	defer s.mutex.Unlock()
	u = s.usersByEmail[email]
	if u == nil || subtle.ConstantTimeCompare(passwordDigest(u.passwordSalt, *password), u.passwordDigest) != 1 {
		return "", nil, time.Time{}, wrong
	}
	expires = s.now().Add(sessionLifetime).UTC().Truncate(time.Second)
	s.sessions[token] = session{userID: u.id, expires: expires}
	return token, u, expires, nil
}

// signin serves POST /v1/sessions: a bearer token for the right password.
func (s *System) signin(w http.ResponseWriter, r *http.Request) {
	var body credentials
	if failure := readJSON(w, r, &body); failure != nil {
		writeError(w, failure)
		return
	}
	token, u, expires, failure := s.signIn(body.Email, body.Password)
	if failure != nil {
		writeError(w, failure)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "user_id": u.id, "account_id": u.accountID,
		"expires_at": expires.Format(time.RFC3339)})
}

// userOfToken returns the user of a session token that has not expired, or
// nil.
func (s *System) userOfToken(token string) *user {
	s.mutex.Lock()
	current, known := s.sessions[token]
	u := s.users[current.userID]
	s.mutex.Unlock()
	if !known || !s.now().Before(current.expires) {
		return nil
	}
	return u
}

// authenticate returns the user of the request's bearer token, or nil after
// answering 401.
func (s *System) authenticate(w http.ResponseWriter, r *http.Request) *user {
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	u := s.userOfToken(token)
	if !found || u == nil {
		writeError(w, &apiError{"unauthenticated", "sign in and send Authorization: Bearer <token>"})
		return nil
	}
	return u
}

// idempotencyKeyOf returns a request's idempotency key from the values of
// its header (Idempotency-Key in the reference shape): exactly one header
// of 1 to 255 printable ASCII bytes, no space.
func idempotencyKeyOf(values []string) (string, bool) {
	if len(values) != 1 || len(values[0]) == 0 || len(values[0]) > 255 {
		return "", false
	}
	for i := 0; i < len(values[0]); i++ {
		if values[0][i] < 0x21 || values[0][i] > 0x7e {
			return "", false
		}
	}
	return values[0], true
}

// accountRequest is the body of a deposit or a withdrawal.
type accountRequest struct {
	AccountID *int64         `json:"account_id"`
	Amount    jsontext.Value `json:"amount"`
}

// transferRequest is the body of a transfer.
type transferRequest struct {
	FromAccountID *int64         `json:"from_account_id"`
	ToAccountID   *int64         `json:"to_account_id"`
	Amount        jsontext.Value `json:"amount"`
}

// parseAmount reads an amount: a JSON integer literal from 1 to
// amountMaximumMinor. Fractions, exponents, -0, strings, null and every
// other JSON type are refused.
func parseAmount(raw jsontext.Value) (int64, bool) {
	amount, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	return amount, err == nil && amount >= 1 && amount <= amountMaximumMinor
}

// commandDraft is a money request as its API shape read it, before the
// checks every shape makes (commandDraft.check).
type commandDraft struct {
	kind string
	// account is the caller's side of the request, the credited account of
	// a deposit and the debited one otherwise; nil when the request names
	// none.
	account *int64
	// destination is a transfer's credited account (0 otherwise).
	destination int64
	// amountMinor is the amount in minor units, if amountValid.
	amountMinor int64
	amountValid bool
	// amountRule is the message of the invalid_amount refusal: the shape's
	// rule for amounts.
	amountRule string
}

// check turns a draft into the command it asks for, checking what needs no
// ledger, in this order: that it names the caller's side (invalid_request),
// the amount (invalid_amount), that the debited account (the credited one
// for a deposit) is the caller's (forbidden), and that a transfer names two
// accounts (same_account).
func (d commandDraft) check(caller *user) (command, *apiError) {
	c := command{kind: d.kind, destination: d.destination}
	if d.account == nil || *d.account < 1 {
		return c, &apiError{"invalid_request", "the account id must be a positive integer"}
	}
	switch d.kind {
	case kindDeposit:
		c.source, c.destination = externalAccountID, *d.account
	case kindWithdrawal:
		c.source, c.destination = *d.account, externalAccountID
	default:
		c.source = *d.account
	}
	if !d.amountValid {
		return c, &apiError{"invalid_amount", d.amountRule}
	}
	c.amountMinor = d.amountMinor
	if *d.account != caller.accountID {
		return c, &apiError{"forbidden", "the account is not yours"}
	}
	if c.source == c.destination {
		return c, &apiError{"same_account", "a transfer needs two different accounts"}
	}
	return c, nil
}

// readCommand reads a money request's body into the command it asks for,
// checking what needs no ledger: the shape, the amount, that the debited
// account (the credited one for a deposit) is the caller's, and that a
// transfer names two accounts.
func readCommand(w http.ResponseWriter, r *http.Request, kind string, caller *user) (command, *apiError) {
	draft := commandDraft{kind: kind,
		amountRule: "the amount must be an integer from 1 to " + strconv.FormatInt(amountMaximumMinor, 10)}
	var amount jsontext.Value
	switch kind {
	case kindTransfer:
		var body transferRequest
		if failure := readJSON(w, r, &body); failure != nil {
			return command{kind: kind}, failure
		}
		if body.FromAccountID == nil || body.ToAccountID == nil || *body.ToAccountID < 1 {
			return command{kind: kind}, &apiError{"invalid_request", "from_account_id and to_account_id must be positive integers"}
		}
		draft.account, amount, draft.destination = body.FromAccountID, body.Amount, *body.ToAccountID
	default:
		var body accountRequest
		if failure := readJSON(w, r, &body); failure != nil {
			return command{kind: kind}, failure
		}
		draft.account, amount = body.AccountID, body.Amount
	}
	draft.amountMinor, draft.amountValid = parseAmount(amount)
	return draft.check(caller)
}

// money serves the three money routes. The caller, the key and the body are
// checked first; then submit replays the key's first answer, refuses the
// request, or creates its transaction and either applies it (200 with the
// outcome) or queues it for the applier (202, status accepted).
func (s *System) money(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller := s.authenticate(w, r)
		if caller == nil {
			return
		}
		key, valid := idempotencyKeyOf(r.Header.Values("Idempotency-Key"))
		if !valid {
			writeError(w, &apiError{"idempotency_key_missing", "send one Idempotency-Key header of 1 to 255 printable ASCII characters"})
			return
		}
		c, failure := readCommand(w, r, kind, caller)
		if failure != nil {
			writeError(w, failure)
			return
		}
		status, answer, replayed, failure := s.submit(caller.id, key, c)
		if failure != nil {
			writeError(w, failure)
			return
		}
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		writeBody(w, status, renderTransaction(answer))
	}
}

// submit runs the idempotency contract and the command, under the mutex.
// It returns the answer's HTTP status (200 decided, 202 accepted), the
// transaction as it stood when first answered, and whether the answer is a
// replay of a stored one. Only successful answers are stored: a refusal
// lets a retry with the same key be processed afresh. Every API shape
// submits its money requests here and encodes the answer its own way.
func (s *System) submit(userID int64, key string, c command) (status int, answer transaction, replayed bool, failure *apiError) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	if s.closed {
		return 0, answer, false, &apiError{"unavailable", "the system is shutting down"}
	}
	scoped := idempotencyKey{userID: userID, key: key}
	copyNumber := int64(0)
	if s.options.Bug == BugDoubleApply {
		// The bug: the key is never looked up, every request is new.
		copyNumber = int64(len(s.transactions)) + 1
	} else if record := s.keys[scoped]; record != nil {
		switch {
		case record.command != c:
			return 0, answer, false, &apiError{"idempotency_key_reused", "this idempotency key was used for another request"}
		case record.answer == nil:
			return 0, answer, false, &apiError{"idempotency_key_in_flight", "a request with this idempotency key is still being applied"}
		}
		return record.status, *record.answer, true, nil
	}
	if s.options.ApplyDelay > 0 && s.pending >= pendingMaximum {
		return 0, answer, false, &apiError{"unavailable", "too many commands are waiting to be applied; retry later"}
	}
	t := &transaction{id: transactionID(userID, key, copyNumber), userID: userID, idempotencyKey: key, command: c, status: statusAccepted}
	if s.transactions[t.id] != nil {
		panic("testsystem: transaction id " + t.id + " derived twice")
	}
	s.transactions[t.id] = t
	var record *idempotencyRecord
	if s.options.Bug != BugDoubleApply {
		record = &idempotencyRecord{command: c}
		s.keys[scoped] = record
	}
	status = http.StatusOK
	if s.options.ApplyDelay > 0 {
		// The queue holds at most pending commands, fewer than its capacity:
		// this send never blocks.
		s.queue <- delayedCommand{transaction: t, due: s.now().Add(s.options.ApplyDelay)}
		s.pending++
		status = http.StatusAccepted
	} else {
		s.apply(t)
	}
	first := *t
	if record != nil {
		record.status, record.answer = status, &first
	}
	return status, first, false, nil
}

// transactionBody is the transaction resource of the API.
type transactionBody struct {
	TransactionID        string `json:"transaction_id"`
	Kind                 string `json:"kind"`
	Status               string `json:"status"`
	Amount               int64  `json:"amount"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	Reason               string `json:"reason,omitempty"`
}

// renderTransaction encodes a transaction as the API answers it: t is a
// copy taken under the mutex (submit's answer, or transactionOf's).
func renderTransaction(t transaction) []byte {
	body, err := json.Marshal(transactionBody{TransactionID: t.id, Kind: t.command.kind, Status: t.status,
		Amount: t.command.amountMinor, SourceAccountID: t.command.source, DestinationAccountID: t.command.destination,
		Reason: t.reason})
	if err != nil {
		panic("testsystem: encoding a transaction: " + err.Error())
	}
	return body
}

// transactionOf returns a copy of the caller's transaction with this id in
// its current status; another user's and an unknown id are not_found alike.
func (s *System) transactionOf(caller *user, id string) (transaction, *apiError) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	t := s.transactions[id]
	if t == nil || t.userID != caller.id {
		return transaction{}, &apiError{"not_found", "no such transaction"}
	}
	return *t, nil
}

// getTransaction serves GET /v1/transactions/{id}: the caller's transaction
// in its current status; another user's and an unknown id are 404 alike.
func (s *System) getTransaction(w http.ResponseWriter, r *http.Request) {
	caller := s.authenticate(w, r)
	if caller == nil {
		return
	}
	t, failure := s.transactionOf(caller, r.PathValue("id"))
	if failure != nil {
		writeError(w, failure)
		return
	}
	writeBody(w, http.StatusOK, renderTransaction(t))
}

// accountIDOf reads an account id of a path: a positive integer, or
// invalid_request.
func accountIDOf(raw string) (int64, *apiError) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		return 0, &apiError{"invalid_request", "the account id must be a positive integer"}
	}
	return id, nil
}

// balanceOf returns the balance of the caller's own account; any other
// account is account_not_found, whether it exists or not.
func (s *System) balanceOf(caller *user, id int64) (int64, *apiError) {
	if id != caller.accountID {
		return 0, &apiError{"account_not_found", "you have no account with this id"}
	}
	s.mutex.Lock()
	defer s.mutex.Unlock()
	return s.account(id).balance, nil
}

// getAccount serves GET /v1/accounts/{id}: the caller's own account and its
// balance; any other account is 404, whether it exists or not.
func (s *System) getAccount(w http.ResponseWriter, r *http.Request) {
	caller := s.authenticate(w, r)
	if caller == nil {
		return
	}
	id, failure := accountIDOf(r.PathValue("id"))
	if failure != nil {
		writeError(w, failure)
		return
	}
	balance, failure := s.balanceOf(caller, id)
	if failure != nil {
		writeError(w, failure)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"account_id": id, "user_id": caller.id, "balance": balance})
}

// export serves POST /admin/export?dir=ABSOLUTE_DIR.
func (s *System) export(w http.ResponseWriter, r *http.Request) {
	dir := r.URL.Query().Get("dir")
	if !filepath.IsAbs(dir) {
		writeError(w, &apiError{"invalid_request", "give the export directory as ?dir=ABSOLUTE_PATH"})
		return
	}
	if err := s.WriteExport(dir); err != nil {
		writeError(w, &apiError{"internal", err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
