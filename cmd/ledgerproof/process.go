package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/daemon"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// processFlags are the flags gateway and worker share: connections, name
// and log level, seeded bugs and crash points. The connection flags are
// bound to the fields of config (so is --pprof, which each command declares
// with its own help, to config.Profiling).
type processFlags struct {
	config      *daemon.Config
	seededBugs  seededBugFlags
	crashPoints crashPointFlags
}

func (p *processFlags) register(flags *flag.FlagSet, config *daemon.Config, process ledger.Process) {
	p.config = config
	flags.StringVar(&config.PostgresURL, "postgres-url", daemon.DefaultPostgresURL, "Postgres connection URL (libpq form; several hosts allowed)")
	flags.IntVar(&config.PostgresMaxConnections, "postgres-max-connections", 16, "Postgres pool size")
	flags.StringVar(&config.RedisAddr, "redis-addr", daemon.DefaultRedisAddr, "Redis host:port")
	if process == ledger.ProcessWorker {
		// Only workers write outcome records.
		flags.DurationVar(&config.OutcomeTTL, "outcome-ttl", redis.DefaultOutcomeTTL, "how long the outcome record of a transaction lives in Redis (outcome:<id>; at least 1s). Gateways read it for a waiting request and for a replay's final answer, and ask the ledger without it; below the gateways' --in-flight-lease (60s) a replay after it expired is told the key is in flight until the lease ends")
	}
	flags.StringVar(&config.Brokers, "brokers", daemon.DefaultBrokers, "Kafka seed brokers, comma-separated host:port")
	flags.StringVar(&config.Topic, "topic", "ledger.commands", "commands topic")
	flags.IntVar(&config.Partitions, "partitions", 16, "partitions of the commands topic (created with this count if missing)")
	config.ReplicationFactor = 1
	flags.Var((*replicationFactor)(&config.ReplicationFactor), "replication-factor", "`count` of replicas of the commands topic when this process creates it (-1: the broker's default)")
	flags.Var((*brokerAddressMapFlag)(&config.BrokerAddressMap), "broker-address-map", "`advertised=dialled`,... host:port pairs: connect to a broker's advertised address through another (a fault proxy); empty: as advertised")
	flags.StringVar(&config.Name, "name", string(process), "process name, in logs and metrics")
	flags.StringVar(&config.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	p.seededBugs.register(flags)
	p.crashPoints.register(flags, process)
}

// complete checks the seeded bugs and crash points given and sets them into
// the config the flags are bound to.
func (p *processFlags) complete() error {
	var err error
	if p.config.SeededBugs, err = p.seededBugs.parse(); err != nil {
		return err
	}
	if p.config.CrashPoints, err = p.crashPoints.settings(); err != nil {
		return err
	}
	return nil
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

// bugNameList is the repeatable --seeded-bug flag; each value may itself be
// a comma-separated list (ledger.ParseBugs splits it).
type bugNameList []string

func (l *bugNameList) String() string { return strings.Join(*l, ",") }

func (l *bugNameList) Set(value string) error {
	*l = append(*l, value)
	return nil
}
