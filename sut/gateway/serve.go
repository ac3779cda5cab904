package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// ProcessConfig is a gateway process: the gateway's own Config, what every
// SUT process shares, and how the process reaches its clients and the
// broker. The defaults are those of `ledgerproof gateway`'s flags.
type ProcessConfig struct {
	// Gateway configures the gateway. Serve sets its SeededBugs (those of
	// Daemon.SeededBugs that live in the gateway) and the argon2id costs of
	// its PasswordHashing (KDFMemoryKiB, KDFIterations).
	Gateway Config
	// Daemon holds the connections, seeded bugs and crash points.
	Daemon daemon.Config
	// Listen is the HTTP listen address of the public API. Default
	// 127.0.0.1:18080.
	Listen string
	// InternalListen is the HTTP listen address of /readyz, /metrics, and
	// the crash points and profiles when enabled: for the orchestrator and
	// the scraper only, never the public. Default 127.0.0.1:18380.
	InternalListen string
	// KDFMemoryKiB and KDFIterations are argon2id's costs, set into
	// Gateway.PasswordHashing. Default 19456 and 2.
	KDFMemoryKiB, KDFIterations uint
	// ProducerLinger is how long the producer waits to fill a batch before
	// sending it. Default 0: send at once.
	ProducerLinger time.Duration
	// WorkersGroup is the workers' consumer group: in the queue apply mode
	// /readyz fails while it has no member. With shards, each shard's
	// workers form the group "<WorkersGroup>-shard-<i>" and /readyz fails
	// while any of them has no member (ShardWorkersCheck). Empty: not
	// checked. Default ledger-workers.
	WorkersGroup string
	// ShardPostgresURLs are the databases of shards 1, 2... of a sharded
	// ledger (docs/sharding.md), Daemon.PostgresURL being shard 0 (users,
	// sessions and shard 0's accounts): N = 1 + len. Default none: one
	// ledger. With any, the naive apply mode is refused.
	ShardPostgresURLs []string
}

// validateShards checks the shards' URLs before anything is connected: at
// most shard.MaxShards shards in all, none empty, none given twice (a
// shard's URL naming shard 0's database or another shard's would split no
// accounts while every process believes they are split), and the queue
// apply mode.
func (p ProcessConfig) validateShards() error {
	if len(p.ShardPostgresURLs) == 0 {
		return nil
	}
	if _, err := shard.New(1 + len(p.ShardPostgresURLs)); err != nil {
		return fmt.Errorf("gateway: --shard-postgres-url given %d times: %w", len(p.ShardPostgresURLs), err)
	}
	seen := map[string]int{p.Daemon.PostgresURL: 0}
	for index, url := range p.ShardPostgresURLs {
		if err := postgres.CheckURL(url); err != nil {
			return fmt.Errorf("gateway: shard %d's --shard-postgres-url: %w", index+1, err)
		}
		if earlier, found := seen[url]; found {
			return fmt.Errorf("gateway: shard %d's --shard-postgres-url is shard %d's database (--postgres-url is shard 0's): each shard needs its own", index+1, earlier)
		}
		seen[url] = index + 1
	}
	if p.Gateway.ApplyMode == ApplyModeNaive {
		return fmt.Errorf("gateway: --apply-mode naive with --shard-postgres-url: %s", NaiveWithShardsRefused)
	}
	return nil
}

