package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

func gatewayCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var connections connectionFlags
	connections.register(flags, "gateway", "postgres", "redis", "kafka")
	listen := flags.String("listen", "127.0.0.1:58080", "HTTP listen address")
	var config gateway.Config
	var kdfMemory, kdfIterations uint
	flags.UintVar(&kdfMemory, "kdf-memory-kib", 19456, "argon2id memory cost in KiB (lower only for load tests)")
	flags.UintVar(&kdfIterations, "kdf-iterations", 2, "argon2id iterations")
	flags.Float64Var(&config.RateLimitPerSecond, "rate-limit", 1000, "requests per second per user, per gateway (negative: no limit)")
	flags.IntVar(&config.RateLimitBurst, "rate-burst", 0, "burst per user (0: twice the rate)")
	flags.Int64Var(&config.MaxBodyBytes, "max-body-bytes", 16<<10, "largest request body accepted")
	flags.DurationVar(&config.WaitMax, "wait-max", 30*time.Second, "longest bounded wait a client may ask with Prefer: wait=N")
	flags.DurationVar(&config.SessionTTL, "session-ttl", 24*time.Hour, "lifetime of a sign-in token")
	flags.DurationVar(&config.IdempotencyTTL, "idempotency-ttl", 24*time.Hour, "how long Redis remembers a key and its response")
	flags.DurationVar(&config.ProduceTimeout, "produce-timeout", 10*time.Second, "longest wait for the broker's acknowledgement")
	flags.IntVar(&config.MaxInFlightRequests, "max-in-flight", 8192, "concurrent requests before refusing with 503")
	flags.DurationVar(&config.InFlightLease, "in-flight-lease", 60*time.Second, "how long a replay of a key whose first request has not answered gets 409 before taking over (must exceed --produce-timeout plus --wait-max)")
	applyMode := flags.String("apply-mode", string(gateway.ApplyModeQueue), "how money commands reach the ledger: queue (produced to the commands topic, applied by workers in batches) or naive (applied here, one Postgres transaction per request, answered with the outcome; no broker needed, start the stack with --workers 0)")
	profiling := flags.Bool("pprof", false, "serve Go's profiles at /debug/pprof/ on the HTTP listener, to loopback clients only")
	producerLinger := flags.Duration("producer-linger", 0, "how long the producer waits to fill a batch before sending it (0: send at once; records still batch while a request is in flight)")
	workersGroup := flags.String("workers-group", "ledger-workers", "the workers' consumer group: in the queue apply mode /readyz fails (503, check \"workers\") while it has no member, since nothing would apply what the gateway queues (asked at most every 2s; empty: not checked)")
	var seededBugs seededBugFlags
	seededBugs.register(flags)
	var crashPoints crashPointFlags
	crashPoints.register(flags, ledger.ProcessGateway)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		logger, err := connections.logger()
		if err != nil {
			return err
		}
		if config.SeededBugs, err = seededBugs.activate(ledger.ProcessGateway, logger); err != nil {
			return err
		}
		crashRegistry, err := crashPoints.activate(ledger.ProcessGateway, logger)
		if err != nil {
			return err
		}
		config.PasswordHashing = gateway.PasswordHashing{MemoryKiB: uint32(kdfMemory), Iterations: uint32(kdfIterations)}
		store, cache, err := connections.openBackends(ctx, logger, postgres.Config{SeededBugs: config.SeededBugs})
		if err != nil {
			return err
		}
		defer store.Close()
		defer cache.Close()
		config.ApplyMode = gateway.ApplyMode(*applyMode)
		registry := prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		dependencies := gateway.Dependencies{Store: store, Cache: cache, Registerer: registry, Logger: logger}
		if config.ApplyMode == gateway.ApplyModeNaive {
			// No broker: the gateway applies each command itself.
			dependencies.Applier = store
			logger.Info("apply mode naive: one Postgres transaction per request, no broker")
		} else {
			producer, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: connections.brokerList(), Topic: connections.topic, ClientID: connections.name,
				Linger: *producerLinger, BrokerAddressMap: connections.brokerAddressMap.addresses})
			if err != nil {
				return err
			}
			defer producer.Close()
			dependencies.Queue, dependencies.Ready = producer, producer.Ping
			if *workersGroup != "" {
				workers, err := gateway.NewWorkersCheck(*workersGroup, producer.GroupMembers, gateway.DefaultWorkersCheckCache, nil)
				if err != nil {
					return err
				}
				dependencies.Workers = workers.Check
			}
		}
		server, err := gateway.New(config, dependencies)
		if err != nil {
			return err
		}
		go server.Run(ctx)
		if err := serveHTTP(ctx, *listen, withProfiling(withCrashPoints(server.Handler(), crashRegistry), *profiling), logger); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	}
}

// replicationFactor is the --replication-factor flag of gateway and worker:
// the replicas of the commands topic when the process creates it. Default 1
// suits the single local broker; a three-broker cluster wants 3 (with
// min.insync.replicas 2, an acknowledged command survives one broker's loss).
// The value is checked when the flag is set, so a bad value fails at start-up
// and in the compose test rather than at the first topic creation.
type replicationFactor int16

func (r *replicationFactor) String() string { return strconv.Itoa(int(*r)) }

func (r *replicationFactor) Set(value string) error {
	parsed, err := strconv.ParseInt(value, 10, 16)
	if err != nil {
		return fmt.Errorf("replication factor %q: %w", value, err)
	}
	if parsed == 0 || parsed < -1 {
		return fmt.Errorf("replication factor %d must be -1 (the broker's default) or at least 1", parsed)
	}
	*r = replicationFactor(parsed)
	return nil
}
