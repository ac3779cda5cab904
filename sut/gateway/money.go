package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/jsonwire"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// The bodies of the money operations, decoded by decodeStrict; a
// withdrawal's body is a deposit's. Numbers are kept as text so that
// fractions, exponents and overflows get a precise error.
type (
	depositRequest struct {
		AccountID jsonNumber    `json:"account_id"`
		Amount    amountLiteral `json:"amount"`
	}
	transferRequest struct {
		FromAccountID jsonNumber    `json:"from_account_id"`
		ToAccountID   jsonNumber    `json:"to_account_id"`
		Amount        amountLiteral `json:"amount"`
	}
)

// moneyRequest is a money body decoded and checked by the ledger's rules,
// before authorisation: the accounts it names and its amount.
type moneyRequest struct {
	Kind ledger.Kind
	// AccountID is the account of a deposit or a withdrawal.
	AccountID int64
	// FromAccountID and ToAccountID are the accounts of a transfer.
	FromAccountID, ToAccountID int64
	AmountMinor                int64
}

// decodeMoneyRequest decodes the body of a money operation of kind. Its
// errors are invalid_request and invalid_amount.
func decodeMoneyRequest(kind ledger.Kind, body []byte) (moneyRequest, error) {
	request := moneyRequest{Kind: kind}
	var err error
	switch kind {
	case ledger.KindDeposit, ledger.KindWithdrawal:
		var fields depositRequest
		if err := decodeStrict(body, &fields); err != nil {
			return request, err
		}
		if request.AccountID, err = accountField("account_id", fields.AccountID); err != nil {
			return request, err
		}
		request.AmountMinor, err = amountField(fields.Amount)
	case ledger.KindTransfer:
		var fields transferRequest
		if err := decodeStrict(body, &fields); err != nil {
			return request, err
		}
		if request.FromAccountID, err = accountField("from_account_id", fields.FromAccountID); err != nil {
			return request, err
		}
		if request.ToAccountID, err = accountField("to_account_id", fields.ToAccountID); err != nil {
			return request, err
		}
		request.AmountMinor, err = amountField(fields.Amount)
	default:
		panic(fmt.Sprintf("gateway: decode a money request of kind %q", kind))
	}
	return request, err
}

// canonicalJSON is the request in its canonical form, the input of its
// fingerprint: the kind's members in a fixed order, numbers in decimal, no
// whitespace. These bytes must not change between versions: the ledger and
// Redis keep fingerprints made from them, and a replay compares with those.
func (m moneyRequest) canonicalJSON() []byte {
	// Written by hand (one per request); TestCanonicalJSONIsEncodingJSON
	// holds it to the bytes json.Marshal gives of these structs:
	// {"account_id":…,"amount":…} and
	// {"from_account_id":…,"to_account_id":…,"amount":…}.
	canonical := make([]byte, 0, 80)
	switch m.Kind {
	case ledger.KindDeposit, ledger.KindWithdrawal:
		canonical = append(canonical, `{"account_id":`...)
		canonical = jsonwire.Int(canonical, m.AccountID)
	case ledger.KindTransfer:
		canonical = append(canonical, `{"from_account_id":`...)
		canonical = jsonwire.Int(canonical, m.FromAccountID)
		canonical = append(canonical, `,"to_account_id":`...)
		canonical = jsonwire.Int(canonical, m.ToAccountID)
	default:
		panic(fmt.Sprintf("gateway: canonical form of a money request of kind %q", m.Kind))
	}
	canonical = append(canonical, `,"amount":`...)
	canonical = jsonwire.Int(canonical, m.AmountMinor)
	return append(canonical, '}')
}

// transactionResponse is the transaction resource. Its bytes depend only on
// the transaction and its state, so a response rebuilt from the ledger is
// identical to one sent before.
type transactionResponse struct {
	TransactionID        string        `json:"transaction_id"`
	Kind                 ledger.Kind   `json:"kind"`
	Status               ledger.Status `json:"status"`
	AmountMinor          int64         `json:"amount"`
	SourceAccountID      int64         `json:"source_account_id"`
	DestinationAccountID int64         `json:"destination_account_id"`
	Reason               ledger.Code   `json:"reason,omitempty"`
}

