package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/settlement"
)

// settlementFlags are the flags relay and settler share: Postgres, the
// brokers, the settlements topic, name, log level, seeded bugs, metrics
// listener; bound to settlement.ProcessConfig.
type settlementFlags struct {
	process    settlement.ProcessConfig
	seededBugs seededBugFlags
}

func (s *settlementFlags) register(flags *flag.FlagSet, process ledger.Process, metricsListen string) {
	config := &s.process.Daemon
	flags.StringVar(&config.PostgresURL, "postgres-url", daemon.DefaultPostgresURL, "Postgres connection URL (libpq form; several hosts allowed)")
	flags.IntVar(&config.PostgresMaxConnections, "postgres-max-connections", 4, "Postgres pool size")
	flags.StringVar(&config.Brokers, "brokers", daemon.DefaultBrokers, "Kafka seed brokers, comma-separated host:port")
	config.ReplicationFactor = 1
	flags.Var((*replicationFactor)(&config.ReplicationFactor), "replication-factor", "`count` of replicas of the settlements topic when this process creates it (-1: the broker's default)")
	flags.Var((*brokerAddressMapFlag)(&config.BrokerAddressMap), "broker-address-map", "`advertised=dialled`,... host:port pairs: connect to a broker's advertised address through another (a fault proxy); empty: as advertised")
	flags.StringVar(&config.Name, "name", string(process), "process name, in logs and metrics")
	flags.StringVar(&config.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	flags.StringVar(&s.process.Topic, "settlements-topic", ledger.SettlementsTopic, "topic of the settlement events")
	flags.IntVar(&s.process.Partitions, "settlement-partitions", 4, "partitions of the settlements topic (created with this count if missing; the settler reads them all)")
	flags.StringVar(&s.process.MetricsListen, "metrics-listen", metricsListen, "address of /metrics, /healthz and /readyz")
	flags.BoolVar(&config.Profiling, "pprof", false, "serve Go's profiles at /debug/pprof/ on the metrics listener, to loopback clients only")
	s.seededBugs.register(flags)
}

func (s *settlementFlags) complete() error {
	var err error
	s.process.Daemon.SeededBugs, err = s.seededBugs.parse()
	return err
}

// relayCommand runs the outbox relay (settlement.ServeRelay) until SIGINT
// or SIGTERM.
func relayCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("relay", flag.ContinueOnError)
	var s settlementFlags
	s.register(flags, ledger.ProcessRelay, "127.0.0.1:18270")
	flags.IntVar(&s.process.Relay.BatchSize, "batch-size", 256, "most outbox rows claimed, published and marked in one Postgres transaction")
	flags.DurationVar(&s.process.Relay.IdleInterval, "idle-interval", 50*time.Millisecond, "pause after a pass that drained the outbox")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if err := s.complete(); err != nil {
			return err
		}
		return settlement.ServeRelay(ctx, s.process)
	}
}

// settlerCommand runs the settlement consumer (settlement.ServeSettler)
// until SIGINT or SIGTERM.
func settlerCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("settler", flag.ContinueOnError)
	var s settlementFlags
	s.register(flags, ledger.ProcessSettler, "127.0.0.1:18271")
	flags.IntVar(&s.process.Settler.MaxRecords, "max-records", 512, "most settlement events read in one poll")
	poll := flags.Int("poll-min-bytes", 16<<10, "bytes of events a fetch waits for, at most --poll-max-wait: fewer, larger Postgres transactions under load")
	flags.DurationVar(&s.process.Settler.PollMaxWait, "poll-max-wait", 200*time.Millisecond, "longest a fetch waits for --poll-min-bytes (an idle topic's event waits this long)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if err := s.complete(); err != nil {
			return err
		}
		if *poll < 1 || *poll > settlement.MaxPollMinBytes {
			return fmt.Errorf("--poll-min-bytes %d not in [1, %d]", *poll, settlement.MaxPollMinBytes)
		}
		s.process.Settler.PollMinBytes = int32(*poll)
		return settlement.ServeSettler(ctx, s.process)
	}
}
