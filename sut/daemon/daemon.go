// Package daemon holds what the reference system's long-running processes,
// gateway and worker, share: their connections to Postgres, Redis and the
// broker, their logger, the activation of seeded bugs, the internal
// listener's handler (crash points, Go's profiles), and HTTP serving with a
// bounded graceful shutdown. The commands of cmd/ledgerproof fill Config
// from their flags; gateway.Serve and worker.Serve build the process from it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// Default endpoints of the local stack; the same values are the defaults of
// every process's flags, so a bare `ledgerproof gateway` finds `ledgerproof up`.
const (
	DefaultPostgresURL = "postgres://ledger@127.0.0.1:15432/ledger?sslmode=disable"
	DefaultRedisAddr   = "127.0.0.1:16379"
	DefaultBrokers     = "127.0.0.1:19092"
)

// Config is what every SUT process is given besides its own settings: its
// connections, name and log level, seeded bugs and crash points. The
// defaults below are those of the command-line flags that set each field.
type Config struct {
	// PostgresURL is the Postgres connection URL (libpq form; several hosts
	// allowed). Default DefaultPostgresURL.
	PostgresURL string
	// PostgresMaxConnections is the Postgres pool size. Default 16.
	PostgresMaxConnections int
	// RedisAddr is Redis's host:port. Default DefaultRedisAddr.
	RedisAddr string
	// OutcomeTTL is how long the outcome records a worker writes to Redis
	// live (redis.Config.OutcomeTTL). Default (0) redis.DefaultOutcomeTTL.
	OutcomeTTL time.Duration
	// Brokers are the Kafka seed brokers, comma-separated host:port.
	// Default DefaultBrokers.
	Brokers string
	// Topic is the commands topic. Default ledger.commands.
	Topic string
	// Partitions is the partition count of the commands topic when the
	// process creates it. Default 16.
	Partitions int
	// ReplicationFactor is the replica count of the commands topic when the
	// process creates it (-1: the broker's default). Default 1.
	ReplicationFactor int16
	// BrokerAddressMap redirects advertised broker addresses (fault proxy).
	// Default none.
	BrokerAddressMap kafka.BrokerAddressMap
	// Name is the process name, in logs and metrics.
	Name string
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// SeededBugs are every seeded bug asked for (parsed, allowed); the
	// process runs those that live in it and ignores the others, so the
	// same bugs can be given to gateways and workers alike. Default none.
	SeededBugs ledger.Bugs
	// CrashPoints are the crash points asked for. Default none.
	CrashPoints crash.Settings
	// Profiling serves Go's profiles (net/http/pprof) under /debug/pprof/
	// on the process's internal listener, to loopback clients only
	// (withProfiling): they cost CPU and reveal memory, so they are off
	// unless asked for. Default false: /debug/pprof/ is a 404.
	Profiling bool
}

// BrokerList is Brokers split at commas, blanks dropped.
func (c Config) BrokerList() []string {
	var list []string
	for _, broker := range strings.Split(c.Brokers, ",") {
		if broker = strings.TrimSpace(broker); broker != "" {
			list = append(list, broker)
		}
	}
	return list
}

// Logger is the process's logger: text on stderr at LogLevel, each line
// naming the process.
func (c Config) Logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.LogLevel, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("process", c.Name), nil
}

// ActivateSeededBugs returns the seeded bugs that live in process, logging
// loudly which are active and, quietly, which this process ignores (so the
// same flags can be given to gateways and workers alike).
func (c Config) ActivateSeededBugs(process ledger.Process, logger *slog.Logger) ledger.Bugs {
	concerned, ignored := c.SeededBugs.For(process)
	for _, bug := range concerned {
		description, _ := bug.Describe()
		logger.Warn("SEEDED BUG ACTIVE: this process loses or duplicates money on purpose", "bug", bug, "what", description.Summary)
	}
	if len(ignored) > 0 {
		logger.Info("seeded bugs that do not live in this process are ignored", "process", process, "ignored", ignored.String())
	}
	return concerned
}

// InternalHandler is handler behind the crash points' endpoint (when
// registry is not nil) and Go's profiles (when Profiling).
func (c Config) InternalHandler(handler http.Handler, registry *crash.Registry) http.Handler {
	return withProfiling(crash.WithAdmin(handler, registry), c.Profiling)
}

// OpenBackends connects to Postgres and Redis (both lazily: a process may
// start before them and readiness says when they answer) and creates the
// commands topic if it is missing. A topic that cannot be created yet is not
// fatal: the broker may still be starting. storeConfig carries the store's
// seeded bugs and hooks; the connection fields are filled here. With seeded
// bugs that need schema changes, it makes them before returning.
func (c Config) OpenBackends(ctx context.Context, logger *slog.Logger, storeConfig postgres.Config) (*postgres.Store, *redis.Client, error) {
	cache, err := redis.New(redis.Config{Addr: c.RedisAddr, OutcomeTTL: c.OutcomeTTL})
	if err != nil {
		return nil, nil, err
	}
	storeConfig.URL, storeConfig.MaxConnections, storeConfig.ApplicationName = c.PostgresURL, int32(c.PostgresMaxConnections), c.Name
	// Read only under the seeded bug trust-cache-balance.
	storeConfig.CachedBalances = cache.CachedBalances
	store, err := postgres.Open(ctx, storeConfig)
	if err != nil {
		cache.Close()
		return nil, nil, err
	}
	if err := prepareSeededBugs(ctx, store, logger); err != nil {
		store.Close()
		cache.Close()
		return nil, nil, err
	}
	topicContext, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(topicContext, c.BrokerList(), c.Topic, int32(c.Partitions), c.ReplicationFactor); err != nil {
		logger.Warn("ensure topic", "error", err)
	}
	return store, cache, nil
}

// prepareSeededBugs makes the schema changes the store's seeded bugs need,
// retrying for a bounded time while Postgres starts.
func prepareSeededBugs(ctx context.Context, store *postgres.Store, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := store.PrepareSeededBugs(ctx)
		if err == nil {
			return nil
		}
		logger.Warn("prepare schema for seeded bugs; retrying", "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// ServeHTTP serves handler on address until ctx ends, then shuts down
// gracefully within a bound.
func ServeHTTP(ctx context.Context, address string, handler http.Handler, logger *slog.Logger) error {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", address, err)
	}
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	return ServeListener(ctx, listener, server, logger)
}

// ServeListener serves server on listener until ctx ends, then shuts down
// gracefully within a bound.
func ServeListener(ctx context.Context, listener net.Listener, server *http.Server, logger *slog.Logger) error {
	logger.Info("listening", "address", listener.Addr().String())
	failed := make(chan error, 1)
	go func() { failed <- server.Serve(listener) }()
	select {
	case err := <-failed:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownContext, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownContext); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
