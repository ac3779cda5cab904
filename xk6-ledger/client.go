package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/sobek"
	"go.k6.io/k6/js/modules"
	"go.k6.io/k6/lib"
	"go.k6.io/k6/lib/netext/httpext"
	"go.k6.io/k6/metrics"
)

// Operation kinds, as in the journal (JOURNAL.md) and the metrics' kind tag.
const (
	kindSignup     = "signup"
	kindDeposit    = "deposit"
	kindWithdrawal = "withdrawal"
	kindTransfer   = "transfer"
	kindMisuse     = "misuse"
)

// Outcomes, as in Jepsen: ok settled, fail definitively rejected (never applied), info unknown.
const (
	outcomeOK   = "ok"
	outcomeFail = "fail"
	outcomeInfo = "info"
)

// Ledger statuses the gateway reports.
const (
	statusSettled  = "settled"
	statusRejected = "rejected"
	statusAccepted = "accepted"
)

// Error codes of the gateway this client branches on (sut/gateway/errors.go), and the reasons it makes up for
// exchanges that got no answer.
const (
	codeIdempotencyKeyInFlight = "idempotency_key_in_flight"
	codeRateLimited            = "rate_limited"
	codeEmailTaken             = "email_taken"
	reasonTimeout              = "timeout"
	reasonConnectionError      = "connection_error"
	reasonInvalidResponse      = "invalid_response"
)

// k6's error code for a request that timed out (lib/netext/httpext/error_codes.go).
const k6RequestTimeoutErrorCode = 1050

// prepareSettleTimeout bounds how long prepareAccounts polls a funding deposit answered 202.
const prepareSettleTimeout = 30 * time.Second

// Client is one VU's ledger client (the JS class Client). Its methods run on the VU's event loop; the work of
// the async forms runs on goroutines, so everything reached from a goroutine is safe for concurrent use.
type Client struct {
	vu      modules.VU
	process *process
	metrics *ledgerMetrics
	options clientOptions
	clock   func() time.Time

	// roundRobin picks the base URL of the next request.
	roundRobin atomic.Uint64

	// randomMutex guards random, which the async goroutines share (backoff jitter).
	randomMutex sync.Mutex
	random      *mathrand.Rand
	seed        int64
}

func newClient(vu modules.VU, p *process, m *ledgerMetrics, options clientOptions) *Client {
	c := &Client{vu: vu, process: p, metrics: m, options: options, clock: p.clock, seed: p.defaultSeed}
	if options.seedSet {
		c.seed = options.seed
	}
	if _, printed := p.seedsLogged.LoadOrStore(c.seed, true); !printed {
		if logger := vuLogger(vu); logger != nil {
			logger.Infof("xk6-ledger: random seed %d (set the client option seed to replay its choices)", c.seed)
		}
	}
	return c
}

// invocation is what an operation takes from its VU at invoke time, on the event loop, so that its goroutines
// never touch the VU's mutable state.
type invocation struct {
	ctx   context.Context
	state *lib.State
	tags  metrics.TagsAndMeta
	vu    uint64
	iter  int64
}

func (c *Client) invoke(name string) (invocation, error) {
	state := c.vu.State()
	if state == nil {
		return invocation{}, fmt.Errorf("%s cannot be called in the init context; call it in setup(), the default function or teardown()", name)
	}
	inv := invocation{ctx: c.vu.Context(), state: state, tags: state.Tags.GetCurrentValues(), vu: state.VUID, iter: state.Iteration}
	if inv.vu == 0 {
		inv.iter = -1 // setup and teardown (JOURNAL.md)
	}
	c.randomMutex.Lock()
	if c.random == nil {
		// Each VU draws its own reproducible stream from the seed.
		c.random = mathrand.New(mathrand.NewPCG(uint64(c.seed), state.VUIDGlobal))
	}
	c.randomMutex.Unlock()
	return inv, nil
}

func (c *Client) randomFloat() float64 {
	c.randomMutex.Lock()
	defer c.randomMutex.Unlock()
	return c.random.Float64()
}

// runner is an operation checked and started on the event loop; it does its I/O when called, on any goroutine.
type runner func() (any, error)

// jsObject builds the JS object of the client.
func (c *Client) jsObject(rt *sobek.Runtime) *sobek.Object {
	object := rt.NewObject()
	set := func(name string, prepare func(inv invocation, args []sobek.Value) (runner, error)) {
		synchronous := func(call sobek.FunctionCall) sobek.Value { return c.callSync(rt, name, prepare, call.Arguments) }
		asynchronous := func(call sobek.FunctionCall) sobek.Value {
			return c.callAsync(rt, name+"Async", prepare, call.Arguments)
		}
		must(object.Set(name, synchronous))
		must(object.Set(name+"Async", asynchronous))
	}
	set("signup", c.prepareSignup)
	set("signin", c.prepareSignin)
	set("deposit", c.moneyPreparer(kindDeposit))
	set("withdraw", c.moneyPreparer(kindWithdrawal))
	set("transfer", c.moneyPreparer(kindTransfer))
	set("transaction", c.prepareTransaction)
	set("balance", c.prepareBalance)
	must(object.Set("prepareAccounts", func(call sobek.FunctionCall) sobek.Value {
		return c.callSync(rt, "prepareAccounts", c.preparePrepareAccounts, call.Arguments)
	}))
	// prepareAccounts has no async form in index.d.ts; the object set above also made none.
	return object
}

