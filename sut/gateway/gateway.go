// Package gateway is the reference system's HTTP API: signup, sign-in,
// sign-out, and the money operations, which it validates, authorises,
// guards with the idempotency contract, and queues on the commands topic,
// answering 202 or, when asked, the final outcome within a bounded wait.
// See sut/openapi.yaml. It defends itself against hostile clients (limits
// per address, per email and per user, a sign-in lock, bounded password
// hashing, body deadlines, revocable sessions, look-alike emails, generic
// errors, an internal listener): docs/security.md.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// Config configures a Gateway. Zero values take the documented defaults.
type Config struct {
	// MaxBodyBytes caps a request body. Default 16 KiB: the largest valid
	// body is a few hundred bytes.
	MaxBodyBytes int64
	// SessionTTL is how long a bearer token lives. Default 24h.
	SessionTTL time.Duration
	// KeysCompleteInterval is how often the gateway looks whether Redis's
	// idempotency keys can be marked complete (the ledger is empty). Default 5s.
	KeysCompleteInterval time.Duration
	// IdempotencyTTL is how long Redis remembers a key and its response.
	// A final outcome the worker announced is not stored with the key: it
	// is replayed from the worker's outcome record (redis.Config.OutcomeTTL).
	// Once that record expired, a replay is answered from the ledger (a
	// Postgres read), and is told the key is in flight (409) if it comes
	// before InFlightLease has passed since the reservation.
	// Default 24h, as Stripe does; Postgres remembers keys forever.
	IdempotencyTTL time.Duration
	// InFlightLease is how long a reserved key whose first request has not
	// answered yet makes replays wait (409). After it, a replay takes over
	// (a gateway may have died mid-request); the worker's dedupe keeps that
	// safe. Default 60s, above ProduceTimeout + WaitMax.
	InFlightLease time.Duration
	// WaitMax caps the bounded wait a client may ask for with
	// "Prefer: wait=N". Default 30s.
	WaitMax time.Duration
	// WaitPollInterval is how often a waiting request also looks for its
	// outcome itself, in case the worker's announcement through Redis is
	// lost: the outcome record in Redis at every poll, the ledger in Postgres
	// every ledgerPollEvery-th poll or when Redis fails. Default 200ms.
	WaitPollInterval time.Duration
	// ProduceTimeout bounds the wait for the broker's acknowledgement.
	// Default 10s.
	ProduceTimeout time.Duration
	// RateLimitPerSecond is each user's sustained request rate, per gateway
	// process. Default 1000; 0 after defaults means the default, a negative
	// value disables the limit.
	RateLimitPerSecond float64
	// RateLimitBurst is each user's burst. Default 2×RateLimitPerSecond.
	RateLimitBurst int
	// MaxInFlightRequests bounds concurrent requests; beyond it requests are
	// refused with 503 at once rather than queued. A request takes its slot
	// once its body has arrived (BodyReadTimeout), so clients that stall
	// their bodies hold none. Default 8192.
	MaxInFlightRequests int
	// MoneyRateLimit is each user's rate of money requests (deposits,
	// withdrawals, transfers), per gateway process, on top of
	// RateLimitPerSecond. Default 100/s, burst 200: a person moves money a
	// few times a minute, and a stolen token empties an account no faster
	// than this; a negative PerSecond turns it off.
	MoneyRateLimit RateLimit
	// SigninPerAddress limits sign-in attempts per client address (an IPv6
	// address by its /64), per gateway process. Default 1/s, burst 20.
	SigninPerAddress RateLimit
	// SigninPerEmail limits sign-in attempts per normalised email (its
	// look-alikes included), per gateway process. Default 0.1/s (6 a
	// minute), burst 10.
	SigninPerEmail RateLimit
	// SignupPerAddress limits signups per client address. Default 0.1/s,
	// burst 10: it also bounds how fast one address learns which emails
	// have accounts (signup answers 409 email_taken).
	SignupPerAddress RateLimit
	// SignupPerEmail limits signups per normalised email. Default 0.1/s,
	// burst 5.
	SignupPerEmail RateLimit
	// SigninLock locks an email after repeated sign-in failures, shared by
	// every gateway through Redis and kept by each gateway too. Default: 5
	// failures, then 1 minute from the last, doubled with each further
	// failure, at most 1 hour; failures forgotten 24 hours after the last.
	SigninLock redis.SigninLock
	// ConnectionsPerAddress caps the open connections of one client address
	// (Listener); beyond it a new connection is closed at once. Trusted
	// proxies are not capped. Default 256; negative: no cap.
	ConnectionsPerAddress int
	// InFlightPerAddress caps the requests of one client address being
	// served at once, body reads included: 429 beyond it. Default 64;
	// negative: no cap.
	InFlightPerAddress int
	// BodyReadTimeout bounds the reading of a request body, before the
	// request takes an in-flight slot. Default 5s: a body is at most
	// MaxBodyBytes.
	BodyReadTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers (Server). Default
	// 16 KiB.
	MaxHeaderBytes int
	// TrustedProxies are the networks of the proxies in front of the
	// gateway (nginx): for a request from one of them, the client address
	// is the last X-Forwarded-For entry that is not a trusted proxy, and an
	// X-Request-Id is kept. Default none: the peer is the client.
	TrustedProxies []netip.Prefix
	// SessionCheckInterval is how often the gateway reads the users whose
	// sessions were ended (sign-out, an operator's revocation time), so an
	// ended session is refused by every gateway within about this. Default
	// 1s: one small query a second per gateway, whatever the load.
	SessionCheckInterval time.Duration
	// PasswordHashing sets the KDF cost.
	PasswordHashing PasswordHashing
	// ApplyMode is how a money command reaches the ledger: ApplyModeQueue
	// (default), produced to the commands topic and applied by the workers
	// in batches, or ApplyModeNaive, applied by this gateway at once in one
	// Postgres transaction of its own (Store.ApplyOne), the classic
	// one-transaction-per-request design the capacity report compares with.
	ApplyMode ApplyMode
	// SoftBalanceCheck refuses a debit at once, with
	// insufficient_funds, when the source account's cached balance
	// (Redis) is below its amount; a miss or a cache error lets it through
	// to the worker's check (docs/limits.md). Default false;
	// `ledgerproof gateway --soft-balance-check` defaults to true. The
	// naive apply mode runs no soft check: it applies every command at
	// once, so there is nothing to spare.
	SoftBalanceCheck bool
	// DailyDebitLimitMinor is the most a user may debit (withdrawals and
	// transfers out) per UTC day, in minor units: a debit above it, or one
	// that the day's settled debits as the workers cached them would take
	// above it, is refused at once with daily_limit_exceeded. It must be the
	// workers' limit, which they enforce in the ledger (docs/limits.md).
	// Default 0: no limit. In the naive apply mode only the ledger checks
	// it (ApplyOne, with the store's limit).
	DailyDebitLimitMinor int64
	// SeededBugs are the deliberate mistakes this gateway makes (the
	// gateway's bugs of ledger.Catalogue; see docs/seeded-bugs.md). Default
	// none. Only a process started with the unsafe switch passes any.
	SeededBugs ledger.Bugs
}

