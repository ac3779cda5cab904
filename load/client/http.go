package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ledgerproof/ledgerproof/load/history"
	"github.com/ledgerproof/ledgerproof/load/profile"
)

// Error codes of the reference API this client branches on (sut/gateway/errors.go), and the reasons it makes
// up for exchanges that got no answer.
const (
	codeIdempotencyKeyInFlight = "idempotency_key_in_flight"
	codeEmailTaken             = "email_taken"
	reasonTimeout              = "timeout"
	reasonConnectionError      = "connection_error"
	reasonInvalidResponse      = "invalid_response"
)

// amountMaximumMinor is the API's largest amount (sut/ledger MaxAmountMinor): a misuse request stays valid.
const amountMaximumMinor = 100_000_000_000

// maxResponseBytes bounds a response body read: the API's answers are a few hundred bytes.
const maxResponseBytes = 64 << 10

// Options configure the HTTP client. Zero values take the documented defaults (Validate fills them).
type Options struct {
	// BaseURLs are the system's base URLs, used round-robin. Required.
	BaseURLs []string
	// Timeout bounds one HTTP request. Default 10s.
	Timeout time.Duration
	// Wait is sent as "Prefer: wait=N" on money requests; 0 sends none.
	Wait time.Duration
	// PollInterval and PollFor: after an accepted answer without a final outcome the client asks for the
	// transaction's status every PollInterval (default 100ms) for at most PollFor (0: no polling).
	PollInterval, PollFor time.Duration
	// RetryAttempts counts attempts including the first (default 3). Backoff doubles from RetryBackoff
	// (default 50ms) up to RetryMaxBackoff (default 1s), times a factor in [1-RetryJitter, 1+RetryJitter].
	RetryAttempts                 int
	RetryBackoff, RetryMaxBackoff time.Duration
	RetryJitter                   float64
	// DuplicateDelay is how long after the original's answer a delayed duplicate is sent. Default 100ms.
	DuplicateDelay time.Duration
	// MaxConnections bounds the connections per base URL. Default 1024.
	MaxConnections int
	// IdleConnTimeout closes a connection that has carried nothing for that long. Default 10s. Connections
	// are reused most recent first, so the ones a burst opened beyond the steady need stay idle and close
	// after this; the system under test then stops paying for them (each open connection holds buffers and a
	// goroutine in a Go server: 75-110 KB of the reference gateway's resident memory each, docs/performance.md,
	// eleventh pass).
	// Keep it below the server's idle timeout, so that the client, not the server, closes an idle connection
	// and no request is sent on one the server is closing.
	IdleConnTimeout time.Duration
	// OperationPrefix starts every operation id ("<prefix>-<n>"); it keeps ids unique across generator
	// processes. Default "g0".
	OperationPrefix string
	// Seed drives the backoff jitter.
	Seed int64
	// Journal receives every logical operation; nil: none.
	Journal *history.Journal
	// Observer receives every HTTP exchange. Default NoObserver.
	Observer Observer
	// Clock is the time source. Default time.Now.
	Clock func() time.Time
	// Profile, when set, is the system's dialect (load/profile): requests are
	// rendered in it and answers translated back into the reference's.
	// Nil: the reference API (sut/openapi.yaml).
	Profile *profile.Profile
	// Engine is the HTTP client underneath: EngineStandard (Go's net/http,
	// the default) or EngineFast (fasthttp: a third less of the generator's
	// CPU per request at 3,600 TPS, docs/performance.md, sixteenth pass).
	// EngineFast bounds a request by its context's deadline and Timeout, but
	// a context cancelled without a deadline does not cut a request already
	// sent: it ends with its answer or at Timeout.
	Engine string
}

// The HTTP engines (Options.Engine).
const (
	EngineStandard = "std"
	EngineFast     = "fast"
)

