package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// upCommand starts the local stack: Postgres, redis-server, the broker,
// migrations, gateways and workers, each a process of its own that outlives
// this command. The stack is for local use only: Postgres trusts every
// connection on 127.0.0.1.
func upCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("up", flag.ContinueOnError)
	defaults := stack.DefaultConfig()
	dir := flags.String("dir", defaults.Dir, "stack directory: stack file, logs and data")
	binary := flags.String("binary", "", "ledgerproof binary started for broker, migrate, gateways and workers (default: this binary)")
	postgresBinDir := flags.String("postgres-bin-dir", "", "directory holding initdb and postgres (default: /usr/lib/postgresql/15/bin, then PATH)")
	postgresPort := flags.Int("postgres-port", defaults.PostgresPort, "Postgres port on 127.0.0.1")
	postgresStandby := flags.Bool("postgres-standby", defaults.PostgresStandby, "also run a synchronous streaming standby of Postgres (component postgres-standby; 'stack --action failover' promotes it); commits then wait for it")
	postgresStandbyPort := flags.Int("postgres-standby-port", stack.DefaultPostgresStandbyPort, "Postgres standby port on 127.0.0.1 (with --postgres-standby)")
	redisPort := flags.Int("redis-port", defaults.RedisPort, "redis-server port on 127.0.0.1")
	brokerPort := flags.Int("broker-port", defaults.BrokerPort, "broker port on 127.0.0.1")
	gatewayPort := flags.Int("gateway-port", defaults.GatewayPort, "first gateway's port on 127.0.0.1; gateway i uses gateway-port+i")
	gatewayInternalPort := flags.Int("gateway-internal-port", defaults.GatewayInternalPort, "first gateway's internal port on 127.0.0.1 (/readyz, /metrics, crash points); gateway i uses gateway-internal-port+i (0: gateway-port+300)")
	workerMetricsPort := flags.Int("worker-metrics-port", defaults.WorkerMetricsPort, "first worker's metrics port on 127.0.0.1; worker i uses worker-metrics-port+i")
	gateways := flags.Int("gateways", defaults.Gateways, "number of gateway processes (0 allowed)")
	workers := flags.Int("workers", defaults.Workers, "number of worker processes (0 allowed)")
	partitions := flags.Int("partitions", defaults.Partitions, "partitions of the command topic")
	brokerSync := flags.Bool("broker-sync", defaults.BrokerSync, "broker fsyncs every batch (--sync): survives a machine crash, at a cost in throughput (a killed broker keeps acknowledged records either way)")
	migrate := flags.Bool("migrate", defaults.Migrate, "run 'ledgerproof migrate' once Postgres is up")
	proxies := flags.Bool("proxies", defaults.Proxies, "route gateway->broker, worker->broker, worker->postgres, gateway->redis and worker->redis through the fault proxy (component proxy; docs/link-faults.md)")
	proxyPort := flags.Int("proxy-port", stack.DefaultProxyPort, "fault proxy API port on 127.0.0.1; the links use the next 5 ports (with --proxies)")
	readyTimeout := flags.Duration("ready-timeout", defaults.ReadyTimeout, "how long to wait for each component to be ready")
	var gatewayArgs, workerArgs stackArgumentList
	flags.Var(&gatewayArgs, "gateway-arg", "argument appended to every gateway's command line (repeatable)")
	flags.Var(&workerArgs, "worker-arg", "argument appended to every worker's command line (repeatable)")
	var seededBugs seededBugFlags
	seededBugs.register(flags)
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		// Refuse at once, not as a gateway that fails to start.
		bugs, err := seededBugs.parse()
		if err != nil {
			return err
		}
		config := defaults
		for _, bug := range bugs {
			config.SeededBugs = append(config.SeededBugs, string(bug))
		}
		config.UnsafeAllowSeededBugs = seededBugs.unsafeAllowed && len(bugs) > 0
		config.Dir = *dir
		config.Binary = *binary
		config.PostgresBinDir = *postgresBinDir
		config.PostgresPort = *postgresPort
		config.PostgresStandby = *postgresStandby
		config.PostgresStandbyPort = *postgresStandbyPort
		config.RedisPort = *redisPort
		config.BrokerPort = *brokerPort
		config.GatewayPort = *gatewayPort
		config.GatewayInternalPort = *gatewayInternalPort
		config.WorkerMetricsPort = *workerMetricsPort
		config.Gateways = *gateways
		config.Workers = *workers
		config.Partitions = *partitions
		config.BrokerSync = *brokerSync
		config.Migrate = *migrate
		config.Proxies, config.ProxyPort = *proxies, *proxyPort
		config.ReadyTimeout = *readyTimeout
		config.GatewayArgs = gatewayArgs
		config.WorkerArgs = workerArgs
		config.Output = os.Stdout
		result, err := stack.Up(ctx, config)
		if err != nil {
			return err
		}
		if result.AlreadyRunning {
			fmt.Printf("stack already running in %s (nothing started)\n", result.File.Dir)
		} else {
			fmt.Printf("stack up in %s\n", result.File.Dir)
		}
		printStackEndpoints(result.File)
		if len(bugs) > 0 && !result.AlreadyRunning {
			fmt.Printf("  SEEDED BUGS:    %s (this stack loses or duplicates money on purpose; see docs/seeded-bugs.md)\n", bugs)
		}
		return nil
	}
}

// printStackEndpoints prints where the stack's services answer.
func printStackEndpoints(file *stack.File) {
	endpoints := file.Endpoints
	fmt.Printf("  postgres:       %s\n", endpoints.PostgresURL)
	fmt.Printf("  redis:          %s\n", endpoints.RedisAddr)
	fmt.Printf("  brokers:        %s\n", strings.Join(endpoints.Brokers, ","))
	fmt.Printf("  gateways:       %s\n", strings.Join(endpoints.Gateways, " "))
	if len(endpoints.GatewayInternal) > 0 {
		fmt.Printf("  gateway internal (readiness, metrics): %s\n", strings.Join(endpoints.GatewayInternal, " "))
	}
	fmt.Printf("  worker metrics: %s\n", strings.Join(endpoints.WorkerMetrics, " "))
	fmt.Printf("  stack file:     %s\n", file.Dir+"/"+stack.FileName)
}

// stackArgumentList is a repeatable string flag.
type stackArgumentList []string

func (l *stackArgumentList) String() string { return strings.Join(*l, " ") }

func (l *stackArgumentList) Set(value string) error {
	*l = append(*l, value)
	return nil
}