func (c *Config) applyDefaults() error {
	setDuration := func(value *time.Duration, fallback time.Duration) {
		if *value == 0 {
			*value = fallback
		}
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 10
	}
	setDuration(&c.SessionTTL, 24*time.Hour)
	setDuration(&c.IdempotencyTTL, 24*time.Hour)
	setDuration(&c.KeysCompleteInterval, 5*time.Second)
	setDuration(&c.InFlightLease, 60*time.Second)
	setDuration(&c.WaitMax, 30*time.Second)
	setDuration(&c.WaitPollInterval, 200*time.Millisecond)
	setDuration(&c.ProduceTimeout, 10*time.Second)
	if c.RateLimitPerSecond == 0 {
		c.RateLimitPerSecond = 1000
	}
	if c.RateLimitBurst == 0 {
		c.RateLimitBurst = int(2 * c.RateLimitPerSecond)
	}
	if c.MaxInFlightRequests == 0 {
		c.MaxInFlightRequests = 8192
	}
	c.MoneyRateLimit.applyDefaults(RateLimit{PerSecond: 100, Burst: 200})
	c.SigninPerAddress.applyDefaults(RateLimit{PerSecond: 1, Burst: 20})
	c.SigninPerEmail.applyDefaults(RateLimit{PerSecond: 0.1, Burst: 10})
	c.SignupPerAddress.applyDefaults(RateLimit{PerSecond: 0.1, Burst: 10})
	c.SignupPerEmail.applyDefaults(RateLimit{PerSecond: 0.1, Burst: 5})
	if c.SigninLock.FailuresBeforeLock == 0 {
		c.SigninLock.FailuresBeforeLock = 5
	}
	setDuration(&c.SigninLock.Lock, time.Minute)
	setDuration(&c.SigninLock.LockMaximum, time.Hour)
	setDuration(&c.SigninLock.Memory, 24*time.Hour)
	if c.ConnectionsPerAddress == 0 {
		c.ConnectionsPerAddress = 256
	}
	if c.InFlightPerAddress == 0 {
		c.InFlightPerAddress = 64
	}
	setDuration(&c.BodyReadTimeout, 5*time.Second)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	setDuration(&c.SessionCheckInterval, time.Second)
	if c.ApplyMode == "" {
		c.ApplyMode = ApplyModeQueue
	}
	if c.ApplyMode != ApplyModeQueue && c.ApplyMode != ApplyModeNaive {
		return fmt.Errorf("gateway: apply mode %q is neither %q nor %q", c.ApplyMode, ApplyModeQueue, ApplyModeNaive)
	}
	if c.DailyDebitLimitMinor < 0 {
		return fmt.Errorf("gateway: daily debit limit %d must not be negative (0: no limit)", c.DailyDebitLimitMinor)
	}
	if c.ApplyMode == ApplyModeNaive && len(c.SeededBugs) > 0 {
		return fmt.Errorf("gateway: seeded bugs %s need the queue; the naive apply mode has none", c.SeededBugs)
	}
	if err := c.PasswordHashing.applyDefaults(); err != nil {
		return err
	}
	if _, ignored := c.SeededBugs.For(ledger.ProcessGateway); len(ignored) > 0 {
		return fmt.Errorf("gateway: seeded bugs %s do not live in the gateway", ignored)
	}
	switch {
	case c.MaxBodyBytes < 256:
		return fmt.Errorf("gateway: max body %d bytes is below 256", c.MaxBodyBytes)
	case c.InFlightLease <= c.ProduceTimeout+c.WaitMax:
		return fmt.Errorf("gateway: in-flight lease %s must exceed the produce timeout %s plus the longest wait %s", c.InFlightLease, c.ProduceTimeout, c.WaitMax)
	case c.MaxInFlightRequests < 1:
		return fmt.Errorf("gateway: max in-flight requests %d must be positive", c.MaxInFlightRequests)
	case c.RateLimitPerSecond > 0 && c.RateLimitBurst < 1:
		return fmt.Errorf("gateway: rate limit burst %d must be positive", c.RateLimitBurst)
	case c.SigninLock.FailuresBeforeLock < 1:
		return fmt.Errorf("gateway: sign-in failures before a lock %d must be positive", c.SigninLock.FailuresBeforeLock)
	case c.SigninLock.Lock <= 0 || c.SigninLock.LockMaximum < c.SigninLock.Lock:
		return fmt.Errorf("gateway: sign-in lock %s must be positive and at most its maximum %s", c.SigninLock.Lock, c.SigninLock.LockMaximum)
	case c.SigninLock.Memory < c.SigninLock.LockMaximum:
		return fmt.Errorf("gateway: sign-in failures must be remembered (%s) at least as long as the longest lock (%s)", c.SigninLock.Memory, c.SigninLock.LockMaximum)
	case c.BodyReadTimeout < 0 || c.SessionCheckInterval < 0:
		return fmt.Errorf("gateway: body read timeout %s and session check interval %s must be positive", c.BodyReadTimeout, c.SessionCheckInterval)
	case c.SessionCheckInterval > time.Minute:
		return fmt.Errorf("gateway: session check interval %s is above a minute: an ended session would stay valid that long", c.SessionCheckInterval)
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("gateway: max header bytes %d is below 1024", c.MaxHeaderBytes)
	}
	for name, limit := range map[string]RateLimit{"money rate limit": c.MoneyRateLimit, "sign-in per address": c.SigninPerAddress,
		"sign-in per email": c.SigninPerEmail, "signup per address": c.SignupPerAddress, "signup per email": c.SignupPerEmail} {
		if err := limit.validate(); err != nil {
			return fmt.Errorf("gateway: %s: %w", name, err)
		}
	}
	return nil
}

