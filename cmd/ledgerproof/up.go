package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/shard"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// upCommand starts the local stack: Postgres, redis-server, the broker,
// migrations, gateways and workers, each a process of its own that outlives
// this command. The stack is for local use only: Postgres trusts every
// connection on 127.0.0.1.
func upCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("up", flag.ContinueOnError)
	config := stack.DefaultConfig()
	flags.StringVar(&config.Dir, "dir", config.Dir, "stack directory: stack file, logs and data")
	flags.StringVar(&config.Binary, "binary", "", "ledgerproof binary started for broker, migrate, gateways and workers (default: this binary)")
	flags.StringVar(&config.PostgresBinDir, "postgres-bin-dir", "", "directory holding initdb and postgres (default: /usr/lib/postgresql/15/bin, then PATH)")
	flags.IntVar(&config.PostgresPort, "postgres-port", config.PostgresPort, "Postgres port on 127.0.0.1")
	flags.BoolVar(&config.PostgresStandby, "postgres-standby", config.PostgresStandby, "also run a synchronous streaming standby of Postgres (component postgres-standby; 'stack --action failover' promotes it); commits then wait for it")
	flags.IntVar(&config.PostgresStandbyPort, "postgres-standby-port", stack.DefaultPostgresStandbyPort, "Postgres standby port on 127.0.0.1 (with --postgres-standby)")
	flags.IntVar(&config.RedisPort, "redis-port", config.RedisPort, "redis-server port on 127.0.0.1")
	flags.IntVar(&config.BrokerPort, "broker-port", config.BrokerPort, "broker port on 127.0.0.1")
	flags.IntVar(&config.GatewayPort, "gateway-port", config.GatewayPort, "first gateway's port on 127.0.0.1; gateway i uses gateway-port+i")
	flags.IntVar(&config.GatewayInternalPort, "gateway-internal-port", config.GatewayInternalPort, "first gateway's internal port on 127.0.0.1 (/readyz, /metrics, crash points); gateway i uses gateway-internal-port+i (0: gateway-port+300)")
	flags.IntVar(&config.WorkerMetricsPort, "worker-metrics-port", config.WorkerMetricsPort, "first worker's metrics port on 127.0.0.1; worker i uses worker-metrics-port+i")
	flags.IntVar(&config.Gateways, "gateways", config.Gateways, "number of gateway processes (0 allowed)")
	flags.IntVar(&config.Workers, "workers", config.Workers, "number of worker processes (0 allowed)")
	flags.IntVar(&config.Partitions, "partitions", config.Partitions, "partitions of the command topic")
	flags.BoolVar(&config.Settlement, "settlement", config.Settlement, "start the settlement pipeline: one outbox relay and one settler (components relay and settler; docs/settlement.md)")
	flags.IntVar(&config.SettlementPort, "settlement-port", stack.DefaultSettlementPort, "relay's metrics port on 127.0.0.1; the settler uses settlement-port+1 (with --settlement)")
	flags.BoolVar(&config.BrokerSync, "broker-sync", config.BrokerSync, "broker fsyncs every batch (--sync): survives a machine crash, at a cost in throughput (a killed broker keeps acknowledged records either way)")
	flags.BoolVar(&config.Migrate, "migrate", config.Migrate, "run 'ledgerproof migrate' once Postgres is up")
	flags.BoolVar(&config.Proxies, "proxies", config.Proxies, "route gateway->broker, worker->broker, worker->postgres, gateway->redis and worker->redis through the fault proxy (component proxy; docs/link-faults.md)")
	flags.IntVar(&config.ProxyPort, "proxy-port", stack.DefaultProxyPort, "fault proxy API port on 127.0.0.1; the links use the next 5 ports (with --proxies)")
	flags.DurationVar(&config.ReadyTimeout, "ready-timeout", config.ReadyTimeout, "how long to wait for each component to be ready")
	flags.Int64Var(&config.DailyDebitLimitMinor, "daily-debit-limit", config.DailyDebitLimitMinor, "daily debit limit per user (minor units per UTC day) given to every gateway and worker and recorded in stack.json for the audit (0: no limit; docs/limits.md)")
	flags.Var((*stackArgumentList)(&config.GatewayArgs), "gateway-arg", "argument appended to every gateway's command line (repeatable)")
	flags.Var((*stackArgumentList)(&config.WorkerArgs), "worker-arg", "argument appended to every worker's command line (repeatable)")
	flags.Var((*stackArgumentList)(&config.BrokerArgs), "broker-arg", "argument appended to the broker's command line (repeatable), e.g. --broker-arg=--retention=1h: a bounded broker, which deletes records no worker read within the hour (docs/performance.md, \"Bounded memory\")")
	flags.IntVar(&config.Shards, "shards", config.Shards, fmt.Sprintf("split the ledger across this many Postgres databases, 1 to %d (docs/sharding.md): shard i > 0 is component postgres-shard-<i>, with --workers workers and an outbox relay of its own", shard.MaxShards))
	flags.IntVar(&config.PostgresShardPort, "postgres-shard-port", 0, "with --shards N > 1: shard 1's Postgres port on 127.0.0.1, shard i uses postgres-shard-port+i-1 (0: postgres-port+10)")
	var seededBugs seededBugFlags
	seededBugs.register(flags)
	config.Output = os.Stdout
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if _, err := shard.New(config.Shards); err != nil {
			return fmt.Errorf("--shards: %w", err)
		}
		// Refuse at once, not as a gateway that fails to start.
		bugs, err := seededBugs.parse()
		if err != nil {
			return err
		}
		for _, bug := range bugs {
			config.SeededBugs = append(config.SeededBugs, string(bug))
		}
		config.UnsafeAllowSeededBugs = seededBugs.unsafeAllowed && len(bugs) > 0
		return stack.UpAndPrint(ctx, config, os.Stdout)
	}
}

// stackArgumentList is a repeatable string flag.
type stackArgumentList []string

func (l *stackArgumentList) String() string { return strings.Join(*l, " ") }

func (l *stackArgumentList) Set(value string) error {
	*l = append(*l, value)
	return nil
}
