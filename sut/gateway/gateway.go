// Package gateway is the reference system's HTTP API: signup, sign-in, and
// the money operations, which it validates, authorises, guards with the
// idempotency contract, and queues on the commands topic, answering 202 or,
// when asked, the final outcome within a bounded wait. See sut/openapi.yaml.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// Config configures a Gateway. Zero values take the documented defaults.
type Config struct {
	// MaxBodyBytes caps a request body. Default 16 KiB: the largest valid
	// body is a few hundred bytes.
	MaxBodyBytes int64
	// SessionTTL is how long a bearer token lives. Default 24h.
	SessionTTL time.Duration
	// IdempotencyTTL is how long Redis remembers a key and its response.
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
	// refused with 503 at once rather than queued. Default 8192.
	MaxInFlightRequests int
	// PasswordHashing sets the KDF cost.
	PasswordHashing PasswordHashing
	// ApplyMode is how a money command reaches the ledger: ApplyModeQueue
	// (default), produced to the commands topic and applied by the workers
	// in batches, or ApplyModeNaive, applied by this gateway at once in one
	// Postgres transaction of its own (Store.ApplyOne), the classic
	// one-transaction-per-request design the capacity report compares with.
	ApplyMode ApplyMode
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
	if c.ApplyMode == "" {
		c.ApplyMode = ApplyModeQueue
	}
	if c.ApplyMode != ApplyModeQueue && c.ApplyMode != ApplyModeNaive {
		return fmt.Errorf("gateway: apply mode %q is neither %q nor %q", c.ApplyMode, ApplyModeQueue, ApplyModeNaive)
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
	}
	return nil
}

// Store is what the gateway needs of the ledger in Postgres.
type Store interface {
	CreateUser(ctx context.Context, email, passwordHash string) (ledger.User, error)
	UserByEmail(ctx context.Context, email string) (ledger.User, error)
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
	Reserve(ctx context.Context, userID int64, key string, record redis.IdempotencyRecord, pending redis.PendingTransaction, ttl time.Duration) (redis.Reservation, error)
	KeysComplete(ctx context.Context) (bool, error)
	MarkKeysComplete(ctx context.Context, value string) (bool, error)
	UnmarkKeysComplete(ctx context.Context, value string) error
	StoreResponse(ctx context.Context, userID int64, key string, record redis.IdempotencyRecord, ttl time.Duration) error
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
	config   Config
	store    Store
	cache    Cache
	queue    Queue
	applier  Applier
	ready    func(ctx context.Context) error
	workers  func(ctx context.Context) error
	logger   *slog.Logger
	metrics  *metrics
	waiters  *waiters
	clock    func() time.Time
	inFlight chan struct{}

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

	// sessions is the gateway's own memory of sessions (see localSessions).
	sessions *localSessions

	limitersMutex sync.Mutex
	limiters      map[int64]*rate.Limiter
}

// Dependencies are the gateway's adapters and hooks.
type Dependencies struct {
	Store Store
	Cache Cache
	Queue Queue
	// Applier applies commands in ApplyModeNaive; required there, unused
	// otherwise (Queue is then not needed).
	Applier Applier
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
}

// New builds a gateway. Call Run to follow outcomes, and serve Handler.
func New(config Config, dependencies Dependencies) (*Gateway, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
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
	g := &Gateway{
		config:   config,
		store:    dependencies.Store,
		cache:    dependencies.Cache,
		queue:    dependencies.Queue,
		applier:  dependencies.Applier,
		ready:    dependencies.Ready,
		workers:  dependencies.Workers,
		logger:   dependencies.Logger,
		metrics:  newMetrics(dependencies.Registerer),
		waiters:  newWaiters(),
		clock:    dependencies.Clock,
		inFlight: make(chan struct{}, config.MaxInFlightRequests),
		limiters: map[int64]*rate.Limiter{},
		sessions: newLocalSessions(),
	}
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
	g.cache.SubscribeOutcomes(ctx, g.waiters.notify)
}

// keysCompleteInterval is how often a gateway looks whether Redis's keys
// can be marked complete.
const keysCompleteInterval = 5 * time.Second

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
	ticker := time.NewTicker(keysCompleteInterval)
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
	if complete, err := g.cache.KeysComplete(ctx); err != nil || complete {
		return
	}
	if empty, err := g.store.LedgerEmpty(ctx); err != nil || !empty {
		return
	}
	var random [8]byte
	_, _ = rand.Read(random[:])
	value := hex.EncodeToString(random[:])
	if set, err := g.cache.MarkKeysComplete(ctx, value); err != nil || !set {
		return
	}
	if empty, err := g.store.LedgerEmpty(ctx); err != nil || !empty {
		if err := g.cache.UnmarkKeysComplete(context.WithoutCancel(ctx), value); err != nil {
			g.logger.Warn("could not take back the idempotency keys' complete mark", "error", err)
		}
		return
	}
	g.logger.Info("the ledger is empty: Redis holds every idempotency key from now on; new keys skip the ledger check")
}