// Store is what the gateway needs of the ledger in Postgres.
type Store interface {
	CreateUserWithKey(ctx context.Context, email, emailKey, passwordHash string) (ledger.User, error)
	UserByEmailKey(ctx context.Context, emailKey, email string) (ledger.User, error)
	// UsersWithoutEmailKey and SetEmailKey give users created before email
	// keys existed theirs (BackfillEmailKeys).
	UsersWithoutEmailKey(ctx context.Context, afterID int64, limit int) ([]ledger.User, error)
	SetEmailKey(ctx context.Context, userID int64, emailKey string) error
	// CreateSession, LookupSession, EndSessions, SessionsEndedSince and
	// DeleteExpiredSessions are the sessions of record (postgres/sessions.go).
	CreateSession(ctx context.Context, tokenHash []byte, userID, accountID int64, ttl time.Duration) (ledger.Session, error)
	LookupSession(ctx context.Context, tokenHash []byte) (ledger.Session, bool, error)
	EndSessions(ctx context.Context, userID int64) (ledger.SessionsValidAfter, error)
	SessionsEndedSince(ctx context.Context, changedAfter time.Time, recentWithin time.Duration, recentOnly bool, limit int) ([]ledger.SessionsValidAfter, time.Time, error)
	DeleteExpiredSessions(ctx context.Context, limit int) (int64, error)
	Account(ctx context.Context, id int64) (ledger.Account, error)
	Transaction(ctx context.Context, id string) (ledger.Transaction, error)
	// LedgerEmpty reports whether the ledger has no transaction at all.
	LedgerEmpty(ctx context.Context) (bool, error)
	Ping(ctx context.Context) error
}

