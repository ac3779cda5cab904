package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewHTTPRejectsInvalidOptions(t *testing.T) {
	base := []string{"http://127.0.0.1:1"}
	tests := []struct {
		name    string
		options Options
		want    string
	}{
		{name: "no base URL", options: Options{}, want: "no base URL"},
		{name: "empty base URL list", options: Options{BaseURLs: []string{}}, want: "no base URL"},
		{name: "not http", options: Options{BaseURLs: []string{"ftp://example.test"}}, want: "not an http(s) URL"},
		{name: "no scheme", options: Options{BaseURLs: []string{"example.test:8080"}}, want: "not an http(s) URL"},
		{name: "no host", options: Options{BaseURLs: []string{"http://"}}, want: "not an http(s) URL"},
		{name: "unparsable", options: Options{BaseURLs: []string{"http://[::1"}}, want: "not an http(s) URL"},
		{name: "one bad among good ones", options: Options{BaseURLs: []string{"http://a.test", "b.test"}}, want: `"b.test"`},
		{name: "wait equal to the timeout", options: Options{BaseURLs: base, Timeout: time.Second, Wait: time.Second}, want: "must be shorter than the request timeout"},
		{name: "wait longer than the timeout", options: Options{BaseURLs: base, Timeout: time.Second, Wait: 2 * time.Second}, want: "must be shorter"},
		{name: "wait not shorter than the default timeout", options: Options{BaseURLs: base, Wait: 10 * time.Second}, want: "must be shorter"},
		{name: "negative wait", options: Options{BaseURLs: base, Wait: -time.Second}, want: "negative duration"},
		{name: "negative poll bound", options: Options{BaseURLs: base, PollFor: -time.Second}, want: "negative duration"},
		{name: "negative backoff", options: Options{BaseURLs: base, RetryBackoff: -time.Millisecond}, want: "negative duration"},
		{name: "negative maximum backoff", options: Options{BaseURLs: base, RetryMaxBackoff: -time.Millisecond}, want: "negative duration"},
		{name: "negative duplicate delay", options: Options{BaseURLs: base, DuplicateDelay: -time.Millisecond}, want: "negative duration"},
		{name: "too many attempts", options: Options{BaseURLs: base, RetryAttempts: 101}, want: "at most 100"},
		{name: "negative jitter", options: Options{BaseURLs: base, RetryJitter: -0.1}, want: "jitter"},
		{name: "jitter above one", options: Options{BaseURLs: base, RetryJitter: 1.5}, want: "jitter"},
		{name: "negative idle connection timeout", options: Options{BaseURLs: base, IdleConnTimeout: -time.Second}, want: "idle connection timeout -1s is negative"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			c, err := NewHTTP(test.options)
			if err == nil {
				c.Close()
				t.Fatalf("NewHTTP(%+v) succeeded, want an error containing %q", test.options, test.want)
			}
			if !strings.Contains(err.Error(), test.want) {
				t.Errorf("NewHTTP error %q, want it to contain %q", err, test.want)
			}
		})
	}
}

func TestNewHTTPFillsDefaults(t *testing.T) {
	bases := []string{"http://a.test/", "https://b.test/api//"}
	c, err := NewHTTP(Options{BaseURLs: bases})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	o := c.options
	if want := []string{"http://a.test", "https://b.test/api"}; !slices.Equal(o.BaseURLs, want) {
		t.Errorf("base URLs %q, want %q (trailing slashes trimmed)", o.BaseURLs, want)
	}
	if bases[0] != "http://a.test/" || bases[1] != "https://b.test/api//" {
		t.Errorf("NewHTTP changed the caller's base URLs to %q", bases)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Timeout", o.Timeout, 10 * time.Second},
		{"Wait", o.Wait, time.Duration(0)},
		{"PollInterval", o.PollInterval, 100 * time.Millisecond},
		{"PollFor", o.PollFor, time.Duration(0)},
		{"RetryAttempts", o.RetryAttempts, 3},
		{"RetryBackoff", o.RetryBackoff, 50 * time.Millisecond},
		{"RetryMaxBackoff", o.RetryMaxBackoff, time.Second},
		{"DuplicateDelay", o.DuplicateDelay, 100 * time.Millisecond},
		{"MaxConnections", o.MaxConnections, 1024},
		{"IdleConnTimeout", o.IdleConnTimeout, 10 * time.Second},
		{"OperationPrefix", o.OperationPrefix, "g0"},
		{"Observer", o.Observer, Observer(NoObserver{})},
	}
	for _, check := range checks {
		if check.got != check.want {
			t.Errorf("default %s = %v, want %v", check.name, check.got, check.want)
		}
	}
	if o.Clock == nil {
		t.Errorf("no default clock")
	}
}