// body is the response's bytes: marshal(t), JSON and a newline, written
// by hand as one is sent per request (TestTransactionResponseBody compares
// them with marshal's).
func (t transactionResponse) body() []byte {
	dst := make([]byte, 0, 224)
	dst = append(dst, `{"transaction_id":`...)
	dst = jsonwire.String(dst, t.TransactionID)
	dst = append(dst, `,"kind":`...)
	dst = jsonwire.String(dst, string(t.Kind))
	dst = append(dst, `,"status":`...)
	dst = jsonwire.String(dst, string(t.Status))
	dst = append(dst, `,"amount":`...)
	dst = jsonwire.Int(dst, t.AmountMinor)
	dst = append(dst, `,"source_account_id":`...)
	dst = jsonwire.Int(dst, t.SourceAccountID)
	dst = append(dst, `,"destination_account_id":`...)
	dst = jsonwire.Int(dst, t.DestinationAccountID)
	if t.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = jsonwire.String(dst, string(t.Reason))
	}
	return append(dst, '}', '\n')
}

// IdempotencyKeyMaximum is the longest idempotency key accepted, in bytes.
const IdempotencyKeyMaximum = 255

// ReplayedHeader marks a response that was replayed for a reused key.
const ReplayedHeader = "Idempotent-Replayed"

// IdempotencyKeyHeader is the header that names a money request.
const IdempotencyKeyHeader = "Idempotency-Key"

// idempotencyKey returns the request's idempotency key: exactly one
// Idempotency-Key header, valid by validKey. Two headers are refused rather
// than one chosen, as a proxy or a log may read the other one; a client that
// sends two does not know which request it names. Every refusal is
// idempotency_key_missing ("missing or invalid", as sut/openapi.yaml says),
// and its message never echoes the key, which may hold control bytes.
// net/http itself refuses, before any handler, a header value with a
// control byte other than tab (see docs/request-rules.md).
func idempotencyKey(header http.Header) (string, error) {
	values := header.Values(IdempotencyKeyHeader)
	switch {
	case len(values) > 1:
		return "", ledger.Errorf(ledger.CodeIdempotencyKeyMissing,
			"exactly one Idempotency-Key header is allowed; the request has %d", len(values))
	case len(values) == 0 || !validKey(values[0]):
		return "", ledger.Errorf(ledger.CodeIdempotencyKeyMissing,
			"an Idempotency-Key header of 1 to %d printable ASCII characters (0x21-0x7E) is required", IdempotencyKeyMaximum)
	}
	return values[0], nil
}