// Cache is what the gateway needs of Redis.
type Cache interface {
	CreateSession(ctx context.Context, token string, session redis.Session, ttl time.Duration) error
	LookupSession(ctx context.Context, token string) (redis.Session, bool, error)
	DeleteSession(ctx context.Context, token string) error
	SigninAttempt(ctx context.Context, emailKey string, now time.Time, policy redis.SigninLock) (redis.SigninAttemptAnswer, error)
	SigninSucceeded(ctx context.Context, emailKey string) error
	SigninUndecided(ctx context.Context, emailKey string) error
	ReserveAndRead(ctx context.Context, userID int64, key string, record redis.IdempotencyRecord, ttl time.Duration, reads redis.CachedReads) (redis.Reservation, error)
	KeysComplete(ctx context.Context) (bool, error)
	MarkKeysComplete(ctx context.Context, value string) (bool, error)
	UnmarkKeysComplete(ctx context.Context, value string) error
	StoreResponse(ctx context.Context, userID int64, key string, record redis.IdempotencyRecord, pending *redis.PendingTransaction, ttl time.Duration) error
	Release(ctx context.Context, userID int64, key, transactionID string) error
	LookupPending(ctx context.Context, transactionID string) (redis.PendingTransaction, bool, error)
	LookupOutcome(ctx context.Context, transactionID string) (ledger.OutcomeNotice, bool, error)
	SubscribeOutcomes(ctx context.Context, handle func(ledger.OutcomeNotice))
	Ping(ctx context.Context) error
}

// ApplyMode selects how money commands reach the ledger (Config.ApplyMode).
type ApplyMode string

// The apply modes.
const (
	// ApplyModeQueue produces each command to the commands topic; workers
	// apply them in batches. The reference design.
	ApplyModeQueue ApplyMode = "queue"
	// ApplyModeNaive applies each command in the gateway, synchronously, in
	// a Postgres transaction of its own, and answers with its outcome. No
	// broker, no worker: the baseline of the capacity report.
	ApplyModeNaive ApplyMode = "naive"
)