// Handler returns the HTTP handler of the whole API.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", g.instrument("signup", g.signup))
	mux.HandleFunc("POST /v1/sessions", g.instrument("signin", g.signin))
	mux.HandleFunc("POST /v1/deposits", g.instrument("deposit", g.authenticated(g.moneyHandler(ledger.KindDeposit))))
	mux.HandleFunc("POST /v1/withdrawals", g.instrument("withdrawal", g.authenticated(g.moneyHandler(ledger.KindWithdrawal))))
	mux.HandleFunc("POST /v1/transfers", g.instrument("transfer", g.authenticated(g.moneyHandler(ledger.KindTransfer))))
	mux.HandleFunc("GET /v1/transactions/{id}", g.instrument("transaction", g.authenticated(g.getTransaction)))
	mux.HandleFunc("GET /v1/accounts/{id}", g.instrument("account", g.authenticated(g.getAccount)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	})
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", g.metricsHandler)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		status, body := errorResponse(ledger.Errorf(ledger.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
		writeJSON(w, status, body)
	})
	return mux
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

// instrument bounds concurrency, turns a handler's result into a response
// and counts it.
func (g *Gateway) instrument(route string, next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started := g.clock()
		select {
		case g.inFlight <- struct{}{}:
			defer func() { <-g.inFlight }()
		default:
			status, body := errorResponse(ledger.Errorf(ledger.CodeUnavailable, "gateway is at its limit of %d requests in flight", g.config.MaxInFlightRequests))
			w.Header().Set("Retry-After", "1")
			writeJSON(w, status, body)
			g.metrics.observe(route, status, g.clock().Sub(started))
			return
		}
		status, body, err := next(w, r)
		if err != nil {
			if ledger.ErrorCode(err) == ledger.CodeInternal {
				g.logger.Error("request failed", "route", route, "error", err)
			}
			status, body = errorResponse(err)
		}
		writeJSON(w, status, body)
		g.metrics.observe(route, status, g.clock().Sub(started))
	}
}

type sessionKey struct{}

// authenticated resolves the bearer token to a session and applies the
// per-user rate limit.
func (g *Gateway) authenticated(next handler) handler {
	return func(w http.ResponseWriter, r *http.Request) (int, []byte, error) {
		const prefix = "Bearer "
		header := r.Header.Get("Authorization")
		if len(header) <= len(prefix) || header[:len(prefix)] != prefix {
			return 0, nil, ledger.Errorf(ledger.CodeUnauthenticated, "an Authorization: Bearer <token> header is required")
		}
		token := header[len(prefix):]
		now := g.clock()
		// The gateway's own memory first: a session cannot be revoked in
		// this system (there is no sign-out; a token lives until its
		// expiry, in Redis as here), so a remembered, unexpired session is
		// exactly what Redis would say, without a round trip per request.
		// Redis is asked for tokens this gateway has not seen (issued by
		// another gateway, or before a restart). If sessions ever become
		// revocable, revocation must reach every gateway's memory (a
		// pub/sub message) or this shortcut must go.
		session, remembered := g.sessions.lookup(token, now)
		if remembered {
			g.metrics.localSessions.Inc()
		} else {
			cached, found, err := g.cache.LookupSession(r.Context(), token)
			switch {
			case err != nil:
				return 0, nil, ledger.Errorf(ledger.CodeUnavailable, "sessions are unavailable: %v", err)
			case !found:
				return 0, nil, ledger.Errorf(ledger.CodeUnauthenticated, "the token is unknown or expired; sign in again")
			}
			session = cached
			g.sessions.remember(token, session, now, sessionFallbackLifetime)
		}
		if !g.allow(session.UserID) {
			w.Header().Set("Retry-After", "1")
			return 0, nil, ledger.Errorf(ledger.CodeRateLimited, "more than %g requests per second for this user", g.config.RateLimitPerSecond)
		}
		return next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, session)))
	}
}

// sessionFallbackLifetime is how long a session read from Redis without an
// expiry is remembered locally.
const sessionFallbackLifetime = 10 * time.Minute

func sessionOf(r *http.Request) redis.Session {
	session, ok := r.Context().Value(sessionKey{}).(redis.Session)
	if !ok {
		panic("gateway: handler reached without a session")
	}
	return session
}

// maxLimiters bounds the per-user limiter map; when full it is reset, which
// only forgives users a little burst.
const maxLimiters = 100_000

func (g *Gateway) allow(userID int64) bool {
	if g.config.RateLimitPerSecond < 0 {
		return true
	}
	g.limitersMutex.Lock()
	defer g.limitersMutex.Unlock()
	limiter, ok := g.limiters[userID]
	if !ok {
		if len(g.limiters) >= maxLimiters {
			g.limiters = map[int64]*rate.Limiter{}
		}
		limiter = rate.NewLimiter(rate.Limit(g.config.RateLimitPerSecond), g.config.RateLimitBurst)
		g.limiters[userID] = limiter
	}
	return limiter.AllowN(g.clock(), 1)
}

func parseID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s %s is not a positive integer", name, quoteForMessage(r.PathValue(name)))
	}
	return id, nil
}
