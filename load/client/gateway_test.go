package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/history"
)

// Routes of the reference API, as the fake gateway's ServeMux patterns and the client's metric labels.
const (
	routeSignup      = "POST /v1/users"
	routeSignin      = "POST /v1/sessions"
	routeDeposit     = "POST /v1/deposits"
	routeWithdrawal  = "POST /v1/withdrawals"
	routeTransfer    = "POST /v1/transfers"
	routeAccount     = "GET /v1/accounts/{id}"
	routeTransaction = "GET /v1/transactions/{id}"
)

// fakeAnswer is one answer of the fake gateway. The zero answer means "answer as the API would".
type fakeAnswer struct {
	status int
	body   string
	// hang sends no answer: the handler waits until the client gives up (a timeout).
	hang bool
	// drop processes the request as the API would, then closes the connection without answering (a lost answer).
	drop bool
	// truncate sends the status and part of the body, then closes the connection (an unreadable answer).
	truncate bool
	// retryAfter is the Retry-After header to send, if any.
	retryAfter string
}

func answer(status int, body string) fakeAnswer { return fakeAnswer{status: status, body: body} }

// Answers the tests script often.
var (
	answerUnavailable = answer(http.StatusServiceUnavailable, `{"code":"unavailable","message":"try again"}`)
	answerInFlight    = answer(http.StatusConflict, `{"code":"idempotency_key_in_flight","message":"in flight"}`)
)

// transactionBody is the API's answer about a transaction.
func transactionBody(id, status, reason string) string {
	body, err := json.Marshal(Transaction{ID: id, Kind: "deposit", Status: status, Amount: 1, DestinationAccountID: 11, Reason: reason})
	if err != nil {
		panic(err)
	}
	return string(body)
}

// gatewayCall is one request as the fake gateway's script sees it.
type gatewayCall struct {
	Route string
	// Key is the Idempotency-Key of a money request, the {id} of a read, the email of a signup or signin.
	Key  string
	Body string
	// Attempt counts the requests of this route and key, this one included (1-based).
	Attempt int
}

// recordedRequest is a request the fake gateway received.
type recordedRequest struct {
	Route, Path, Key, Body                                     string
	IdempotencyKey, Authorization, ContentType, Prefer, Accept string
	// AnswersBefore counts the answers already given to requests of this route and key when this one arrived.
	AnswersBefore int
}

// fakeGateway stands in for the reference API (sut/openapi.yaml): users, sessions, the money routes with the
// idempotency contract (same key and body: the same answer; same key, other body: 422 idempotency_key_reused),
// and reads. A script, set before the server starts, can replace any answer.
type fakeGateway struct {
	t *testing.T
	// script returns the answer to a request; the zero answer lets the gateway answer as the API would. It is
	// called without the gateway's lock held, so it may block.
	script func(gatewayCall) fakeAnswer
	// release is closed at cleanup, to free handlers that hang.
	release chan struct{}

	mutex    sync.Mutex
	requests []recordedRequest
	attempts map[string]int
	answered map[string]int
	bodies   map[string]string // first body per idempotency key
	users    map[string]int64  // email → user id
}

// newFakeGateway starts a fake gateway; configure runs before it serves (set its script, sign users up).
func newFakeGateway(t *testing.T, configure func(*fakeGateway)) (*fakeGateway, *httptest.Server) {
	t.Helper()
	g := &fakeGateway{
		t: t, release: make(chan struct{}),
		attempts: map[string]int{}, answered: map[string]int{}, bodies: map[string]string{}, users: map[string]int64{},
	}
	if configure != nil {
		configure(g)
	}
	mux := http.NewServeMux()
	for _, route := range []string{routeSignup, routeSignin, routeDeposit, routeWithdrawal, routeTransfer, routeAccount, routeTransaction} {
		mux.HandleFunc(route, g.handle)
	}
	server := httptest.NewServer(mux)
	// Cleanups run last in, first out: the hanging handlers are released before Close waits for them.
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(g.release) })
	return g, server
}

// signUp registers a user as if it had signed up; ids are 1, 2, ... and accounts 1001, 1002, ...
func (g *fakeGateway) signUp(email string) {
	g.mutex.Lock()
	defer g.mutex.Unlock()
	g.users[email] = int64(len(g.users) + 1)
}