// Applier applies one command in a transaction of its own and returns its
// outcome (for a command whose transaction exists already: the stored one).
// postgres.Store implements it; only ApplyModeNaive uses it.
type Applier interface {
	ApplyOne(ctx context.Context, command ledger.Command) (ledger.Outcome, error)
}

// Queue is what the gateway needs of the commands topic: Produce returns
// once the broker acknowledged the record.
type Queue interface {
	Produce(ctx context.Context, key, value []byte) (partition int32, offset int64, err error)
}

// Gateway serves the HTTP API.
type Gateway struct {
	config  Config
	store   Store
	cache   Cache
	queue   Queue
	applier Applier
	// limitCache and rejections serve the soft checks (softchecks.go).
	limitCache LimitCache
	rejections Rejections
	// softReadsWithReservation: the soft checks' cache is the idempotency
	// cache, so their figures are read in the key reservation's pipeline
	// rather than a round trip of their own per request.
	softReadsWithReservation bool
	// layout, shards and shardUsers are the sharded ledger (shards.go);
	// layout is one shard and shards empty with one ledger.
	layout     shard.Layout
	shards     []ShardStore
	shardUsers ShardUsers
	ready      func(ctx context.Context) error
	workers    func(ctx context.Context) error
	logger     *slog.Logger
	metrics    *metrics
	waiters    *waiters
	clock      func() time.Time
	inFlight   chan struct{}

	metricsHandler http.Handler

	// claim runs the idempotency contract for a command and sets its
	// transaction id: claimKey, or ignoreKey under ledger.BugNoIdempotency.
	claim func(w http.ResponseWriter, ctx context.Context, command *ledger.Command) (keyClaim, error)
	// produce queues a command: produceAcknowledged, or produceInBackground
	// under ledger.BugAcknowledgeBeforeCommit.
	produce func(ctx context.Context, command ledger.Command, value []byte) error
	// backgroundProduces bounds the produces in flight under
	// ledger.BugAcknowledgeBeforeCommit.
	backgroundProduces chan struct{}

	// sessions is the gateway's own memory of sessions (see localSessions);
	// endedSessions the users' revocation times it checks them against.
	sessions      *localSessions
	endedSessions *endedSessions

	// The limits on clients (limits.go, signin.go).
	userLimits       *keyedLimiter[int64]
	moneyLimits      *keyedLimiter[int64]
	signinPerAddress *keyedLimiter[string]
	signinPerEmail   *keyedLimiter[string]
	signupPerAddress *keyedLimiter[string]
	signupPerEmail   *keyedLimiter[string]
	signinFailures   *signinFailures
	addressInFlight  *addressCounter
	hashing          *hashSlots
	decoyHash        string
	// detailLogs bounds the lines logged about refused and failed requests,
	// so a flood of them does not become a flood of log lines.
	detailLogs *rate.Limiter
}

// Dependencies are the gateway's adapters and hooks.
type Dependencies struct {
	Store Store
	Cache Cache
	Queue Queue
	// Applier applies commands in ApplyModeNaive; required there, unused
	// otherwise (Queue is then not needed).
	Applier Applier
	// LimitCache and Rejections serve the soft checks (softchecks.go):
	// required when Config.SoftBalanceCheck or Config.DailyDebitLimitMinor
	// is set, unused otherwise.
	LimitCache LimitCache
	Rejections Rejections
	// Ready reports whether the broker is reachable, for /readyz; optional.
	Ready func(ctx context.Context) error
	// Workers reports whether a worker consumes the commands topic, for
	// /readyz (WorkersCheck.Check); optional.
	Workers func(ctx context.Context) error
	// Registerer receives the gateway's metrics; nil uses a new registry.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics; nil serves the Registerer if it is one.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
	// Shards are the databases of a ledger whose accounts are split across
	// several (docs/sharding.md, shards.go), in shard order: Shards[0] is
	// shard 0, Store's database, which also holds users and sessions.
	// Default none (or one): one ledger, Store alone. With two or more,
	// ShardUsers is required and the naive apply mode is refused.
	Shards []ShardStore
	// ShardUsers signs users up and in over shard 0 of a sharded ledger
	// (Store's database); unused with one ledger.
	ShardUsers ShardUsers
}

