// Package redis is the reference system's Redis adapter: sessions, the fast
// path of the idempotency contract, the balance cache, and the channel on
// which workers announce outcomes to waiting gateways. Redis is never on the
// correctness path: every record here can be lost and money stays right,
// because Postgres holds the ledger and the unique key per user.
package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerproof/ledgerproof/sut/coalesce"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// OutcomesChannel is the pub/sub channel workers publish outcomes on.
const OutcomesChannel = "ledger:outcomes"

// Config configures a Client.
type Config struct {
	// Addr is host:port of the Redis server. Required.
	Addr string
	// Timeout bounds every command (dial, read, write). Default 500ms:
	// Redis is a fast path; when it is slow the callers fall back to
	// Postgres rather than wait.
	Timeout time.Duration
	// PoolSize caps connections. Default 64, enough for a gateway's
	// concurrent requests on a small machine.
	PoolSize int
	// OutcomeTTL is how long a transaction's outcome record
	// (outcome:<transaction id>, written by AfterCommit) lives. Default
	// DefaultOutcomeTTL, 24h, the gateway's default idempotency TTL. A
	// gateway waiting for an outcome reads the record (a poll that missed
	// the announcement), and asks the ledger when the record is not there.
	// A gateway replaying a key's final outcome reads it too: the key's
	// idempotency record does not store a response the outcome record
	// holds. Once the record expired, such a replay is answered from the
	// ledger, or told the key is in flight until the gateway's in-flight
	// lease (60 s) has passed since the reservation. A TTL shorter than
	// the gateway's idempotency TTL bounds Redis's memory at the price of
	// a Postgres read per late replay (docs/performance.md).
	OutcomeTTL time.Duration
}

// DefaultOutcomeTTL is Config.OutcomeTTL's default.
const DefaultOutcomeTTL = 24 * time.Hour

// MinimumOutcomeTTL is the shortest Config.OutcomeTTL: a gateway polls for
// an outcome every 200ms by default, and a record shorter-lived than a few
// polls would send every waiting request to the ledger.
const MinimumOutcomeTTL = time.Second

// Client talks to Redis.
type Client struct {
	client *goredis.Client
	// outcomeTTL is Config.OutcomeTTL.
	outcomeTTL time.Duration
	// The idempotency fast path runs on every money request: concurrent
	// requests' reservations and stored responses go to Redis as one
	// pipeline per batch (package coalesce) rather than one round trip
	// each. Each command in a pipeline runs as it would alone, in arrival
	// order, so two requests with one key still see each other.
	reservations *coalesce.Batcher[reserveCall, reserveAnswer]
	responses    *coalesce.Batcher[storeCall, error]
}

// reservationBatches and responseBatches shape the coalesced pipelines.
// Reservations come one per request as requests arrive, spread out: one lane
// lingering a millisecond gathers them (about 3 per pipeline at 3,600
// requests/s). Stored responses (202s, answers read from the ledger: a
// final outcome the worker recorded is not stored again) come in bursts (a
// stalled pipeline's waits time out together) and need no linger; two lanes
// keep them moving while one pipeline waits. A few hundred commands stay far
// below what Redis answers within its timeout.
var (
	reservationBatches = coalesce.Options{Lanes: 1, Max: 256, Linger: time.Millisecond}
	responseBatches    = coalesce.Options{Lanes: 2, Max: 256}
)

// New builds a client; it does not dial until first use.
func New(config Config) (*Client, error) {
	if config.Addr == "" {
		return nil, errors.New("redis: Addr is required")
	}
	if config.Timeout == 0 {
		config.Timeout = 500 * time.Millisecond
	}
	if config.PoolSize == 0 {
		config.PoolSize = 64
	}
	if config.OutcomeTTL == 0 {
		config.OutcomeTTL = DefaultOutcomeTTL
	}
	if config.OutcomeTTL < MinimumOutcomeTTL {
		return nil, fmt.Errorf("redis: outcome TTL %s is below the minimum %s", config.OutcomeTTL, MinimumOutcomeTTL)
	}
	c := &Client{outcomeTTL: config.OutcomeTTL, client: goredis.NewClient(&goredis.Options{
		Addr:         config.Addr,
		DialTimeout:  config.Timeout,
		ReadTimeout:  config.Timeout,
		WriteTimeout: config.Timeout,
		PoolSize:     config.PoolSize,
		MaxRetries:   1,
		// RESP2: the client uses nothing of RESP3, and with it go-redis
		// looks for push notifications before every reply it reads (1.5 %
		// of a gateway's CPU at 2,500 TPS, docs/performance.md "Ninth
		// pass").
		Protocol: 2,
	})}
	c.reservations = coalesce.New(c.reserveBatch, reservationBatches)
	c.responses = coalesce.New(c.storeResponseBatch, responseBatches)
	return c, nil
}