func validKey(key string) bool {
	if key == "" || len(key) > IdempotencyKeyMaximum {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// parseCommand decodes and checks a money request into a command.
func (g *Gateway) parseCommand(w http.ResponseWriter, r *http.Request, kind ledger.Kind, session redis.Session) (ledger.Command, error) {
	command := ledger.Command{Kind: kind, UserID: session.UserID}
	request, err := decodeMoneyRequest(kind, requestBodyOf(r))
	if err != nil {
		return command, err
	}
	command.AmountMinor = request.AmountMinor
	switch kind {
	case ledger.KindDeposit:
		command.SourceAccountID, command.DestinationAccountID = ledger.ExternalAccountID, request.AccountID
	case ledger.KindWithdrawal:
		command.SourceAccountID, command.DestinationAccountID = request.AccountID, ledger.ExternalAccountID
	case ledger.KindTransfer:
		command.SourceAccountID, command.DestinationAccountID = request.FromAccountID, request.ToAccountID
	}
	// The caller's own account is the one debited, or credited by a deposit.
	own := command.SourceAccountID
	if kind == ledger.KindDeposit {
		own = command.DestinationAccountID
	}
	if own != session.AccountID {
		return command, ledger.Errorf(ledger.CodeForbidden, "account %d is not yours", own)
	}
	if command.SourceAccountID == command.DestinationAccountID {
		return command, ledger.Errorf(ledger.CodeSameAccount, "a transfer needs two different accounts")
	}
	command.Fingerprint = ledger.Fingerprint(kind, request.canonicalJSON())
	return command, nil
}

// waitRequested reads "Prefer: wait=N" (RFC 7240), N in seconds.
func (g *Gateway) waitRequested(r *http.Request) (time.Duration, error) {
	for _, preference := range strings.Split(r.Header.Get("Prefer"), ",") {
		name, value, found := strings.Cut(strings.TrimSpace(preference), "=")
		if !found || !strings.EqualFold(name, "wait") {
			continue
		}
		seconds, err := strconv.ParseFloat(value, 64)
		if err != nil || seconds < 0 || math.IsNaN(seconds) || math.IsInf(seconds, 0) {
			return 0, ledger.Errorf(ledger.CodeInvalidRequest, "Prefer: wait=%s is not a number of seconds", value)
		}
		// Clamp before converting: a huge value would overflow Duration.
		if seconds >= g.config.WaitMax.Seconds() {
			return g.config.WaitMax, nil
		}
		return time.Duration(seconds * float64(time.Second)), nil
	}
	return 0, nil
}

func (g *Gateway) moneyHandler(kind ledger.Kind) handler {
	return func(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
		session := sessionOf(r)
		if allowed, wait := g.moneyLimits.allow(session.UserID, g.clock()); !allowed {
			g.metrics.refusals.WithLabelValues("money_rate").Inc()
			w.Header().Set("Retry-After", retryAfterSeconds(wait))
			return 0, nil, ledger.Errorf(ledger.CodeRateLimited, "more than %g money requests per second for this user", g.config.MoneyRateLimit.PerSecond)
		}
		key, err := idempotencyKey(r.Header)
		if err != nil {
			return 0, nil, err
		}
		wait, err := g.waitRequested(r)
		if err != nil {
			return 0, nil, err
		}
		command, err := g.parseCommand(w, r, kind, session)
		if err != nil {
			return 0, nil, err
		}
		command.IdempotencyKey = key
		command.AcceptedAt = g.clock().UTC()
		return g.accept(w, r.Context(), command, wait)
	}
}

// accept runs the idempotency contract, queues the command, optionally waits
// for its outcome, and remembers the response for replays.
func (g *Gateway) accept(w http.ResponseWriter, ctx context.Context, command ledger.Command, wait time.Duration) (int, []byte, error) {
	claimStarted := g.clock()
	claim, err := g.claim(w, ctx, &command)
	g.metrics.claimSeconds.Observe(g.clock().Sub(claimStarted).Seconds())
	if err != nil || claim.answered {
		return claim.status, claim.body, err
	}
	if g.config.ApplyMode == ApplyModeNaive {
		return g.applyCommand(ctx, command, claim)
	}
	// The soft checks run once the key is claimed, so a replay of a key is
	// answered as before and never refused anew (softchecks.go).
	if reason := g.softRefusal(ctx, command, claim); reason != "" {
		if status, body, answered, err := g.refuseSoftly(ctx, command, claim, reason); answered {
			return status, body, err
		}
	}
	return g.queueCommand(ctx, command, wait, claim)
}

// applyCommand is ApplyModeNaive: the command is applied here and now, in a
// Postgres transaction of its own, and the client gets its final outcome
// whatever wait it asked for (a wait bounds how long a client is willing to
// wait; this mode never answers before the outcome). The idempotency contract
// is the queue mode's: the key was claimed in Redis and checked against the
// ledger; ApplyOne checks the ledger again inside its transaction, and the
// transactions' primary key refuses a second copy applied concurrently (a
// takeover after the in-flight lease), which then fails with 503 and is
// answered from the ledger on the client's retry.
func (g *Gateway) applyCommand(ctx context.Context, command ledger.Command, claim keyClaim) (int, []byte, error) {
	started := g.clock()
	outcome, err := g.applier.ApplyOne(ctx, command)
	g.metrics.produceSeconds.Observe(g.clock().Sub(started).Seconds())
	if ledger.ErrorCode(err) == ledger.CodeIdempotencyKeyReused {
		g.release(ctx, command, claim.reservedByUs)
		g.metrics.keyReused.Inc()
		return 0, nil, keyReused(command)
	}
	if err != nil {
		// Whether the transaction committed is unknown (the commit may have
		// succeeded before the connection broke): the reservation is
		// released and the client's retry is answered from the ledger if it
		// did, applied if it did not.
		g.release(ctx, command, claim.reservedByUs)
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "the ledger did not apply the command: %v", err)
	}
	final, err := finalResponse(command, ledger.OutcomeNotice{Outcome: outcome, Fingerprint: command.Fingerprint})
	if err != nil {
		return 0, nil, err
	}
	if outcome.TransactionID != command.TransactionID {
		panic(fmt.Sprintf("gateway: applied %s, the ledger answered for %s", command.TransactionID, outcome.TransactionID))
	}
	status, body := http.StatusOK, final.body()
	if claim.cacheUp {
		g.remember(ctx, command, claim.record, status, body)
	}
	return status, body, nil
}

// keyClaim is what the idempotency contract decided for a request: either
// an answer already (a replay, from Redis or the ledger), or the right to
// queue the command.
type keyClaim struct {
	answered     bool
	status       int
	body         []byte
	record       redis.IdempotencyRecord
	cacheUp      bool
	reservedByUs bool
	// balance and dailyDebits are the soft checks' cached figures, read
	// with the reservation (Read false: not read; softRefusal reads them).
	balance, dailyDebits redis.CachedFigure
}

// claimKey is the idempotency contract: the command's transaction id is
// derived from the user and the key, Redis reserves the key (fast path) and
// the ledger answers for keys already applied (last word).
func (g *Gateway) claimKey(w http.ResponseWriter, ctx context.Context, command *ledger.Command) (keyClaim, error) {
	command.TransactionID = ledger.TransactionIDFor(command.UserID, command.IdempotencyKey)
	record := redis.IdempotencyRecord{Fingerprint: command.Fingerprint, TransactionID: command.TransactionID, ReservedAt: command.AcceptedAt}
	var reads redis.CachedReads
	if g.softReadsWithReservation && g.config.ApplyMode != ApplyModeNaive {
		reads = g.softReads(*command)
	}
	reservation, err := g.cache.ReserveAndRead(ctx, command.UserID, command.IdempotencyKey, record, g.config.IdempotencyTTL, reads)
	existing, reserved := reservation.Existing, reservation.Reserved
	cacheUp := err == nil
	if err != nil {
		g.metrics.cacheErrors.Inc()
		g.logger.Debug("idempotency fast path unavailable; using the ledger", "error", err)
	}
	if cacheUp && !reserved {
		if existing.Fingerprint != command.Fingerprint {
			g.metrics.keyReused.Inc()
			return keyClaim{}, keyReused(*command)
		}
		if existing.ResponseStatus != 0 {
			g.metrics.replays.Inc()
			w.Header().Set(ReplayedHeader, "true")
			return keyClaim{answered: true, status: existing.ResponseStatus, body: existing.ResponseBody}, nil
		}
		// A final answer the worker announced is not stored in the record
		// (queueCommand): the worker's outcome record holds it, and this
		// request, with the same fingerprint, renders the same bytes.
		if notice, found, err := g.cache.LookupOutcome(ctx, command.TransactionID); err == nil && found {
			final, err := finalResponse(*command, notice)
			if err != nil {
				g.metrics.keyReused.Inc()
				return keyClaim{}, err
			}
			g.metrics.replays.Inc()
			w.Header().Set(ReplayedHeader, "true")
			return keyClaim{answered: true, status: http.StatusOK, body: final.body()}, nil
		}
		if g.clock().Sub(existing.ReservedAt) < g.config.InFlightLease {
			w.Header().Set("Retry-After", "1")
			return keyClaim{}, ledger.Errorf(ledger.CodeIdempotencyKeyInFlight, "a request with idempotency key %q is still in flight; retry shortly", command.IdempotencyKey)
		}
		// The first request's gateway died mid-request: take over. The
		// worker's dedupe makes a second copy of the command harmless.
	}

	// A key new to a Redis that holds every key the ledger accepted within
	// the key TTL (redis.KeysCompleteKey) is new to the ledger too, or
	// older than the TTL: it is queued without asking the ledger. A copy of
	// an old key is then refused by the ledger's unique key (the worker's
	// dedupe) and announced with the stored outcome, which a waiting
	// request receives (a different body: 422).
	if cacheUp && reserved && reservation.KeysComplete {
		g.metrics.ledgerChecks.WithLabelValues("skipped").Inc()
		return keyClaim{record: record, cacheUp: true, reservedByUs: true,
			balance: reservation.Balance, dailyDebits: reservation.DailyDebits}, nil
	}
	g.metrics.ledgerChecks.WithLabelValues("checked").Inc()
	// The ledger is the last word: a key already applied (Redis lost its
	// record, or it is down) answers from the ledger and queues nothing.
	stored, err := g.ledgerOf(command.PartitionKey()).Transaction(ctx, command.TransactionID)
	switch {
	case err == nil:
		if stored.Fingerprint != command.Fingerprint {
			g.metrics.keyReused.Inc()
			return keyClaim{}, keyReused(*command)
		}
		g.metrics.replays.Inc()
		w.Header().Set(ReplayedHeader, "true")
		status, body := http.StatusOK, responseOf(stored).body()
		if cacheUp {
			g.remember(ctx, *command, record, status, body)
		}
		return keyClaim{answered: true, status: status, body: body}, nil
	case ledger.ErrorCode(err) != ledger.CodeNotFound:
		g.release(ctx, *command, cacheUp && reserved)
		return keyClaim{}, ledger.Errorf(ledger.CodeUnavailable, "the ledger is unavailable: %v", err)
	}
	return keyClaim{record: record, cacheUp: cacheUp, reservedByUs: cacheUp && reserved,
		balance: reservation.Balance, dailyDebits: reservation.DailyDebits}, nil
}

// ignoreKey is ledger.BugNoIdempotency: the key is stored with the command
// but guards nothing. Every request, every retry of it, gets a fresh
// transaction id and is queued; nothing is reserved or remembered.
func (g *Gateway) ignoreKey(_ http.ResponseWriter, _ context.Context, command *ledger.Command) (keyClaim, error) {
	var random [16]byte
	if _, err := rand.Read(random[:]); err != nil {
		return keyClaim{}, fmt.Errorf("fresh transaction id: %w", err)
	}
	command.TransactionID = ledger.TransactionIDFor(command.UserID, command.IdempotencyKey+"\x00"+hex.EncodeToString(random[:]))
	return keyClaim{}, nil
}

// queueCommand queues a claimed command, optionally waits for its outcome,
// and remembers the response for replays.
func (g *Gateway) queueCommand(ctx context.Context, command ledger.Command, wait time.Duration, claim keyClaim) (int, []byte, error) {
	record, cacheUp := claim.record, claim.cacheUp
	var outcome <-chan ledger.OutcomeNotice
	if wait > 0 {
		var cancel func()
		outcome, cancel = g.waiters.register(command.TransactionID)
		defer cancel()
	}
	value, err := command.AppendJSON(make([]byte, 0, 384))
	if err != nil {
		return 0, nil, err
	}
	if err := g.produce(ctx, command, value); err != nil {
		// Whether the broker kept the record is unknown; the client retries
		// with the same key and the worker applies at most one copy.
		g.release(ctx, command, claim.reservedByUs)
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "the command queue did not acknowledge: %v", err)
	}
	// The broker holds the command and the client has not been told: a
	// gateway dying here leaves the client with a broken connection, an
	// unknown outcome it resolves by retrying with the same key.
	crash.Hit(crash.AfterAckBeforeResponse)

	status, body := http.StatusAccepted, transactionResponse{TransactionID: command.TransactionID, Kind: command.Kind,
		Status: ledger.StatusAccepted, AmountMinor: command.AmountMinor, SourceAccountID: command.SourceAccountID,
		DestinationAccountID: command.DestinationAccountID}.body()
	recorded := false
	if wait > 0 {
		final, inRedis, err := g.awaitOutcome(ctx, command, outcome, wait)
		if err != nil {
			return 0, nil, err
		}
		if final != nil {
			status, body, recorded = http.StatusOK, final.body(), inRedis
		}
	}
	// A final outcome that came from the worker's outcome record (or its
	// announcement, published after the record was written) is not stored
	// again: a replay renders it from that record (claimKey). This saves
	// Redis a script and the record's response per request. The 202s and
	// outcomes read from the ledger are stored.
	if cacheUp && !recorded {
		g.remember(ctx, command, record, status, body)
	}
	return status, body, nil
}

