package settlement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// ProcessConfig is a relay or settler process: what every SUT process
// shares (daemon.Config: its Topic is the commands topic, unused here), the
// settlements topic and the metrics listener. The defaults are those of
// `ledgerproof relay` and `ledgerproof settler`.
type ProcessConfig struct {
	Daemon daemon.Config
	// Topic is the settlements topic. Default ledger.settlements.
	Topic string
	// Partitions is the settlements topic's partition count when this
	// process creates it, and the partitions the settler reads. Default 4.
	Partitions int
	// MetricsListen is the address of /metrics, /healthz and /readyz.
	// Defaults 127.0.0.1:18270 (relay) and 127.0.0.1:18271 (settler).
	MetricsListen string
	// Relay configures the relay (ServeRelay only).
	Relay RelayConfig
	// Settler configures the settler (ServeSettler only).
	Settler SettlerConfig
}

func (p *ProcessConfig) validate() error {
	if p.Topic == "" {
		return errors.New("--settlements-topic is empty")
	}
	if p.Partitions < 1 || p.Partitions > 1024 {
		return fmt.Errorf("--settlement-partitions %d not in [1, 1024]", p.Partitions)
	}
	if len(p.Daemon.BrokerList()) == 0 {
		return errors.New("--brokers names no broker")
	}
	return nil
}

// setupTimeout bounds the start-up steps that need Postgres and the broker
// (the schema for seeded bugs, the topic, the stored offsets): they are
// retried until then, as the stack may still be starting.
const setupTimeout = 60 * time.Second

// retry runs step until it succeeds, ctx ends or setupTimeout passes.
func retry(ctx context.Context, logger *slog.Logger, what string, step func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		stepContext, stepCancel := context.WithTimeout(ctx, 10*time.Second)
		err := step(stepContext)
		stepCancel()
		if err == nil {
			return nil
		}
		logger.Warn(what+"; retrying", "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(backoff):
		}
	}
}

// open connects to Postgres with the process's seeded bugs, makes the
// schema changes they need, and creates the settlements topic if missing.
func open(ctx context.Context, process ProcessConfig, bugs ledger.Bugs, logger *slog.Logger) (*postgres.Store, error) {
	connections := process.Daemon
	store, err := postgres.Open(ctx, postgres.Config{URL: connections.PostgresURL, MaxConnections: int32(connections.PostgresMaxConnections),
		ApplicationName: connections.Name, SeededBugs: bugs})
	if err != nil {
		return nil, err
	}
	if err := retry(ctx, logger, "prepare the schema for seeded bugs", store.PrepareSeededBugs); err != nil {
		store.Close()
		return nil, err
	}
	if err := retry(ctx, logger, "ensure the settlements topic", func(ctx context.Context) error {
		return kafka.EnsureTopic(ctx, connections.BrokerList(), process.Topic, int32(process.Partitions), connections.ReplicationFactor)
	}); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// serve runs work beside the metrics listener until ctx ends.
func serve(ctx context.Context, process ProcessConfig, registry *prometheus.Registry, ready func(ctx context.Context) error,
	logger *slog.Logger, work func(ctx context.Context) error) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	group, groupContext := errgroup.WithContext(ctx)
	group.Go(func() error {
		return daemon.ServeHTTP(groupContext, process.MetricsListen, process.Daemon.InternalHandler(mux, nil), logger)
	})
	group.Go(func() error { return work(groupContext) })
	return group.Wait()
}

func newRegistry() *prometheus.Registry {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return registry
}

// begin validates a relay's or a settler's settings, then opens what both
// start with: the logger, the seeded bugs of their process kind, the ledger
// store.
func begin(ctx context.Context, process ProcessConfig, kind ledger.Process) (*slog.Logger, ledger.Bugs, *postgres.Store, error) {
	if err := process.validate(); err != nil {
		return nil, nil, nil, err
	}
	logger, err := process.Daemon.Logger()
	if err != nil {
		return nil, nil, nil, err
	}
	bugs := process.Daemon.ActivateSeededBugs(kind, logger)
	store, err := open(ctx, process, bugs, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	return logger, bugs, store, nil
}

// ServeRelay runs a relay process until ctx ends: it publishes the outbox to
// the settlements topic and serves /metrics, /healthz and /readyz.
func ServeRelay(ctx context.Context, process ProcessConfig) error {
	connections := process.Daemon
	logger, bugs, store, err := begin(ctx, process, ledger.ProcessRelay)
	if err != nil {
		return err
	}
	defer store.Close()
	producer, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: connections.BrokerList(), Topic: process.Topic,
		ClientID: connections.Name, BrokerAddressMap: connections.BrokerAddressMap})
	if err != nil {
		return err
	}
	defer producer.Close()
	relay, err := NewRelay(store, producer, process.Relay, logger)
	if err != nil {
		return err
	}
	registry := newRegistry()
	registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_relay_published_total",
		Help: "Settlement events published and marked published by this relay process."}, func() float64 { return float64(relay.Published()) }))
	ready := func(ctx context.Context) error {
		return errors.Join(store.Ping(ctx), producer.Ping(ctx), relay.Ready())
	}
	return serve(ctx, process, registry, ready, logger, func(ctx context.Context) error {
		logger.Info("relay started", "topic", process.Topic, "batch_size", relay.config.BatchSize, "seeded_bugs", bugs.String())
		return relay.Run(ctx)
	})
}

// ServeSettler runs a settler process until ctx ends: it applies the
// settlements topic to settlement_history and serves /metrics, /healthz and
// /readyz.
func ServeSettler(ctx context.Context, process ProcessConfig) error {
	connections := process.Daemon
	logger, bugs, store, err := begin(ctx, process, ledger.ProcessSettler)
	if err != nil {
		return err
	}
	defer store.Close()
	partitions := make([]int32, process.Partitions)
	for i := range partitions {
		partitions[i] = int32(i)
	}
	var offsets map[int32]int64
	if err := retry(ctx, logger, "read the settler's offsets", func(ctx context.Context) error {
		offsets, err = store.NextOffsets(ctx, process.Topic, partitions)
		return err
	}); err != nil {
		return err
	}
	logger.Info("settlement partitions", "offsets", offsets)
	config := process.Settler
	config.Topic = process.Topic
	if err := config.applyDefaults(); err != nil {
		return err
	}
	reader, err := kafka.NewReader(kafka.ReaderConfig{Brokers: connections.BrokerList(), Topic: process.Topic, StartOffsets: offsets,
		ClientID: connections.Name, BrokerAddressMap: connections.BrokerAddressMap,
		FetchMinBytes: config.PollMinBytes, FetchMaxWait: config.PollMaxWait})
	if err != nil {
		return err
	}
	defer reader.Close()
	settler, err := NewSettler(store, reader, config, bugs, logger)
	if err != nil {
		return err
	}
	registry := newRegistry()
	registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_settler_applied_total",
		Help: "Settlement events that made a settlement_history row in this settler process."}, func() float64 { return float64(settler.Applied()) }))
	ready := func(ctx context.Context) error {
		return errors.Join(store.Ping(ctx), reader.Ping(ctx), settler.Ready())
	}
	return serve(ctx, process, registry, ready, logger, func(ctx context.Context) error {
		logger.Info("settler started", "topic", process.Topic, "seeded_bugs", bugs.String())
		return settler.Run(ctx)
	})
}