// New builds a gateway. Call Run to follow outcomes, and serve Handler.
func New(config Config, dependencies Dependencies) (*Gateway, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	if config.softChecksOn() && (dependencies.LimitCache == nil || dependencies.Rejections == nil) {
		return nil, errors.New("gateway: the soft checks need a limit cache and a rejections store")
	}
	if dependencies.Store == nil || dependencies.Cache == nil {
		return nil, errors.New("gateway: store and cache are required")
	}
	if config.ApplyMode == ApplyModeQueue && dependencies.Queue == nil {
		return nil, errors.New("gateway: the queue apply mode needs a queue")
	}
	if config.ApplyMode == ApplyModeNaive && dependencies.Applier == nil {
		return nil, errors.New("gateway: the naive apply mode needs an applier")
	}
	layout, err := validateShards(config, dependencies)
	if err != nil {
		return nil, err
	}
	if dependencies.Logger == nil {
		dependencies.Logger = slog.Default()
	}
	if dependencies.Clock == nil {
		dependencies.Clock = time.Now
	}
	if dependencies.Registerer == nil {
		registry := prometheus.NewRegistry()
		dependencies.Registerer, dependencies.Gatherer = registry, registry
	}
	if dependencies.Gatherer == nil {
		if gatherer, ok := dependencies.Registerer.(prometheus.Gatherer); ok {
			dependencies.Gatherer = gatherer
		} else {
			dependencies.Gatherer = prometheus.DefaultGatherer
		}
	}
	decoyHash, err := config.PasswordHashing.decoyHash()
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		config:           config,
		store:            dependencies.Store,
		cache:            dependencies.Cache,
		queue:            dependencies.Queue,
		applier:          dependencies.Applier,
		limitCache:       dependencies.LimitCache,
		rejections:       dependencies.Rejections,
		layout:           layout,
		shardUsers:       dependencies.ShardUsers,
		ready:            dependencies.Ready,
		workers:          dependencies.Workers,
		logger:           dependencies.Logger,
		metrics:          newMetrics(dependencies.Registerer),
		waiters:          newWaiters(),
		clock:            dependencies.Clock,
		inFlight:         make(chan struct{}, config.MaxInFlightRequests),
		sessions:         newLocalSessions(),
		userLimits:       newKeyedLimiter[int64](RateLimit{PerSecond: config.RateLimitPerSecond, Burst: config.RateLimitBurst}),
		moneyLimits:      newKeyedLimiter[int64](config.MoneyRateLimit),
		signinPerAddress: newKeyedLimiter[string](config.SigninPerAddress),
		signinPerEmail:   newKeyedLimiter[string](config.SigninPerEmail),
		signupPerAddress: newKeyedLimiter[string](config.SignupPerAddress),
		signupPerEmail:   newKeyedLimiter[string](config.SignupPerEmail),
		signinFailures:   newSigninFailures(config.SigninLock),
		addressInFlight:  newAddressCounter(config.InFlightPerAddress),
		hashing:          newHashSlots(config.PasswordHashing),
		decoyHash:        decoyHash,
		detailLogs:       rate.NewLimiter(20, 100),
	}
	g.softReadsWithReservation = dependencies.LimitCache != nil && any(dependencies.LimitCache) == any(dependencies.Cache)
	if layout.Shards > 1 {
		g.shards = dependencies.Shards
	}
	dependencies.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_gateway_requests_in_flight",
		Help: "Requests holding one of the gateway's in-flight slots (--max-in-flight): their body read, their answer not yet written."},
		func() float64 { return float64(len(g.inFlight)) }))
	g.endedSessions = newEndedSessions(g.store, g.clock, config.SessionCheckInterval, config.SessionTTL, g.logger)
	g.metricsHandler = promhttp.HandlerFor(dependencies.Gatherer, promhttp.HandlerOpts{})
	// The one place each gateway bug is switched on by name.
	g.claim, g.produce = g.claimKey, g.produceAcknowledged
	if config.SeededBugs.Has(ledger.BugNoIdempotency) {
		g.claim = g.ignoreKey
	}
	if config.SeededBugs.Has(ledger.BugAcknowledgeBeforeCommit) {
		g.produce = g.produceInBackground
		g.backgroundProduces = make(chan struct{}, config.MaxInFlightRequests)
	}
	return g, nil
}