// produceAcknowledged queues a command and returns once the broker
// acknowledged it: only then may the client be told it is accepted.
func (g *Gateway) produceAcknowledged(ctx context.Context, command ledger.Command, value []byte) error {
	produceContext, cancel := context.WithTimeout(ctx, g.config.ProduceTimeout)
	defer cancel()
	started := g.clock()
	_, _, err := g.queue.Produce(produceContext, []byte(strconv.FormatInt(command.PartitionKey(), 10)), value)
	g.metrics.produceSeconds.Observe(g.clock().Sub(started).Seconds())
	return err
}

// produceInBackground is ledger.BugAcknowledgeBeforeCommit: the command is
// handed to the producer and the client is answered at once, before the
// broker acknowledged it. A record the producer then fails to deliver (the
// gateway dies with it buffered, the broker stays away past the delivery
// timeout) was acknowledged to the client and is lost. Background produces
// are bounded; beyond the bound the gateway waits for the acknowledgement.
func (g *Gateway) produceInBackground(ctx context.Context, command ledger.Command, value []byte) error {
	select {
	case g.backgroundProduces <- struct{}{}:
	default:
		return g.produceAcknowledged(ctx, command, value)
	}
	go func() {
		defer func() { <-g.backgroundProduces }()
		if err := g.produceAcknowledged(context.WithoutCancel(ctx), command, value); err != nil {
			g.logger.Warn("seeded bug ack-before-commit: an acknowledged command was not acknowledged by the broker",
				"transaction_id", command.TransactionID, "error", err)
		}
	}()
	return nil
}

