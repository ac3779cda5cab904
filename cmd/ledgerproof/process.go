package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// Default endpoints of the local stack; the same values are the defaults of
// every process's flags, so a bare `ledgerproof gateway` finds `ledgerproof up`.
const (
	defaultPostgresURL = "postgres://ledger@127.0.0.1:55432/ledger?sslmode=disable"
	defaultRedisAddr   = "127.0.0.1:56379"
	defaultBrokers     = "127.0.0.1:59092"
)

// connectionFlags are the flags every SUT process shares.
type connectionFlags struct {
	postgresURL string
	redisAddr   string
	brokers     string
	topic       string
	partitions  int
	replication replicationFactor
	// maxConnections is the Postgres pool size.
	maxConnections int
	name           string
	logLevel       string
	// brokerAddressMap redirects advertised broker addresses (fault proxy).
	brokerAddressMap brokerAddressMapFlag
}

func (c *connectionFlags) register(flags *flag.FlagSet, defaultName string, needs ...string) {
	for _, need := range needs {
		switch need {
		case "postgres":
			flags.StringVar(&c.postgresURL, "postgres-url", defaultPostgresURL, "Postgres connection URL (libpq form; several hosts allowed)")
			flags.IntVar(&c.maxConnections, "postgres-max-connections", 16, "Postgres pool size")
		case "redis":
			flags.StringVar(&c.redisAddr, "redis-addr", defaultRedisAddr, "Redis host:port")
		case "kafka":
			flags.StringVar(&c.brokers, "brokers", defaultBrokers, "Kafka seed brokers, comma-separated host:port")
			flags.StringVar(&c.topic, "topic", "ledger.commands", "commands topic")
			flags.IntVar(&c.partitions, "partitions", 16, "partitions of the commands topic (created with this count if missing)")
			c.replication = 1
			flags.Var(&c.replication, "replication-factor", "`count` of replicas of the commands topic when this process creates it (-1: the broker's default)")
			flags.Var(&c.brokerAddressMap, "broker-address-map", "`advertised=dialled`,... host:port pairs: connect to a broker's advertised address through another (a fault proxy); empty: as advertised")
		}
	}
	flags.StringVar(&c.name, "name", defaultName, "process name, in logs and metrics")
	flags.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

func (c *connectionFlags) brokerList() []string {
	var list []string
	for _, broker := range strings.Split(c.brokers, ",") {
		if broker = strings.TrimSpace(broker); broker != "" {
			list = append(list, broker)
		}
	}
	return list
}

func (c *connectionFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.logLevel, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("process", c.name), nil
}

// openBackends connects to Postgres and Redis (both lazily: a process may
// start before them and readiness says when they answer) and creates the
// commands topic if it is missing. A topic that cannot be created yet is not
// fatal: the broker may still be starting. storeConfig carries the store's
// seeded bugs and hooks; the connection fields are filled here. With seeded
// bugs that need schema changes, it makes them before returning.
func (c *connectionFlags) openBackends(ctx context.Context, logger *slog.Logger, storeConfig postgres.Config) (*postgres.Store, *redis.Client, error) {
	cache, err := redis.New(redis.Config{Addr: c.redisAddr})
	if err != nil {
		return nil, nil, err
	}
	storeConfig.URL, storeConfig.MaxConnections, storeConfig.ApplicationName = c.postgresURL, int32(c.maxConnections), c.name
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
	if err := kafka.EnsureTopic(topicContext, c.brokerList(), c.topic, int32(c.partitions), int16(c.replication)); err != nil {
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

// seededBugFlags are the --seeded-bug and --unsafe-allow-seeded-bugs flags
// of gateway, worker and up.
type seededBugFlags struct {
	names         bugNameList
	unsafeAllowed bool
}

func (s *seededBugFlags) register(flags *flag.FlagSet) {
	var names []string
	for _, description := range ledger.Catalogue() {
		names = append(names, string(description.Bug))
	}
	flags.Var(&s.names, "seeded-bug", "`name` of a deliberate bug to start with, to prove the harness catches it (repeatable or comma-separated; refused without --unsafe-allow-seeded-bugs): "+strings.Join(names, ", "))
	flags.BoolVar(&s.unsafeAllowed, "unsafe-allow-seeded-bugs", false, "allow --seeded-bug: the system will then lose or duplicate money on purpose (never in production)")
}

// parse checks the names and the unsafe switch.
func (s *seededBugFlags) parse() (ledger.Bugs, error) {
	bugs, err := ledger.ParseBugs(s.names, s.unsafeAllowed)
	if errors.Is(err, ledger.ErrSeededBugsNotAllowed) {
		return nil, fmt.Errorf("%w; to run them anyway, also pass --unsafe-allow-seeded-bugs (or set %s=true)", err, envName("unsafe-allow-seeded-bugs"))
	}
	if err != nil {
		return nil, fmt.Errorf("--seeded-bug: %w", err)
	}
	return bugs, nil
}

// activate parses the bugs and returns those that live in process, logging
// loudly which are active and, quietly, which this process ignores (so the
// same flags can be given to gateways and workers alike).
func (s *seededBugFlags) activate(process ledger.Process, logger *slog.Logger) (ledger.Bugs, error) {
	bugs, err := s.parse()
	if err != nil {
		return nil, err
	}
	concerned, ignored := bugs.For(process)
	for _, bug := range concerned {
		description, _ := bug.Describe()
		logger.Warn("SEEDED BUG ACTIVE: this process loses or duplicates money on purpose", "bug", bug, "what", description.Summary)
	}
	if len(ignored) > 0 {
		logger.Info("seeded bugs that do not live in this process are ignored", "process", process, "ignored", ignored.String())
	}
	return concerned, nil
}

// bugNameList is the repeatable --seeded-bug flag; each value may itself be
// a comma-separated list (ledger.ParseBugs splits it).
type bugNameList []string

func (l *bugNameList) String() string { return strings.Join(*l, ",") }

func (l *bugNameList) Set(value string) error {
	*l = append(*l, value)
	return nil
}

// serveHTTP serves handler on address until ctx ends, then shuts down
// gracefully within a bound.
func serveHTTP(ctx context.Context, address string, handler http.Handler, logger *slog.Logger) error {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", address, err)
	}
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	return serveListener(ctx, listener, server, logger)
}

// serveListener serves server on listener until ctx ends, then shuts down
// gracefully within a bound.
func serveListener(ctx context.Context, listener net.Listener, server *http.Server, logger *slog.Logger) error {
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