func (g *fakeGateway) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		g.t.Errorf("fake gateway: reading the request: %v", err)
		return
	}
	call := gatewayCall{Route: r.Pattern, Body: string(body)}
	switch r.Pattern {
	case routeSignup, routeSignin:
		var credentials struct{ Email string }
		_ = json.Unmarshal(body, &credentials)
		call.Key = credentials.Email
	case routeAccount, routeTransaction:
		call.Key = r.PathValue("id")
	default:
		call.Key = r.Header.Get("Idempotency-Key")
	}
	counter := call.Route + " " + call.Key
	g.mutex.Lock()
	g.attempts[counter]++
	call.Attempt = g.attempts[counter]
	g.requests = append(g.requests, recordedRequest{
		Route: call.Route, Path: r.URL.EscapedPath(), Key: call.Key, Body: call.Body,
		IdempotencyKey: r.Header.Get("Idempotency-Key"), Authorization: r.Header.Get("Authorization"),
		ContentType: r.Header.Get("Content-Type"), Prefer: r.Header.Get("Prefer"), Accept: r.Header.Get("Accept"),
		AnswersBefore: g.answered[counter],
	})
	script := g.script
	g.mutex.Unlock()

	var a fakeAnswer
	if script != nil {
		a = script(call)
	}
	if a.status == 0 && !a.hang {
		natural := g.natural(call)
		natural.drop, natural.truncate = a.drop, a.truncate
		a = natural
	}
	if !a.hang && !a.drop {
		// Counted before the answer is written, so before the client can have it.
		g.mutex.Lock()
		g.answered[counter]++
		g.mutex.Unlock()
	}
	g.write(w, r, a)
}

// natural is the API's answer to call.
func (g *fakeGateway) natural(call gatewayCall) fakeAnswer {
	g.mutex.Lock()
	defer g.mutex.Unlock()
	switch call.Route {
	case routeSignup:
		if _, taken := g.users[call.Key]; taken {
			return answer(http.StatusConflict, `{"code":"email_taken","message":"taken"}`)
		}
		id := int64(len(g.users) + 1)
		g.users[call.Key] = id
		return answer(http.StatusCreated, fmt.Sprintf(`{"user_id":%d,"account_id":%d,"email":%q}`, id, id+1000, call.Key))
	case routeSignin:
		id, found := g.users[call.Key]
		if !found {
			return answer(http.StatusUnauthorized, `{"code":"invalid_credentials","message":"no"}`)
		}
		return answer(http.StatusCreated, fmt.Sprintf(`{"token":"token-%d","user_id":%d,"account_id":%d,"expires_at":"2030-01-01T00:00:00Z"}`, id, id, id+1000))
	case routeDeposit, routeWithdrawal, routeTransfer:
		if first, seen := g.bodies[call.Key]; seen && first != call.Body {
			return answer(http.StatusUnprocessableEntity, `{"code":"idempotency_key_reused","message":"reused"}`)
		}
		g.bodies[call.Key] = call.Body
		return answer(http.StatusOK, transactionBody("tx-"+call.Key, StatusSettled, ""))
	case routeAccount:
		return answer(http.StatusOK, fmt.Sprintf(`{"account_id":%s,"user_id":1,"balance":4200}`, call.Key))
	case routeTransaction:
		if call.Key == "missing" {
			return answer(http.StatusNotFound, `{"code":"not_found","message":"no"}`)
		}
		return answer(http.StatusOK, transactionBody(call.Key, StatusSettled, ""))
	}
	g.t.Errorf("fake gateway: no answer for route %q", call.Route)
	return answer(http.StatusNotFound, `{"code":"not_found","message":"no route"}`)
}

func (g *fakeGateway) write(w http.ResponseWriter, r *http.Request, a fakeAnswer) {
	switch {
	case a.hang:
		select {
		case <-r.Context().Done(): // the client gave up and closed the connection
		case <-g.release:
		}
	case a.drop || a.truncate:
		connection, buffered, err := http.NewResponseController(w).Hijack()
		if err != nil {
			g.t.Errorf("fake gateway: hijack: %v", err)
			return
		}
		defer connection.Close()
		if a.truncate {
			// The announced length is longer than the body: the client reads the status, then an early end.
			fmt.Fprintf(buffered, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				a.status, http.StatusText(a.status), len(a.body)+100, a.body)
			if err := buffered.Flush(); err != nil {
				g.t.Errorf("fake gateway: writing a truncated answer: %v", err)
			}
		}
	default:
		w.Header().Set("Content-Type", "application/json")
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}
}