// remember stores a response for the key's replays. A 202 also remembers
// the transaction as pending, for GET /v1/transactions/{id} until the
// worker applies it: its id reaches the client with this answer, so the
// pending record is written before the answer is sent, and only then.
func (g *Gateway) remember(ctx context.Context, command ledger.Command, record redis.IdempotencyRecord, status int, body []byte) {
	record.ResponseStatus, record.ResponseBody = status, body
	var pending *redis.PendingTransaction
	if status == http.StatusAccepted {
		pending = &redis.PendingTransaction{UserID: command.UserID, Kind: command.Kind, SourceAccountID: command.SourceAccountID,
			DestinationAccountID: command.DestinationAccountID, AmountMinor: command.AmountMinor}
	}
	started := g.clock()
	if err := g.cache.StoreResponse(context.WithoutCancel(ctx), command.UserID, command.IdempotencyKey, record, pending, g.config.IdempotencyTTL); err != nil {
		g.metrics.cacheErrors.Inc()
	}
	g.metrics.rememberSeconds.Observe(g.clock().Sub(started).Seconds())
}

func (g *Gateway) release(ctx context.Context, command ledger.Command, reserved bool) {
	if reserved {
		if err := g.cache.Release(context.WithoutCancel(ctx), command.UserID, command.IdempotencyKey, command.TransactionID); err != nil {
			g.metrics.cacheErrors.Inc()
		}
	}
}