// Run follows the outcomes workers announce until ctx ends, waking waiting
// requests, and marks a fresh Redis's keys complete while the ledger is
// empty (see markKeysComplete). Without it waits still end, by polling
// Postgres, and every key is checked in the ledger.
func (g *Gateway) Run(ctx context.Context) {
	go g.markKeysComplete(ctx)
	go g.endedSessions.follow(ctx)
	go g.tidySessions(ctx)
	go g.backfillEmailKeys(ctx)
	g.cache.SubscribeOutcomes(ctx, g.waiters.notify)
}

// markKeysComplete sets redis.KeysCompleteKey when it is missing and the
// ledger has no transaction: no key the ledger accepted can then be missing
// from Redis, and gateways stop asking the ledger about keys Redis reserves
// as new. It checks again right after setting it and takes it back if a
// transaction appeared meanwhile (a Redis that lost its data while this
// gateway looked). A Redis that lost its data once the ledger has
// transactions stays unmarked: every key is then checked in the ledger.
// A command queued but not yet applied when Redis lost its data, with the
// ledger still empty, is then like a key older than the TTL: a copy of it is
// deduplicated by the worker and answered with the stored outcome.
func (g *Gateway) markKeysComplete(ctx context.Context) {
	ticker := time.NewTicker(g.config.KeysCompleteInterval)
	defer ticker.Stop()
	for {
		g.tryMarkKeysComplete(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (g *Gateway) tryMarkKeysComplete(ctx context.Context) {
	result := "error"
	defer func() { g.metrics.keysComplete.WithLabelValues(result).Inc() }()
	complete, err := g.cache.KeysComplete(ctx)
	if err != nil {
		return
	}
	if complete {
		result = "complete"
		return
	}
	empty, err := g.ledgerEmpty(ctx)
	if err != nil {
		return
	}
	if !empty {
		result = "ledger-not-empty"
		return
	}
	var random [8]byte
	_, _ = rand.Read(random[:])
	value := hex.EncodeToString(random[:])
	if set, err := g.cache.MarkKeysComplete(ctx, value); err != nil || !set {
		if err == nil {
			result = "complete" // another gateway marked it meanwhile
		}
		return
	}
	if empty, err := g.ledgerEmpty(ctx); err != nil || !empty {
		result = "ledger-not-empty"
		if err := g.cache.UnmarkKeysComplete(context.WithoutCancel(ctx), value); err != nil {
			g.logger.Warn("could not take back the idempotency keys' complete mark", "error", err)
		}
		return
	}
	result = "marked"
	g.logger.Info("the ledger is empty: Redis holds every idempotency key from now on; new keys skip the ledger check")
}

// Handler returns the handler of the public API (sut/openapi.yaml): the
// routes, each behind the request guard (protect, instrument). Serve it with
// Server on a listener wrapped by Listener.
func (g *Gateway) Handler() http.Handler { return g.protect(g.routes()) }

// routes registers the public API's routes.
func (g *Gateway) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", g.instrument("signup", takesBody, g.signup))
	mux.HandleFunc("POST /v1/sessions", g.instrument("signin", takesBody, g.signin))
	mux.HandleFunc("DELETE /v1/sessions", g.instrument("signout", noBody, g.authenticated(g.signout)))
	mux.HandleFunc("POST /v1/deposits", g.instrument("deposit", takesBody, g.authenticated(g.moneyHandler(ledger.KindDeposit))))
	mux.HandleFunc("POST /v1/withdrawals", g.instrument("withdrawal", takesBody, g.authenticated(g.moneyHandler(ledger.KindWithdrawal))))
	mux.HandleFunc("POST /v1/transfers", g.instrument("transfer", takesBody, g.authenticated(g.moneyHandler(ledger.KindTransfer))))
	mux.HandleFunc("GET /v1/transactions/{id}", g.instrument("transaction", noBody, g.authenticated(g.getTransaction)))
	mux.HandleFunc("GET /v1/accounts/{id}", g.instrument("account", noBody, g.authenticated(g.getAccount)))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("/", g.notFound)
	return mux
}

// InternalHandler returns the operators' handler: readiness and metrics.
// They say which databases and brokers the gateway uses and how it fares,
// so they are served on a listener of their own (--internal-listen) that
// only the orchestrator and the metrics scraper reach, never on the public
// one.
func (g *Gateway) InternalHandler() http.Handler { return g.protect(g.internalRoutes()) }

// internalRoutes registers the internal listener's routes.
func (g *Gateway) internalRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", g.metricsHandler)
	mux.HandleFunc("/", g.notFound)
	return mux
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	g.writeError(w, r, "none", ledger.Errorf(ledger.CodeNotFound, "no route for %s %s", r.Method, quoteForMessage(r.URL.Path)))
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "broker": "ok", "workers": "ok", "redis": "ok"}
	ready := true
	if err := g.store.Ping(ctx); err != nil {
		checks["postgres"], ready = err.Error(), false
	}
	if g.ready != nil {
		if err := g.ready(ctx); err != nil {
			checks["broker"], ready = err.Error(), false
		}
	}
	if g.workers != nil {
		if err := g.workers(ctx); err != nil {
			checks["workers"], ready = err.Error(), false
		}
	}
	// Shards other than 0 are reported, and do not make the gateway unready:
	// every gateway uses every shard, so one shard down would take every
	// gateway out of its balancer, and the users of the other shards with
	// them; that shard's users get 503 until it is back.
	for index := 1; index < len(g.shards); index++ {
		checks[shard.Component(index)] = "ok"
		if err := g.shards[index].Ping(ctx); err != nil {
			checks[shard.Component(index)] = err.Error()
		}
	}
	// Redis is not needed for money to be right, but sessions live there,
	// so it is reported; it does not make the gateway unready.
	if err := g.cache.Ping(ctx); err != nil {
		checks["redis"] = err.Error()
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, marshal(map[string]any{"ready": ready, "checks": checks}))
}