// requestsOf returns the requests received on route, in arrival order.
func (g *fakeGateway) requestsOf(route string) []recordedRequest {
	g.mutex.Lock()
	defer g.mutex.Unlock()
	var found []recordedRequest
	for _, r := range g.requests {
		if r.Route == route {
			found = append(found, r)
		}
	}
	return found
}

// allRequests returns every request received, in arrival order.
func (g *fakeGateway) allRequests() []recordedRequest {
	g.mutex.Lock()
	defer g.mutex.Unlock()
	return append([]recordedRequest(nil), g.requests...)
}

// refusedURL returns the base URL of a port nobody listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + address
}

// testEngine is the engine newTestClient gives a client whose options name
// none ("": the default); TestMain sets it to rerun the client's tests on the
// fast engine.
var testEngine = ""

// newTestClient returns a client with the fast settings of the tests (1-2 ms backoffs, 1 ms poll interval and
// duplicate delay) where options leaves them zero, on testEngine where options names no engine.
func newTestClient(t *testing.T, options Options) *HTTP {
	t.Helper()
	if options.Engine == "" {
		options.Engine = testEngine
	}
	if options.RetryBackoff == 0 {
		options.RetryBackoff = time.Millisecond
	}
	if options.RetryMaxBackoff == 0 {
		options.RetryMaxBackoff = 2 * time.Millisecond
	}
	if options.PollInterval == 0 {
		options.PollInterval = time.Millisecond
	}
	if options.DuplicateDelay == 0 {
		options.DuplicateDelay = time.Millisecond
	}
	if options.Timeout == 0 {
		options.Timeout = 5 * time.Second
	}
	c, err := NewHTTP(options)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// testSession is the signed-in user of the money tests: user 7, account 11.
func testSession() Session {
	return Session{Token: "token-7", UserID: 7, AccountID: 11, Email: "ann@example.test"}
}

// newJournal opens a journal in a temporary directory; it is closed at cleanup if the test did not read it.
func newJournal(t *testing.T) *history.Journal {
	t.Helper()
	journal, err := history.OpenJournal(filepath.Join(t.TempDir(), "journal.jsonl"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = journal.Close() })
	return journal
}

// readJournal closes the journal and returns its lines, decoded and raw. An unknown field is an error: the
// lines must be in the format of load/JOURNAL.md.
func readJournal(t *testing.T, journal *history.Journal) ([]history.Entry, []string) {
	t.Helper()
	if err := journal.Close(); err != nil {
		t.Fatalf("closing the journal: %v", err)
	}
	file, err := os.Open(journal.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var entries []history.Entry
	var raw []string
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		decoder := json.NewDecoder(bytes.NewReader(scanner.Bytes()))
		decoder.DisallowUnknownFields()
		var entry history.Entry
		if err := decoder.Decode(&entry); err != nil {
			t.Fatalf("journal line %q: %v", scanner.Text(), err)
		}
		entries = append(entries, entry)
		raw = append(raw, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return entries, raw
}

// observation is one exchange an Observer received.
type observation struct {
	Route  string
	Status int
	Failed bool
}

func (o observation) String() string {
	return o.Route + " " + strconv.Itoa(o.Status) + " failed=" + strconv.FormatBool(o.Failed)
}

// recordingObserver records the exchanges; onExchange, when set, is called after each.
type recordingObserver struct {
	onExchange func(observation)

	mutex        sync.Mutex
	observations []observation
	malformed    []string
}

func (o *recordingObserver) HTTP(route string, status int, duration time.Duration, failed bool, at time.Time) {
	seen := observation{Route: route, Status: status, Failed: failed}
	o.mutex.Lock()
	o.observations = append(o.observations, seen)
	if duration < 0 || at.IsZero() {
		o.malformed = append(o.malformed, fmt.Sprintf("%v: duration %s at %s", seen, duration, at))
	}
	o.mutex.Unlock()
	if o.onExchange != nil {
		o.onExchange(seen)
	}
}

func (o *recordingObserver) seen() ([]observation, []string) {
	o.mutex.Lock()
	defer o.mutex.Unlock()
	return append([]observation(nil), o.observations...), append([]string(nil), o.malformed...)
}