// awaitOutcome waits, at most wait, for the command's outcome: woken by the
// worker's announcement, or by polling the ledger. nil means still pending.
// inRedis reports that the outcome came from the worker's outcome record in
// Redis or from its announcement, which the worker publishes after writing
// that record (redis.Client.AfterCommit); false: from the ledger.
func (g *Gateway) awaitOutcome(ctx context.Context, command ledger.Command, outcome <-chan ledger.OutcomeNotice, wait time.Duration) (final *transactionResponse, inRedis bool, err error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(g.config.WaitPollInterval)
	defer poll.Stop()
	polls := 0
	for {
		select {
		case <-ctx.Done():
			// The client went away; the command is queued, so the accepted
			// response is remembered for its retries.
			return nil, false, nil
		case <-deadline.C:
			g.metrics.waitTimeouts.Inc()
			return nil, false, nil
		case notice := <-outcome:
			final, err := finalResponse(command, notice)
			return final, true, err
		case <-poll.C:
			// The worker's outcome record in Redis is the cheap check; the
			// ledger answers when Redis does not: at once when Redis fails,
			// and every ledgerPollEvery-th poll when Redis has no outcome
			// yet (it may have lost it). Asking the ledger at every poll
			// made slow moments worse: each waiting request added a
			// Postgres query every WaitPollInterval just when Postgres was
			// the busiest.
			polls++
			notice, found, err := g.cache.LookupOutcome(ctx, command.TransactionID)
			if err == nil && found {
				final, err := finalResponse(command, notice)
				return final, true, err
			}
			if err == nil && polls%ledgerPollEvery != 0 {
				continue
			}
			stored, err := g.ledgerOf(command.PartitionKey()).Transaction(ctx, command.TransactionID)
			if err != nil {
				continue
			}
			final, err := finalResponse(command, ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: stored.ID,
				Status: stored.Status, Reason: stored.Reason}, Fingerprint: stored.Fingerprint})
			return final, false, err
		}
	}
}