type handler func(w http.ResponseWriter, r *http.Request) (status int, body []byte, err error)

// Whether a route takes a request body (instrument).
const (
	takesBody = true
	noBody    = false
)

// instrument guards a route and turns its handler's result into an answer:
// it caps the requests in flight of the client's address, reads a route's
// body (application/json, a Content-Length, within BodyReadTimeout) before
// the request takes one of the gateway's in-flight slots, so a client that
// stalls its body holds none, then runs the handler and counts the answer.
func (g *Gateway) instrument(route string, withBody bool, next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started := g.clock()
		state := stateOf(r)
		if !g.addressInFlight.acquire(state.clientKey) {
			g.metrics.refusals.WithLabelValues("in_flight_per_address").Inc()
			// The body, if any, is not read: the connection cannot be reused.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "1")
			g.answer(w, r, route, started, 0, nil, ledger.Errorf(ledger.CodeRateLimited,
				"more than %d requests at once from your address", g.config.InFlightPerAddress))
			return
		}
		defer g.addressInFlight.release(state.clientKey)
		if withBody {
			body, err := g.readRequestBody(w, r)
			if err != nil {
				w.Header().Set("Connection", "close")
				g.answer(w, r, route, started, 0, nil, err)
				return
			}
			state.body = body
		}
		select {
		case g.inFlight <- struct{}{}:
			defer func() { <-g.inFlight }()
		default:
			g.metrics.refusals.WithLabelValues("in_flight").Inc()
			w.Header().Set("Retry-After", "1")
			g.answer(w, r, route, started, 0, nil, ledger.Errorf(ledger.CodeUnavailable,
				"gateway is at its limit of %d requests in flight", g.config.MaxInFlightRequests))
			return
		}
		status, body, err := next(w, r)
		g.answer(w, r, route, started, status, body, err)
	}
}

// answer writes a handler's result, or its error as the error body, and
// counts it.
func (g *Gateway) answer(w http.ResponseWriter, r *http.Request, route string, started time.Time, status int, body []byte, err error) {
	if err != nil {
		status = g.writeError(w, r, route, err)
	} else {
		writeJSON(w, status, body)
	}
	g.metrics.observe(route, status, g.clock().Sub(started))
}

func parseID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s %s is not a positive integer", name, quoteForMessage(r.PathValue(name)))
	}
	return id, nil
}
