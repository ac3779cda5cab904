package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// TestRequestGuards: the guards every request passes before its handler,
// through the public handler with stand-ins: the media type of a body, no
// Transfer-Encoding, the headers of every answer, and 5xx answers that
// tell nothing of what failed inside.
func TestRequestGuards(t *testing.T) {
	g := newRoutingGateway(t)
	handler := g.Handler()
	const credentials = `{"email":"alice@example.com","password":"a long passphrase"}`
	cases := []struct {
		name         string
		method, path string
		contentTypes []string
		chunked      bool
		wantStatus   int
		wantCode     ledger.Code
	}{
		{"no Content-Type", "POST", "/v1/users", nil, false, 415, ledger.CodeUnsupportedMediaType},
		{"text/plain", "POST", "/v1/users", []string{"text/plain"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"form", "POST", "/v1/sessions", []string{"application/x-www-form-urlencoded"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"another charset", "POST", "/v1/users", []string{"application/json; charset=latin1"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"another parameter", "POST", "/v1/users", []string{"application/json; version=2"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"two Content-Type headers", "POST", "/v1/users", []string{"application/json", "application/json"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"JSON look-alike type", "POST", "/v1/deposits", []string{"application/jsonx"}, false, 415, ledger.CodeUnsupportedMediaType},
		{"chunked body", "POST", "/v1/users", []string{"application/json"}, true, 400, ledger.CodeInvalidRequest},
		{"chunked GET", "GET", "/v1/accounts/1", nil, true, 400, ledger.CodeInvalidRequest},
		// Accepted media types reach the handler: the stand-in store fails,
		// which is a 500 whose message names nothing of the failure.
		{"application/json", "POST", "/v1/users", []string{"application/json"}, false, 500, ledger.CodeInternal},
		{"charset UTF-8, any case", "POST", "/v1/users", []string{"Application/JSON; Charset=UTF-8"}, false, 500, ledger.CodeInternal},
		{"unknown route", "GET", "/v1/nothing", nil, false, 404, ledger.CodeNotFound},
		{"readiness on the public listener", "GET", "/readyz", nil, false, 404, ledger.CodeNotFound},
		{"metrics on the public listener", "GET", "/metrics", nil, false, 404, ledger.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			request := httptest.NewRequest(c.method, c.path, strings.NewReader(credentials))
			for _, contentType := range c.contentTypes {
				request.Header.Add("Content-Type", contentType)
			}
			if c.chunked {
				request.TransferEncoding = []string{"chunked"}
			}
			recorder := httptest.NewRecorder()
			handler.ServeHTTP(recorder, request)
			checkErrorAnswer(t, recorder, c.wantStatus, c.wantCode)
			if c.chunked && recorder.Header().Get("Connection") != "close" {
				t.Error("a refused chunked request leaves its connection open")
			}
			if strings.Contains(recorder.Body.String(), errStandIn.Error()) {
				t.Errorf("the answer tells what failed inside: %s", recorder.Body)
			}
		})
	}

	// The internal listener's answers carry the headers too.
	recorder := httptest.NewRecorder()
	g.InternalHandler().ServeHTTP(recorder, httptest.NewRequest("GET", "/readyz", nil))
	if recorder.Code != http.StatusOK || recorder.Header().Get("Cache-Control") != "no-store" || recorder.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("internal /readyz: %d %v", recorder.Code, recorder.Header())
	}
}

// TestClientAddress: the client is the peer, unless the peer is a trusted
// proxy: then the last X-Forwarded-For entry that is not one; an IPv6
// client counts by its /64; a request id is kept only from a trusted proxy.
func TestClientAddress(t *testing.T) {
	g, err := New(Config{PasswordHashing: routingTestHashing, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Dependencies{Store: routingStore{}, Cache: routingCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer     string
		forwarded      []string
		requestID      string
		wantKey        string
		wantRequestID  bool
		wantClientAddr string
	}{
		{"direct client", "192.0.2.7:5000", nil, "", "192.0.2.7", false, "192.0.2.7"},
		{"direct client lying in X-Forwarded-For", "192.0.2.7:5000", []string{"198.51.100.1"}, "mine", "192.0.2.7", false, "192.0.2.7"},
		{"through the proxy", "10.1.2.3:5000", []string{"198.51.100.1"}, "proxy-id-1", "198.51.100.1", true, "198.51.100.1"},
		{"client-written entries before the proxy's", "10.1.2.3:5000", []string{"203.0.113.9, 198.51.100.1"}, "", "198.51.100.1", false, "198.51.100.1"},
		{"two trusted proxies", "10.1.2.3:5000", []string{"198.51.100.1", "10.9.9.9"}, "", "198.51.100.1", false, "198.51.100.1"},
		{"proxy without the header", "10.1.2.3:5000", nil, "", "10.1.2.3", false, "10.1.2.3"},
		{"garbage forwarded", "10.1.2.3:5000", []string{"not an address"}, "", "10.1.2.3", false, "10.1.2.3"},
		{"IPv6 by its /64", "[2001:db8:1:2:3:4:5:6]:5000", nil, "", "2001:db8:1:2::/64", false, "2001:db8:1:2:3:4:5:6"},
		{"IPv4-mapped IPv6", "[::ffff:192.0.2.7]:5000", nil, "", "192.0.2.7", false, "192.0.2.7"},
		{"invalid proxy request id", "10.1.2.3:5000", nil, "bad id with spaces", "10.1.2.3", false, "10.1.2.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var seen *requestState
			handler := g.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = stateOf(r) }))
			request := httptest.NewRequest("GET", "/", nil)
			request.RemoteAddr = c.peer
			for _, value := range c.forwarded {
				request.Header.Add("X-Forwarded-For", value)
			}
			if c.requestID != "" {
				request.Header.Set("X-Request-Id", c.requestID)
			}
			recorder := httptest.NewRecorder()
			handler.ServeHTTP(recorder, request)
			if seen.clientKey != c.wantKey || seen.client.String() != c.wantClientAddr {
				t.Errorf("client %s key %q, want %s %q", seen.client, seen.clientKey, c.wantClientAddr, c.wantKey)
			}
			if kept := seen.requestID == c.requestID; kept != c.wantRequestID || seen.requestID == "" {
				t.Errorf("request id %q (sent %q), kept %v want %v", seen.requestID, c.requestID, kept, c.wantRequestID)
			}
			if recorder.Header().Get("X-Request-Id") != seen.requestID {
				t.Errorf("X-Request-Id %q, the request's id %q", recorder.Header().Get("X-Request-Id"), seen.requestID)
			}
		})
	}
}

// TestKeyedLimiter: a key's burst passes, then it waits; other keys are
// not affected; an off limit passes all; a full map drops the quiet keys.
func TestKeyedLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	limiter := newKeyedLimiter[string](RateLimit{PerSecond: 0.5, Burst: 3})
	for i := range 3 {
		if allowed, _ := limiter.allow("a", now); !allowed {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	allowed, wait := limiter.allow("a", now)
	if allowed || wait != 2*time.Second {
		t.Fatalf("past the burst: %v, retry after %s; want refused for 2s", allowed, wait)
	}
	if retryAfterSeconds(wait) != "2" || retryAfterSeconds(time.Millisecond) != "1" || retryAfterSeconds(1500*time.Millisecond) != "2" {
		t.Error("Retry-After is not whole seconds rounded up, at least 1")
	}
	if allowed, _ := limiter.allow("b", now); !allowed {
		t.Fatal("another key was limited")
	}
	if allowed, _ := limiter.allow("a", now.Add(2*time.Second)); !allowed {
		t.Fatal("a refill was refused")
	}
	off := newKeyedLimiter[string](RateLimit{PerSecond: -1})
	for range 100 {
		if allowed, _ := off.allow("a", now); !allowed {
			t.Fatal("a limit turned off refused")
		}
	}
	for i := range keyedLimitersMaximum + 10 {
		limiter.allow(strings.Repeat("k", 1+i%7)+string(rune(i)), now)
	}
	if len(limiter.buckets) > keyedLimitersMaximum {
		t.Fatalf("%d buckets, the bound is %d", len(limiter.buckets), keyedLimitersMaximum)
	}
}

// TestConnectionsPerAddress: one address holds at most its cap of open
// connections on the public listener; the next is closed at once, and a
// closed one frees its place.
func TestConnectionsPerAddress(t *testing.T) {
	g, err := New(Config{PasswordHashing: routingTestHashing, ConnectionsPerAddress: 3},
		Dependencies{Store: routingStore{}, Cache: routingCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := g.Server(g.Handler())
	go func() { _ = server.Serve(g.Listener(inner)) }()
	t.Cleanup(func() { _ = server.Close() })
	address := inner.Addr().String()
	// open dials; a refused connection may be reset while it is made.
	open := func() net.Conn {
		t.Helper()
		connection, err := net.DialTimeout("tcp", address, 2*time.Second)
		if err != nil {
			return nil
		}
		t.Cleanup(func() { connection.Close() })
		return connection
	}
	// alive sends a request and says whether an answer came.
	alive := func(connection net.Conn) bool {
		if connection == nil {
			return false
		}
		_ = connection.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(connection, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		buffer := make([]byte, 12)
		_, err := io.ReadFull(connection, buffer)
		return err == nil && string(buffer) == "HTTP/1.1 200"
	}
	var held []net.Conn
	for range 3 {
		connection := open()
		if !alive(connection) {
			t.Fatal("a connection within the cap was not served")
		}
		held = append(held, connection)
	}
	if alive(open()) {
		t.Fatal("a fourth connection of one address was served; the cap is 3")
	}
	held[0].Close()
	// The server notices the close when it reads the connection again: poll.
	deadline := time.Now().Add(5 * time.Second)
	for !alive(open()) {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its place")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSigninFailuresLock: this gateway's own count locks an email after
// FailuresBeforeLock attempts, for Lock after the last, doubling; an
// undecided attempt is taken back; a success forgets.
func TestSigninFailuresLock(t *testing.T) {
	failures := newSigninFailures(redis.SigninLock{FailuresBeforeLock: 2, Lock: time.Second, LockMaximum: 3 * time.Second, Memory: time.Hour})
	now := time.Unix(1000, 0)
	for i := 1; i <= 2; i++ {
		if allowed, _, count := failures.attempt("e", now); !allowed || count != i {
			t.Fatalf("attempt %d: %v %d", i, allowed, count)
		}
	}
	if allowed, until, _ := failures.attempt("e", now.Add(500*time.Millisecond)); allowed || !until.Equal(now.Add(time.Second)) {
		t.Fatalf("locked attempt: %v until %s", allowed, until)
	}
	if allowed, _, count := failures.attempt("e", now.Add(time.Second)); !allowed || count != 3 {
		t.Fatalf("after the lock: %v %d", allowed, count)
	}
	if allowed, until, _ := failures.attempt("e", now.Add(2*time.Second)); allowed || !until.Equal(now.Add(3*time.Second)) {
		t.Fatalf("the lock did not double: %v until %s", allowed, until)
	}
	failures.undecided("e")
	if allowed, _, count := failures.attempt("e", now.Add(2*time.Second)); !allowed || count != 3 {
		t.Fatalf("after taking an attempt back: %v %d", allowed, count)
	}
	// A taken-back attempt does not restart the lock either: after the
	// lock ended, an attempt made and taken back leaves the email free.
	taken := newSigninFailures(redis.SigninLock{FailuresBeforeLock: 2, Lock: time.Second, LockMaximum: 3 * time.Second, Memory: time.Hour})
	taken.attempt("f", now)
	taken.attempt("f", now)
	if allowed, _, _ := taken.attempt("f", now.Add(time.Second)); !allowed {
		t.Fatal("the attempt after the lock was refused")
	}
	taken.undecided("f")
	if allowed, until, count := taken.attempt("f", now.Add(1500*time.Millisecond)); !allowed || count != 3 {
		t.Fatalf("after an attempt taken back, the email is locked until %s (%d failures): the undecided attempt restarted the lock", until, count)
	}
	failures.succeeded("e")
	if allowed, _, count := failures.attempt("e", now.Add(2*time.Second)); !allowed || count != 1 {
		t.Fatalf("after a success: %v %d", allowed, count)
	}
	for i := range signinFailuresMaximum + 5 {
		failures.attempt(string(rune(i+100)), now)
	}
	if len(failures.records) > signinFailuresMaximum {
		t.Fatalf("%d records, the bound is %d", len(failures.records), signinFailuresMaximum)
	}
}

// TestHashSlots: at most Concurrency hashes at once; a request waits at
// most QueueWait, and at most QueueLength wait.
func TestHashSlots(t *testing.T) {
	slots := newHashSlots(PasswordHashing{Concurrency: 2, QueueWait: 50 * time.Millisecond, QueueLength: 1})
	ctx := context.Background()
	first, err := slots.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := slots.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slots.acquire(ctx); !errors.Is(err, errHashingBusy) {
		t.Fatalf("a third hash with two slots: %v, want busy after the wait", err)
	}
	var wait sync.WaitGroup
	wait.Add(1)
	waiting := make(chan error, 1)
	go func() {
		defer wait.Done()
		release, err := slots.acquire(ctx)
		if err == nil {
			release()
		}
		waiting <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	for slots.waiting.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := slots.acquire(ctx); !errors.Is(err, errHashingBusy) {
		t.Fatalf("a second waiter with a queue of one: %v, want busy at once", err)
	}
	first()
	wait.Wait()
	if err := <-waiting; err != nil {
		t.Fatalf("the waiter did not get the freed slot: %v", err)
	}
	second()
	if got := HTTPStatus(ledger.ErrorCode(errHashingBusy)); got != http.StatusServiceUnavailable {
		t.Fatalf("busy hashing answers %d", got)
	}
}

// TestCheckPassword: the common passwords, in any case or width, one
// character repeated, and the email are refused.
func TestCheckPassword(t *testing.T) {
	email, err := normaliseEmail("fiona.jose@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, password := range []string{"password", "Password1", "PASSWORD123", "１２３４５６７８", "qwertyuiop", "iloveyou",
		"aaaaaaaaaa", "€€€€€€€€", "fiona.jose", "FIONA.JOSE@EXAMPLE.COM", "short"} {
		if err := checkPassword(password, email); ledger.ErrorCode(err) != ledger.CodeWeakPassword {
			t.Errorf("%q accepted: %v", password, err)
		}
	}
	for _, password := range []string{"correct horse", "ledgerproof-load-1", "smoke-password-1", "a long passphrase"} {
		if err := checkPassword(password, email); err != nil {
			t.Errorf("%q refused: %v", password, err)
		}
	}
	if len(commonPasswords) < 100 {
		t.Fatalf("only %d common passwords were read", len(commonPasswords))
	}
}

// TestBodyReadTimeout: a body that does not arrive within BodyReadTimeout
// is answered 400 and its connection closed, and it never held one of the
// gateway's in-flight slots: with a single slot, another request is served
// while the body stalls.
func TestBodyReadTimeout(t *testing.T) {
	g, err := New(Config{PasswordHashing: routingTestHashing, BodyReadTimeout: 300 * time.Millisecond, MaxInFlightRequests: 1},
		Dependencies{Store: routingStore{}, Cache: sessionCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := g.Server(g.Handler())
	go func() { _ = server.Serve(g.Listener(listener)) }()
	t.Cleanup(func() { _ = server.Close() })
	stalled, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := io.WriteString(stalled, "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	// The stalled body holds no in-flight slot: the one slot serves this.
	request, _ := http.NewRequest("GET", "http://"+listener.Addr().String()+"/v1/accounts/70", nil)
	request.Header.Set("Authorization", "Bearer "+standInToken)
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode == http.StatusServiceUnavailable {
		t.Fatal("a stalled body held the only in-flight slot")
	}
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, err := http.ReadResponse(bufio.NewReader(stalled), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(answer.Body)
	if answer.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "did not arrive within") || !answer.Close {
		t.Fatalf("stalled body: %d %s (close %v)", answer.StatusCode, body, answer.Close)
	}
}

// TestTransferEncodingWithContentLength: Go's server accepts a request with
// both Content-Length and Transfer-Encoding: chunked, drops the
// Content-Length, reads the body chunked and keeps the connection (the
// reason protect refuses every Transfer-Encoding); the gateway answers 400
// and closes it. If net/http ever refuses such requests itself, the first
// half of this test says so.
func TestTransferEncodingWithContentLength(t *testing.T) {
	const raw = "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	send := func(handler http.Handler) (status int, body string, closed bool) {
		t.Helper()
		server := httptest.NewServer(handler)
		defer server.Close()
		connection, err := net.Dial("tcp", server.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer connection.Close()
		_ = connection.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(connection, raw); err != nil {
			t.Fatal(err)
		}
		reader := bufio.NewReader(connection)
		response, err := http.ReadResponse(reader, nil)
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(response.Body)
		response.Body.Close()
		_ = connection.SetReadDeadline(time.Now().Add(time.Second))
		_, err = reader.ReadByte()
		return response.StatusCode, string(content), errors.Is(err, io.EOF)
	}
	status, body, closed := send(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		content, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, strings.Join(r.TransferEncoding, ",")+" "+r.Header.Get("Content-Length")+" "+string(content))
	}))
	if status != http.StatusOK || body != "chunked  {}" || closed {
		t.Fatalf("net/http's own handling changed: %d %q closed %v; want 200, the body read chunked, the Content-Length dropped, the connection kept", status, body, closed)
	}
	status, body, closed = send(newRoutingGateway(t).Handler())
	if status != http.StatusBadRequest || !strings.Contains(body, "Transfer-Encoding") || !closed {
		t.Fatalf("the gateway: %d %s closed %v; want 400 and the connection closed", status, body, closed)
	}
}