// ledgerPollEvery is how many polls of a waiting request go by between two
// questions to the ledger while Redis answers (see awaitOutcome).
const ledgerPollEvery = 5

// finalResponse renders a command's final outcome, or refuses it when the
// outcome belongs to another request that used the same key.
func finalResponse(command ledger.Command, notice ledger.OutcomeNotice) (*transactionResponse, error) {
	if notice.Fingerprint != command.Fingerprint {
		return nil, keyReused(command)
	}
	return &transactionResponse{TransactionID: command.TransactionID, Kind: command.Kind, Status: notice.Status,
		AmountMinor: command.AmountMinor, SourceAccountID: command.SourceAccountID,
		DestinationAccountID: command.DestinationAccountID, Reason: notice.Reason}, nil
}

func keyReused(command ledger.Command) error {
	return ledger.Errorf(ledger.CodeIdempotencyKeyReused, "idempotency key %q was already used with a different request", command.IdempotencyKey)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func responseOf(t ledger.Transaction) transactionResponse {
	return transactionResponse{TransactionID: t.ID, Kind: t.Kind, Status: t.Status, AmountMinor: t.AmountMinor,
		SourceAccountID: t.SourceAccountID, DestinationAccountID: t.DestinationAccountID, Reason: t.Reason}
}

type accountResponse struct {
	AccountID    int64 `json:"account_id"`
	UserID       int64 `json:"user_id"`
	BalanceMinor int64 `json:"balance"`
}

func (g *Gateway) getAccount(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	id, err := parseID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	// Another user's account and an account that does not exist get the
	// same answer, without asking the ledger, so this route does not tell
	// which accounts exist (as GET /v1/transactions/{id} does not).
	notFound := ledger.Errorf(ledger.CodeAccountNotFound, "you have no account %d", id)
	session := sessionOf(r)
	if id != session.AccountID {
		return 0, nil, notFound
	}
	account, err := g.ledgerOf(id).Account(r.Context(), id)
	if ledger.ErrorCode(err) == ledger.CodeAccountNotFound {
		return 0, nil, notFound
	}
	if err != nil {
		return 0, nil, err
	}
	if account.UserID != session.UserID {
		// A session names its user's own account; the ledger disagreeing
		// is a broken invariant, answered as not found rather than shown.
		g.logger.Error("a session's account belongs to another user", "account_id", id, "session_user_id", session.UserID, "account_user_id", account.UserID)
		return 0, nil, notFound
	}
	return http.StatusOK, marshal(accountResponse{AccountID: account.ID, UserID: account.UserID, BalanceMinor: account.BalanceMinor}), nil
}

func (g *Gateway) getTransaction(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
	id := r.PathValue("id")
	session := sessionOf(r)
	notFound := ledger.Errorf(ledger.CodeNotFound, "transaction %s does not exist", id)
	if !uuidPattern.MatchString(id) {
		return 0, nil, notFound
	}
	// Every transaction of the caller is keyed by its own account (see
	// shards.go), so its row is in that account's shard.
	stored, err := g.ledgerOf(session.AccountID).Transaction(r.Context(), id)
	if err == nil {
		if stored.UserID != session.UserID {
			return 0, nil, notFound
		}
		return http.StatusOK, responseOf(stored).body(), nil
	}
	if ledger.ErrorCode(err) != ledger.CodeNotFound {
		return 0, nil, err
	}
	pending, found, err := g.cache.LookupPending(r.Context(), id)
	if err != nil {
		return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "transaction %s is not in the ledger and pending transactions are unavailable: %v", id, err)
	}
	if !found || pending.UserID != session.UserID {
		return 0, nil, notFound
	}
	return http.StatusOK, transactionResponse{TransactionID: id, Kind: pending.Kind, Status: ledger.StatusAccepted,
		AmountMinor: pending.AmountMinor, SourceAccountID: pending.SourceAccountID, DestinationAccountID: pending.DestinationAccountID}.body(), nil
}