// Close closes the connections.
func (c *Client) Close() error {
	c.reservations.Close()
	c.responses.Close()
	return c.client.Close()
}

// Ping checks Redis answers.
func (c *Client) Ping(ctx context.Context) error { return c.client.Ping(ctx).Err() }

// Session is what a bearer token stands for. IssuedAt is the ledger
// database's clock at sign-in (zero for a session stored before it was
// recorded): the gateway compares it with the user's revocation time.
type Session struct {
	UserID    int64     `json:"user_id"`
	AccountID int64     `json:"account_id"`
	IssuedAt  time.Time `json:"issued_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// sessionKey hashes the token so a dump of Redis does not leak live tokens.
func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "session:" + hex.EncodeToString(sum[:])
}

// CreateSession stores a session for ttl.
func (c *Client) CreateSession(ctx context.Context, token string, session Session, ttl time.Duration) error {
	value, _ := json.Marshal(session)
	if err := c.client.Set(ctx, sessionKey(token), value, ttl).Err(); err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// LookupSession returns the session of a token; found is false for an
// unknown or expired token.
func (c *Client) LookupSession(ctx context.Context, token string) (session Session, found bool, err error) {
	value, err := c.client.Get(ctx, sessionKey(token)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("read session: %w", err)
	}
	if err := json.Unmarshal(value, &session); err != nil {
		return Session{}, false, fmt.Errorf("decode session: %w", err)
	}
	return session, true, nil
}

// DeleteSession forgets a token's session (sign-out). Redis is only the
// fast path: the ledger database's revocation time is what ends a session.
func (c *Client) DeleteSession(ctx context.Context, token string) error {
	if err := c.client.Del(ctx, sessionKey(token)).Err(); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// IdempotencyRecord is what Redis remembers of a key: the request's
// fingerprint and transaction, and once answered, the exact response,
// unless that response is a final outcome the worker recorded (the gateway
// replays it from the outcome record, LookupOutcome).
type IdempotencyRecord struct {
	Fingerprint   string    `json:"fingerprint"`
	TransactionID string    `json:"transaction_id"`
	ReservedAt    time.Time `json:"reserved_at"`
	// ResponseStatus is 0 while the first request is still in flight.
	ResponseStatus int `json:"response_status,omitempty"`
	// ResponseBody is the exact bytes sent; replays send them again.
	ResponseBody []byte `json:"response_body,omitempty"`
}

func idempotencyKey(userID int64, key string) string {
	return "idem:" + strconv.FormatInt(userID, 10) + ":" + key
}

// KeysCompleteKey marks a Redis dataset that holds the record of every
// idempotency key the ledger accepted within the key TTL: it is set (by a
// gateway, see MarkKeysComplete) only while the ledger has no transaction at
// all, so a Redis that restarted empty, or was flushed, lacks it until the
// operator clears the ledger. While it is present, a key Redis did not know
// is new to the ledger too (or older than the TTL), and a gateway can skip
// asking the ledger. It assumes Redis evicts nothing (maxmemory-policy
// noeviction, the default): keys leave only by their TTL.
const KeysCompleteKey = "ledger:idempotency-keys-complete"

// Reservation is what Reserve found.
type Reservation struct {
	// Reserved is true when the key was new and is now claimed by the
	// caller; otherwise Existing is the record already stored.
	Reserved bool
	Existing IdempotencyRecord
	// KeysComplete reports KeysCompleteKey was present (see there).
	KeysComplete bool
	// Balance and DailyDebits are the cached figures CachedReads asked
	// for, read in the reservation's pipeline (Read false: not asked).
	Balance, DailyDebits CachedFigure
}

// CachedReads names cached figures to read in a reservation's round trip:
// a gateway's soft checks (CachedBalance, CachedDailyDebits) need them
// right after the claim, and a read of its own would cost each request a
// round trip more. A figure read with the reservation is as good as one
// read after it: the cache holds figures the ledger held at some moment,
// and a refusal they suggest is stored only if the ledger justifies it.
type CachedReads struct {
	// Balance asks for AccountID's cached balance.
	Balance   bool
	AccountID int64
	// DailyDebits asks for UserID's cached settled debits of Day (UTC).
	DailyDebits bool
	UserID      int64
	Day         time.Time
}

// CachedFigure is one cached figure read with a reservation: Found false
// when the cache does not hold it, Err when it could not be read.
type CachedFigure struct {
	Read  bool
	Value int64
	Found bool
	Err   error
}

// Reserve claims a key for a request (SET NX GET), and reads whether the
// dataset's keys are complete; concurrent reservations share one pipelined
// round trip. The transaction is remembered as pending only when a 202 is
// stored for it (StoreResponse): a client learns a transaction's id from
// its first answer, so nothing can ask for it before.
func (c *Client) Reserve(ctx context.Context, userID int64, key string, record IdempotencyRecord, ttl time.Duration) (Reservation, error) {
	return c.ReserveAndRead(ctx, userID, key, record, ttl, CachedReads{})
}

// ReserveAndRead is Reserve, and reads the cached figures reads asks for in
// the same pipeline (Reservation.Balance, Reservation.DailyDebits).
func (c *Client) ReserveAndRead(ctx context.Context, userID int64, key string, record IdempotencyRecord, ttl time.Duration, reads CachedReads) (Reservation, error) {
	call := reserveCall{key: idempotencyKey(userID, key), value: marshalRecord(record), ttl: ttl}
	if reads.Balance {
		call.balanceKey = balanceKey(reads.AccountID)
	}
	if reads.DailyDebits {
		call.dailyDebitsKey = dailyDebitsKey(reads.UserID, reads.Day)
	}
	answer, err := c.reservations.Do(ctx, call)
	if err == nil {
		err = answer.err
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve idempotency key: %w", err)
	}
	reservation := Reservation{KeysComplete: answer.keysComplete, Balance: answer.balance, DailyDebits: answer.dailyDebits}
	if reservation.DailyDebits.Err != nil {
		reservation.DailyDebits.Err = fmt.Errorf("read daily debits: %w", reservation.DailyDebits.Err)
	}
	if answer.old == nil {
		reservation.Reserved = true
		return reservation, nil
	}
	if err := json.Unmarshal(answer.old, &reservation.Existing); err != nil {
		return Reservation{}, fmt.Errorf("decode idempotency record: %w", err)
	}
	return reservation, nil
}

// MarkKeysComplete sets KeysCompleteKey. Call it only when the ledger has no
// transaction (then no key can be missing from Redis); it reports whether
// this call set it (false: it was there).
func (c *Client) MarkKeysComplete(ctx context.Context, value string) (bool, error) {
	return c.client.SetNX(ctx, KeysCompleteKey, value, 0).Result()
}

// UnmarkKeysComplete removes KeysCompleteKey if it still holds value: the
// caller that set it found the ledger no longer empty right after.
func (c *Client) UnmarkKeysComplete(ctx context.Context, value string) error {
	return unmarkScript.Run(ctx, c.client, []string{KeysCompleteKey}, value).Err()
}

var unmarkScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// KeysComplete reports whether KeysCompleteKey is present.
func (c *Client) KeysComplete(ctx context.Context) (bool, error) {
	n, err := c.client.Exists(ctx, KeysCompleteKey).Result()
	return n == 1, err
}

type reserveCall struct {
	key   string
	value []byte
	ttl   time.Duration
	// balanceKey and dailyDebitsKey are read too when not empty.
	balanceKey, dailyDebitsKey string
}

// reserveAnswer is the record a reservation found (nil: the key is now
// reserved) or the error of this call alone.
type reserveAnswer struct {
	old                  []byte
	err                  error
	keysComplete         bool
	balance, dailyDebits CachedFigure
}

// reserveBatch reserves keys in one pipeline: per key, SET NX GET of the
// record, and the cached figures asked for.
func (c *Client) reserveBatch(ctx context.Context, calls []reserveCall) ([]reserveAnswer, error) {
	pipeline := c.client.Pipeline()
	// Read before the reservations: a key reserved after the marker was
	// seen belongs to the dataset the marker speaks for.
	complete := pipeline.Exists(ctx, KeysCompleteKey)
	reservations := make([]*goredis.StatusCmd, len(calls))
	balances := make([]*goredis.StringCmd, len(calls))
	dailyDebits := make([]*goredis.StringCmd, len(calls))
	for i, call := range calls {
		reservations[i] = pipeline.SetArgs(ctx, call.key, call.value, goredis.SetArgs{Mode: "NX", Get: true, TTL: call.ttl})
		if call.balanceKey != "" {
			balances[i] = pipeline.Get(ctx, call.balanceKey)
		}
		if call.dailyDebitsKey != "" {
			dailyDebits[i] = pipeline.Get(ctx, call.dailyDebitsKey)
		}
	}
	// Exec's error is the first failed command's; each call reads its own.
	_, _ = pipeline.Exec(ctx)
	answers := make([]reserveAnswer, len(calls))
	for i := range calls {
		old, err := reservations[i].Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
			err = nil
		case err == nil && old == nil:
			old = []byte{}
		}
		answers[i] = reserveAnswer{old: old, err: err, keysComplete: complete.Val() == 1,
			balance: cachedFigure(balances[i]), dailyDebits: cachedFigure(dailyDebits[i])}
	}
	return answers, nil
}

// cachedFigure reads a GET of a cached figure (nil: not asked for).
func cachedFigure(get *goredis.StringCmd) CachedFigure {
	if get == nil {
		return CachedFigure{}
	}
	value, err := get.Int64()
	switch {
	case errors.Is(err, goredis.Nil):
		return CachedFigure{Read: true}
	case err != nil:
		return CachedFigure{Read: true, Err: err}
	}
	return CachedFigure{Read: true, Value: value, Found: true}
}

// storeResponseScript writes the response into a record only if the record
// still belongs to the same request and has no response yet: the first
// answer sent is the one every replay gets. With ARGV[4] not empty (a 202)
// it also remembers the transaction as pending (KEYS[2], ARGV[4]) unless
// the worker already recorded its outcome (KEYS[3]): the worker forgets a
// pending transaction when it records the outcome, and one written after
// that would only wait for its TTL.
var storeResponseScript = goredis.NewScript(`
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
end
local current = redis.call('GET', KEYS[1])
if current then
  local record = cjson.decode(current)
  if record.fingerprint ~= ARGV[2] or (record.response_status and record.response_status ~= 0) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`)

// StoreResponse records the response a key's first request got. pending,
// when not nil (the response is a 202), is remembered for GET
// /v1/transactions/{id} (LookupPending) until the worker records the
// transaction's outcome.
func (c *Client) StoreResponse(ctx context.Context, userID int64, key string, record IdempotencyRecord, pending *PendingTransaction, ttl time.Duration) error {
	call := storeCall{key: idempotencyKey(userID, key), value: marshalRecord(record), fingerprint: record.Fingerprint, ttl: ttl,
		pendingKey: "pending:" + record.TransactionID, outcomeKey: outcomeKey(record.TransactionID)}
	if pending != nil {
		call.pendingValue = marshalPending(*pending)
	}
	err, batchError := c.responses.Do(ctx, call)
	if batchError != nil {
		err = batchError
	}
	if err != nil {
		return fmt.Errorf("store idempotent response: %w", err)
	}
	return nil
}

type storeCall struct {
	key, fingerprint       string
	value                  []byte
	ttl                    time.Duration
	pendingKey, outcomeKey string
	// pendingValue is the pending transaction to remember (empty: none).
	pendingValue []byte
}

// storeResponseBatch runs storeResponseScript for every call in one
// pipeline, by its hash; when Redis does not know the script (it restarted)
// the script is loaded and those calls are sent again.
func (c *Client) storeResponseBatch(ctx context.Context, calls []storeCall) ([]error, error) {
	answers := make([]error, len(calls))
	send := func(indexes []int) []int {
		pipeline := c.client.Pipeline()
		commands := make([]*goredis.Cmd, len(indexes))
		for j, i := range indexes {
			call := calls[i]
			commands[j] = pipeline.EvalSha(ctx, storeResponseScript.Hash(), []string{call.key, call.pendingKey, call.outcomeKey},
				call.value, call.fingerprint, call.ttl.Milliseconds(), call.pendingValue)
		}
		_, _ = pipeline.Exec(ctx)
		var unknown []int
		for j, i := range indexes {
			err := commands[j].Err()
			if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
				unknown = append(unknown, i)
				continue
			}
			answers[i] = err
		}
		return unknown
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	if unknown := send(all); len(unknown) > 0 {
		if err := storeResponseScript.Load(ctx, c.client).Err(); err != nil {
			for _, i := range unknown {
				answers[i] = err
			}
			return answers, nil
		}
		for _, i := range send(unknown) {
			answers[i] = errors.New("NOSCRIPT after loading the script")
		}
	}
	return answers, nil
}

// Release forgets a reservation, and its pending transaction, whose request
// failed before the command was queued, so a retry is not told the key is in
// flight.
func (c *Client) Release(ctx context.Context, userID int64, key, transactionID string) error {
	return c.client.Del(ctx, idempotencyKey(userID, key), "pending:"+transactionID).Err()
}

// PendingTransaction remembers, for GET /v1/transactions/{id}, a
// transaction that is accepted but not yet applied.
type PendingTransaction struct {
	UserID               int64       `json:"user_id"`
	Kind                 ledger.Kind `json:"kind"`
	SourceAccountID      int64       `json:"source_account_id"`
	DestinationAccountID int64       `json:"destination_account_id"`
	AmountMinor          int64       `json:"amount"`
}

// LookupPending reads a pending transaction.
func (c *Client) LookupPending(ctx context.Context, transactionID string) (PendingTransaction, bool, error) {
	value, err := c.client.Get(ctx, "pending:"+transactionID).Bytes()
	if errors.Is(err, goredis.Nil) {
		return PendingTransaction{}, false, nil
	}
	if err != nil {
		return PendingTransaction{}, false, err
	}
	var pending PendingTransaction
	if err := json.Unmarshal(value, &pending); err != nil {
		return PendingTransaction{}, false, err
	}
	return pending, true, nil
}

func balanceKey(accountID int64) string { return "balance:" + strconv.FormatInt(accountID, 10) }

// CachedBalance reads an account's cached balance.
func (c *Client) CachedBalance(ctx context.Context, accountID int64) (balance int64, found bool, err error) {
	balance, err = c.client.Get(ctx, balanceKey(accountID)).Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return balance, true, nil
}

// CachedBalances reads the cached balances of several accounts in one round
// trip; accounts the cache does not hold are left out of the map. Only the
// seeded bug trust-cache-balance puts this on a money path.
func (c *Client) CachedBalances(ctx context.Context, accountIDs []int64) (map[int64]int64, error) {
	balances := make(map[int64]int64, len(accountIDs))
	if len(accountIDs) == 0 {
		return balances, nil
	}
	keys := make([]string, len(accountIDs))
	for i, id := range accountIDs {
		keys[i] = balanceKey(id)
	}
	values, err := c.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read cached balances: %w", err)
	}
	for i, value := range values {
		text, ok := value.(string)
		if !ok {
			continue
		}
		balance, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cached balance of account %d is %q: %w", accountIDs[i], text, err)
		}
		balances[accountIDs[i]] = balance
	}
	return balances, nil
}

func outcomeKey(transactionID string) string { return "outcome:" + transactionID }

// LookupOutcome reads the outcome a worker recorded for a transaction.
func (c *Client) LookupOutcome(ctx context.Context, transactionID string) (ledger.OutcomeNotice, bool, error) {
	value, err := c.client.Get(ctx, outcomeKey(transactionID)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return ledger.OutcomeNotice{}, false, nil
	}
	if err != nil {
		return ledger.OutcomeNotice{}, false, err
	}
	var notice ledger.OutcomeNotice
	if err := json.Unmarshal(value, &notice); err != nil {
		return ledger.OutcomeNotice{}, false, err
	}
	return notice, true, nil
}

// setBalancesScript writes cached balances that are newer than the cached
// ones. KEYS are n balance keys then their n version keys; ARGV[1] is the TTL
// in milliseconds, then a balance and its version per key. A version of 0
// (unknown) writes unconditionally. Two batches that touched one account
// (a credit from another partition) may reach Redis in either order; the
// version, not the arrival, decides which balance stays.
var setBalancesScript = goredis.NewScript(`
local n = #KEYS / 2
for i = 1, n do
  local version = tonumber(ARGV[2 * i + 1])
  local current = tonumber(redis.call('GET', KEYS[n + i]) or '-1')
  if version == 0 or version > current then
    redis.call('SET', KEYS[i], ARGV[2 * i], 'PX', ARGV[1])
    if version > 0 then
      redis.call('SET', KEYS[n + i], version, 'PX', ARGV[1])
    end
  end
end
return n`)

func balanceVersionKey(accountID int64) string {
	return "balance-version:" + strconv.FormatInt(accountID, 10)
}

// AfterCommit runs, in one pipelined round trip, what a worker does after a
// batch committed: refresh the balance cache of the touched accounts (only
// where the cached balance is older: versions holds each balance's version,
// see postgres.BatchResult.BalanceVersions; an account without one is
// written unconditionally), record each key's outcome (and forget it as
// pending), and announce the outcomes to waiting gateways. Failure only
// costs speed: the worker writes the balances again later and waiters fall
// back to polling.
func (c *Client) AfterCommit(ctx context.Context, balances, versions map[int64]int64, outcomes []ledger.OutcomeNotice, balanceTTL time.Duration) error {
	pipeline := c.client.Pipeline()
	if len(balances) > 0 {
		ids := make([]int64, 0, len(balances))
		for accountID := range balances {
			ids = append(ids, accountID)
		}
		keys := make([]string, 2*len(ids))
		arguments := make([]any, 0, 1+2*len(ids))
		arguments = append(arguments, balanceTTL.Milliseconds())
		for i, accountID := range ids {
			keys[i], keys[len(ids)+i] = balanceKey(accountID), balanceVersionKey(accountID)
			arguments = append(arguments, balances[accountID], versions[accountID])
		}
		setBalancesScript.Eval(ctx, pipeline, keys, arguments...)
	}
	values := make([][]byte, len(outcomes))
	for i, outcome := range outcomes {
		values[i] = marshalOutcome(outcome)
		pipeline.Set(ctx, outcomeKey(outcome.TransactionID), values[i], c.outcomeTTL)
		pipeline.Del(ctx, "pending:"+outcome.TransactionID)
	}
	if len(outcomes) > 0 {
		pipeline.Publish(ctx, OutcomesChannel, marshalOutcomes(values))
	}
	if pipeline.Len() == 0 {
		return nil
	}
	if _, err := pipeline.Exec(ctx); err != nil {
		return fmt.Errorf("after commit: %w", err)
	}
	return nil
}

// SubscribeOutcomes calls handle for every outcome published until ctx is
// done. It reconnects on its own when Redis goes away (go-redis resubscribes).
func (c *Client) SubscribeOutcomes(ctx context.Context, handle func(ledger.OutcomeNotice)) {
	subscription := c.client.Subscribe(ctx, OutcomesChannel)
	defer subscription.Close()
	channel := subscription.Channel(goredis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case message, ok := <-channel:
			if !ok {
				return
			}
			// encoding/json/v2's decoder (go-json-experiment): every
			// request's outcome comes this way, and it decodes them in a
			// third of encoding/json's time (BenchmarkDecodeOutcomes).
			var outcomes []ledger.OutcomeNotice
			if err := jsonv2.Unmarshal([]byte(message.Payload), &outcomes); err != nil {
				continue
			}
			for _, outcome := range outcomes {
				handle(outcome)
			}
		}
	}
}