func must(err error) {
	if err != nil {
		// Setting a property on a fresh plain object cannot fail.
		panic(fmt.Sprintf("xk6-ledger: building the client object: %v", err))
	}
}

// callSync runs an operation on the VU's goroutine and returns its result, or throws.
func (c *Client) callSync(rt *sobek.Runtime, name string, prepare func(invocation, []sobek.Value) (runner, error), args []sobek.Value) sobek.Value {
	inv, err := c.invoke(name)
	if err != nil {
		panic(rt.NewGoError(err))
	}
	run, err := prepare(inv, args)
	if err != nil {
		panic(rt.NewGoError(fmt.Errorf("%s: %w", name, err)))
	}
	result, err := run()
	if err != nil {
		panic(rt.NewGoError(fmt.Errorf("%s: %w", name, err)))
	}
	return jsValue(rt, result)
}

// callAsync checks the arguments on the event loop, runs the operation on a goroutine and settles the promise
// back on the event loop (vu.RegisterCallback keeps the iteration alive until then). Bad arguments reject the
// promise; calling it in the init context throws, as k6's own http.asyncRequest does.
func (c *Client) callAsync(rt *sobek.Runtime, name string, prepare func(invocation, []sobek.Value) (runner, error), args []sobek.Value) sobek.Value {
	inv, err := c.invoke(name)
	if err != nil {
		panic(rt.NewGoError(err))
	}
	promise, resolve, reject := rt.NewPromise()
	run, err := prepare(inv, args)
	if err != nil {
		if rejectErr := reject(rt.NewGoError(fmt.Errorf("%s: %w", name, err))); rejectErr != nil {
			panic(rejectErr)
		}
		return rt.ToValue(promise)
	}
	enqueue := c.vu.RegisterCallback()
	go func() {
		result, err := run()
		enqueue(func() error {
			if err != nil {
				return reject(rt.NewGoError(fmt.Errorf("%s: %w", name, err)))
			}
			return resolve(jsValue(rt, result))
		})
	}()
	return rt.ToValue(promise)
}

// jsValue converts results to plain JS values (real arrays and objects, not wrapped Go values), on the loop.
func jsValue(rt *sobek.Runtime, value any) sobek.Value {
	switch v := value.(type) {
	case nil:
		return sobek.Null()
	case map[string]any:
		object := rt.NewObject()
		for key, item := range v {
			must(object.Set(key, jsValue(rt, item)))
		}
		return object
	case []map[string]any:
		items := make([]any, len(v))
		for i := range v {
			items[i] = jsValue(rt, v[i])
		}
		return rt.NewArray(items...)
	case []int:
		items := make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
		return rt.NewArray(items...)
	}
	return rt.ToValue(value)
}

func argument(args []sobek.Value, i int) sobek.Value {
	if i < len(args) {
		return args[i]
	}
	return sobek.Undefined()
}

// ---- HTTP ----

// requestSpec is one HTTP request of the client, repeated as is on every attempt.
type requestSpec struct {
	method string
	// route is the route template, e.g. "POST /v1/transfers": the name (and url) tag of the http_req_* metrics,
	// so that ids in paths do not explode their cardinality.
	route string
	path  string
	body  []byte
	token string
	key   string
	// wait, when waitSet, is sent as "Prefer: wait=N".
	wait    time.Duration
	waitSet bool
	// expected marks the statuses that are not failures for http_req_failed.
	expected func(status int) bool
}

// exchange is one HTTP attempt and its answer.
type exchange struct {
	// status is 0 when no answer came (connection error, timeout).
	status     int
	body       []byte
	retryAfter time.Duration
	// errorCode and errorText are k6's, for status 0.
	errorCode int
	errorText string
	at        time.Time
}

// code returns the error code of an error body, or "".
func (e exchange) code() string {
	var body struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(e.body, &body) != nil {
		return ""
	}
	return body.Code
}

// describe returns the gateway's error, for thrown errors.
func (e exchange) describe() string {
	if e.status == 0 {
		return "no answer: " + e.errorText
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.TrimSpace(string(e.body)))
}

func expectedSuccess(status int) bool { return status >= 200 && status < 400 }

