package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// endpointReadyPrefix starts the line the endpoint process prints once it listens; the benchmark waits for it.
const endpointReadyPrefix = "bench-load endpoint: listening on "

// maxRequestBytes bounds a request body the endpoint reads: the API's requests are under a hundred bytes.
const maxRequestBytes = 4 << 10

// maxRememberedUsers bounds the endpoint's map of emails to ids (a benchmark signs up a few hundred users per
// round); past it a sign-in gets a fresh id, which the load does not notice.
const maxRememberedUsers = 100_000

// Endpoint is the trivial system the benchmark loads: it answers the reference API's routes (sut/openapi.yaml)
// at once and minimally, so that what the benchmark measures is the client side. Sign-up answers 201 with new
// ids; sign-in 201 with the token "t" and the user's ids; every deposit, withdrawal and transfer 200 settled
// (the client classifies it ok, so nothing is polled); a transaction's status settled; a balance 0. It never
// refuses, checks nothing and keeps no ledger. Safe for concurrent use.
type Endpoint struct {
	lastID          atomic.Int64
	lastTransaction atomic.Uint64

	usersMutex sync.Mutex
	users      map[string]int64
}

// NewEndpoint returns the trivial endpoint's handler.
func NewEndpoint() *Endpoint {
	return &Endpoint{users: map[string]int64{}}
}

// Handler routes the API's requests.
func (e *Endpoint) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", e.signup)
	mux.HandleFunc("POST /v1/sessions", e.signin)
	mux.HandleFunc("POST /v1/deposits", e.money("deposit"))
	mux.HandleFunc("POST /v1/withdrawals", e.money("withdrawal"))
	mux.HandleFunc("POST /v1/transfers", e.money("transfer"))
	mux.HandleFunc("GET /v1/transactions/{id}", e.transaction)
	mux.HandleFunc("GET /v1/accounts/{id}", e.account)
	return mux
}

// readBody reads a request body, bounded; the connection is only reused once the body was read.
func readBody(r *http.Request) []byte {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes))
	return body
}

func answerJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (e *Endpoint) signup(w http.ResponseWriter, r *http.Request) {
	email := jsonStringField(readBody(r), "email")
	id := e.lastID.Add(1)
	e.usersMutex.Lock()
	if len(e.users) < maxRememberedUsers {
		e.users[email] = id
	}
	e.usersMutex.Unlock()
	answerJSON(w, http.StatusCreated, idsBody(nil, id))
}

func (e *Endpoint) signin(w http.ResponseWriter, r *http.Request) {
	email := jsonStringField(readBody(r), "email")
	e.usersMutex.Lock()
	id, known := e.users[email]
	e.usersMutex.Unlock()
	if !known {
		id = e.lastID.Add(1)
	}
	answerJSON(w, http.StatusCreated, idsBody([]byte(`{"token":"t",`), id))
}

// idsBody appends `"user_id":id,"account_id":id}` to prefix (or starts the object).
func idsBody(prefix []byte, id int64) []byte {
	body := append(make([]byte, 0, 64), prefix...)
	if len(body) == 0 {
		body = append(body, '{')
	}
	body = append(body, `"user_id":`...)
	body = strconv.AppendInt(body, id, 10)
	body = append(body, `,"account_id":`...)
	body = strconv.AppendInt(body, id, 10)
	return append(body, '}')
}

// money answers a money operation of kind: 200 settled, with a new transaction id and the request's amount.
func (e *Endpoint) money(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		amount := jsonNumberField(readBody(r), "amount")
		answerJSON(w, http.StatusOK, settledBody(e.lastTransaction.Add(1), kind, amount))
	}
}

func (e *Endpoint) transaction(w http.ResponseWriter, r *http.Request) {
	body := []byte(`{"transaction_id":`)
	body = strconv.AppendQuote(body, r.PathValue("id"))
	body = append(body, `,"kind":"transfer","status":"settled","amount":1}`...)
	answerJSON(w, http.StatusOK, body)
}

func (e *Endpoint) account(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	body := []byte(`{"account_id":`)
	body = strconv.AppendInt(body, id, 10)
	answerJSON(w, http.StatusOK, append(body, `,"balance":0}`...))
}

// settledBody is the answer to a money operation: a UUID-shaped id made of the transaction's number.
func settledBody(number uint64, kind string, amount []byte) []byte {
	body := make([]byte, 0, 128)
	body = append(body, `{"transaction_id":"00000000-0000-4000-8000-`...)
	digits := strconv.AppendUint(make([]byte, 0, 20), number, 16)
	for range max(0, 12-len(digits)) {
		body = append(body, '0')
	}
	body = append(body, digits...)
	body = append(body, `","kind":"`...)
	body = append(body, kind...)
	body = append(body, `","status":"settled","amount":`...)
	if len(amount) == 0 {
		amount = []byte{'0'}
	}
	body = append(body, amount...)
	return append(body, '}')
}

// jsonNumberField returns the digits of a top-level number field of a small, well-formed JSON object (the
// client's own bodies), or nil. The endpoint is trivial on purpose: no decoding.
func jsonNumberField(body []byte, name string) []byte {
	at := bytes.Index(body, []byte(`"`+name+`":`))
	if at < 0 {
		return nil
	}
	rest := body[at+len(name)+3:]
	end := 0
	for end < len(rest) && (rest[end] == '-' || (rest[end] >= '0' && rest[end] <= '9')) {
		end++
	}
	return rest[:end]
}

// jsonStringField returns a top-level string field of a small JSON object without escapes (the client's
// sign-up and sign-in bodies), or "".
func jsonStringField(body []byte, name string) string {
	text := string(body)
	at := strings.Index(text, `"`+name+`":"`)
	if at < 0 {
		return ""
	}
	rest := text[at+len(name)+4:]
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return rest[:end]
}

// Serve runs the endpoint on address (host:port; the benchmark gives 127.0.0.1) until ctx ends, then shuts
// down within a bound. It prints its ready line to out once it listens.
func Serve(ctx context.Context, address string, out io.Writer) error {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("endpoint: listen on %s: %w", address, err)
	}
	server := &http.Server{Handler: NewEndpoint().Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	failed := make(chan error, 1)
	go func() { failed <- server.Serve(listener) }()
	fmt.Fprintf(out, "%s%s\n", endpointReadyPrefix, listener.Addr())
	select {
	case err := <-failed:
		return fmt.Errorf("endpoint: %w", err)
	case <-ctx.Done():
	}
	shutdownContext, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownContext); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("endpoint: shutdown: %w", err)
	}
	return nil
}