func (o *Options) validate() error {
	if len(o.BaseURLs) == 0 {
		return errors.New("client: no base URL")
	}
	for i, base := range o.BaseURLs {
		parsed, err := url.Parse(base)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return fmt.Errorf("client: base URL %q is not an http(s) URL", base)
		}
		o.BaseURLs[i] = strings.TrimRight(base, "/")
	}
	switch o.Engine {
	case "":
		o.Engine = EngineStandard
	case EngineStandard, EngineFast:
	default:
		return fmt.Errorf("client: HTTP engine %q is neither %q nor %q", o.Engine, EngineStandard, EngineFast)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Wait < 0 || o.PollFor < 0 || o.RetryBackoff < 0 || o.RetryMaxBackoff < 0 || o.DuplicateDelay < 0 {
		return errors.New("client: negative duration")
	}
	if o.Wait >= o.Timeout {
		return fmt.Errorf("client: wait %s must be shorter than the request timeout %s", o.Wait, o.Timeout)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.RetryAttempts <= 0 {
		o.RetryAttempts = 3
	}
	if o.RetryAttempts > 100 {
		return fmt.Errorf("client: %d retry attempts: at most 100", o.RetryAttempts)
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = 50 * time.Millisecond
	}
	if o.RetryMaxBackoff == 0 {
		o.RetryMaxBackoff = time.Second
	}
	if o.RetryJitter < 0 || o.RetryJitter > 1 {
		return fmt.Errorf("client: jitter %v: want 0 to 1", o.RetryJitter)
	}
	if o.DuplicateDelay == 0 {
		o.DuplicateDelay = 100 * time.Millisecond
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 1024
	}
	if o.IdleConnTimeout < 0 {
		return fmt.Errorf("client: idle connection timeout %s is negative", o.IdleConnTimeout)
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 10 * time.Second
	}
	if o.OperationPrefix == "" {
		o.OperationPrefix = "g0"
	}
	if o.Observer == nil {
		o.Observer = NoObserver{}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return nil
}

// HTTP is the reference API's client (sut/openapi.yaml). Safe for concurrent use.
type HTTP struct {
	options Options
	http    *http.Client
	// fast is the fasthttp client when options.Engine is EngineFast (then http is nil).
	fast *fasthttp.Client
	// prefer is the Prefer header of money requests ("wait=5"), from options.Wait.
	prefer string

	roundRobin atomic.Uint64
	operations atomic.Int64

	// sequenceMutex guards sequences: the money operations issued per ordering account (journal field seq).
	sequenceMutex sync.Mutex
	sequences     map[int64]int64

	randomMutex sync.Mutex
	random      *mathrand.Rand
}

var _ Ledger = (*HTTP)(nil)

// NewHTTP returns a client of the reference API.
func NewHTTP(options Options) (*HTTP, error) {
	options.BaseURLs = append([]string(nil), options.BaseURLs...)
	if err := options.validate(); err != nil {
		return nil, err
	}
	c := &HTTP{
		options:   options,
		prefer:    "wait=" + strconv.FormatFloat(options.Wait.Seconds(), 'f', -1, 64),
		sequences: make(map[int64]int64),
		random:    mathrand.New(mathrand.NewPCG(uint64(options.Seed), 0x6c6f6164)),
	}
	if options.Engine == EngineFast {
		c.fast = newFastClient(options)
		return c, nil
	}
	transport := &http.Transport{
		Proxy:                 nil, // the load goes where it is told, never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: options.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          options.MaxConnections * len(options.BaseURLs),
		MaxIdleConnsPerHost:   options.MaxConnections,
		MaxConnsPerHost:       options.MaxConnections,
		IdleConnTimeout:       options.IdleConnTimeout,
		DisableCompression:    true,
		ResponseHeaderTimeout: options.Timeout,
	}
	c.http = &http.Client{Transport: transport, Timeout: options.Timeout, CheckRedirect: noRedirects}
	return c, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close releases idle connections.
func (c *HTTP) Close() {
	if c.fast != nil {
		c.fast.CloseIdleConnections()
		return
	}
	c.http.CloseIdleConnections()
}

// nextOperationID returns a new operation id, unique within the process and, by its prefix, across processes.
func (c *HTTP) nextOperationID() string {
	return c.options.OperationPrefix + "-" + strconv.FormatInt(c.operations.Add(1), 10)
}

// nextSequence returns the next issue sequence number of an account, starting at 1.
func (c *HTTP) nextSequence(accountID int64) int64 {
	c.sequenceMutex.Lock()
	defer c.sequenceMutex.Unlock()
	c.sequences[accountID]++
	return c.sequences[accountID]
}

// ---- HTTP exchanges ----

// request is one HTTP request of the client, repeated as is on every attempt.
type request struct {
	method string
	// route is the route template ("POST /v1/transfers"), the metrics' label.
	route string
	path  string
	body  []byte
	token string
	key   string
	wait  bool
	// firstAttemptTimeout, when positive, bounds the first attempt (MoneyRequest.FirstAttemptTimeout).
	firstAttemptTimeout time.Duration
	// expected marks the statuses that are not failures for http_req_failed.
	expected func(status int) bool
	// op is the profile's operation whose answer is translated; "" with no
	// profile.
	op string
}

// dialect renders a request in the profile's dialect, when there is one.
func (c *HTTP) dialect(spec request, op string, values profile.Values) request {
	if c.options.Profile == nil {
		return spec
	}
	rendered := c.options.Profile.Render(op, values)
	spec.method, spec.path, spec.body, spec.op = rendered.Method, rendered.Path, rendered.Body, op
	return spec
}

// moneyValues are a money request's template values.
func moneyValues(kind string, from, to, amount int64) profile.Values {
	values := profile.Values{Amount: amount, From: from, To: to, Account: from}
	if kind == KindDeposit {
		values.Account = to
	}
	return values
}

// exchange is one HTTP attempt and its answer.
type exchange struct {
	// status is 0 when no answer came (connection error, timeout).
	status     int
	body       []byte
	retryAfter time.Duration
	timedOut   bool
	errorText  string
	at         time.Time
}

func (e exchange) code() string {
	var body struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(e.body, &body) != nil {
		return ""
	}
	return body.Code
}

// failure is the error of an exchange that did not give the answer wanted.
func (e exchange) failure(operation string) *Error {
	return &Error{Operation: operation, Status: e.status, Code: e.code(), Detail: e.describe()}
}

func (e exchange) describe() string {
	if e.status == 0 {
		return "no answer: " + e.errorText
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.TrimSpace(string(e.body)))
}

func expectedSuccess(status int) bool { return status >= 200 && status < 400 }

func expectedDuplicate(status int) bool {
	return expectedSuccess(status) || status == http.StatusConflict
}

func expectedMisuse(status int) bool { return status == http.StatusUnprocessableEntity }

func (c *HTTP) send(ctx context.Context, spec request) exchange {
	base := c.options.BaseURLs[(c.roundRobin.Add(1)-1)%uint64(len(c.options.BaseURLs))]
	if c.fast != nil {
		return c.sendFast(ctx, spec, base)
	}
	var body io.Reader
	if spec.body != nil {
		body = bytes.NewReader(spec.body)
	}
	start := c.options.Clock()
	httpRequest, err := http.NewRequestWithContext(ctx, spec.method, base+spec.path, body)
	if err != nil {
		return exchange{errorText: err.Error(), at: start}
	}
	c.eachHeader(spec, httpRequest.Header.Set)
	response, err := c.http.Do(httpRequest)
	if err != nil {
		var netError net.Error
		return c.unanswered(spec, start, err.Error(), errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netError) && netError.Timeout()))
	}
	content, readErr := io.ReadAll(io.LimitReader(response.Body, maxResponseBytes))
	response.Body.Close()
	answered := exchange{status: response.StatusCode, body: content, at: c.options.Clock()}
	if readErr != nil {
		// The status came but not the whole body: the answer is unreadable, as if none came.
		answered = exchange{errorText: "reading the answer: " + readErr.Error(), at: answered.at}
	}
	return c.answered(spec, start, answered, response.Header.Get("Retry-After"))
}

// answered completes an exchange that got an answer (or an unreadable one:
// status 0): the dialect's answer is read as the reference's, Retry-After is
// parsed, and the observer is told.
func (c *HTTP) answered(spec request, start time.Time, answered exchange, retryAfter string) exchange {
	if answered.status != 0 && spec.op != "" {
		// The system's dialect, read as the reference's answer.
		answered.status, answered.body = c.options.Profile.Translate(spec.op, answered.status, answered.body)
	}
	// Most answers have no Retry-After: parsing "" would allocate an error per request.
	if retryAfter != "" {
		if seconds, err := strconv.Atoi(retryAfter); err == nil && seconds > 0 {
			answered.retryAfter = time.Duration(seconds) * time.Second
		}
	}
	c.options.Observer.HTTP(spec.route, answered.status, answered.at.Sub(start), answered.status == 0 || !spec.expected(answered.status), answered.at)
	return answered
}

// eachHeader gives every header of a request to set, in the profile's
// dialect when there is one: both engines send the same headers.
func (c *HTTP) eachHeader(spec request, set func(name, value string)) {
	set("Accept", "application/json")
	set("User-Agent", "ledgerproof-load")
	if spec.body != nil {
		set("Content-Type", "application/json")
	}
	if dialect := c.options.Profile; dialect != nil {
		for name, value := range dialect.Headers {
			set(name, value)
		}
		if spec.token != "" {
			set(dialect.AuthHeader, dialect.AuthorizationValue(spec.token))
		}
		if spec.key != "" {
			set(dialect.IdempotencyHeader, spec.key)
		}
		if spec.wait && c.options.Wait > 0 && dialect.PreferWait {
			set("Prefer", c.prefer)
		}
		return
	}
	if spec.token != "" {
		set("Authorization", "Bearer "+spec.token)
	}
	if spec.key != "" {
		set("Idempotency-Key", spec.key)
	}
	if spec.wait && c.options.Wait > 0 {
		set("Prefer", c.prefer)
	}
}

// retryable: no answer, 5xx, 429, and 409 for a key still in flight. Never other 4xx.
func retryable(e exchange) bool {
	switch {
	case e.status == 0, e.status >= 500, e.status == http.StatusTooManyRequests:
		return true
	case e.status == http.StatusConflict:
		return e.code() == codeIdempotencyKeyInFlight
	}
	return false
}

// sendWithRetries sends spec up to attempts times with an exponential, jittered backoff (at least the
// server's Retry-After, at most the maximum backoff) between them. The key is in spec, so every attempt reuses it.
func (c *HTTP) sendWithRetries(ctx context.Context, spec request, attempts int) []exchange {
	exchanges := make([]exchange, 0, 1)
	for attempt := 1; ; attempt++ {
		var answer exchange
		if attempt == 1 && spec.firstAttemptTimeout > 0 {
			attemptContext, cancel := context.WithTimeout(ctx, spec.firstAttemptTimeout)
			answer = c.send(attemptContext, spec)
			cancel()
		} else {
			answer = c.send(ctx, spec)
		}
		exchanges = append(exchanges, answer)
		if attempt >= attempts || !retryable(answer) || ctx.Err() != nil {
			return exchanges
		}
		if !sleep(ctx, c.backoff(attempt, answer.retryAfter)) {
			return exchanges
		}
	}
}

func (c *HTTP) backoff(attempt int, retryAfter time.Duration) time.Duration {
	o := c.options
	nominal := float64(o.RetryBackoff) * math.Pow(2, float64(attempt-1))
	if nominal > float64(o.RetryMaxBackoff) {
		nominal = float64(o.RetryMaxBackoff)
	}
	c.randomMutex.Lock()
	factor := 1 - o.RetryJitter + 2*o.RetryJitter*c.random.Float64()
	c.randomMutex.Unlock()
	wait := time.Duration(nominal * factor)
	if retryAfter > wait {
		wait = retryAfter
	}
	return min(wait, o.RetryMaxBackoff)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func statusesOf(exchanges []exchange) []int {
	if len(exchanges) == 0 {
		return nil
	}
	statuses := make([]int, len(exchanges))
	for i, e := range exchanges {
		statuses[i] = e.status
	}
	return statuses
}

// NewIdempotencyKey returns a random key: 16 random bytes, hex.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ---- outcomes ----

// classification is what an operation's answers say about its fate.
type classification struct {
	outcome, status, reason, tx string
	// fromLedger is true when a 200 reported a final ledger status (settled or rejected).
	fromLedger          bool
	acceptedAt, finalAt time.Time
}

// classifyMoney applies the journal's outcome rules (load/JOURNAL.md) to the attempts of one money request: a
// final settled answer is ok; a final rejected answer is fail; a 4xx is fail only when no earlier attempt may
// have been applied (after a timeout, even a 401 proves nothing); 202, 5xx, no answer, or a key still in
// flight after the last attempt is info.
func classifyMoney(exchanges []exchange) classification {
	var result classification
	ambiguous := false // an attempt before the last may have been applied
	for i, e := range exchanges {
		if (e.status == http.StatusOK || e.status == http.StatusAccepted) && result.acceptedAt.IsZero() {
			result.acceptedAt = e.at
		}
		if i < len(exchanges)-1 && (e.status == 0 || e.status >= 500 || e.status == http.StatusAccepted ||
			e.status == http.StatusOK || (e.status == http.StatusConflict && e.code() == codeIdempotencyKeyInFlight)) {
			ambiguous = true
		}
	}
	last := exchanges[len(exchanges)-1]
	switch {
	case last.status == http.StatusOK || last.status == http.StatusAccepted:
		var body Transaction
		if err := json.Unmarshal(last.body, &body); err != nil {
			result.outcome, result.reason = OutcomeInfo, reasonInvalidResponse
			return result
		}
		result.tx, result.status = body.ID, body.Status
		switch {
		case last.status == http.StatusOK && body.Status == StatusSettled:
			result.outcome, result.fromLedger, result.finalAt = OutcomeOK, true, last.at
		case last.status == http.StatusOK && body.Status == StatusRejected:
			result.outcome, result.reason, result.fromLedger, result.finalAt = OutcomeFail, body.Reason, true, last.at
		default:
			result.outcome = OutcomeInfo
		}
	case last.status == 0:
		result.outcome, result.reason = OutcomeInfo, reasonConnectionError
		if last.timedOut {
			result.reason = reasonTimeout
		}
	case last.status >= 500:
		result.outcome, result.reason = OutcomeInfo, codeOr(last)
	case last.status == http.StatusConflict && last.code() == codeIdempotencyKeyInFlight:
		result.outcome, result.reason = OutcomeInfo, codeIdempotencyKeyInFlight
	case last.status >= 400:
		result.reason = codeOr(last)
		if ambiguous {
			result.outcome = OutcomeInfo
		} else {
			result.outcome, result.finalAt = OutcomeFail, last.at
		}
	default:
		result.outcome, result.reason = OutcomeInfo, "http_"+strconv.Itoa(last.status)
	}
	return result
}

func codeOr(e exchange) string {
	if code := e.code(); code != "" {
		return code
	}
	return "http_" + strconv.Itoa(e.status)
}

// mergeDuplicate combines the fates of an operation and its duplicate (same key, same body: one logical
// request). A final ledger answer to either decides; otherwise any unknown makes the whole unknown; otherwise
// both were definitively refused.
func mergeDuplicate(original, duplicate classification) classification {
	switch {
	case original.fromLedger:
		return original
	case duplicate.fromLedger:
		merged := duplicate
		merged.acceptedAt = earliest(original.acceptedAt, duplicate.acceptedAt)
		return merged
	case original.outcome == OutcomeInfo:
		// The duplicate may have been accepted where the original got no answer: keep its transaction (to poll)
		// and its acceptance.
		merged := original
		if merged.tx == "" {
			merged.tx = duplicate.tx
		}
		if merged.status == "" {
			merged.status = duplicate.status
		}
		merged.acceptedAt = earliest(original.acceptedAt, duplicate.acceptedAt)
		return merged
	case duplicate.outcome == OutcomeInfo:
		merged := original
		merged.outcome, merged.finalAt = OutcomeInfo, time.Time{}
		if merged.tx == "" {
			merged.tx = duplicate.tx
		}
		if merged.reason == "" {
			merged.reason = duplicate.reason
		}
		if merged.status == "" {
			merged.status = duplicate.status
		}
		merged.acceptedAt = earliest(original.acceptedAt, duplicate.acceptedAt)
		return merged
	}
	return original
}

// earliest returns the earlier of two times, a zero time counting as none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// ---- money operations ----

// orderingAccount is the account whose issue order the journal's seq records: the debited one, or the credited
// one for a deposit.
func orderingAccount(kind string, from, to int64) int64 {
	if kind == KindDeposit {
		return to
	}
	return from
}

func moneyRoute(kind string) (route, path string) {
	switch kind {
	case KindDeposit:
		return "POST /v1/deposits", "/v1/deposits"
	case KindWithdrawal:
		return "POST /v1/withdrawals", "/v1/withdrawals"
	}
	return "POST /v1/transfers", "/v1/transfers"
}

func moneyBody(kind string, from, to, amount int64) []byte {
	body := make([]byte, 0, 80)
	switch kind {
	case KindDeposit:
		body = append(body, `{"account_id":`...)
		body = strconv.AppendInt(body, to, 10)
	case KindWithdrawal:
		body = append(body, `{"account_id":`...)
		body = strconv.AppendInt(body, from, 10)
	default:
		body = append(body, `{"from_account_id":`...)
		body = strconv.AppendInt(body, from, 10)
		body = append(body, `,"to_account_id":`...)
		body = strconv.AppendInt(body, to, 10)
	}
	body = append(body, `,"amount":`...)
	body = strconv.AppendInt(body, amount, 10)
	return append(body, '}')
}

// Money sends a money operation, its duplicate and its misuse, and journals them.
func (c *HTTP) Money(ctx context.Context, m MoneyRequest) Result {
	switch m.Kind {
	case KindDeposit, KindWithdrawal, KindTransfer:
	default:
		// The generator only builds these kinds: anything else is a bug in the harness.
		panic("client: money operation of kind " + strconv.Quote(m.Kind))
	}
	if m.Key == "" {
		m.Key = NewIdempotencyKey()
	}
	result := Result{Op: c.nextOperationID(), Key: m.Key, Kind: m.Kind}
	sequence := c.nextSequence(orderingAccount(m.Kind, m.From, m.To))
	result.Invoke = c.options.Clock()
	if !m.Intended.IsZero() && m.Intended.Before(result.Invoke) {
		result.Invoke = m.Intended
	}
	route, path := moneyRoute(m.Kind)
	spec := request{method: http.MethodPost, route: route, path: path, body: moneyBody(m.Kind, m.From, m.To, m.Amount),
		token: m.Session.Token, key: m.Key, wait: true, expected: expectedSuccess}
	spec = c.dialect(spec, m.Kind, moneyValues(m.Kind, m.From, m.To, m.Amount))

	var duplicateExchanges []exchange
	var duplicateDone chan struct{}
	if m.Duplicate == DuplicateConcurrent {
		// Both at once, like a double click: one of them usually meets the other in flight (409) and retries.
		duplicateDone = make(chan struct{})
		duplicateSpec := spec
		duplicateSpec.expected = expectedDuplicate
		go func() {
			defer close(duplicateDone)
			duplicateExchanges = c.sendWithRetries(ctx, duplicateSpec, c.options.RetryAttempts)
		}()
	}
	// Only the original's first attempt may time out early; its duplicates are sent as usual.
	spec.firstAttemptTimeout = m.FirstAttemptTimeout
	exchanges := c.sendWithRetries(ctx, spec, c.options.RetryAttempts)
	if duplicateDone != nil {
		<-duplicateDone
	}
	if m.Duplicate == DuplicateDelayed && sleep(ctx, c.options.DuplicateDelay) {
		// Again after the answer, like a load balancer replaying a request: the stored response must come back.
		duplicateSpec := spec
		duplicateSpec.expected = expectedDuplicate
		duplicateSpec.firstAttemptTimeout = 0
		duplicateExchanges = c.sendWithRetries(ctx, duplicateSpec, c.options.RetryAttempts)
	}
	classified := classifyMoney(exchanges)
	if len(duplicateExchanges) > 0 {
		classified = mergeDuplicate(classified, classifyMoney(duplicateExchanges))
	}
	pollFor := c.options.PollFor
	if m.PollFor > 0 {
		pollFor = m.PollFor
	}
	if pollFor > 0 && classified.outcome == OutcomeInfo && classified.tx != "" && !classified.acceptedAt.IsZero() {
		classified, result.Polls = c.pollUntilFinal(ctx, m.Session, classified, pollFor)
	}
	result.Outcome, result.Status, result.Reason, result.TransactionID = classified.outcome, classified.status, classified.reason, classified.tx
	result.AcceptedAt, result.FinalAt = classified.acceptedAt, classified.finalAt
	result.Statuses, result.DuplicateStatuses = statusesOf(exchanges), statusesOf(duplicateExchanges)
	if m.Duplicate != "" && len(duplicateExchanges) == 0 {
		// The delayed duplicate was not sent (the load stopped first): the journal must not claim it was.
		m.Duplicate = ""
	}
	result.Complete = c.options.Clock()
	if c.options.Journal != nil {
		c.options.Journal.Record(journalEntry(result, m, m.Session.UserID, sequence, ""))
	}
	if m.Misuse && ctx.Err() == nil {
		misuse := c.misuse(ctx, m, result.Op)
		result.Misuse = &misuse
	}
	return result
}

// misuse reuses the operation's key with a different amount: the system must refuse it (422
// idempotency_key_reused) and never apply it. It is journaled as its own operation of kind misuse.
func (c *HTTP) misuse(ctx context.Context, original MoneyRequest, originalOp string) Result {
	m := original
	m.Amount = original.Amount + 1
	if m.Amount > amountMaximumMinor {
		m.Amount = original.Amount - 1
	}
	m.Duplicate, m.Misuse, m.ReplayOf, m.Intent, m.FirstAttemptTimeout = "", false, "", "", 0
	result := Result{Op: c.nextOperationID(), Key: m.Key, Kind: KindMisuse}
	sequence := c.nextSequence(orderingAccount(original.Kind, m.From, m.To))
	result.Invoke = c.options.Clock()
	route, path := moneyRoute(original.Kind)
	spec := request{method: http.MethodPost, route: route, path: path, body: moneyBody(original.Kind, m.From, m.To, m.Amount),
		token: m.Session.Token, key: m.Key, wait: true, expected: expectedMisuse}
	spec = c.dialect(spec, original.Kind, moneyValues(original.Kind, m.From, m.To, m.Amount))
	exchanges := c.sendWithRetries(ctx, spec, c.options.RetryAttempts)
	classified := classifyMoney(exchanges)
	result.Outcome, result.Status, result.Reason, result.TransactionID = classified.outcome, classified.status, classified.reason, classified.tx
	result.AcceptedAt, result.FinalAt = classified.acceptedAt, classified.finalAt
	result.Statuses = statusesOf(exchanges)
	result.Complete = c.options.Clock()
	if c.options.Journal != nil {
		c.options.Journal.Record(journalEntry(result, m, m.Session.UserID, sequence, originalOp))
	}
	return result
}

// pollUntilFinal asks for an accepted transaction's status until it is final or pollFor has passed; the
// outcome stays info if it does not become final in time.
func (c *HTTP) pollUntilFinal(ctx context.Context, session Session, result classification, pollFor time.Duration) (classification, int) {
	deadline := c.options.Clock().Add(pollFor)
	polls := 0
	spec := request{method: http.MethodGet, route: "GET /v1/transactions/{id}", path: "/v1/transactions/" + url.PathEscape(result.tx),
		token: session.Token, expected: expectedSuccess}
	spec = c.dialect(spec, profile.OpStatus, profile.Values{ID: result.tx})
	for c.options.Clock().Before(deadline) && sleep(ctx, c.options.PollInterval) {
		polls++
		answer := c.send(ctx, spec)
		if answer.status != http.StatusOK {
			continue
		}
		var body Transaction
		if json.Unmarshal(answer.body, &body) != nil {
			continue
		}
		switch body.Status {
		case StatusSettled:
			result.outcome, result.status, result.reason, result.fromLedger, result.finalAt = OutcomeOK, StatusSettled, "", true, answer.at
			return result, polls
		case StatusRejected:
			result.outcome, result.status, result.reason, result.fromLedger, result.finalAt = OutcomeFail, StatusRejected, body.Reason, true, answer.at
			return result, polls
		}
	}
	return result, polls
}

// ---- users and reads ----

// Signup creates a user and journals it (kind signup, "to" = the new account).
func (c *HTTP) Signup(ctx context.Context, caller Caller, email, password string, attempts int) (User, error) {
	body, err := json.Marshal(map[string]string{"email": email, "password": password})
	if err != nil {
		return User{}, err
	}
	spec := request{method: http.MethodPost, route: "POST /v1/users", path: "/v1/users", body: body, expected: expectedSuccess}
	spec = c.dialect(spec, profile.OpSignup, profile.Values{Email: email, Password: password})
	invoke := c.options.Clock()
	op := c.nextOperationID()
	exchanges := c.sendWithRetries(ctx, spec, max(attempts, 1))
	last := exchanges[len(exchanges)-1]
	var user User
	outcome, reason := "", ""
	var failure error
	switch {
	case last.status == http.StatusCreated:
		if err := json.Unmarshal(last.body, &user); err != nil || user.UserID == 0 || user.AccountID == 0 {
			outcome, reason = OutcomeInfo, reasonInvalidResponse
			failure = &Error{Operation: "signup " + email, Status: last.status, Code: reasonInvalidResponse, Detail: "unreadable answer: " + last.describe()}
		} else {
			outcome = OutcomeOK
		}
	case last.status == http.StatusConflict && last.code() == codeEmailTaken && slices.ContainsFunc(exchanges[:len(exchanges)-1], unanswered):
		outcome, reason = OutcomeInfo, codeEmailTaken
	case last.status == 0 || last.status >= 500 || last.status == http.StatusTooManyRequests:
		outcome, reason = OutcomeInfo, codeOr(last)
		if last.status == 0 {
			reason = reasonConnectionError
		}
		failure = last.failure("signup " + email)
	default:
		outcome, reason = OutcomeFail, codeOr(last)
		failure = last.failure("signup " + email)
	}
	if c.options.Journal != nil {
		statuses := statusesOf(exchanges)
		c.options.Journal.Record(history.Entry{Version: history.JournalVersion, Op: op, Kind: KindSignup, User: user.UserID,
			To: user.AccountID, VU: caller.Slot, Iter: caller.Iteration, Invoke: invoke.UnixMicro(),
			Complete: c.options.Clock().UnixMicro(), Attempts: len(statuses), Statuses: statuses, Outcome: outcome, Reason: reason})
	}
	return user, failure
}

// unanswered reports whether an attempt got no answer, so may have been applied.
func unanswered(e exchange) bool { return e.status == 0 }

// Signin opens a session. Signing in twice only makes two sessions, so it is retried like a read.
func (c *HTTP) Signin(ctx context.Context, email, password string) (Session, error) {
	body, err := json.Marshal(map[string]string{"email": email, "password": password})
	if err != nil {
		return Session{}, err
	}
	spec := request{method: http.MethodPost, route: "POST /v1/sessions", path: "/v1/sessions", body: body, expected: expectedSuccess}
	spec = c.dialect(spec, profile.OpSignin, profile.Values{Email: email, Password: password})
	exchanges := c.sendWithRetries(ctx, spec, c.options.RetryAttempts)
	last := exchanges[len(exchanges)-1]
	if last.status != http.StatusCreated {
		return Session{}, fmt.Errorf("signin %s: %s", email, last.describe())
	}
	var answer struct {
		Token     string `json:"token"`
		UserID    int64  `json:"user_id"`
		AccountID int64  `json:"account_id"`
	}
	if err := json.Unmarshal(last.body, &answer); err != nil || answer.Token == "" {
		return Session{}, fmt.Errorf("signin %s: unreadable answer: %s", email, last.describe())
	}
	return Session{Token: answer.Token, UserID: answer.UserID, AccountID: answer.AccountID, Email: email}, nil
}

// Transaction reads a transaction's status.
func (c *HTTP) Transaction(ctx context.Context, session Session, id string) (Transaction, bool, error) {
	spec := request{method: http.MethodGet, route: "GET /v1/transactions/{id}", path: "/v1/transactions/" + url.PathEscape(id),
		token: session.Token, expected: func(status int) bool { return expectedSuccess(status) || status == http.StatusNotFound }}
	spec = c.dialect(spec, profile.OpStatus, profile.Values{ID: id})
	exchanges := c.sendWithRetries(ctx, spec, c.options.RetryAttempts)
	last := exchanges[len(exchanges)-1]
	switch last.status {
	case http.StatusNotFound:
		return Transaction{}, false, nil
	case http.StatusOK:
	default:
		return Transaction{}, false, fmt.Errorf("transaction %s: %s", id, last.describe())
	}
	var body Transaction
	if err := json.Unmarshal(last.body, &body); err != nil {
		return Transaction{}, false, fmt.Errorf("transaction %s: unreadable answer: %s", id, last.describe())
	}
	return body, true, nil
}

// Balance reads an account's balance.
func (c *HTTP) Balance(ctx context.Context, session Session, accountID int64) (int64, error) {
	spec := request{method: http.MethodGet, route: "GET /v1/accounts/{id}", path: "/v1/accounts/" + strconv.FormatInt(accountID, 10),
		token: session.Token, expected: expectedSuccess}
	spec = c.dialect(spec, profile.OpBalance, profile.Values{Account: accountID})
	exchanges := c.sendWithRetries(ctx, spec, c.options.RetryAttempts)
	last := exchanges[len(exchanges)-1]
	if last.status != http.StatusOK {
		return 0, fmt.Errorf("balance of account %d: %s", accountID, last.describe())
	}
	var body struct {
		Balance *int64 `json:"balance"`
	}
	if err := json.Unmarshal(last.body, &body); err != nil || body.Balance == nil {
		return 0, fmt.Errorf("balance of account %d: unreadable answer: %s", accountID, last.describe())
	}
	return *body.Balance, nil
}