func (c *Client) send(inv invocation, spec requestSpec) exchange {
	base := c.options.baseURLs[(c.roundRobin.Add(1)-1)%uint64(len(c.options.baseURLs))]
	target, err := httpext.NewURL(base+spec.path, spec.route)
	if err != nil {
		return exchange{errorText: err.Error(), at: c.clock()}
	}
	header := make(http.Header, 6)
	header.Set("User-Agent", inv.state.Options.UserAgent.String)
	header.Set("Accept", "application/json")
	if spec.body != nil {
		header.Set("Content-Type", "application/json")
	}
	if spec.token != "" {
		header.Set("Authorization", "Bearer "+spec.token)
	}
	if spec.key != "" {
		header.Set("Idempotency-Key", spec.key)
	}
	if spec.waitSet {
		header.Set("Prefer", "wait="+strconv.FormatFloat(spec.wait.Seconds(), 'f', -1, 64))
	}
	request := &httpext.ParsedHTTPRequest{
		URL:              &target,
		Req:              &http.Request{Method: spec.method, URL: target.GetURL(), Header: header},
		Timeout:          c.options.timeout,
		Throw:            false,
		ResponseType:     httpext.ResponseTypeBinary,
		ResponseCallback: spec.expected,
		Redirects:        inv.state.Options.MaxRedirects,
		Cookies:          map[string]*httpext.HTTPRequestCookie{},
		TagsAndMeta:      inv.tags.Clone(),
	}
	if spec.body != nil {
		request.Body = bytes.NewBuffer(spec.body)
	}
	response, err := httpext.MakeRequest(inv.ctx, inv.state, request)
	answered := exchange{at: c.clock()}
	if err != nil {
		answered.errorText = err.Error()
		return answered
	}
	answered.status = response.Status
	answered.errorCode = response.ErrorCode
	answered.errorText = response.Error
	if body, ok := response.Body.([]byte); ok {
		answered.body = body
	}
	if seconds, err := strconv.Atoi(response.Headers["Retry-After"]); err == nil && seconds > 0 {
		answered.retryAfter = time.Duration(seconds) * time.Second
	}
	return answered
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

// sendWithRetries sends spec up to the policy's attempts, waiting an exponential, jittered backoff (at least
// the server's Retry-After, at most maxBackoff) between them. The key is in spec, so every attempt reuses it.
func (c *Client) sendWithRetries(inv invocation, spec requestSpec) []exchange {
	policy := c.options.retry
	exchanges := make([]exchange, 0, 1)
	for attempt := 1; ; attempt++ {
		answer := c.send(inv, spec)
		exchanges = append(exchanges, answer)
		if attempt >= policy.maxAttempts || !retryable(answer) || inv.ctx.Err() != nil {
			return exchanges
		}
		if !sleep(inv.ctx, c.backoff(attempt, answer.retryAfter)) {
			return exchanges
		}
	}
}

func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	policy := c.options.retry
	nominal := float64(policy.backoff) * math.Pow(2, float64(attempt-1))
	if nominal > float64(policy.maxBackoff) {
		nominal = float64(policy.maxBackoff)
	}
	wait := time.Duration(nominal * (1 - policy.jitter + 2*policy.jitter*c.randomFloat()))
	if retryAfter > wait {
		wait = retryAfter
	}
	return min(wait, policy.maxBackoff)
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
	statuses := make([]int, len(exchanges))
	for i, e := range exchanges {
		statuses[i] = e.status
	}
	return statuses
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ---- outcomes ----

// classification is what an operation's answers say about its fate.
type classification struct {
	outcome string
	status  string
	reason  string
	tx      string
	// fromLedger is true when a 200 reported a final ledger status (settled or rejected).
	fromLedger bool
	// acceptedAt is when the gateway first accepted the command (200 or 202); zero if it never did.
	acceptedAt time.Time
	// finalAt is when the outcome became final (ok or fail); zero for info.
	finalAt time.Time
}

type transactionBody struct {
	TransactionID        string `json:"transaction_id"`
	Kind                 string `json:"kind"`
	Status               string `json:"status"`
	Amount               int64  `json:"amount"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	Reason               string `json:"reason"`
}

// classifyMoney applies JOURNAL.md's outcome rules to the attempts of one money request: a final settled answer
// is ok; a final rejected answer is fail; a 4xx is fail only when no earlier attempt may have been applied
// (after a timeout, even a 401 proves nothing); 202, 5xx, no answer, or a key still in flight after the last
// attempt is info.
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
		var body transactionBody
		if err := json.Unmarshal(last.body, &body); err != nil {
			result.outcome, result.reason = outcomeInfo, reasonInvalidResponse
			return result
		}
		result.tx, result.status = body.TransactionID, body.Status
		switch {
		case last.status == http.StatusOK && body.Status == statusSettled:
			result.outcome, result.fromLedger, result.finalAt = outcomeOK, true, last.at
		case last.status == http.StatusOK && body.Status == statusRejected:
			result.outcome, result.reason, result.fromLedger, result.finalAt = outcomeFail, body.Reason, true, last.at
		default:
			result.outcome = outcomeInfo
		}
	case last.status == 0:
		result.outcome, result.reason = outcomeInfo, reasonConnectionError
		if last.errorCode == k6RequestTimeoutErrorCode {
			result.reason = reasonTimeout
		}
	case last.status >= 500:
		result.outcome, result.reason = outcomeInfo, codeOr(last)
	case last.status == http.StatusConflict && last.code() == codeIdempotencyKeyInFlight:
		result.outcome, result.reason = outcomeInfo, codeIdempotencyKeyInFlight
	case last.status >= 400:
		result.reason = codeOr(last)
		if ambiguous {
			result.outcome = outcomeInfo
		} else {
			result.outcome, result.finalAt = outcomeFail, last.at
		}
	default:
		result.outcome, result.reason = outcomeInfo, "http_"+strconv.Itoa(last.status)
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
		if !original.acceptedAt.IsZero() && (merged.acceptedAt.IsZero() || original.acceptedAt.Before(merged.acceptedAt)) {
			merged.acceptedAt = original.acceptedAt
		}
		return merged
	case original.outcome == outcomeInfo:
		return original
	case duplicate.outcome == outcomeInfo:
		merged := original
		merged.outcome, merged.finalAt = outcomeInfo, time.Time{}
		if merged.tx == "" {
			merged.tx = duplicate.tx
		}
		if merged.reason == "" {
			merged.reason = duplicate.reason
		}
		if merged.status == "" {
			merged.status = duplicate.status
		}
		return merged
	}
	return original
}

// ---- money operations ----

// moneyPlan is a money operation checked and numbered on the event loop.
type moneyPlan struct {
	inv      invocation
	kind     string
	session  session
	from, to int64
	amount   int64
	key      string
	wait     time.Duration
	op       string
	seq      int64
	invoke   time.Time
	// duplicate is duplicateConcurrent, duplicateDelayed or "".
	duplicate string
	misuse    bool
	// pollFor, when positive, polls a 202 until final for at most that long (prepareAccounts).
	pollFor time.Duration
	journal *Journal
}

// moneyOutcome is a money operation's result.
type moneyOutcome struct {
	plan           moneyPlan
	classification classification
	statuses       []int
	duplicate      []int
	complete       time.Time
}

func (c *Client) moneyPreparer(kind string) func(invocation, []sobek.Value) (runner, error) {
	return func(inv invocation, args []sobek.Value) (runner, error) {
		rt := c.vu.Runtime()
		s, err := parseSession(rt, argument(args, 0))
		if err != nil {
			return nil, err
		}
		var from, to, amount int64
		next := 2
		switch kind {
		case kindDeposit:
			if to, err = accountArgument("accountId", argument(args, 1)); err != nil {
				return nil, err
			}
		case kindWithdrawal:
			if from, err = accountArgument("accountId", argument(args, 1)); err != nil {
				return nil, err
			}
		case kindTransfer:
			if from, err = accountArgument("fromAccountId", argument(args, 1)); err != nil {
				return nil, err
			}
			if to, err = accountArgument("toAccountId", argument(args, 2)); err != nil {
				return nil, err
			}
			next = 3
		}
		if amount, err = amountArgument("amount", argument(args, next)); err != nil {
			return nil, err
		}
		options, err := parseOperationOptions(rt, argument(args, next+1), c.options)
		if err != nil {
			return nil, err
		}
		plan, err := c.plan(inv, kind, s, from, to, amount, options, true)
		if err != nil {
			return nil, err
		}
		return func() (any, error) { return c.execute(plan).jsResult(), nil }, nil
	}
}

// plan numbers a money operation at invoke: its id, key, per-account sequence, and the harness's random
// choices (drawn here, in invoke order, so that a seed replays them).
func (c *Client) plan(inv invocation, kind string, s session, from, to, amount int64, options operationOptions, faults bool) (moneyPlan, error) {
	plan := moneyPlan{inv: inv, kind: kind, session: s, from: from, to: to, amount: amount, key: options.key, wait: options.wait}
	if c.options.runDir != "" {
		journal, err := c.process.journals.get(c.options.runDir)
		if err != nil {
			return plan, fmt.Errorf("open the journal: %w", err)
		}
		plan.journal = journal
	}
	if plan.key == "" {
		plan.key = newIdempotencyKey()
	}
	if faults {
		if c.options.duplicateRate > 0 && c.randomFloat() < c.options.duplicateRate {
			plan.duplicate = c.options.duplicateMode
		}
		if c.options.misuseRate > 0 && c.randomFloat() < c.options.misuseRate {
			plan.misuse = true
		}
	}
	plan.op = c.process.nextOperationID()
	plan.seq = c.process.nextSequence(orderingAccount(kind, from, to))
	plan.invoke = c.clock()
	return plan, nil
}

// orderingAccount is the account whose issue order the journal's seq records: the debited one, or the credited
// one for a deposit.
func orderingAccount(kind string, from, to int64) int64 {
	if kind == kindDeposit {
		return to
	}
	return from
}

func moneyRoute(kind string) (string, string) {
	switch kind {
	case kindDeposit:
		return "POST /v1/deposits", "/v1/deposits"
	case kindWithdrawal:
		return "POST /v1/withdrawals", "/v1/withdrawals"
	}
	return "POST /v1/transfers", "/v1/transfers"
}

func moneyBody(kind string, from, to, amount int64) []byte {
	switch kind {
	case kindDeposit:
		return fmt.Appendf(nil, `{"account_id":%d,"amount":%d}`, to, amount)
	case kindWithdrawal:
		return fmt.Appendf(nil, `{"account_id":%d,"amount":%d}`, from, amount)
	}
	return fmt.Appendf(nil, `{"from_account_id":%d,"to_account_id":%d,"amount":%d}`, from, to, amount)
}

func (c *Client) moneySpec(plan moneyPlan, amount int64) requestSpec {
	route, path := moneyRoute(plan.kind)
	return requestSpec{method: http.MethodPost, route: route, path: path, body: moneyBody(plan.kind, plan.from, plan.to, amount),
		token: plan.session.token, key: plan.key, wait: plan.wait, waitSet: true, expected: expectedSuccess}
}

// execute sends a money operation, its duplicate and its misuse, journals them and pushes their metrics.
func (c *Client) execute(plan moneyPlan) moneyOutcome {
	spec := c.moneySpec(plan, plan.amount)
	var duplicateExchanges []exchange
	var duplicateDone chan struct{}
	if plan.duplicate == duplicateConcurrent {
		// Both at once, like a double click: one of them usually meets the other in flight (409) and retries.
		duplicateDone = make(chan struct{})
		duplicateSpec := spec
		duplicateSpec.expected = expectedDuplicate
		go func() {
			defer close(duplicateDone)
			duplicateExchanges = c.sendWithRetries(plan.inv, duplicateSpec)
		}()
	}
	exchanges := c.sendWithRetries(plan.inv, spec)
	if duplicateDone != nil {
		<-duplicateDone
	}
	if plan.duplicate == duplicateDelayed && sleep(plan.inv.ctx, c.options.duplicateDelay) {
		// Again after the answer, like a load balancer replaying a request: the stored response must come back.
		duplicateSpec := spec
		duplicateSpec.expected = expectedDuplicate
		duplicateExchanges = c.sendWithRetries(plan.inv, duplicateSpec)
	}
	result := classifyMoney(exchanges)
	if len(duplicateExchanges) > 0 {
		result = mergeDuplicate(result, classifyMoney(duplicateExchanges))
	}
	if plan.pollFor > 0 && result.outcome == outcomeInfo && result.tx != "" {
		result = c.pollUntilFinal(plan, result)
	}
	outcome := moneyOutcome{plan: plan, classification: result, statuses: statusesOf(exchanges),
		duplicate: statusesOf(duplicateExchanges), complete: c.clock()}
	if len(duplicateExchanges) == 0 {
		outcome.duplicate = nil
	}
	c.record(outcome, "")
	retries := len(exchanges) - 1
	if len(duplicateExchanges) > 0 {
		retries += len(duplicateExchanges) - 1
	}
	c.pushOperationMetrics(plan.inv, plan.kind, outcome, retries, len(duplicateExchanges) > 0, false)
	if plan.misuse && plan.inv.ctx.Err() == nil {
		c.executeMisuse(plan)
	}
	return outcome
}

func expectedDuplicate(status int) bool {
	return expectedSuccess(status) || status == http.StatusConflict
}

func expectedMisuse(status int) bool {
	return status == http.StatusUnprocessableEntity
}

// executeMisuse reuses the operation's key with a different amount: the gateway must refuse it (422
// idempotency_key_reused) and never apply it. It is journaled as its own operation of kind misuse.
func (c *Client) executeMisuse(original moneyPlan) {
	plan := original
	plan.amount = original.amount + 1
	if plan.amount > amountMaximumMinor {
		plan.amount = original.amount - 1
	}
	if plan.amount < 1 { // an amount of 1 at the maximum of 1 cannot happen; keep the body different anyway
		plan.amount = 2
	}
	plan.op = c.process.nextOperationID()
	plan.seq = c.process.nextSequence(orderingAccount(original.kind, original.from, original.to))
	plan.invoke = c.clock()
	spec := c.moneySpec(plan, plan.amount)
	spec.expected = expectedMisuse
	exchanges := c.sendWithRetries(plan.inv, spec)
	outcome := moneyOutcome{plan: plan, classification: classifyMoney(exchanges), statuses: statusesOf(exchanges), complete: c.clock()}
	c.record(outcome, original.op)
	c.pushOperationMetrics(plan.inv, kindMisuse, outcome, len(exchanges)-1, false, true)
}

// pollUntilFinal polls a transaction answered 202 until its status is final (prepareAccounts needs to know the
// funding settled). The outcome stays info if it does not become final in time.
func (c *Client) pollUntilFinal(plan moneyPlan, result classification) classification {
	deadline := c.clock().Add(plan.pollFor)
	for c.clock().Before(deadline) && sleep(plan.inv.ctx, 100*time.Millisecond) {
		spec := requestSpec{method: http.MethodGet, route: "GET /v1/transactions/{id}", path: "/v1/transactions/" + url.PathEscape(result.tx),
			token: plan.session.token, expected: expectedSuccess}
		answer := c.send(plan.inv, spec)
		if answer.status != http.StatusOK {
			continue
		}
		var body transactionBody
		if json.Unmarshal(answer.body, &body) != nil {
			continue
		}
		switch body.Status {
		case statusSettled:
			result.outcome, result.status, result.fromLedger, result.finalAt = outcomeOK, statusSettled, true, answer.at
			return result
		case statusRejected:
			result.outcome, result.status, result.reason, result.fromLedger, result.finalAt = outcomeFail, statusRejected, body.Reason, true, answer.at
			return result
		}
	}
	return result
}

func (c *Client) record(outcome moneyOutcome, misuseOf string) {
	plan := outcome.plan
	if plan.journal == nil {
		return
	}
	kind := plan.kind
	if misuseOf != "" {
		kind = kindMisuse
	}
	plan.journal.Record(Entry{
		Version: JournalVersion, Op: plan.op, Kind: kind, Key: plan.key, User: plan.session.userID,
		From: plan.from, To: plan.to, Amount: plan.amount, VU: plan.inv.vu, Iter: plan.inv.iter, Seq: plan.seq,
		Invoke: plan.invoke.UnixMicro(), Complete: outcome.complete.UnixMicro(),
		Attempts: len(outcome.statuses), Statuses: outcome.statuses,
		Outcome: outcome.classification.outcome, Status: outcome.classification.status,
		Reason: outcome.classification.reason, Tx: outcome.classification.tx,
		Dup: plan.duplicate, DupStatuses: outcome.duplicate, MisuseOf: misuseOf,
	})
}

func (c *Client) pushOperationMetrics(inv invocation, kind string, outcome moneyOutcome, retries int, duplicate, misuse bool) {
	batch := sampleBatch{tags: inv.tags.Tags.With("kind", kind), metadata: inv.tags.Metadata, at: outcome.complete}
	m := c.metrics
	result := outcome.classification
	batch.add(m.operations, 1, "outcome", result.outcome)
	if !result.acceptedAt.IsZero() {
		batch.add(m.acceptDuration, durationMilliseconds(result.acceptedAt.Sub(outcome.plan.invoke)))
	}
	if !result.finalAt.IsZero() {
		batch.add(m.settleDuration, durationMilliseconds(result.finalAt.Sub(outcome.plan.invoke)))
	}
	if retries > 0 {
		batch.add(m.retries, float64(retries))
	}
	if result.outcome == outcomeInfo {
		batch.add(m.unknownOutcomes, 1)
	}
	if duplicate {
		batch.add(m.duplicatesSent, 1)
	}
	if misuse {
		batch.add(m.misuseSent, 1)
	}
	batch.push(inv.ctx, inv.state.Samples)
}

// jsResult is the OperationResult of index.d.ts.
func (o moneyOutcome) jsResult() map[string]any {
	result := o.classification
	accepted := o.complete
	if !result.acceptedAt.IsZero() {
		accepted = result.acceptedAt
	}
	value := map[string]any{
		"op":           o.plan.op,
		"key":          o.plan.key,
		"kind":         o.plan.kind,
		"outcome":      result.outcome,
		"httpStatuses": o.statuses,
		"attempts":     len(o.statuses),
		"acceptMs":     durationMilliseconds(accepted.Sub(o.plan.invoke)),
	}
	if result.tx != "" {
		value["transactionId"] = result.tx
	}
	if result.status != "" {
		value["status"] = result.status
	}
	if result.reason != "" {
		value["reason"] = result.reason
	}
	if !result.finalAt.IsZero() {
		value["settleMs"] = durationMilliseconds(result.finalAt.Sub(o.plan.invoke))
	}
	return value
}

// ---- users and reads ----

type userBody struct {
	UserID    int64  `json:"user_id"`
	AccountID int64  `json:"account_id"`
	Email     string `json:"email"`
}

type sessionBody struct {
	Token     string `json:"token"`
	UserID    int64  `json:"user_id"`
	AccountID int64  `json:"account_id"`
}

func (c *Client) prepareSignup(inv invocation, args []sobek.Value) (runner, error) {
	email, password, err := credentialsArguments(argument(args, 0), argument(args, 1))
	if err != nil {
		return nil, err
	}
	journal, err := c.journal()
	if err != nil {
		return nil, err
	}
	return func() (any, error) {
		user, err := c.signup(inv, journal, email, password, 1)
		if err != nil {
			return nil, err
		}
		return map[string]any{"userId": user.UserID, "accountId": user.AccountID}, nil
	}, nil
}

func (c *Client) journal() (*Journal, error) {
	if c.options.runDir == "" {
		return nil, nil
	}
	journal, err := c.process.journals.get(c.options.runDir)
	if err != nil {
		return nil, fmt.Errorf("open the journal: %w", err)
	}
	return journal, nil
}

// signup creates a user and journals it (kind signup, "to" = the new account). A signup carries no key, so it
// is retried (attempts > 1, prepareAccounts only) just on answers that prove nothing was created, and on no
// answer; an email_taken after no answer means the first attempt created the user: the ids are then unknown
// (zero) and the caller learns them by signing in.
func (c *Client) signup(inv invocation, journal *Journal, email, password string, attempts int) (userBody, error) {
	body, err := json.Marshal(map[string]string{"email": email, "password": password})
	if err != nil {
		return userBody{}, err
	}
	spec := requestSpec{method: http.MethodPost, route: "POST /v1/users", path: "/v1/users", body: body, expected: expectedSuccess}
	invoke := c.clock()
	op := c.process.nextOperationID()
	var exchanges []exchange
	for attempt := 1; ; attempt++ {
		answer := c.send(inv, spec)
		exchanges = append(exchanges, answer)
		if attempt >= attempts || !retryable(answer) || inv.ctx.Err() != nil || !sleep(inv.ctx, c.backoff(attempt, answer.retryAfter)) {
			break
		}
	}
	last := exchanges[len(exchanges)-1]
	var user userBody
	classification := classification{}
	var failure error
	switch {
	case last.status == http.StatusCreated:
		if err := json.Unmarshal(last.body, &user); err != nil || user.UserID == 0 || user.AccountID == 0 {
			classification.outcome, classification.reason = outcomeInfo, reasonInvalidResponse
			failure = fmt.Errorf("signup %s: unreadable answer: %s", email, last.describe())
		} else {
			classification.outcome = outcomeOK
		}
	case last.status == http.StatusConflict && last.code() == codeEmailTaken && len(exchanges) > 1 && exchanges[len(exchanges)-2].status == 0:
		classification.outcome, classification.reason = outcomeInfo, codeEmailTaken
	case last.status == 0 || last.status >= 500 || last.status == http.StatusTooManyRequests:
		classification.outcome, classification.reason = outcomeInfo, codeOr(last)
		if last.status == 0 {
			classification.reason = reasonConnectionError
		}
		failure = fmt.Errorf("signup %s: %s", email, last.describe())
	default:
		classification.outcome, classification.reason = outcomeFail, codeOr(last)
		failure = fmt.Errorf("signup %s: %s", email, last.describe())
	}
	complete := c.clock()
	if journal != nil {
		statuses := statusesOf(exchanges)
		journal.Record(Entry{Version: JournalVersion, Op: op, Kind: kindSignup, User: user.UserID, To: user.AccountID,
			VU: inv.vu, Iter: inv.iter, Invoke: invoke.UnixMicro(), Complete: complete.UnixMicro(), Attempts: len(statuses),
			Statuses: statuses, Outcome: classification.outcome, Reason: classification.reason})
	}
	batch := sampleBatch{tags: inv.tags.Tags.With("kind", kindSignup), metadata: inv.tags.Metadata, at: complete}
	batch.add(c.metrics.operations, 1, "outcome", classification.outcome)
	if len(exchanges) > 1 {
		batch.add(c.metrics.retries, float64(len(exchanges)-1))
	}
	if classification.outcome == outcomeInfo {
		batch.add(c.metrics.unknownOutcomes, 1)
	}
	batch.push(inv.ctx, inv.state.Samples)
	return user, failure
}

func (c *Client) prepareSignin(inv invocation, args []sobek.Value) (runner, error) {
	email, password, err := credentialsArguments(argument(args, 0), argument(args, 1))
	if err != nil {
		return nil, err
	}
	return func() (any, error) {
		s, err := c.signin(inv, email, password)
		if err != nil {
			return nil, err
		}
		return sessionValue(s), nil
	}, nil
}

// signin opens a session. Signing in twice only makes two sessions, so it is retried like a read.
func (c *Client) signin(inv invocation, email, password string) (session, error) {
	body, err := json.Marshal(map[string]string{"email": email, "password": password})
	if err != nil {
		return session{}, err
	}
	spec := requestSpec{method: http.MethodPost, route: "POST /v1/sessions", path: "/v1/sessions", body: body, expected: expectedSuccess}
	exchanges := c.sendWithRetries(inv, spec)
	last := exchanges[len(exchanges)-1]
	if last.status != http.StatusCreated {
		return session{}, fmt.Errorf("signin %s: %s", email, last.describe())
	}
	var answer sessionBody
	if err := json.Unmarshal(last.body, &answer); err != nil || answer.Token == "" {
		return session{}, fmt.Errorf("signin %s: unreadable answer: %s", email, last.describe())
	}
	return session{token: answer.Token, userID: answer.UserID, accountID: answer.AccountID, email: email}, nil
}

func sessionValue(s session) map[string]any {
	return map[string]any{"token": s.token, "userId": s.userID, "accountId": s.accountID, "email": s.email}
}

func (c *Client) prepareTransaction(inv invocation, args []sobek.Value) (runner, error) {
	s, err := parseSession(c.vu.Runtime(), argument(args, 0))
	if err != nil {
		return nil, err
	}
	id, err := transactionIDArgument(argument(args, 1))
	if err != nil {
		return nil, err
	}
	spec := requestSpec{method: http.MethodGet, route: "GET /v1/transactions/{id}", path: "/v1/transactions/" + url.PathEscape(id),
		token: s.token, expected: func(status int) bool { return expectedSuccess(status) || status == http.StatusNotFound }}
	return func() (any, error) {
		exchanges := c.sendWithRetries(inv, spec)
		last := exchanges[len(exchanges)-1]
		switch last.status {
		case http.StatusNotFound:
			return nil, nil
		case http.StatusOK:
		default:
			return nil, fmt.Errorf("transaction %s: %s", id, last.describe())
		}
		var body transactionBody
		if err := json.Unmarshal(last.body, &body); err != nil {
			return nil, fmt.Errorf("transaction %s: unreadable answer: %s", id, last.describe())
		}
		value := map[string]any{"transaction_id": body.TransactionID, "kind": body.Kind, "status": body.Status,
			"amount": body.Amount, "source_account_id": body.SourceAccountID, "destination_account_id": body.DestinationAccountID}
		if body.Reason != "" {
			value["reason"] = body.Reason
		}
		return value, nil
	}, nil
}

func (c *Client) prepareBalance(inv invocation, args []sobek.Value) (runner, error) {
	s, err := parseSession(c.vu.Runtime(), argument(args, 0))
	if err != nil {
		return nil, err
	}
	accountID, err := accountArgument("accountId", argument(args, 1))
	if err != nil {
		return nil, err
	}
	spec := requestSpec{method: http.MethodGet, route: "GET /v1/accounts/{id}", path: "/v1/accounts/" + strconv.FormatInt(accountID, 10),
		token: s.token, expected: expectedSuccess}
	return func() (any, error) {
		balance, err := c.balance(inv, spec)
		if err != nil {
			return nil, err
		}
		return balance, nil
	}, nil
}

func (c *Client) balance(inv invocation, spec requestSpec) (int64, error) {
	exchanges := c.sendWithRetries(inv, spec)
	last := exchanges[len(exchanges)-1]
	if last.status != http.StatusOK {
		return 0, fmt.Errorf("balance: %s", last.describe())
	}
	var body struct {
		Balance *int64 `json:"balance"`
	}
	if err := json.Unmarshal(last.body, &body); err != nil || body.Balance == nil {
		return 0, fmt.Errorf("balance: unreadable answer: %s", last.describe())
	}
	return *body.Balance, nil
}

// ---- prepareAccounts ----

func (c *Client) preparePrepareAccounts(inv invocation, args []sobek.Value) (runner, error) {
	options, err := parsePrepareOptions(c.vu.Runtime(), argument(args, 0))
	if err != nil {
		return nil, err
	}
	journal, err := c.journal()
	if err != nil {
		return nil, err
	}
	batch := c.process.prepareBatches.Add(1)
	return func() (any, error) {
		accounts, err := c.prepareAccounts(inv, journal, options, batch)
		if err != nil {
			return nil, err
		}
		return accounts, nil
	}, nil
}

// prepareAccounts signs up, signs in and funds options.count users with options.concurrency goroutines. The
// first failure stops the others; its error is returned.
func (c *Client) prepareAccounts(inv invocation, journal *Journal, options prepareOptions, batch int64) ([]map[string]any, error) {
	ctx, cancel := context.WithCancel(inv.ctx)
	defer cancel()
	worker := inv
	worker.ctx = ctx
	accounts := make([]map[string]any, options.count)
	indexes := make(chan int)
	var (
		wait      sync.WaitGroup
		failMutex sync.Mutex
		failure   error
	)
	fail := func(err error) {
		failMutex.Lock()
		defer failMutex.Unlock()
		if failure == nil {
			failure = err
			cancel()
		}
	}
	for range min(options.concurrency, options.count) {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for index := range indexes {
				account, err := c.prepareAccount(worker, journal, options, batch, index)
				if err != nil {
					fail(err)
					continue
				}
				accounts[index] = account
			}
		}()
	}
feed:
	for index := range options.count {
		select {
		case indexes <- index:
		case <-ctx.Done():
			break feed
		}
	}
	close(indexes)
	wait.Wait()
	if failure != nil {
		return nil, fmt.Errorf("prepare %d accounts: %w", options.count, failure)
	}
	if err := inv.ctx.Err(); err != nil {
		return nil, fmt.Errorf("prepare %d accounts: %w", options.count, err)
	}
	return accounts, nil
}

func (c *Client) prepareAccount(inv invocation, journal *Journal, options prepareOptions, batch int64, index int) (map[string]any, error) {
	email := fmt.Sprintf("%s-%s-%d-%d@ledgerproof.test", options.emailPrefix, c.process.emailRun, batch, index)
	if _, err := c.signup(inv, journal, email, options.password, c.options.retry.maxAttempts); err != nil {
		return nil, err
	}
	s, err := c.signin(inv, email, options.password)
	if err != nil {
		return nil, err
	}
	plan, err := c.plan(inv, kindDeposit, s, 0, s.accountID, options.fundingMinor, operationOptions{wait: c.options.wait}, false)
	if err != nil {
		return nil, err
	}
	plan.pollFor = prepareSettleTimeout
	funding := c.execute(plan)
	if funding.classification.outcome != outcomeOK {
		return nil, fmt.Errorf("funding deposit of %s (op %s, key %s) ended %s %s %s, statuses %v", email, plan.op, plan.key,
			funding.classification.outcome, funding.classification.status, funding.classification.reason, funding.statuses)
	}
	account := sessionValue(s)
	account["password"] = options.password
	account["balance"] = options.fundingMinor
	return account, nil
}

// vuLogger returns the VU's logger in the init context or during a test.
func vuLogger(vu modules.VU) interface{ Infof(string, ...any) } {
	if env := vu.InitEnv(); env != nil && env.Logger != nil {
		return env.Logger
	}
	if state := vu.State(); state != nil && state.Logger != nil {
		return state.Logger
	}
	return nil
}