// Serve runs a gateway process until ctx ends: it activates the seeded bugs
// and crash points asked for, connects to Postgres, Redis and (in the queue
// apply mode) the broker, and serves the public API on Listen and the
// internal endpoints on InternalListen, shutting both down gracefully when
// ctx ends.
func Serve(ctx context.Context, process ProcessConfig) error {
	// Everything Serve starts ends when it returns, before the deferred
	// closes of the store, the cache and the producer they use.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	connections, config := process.Daemon, process.Gateway
	if err := process.validateShards(); err != nil {
		return err
	}
	logger, err := connections.Logger()
	if err != nil {
		return err
	}
	config.SeededBugs = connections.ActivateSeededBugs(ledger.ProcessGateway, logger)
	crashRegistry, err := crash.Activate(connections.CrashPoints, ledger.ProcessGateway, logger)
	if err != nil {
		return err
	}
	config.PasswordHashing.MemoryKiB, config.PasswordHashing.Iterations = uint32(process.KDFMemoryKiB), uint32(process.KDFIterations)
	// Every shard's store knows the ledger is sharded (postgres.Config.Shards).
	ledgerConfig := storeConfig(config)
	ledgerConfig.Shards = 1 + len(process.ShardPostgresURLs)
	store, cache, err := connections.OpenBackends(ctx, logger, ledgerConfig)
	if err != nil {
		return err
	}
	defer store.Close()
	defer cache.Close()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dependencies := Dependencies{Store: store, Cache: cache, Registerer: registry, Logger: logger}
	if config.softChecksOn() {
		dependencies.LimitCache, dependencies.Rejections = cache, store
	}
	if len(process.ShardPostgresURLs) > 0 {
		shardStores, err := connections.OpenShardStores(ctx, logger, process.ShardPostgresURLs, ledgerConfig)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		dependencies.Shards, dependencies.ShardUsers = []ShardStore{store}, store
		for _, shardStore := range shardStores {
			defer shardStore.Close()
			dependencies.Shards = append(dependencies.Shards, shardStore)
		}
		logger.Info("sharded ledger: users in shard 0, each user's account in shard user id mod N", "shards", len(dependencies.Shards))
	}
	if config.ApplyMode == ApplyModeNaive {
		// No broker: the gateway applies each command itself.
		dependencies.Applier = store
		logger.Info("apply mode naive: one Postgres transaction per request, no broker")
	} else {
		producer, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: connections.BrokerList(), Topic: connections.Topic, ClientID: connections.Name,
			Linger: process.ProducerLinger, BrokerAddressMap: connections.BrokerAddressMap})
		if err != nil {
			return err
		}
		defer producer.Close()
		dependencies.Queue, dependencies.Ready = producer, producer.Ping
		if process.WorkersGroup != "" && len(process.ShardPostgresURLs) == 0 {
			workers, err := NewWorkersCheck(process.WorkersGroup, producer.GroupMembers, DefaultWorkersCheckCache, nil)
			if err != nil {
				return err
			}
			dependencies.Workers = workers.Check
		}
		if process.WorkersGroup != "" && len(process.ShardPostgresURLs) > 0 {
			check, err := ShardWorkersCheck(process.WorkersGroup, 1+len(process.ShardPostgresURLs), producer.GroupMembers, DefaultWorkersCheckCache, nil)
			if err != nil {
				return err
			}
			dependencies.Workers = check
		}
	}
	server, err := New(config, dependencies)
	if err != nil {
		return err
	}
	go server.Run(ctx)
	public, err := net.Listen("tcp", process.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", process.Listen, err)
	}
	internal, err := net.Listen("tcp", process.InternalListen)
	if err != nil {
		public.Close()
		return fmt.Errorf("gateway: listen on %s: %w", process.InternalListen, err)
	}
	group, groupContext := errgroup.WithContext(ctx)
	group.Go(func() error {
		return daemon.ServeListener(groupContext, server.Listener(public), server.Server(server.Handler()), logger)
	})
	group.Go(func() error {
		internalServer := &http.Server{Handler: connections.InternalHandler(server.InternalHandler(), crashRegistry),
			ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
		return daemon.ServeListener(groupContext, internal, internalServer, logger)
	})
	if err := group.Wait(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// storeConfig is the gateway's ledger store's configuration: its seeded
// bugs and, because in the naive apply mode the store applies each command
// (ApplyOne), the daily debit limit the ledger enforces there.
func storeConfig(config Config) postgres.Config {
	return postgres.Config{SeededBugs: config.SeededBugs, DailyDebitLimitMinor: config.DailyDebitLimitMinor}
}
