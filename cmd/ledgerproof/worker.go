package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/worker"
)

func workerCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	var connections connectionFlags
	connections.register(flags, "worker", "postgres", "redis", "kafka")
	group := flags.String("group", "ledger-workers", "consumer group")
	instanceID := flags.String("group-instance-id", "", "static group membership id, unique per worker: a restarted worker takes its partitions back at once (empty: dynamic)")
	metricsListen := flags.String("metrics-listen", "127.0.0.1:58180", "address of /metrics, /healthz and /readyz")
	var config worker.Config
	flags.IntVar(&config.BatchSize, "batch-size", 512, "most records applied in one Postgres transaction")
	flags.DurationVar(&config.Linger, "linger", 2*time.Millisecond, "wait for more records when a poll returns a short batch")
	flags.IntVar(&config.MaxConcurrentBatches, "max-concurrent-batches", 8, "partitions applied at once")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		logger, err := connections.logger()
		if err != nil {
			return err
		}
		config.Topic = connections.topic
		store, cache, err := connections.openBackends(ctx, logger)
		if err != nil {
			return err
		}
		defer store.Close()
		defer cache.Close()
		brokers := connections.brokerList()
		consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: connections.topic, Group: *group,
			ClientID: connections.name, InstanceID: *instanceID, StartOffsets: func(ctx context.Context, partitions []int32) (map[int32]int64, error) {
				offsets, err := store.NextOffsets(ctx, connections.topic, partitions)
				if err == nil {
					logger.Info("partitions assigned", "offsets", offsets)
				}
				return offsets, err
			}})
		if err != nil {
			return err
		}
		defer consumer.Close()
		registry := prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		applier, err := worker.New(config, store, cache, consumer, logger, worker.NewMetrics(registry))
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := errors.Join(store.Ping(ctx), consumer.Ping(ctx)); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		})
		group, groupContext := errgroup.WithContext(ctx)
		group.Go(func() error { return serveHTTP(groupContext, *metricsListen, mux, logger) })
		group.Go(func() error {
			logger.Info("worker started", "batch_size", config.BatchSize, "linger", config.Linger)
			return applier.Run(groupContext)
		})
		return group.Wait()
	}
}