// connectionCountingServer serves a settled deposit to every request, after
// before(request), and counts the connections opened and closed. It never
// closes an idle connection itself: only the client may.
func connectionCountingServer(t *testing.T, before func(*http.Request)) (url string, opened, closed *atomic.Int64) {
	t.Helper()
	opened, closed = new(atomic.Int64), new(atomic.Int64)
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		before(r)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"transaction_id":"t-1","status":"settled"}`))
	}))
	server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	server.Config.IdleTimeout = time.Hour
	server.Start()
	t.Cleanup(server.Close)
	return server.URL, opened, closed
}

// A connection left idle for IdleConnTimeout is closed by the client, so that a
// burst's extra connections do not stay open in the system under test.
func TestIdleConnectionsAreClosed(t *testing.T) {
	url, opened, closed := connectionCountingServer(t, func(*http.Request) {})
	c := newTestClient(t, Options{BaseURLs: []string{url}, IdleConnTimeout: 50 * time.Millisecond})
	request := MoneyRequest{Kind: KindDeposit, To: 11, Amount: 1, Key: "k-idle", Session: testSession()}
	c.Money(t.Context(), request)
	if opened.Load() != 1 {
		t.Fatalf("%d connections opened for one request, want 1", opened.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if closed.Load() != 1 {
		t.Errorf("the idle connection was not closed by the client within 10s (opened %d, closed %d)", opened.Load(), closed.Load())
	}
}

// TestConnectionsBeyondTheSteadyNeedAreClosed: a burst opens more
// connections than the steady load after it needs; while that load goes on,
// one request at a time, the connections it leaves idle are closed after
// IdleConnTimeout. (A pool that hands out its idle connections in turn keeps
// every one of them in use, and so open: the gateway's memory then keeps
// each burst's connections, docs/performance.md, eleventh and nineteenth
// passes.)
func TestConnectionsBeyondTheSteadyNeedAreClosed(t *testing.T) {
	const burst = 6
	var arrived atomic.Int64
	together := make(chan struct{})
	url, opened, closed := connectionCountingServer(t, func(r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Idempotency-Key"), "burst-") {
			// The burst's requests are answered only once all have arrived,
			// so each has a connection of its own.
			if arrived.Add(1) == burst {
				close(together)
			}
			select {
			case <-together:
			case <-time.After(10 * time.Second):
			}
		}
	})
	c := newTestClient(t, Options{BaseURLs: []string{url}, IdleConnTimeout: 200 * time.Millisecond})
	var group sync.WaitGroup
	for i := range burst {
		group.Go(func() {
			c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, To: 11, Amount: 1, Key: fmt.Sprintf("burst-%d", i), Session: testSession()})
		})
	}
	group.Wait()
	if opened.Load() != burst {
		t.Fatalf("%d connections opened for a burst of %d requests, want %d", opened.Load(), burst, burst)
	}
	// The steady load: a request every 10 ms, each on one connection at a
	// time. Handed out in turn, each of the six would carry one every 60 ms
	// and none would idle for 200 ms.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; closed.Load() < burst-1 && time.Now().Before(deadline); i++ {
		c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, To: 11, Amount: 1, Key: fmt.Sprintf("steady-%d", i), Session: testSession()})
		time.Sleep(10 * time.Millisecond)
	}
	if closed.Load() < burst-1 {
		t.Errorf("%d of the burst's %d connections closed within 10s of a steady load of one request at a time, want at least %d", closed.Load(), burst, burst-1)
	}
}

func TestMoneyRequests(t *testing.T) {
	tests := []struct {
		name       string
		request    MoneyRequest
		wait       time.Duration
		wantRoute  string
		wantBody   string
		wantPrefer string
	}{
		{name: "deposit", request: MoneyRequest{Kind: KindDeposit, To: 11, Amount: 100, Key: "k-deposit"},
			wantRoute: routeDeposit, wantBody: `{"account_id":11,"amount":100}`},
		{name: "withdrawal", request: MoneyRequest{Kind: KindWithdrawal, From: 11, Amount: 30, Key: "k-withdrawal"},
			wantRoute: routeWithdrawal, wantBody: `{"account_id":11,"amount":30}`},
		{name: "transfer", request: MoneyRequest{Kind: KindTransfer, From: 11, To: 12, Amount: 20, Key: "k-transfer"},
			wantRoute: routeTransfer, wantBody: `{"from_account_id":11,"to_account_id":12,"amount":20}`},
		{name: "transfer with a wait", request: MoneyRequest{Kind: KindTransfer, From: 11, To: 12, Amount: 20, Key: "k-wait"}, wait: 1500 * time.Millisecond,
			wantRoute: routeTransfer, wantBody: `{"from_account_id":11,"to_account_id":12,"amount":20}`, wantPrefer: "wait=1.5"},
		{name: "deposit with a sub-second wait", request: MoneyRequest{Kind: KindDeposit, To: 11, Amount: 1, Key: "k-short"}, wait: 250 * time.Millisecond,
			wantRoute: routeDeposit, wantBody: `{"account_id":11,"amount":1}`, wantPrefer: "wait=0.25"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, nil)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Wait: test.wait})
			request := test.request
			request.Session = testSession()
			result := c.Money(t.Context(), request)
			if result.Outcome != OutcomeOK || result.Key != request.Key || result.Kind != request.Kind {
				t.Errorf("result %+v: want outcome ok, key %s, kind %s", result, request.Key, request.Kind)
			}
			requests := gateway.allRequests()
			if len(requests) != 1 {
				t.Fatalf("gateway got %d requests, want 1: %+v", len(requests), requests)
			}
			got := requests[0]
			if got.Route != test.wantRoute || got.Body != test.wantBody {
				t.Errorf("request %s %s, want %s %s", got.Route, got.Body, test.wantRoute, test.wantBody)
			}
			if got.IdempotencyKey != request.Key || got.Authorization != "Bearer token-7" || got.ContentType != "application/json" ||
				got.Accept != "application/json" || got.Prefer != test.wantPrefer {
				t.Errorf("headers key %q authorization %q content type %q accept %q prefer %q; want key %q, Bearer token-7, application/json, prefer %q",
					got.IdempotencyKey, got.Authorization, got.ContentType, got.Accept, got.Prefer, request.Key, test.wantPrefer)
			}
		})
	}
}

func TestMoneyGeneratesAFreshKeyWhenNoneIsGiven(t *testing.T) {
	gateway, server := newFakeGateway(t, nil)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}})
	first := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1})
	second := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1})
	if len(first.Key) != 32 || first.Key == second.Key {
		t.Errorf("keys %q and %q: want two different 32-character keys", first.Key, second.Key)
	}
	requests := gateway.requestsOf(routeDeposit)
	if len(requests) != 2 || requests[0].IdempotencyKey != first.Key || requests[1].IdempotencyKey != second.Key {
		t.Errorf("requests %+v: want the generated keys %q and %q sent", requests, first.Key, second.Key)
	}
	if first.Op == second.Op {
		t.Errorf("two operations with op %q", first.Op)
	}
}

func TestMoneyPanicsOnAnUnknownKind(t *testing.T) {
	for _, kind := range []string{"", KindSignup, KindMisuse, "refund"} {
		t.Run(strconv.Quote(kind), func(t *testing.T) {
			gateway, server := newFakeGateway(t, nil)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}})
			defer func() {
				if recover() == nil {
					t.Errorf("Money of kind %q did not panic", kind)
				}
				if requests := gateway.allRequests(); len(requests) != 0 {
					t.Errorf("Money of kind %q sent %d requests", kind, len(requests))
				}
			}()
			c.Money(t.Context(), MoneyRequest{Kind: kind, Session: testSession(), To: 11, Amount: 1})
		})
	}
}

func TestRetriesReuseTheKey(t *testing.T) {
	gateway, server := newFakeGateway(t, func(g *fakeGateway) {
		g.script = func(call gatewayCall) fakeAnswer {
			if call.Attempt <= 2 {
				return answerUnavailable
			}
			return fakeAnswer{}
		}
	})
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal})
	result := c.Money(t.Context(), MoneyRequest{Kind: KindTransfer, Session: testSession(), From: 11, To: 12, Amount: 250})

	requests := gateway.requestsOf(routeTransfer)
	if len(requests) != 3 {
		t.Fatalf("%d attempts reached the gateway, want 3", len(requests))
	}
	for i, request := range requests {
		if request.IdempotencyKey == "" || request.IdempotencyKey != result.Key || request.Body != requests[0].Body {
			t.Errorf("attempt %d: key %q body %s; want the result's key %q and the first attempt's body %s",
				i+1, request.IdempotencyKey, request.Body, result.Key, requests[0].Body)
		}
	}
	if result.Outcome != OutcomeOK || !slices.Equal(result.Statuses, []int{503, 503, 200}) || result.Retries() != 2 {
		t.Errorf("result outcome %s statuses %v retries %d: want ok after [503 503 200], 2 retries", result.Outcome, result.Statuses, result.Retries())
	}
	lines, _ := readJournal(t, journal)
	if len(lines) != 1 {
		t.Fatalf("%d journal lines, want 1", len(lines))
	}
	if line := lines[0]; line.Attempts != 3 || !slices.Equal(line.Statuses, []int{503, 503, 200}) || line.Key != result.Key || line.Outcome != OutcomeOK {
		t.Errorf("journal line %+v: want 3 attempts [503 503 200], key %s, outcome ok", line, result.Key)
	}
}

func TestRetriesStopAtTheAttemptBound(t *testing.T) {
	for _, attempts := range []int{1, 2, 5} {
		t.Run(strconv.Itoa(attempts), func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(gatewayCall) fakeAnswer { return answerUnavailable }
			})
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, RetryAttempts: attempts})
			result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1})
			if got := len(gateway.requestsOf(routeDeposit)); got != attempts || len(result.Statuses) != attempts {
				t.Errorf("gateway saw %d attempts, result has statuses %v; want %d", got, result.Statuses, attempts)
			}
		})
	}
}

func TestBaseURLsRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		// firstUnavailable makes the first gateway answer 503 to everything.
		firstUnavailable bool
		operations       int
		wantFirst        int
		wantSecond       int
		wantStatuses     []int
	}{
		{name: "operations alternate", operations: 6, wantFirst: 3, wantSecond: 3, wantStatuses: []int{200}},
		{name: "a retry goes to the next base URL", firstUnavailable: true, operations: 1, wantFirst: 1, wantSecond: 1, wantStatuses: []int{503, 200}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			first, firstServer := newFakeGateway(t, func(g *fakeGateway) {
				if test.firstUnavailable {
					g.script = func(gatewayCall) fakeAnswer { return answerUnavailable }
				}
			})
			second, secondServer := newFakeGateway(t, nil)
			c := newTestClient(t, Options{BaseURLs: []string{firstServer.URL, secondServer.URL}})
			var result Result
			for range test.operations {
				result = c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 10})
			}
			if got, want := len(first.allRequests()), test.wantFirst; got != want {
				t.Errorf("first gateway got %d requests, want %d", got, want)
			}
			if got, want := len(second.allRequests()), test.wantSecond; got != want {
				t.Errorf("second gateway got %d requests, want %d", got, want)
			}
			if result.Outcome != OutcomeOK || !slices.Equal(result.Statuses, test.wantStatuses) {
				t.Errorf("last result %s %v, want ok %v", result.Outcome, result.Statuses, test.wantStatuses)
			}
		})
	}
}

func TestMoneyOutcomes(t *testing.T) {
	settled := transactionBody("t1", StatusSettled, "")
	rejected := transactionBody("t1", StatusRejected, "insufficient_funds")
	accepted := transactionBody("t1", StatusAccepted, "")
	hang := fakeAnswer{hang: true}
	tests := []struct {
		name string
		// answers are the gateway's answers to the attempts; the last one repeats.
		answers []fakeAnswer
		// refused: nothing listens at the base URL.
		refused  bool
		attempts int
		timeout  time.Duration

		wantOutcome, wantStatus, wantReason, wantTx string
		wantStatuses                                []int
		wantAccepted, wantFinal                     bool
	}{
		{name: "200 settled", answers: []fakeAnswer{answer(200, settled)},
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantTx: "t1", wantStatuses: []int{200}, wantAccepted: true, wantFinal: true},
		{name: "200 rejected", answers: []fakeAnswer{answer(200, rejected)},
			wantOutcome: OutcomeFail, wantStatus: StatusRejected, wantReason: "insufficient_funds", wantTx: "t1", wantStatuses: []int{200}, wantAccepted: true, wantFinal: true},
		{name: "200 accepted: the wait ended first", answers: []fakeAnswer{answer(200, accepted)},
			wantOutcome: OutcomeInfo, wantStatus: StatusAccepted, wantTx: "t1", wantStatuses: []int{200}, wantAccepted: true},
		{name: "202 accepted without polling", answers: []fakeAnswer{answer(202, accepted)},
			wantOutcome: OutcomeInfo, wantStatus: StatusAccepted, wantTx: "t1", wantStatuses: []int{202}, wantAccepted: true},
		{name: "503 then 200 settled", answers: []fakeAnswer{answerUnavailable, answer(200, settled)},
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantTx: "t1", wantStatuses: []int{503, 200}, wantAccepted: true, wantFinal: true},
		{name: "503 after the last attempt", answers: []fakeAnswer{answerUnavailable},
			wantOutcome: OutcomeInfo, wantReason: "unavailable", wantStatuses: []int{503, 503, 503}},
		{name: "500 without a code after the last attempt", answers: []fakeAnswer{answer(500, "")},
			wantOutcome: OutcomeInfo, wantReason: "http_500", wantStatuses: []int{500, 500, 500}},
		{name: "409 in flight after the last attempt", answers: []fakeAnswer{answerInFlight},
			wantOutcome: OutcomeInfo, wantReason: "idempotency_key_in_flight", wantStatuses: []int{409, 409, 409}},
		{name: "409 in flight then settled", answers: []fakeAnswer{answerInFlight, answer(200, settled)},
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantTx: "t1", wantStatuses: []int{409, 200}, wantAccepted: true, wantFinal: true},
		{name: "403 forbidden", answers: []fakeAnswer{answer(403, `{"code":"forbidden","message":"x"}`)},
			wantOutcome: OutcomeFail, wantReason: "forbidden", wantStatuses: []int{403}, wantFinal: true},
		{name: "422 key reused", answers: []fakeAnswer{answer(422, `{"code":"idempotency_key_reused","message":"x"}`)},
			wantOutcome: OutcomeFail, wantReason: "idempotency_key_reused", wantStatuses: []int{422}, wantFinal: true},
		{name: "409 of another kind is not retried", answers: []fakeAnswer{answer(409, `{"code":"conflict","message":"x"}`)},
			wantOutcome: OutcomeFail, wantReason: "conflict", wantStatuses: []int{409}, wantFinal: true},
		{name: "400 without a code", answers: []fakeAnswer{answer(400, "bad")},
			wantOutcome: OutcomeFail, wantReason: "http_400", wantStatuses: []int{400}, wantFinal: true},
		{name: "429 on every attempt", answers: []fakeAnswer{answer(429, `{"code":"rate_limited","message":"x"}`)},
			wantOutcome: OutcomeFail, wantReason: "rate_limited", wantStatuses: []int{429, 429, 429}, wantFinal: true},
		{name: "401 after a 503", answers: []fakeAnswer{answerUnavailable, answer(401, `{"code":"unauthenticated","message":"x"}`)},
			wantOutcome: OutcomeInfo, wantReason: "unauthenticated", wantStatuses: []int{503, 401}},
		{name: "401 after a timeout", answers: []fakeAnswer{hang, answer(401, `{"code":"unauthenticated","message":"x"}`)}, timeout: 200 * time.Millisecond,
			wantOutcome: OutcomeInfo, wantReason: "unauthenticated", wantStatuses: []int{0, 401}},
		{name: "429 after a 409 in flight", answers: []fakeAnswer{answerInFlight, answer(429, `{"code":"rate_limited","message":"x"}`)},
			wantOutcome: OutcomeInfo, wantReason: "rate_limited", wantStatuses: []int{409, 429, 429}},
		{name: "unreadable body", answers: []fakeAnswer{answer(200, "not json")},
			wantOutcome: OutcomeInfo, wantReason: "invalid_response", wantStatuses: []int{200}, wantAccepted: true},
		{name: "body cut short", answers: []fakeAnswer{{truncate: true, status: 200, body: settled[:10]}},
			wantOutcome: OutcomeInfo, wantReason: "connection_error", wantStatuses: []int{0, 0, 0}},
		{name: "connection refused", refused: true,
			wantOutcome: OutcomeInfo, wantReason: "connection_error", wantStatuses: []int{0, 0, 0}},
		{name: "timeout", answers: []fakeAnswer{hang}, attempts: 1, timeout: 200 * time.Millisecond,
			wantOutcome: OutcomeInfo, wantReason: "timeout", wantStatuses: []int{0}},
		{name: "redirect is not followed", answers: []fakeAnswer{answer(302, "")},
			wantOutcome: OutcomeInfo, wantReason: "http_302", wantStatuses: []int{302}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer {
					return test.answers[min(call.Attempt, len(test.answers))-1]
				}
			})
			base := server.URL
			if test.refused {
				base = refusedURL(t)
			}
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{base}, Journal: journal, RetryAttempts: test.attempts, Timeout: test.timeout})
			result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Key: "k1"})

			if result.Outcome != test.wantOutcome || result.Status != test.wantStatus || result.Reason != test.wantReason || result.TransactionID != test.wantTx {
				t.Errorf("outcome %q status %q reason %q tx %q; want %q %q %q %q",
					result.Outcome, result.Status, result.Reason, result.TransactionID, test.wantOutcome, test.wantStatus, test.wantReason, test.wantTx)
			}
			if !slices.Equal(result.Statuses, test.wantStatuses) {
				t.Errorf("statuses %v, want %v", result.Statuses, test.wantStatuses)
			}
			if !test.refused {
				if got := len(gateway.requestsOf(routeDeposit)); got != len(test.wantStatuses) {
					t.Errorf("gateway saw %d attempts, want %d", got, len(test.wantStatuses))
				}
			}
			if accepted := !result.AcceptedAt.IsZero(); accepted != test.wantAccepted {
				t.Errorf("accepted at %v, want it set: %v", result.AcceptedAt, test.wantAccepted)
			}
			if final := !result.FinalAt.IsZero(); final != test.wantFinal {
				t.Errorf("final at %v, want it set: %v", result.FinalAt, test.wantFinal)
			}
			if result.Complete.Before(result.Invoke) || (!result.FinalAt.IsZero() && (result.FinalAt.Before(result.Invoke) || result.FinalAt.After(result.Complete))) {
				t.Errorf("invoke %v, final %v, complete %v: want invoke <= final <= complete", result.Invoke, result.FinalAt, result.Complete)
			}
			if result.Polls != 0 {
				t.Errorf("%d polls without a poll bound", result.Polls)
			}
			lines, _ := readJournal(t, journal)
			if len(lines) != 1 {
				t.Fatalf("%d journal lines, want 1", len(lines))
			}
			line := lines[0]
			if line.Outcome != test.wantOutcome || line.Status != test.wantStatus || line.Reason != test.wantReason || line.Tx != test.wantTx ||
				!slices.Equal(line.Statuses, test.wantStatuses) || line.Attempts != len(test.wantStatuses) {
				t.Errorf("journal line %+v: want outcome %q status %q reason %q tx %q statuses %v", line,
					test.wantOutcome, test.wantStatus, test.wantReason, test.wantTx, test.wantStatuses)
			}
		})
	}
}

func TestPolling(t *testing.T) {
	accepted := answer(http.StatusAccepted, transactionBody("t1", StatusAccepted, ""))
	read := func(status string) fakeAnswer { return answer(http.StatusOK, transactionBody("t1", status, "")) }
	tests := []struct {
		name string
		// money answers the money request's attempts (the last repeats); reads the transaction reads (the last
		// repeats; none: the gateway's default, settled).
		money, reads []fakeAnswer
		// optionPollFor is the client's bound, requestPollFor the request's.
		optionPollFor, requestPollFor time.Duration

		wantOutcome, wantStatus, wantReason string
		// wantPolls is the exact number of reads; -1: at least one.
		wantPolls int
		wantFinal bool
	}{
		{name: "accepted, then settled", money: []fakeAnswer{accepted}, reads: []fakeAnswer{read(StatusAccepted), read(StatusSettled)}, optionPollFor: 5 * time.Second,
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantPolls: 2, wantFinal: true},
		{name: "accepted, then rejected", money: []fakeAnswer{accepted},
			reads: []fakeAnswer{answer(200, transactionBody("t1", StatusRejected, "insufficient_funds"))}, optionPollFor: 5 * time.Second,
			wantOutcome: OutcomeFail, wantStatus: StatusRejected, wantReason: "insufficient_funds", wantPolls: 1, wantFinal: true},
		{name: "reads that fail are tried again", money: []fakeAnswer{accepted},
			reads:         []fakeAnswer{answerUnavailable, answer(200, "garbage"), answer(404, `{"code":"not_found"}`), read(StatusSettled)},
			optionPollFor: 5 * time.Second, wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantPolls: 4, wantFinal: true},
		{name: "200 accepted is polled too", money: []fakeAnswer{read(StatusAccepted)}, reads: []fakeAnswer{read(StatusSettled)}, optionPollFor: 5 * time.Second,
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantPolls: 1, wantFinal: true},
		{name: "the request's bound overrides the client's", money: []fakeAnswer{accepted}, reads: []fakeAnswer{read(StatusSettled)}, requestPollFor: 5 * time.Second,
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantPolls: 1, wantFinal: true},
		{name: "no polling when the bound is 0", money: []fakeAnswer{accepted},
			wantOutcome: OutcomeInfo, wantStatus: StatusAccepted, wantPolls: 0},
		{name: "never final within the bound", money: []fakeAnswer{accepted}, reads: []fakeAnswer{read(StatusAccepted)}, optionPollFor: 30 * time.Millisecond,
			wantOutcome: OutcomeInfo, wantStatus: StatusAccepted, wantPolls: -1},
		{name: "no transaction to poll after 503s", money: []fakeAnswer{answerUnavailable}, optionPollFor: 5 * time.Second,
			wantOutcome: OutcomeInfo, wantReason: "unavailable", wantPolls: 0},
		{name: "final answers are not polled", money: []fakeAnswer{read(StatusSettled)}, optionPollFor: 5 * time.Second,
			wantOutcome: OutcomeOK, wantStatus: StatusSettled, wantPolls: 0, wantFinal: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer {
					switch {
					case call.Route == routeTransaction && len(test.reads) > 0:
						return test.reads[min(call.Attempt, len(test.reads))-1]
					case call.Route == routeDeposit:
						return test.money[min(call.Attempt, len(test.money))-1]
					}
					return fakeAnswer{}
				}
			})
			journal := newJournal(t)
			observer := &recordingObserver{}
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, PollFor: test.optionPollFor, Observer: observer})
			result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Key: "k1", PollFor: test.requestPollFor})

			if result.Outcome != test.wantOutcome || result.Status != test.wantStatus || result.Reason != test.wantReason {
				t.Errorf("outcome %q status %q reason %q; want %q %q %q", result.Outcome, result.Status, result.Reason, test.wantOutcome, test.wantStatus, test.wantReason)
			}
			reads := gateway.requestsOf(routeTransaction)
			if (test.wantPolls >= 0 && result.Polls != test.wantPolls) || (test.wantPolls < 0 && result.Polls < 1) || len(reads) != result.Polls {
				t.Errorf("%d polls, gateway saw %d reads; want %d (-1: at least one)", result.Polls, len(reads), test.wantPolls)
			}
			for _, r := range reads {
				if r.Path != "/v1/transactions/t1" || r.Authorization != "Bearer token-7" || r.IdempotencyKey != "" || r.Prefer != "" {
					t.Errorf("poll %+v: want GET /v1/transactions/t1 with the session's token, no key, no wait", r)
				}
			}
			if final := !result.FinalAt.IsZero(); final != test.wantFinal {
				t.Errorf("final at %v, want it set: %v", result.FinalAt, test.wantFinal)
			}
			if test.wantFinal && (result.FinalAt.Before(result.AcceptedAt) || result.Complete.Before(result.FinalAt)) {
				t.Errorf("accepted %v, final %v, complete %v: want accepted <= final <= complete", result.AcceptedAt, result.FinalAt, result.Complete)
			}
			observations, _ := observer.seen()
			polled := 0
			for _, o := range observations {
				if o.Route == routeTransaction {
					polled++
				}
			}
			if polled != result.Polls {
				t.Errorf("observer saw %d reads on %q, want %d: %v", polled, routeTransaction, result.Polls, observations)
			}
			lines, _ := readJournal(t, journal)
			if len(lines) != 1 || lines[0].Outcome != test.wantOutcome || lines[0].Status != test.wantStatus || lines[0].Reason != test.wantReason ||
				!slices.Equal(lines[0].Statuses, result.Statuses) {
				t.Errorf("journal %+v: want one line, outcome %q status %q reason %q statuses %v", lines, test.wantOutcome, test.wantStatus, test.wantReason, result.Statuses)
			}
		})
	}
}

func TestPollingStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	_, server := newFakeGateway(t, func(g *fakeGateway) {
		g.script = func(call gatewayCall) fakeAnswer {
			if call.Route == routeTransaction {
				if call.Attempt == 3 {
					cancel()
				}
				return answer(200, transactionBody("t1", StatusAccepted, ""))
			}
			return answer(202, transactionBody("t1", StatusAccepted, ""))
		}
	})
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, PollFor: time.Hour})
	done := make(chan Result, 1)
	go func() {
		done <- c.Money(ctx, MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1})
	}()
	select {
	case result := <-done:
		if result.Outcome != OutcomeInfo || result.Polls < 3 || !result.FinalAt.IsZero() {
			t.Errorf("result %+v: want info after at least 3 polls", result)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Money kept polling for 10 s after its context ended")
	}
}

func TestInvokeCountsFromTheIntendedStart(t *testing.T) {
	tests := []struct {
		name string
		// intended is relative to the test's start; nil: zero.
		intended func(now time.Time) time.Time
		// wantIntended: Invoke must equal the intended time; otherwise it must be the time of the call.
		wantIntended bool
	}{
		{name: "behind schedule", intended: func(now time.Time) time.Time { return now.Add(-time.Hour) }, wantIntended: true},
		{name: "no intended time", intended: func(time.Time) time.Time { return time.Time{} }},
		{name: "intended in the future", intended: func(now time.Time) time.Time { return now.Add(time.Hour) }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, server := newFakeGateway(t, nil)
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal})
			before := time.Now()
			intended := test.intended(before)
			result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Intended: intended})
			after := time.Now()
			if test.wantIntended {
				if !result.Invoke.Equal(intended) {
					t.Errorf("invoke %v, want the intended start %v", result.Invoke, intended)
				}
			} else if result.Invoke.Before(before) || result.Invoke.After(after) {
				t.Errorf("invoke %v, want the time of the call, between %v and %v", result.Invoke, before, after)
			}
			lines, _ := readJournal(t, journal)
			if len(lines) != 1 || lines[0].Invoke != result.Invoke.UnixMicro() || lines[0].Complete != result.Complete.UnixMicro() {
				t.Errorf("journal %+v: want invoke %d complete %d", lines, result.Invoke.UnixMicro(), result.Complete.UnixMicro())
			}
		})
	}
}

func TestConcurrentDuplicate(t *testing.T) {
	tests := []struct {
		name string
		// inFlight: the gateway answers the later arrival 409 in flight, as the real one does while the first
		// is being applied.
		inFlight     bool
		wantRequests int
	}{
		{name: "both answered", wantRequests: 2},
		{name: "the later one meets the other in flight", inFlight: true, wantRequests: 3},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var arrivals atomic.Int32
			var overlapped atomic.Bool
			secondArrived := make(chan struct{})
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer {
					switch arrivals.Add(1) {
					case 1:
						// The first waits for the second: they can meet only if the client sent both at once.
						select {
						case <-secondArrived:
							overlapped.Store(true)
						case <-time.After(2 * time.Second):
						}
					case 2:
						close(secondArrived)
						if test.inFlight {
							return answerInFlight
						}
					}
					return fakeAnswer{}
				}
			})
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal})
			result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 100, Duplicate: DuplicateConcurrent})

			if !overlapped.Load() {
				t.Errorf("the original and its duplicate were not in flight together")
			}
			requests := gateway.requestsOf(routeDeposit)
			if len(requests) != test.wantRequests {
				t.Fatalf("gateway saw %d requests, want %d", len(requests), test.wantRequests)
			}
			for _, r := range requests {
				if r.IdempotencyKey != result.Key || r.Body != requests[0].Body {
					t.Errorf("request key %q body %s; want key %q and body %s on every request", r.IdempotencyKey, r.Body, result.Key, requests[0].Body)
				}
			}
			if result.Outcome != OutcomeOK || result.Status != StatusSettled || result.TransactionID != "tx-"+result.Key {
				t.Errorf("result %+v: want ok settled tx-%s", result, result.Key)
			}
			both := []string{fmt.Sprint(result.Statuses), fmt.Sprint(result.DuplicateStatuses)}
			slices.Sort(both)
			want := []string{"[200]", "[200]"}
			if test.inFlight {
				want = []string{"[200]", "[409 200]"}
			}
			if !slices.Equal(both, want) {
				t.Errorf("statuses %v and duplicate statuses %v, want %v in some order", result.Statuses, result.DuplicateStatuses, want)
			}
			if result.Retries() != len(requests)-2 {
				t.Errorf("%d retries, want %d", result.Retries(), len(requests)-2)
			}
			lines, raw := readJournal(t, journal)
			if len(lines) != 1 {
				t.Fatalf("%d journal lines, want 1 (a duplicate is not an operation of its own)", len(lines))
			}
			line := lines[0]
			if line.Dup != DuplicateConcurrent || !slices.Equal(line.DupStatuses, result.DuplicateStatuses) || !slices.Equal(line.Statuses, result.Statuses) ||
				line.Outcome != OutcomeOK || !strings.Contains(raw[0], `"dup":"concurrent"`) || !strings.Contains(raw[0], `"dup_statuses":[`) {
				t.Errorf("journal line %s: want dup concurrent, dup_statuses %v, statuses %v, outcome ok", raw[0], result.DuplicateStatuses, result.Statuses)
			}
		})
	}
}

func TestDelayedDuplicate(t *testing.T) {
	tests := []struct {
		name string
		// duplicate answers the duplicate's attempts (the last repeats); none: the stored answer.
		duplicate         []fakeAnswer
		wantDupStatuses   []int
		wantOutcome       string
		wantRetries       int
		wantRequestsTotal int
	}{
		{name: "replayed after the answer", wantDupStatuses: []int{200}, wantOutcome: OutcomeOK, wantRequestsTotal: 2},
		{name: "the replay meets the key in flight", duplicate: []fakeAnswer{answerInFlight, {}},
			wantDupStatuses: []int{409, 200}, wantOutcome: OutcomeOK, wantRetries: 1, wantRequestsTotal: 3},
		{name: "the replay gets no answer but the original settled", duplicate: []fakeAnswer{answerUnavailable},
			wantDupStatuses: []int{503, 503, 503}, wantOutcome: OutcomeOK, wantRetries: 2, wantRequestsTotal: 4},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer {
					if call.Attempt == 1 || len(test.duplicate) == 0 {
						return fakeAnswer{}
					}
					return test.duplicate[min(call.Attempt-1, len(test.duplicate))-1]
				}
			})
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal})
			result := c.Money(t.Context(), MoneyRequest{Kind: KindWithdrawal, Session: testSession(), From: 11, Amount: 100, Duplicate: DuplicateDelayed})

			requests := gateway.requestsOf(routeWithdrawal)
			if len(requests) != test.wantRequestsTotal {
				t.Fatalf("gateway saw %d requests, want %d", len(requests), test.wantRequestsTotal)
			}
			for _, r := range requests {
				if r.IdempotencyKey != result.Key || r.Body != requests[0].Body {
					t.Errorf("request key %q body %s; want key %q and body %s on every request", r.IdempotencyKey, r.Body, result.Key, requests[0].Body)
				}
			}
			if requests[1].AnswersBefore < 1 {
				t.Errorf("the duplicate arrived before the original was answered: a delayed duplicate is sent after the answer")
			}
			if result.Outcome != test.wantOutcome || !slices.Equal(result.Statuses, []int{200}) || !slices.Equal(result.DuplicateStatuses, test.wantDupStatuses) {
				t.Errorf("result outcome %s statuses %v duplicate %v; want %s [200] %v", result.Outcome, result.Statuses, result.DuplicateStatuses, test.wantOutcome, test.wantDupStatuses)
			}
			if result.Retries() != test.wantRetries {
				t.Errorf("%d retries, want %d", result.Retries(), test.wantRetries)
			}
			lines, _ := readJournal(t, journal)
			if len(lines) != 1 || lines[0].Dup != DuplicateDelayed || !slices.Equal(lines[0].DupStatuses, test.wantDupStatuses) || lines[0].Outcome != test.wantOutcome {
				t.Errorf("journal %+v: want one line, dup delayed, dup_statuses %v, outcome %s", lines, test.wantDupStatuses, test.wantOutcome)
			}
		})
	}
}

func TestDelayedDuplicateNotSentAfterTheLoadStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	gateway, server := newFakeGateway(t, nil)
	journal := newJournal(t)
	// The load stops as soon as the original's answer is in, during the delay before the duplicate.
	observer := &recordingObserver{onExchange: func(observation) { cancel() }}
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, Observer: observer, DuplicateDelay: time.Hour})
	result := c.Money(ctx, MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Duplicate: DuplicateDelayed, Misuse: true})

	if got := len(gateway.allRequests()); got != 1 {
		t.Errorf("gateway saw %d requests, want only the original", got)
	}
	if result.Outcome != OutcomeOK || result.DuplicateStatuses != nil || result.Misuse != nil {
		t.Errorf("result %+v: want ok, no duplicate statuses, no misuse", result)
	}
	lines, raw := readJournal(t, journal)
	if len(lines) != 1 || lines[0].Dup != "" || strings.Contains(raw[0], `"dup"`) {
		t.Errorf("journal %v: want one line that does not claim a duplicate", raw)
	}
}

// TestDuplicateAcceptedWhereTheOriginalGotNoAnswer: the original's attempts all fail (503) but the replay is
// accepted (202 with a transaction id). The operation is then known to be accepted, and polling its
// transaction settles it.
func TestDuplicateAcceptedWhereTheOriginalGotNoAnswer(t *testing.T) {
	gateway, server := newFakeGateway(t, func(g *fakeGateway) {
		g.script = func(call gatewayCall) fakeAnswer {
			switch {
			case call.Route == routeTransaction:
				return answer(200, transactionBody("t9", StatusSettled, ""))
			case call.Attempt <= 3:
				return answerUnavailable
			}
			return answer(202, transactionBody("t9", StatusAccepted, ""))
		}
	})
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, PollFor: 5 * time.Second})
	result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Duplicate: DuplicateDelayed})

	if !slices.Equal(result.Statuses, []int{503, 503, 503}) || !slices.Equal(result.DuplicateStatuses, []int{202}) {
		t.Fatalf("statuses %v duplicate %v, want [503 503 503] [202]", result.Statuses, result.DuplicateStatuses)
	}
	if result.AcceptedAt.IsZero() {
		t.Errorf("accepted at is zero, but the duplicate was accepted")
	}
	if result.TransactionID != "t9" || result.Outcome != OutcomeOK || result.Status != StatusSettled || result.Polls != 1 {
		t.Errorf("result tx %q outcome %q status %q polls %d; want t9 ok settled after 1 poll",
			result.TransactionID, result.Outcome, result.Status, result.Polls)
	}
	if reads := gateway.requestsOf(routeTransaction); len(reads) != 1 {
		t.Errorf("gateway saw %d reads, want 1", len(reads))
	}
	lines, _ := readJournal(t, journal)
	if len(lines) != 1 || lines[0].Tx != "t9" || lines[0].Outcome != OutcomeOK {
		t.Errorf("journal %+v: want one line with tx t9, outcome ok", lines)
	}
}

func TestMisuse(t *testing.T) {
	tests := []struct {
		name   string
		kind   string
		amount int64
		// applied: the system wrongly applies the misuse (200 settled) instead of refusing it.
		applied bool

		wantAmount   int64
		wantOutcome  string
		wantReason   string
		wantStatuses []int
	}{
		{name: "withdrawal", kind: KindWithdrawal, amount: 100, wantAmount: 101,
			wantOutcome: OutcomeFail, wantReason: "idempotency_key_reused", wantStatuses: []int{422}},
		{name: "transfer", kind: KindTransfer, amount: 5, wantAmount: 6,
			wantOutcome: OutcomeFail, wantReason: "idempotency_key_reused", wantStatuses: []int{422}},
		{name: "largest amount", kind: KindDeposit, amount: amountMaximumMinor, wantAmount: amountMaximumMinor - 1,
			wantOutcome: OutcomeFail, wantReason: "idempotency_key_reused", wantStatuses: []int{422}},
		{name: "the system applies it", kind: KindWithdrawal, amount: 100, applied: true, wantAmount: 101,
			wantOutcome: OutcomeOK, wantStatuses: []int{200}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer {
					if test.applied && call.Attempt == 2 {
						return answer(200, transactionBody("tx-misused", StatusSettled, ""))
					}
					return fakeAnswer{}
				}
			})
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, OperationPrefix: "g3"})
			request := MoneyRequest{Kind: test.kind, Session: testSession(), Amount: test.amount, Misuse: true, Caller: Caller{Slot: 2, Iteration: 5}}
			route, wantBody := routeWithdrawal, fmt.Sprintf(`{"account_id":11,"amount":%d}`, test.wantAmount)
			switch test.kind {
			case KindWithdrawal:
				request.From = 11
			case KindDeposit:
				request.To = 11
				route = routeDeposit
			case KindTransfer:
				request.From, request.To = 11, 12
				route, wantBody = routeTransfer, fmt.Sprintf(`{"from_account_id":11,"to_account_id":12,"amount":%d}`, test.wantAmount)
			}
			result := c.Money(t.Context(), request)

			if result.Outcome != OutcomeOK {
				t.Errorf("original outcome %s, want ok", result.Outcome)
			}
			misuse := result.Misuse
			if misuse == nil {
				t.Fatal("no misuse result")
			}
			if misuse.Kind != KindMisuse || misuse.Key != result.Key || misuse.Op == result.Op || misuse.Outcome != test.wantOutcome ||
				misuse.Reason != test.wantReason || !slices.Equal(misuse.Statuses, test.wantStatuses) {
				t.Errorf("misuse %+v: want kind misuse, key %s, its own op, outcome %s reason %q statuses %v",
					misuse, result.Key, test.wantOutcome, test.wantReason, test.wantStatuses)
			}
			requests := gateway.requestsOf(route)
			if len(requests) != 2 || requests[1].IdempotencyKey != result.Key || requests[1].Body != wantBody {
				t.Fatalf("requests %+v: want the original, then the same key with body %s", requests, wantBody)
			}
			lines, _ := readJournal(t, journal)
			if len(lines) != 2 {
				t.Fatalf("%d journal lines, want 2", len(lines))
			}
			original, misused := lines[0], lines[1]
			if original.Kind != test.kind || original.Op != result.Op || original.MisuseOf != "" || original.Amount != test.amount || original.Seq != 1 {
				t.Errorf("original line %+v: want kind %s op %s amount %d seq 1, no misuse_of", original, test.kind, result.Op, test.amount)
			}
			if misused.Kind != KindMisuse || misused.Op != misuse.Op || !strings.HasPrefix(misused.Op, "g3-") || misused.MisuseOf != original.Op ||
				misused.Key != original.Key || misused.Amount != test.wantAmount || misused.From != original.From || misused.To != original.To ||
				misused.User != 7 || misused.VU != 2 || misused.Iter != 5 || misused.Seq != 2 || misused.Outcome != test.wantOutcome ||
				misused.Reason != test.wantReason || !slices.Equal(misused.Statuses, test.wantStatuses) || misused.Attempts != len(test.wantStatuses) ||
				misused.Dup != "" || misused.Invoke > misused.Complete {
				t.Errorf("misuse line %+v: want kind misuse, misuse_of %s, the same key and accounts, amount %d, user 7, vu 2, iter 5, seq 2, outcome %s reason %q",
					misused, original.Op, test.wantAmount, test.wantOutcome, test.wantReason)
			}
		})
	}
}

func TestMisuseNotSentAfterTheLoadStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	gateway, server := newFakeGateway(t, nil)
	observer := &recordingObserver{onExchange: func(observation) { cancel() }}
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, Observer: observer})
	result := c.Money(ctx, MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Misuse: true})
	if result.Misuse != nil || len(gateway.allRequests()) != 1 {
		t.Errorf("misuse %+v, gateway saw %d requests: want no misuse once the load stopped", result.Misuse, len(gateway.allRequests()))
	}
	if lines, _ := readJournal(t, journal); len(lines) != 1 {
		t.Errorf("%d journal lines, want 1", len(lines))
	}
}

func TestJournalLines(t *testing.T) {
	_, server := newFakeGateway(t, nil)
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, OperationPrefix: "g7"})
	requests := []MoneyRequest{
		{Kind: KindDeposit, To: 11, Amount: 100},
		{Kind: KindWithdrawal, From: 11, Amount: 30},
		{Kind: KindTransfer, From: 11, To: 12, Amount: 20, Key: "my-own-key"},
		{Kind: KindDeposit, To: 12, Amount: 5},
		{Kind: KindTransfer, From: 12, To: 11, Amount: 7},
	}
	// seq counts per ordering account: the debited one, or the credited one of a deposit.
	wantSeq := []int64{1, 2, 3, 1, 2}
	var results []Result
	for i, request := range requests {
		request.Session = testSession()
		request.Caller = Caller{Slot: 4, Iteration: int64(i)}
		results = append(results, c.Money(t.Context(), request))
	}
	lines, raw := readJournal(t, journal)
	if len(lines) != len(requests) {
		t.Fatalf("%d journal lines, want %d", len(lines), len(requests))
	}
	ops := map[string]bool{}
	for i, line := range lines {
		request, result := requests[i], results[i]
		if line.Version != 1 || line.Op != result.Op || !strings.HasPrefix(line.Op, "g7-") || ops[line.Op] {
			t.Errorf("line %d: v %d op %q; want v 1 and the result's op %q, unique, starting with g7-", i, line.Version, line.Op, result.Op)
		}
		ops[line.Op] = true
		if line.Kind != request.Kind || line.From != request.From || line.To != request.To || line.Amount != request.Amount {
			t.Errorf("line %d: %s %d→%d amount %d, want %s %d→%d amount %d", i, line.Kind, line.From, line.To, line.Amount,
				request.Kind, request.From, request.To, request.Amount)
		}
		if line.User != 7 || line.VU != 4 || line.Iter != int64(i) || line.Seq != wantSeq[i] {
			t.Errorf("line %d: user %d vu %d iter %d seq %d; want 7 4 %d %d", i, line.User, line.VU, line.Iter, line.Seq, i, wantSeq[i])
		}
		if line.Key == "" || line.Key != result.Key || line.Tx != "tx-"+line.Key {
			t.Errorf("line %d: key %q tx %q; want the result's key %q and its transaction", i, line.Key, line.Tx, result.Key)
		}
		if line.Invoke <= 0 || line.Invoke > line.Complete || line.Invoke != result.Invoke.UnixMicro() || line.Complete != result.Complete.UnixMicro() {
			t.Errorf("line %d: invoke %d complete %d; want 0 < invoke <= complete, the result's times", i, line.Invoke, line.Complete)
		}
		if line.Attempts != len(line.Statuses) || !slices.Equal(line.Statuses, []int{200}) || line.Outcome != OutcomeOK ||
			line.Status != StatusSettled || line.Reason != "" {
			t.Errorf("line %d: attempts %d statuses %v outcome %s status %s reason %q; want 1 [200] ok settled", i,
				line.Attempts, line.Statuses, line.Outcome, line.Status, line.Reason)
		}
		for _, absent := range []string{`"dup"`, `"dup_statuses"`, `"misuse_of"`, `"reason"`} {
			if strings.Contains(raw[i], absent) {
				t.Errorf("line %d %s has %s", i, raw[i], absent)
			}
		}
	}
	if lines[2].Key != "my-own-key" {
		t.Errorf("the request's key was not used: %q", lines[2].Key)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Invoke < lines[i-1].Complete {
			t.Errorf("line %d invoked at %d, before line %d completed at %d, though it was issued after", i, lines[i].Invoke, i-1, lines[i-1].Complete)
		}
	}
}

func TestConcurrentOperationsHaveUniqueOpsAndSequences(t *testing.T) {
	_, server := newFakeGateway(t, nil)
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal})
	const accounts, perAccount = 4, 12
	var group sync.WaitGroup
	for i := range accounts * perAccount {
		group.Go(func() {
			from := int64(i%accounts + 1)
			c.Money(t.Context(), MoneyRequest{Kind: KindTransfer, Session: testSession(), From: from, To: 99, Amount: 1})
		})
	}
	group.Wait()
	lines, _ := readJournal(t, journal)
	if len(lines) != accounts*perAccount {
		t.Fatalf("%d journal lines, want %d", len(lines), accounts*perAccount)
	}
	ops := map[string]bool{}
	sequences := map[int64][]int64{}
	for _, line := range lines {
		if ops[line.Op] {
			t.Errorf("op %s twice", line.Op)
		}
		ops[line.Op] = true
		sequences[line.From] = append(sequences[line.From], line.Seq)
	}
	for account, seqs := range sequences {
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Errorf("account %d: sequences %v, want 1 to %d once each", account, seqs, perAccount)
				break
			}
		}
	}
}

func TestSignup(t *testing.T) {
	const email = "ann@example.test"
	lost := fakeAnswer{drop: true}
	tests := []struct {
		name string
		// exists: the email is taken before the test.
		exists bool
		// answers script the attempts (the last repeats); the zero answer is the API's.
		answers  []fakeAnswer
		attempts int

		wantUser                       User
		wantErr                        bool
		wantStatus                     int
		wantCode                       string
		wantDefinitive                 bool
		wantOutcome, wantReason        string
		wantStatuses                   []int
		wantJournalUser, wantJournalTo int64
	}{
		{name: "created", answers: []fakeAnswer{{}}, attempts: 3,
			wantUser: User{UserID: 1, AccountID: 1001}, wantOutcome: OutcomeOK, wantStatuses: []int{201}, wantJournalUser: 1, wantJournalTo: 1001},
		{name: "email taken", exists: true, answers: []fakeAnswer{{}}, attempts: 3,
			wantErr: true, wantStatus: 409, wantCode: "email_taken", wantDefinitive: true, wantOutcome: OutcomeFail, wantReason: "email_taken", wantStatuses: []int{409}},
		{name: "answer lost, then email taken", answers: []fakeAnswer{lost, {}}, attempts: 3,
			wantOutcome: OutcomeInfo, wantReason: "email_taken", wantStatuses: []int{0, 409}},
		{name: "answer lost, then 503, then email taken", answers: []fakeAnswer{lost, answerUnavailable, {}}, attempts: 3,
			wantOutcome: OutcomeInfo, wantReason: "email_taken", wantStatuses: []int{0, 503, 409}},
		{name: "503, then email taken", exists: true, answers: []fakeAnswer{answerUnavailable, {}}, attempts: 3,
			wantErr: true, wantStatus: 409, wantCode: "email_taken", wantDefinitive: true, wantOutcome: OutcomeFail, wantReason: "email_taken", wantStatuses: []int{503, 409}},
		{name: "503 then created", answers: []fakeAnswer{answerUnavailable, {}}, attempts: 3,
			wantUser: User{UserID: 1, AccountID: 1001}, wantOutcome: OutcomeOK, wantStatuses: []int{503, 201}, wantJournalUser: 1, wantJournalTo: 1001},
		{name: "unavailable on every attempt", answers: []fakeAnswer{answerUnavailable}, attempts: 3,
			wantErr: true, wantStatus: 503, wantCode: "unavailable", wantOutcome: OutcomeInfo, wantReason: "unavailable", wantStatuses: []int{503, 503, 503}},
		{name: "no answer on every attempt", answers: []fakeAnswer{lost}, attempts: 2,
			wantErr: true, wantStatus: 0, wantOutcome: OutcomeInfo, wantReason: "connection_error", wantStatuses: []int{0, 0}},
		{name: "unreadable answer", answers: []fakeAnswer{answer(201, `{}`)}, attempts: 3,
			wantErr: true, wantStatus: 201, wantCode: "invalid_response", wantOutcome: OutcomeInfo, wantReason: "invalid_response", wantStatuses: []int{201}},
		{name: "invalid email is not retried", answers: []fakeAnswer{answer(400, `{"code":"invalid_email","message":"x"}`)}, attempts: 3,
			wantErr: true, wantStatus: 400, wantCode: "invalid_email", wantDefinitive: true, wantOutcome: OutcomeFail, wantReason: "invalid_email", wantStatuses: []int{400}},
		{name: "0 attempts means one", answers: []fakeAnswer{answerUnavailable}, attempts: 0,
			wantErr: true, wantStatus: 503, wantCode: "unavailable", wantOutcome: OutcomeInfo, wantReason: "unavailable", wantStatuses: []int{503}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				if test.exists {
					g.signUp(email)
				}
				g.script = func(call gatewayCall) fakeAnswer { return test.answers[min(call.Attempt, len(test.answers))-1] }
			})
			journal := newJournal(t)
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, OperationPrefix: "setup"})
			user, err := c.Signup(t.Context(), SetupCaller, email, "password1", test.attempts)

			if user != test.wantUser {
				t.Errorf("user %+v, want %+v", user, test.wantUser)
			}
			if (err != nil) != test.wantErr {
				t.Fatalf("error %v, want one: %v", err, test.wantErr)
			}
			if err != nil {
				var answerError *Error
				if !errors.As(err, &answerError) {
					t.Fatalf("error %T %v, want a *client.Error", err, err)
				}
				if answerError.Status != test.wantStatus || answerError.Code != test.wantCode || answerError.Definitive() != test.wantDefinitive ||
					!strings.Contains(err.Error(), "signup "+email) {
					t.Errorf("error %+v (%q): want status %d code %q definitive %v, naming the signup", answerError, err, test.wantStatus, test.wantCode, test.wantDefinitive)
				}
			}
			requests := gateway.requestsOf(routeSignup)
			if len(requests) != len(test.wantStatuses) {
				t.Errorf("gateway saw %d signups, want %d", len(requests), len(test.wantStatuses))
			}
			for _, r := range requests {
				if r.IdempotencyKey != "" || r.Authorization != "" || r.ContentType != "application/json" || r.Key != email {
					t.Errorf("signup request %+v: want a JSON body with the email, no key, no token", r)
				}
			}
			lines, raw := readJournal(t, journal)
			if len(lines) != 1 {
				t.Fatalf("%d journal lines, want 1", len(lines))
			}
			line := lines[0]
			if line.Kind != KindSignup || !strings.HasPrefix(line.Op, "setup-") || line.Outcome != test.wantOutcome || line.Reason != test.wantReason ||
				!slices.Equal(line.Statuses, test.wantStatuses) || line.Attempts != len(test.wantStatuses) || line.User != test.wantJournalUser ||
				line.To != test.wantJournalTo || line.VU != 0 || line.Iter != -1 || line.Invoke > line.Complete || strings.Contains(raw[0], `"key"`) {
				t.Errorf("journal line %s: want kind signup, outcome %s reason %q statuses %v user %d to %d vu 0 iter -1, no key",
					raw[0], test.wantOutcome, test.wantReason, test.wantStatuses, test.wantJournalUser, test.wantJournalTo)
			}
		})
	}
}

func TestSignin(t *testing.T) {
	tests := []struct {
		name    string
		exists  bool
		answers []fakeAnswer
		// wantSession is the session; zero: an error containing wantError.
		wantSession  Session
		wantError    string
		wantRequests int
	}{
		{name: "known user", exists: true, answers: []fakeAnswer{{}},
			wantSession: Session{Token: "token-1", UserID: 1, AccountID: 1001, Email: "ann@example.test"}, wantRequests: 1},
		{name: "retried after a 503", exists: true, answers: []fakeAnswer{answerUnavailable, {}},
			wantSession: Session{Token: "token-1", UserID: 1, AccountID: 1001, Email: "ann@example.test"}, wantRequests: 2},
		{name: "unknown user", answers: []fakeAnswer{{}}, wantError: "invalid_credentials", wantRequests: 1},
		{name: "unavailable", exists: true, answers: []fakeAnswer{answerUnavailable}, wantError: "HTTP 503", wantRequests: 3},
		{name: "no token in the answer", exists: true, answers: []fakeAnswer{answer(201, `{"user_id":1}`)}, wantError: "unreadable answer", wantRequests: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				if test.exists {
					g.signUp("ann@example.test")
				}
				g.script = func(call gatewayCall) fakeAnswer { return test.answers[min(call.Attempt, len(test.answers))-1] }
			})
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}})
			session, err := c.Signin(t.Context(), "ann@example.test", "password1")
			if session != test.wantSession {
				t.Errorf("session %+v, want %+v", session, test.wantSession)
			}
			if test.wantError == "" && err != nil || test.wantError != "" && (err == nil || !strings.Contains(err.Error(), test.wantError)) {
				t.Errorf("error %v, want one containing %q", err, test.wantError)
			}
			if got := len(gateway.requestsOf(routeSignin)); got != test.wantRequests {
				t.Errorf("gateway saw %d signins, want %d", got, test.wantRequests)
			}
		})
	}
}

func TestTransaction(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		answers []fakeAnswer

		wantTransaction Transaction
		wantFound       bool
		wantError       string
		wantPath        string
		wantRequests    int
	}{
		{name: "found", id: "t1", answers: []fakeAnswer{{}},
			wantTransaction: Transaction{ID: "t1", Kind: "deposit", Status: StatusSettled, Amount: 1, DestinationAccountID: 11},
			wantFound:       true, wantPath: "/v1/transactions/t1", wantRequests: 1},
		{name: "rejected, with its reason", id: "t2", answers: []fakeAnswer{answer(200, transactionBody("t2", StatusRejected, "insufficient_funds"))},
			wantTransaction: Transaction{ID: "t2", Kind: "deposit", Status: StatusRejected, Amount: 1, DestinationAccountID: 11, Reason: "insufficient_funds"},
			wantFound:       true, wantPath: "/v1/transactions/t2", wantRequests: 1},
		{name: "not found", id: "missing", answers: []fakeAnswer{{}}, wantPath: "/v1/transactions/missing", wantRequests: 1},
		{name: "id escaped in the path", id: "a/b c", answers: []fakeAnswer{{}},
			wantTransaction: Transaction{ID: "a/b c", Kind: "deposit", Status: StatusSettled, Amount: 1, DestinationAccountID: 11},
			wantFound:       true, wantPath: "/v1/transactions/a%2Fb%20c", wantRequests: 1},
		{name: "retried after a 503", id: "t1", answers: []fakeAnswer{answerUnavailable, {}},
			wantTransaction: Transaction{ID: "t1", Kind: "deposit", Status: StatusSettled, Amount: 1, DestinationAccountID: 11},
			wantFound:       true, wantPath: "/v1/transactions/t1", wantRequests: 2},
		{name: "unavailable", id: "t1", answers: []fakeAnswer{answerUnavailable}, wantError: "HTTP 503", wantPath: "/v1/transactions/t1", wantRequests: 3},
		{name: "forbidden", id: "t1", answers: []fakeAnswer{answer(403, `{"code":"forbidden"}`)}, wantError: "forbidden", wantPath: "/v1/transactions/t1", wantRequests: 1},
		{name: "unreadable", id: "t1", answers: []fakeAnswer{answer(200, "nope")}, wantError: "unreadable answer", wantPath: "/v1/transactions/t1", wantRequests: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer { return test.answers[min(call.Attempt, len(test.answers))-1] }
			})
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}})
			transaction, found, err := c.Transaction(t.Context(), testSession(), test.id)
			if transaction != test.wantTransaction || found != test.wantFound {
				t.Errorf("transaction %+v found %v, want %+v %v", transaction, found, test.wantTransaction, test.wantFound)
			}
			if test.wantError == "" && err != nil || test.wantError != "" && (err == nil || !strings.Contains(err.Error(), test.wantError)) {
				t.Errorf("error %v, want one containing %q", err, test.wantError)
			}
			requests := gateway.requestsOf(routeTransaction)
			if len(requests) != test.wantRequests {
				t.Fatalf("gateway saw %d reads, want %d", len(requests), test.wantRequests)
			}
			if requests[0].Path != test.wantPath || requests[0].Key != test.id || requests[0].Authorization != "Bearer token-7" {
				t.Errorf("read %+v: want path %s (id %q) with the session's token", requests[0], test.wantPath, test.id)
			}
		})
	}
}

func TestBalance(t *testing.T) {
	tests := []struct {
		name    string
		answers []fakeAnswer

		wantBalance  int64
		wantError    string
		wantRequests int
	}{
		{name: "balance", answers: []fakeAnswer{{}}, wantBalance: 4200, wantRequests: 1},
		{name: "zero balance", answers: []fakeAnswer{answer(200, `{"account_id":11,"balance":0}`)}, wantBalance: 0, wantRequests: 1},
		{name: "negative balance", answers: []fakeAnswer{answer(200, `{"account_id":11,"balance":-5}`)}, wantBalance: -5, wantRequests: 1},
		{name: "retried after a 503", answers: []fakeAnswer{answerUnavailable, {}}, wantBalance: 4200, wantRequests: 2},
		{name: "unavailable", answers: []fakeAnswer{answerUnavailable}, wantError: "HTTP 503", wantRequests: 3},
		{name: "not found", answers: []fakeAnswer{answer(404, `{"code":"not_found"}`)}, wantError: "HTTP 404", wantRequests: 1},
		{name: "no balance in the answer", answers: []fakeAnswer{answer(200, `{"account_id":11}`)}, wantError: "unreadable answer", wantRequests: 1},
		{name: "unreadable", answers: []fakeAnswer{answer(200, `[`)}, wantError: "unreadable answer", wantRequests: 1},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t, func(g *fakeGateway) {
				g.script = func(call gatewayCall) fakeAnswer { return test.answers[min(call.Attempt, len(test.answers))-1] }
			})
			c := newTestClient(t, Options{BaseURLs: []string{server.URL}})
			balance, err := c.Balance(t.Context(), testSession(), 11)
			if balance != test.wantBalance {
				t.Errorf("balance %d, want %d", balance, test.wantBalance)
			}
			if test.wantError == "" && err != nil || test.wantError != "" && (err == nil || !strings.Contains(err.Error(), test.wantError) || !strings.Contains(err.Error(), "account 11")) {
				t.Errorf("error %v, want one about account 11 containing %q", err, test.wantError)
			}
			requests := gateway.requestsOf(routeAccount)
			if len(requests) != test.wantRequests || requests[0].Path != "/v1/accounts/11" || requests[0].Authorization != "Bearer token-7" {
				t.Errorf("requests %+v: want %d reads of /v1/accounts/11 with the session's token", requests, test.wantRequests)
			}
		})
	}
}

func TestObserver(t *testing.T) {
	ok := func(route string, status int) observation { return observation{Route: route, Status: status} }
	failed := func(route string, status int) observation {
		return observation{Route: route, Status: status, Failed: true}
	}
	deposit := func(ctx context.Context, c *HTTP, change func(*MoneyRequest)) {
		request := MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1, Key: "k1"}
		if change != nil {
			change(&request)
		}
		c.Money(ctx, request)
	}
	tests := []struct {
		name    string
		script  func(gatewayCall) fakeAnswer
		refused bool
		pollFor time.Duration
		run     func(ctx context.Context, c *HTTP)
		want    []observation
	}{
		{name: "settled deposit", run: func(ctx context.Context, c *HTTP) { deposit(ctx, c, nil) },
			want: []observation{ok(routeDeposit, 200)}},
		{name: "withdrawal retried after a 503",
			script: func(call gatewayCall) fakeAnswer {
				if call.Attempt == 1 {
					return answerUnavailable
				}
				return fakeAnswer{}
			},
			run: func(ctx context.Context, c *HTTP) {
				c.Money(ctx, MoneyRequest{Kind: KindWithdrawal, Session: testSession(), From: 11, Amount: 1})
			},
			want: []observation{failed(routeWithdrawal, 503), ok(routeWithdrawal, 200)}},
		{name: "refused transfer", script: func(gatewayCall) fakeAnswer { return answer(403, `{"code":"forbidden"}`) },
			run: func(ctx context.Context, c *HTTP) {
				c.Money(ctx, MoneyRequest{Kind: KindTransfer, Session: testSession(), From: 11, To: 12, Amount: 1})
			},
			want: []observation{failed(routeTransfer, 403)}},
		{name: "the original meets its key in flight",
			script: func(call gatewayCall) fakeAnswer {
				if call.Attempt == 1 {
					return answerInFlight
				}
				return fakeAnswer{}
			},
			run:  func(ctx context.Context, c *HTTP) { deposit(ctx, c, nil) },
			want: []observation{failed(routeDeposit, 409), ok(routeDeposit, 200)}},
		{name: "a delayed duplicate meets the key in flight",
			script: func(call gatewayCall) fakeAnswer {
				if call.Attempt == 2 {
					return answerInFlight
				}
				return fakeAnswer{}
			},
			run: func(ctx context.Context, c *HTTP) {
				deposit(ctx, c, func(r *MoneyRequest) { r.Duplicate = DuplicateDelayed })
			},
			want: []observation{ok(routeDeposit, 200), ok(routeDeposit, 409), ok(routeDeposit, 200)}},
		{name: "a delayed duplicate that gets a 503",
			script: func(call gatewayCall) fakeAnswer {
				if call.Attempt == 2 {
					return answerUnavailable
				}
				return fakeAnswer{}
			},
			run: func(ctx context.Context, c *HTTP) {
				deposit(ctx, c, func(r *MoneyRequest) { r.Duplicate = DuplicateDelayed })
			},
			want: []observation{ok(routeDeposit, 200), failed(routeDeposit, 503), ok(routeDeposit, 200)}},
		{name: "misuse refused", run: func(ctx context.Context, c *HTTP) { deposit(ctx, c, func(r *MoneyRequest) { r.Misuse = true }) },
			want: []observation{ok(routeDeposit, 200), ok(routeDeposit, 422)}},
		{name: "misuse applied",
			script: func(call gatewayCall) fakeAnswer {
				if call.Attempt == 2 {
					return answer(200, transactionBody("t2", StatusSettled, ""))
				}
				return fakeAnswer{}
			},
			run:  func(ctx context.Context, c *HTTP) { deposit(ctx, c, func(r *MoneyRequest) { r.Misuse = true }) },
			want: []observation{ok(routeDeposit, 200), failed(routeDeposit, 200)}},
		{name: "accepted, then polled",
			script: func(call gatewayCall) fakeAnswer {
				if call.Route == routeDeposit {
					return answer(202, transactionBody("t1", StatusAccepted, ""))
				}
				return fakeAnswer{}
			},
			pollFor: 5 * time.Second,
			run:     func(ctx context.Context, c *HTTP) { deposit(ctx, c, nil) },
			want:    []observation{ok(routeDeposit, 202), ok(routeTransaction, 200)}},
		{name: "transaction not found",
			run:  func(ctx context.Context, c *HTTP) { _, _, _ = c.Transaction(ctx, testSession(), "missing") },
			want: []observation{ok(routeTransaction, 404)}},
		{name: "transaction forbidden", script: func(gatewayCall) fakeAnswer { return answer(403, `{"code":"forbidden"}`) },
			run:  func(ctx context.Context, c *HTTP) { _, _, _ = c.Transaction(ctx, testSession(), "t1") },
			want: []observation{failed(routeTransaction, 403)}},
		{name: "balance", run: func(ctx context.Context, c *HTTP) { _, _ = c.Balance(ctx, testSession(), 11) },
			want: []observation{ok(routeAccount, 200)}},
		{name: "signup, then signup again, then signin",
			run: func(ctx context.Context, c *HTTP) {
				_, _ = c.Signup(ctx, SetupCaller, "bob@example.test", "password1", 1)
				_, _ = c.Signup(ctx, SetupCaller, "bob@example.test", "password1", 1)
				_, _ = c.Signin(ctx, "bob@example.test", "password1")
			},
			want: []observation{ok(routeSignup, 201), failed(routeSignup, 409), ok(routeSignin, 201)}},
		{name: "connection refused", refused: true,
			run:  func(ctx context.Context, c *HTTP) { deposit(ctx, c, nil) },
			want: []observation{failed(routeDeposit, 0), failed(routeDeposit, 0), failed(routeDeposit, 0)}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, server := newFakeGateway(t, func(g *fakeGateway) { g.script = test.script })
			base := server.URL
			if test.refused {
				base = refusedURL(t)
			}
			observer := &recordingObserver{}
			c := newTestClient(t, Options{BaseURLs: []string{base}, Observer: observer, PollFor: test.pollFor})
			test.run(t.Context(), c)
			observations, malformed := observer.seen()
			if !slices.Equal(observations, test.want) {
				t.Errorf("observed\n%v\nwant\n%v", observations, test.want)
			}
			if len(malformed) > 0 {
				t.Errorf("exchanges with a negative duration or no time: %v", malformed)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	c := newTestClient(t, Options{BaseURLs: []string{"http://127.0.0.1:1"}, RetryBackoff: 10 * time.Millisecond, RetryMaxBackoff: 50 * time.Millisecond})
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{name: "first retry", attempt: 1, want: 10 * time.Millisecond},
		{name: "doubles", attempt: 2, want: 20 * time.Millisecond},
		{name: "doubles again", attempt: 3, want: 40 * time.Millisecond},
		{name: "capped", attempt: 4, want: 50 * time.Millisecond},
		{name: "capped far out", attempt: 60, want: 50 * time.Millisecond},
		{name: "retry-after longer than the backoff", attempt: 1, retryAfter: 30 * time.Millisecond, want: 30 * time.Millisecond},
		{name: "retry-after shorter than the backoff", attempt: 3, retryAfter: 15 * time.Millisecond, want: 40 * time.Millisecond},
		{name: "retry-after beyond the maximum", attempt: 1, retryAfter: time.Second, want: 50 * time.Millisecond},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := c.backoff(test.attempt, test.retryAfter); got != test.want {
				t.Errorf("backoff(%d, %s) = %s, want %s", test.attempt, test.retryAfter, got, test.want)
			}
		})
	}
}

func TestBackoffJitterIsBoundedAndReplaysWithTheSeed(t *testing.T) {
	draws := func(seed int64) []time.Duration {
		c := newTestClient(t, Options{BaseURLs: []string{"http://127.0.0.1:1"}, RetryBackoff: 10 * time.Millisecond,
			RetryMaxBackoff: time.Second, RetryJitter: 0.5, Seed: seed})
		var waits []time.Duration
		for range 200 {
			waits = append(waits, c.backoff(1, 0))
		}
		return waits
	}
	first, again, other := draws(42), draws(42), draws(43)
	distinct := map[time.Duration]bool{}
	for _, wait := range first {
		if wait < 5*time.Millisecond || wait > 15*time.Millisecond {
			t.Fatalf("backoff %s with jitter 0.5 around 10 ms: want 5 to 15 ms", wait)
		}
		distinct[wait] = true
	}
	if len(distinct) < 100 {
		t.Errorf("%d distinct backoffs in 200 draws: the jitter does not vary", len(distinct))
	}
	if !slices.Equal(first, again) {
		t.Errorf("the same seed drew different backoffs")
	}
	if slices.Equal(first, other) {
		t.Errorf("seeds 42 and 43 drew the same backoffs")
	}
}

func TestRetryAfterIsHonouredUpToTheMaximumBackoff(t *testing.T) {
	// A 429 with Retry-After: 1 (second), a backoff of 1 ms and a maximum backoff of 20 ms: the retry waits the
	// maximum backoff, no less (the server asked for more), no more (the client's bound wins).
	gateway, server := newFakeGateway(t, func(g *fakeGateway) {
		g.script = func(call gatewayCall) fakeAnswer {
			if call.Attempt == 1 {
				return fakeAnswer{status: 429, body: `{"code":"rate_limited"}`, retryAfter: "1"}
			}
			return fakeAnswer{}
		}
	})
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, RetryBackoff: time.Millisecond, RetryMaxBackoff: 20 * time.Millisecond})
	start := time.Now()
	result := c.Money(t.Context(), MoneyRequest{Kind: KindDeposit, Session: testSession(), To: 11, Amount: 1})
	elapsed := time.Since(start)
	if !slices.Equal(result.Statuses, []int{429, 200}) || result.Outcome != OutcomeOK {
		t.Fatalf("statuses %v outcome %s, want [429 200] ok", result.Statuses, result.Outcome)
	}
	if elapsed < 20*time.Millisecond || elapsed >= time.Second {
		t.Errorf("the retry came after %s, want the maximum backoff (20 ms): at least the 1 ms backoff raised by Retry-After, less than its second", elapsed)
	}
	if len(gateway.allRequests()) != 2 {
		t.Errorf("gateway saw %d requests, want 2", len(gateway.allRequests()))
	}
}

func TestMergeDuplicate(t *testing.T) {
	early, late := time.Unix(100, 0), time.Unix(101, 0)
	settled := classification{outcome: OutcomeOK, status: StatusSettled, tx: "t1", fromLedger: true, acceptedAt: late, finalAt: late}
	acceptedEarly := classification{outcome: OutcomeInfo, status: StatusAccepted, tx: "t1", acceptedAt: early}
	inFlight := classification{outcome: OutcomeInfo, reason: codeIdempotencyKeyInFlight}
	timedOut := classification{outcome: OutcomeInfo, reason: reasonTimeout}
	refused := classification{outcome: OutcomeFail, reason: "rate_limited", finalAt: early}
	tests := []struct {
		name                string
		original, duplicate classification
		want                classification
	}{
		{name: "original settled", original: settled, duplicate: inFlight, want: settled},
		{name: "duplicate settled while the original met it in flight", original: inFlight, duplicate: settled, want: settled},
		{name: "duplicate settled, the original accepted earlier", original: acceptedEarly, duplicate: settled,
			want: classification{outcome: OutcomeOK, status: StatusSettled, tx: "t1", fromLedger: true, acceptedAt: early, finalAt: late}},
		{name: "original refused, duplicate unknown", original: refused, duplicate: inFlight,
			want: classification{outcome: OutcomeInfo, reason: "rate_limited"}},
		{name: "original refused, duplicate accepted", original: refused, duplicate: acceptedEarly,
			want: classification{outcome: OutcomeInfo, reason: "rate_limited", status: StatusAccepted, tx: "t1", acceptedAt: early}},
		{name: "original accepted, duplicate timed out", original: acceptedEarly, duplicate: timedOut, want: acceptedEarly},
		{name: "original timed out, duplicate accepted", original: timedOut, duplicate: acceptedEarly,
			want: classification{outcome: OutcomeInfo, reason: reasonTimeout, status: StatusAccepted, tx: "t1", acceptedAt: early}},
		{name: "both unknown", original: timedOut, duplicate: inFlight, want: timedOut},
		{name: "both refused", original: refused, duplicate: refused, want: refused},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := mergeDuplicate(test.original, test.duplicate); got != test.want {
				t.Errorf("mergeDuplicate(%+v, %+v)\n= %+v\nwant %+v", test.original, test.duplicate, got, test.want)
			}
		})
	}
}

// TestClassifyMoneyAmbiguity covers answers the fake gateway cannot easily produce in sequence.
func TestClassifyMoneyAmbiguity(t *testing.T) {
	unauthenticated := exchange{status: 401, body: []byte(`{"code":"unauthenticated"}`)}
	tests := []struct {
		name        string
		exchanges   []exchange
		wantOutcome string
		wantReason  string
	}{
		{name: "401 alone", exchanges: []exchange{unauthenticated}, wantOutcome: OutcomeFail, wantReason: "unauthenticated"},
		{name: "401 after a connection error", exchanges: []exchange{{status: 0}, unauthenticated}, wantOutcome: OutcomeInfo, wantReason: "unauthenticated"},
		{name: "401 after a timeout", exchanges: []exchange{{status: 0, timedOut: true}, unauthenticated}, wantOutcome: OutcomeInfo, wantReason: "unauthenticated"},
		{name: "401 after a 202", exchanges: []exchange{{status: 202, body: []byte(`{"status":"accepted"}`)}, unauthenticated}, wantOutcome: OutcomeInfo, wantReason: "unauthenticated"},
		{name: "401 after a 429", exchanges: []exchange{{status: 429}, unauthenticated}, wantOutcome: OutcomeFail, wantReason: "unauthenticated"},
		{name: "timeout after a 503", exchanges: []exchange{{status: 503}, {status: 0, timedOut: true}}, wantOutcome: OutcomeInfo, wantReason: reasonTimeout},
		{name: "connection error last", exchanges: []exchange{{status: 0}}, wantOutcome: OutcomeInfo, wantReason: reasonConnectionError},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := classifyMoney(test.exchanges)
			if got.outcome != test.wantOutcome || got.reason != test.wantReason {
				t.Errorf("classified %+v, want outcome %s reason %s", got, test.wantOutcome, test.wantReason)
			}
		})
	}
}

func TestIdempotencyKeysAreRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		key := NewIdempotencyKey()
		if len(key) != 32 || strings.Trim(key, "0123456789abcdef") != "" {
			t.Fatalf("key %q: want 32 lower-case hex digits", key)
		}
		if seen[key] {
			t.Fatalf("key %q drawn twice", key)
		}
		seen[key] = true
	}
}

// Ensure the fake gateway's transaction answers decode as the client's Transaction (a broken fake would make
// the tests above pass for the wrong reason).
func TestFakeTransactionBodyDecodes(t *testing.T) {
	var got Transaction
	if err := json.Unmarshal([]byte(transactionBody("t1", StatusRejected, "insufficient_funds")), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "t1" || got.Status != StatusRejected || got.Reason != "insufficient_funds" {
		t.Errorf("decoded %+v", got)
	}
}

func TestEarlyTimeoutGivesUpTheFirstAttemptAndRetriesWithTheKey(t *testing.T) {
	// The gateway hangs on the client's first attempt and answers the others. It cannot tell the first attempt by
	// its arrival order: the client may give up on it before it reaches the gateway (the early timeout runs from
	// the send, dial included), or it may arrive after the retry. It tells it by time instead: the retry is only
	// sent after the client has recorded the first attempt's end, so whatever arrives before that is the first.
	gaveUp := make(chan struct{})
	var gaveUpOnce sync.Once
	observer := &recordingObserver{onExchange: func(observation) { gaveUpOnce.Do(func() { close(gaveUp) }) }}
	var hungMutex sync.Mutex
	hung := 0
	gateway, server := newFakeGateway(t, func(g *fakeGateway) {
		g.script = func(call gatewayCall) fakeAnswer {
			select {
			case <-gaveUp:
				return fakeAnswer{}
			default:
				hungMutex.Lock()
				hung++
				hungMutex.Unlock()
				return fakeAnswer{hang: true}
			}
		}
	})
	journal := newJournal(t)
	options := Options{BaseURLs: []string{server.URL}, Journal: journal, Timeout: 5 * time.Second, Observer: observer}
	c := newTestClient(t, options)
	started := time.Now()
	result := c.Money(t.Context(), MoneyRequest{Kind: KindWithdrawal, Session: testSession(), From: 11, Amount: 5,
		FirstAttemptTimeout: 20 * time.Millisecond, Duplicate: DuplicateDelayed})
	// Without the early timeout the hung first attempt would end only at the client's timeout.
	if elapsed := time.Since(started); elapsed >= options.Timeout {
		t.Errorf("the money operation took %s, not less than the client's timeout %s: the first attempt was not given up early",
			elapsed, options.Timeout)
	}
	if result.Outcome != OutcomeOK || !slices.Equal(result.Statuses, []int{0, 200}) || !slices.Equal(result.DuplicateStatuses, []int{200}) {
		t.Errorf("result %+v: want ok after [0 200], the duplicate [200] (its first attempt is not cut short)", result)
	}
	// The gateway sees the retry and the delayed duplicate, and the abandoned first attempt if it got there (the
	// API may or may not have received it: MoneyRequest.FirstAttemptTimeout).
	requests := gateway.requestsOf(routeWithdrawal)
	hungMutex.Lock()
	hungRequests := hung
	hungMutex.Unlock()
	if len(requests) < 2 || len(requests) > 3 || hungRequests > 1 {
		t.Fatalf("requests %+v, %d of them hung: want the retry and the delayed duplicate, after at most the abandoned first attempt",
			requests, hungRequests)
	}
	t.Logf("the abandoned first attempt reached the gateway: %t", len(requests) == 3)
	for i, r := range requests {
		if r.IdempotencyKey != result.Key {
			t.Errorf("request %d has key %q, want the operation's key %s", i, r.IdempotencyKey, result.Key)
		}
	}
	lines, _ := readJournal(t, journal)
	if len(lines) != 1 || lines[0].Attempts != 2 || !slices.Equal(lines[0].Statuses, []int{0, 200}) {
		t.Fatalf("journal %+v: want one line with attempts [0 200]", lines)
	}
}

func TestReplayIsJournaledAsItsOwnOperation(t *testing.T) {
	gateway, server := newFakeGateway(t, nil)
	journal := newJournal(t)
	c := newTestClient(t, Options{BaseURLs: []string{server.URL}, Journal: journal, OperationPrefix: "g5"})
	first := c.Money(t.Context(), MoneyRequest{Kind: KindTransfer, Session: testSession(), From: 11, To: 12, Amount: 70,
		Intent: "whole-balance"})
	replay := c.Money(t.Context(), MoneyRequest{Kind: KindTransfer, Session: testSession(), From: 11, To: 12, Amount: 70,
		Key: first.Key, ReplayOf: first.Op, Intent: "whole-balance"})
	if replay.Op == first.Op || replay.Key != first.Key || replay.Outcome != OutcomeOK || replay.TransactionID != first.TransactionID {
		t.Errorf("replay %+v: want its own op, the first's key %s and transaction %s, ok", replay, first.Key, first.TransactionID)
	}
	requests := gateway.requestsOf(routeTransfer)
	if len(requests) != 2 || requests[1].Body != requests[0].Body || requests[1].IdempotencyKey != first.Key {
		t.Fatalf("requests %+v: want the same body twice with one key", requests)
	}
	lines, _ := readJournal(t, journal)
	if len(lines) != 2 {
		t.Fatalf("%d journal lines, want 2", len(lines))
	}
	if lines[0].ReplayOf != "" || lines[0].Intent != "whole-balance" || lines[0].Seq != 1 {
		t.Errorf("first line %+v: want no replay_of, intent whole-balance, seq 1", lines[0])
	}
	if lines[1].ReplayOf != first.Op || lines[1].Op != replay.Op || lines[1].Key != first.Key || lines[1].Amount != 70 ||
		lines[1].From != 11 || lines[1].To != 12 || lines[1].Kind != KindTransfer || lines[1].Seq != 2 || lines[1].Intent != "whole-balance" {
		t.Errorf("replay line %+v: want replay_of %s, the same kind, key and body, seq 2", lines[1], first.Op)
	}
}
