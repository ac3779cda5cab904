package stack

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// A sharded stack (Config.Shards > 1, docs/sharding.md): shard 0 is the
// stack's "postgres" (users, sessions and shard 0's accounts); shard i > 0
// is the component "postgres-shard-<i>" (shard.Component), a Postgres
// process of its own with its own data directory and port, migrated as
// shard i of N. Each shard has its own workers (Config.Workers per shard:
// worker-<j> for shard 0, as in a single-shard stack, worker-s<i>-<j> for
// shard i), each started with --shard i and every shard's URL, and its own
// outbox relay (relay for shard 0, relay-shard-<i> for shard i, each
// reading its shard's settlement_outbox). The gateways get every shard's
// URL; the settler stays one, its history and offsets in shard 0.

// ShardWorkerName is the name of worker j of shard s: worker-<j> on shard
// 0, worker-s<s>-<j> on the others.
func ShardWorkerName(s, j int) string {
	if s == 0 {
		return KindWorker + "-" + strconv.Itoa(j)
	}
	return fmt.Sprintf("%s-s%d-%d", KindWorker, s, j)
}

// ShardRelayName is the name of the outbox relay of shard s: "relay" for
// shard 0, "relay-shard-<s>" for the others.
func ShardRelayName(s int) string {
	if s == 0 {
		return KindRelay
	}
	return fmt.Sprintf("%s-shard-%d", KindRelay, s)
}

// shards is Config.Shards, 0 read as 1 (one ledger).
func (c Config) shards() int {
	if c.Shards == 0 {
		return 1
	}
	return c.Shards
}

// postgresShardPort is the port of shard s > 0's Postgres.
func (c Config) postgresShardPort(s int) int {
	first := c.PostgresShardPort
	if first == 0 {
		first = c.PostgresPort + DefaultPostgresShardPortOffset
	}
	return first + s - 1
}

// DefaultPostgresShardPortOffset places shard 1's Postgres this far above
// Config.PostgresPort when Config.PostgresShardPort is 0 (15442 for the
// default 15432), clear of the standby's port next to the primary.
const DefaultPostgresShardPortOffset = 10

// validateShards adds the sharding problems of the config to problems and
// claims the shards' ports.
func (c Config) validateShards(problems *[]string, claim func(port int, owner string)) {
	if c.Shards < 0 || c.Shards > shard.MaxShards {
		*problems = append(*problems, fmt.Sprintf("shards %d not in [1, %d]", c.Shards, shard.MaxShards))
		return
	}
	for s := 1; s < c.shards(); s++ {
		claim(c.postgresShardPort(s), shard.Component(s))
	}
}

// shardPostgresOptions is the durable cluster of shard s > 0, in
// <dir>/postgres-shard-<s>/.
func shardPostgresOptions(config Config, dir, binDir string, s int) PostgresOptions {
	base := filepath.Join(dir, shard.Component(s))
	options := PostgresOptions{
		BinDir:    binDir,
		DataDir:   filepath.Join(base, "data"),
		SocketDir: filepath.Join(base, "run"),
		Port:      config.postgresShardPort(s),
		OSUser:    PostgresOSUser(),
		Durable:   true,
		Settings:  append([]string{"max_connections=200", "shared_buffers=128MB"}, WriteHeavySettings...),
	}
	options.Settings = append(options.Settings, config.PostgresSettings...)
	return options
}

// shardIndex returns s when name is the Postgres component of shard s > 0,
// else 0 and false.
func shardIndex(name string) (int, bool) {
	rest, found := strings.CutPrefix(name, "postgres-shard-")
	if !found {
		return 0, false
	}
	s, err := strconv.Atoi(rest)
	if err != nil || s < 1 || shard.Component(s) != name {
		return 0, false
	}
	return s, true
}

// shardPostgresComponents are the Postgres components of shards 1..N-1,
// and their ledger databases' URLs.
func shardPostgresComponents(config Config, dir, binDir string) (components []*Component, urls []string) {
	for s := 1; s < config.shards(); s++ {
		options := shardPostgresOptions(config, dir, binDir, s)
		component := PostgresComponent(shard.Component(s), options, "ledger", filepath.Join(dir, "logs", shard.Component(s)+".log"))
		components = append(components, component)
		urls = append(urls, component.Endpoint)
	}
	return components, urls
}

// shardArgs are the flags that tell a gateway or a worker about the other
// shards: --shard-postgres-url for each of shards 1..N-1, in order. None
// for one shard.
func shardArgs(shardURLs []string) []string {
	var args []string
	for _, url := range shardURLs {
		args = append(args, "--shard-postgres-url", url)
	}
	return args
}

// shardRelayComponents are the outbox relays of shards 1..N-1 (shard 0's is
// the stack's relay): each reads its shard's settlement_outbox and
// publishes to the one settlements topic; its metrics port follows the
// settler's.
func shardRelayComponents(config Config, dir string, shardURLs []string, brokerAddress string) []*Component {
	if !config.Settlement {
		return nil
	}
	var components []*Component
	for i, url := range shardURLs {
		s := i + 1
		name := ShardRelayName(s)
		address := "127.0.0.1:" + strconv.Itoa(config.settlementPort()+1+s)
		argv := []string{config.Binary, KindRelay,
			"--postgres-url", url,
			"--brokers", brokerAddress,
			"--name", name,
			"--metrics-listen", address,
		}
		argv = append(argv, seededBugArgs(config)...)
		components = append(components, &Component{
			Name:       name,
			Kind:       KindRelay,
			Endpoint:   "http://" + address + "/metrics",
			Argv:       append(argv, config.RelayArgs...),
			Env:        config.Env,
			WorkDir:    dir,
			LogFile:    filepath.Join(dir, "logs", name+".log"),
			Ready:      Probe{Kind: ProbeHTTP, Target: "http://" + address + "/readyz"},
			StopSignal: "SIGTERM",
		})
	}
	return components
}

// shardMember is the --shard value of `ledgerproof migrate` for shard s of
// the config's shards: "" for one ledger (migrate's default, 0/1).
func (c Config) shardMember(s int) string {
	if c.shards() == 1 {
		return ""
	}
	return strconv.Itoa(s) + "/" + strconv.Itoa(c.shards())
}

// ShardProcesses are the names of the components a sharded stack of config
// adds to a single-shard one: postgres-shard-<i>, worker-s<i>-<j> and, with
// the settlement pipeline, relay-shard-<i>, for every shard i > 0. None for
// one shard. (What a plan checked before the stack starts may target.)
func ShardProcesses(config Config) []string {
	var names []string
	for s := 1; s < config.shards(); s++ {
		names = append(names, shard.Component(s))
		for j := 0; j < config.Workers; j++ {
			names = append(names, ShardWorkerName(s, j))
		}
		if config.Settlement {
			names = append(names, ShardRelayName(s))
		}
	}
	return names
}
