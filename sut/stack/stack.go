package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// FileName is the stack file inside a stack directory.
const FileName = "stack.json"

// FileVersion is the format version of the stack file.
const FileVersion = 1

// lockName is the file locked (flock) while the stack file is read and
// rewritten, so concurrent operations on one stack do not lose updates.
const lockName = "stack.lock"

// Config describes the local stack `ledgerproof up` starts. Start from
// DefaultConfig: zero values are meaningful (zero gateways is allowed).
type Config struct {
	// Dir holds the stack file, logs and data. Default ".ledgerproof/stack".
	Dir string
	// Binary is the ledgerproof executable started for the broker, migrate,
	// gateways and workers. Default: os.Executable(), the running binary.
	Binary string
	// Env holds extra KEY=VALUE entries for the processes started from
	// Binary. Default none.
	Env []string
	// PostgresBinDir holds initdb and postgres. Default: found by
	// PostgresBinDir.
	PostgresBinDir string
	// PostgresPort is the cluster's port on 127.0.0.1. Default 15432, away
	// from a system Postgres on 5432.
	PostgresPort int
	// PostgresStandby adds a synchronous streaming standby of the cluster
	// (component postgres-standby, see standby.go) and gives gateways and
	// workers a multi-host URL that follows a failover. Default false: one
	// cluster, and no commit waits for a second one.
	PostgresStandby bool
	// PostgresStandbyPort is the standby's port on 127.0.0.1, used with
	// PostgresStandby. Default (0) DefaultPostgresStandbyPort, 15433, next
	// to the primary.
	PostgresStandbyPort int
	// PostgresSettings are extra name=value server settings of the cluster
	// (postgres -c), after the stack's own. Default none.
	PostgresSettings []string
	// RedisPort is redis-server's port on 127.0.0.1. Default 16379.
	RedisPort int
	// BrokerPort is the broker's port on 127.0.0.1. Default 19092.
	BrokerPort int
	// GatewayPort is the first gateway's port; gateway i listens on
	// GatewayPort+i. Default 18080.
	GatewayPort int
	// GatewayInternalPort is the first gateway's internal listener port
	// (its /readyz and /metrics, the crash points and profiles when
	// enabled: --internal-listen); gateway i listens on
	// GatewayInternalPort+i. Default (0): GatewayPort+300, 18380 for the
	// default GatewayPort, so a caller that moves the gateways moves these.
	GatewayInternalPort int
	// WorkerMetricsPort is the first worker's metrics port; worker i listens
	// on WorkerMetricsPort+i. Default 18180.
	WorkerMetricsPort int
	// Gateways is the number of gateway processes. Default 2.
	Gateways int
	// Workers is the number of worker processes. Default 2.
	Workers int
	// Partitions of the command topic, passed to the broker, gateways and
	// workers alike so they agree. Default 16, the default of those commands.
	Partitions int
	// BrokerSync makes the broker fsync every batch (--sync), so even a
	// machine crash keeps what it acknowledged. Default false: records reach
	// the OS page cache before the acknowledgement, which already survives
	// SIGKILL of the broker (the drills' fault); fsync per produce caps the
	// broker at a few thousand records per second on this class of machine.
	BrokerSync bool
	// BrokerArgs are appended to the broker's command line, for example
	// --retention (docs/performance.md, "Bounded memory"). Default none.
	BrokerArgs []string
	// Migrate runs `<Binary> migrate` once Postgres is up. Default true.
	Migrate bool
	// Proxies routes gateway->broker, worker->broker, worker->postgres,
	// gateway->redis and worker->redis through the fault proxy (component
	// proxy, links.go), so Link can add latency, cut a link and so on.
	// Default false: every process talks to the services directly.
	Proxies bool
	// ProxyPort is the fault proxy API's port on 127.0.0.1; link i of Links
	// listens on ProxyPort+1+i. Default (0) DefaultProxyPort, 18290.
	ProxyPort int
	// GatewayArgs and WorkerArgs are appended to every gateway's and worker's
	// command line (knobs such as KDF cost, seeded bugs), after
	// TestRigGatewayArgs, so they override those. Default none.
	GatewayArgs []string
	WorkerArgs  []string
	// SeededBugs are passed to every gateway and worker as --seeded-bug;
	// each process ignores the bugs that do not live in it. Default none.
	SeededBugs []string
	// DailyDebitLimitMinor is the daily debit limit given to every gateway
	// and worker (--daily-debit-limit; docs/limits.md) and recorded in the
	// stack file for the audit. 0: no limit. Default (DefaultConfig)
	// ledger.DefaultDailyDebitLimitMinor.
	DailyDebitLimitMinor int64
	// UnsafeAllowSeededBugs passes --unsafe-allow-seeded-bugs with them;
	// without it the processes refuse to start. Default false.
	UnsafeAllowSeededBugs bool
	// Settlement starts the settlement pipeline (docs/settlement.md): one
	// outbox relay and one settler, components relay and settler. Default
	// true (DefaultConfig).
	Settlement bool
	// SettlementPort is the relay's metrics port on 127.0.0.1; the
	// settler's is SettlementPort+1. Default (0) DefaultSettlementPort,
	// 18270.
	SettlementPort int
	// RelayArgs and SettlerArgs are appended to the relay's and the
	// settler's command lines. Default none.
	RelayArgs   []string
	SettlerArgs []string
	// ReadyTimeout bounds the wait for each component to be ready. Default
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Output receives progress lines. Default io.Discard.
	Output io.Writer
	// Shards splits the ledger across this many Postgres databases
	// (docs/sharding.md; shards.go): shard 0 is the postgres component,
	// shard i > 0 the component postgres-shard-<i>, each with Workers
	// workers and its own outbox relay. 1 to shard.MaxShards; 0 is read as
	// 1. Default 1: one ledger, today's stack.
	Shards int
	// PostgresShardPort is shard 1's Postgres port on 127.0.0.1; shard i
	// uses PostgresShardPort+i-1. Default (0): PostgresPort+10, 15442 for
	// the default PostgresPort.
	PostgresShardPort int
}

// TestRigGatewayArgs are given to every gateway of the local stack before
// GatewayArgs: the stack is a test rig, not a deployment. Every client of
// the rig is 127.0.0.1 — the load engine signs up and signs in thousands
// of accounts from it at setup, and a load of thousands of requests a
// second holds hundreds of connections — so the limits per client address
// (sign-in, signup, connections, requests in flight) and per email (a
// setup retries a signup or a sign-in through faults) are off, and the
// money limit per user is the per-user limit (the hot-account scenarios
// send hundreds of money requests a second for one user). The sign-in
// lock after failures, the password hashing slots, the body read deadline
// and the other defenses stay as they are. A test of those limits passes
// them again in GatewayArgs (sut/e2e/security_test.go); docs/security.md
// lists them.
var TestRigGatewayArgs = []string{
	"--signin-address-rate=-1", "--signin-email-rate=-1",
	"--signup-address-rate=-1", "--signup-email-rate=-1",
	"--connections-per-address=-1", "--in-flight-per-address=-1",
	"--money-rate-limit=1000",
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Dir:               ".ledgerproof/stack",
		PostgresPort:      15432,
		RedisPort:         16379,
		BrokerPort:        19092,
		GatewayPort:       18080,
		WorkerMetricsPort: 18180,
		Gateways:          2,
		Workers:           2,
		Partitions:        16,
		BrokerSync:        false,
		// The local stack is a test rig: its daily debit limit is low
		// enough that the gate's busiest accounts reach it.
		DailyDebitLimitMinor: ledger.DefaultDailyDebitLimitMinor,
		Migrate:              true,
		Settlement:           true,
		ReadyTimeout:         DefaultReadyTimeout,
		Shards:               1,
	}
}

// validate rejects contradictions and out-of-range values.
func (c Config) validate() error {
	var problems []string
	if c.Dir == "" {
		problems = append(problems, "no stack directory")
	}
	if c.Gateways < 0 || c.Gateways > 64 {
		problems = append(problems, fmt.Sprintf("gateways %d not in [0, 64]", c.Gateways))
	}
	if c.Workers < 0 || c.Workers > 64 {
		problems = append(problems, fmt.Sprintf("workers %d not in [0, 64]", c.Workers))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		problems = append(problems, fmt.Sprintf("partitions %d not in [1, 1024]", c.Partitions))
	}
	if c.DailyDebitLimitMinor < 0 {
		problems = append(problems, fmt.Sprintf("daily debit limit %d is negative (0: no limit)", c.DailyDebitLimitMinor))
	}
	ports := map[int]string{}
	claim := func(port int, owner string) {
		if port < 1 || port > 65535 {
			problems = append(problems, fmt.Sprintf("%s port %d not in [1, 65535]", owner, port))
			return
		}
		if other, taken := ports[port]; taken {
			problems = append(problems, fmt.Sprintf("port %d given to both %s and %s", port, other, owner))
			return
		}
		ports[port] = owner
	}
	claim(c.PostgresPort, "postgres")
	if c.PostgresStandby {
		claim(c.standbyPort(), StandbyComponentName)
	}
	claim(c.RedisPort, "redis")
	claim(c.BrokerPort, "broker")
	c.claimProxyPorts(claim)
	for i := 0; i < c.Gateways; i++ {
		claim(c.GatewayPort+i, "gateway-"+strconv.Itoa(i))
		claim(c.gatewayInternalPort()+i, "gateway-"+strconv.Itoa(i)+" internal")
	}
	c.validateShards(&problems, claim)
	for s := 0; s < c.shards(); s++ {
		for i := 0; i < c.Workers; i++ {
			claim(c.WorkerMetricsPort+s*c.Workers+i, ShardWorkerName(s, i)+" metrics")
		}
	}
	if c.Settlement {
		claim(c.settlementPort(), KindRelay+" metrics")
		claim(c.settlementPort()+1, KindSettler+" metrics")
		for s := 1; s < c.shards(); s++ {
			claim(c.settlementPort()+1+s, ShardRelayName(s)+" metrics")
		}
	}
	if c.ReadyTimeout <= 0 {
		problems = append(problems, "ready timeout must be positive")
	}
	if len(problems) > 0 {
		return fmt.Errorf("stack config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// gatewayInternalPort is GatewayInternalPort, defaulted.
func (c Config) gatewayInternalPort() int {
	if c.GatewayInternalPort == 0 {
		return c.GatewayPort + 300
	}
	return c.GatewayInternalPort
}

// Endpoints are the addresses clients of the stack use.
type Endpoints struct {
	// Gateways are base URLs of the public API, e.g. http://127.0.0.1:18080.
	Gateways []string `json:"gateways"`
	// GatewayInternal are the gateways' internal base URLs (their /readyz,
	// /metrics, crash points), e.g. http://127.0.0.1:18380; also each
	// gateway component's Endpoint.
	GatewayInternal []string `json:"gateway_internal,omitempty"`
	// PostgresURL is the ledger database.
	PostgresURL string `json:"postgres_url"`
	// RedisAddr is host:port.
	RedisAddr string `json:"redis_addr"`
	// Brokers are host:port bootstrap addresses.
	Brokers []string `json:"brokers"`
	// WorkerMetrics are the workers' Prometheus metrics URLs.
	WorkerMetrics []string `json:"worker_metrics"`
	// ShardPostgresURLs are the ledger databases of shards 1..N-1 of a
	// sharded stack (docs/sharding.md), PostgresURL being shard 0's; none
	// for one ledger. The audit of the stack reads the union of the shards.
	ShardPostgresURLs []string `json:"shard_postgres_urls,omitempty"`
}

// File is the stack file, <dir>/stack.json: what `up` started, for `down`,
// `stack`, `run`, `chaos` and `audit`. Its format is documented in README.md.
type File struct {
	Version    int          `json:"version"`
	Dir        string       `json:"dir"`
	Binary     string       `json:"binary"`
	Partitions int          `json:"partitions"`
	StartedAt  time.Time    `json:"started_at"`
	Endpoints  Endpoints    `json:"endpoints"`
	Components []*Component `json:"components"`
	// PostgresPrimary names the Postgres component that is primary after a
	// failover (see PrimaryName); empty means "postgres". Failovers lists
	// the failovers done (standby.go).
	PostgresPrimary string           `json:"postgres_primary,omitempty"`
	Failovers       []FailoverRecord `json:"failovers,omitempty"`
	// DailyDebitLimitMinor is the daily debit limit the stack gave its
	// gateways and workers (Config.DailyDebitLimitMinor); 0: none. The
	// audit judges limits-respected by it.
	DailyDebitLimitMinor int64 `json:"daily_debit_limit,omitempty"`
}

// Component returns the component called name, or an error listing the
// names there are.
func (f *File) Component(name string) (*Component, error) {
	names := make([]string, 0, len(f.Components))
	for _, component := range f.Components {
		if component.Name == name {
			return component, nil
		}
		names = append(names, component.Name)
	}
	return nil, fmt.Errorf("stack %s has no component %q (it has %s)", f.Dir, name, strings.Join(names, ", "))
}

// Load reads the stack file of dir. A missing file gives an error wrapping
// os.ErrNotExist.
func Load(dir string) (*File, error) {
	path := filepath.Join(dir, FileName)
	content, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no stack in %s (no %s; run 'ledgerproof up --dir %s'): %w", dir, FileName, dir, err)
		}
		return nil, fmt.Errorf("read stack file: %w", err)
	}
	var file File
	if err := json.Unmarshal(content, &file); err != nil {
		return nil, fmt.Errorf("read stack file %s: %w", path, err)
	}
	if file.Version != FileVersion {
		return nil, fmt.Errorf("stack file %s has version %d, this ledgerproof reads %d", path, file.Version, FileVersion)
	}
	return &file, nil
}

// save writes the stack file atomically (temporary file, fsync, rename).
func (f *File) save() error {
	content, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("write stack file: %w", err)
	}
	temporary, err := os.CreateTemp(f.Dir, FileName+".*.tmp")
	if err != nil {
		return fmt.Errorf("write stack file: %w", err)
	}
	defer os.Remove(temporary.Name())
	if _, err := temporary.Write(append(content, '\n')); err != nil {
		temporary.Close()
		return fmt.Errorf("write stack file: %w", err)
	}
	if err := temporary.Sync(); err != nil {
		temporary.Close()
		return fmt.Errorf("write stack file: %w", err)
	}
	if err := temporary.Close(); err != nil {
		return fmt.Errorf("write stack file: %w", err)
	}
	if err := os.Chmod(temporary.Name(), 0o644); err != nil {
		return fmt.Errorf("write stack file: %w", err)
	}
	if err := os.Rename(temporary.Name(), filepath.Join(f.Dir, FileName)); err != nil {
		return fmt.Errorf("write stack file: %w", err)
	}
	return nil
}

// withLock runs action holding the stack directory's lock.
func withLock(dir string, action func() error) error {
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock stack: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock stack: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return action()
}

// withComponentLock runs action holding the lock of one component of the
// stack in dir (a lock file of its own beside the stack's). Take it before
// the stack's lock, never while holding it.
func withComponentLock(dir, name string, action func() error) error {
	// No stack here, or no such component: say so as Load and Component do,
	// and leave no lock file behind (a name is never a path).
	if _, err := loadComponent(dir, name); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName+"."+name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s: %w", name, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", name, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return action()
}

// loadComponent reads the record of the component called name, holding the
// stack file's lock.
func loadComponent(dir, name string) (*Component, error) {
	var component *Component
	err := withLock(dir, func() error {
		file, err := Load(dir)
		if err != nil {
			return err
		}
		component, err = file.Component(name)
		return err
	})
	return component, err
}

// recordComponent replaces the record of one component in the stack file,
// leaving the others as they are now on disk (another operation may have
// changed them meanwhile).
func recordComponent(dir string, updated *Component) error {
	return withLock(dir, func() error {
		file, err := Load(dir)
		if err != nil {
			return err
		}
		for i, component := range file.Components {
			if component.Name == updated.Name {
				file.Components[i] = updated
				return file.save()
			}
		}
		return fmt.Errorf("stack %s has no component %q", dir, updated.Name)
	})
}

// UpResult is what Up did.
type UpResult struct {
	File *File
	// AlreadyRunning is true when the stack was running already and nothing
	// was started.
	AlreadyRunning bool
}

// Up starts the local stack described by config and returns once every
// component is ready; the processes run in their own sessions and outlive
// the caller. If the stack in config.Dir is already fully running, Up
// starts nothing and says so; if it is partly running, Up fails and names
// the components that are up and down. On failure, Up stops what it
// started (data and logs stay).
func Up(ctx context.Context, config Config) (*UpResult, error) {
	if config.Output == nil {
		config.Output = io.Discard
	}
	if err := config.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(config.Dir)
	if err != nil {
		return nil, fmt.Errorf("stack directory: %w", err)
	}
	if config.Binary == "" {
		if config.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the ledgerproof binary: %w", err)
		}
	}
	if config.Binary, err = filepath.Abs(config.Binary); err != nil {
		return nil, fmt.Errorf("ledgerproof binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("stack directory: %w", err)
	}
	var result *UpResult
	err = withLock(dir, func() error {
		existing, err := Load(dir)
		switch {
		case err == nil:
			var running, notRunning []string
			for _, component := range existing.Components {
				if component.Alive() {
					running = append(running, component.Name)
				} else {
					notRunning = append(notRunning, component.Name)
				}
			}
			if len(running) > 0 && len(notRunning) == 0 {
				result = &UpResult{File: existing, AlreadyRunning: true}
				return nil
			}
			if len(running) > 0 {
				return fmt.Errorf("stack in %s is half up: running %s; not running %s. Start the missing ones with 'ledgerproof stack --dir %s --action start --component NAME', or run 'ledgerproof down --dir %s' first",
					dir, strings.Join(running, ", "), strings.Join(notRunning, ", "), dir, dir)
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			return err
		}
		file, err := startStack(ctx, config, dir)
		result = &UpResult{File: file}
		return err
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// startStack starts every component in order, recording each in the stack
// file as soon as it runs, so `down` can stop a partly started stack.
func startStack(ctx context.Context, config Config, dir string) (*File, error) {
	file := &File{
		Version:    FileVersion,
		Dir:        dir,
		Binary:     config.Binary,
		Partitions: config.Partitions,
		StartedAt:  time.Now().UTC(),

		DailyDebitLimitMinor: config.DailyDebitLimitMinor,
	}
	components := plan(config, dir, file)
	for _, component := range components {
		if err := checkPortFree(component); err != nil {
			return nil, err
		}
	}
	binDir, err := PostgresBinDir(config.PostgresBinDir)
	if err != nil {
		return nil, err
	}
	postgresOptions := stackPostgresOptions(config, dir, binDir)
	// The components are recorded before any starts, so their states read
	// "stopped" until each runs.
	for _, component := range components {
		component.State = StateStopped
	}
	file.Components = components
	if err := file.save(); err != nil {
		return nil, err
	}
	fail := func(cause error) (*File, error) {
		for i := len(components) - 1; i >= 0; i-- {
			if components[i].Alive() {
				_ = components[i].Stop(DefaultStopTimeout)
			}
		}
		if err := file.save(); err != nil {
			return file, errors.Join(cause, err)
		}
		return file, cause
	}
	for _, component := range components {
		if component.Kind == KindPostgres {
			initContext, cancel := context.WithTimeout(ctx, 2*config.ReadyTimeout)
			var err error
			if component.Name == StandbyComponentName {
				fmt.Fprintf(config.Output, "%s: preparing %s\n", component.Name, component.DataDir)
				err = InitStandby(initContext, standbyPostgresOptions(config, dir, binDir), config.PostgresPort, component.LogFile)
			} else if s, isShard := shardIndex(component.Name); isShard {
				options := shardPostgresOptions(config, dir, binDir, s)
				fmt.Fprintf(config.Output, "%s: preparing %s\n", component.Name, options.DataDir)
				err = InitPostgres(initContext, options, component.LogFile)
			} else {
				fmt.Fprintf(config.Output, "postgres: preparing %s\n", postgresOptions.DataDir)
				err = InitPostgres(initContext, postgresOptions, component.LogFile)
			}
			cancel()
			if err != nil {
				return fail(err)
			}
		}
		if component.Kind == KindRedis || component.Kind == KindBroker {
			if err := os.MkdirAll(component.DataDir, 0o755); err != nil {
				return fail(fmt.Errorf("%s: %w", component.Name, err))
			}
		}
		if component.Kind == KindProxy {
			if err := writeProxyConfig(config, dir); err != nil {
				return fail(err)
			}
		}
		began := time.Now()
		startContext, cancel := context.WithTimeout(ctx, config.ReadyTimeout)
		err := component.Start(startContext)
		cancel()
		if saveError := file.save(); saveError != nil {
			err = errors.Join(err, saveError)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(config.Output, "%s: ready in %.1fs, PID %d, %s\n", component.Name, time.Since(began).Seconds(), component.PID, component.Endpoint)
		if component.Name == postgresSetupAfter(config) {
			setupContext, cancel := context.WithTimeout(ctx, config.ReadyTimeout)
			err := CreateDatabase(setupContext, PostgresURL(config.PostgresPort, "postgres"), "ledger")
			if err == nil && config.Migrate {
				err = migrate(setupContext, config, dir, file.Endpoints.PostgresURL, config.shardMember(0))
			}
			cancel()
			if err != nil {
				return fail(err)
			}
		}
		if s, isShard := shardIndex(component.Name); isShard {
			setupContext, cancel := context.WithTimeout(ctx, config.ReadyTimeout)
			err := CreateDatabase(setupContext, PostgresURL(config.postgresShardPort(s), "postgres"), "ledger")
			if err == nil && config.Migrate {
				err = migrate(setupContext, config, dir, component.Endpoint, config.shardMember(s))
			}
			cancel()
			if err != nil {
				return fail(fmt.Errorf("%s: %w", component.Name, err))
			}
		}
	}
	return file, nil
}

// stackPostgresOptions is the durable cluster of the local stack.
// WriteHeavySettings are the stack's Postgres settings for a write-heavy
// ledger: checkpoints at most every 15 minutes, by time, instead of every
// 1 GB of WAL (the default max_wal_size), which the pipeline writes in about
// 90 s at 1,750 TPS. Each checkpoint makes the next change of every page
// write the whole page into the WAL again (full_page_writes), so frequent
// checkpoints feed themselves: a 10-minute soak ran one checkpoint after
// the other and its p95 accept rose from 100 ms to 2 s (docs/performance.md,
// "Fifth pass"). Durability is unchanged: every commit is still flushed
// before it is acknowledged; what grows is the WAL replayed after a crash
// (at most max_wal_size) and the disk it takes.
var WriteHeavySettings = []string{"max_wal_size=8GB", "checkpoint_timeout=15min"}

func stackPostgresOptions(config Config, dir, binDir string) PostgresOptions {
	options := PostgresOptions{
		BinDir:    binDir,
		DataDir:   filepath.Join(dir, "postgres", "data"),
		SocketDir: filepath.Join(dir, "postgres", "run"),
		Port:      config.PostgresPort,
		OSUser:    PostgresOSUser(),
		Durable:   true,
		Settings:  append([]string{"max_connections=200", "shared_buffers=256MB"}, WriteHeavySettings...),
	}
	if config.PostgresStandby {
		options.Settings = append(options.Settings, primaryReplicationSettings()...)
	}
	options.Settings = append(options.Settings, config.PostgresSettings...)
	return options
}

// plan describes every component of the stack, in start order, and fills
// the file's endpoints.
func plan(config Config, dir string, file *File) []*Component {
	logs := filepath.Join(dir, "logs")
	postgresOptions := stackPostgresOptions(config, dir, config.PostgresBinDir)
	if postgresOptions.BinDir == "" {
		postgresOptions.BinDir, _ = PostgresBinDir("")
	}
	postgres := PostgresComponent(KindPostgres, postgresOptions, "ledger", filepath.Join(logs, "postgres.log"))
	postgresURL := postgres.Endpoint
	var standbys []*Component
	if config.PostgresStandby {
		standbys = append(standbys, standbyComponent(config, dir, postgresOptions.BinDir, logs))
		postgresURL = MultiHostPostgresURL("ledger", config.PostgresPort, config.standbyPort())
	}
	redis := RedisComponent(KindRedis, config.RedisPort, filepath.Join(dir, "redis"))
	redis.LogFile = filepath.Join(logs, "redis.log")
	brokerAddress := "127.0.0.1:" + strconv.Itoa(config.BrokerPort)
	brokerArgv := []string{config.Binary, "broker",
		"--listen", brokerAddress,
		"--data-dir", filepath.Join(dir, "broker"),
		"--partitions", strconv.Itoa(config.Partitions),
	}
	if config.BrokerSync {
		brokerArgv = append(brokerArgv, "--sync")
	}
	brokerArgv = append(brokerArgv, config.BrokerArgs...)
	broker := &Component{
		Name:       KindBroker,
		Kind:       KindBroker,
		Endpoint:   brokerAddress,
		Argv:       brokerArgv,
		Env:        config.Env,
		WorkDir:    dir,
		DataDir:    filepath.Join(dir, "broker"),
		LogFile:    filepath.Join(logs, "broker.log"),
		Ready:      Probe{Kind: ProbeKafka, Target: brokerAddress},
		StopSignal: "SIGTERM",
	}
	shardPostgres, shardURLs := shardPostgresComponents(config, dir, postgresOptions.BinDir)
	components := append(append(append([]*Component{postgres}, standbys...), shardPostgres...), redis, broker)
	file.Endpoints = Endpoints{
		PostgresURL:       postgresURL,
		RedisAddr:         redis.Endpoint,
		Brokers:           []string{brokerAddress},
		Gateways:          []string{},
		WorkerMetrics:     []string{},
		ShardPostgresURLs: shardURLs,
	}
	// Workers start before the gateways: a gateway is ready only once the
	// workers' consumer group has a member (gateway --workers-group). A
	// sharded stack has Workers workers per shard (shards.go).
	for s := 0; s < config.shards(); s++ {
		for i := 0; i < config.Workers; i++ {
			name := ShardWorkerName(s, i)
			metricsAddress := "127.0.0.1:" + strconv.Itoa(config.WorkerMetricsPort+s*config.Workers+i)
			argv := []string{config.Binary, "worker",
				"--postgres-url", postgresURL,
				"--redis-addr", redis.Endpoint,
				"--brokers", brokerAddress,
				"--partitions", strconv.Itoa(config.Partitions),
				"--name", name,
				"--group-instance-id", name,
				"--metrics-listen", metricsAddress,
			}
			if config.shards() > 1 {
				argv = append(argv, "--shard", strconv.Itoa(s))
				argv = append(argv, shardArgs(shardURLs)...)
			}
			argv = append(argv, seededBugArgs(config)...)
			argv = append(argv, dailyLimitArgs(config)...)
			components = append(components, &Component{
				Name:       name,
				Kind:       KindWorker,
				Endpoint:   "http://" + metricsAddress + "/metrics",
				Argv:       append(argv, config.WorkerArgs...),
				Env:        config.Env,
				WorkDir:    dir,
				LogFile:    filepath.Join(logs, name+".log"),
				Ready:      Probe{Kind: ProbeHTTP, Target: "http://" + metricsAddress + "/readyz"},
				StopSignal: "SIGTERM",
			})
			file.Endpoints.WorkerMetrics = append(file.Endpoints.WorkerMetrics, "http://"+metricsAddress+"/metrics")
		}
	}
	components = append(components, settlementComponents(config, dir, postgresURL, brokerAddress)...)
	components = append(components, shardRelayComponents(config, dir, shardURLs, brokerAddress)...)
	for i := 0; i < config.Gateways; i++ {
		name := KindGateway + "-" + strconv.Itoa(i)
		address := "127.0.0.1:" + strconv.Itoa(config.GatewayPort+i)
		internalAddress := "127.0.0.1:" + strconv.Itoa(config.gatewayInternalPort()+i)
		argv := []string{config.Binary, "gateway",
			"--listen", address,
			"--internal-listen", internalAddress,
			"--postgres-url", postgresURL,
			"--redis-addr", redis.Endpoint,
			"--brokers", brokerAddress,
			"--partitions", strconv.Itoa(config.Partitions),
			"--name", name,
		}
		argv = append(argv, shardArgs(shardURLs)...)
		if config.Workers == 0 {
			// No worker of the stack will join the group (the naive apply
			// mode, or workers run elsewhere): readiness cannot wait for one.
			argv = append(argv, "--workers-group", "")
		}
		argv = append(argv, TestRigGatewayArgs...)
		argv = append(argv, seededBugArgs(config)...)
		argv = append(argv, dailyLimitArgs(config)...)
		components = append(components, &Component{
			Name: name,
			Kind: KindGateway,
			// The internal listener: what the harness itself reaches (the
			// metrics scraper, the crash points); clients use the public
			// API, Endpoints.Gateways.
			Endpoint:   "http://" + internalAddress,
			Argv:       append(argv, config.GatewayArgs...),
			Env:        config.Env,
			WorkDir:    dir,
			LogFile:    filepath.Join(logs, name+".log"),
			Ready:      Probe{Kind: ProbeHTTP, Target: "http://" + internalAddress + "/readyz"},
			StopSignal: "SIGTERM",
		})
		file.Endpoints.Gateways = append(file.Endpoints.Gateways, "http://"+address)
		file.Endpoints.GatewayInternal = append(file.Endpoints.GatewayInternal, "http://"+internalAddress)
	}
	components = routeThroughProxies(config, dir, components)
	for _, component := range components {
		component.NewSession = true
	}
	return components
}

// seededBugArgs are the seeded-bug flags given to gateways and workers alike.
func seededBugArgs(config Config) []string {
	var args []string
	for _, bug := range config.SeededBugs {
		args = append(args, "--seeded-bug", bug)
	}
	if config.UnsafeAllowSeededBugs {
		args = append(args, "--unsafe-allow-seeded-bugs")
	}
	return args
}

// dailyLimitArgs gives a gateway or a worker the stack's daily debit limit:
// both get the same value, the workers' hard check and the gateways' soft
// one.
func dailyLimitArgs(config Config) []string {
	if config.DailyDebitLimitMinor == 0 {
		return nil
	}
	return []string{"--daily-debit-limit", strconv.FormatInt(config.DailyDebitLimitMinor, 10)}
}

// migrate runs `<binary> migrate --postgres-url URL` to completion, with
// --shard member when member is not empty (a shard of a sharded stack).
func migrate(ctx context.Context, config Config, dir, postgresURL, member string) error {
	logFile := filepath.Join(dir, "logs", "migrate.log")
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer log.Close()
	argv := []string{config.Binary, "migrate", "--postgres-url", postgresURL}
	if member != "" {
		argv = append(argv, "--shard", member)
	}
	fmt.Fprintf(log, "\n==== %s ledgerproof runs: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(argv, " "))
	command := exec.CommandContext(ctx, argv[0], argv[1:]...)
	command.Env = childEnvironment(config.Env)
	command.Dir = dir
	command.Stdout, command.Stderr = log, log
	began := time.Now()
	if err := command.Run(); err != nil {
		return fmt.Errorf("migrate: %w; log %s:\n%s", err, logFile, RunLogExcerpt(logFile))
	}
	if member != "" {
		fmt.Fprintf(config.Output, "migrate (shard %s): done in %.1fs\n", member, time.Since(began).Seconds())
		return nil
	}
	fmt.Fprintf(config.Output, "migrate: done in %.1fs\n", time.Since(began).Seconds())
	return nil
}

// componentPort is the TCP port a component listens on, from its probe's
// target (a URL or host:port); 0 if it has none.
func componentPort(component *Component) int {
	target := component.Ready.Target
	if strings.Contains(target, "://") {
		parsed, err := url.Parse(target)
		if err != nil {
			return 0
		}
		target = parsed.Host
	}
	_, port, err := net.SplitHostPort(target)
	if err != nil {
		return 0
	}
	number, _ := strconv.Atoi(port)
	return number
}

// checkPortFree fails clearly when a port the component listens on is
// taken (its probe's, and a gateway's public --listen), so a probe never
// mistakes another server for ours.
func checkPortFree(component *Component) error {
	ports := []int{componentPort(component)}
	if component.Kind == KindGateway {
		for i := 0; i+1 < len(component.Argv); i++ {
			if component.Argv[i] == "--listen" {
				ports = append(ports, componentPort(&Component{Ready: Probe{Target: component.Argv[i+1]}}))
			}
		}
	}
	for _, port := range ports {
		if port == 0 {
			continue
		}
		listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("%s: port %d on 127.0.0.1 is in use (another stack? pick other ports with the --*-port flags): %w", component.Name, port, err)
		}
		if err := listener.Close(); err != nil {
			return err
		}
	}
	return nil
}

// DownOptions tune Down.
type DownOptions struct {
	// Purge removes the stack directory (data and logs) once everything is
	// stopped. Default false: data is kept for the next `up`.
	Purge bool
	// StopTimeout is how long each component gets to exit after its stop
	// signal before SIGKILL. Default DefaultStopTimeout.
	StopTimeout time.Duration
	// Output receives progress lines. Default io.Discard.
	Output io.Writer
}

// downOrder is the order Down stops components in: the clients of a
// service before the service.
var downOrder = []string{KindGateway, KindWorker, KindRelay, KindSettler, KindProxy, KindBroker, KindRedis, KindPostgres}

// Down stops every component of the stack in dir (gateways, workers, the
// fault proxy, broker, redis, postgres), signalling only processes whose
// identity (PID and start time) matches the stack file. A directory without a stack file is not an
// error (nothing to stop) unless Purge is asked, which then just removes it.
func Down(ctx context.Context, dir string, options DownOptions) error {
	if options.Output == nil {
		options.Output = io.Discard
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(options.Output, "no stack in %s\n", dir)
		if options.Purge {
			return os.RemoveAll(dir)
		}
		return nil
	}
	var stopErrors []error
	err := withLock(dir, func() error {
		file, err := Load(dir)
		if err != nil {
			return err
		}
		for _, kind := range downOrder {
			for _, component := range file.Components {
				if component.Kind != kind {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				wasAlive := component.Alive()
				if err := component.Stop(options.StopTimeout); err != nil {
					stopErrors = append(stopErrors, err)
					continue
				}
				if wasAlive {
					fmt.Fprintf(options.Output, "%s: stopped (PID %d)\n", component.Name, component.PID)
				}
			}
		}
		return file.save()
	})
	if err := errors.Join(append(stopErrors, err)...); err != nil {
		return fmt.Errorf("down %s: %w", dir, err)
	}
	if options.Purge {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("purge %s: %w", dir, err)
		}
		fmt.Fprintf(options.Output, "removed %s\n", dir)
	}
	return nil
}

// Actions on one component, for Operate.
const (
	ActionStop    = "stop"
	ActionKill    = "kill"
	ActionStart   = "start"
	ActionRestart = "restart"
)

// Operate applies action (stop, kill, start, restart) to the component called
// name in the stack in dir and records the result in the stack file. Start
// and restart wait for readiness, bounded by ctx (DefaultReadyTimeout if it
// has no deadline). The stack file is locked only to read and to record, so
// operations on different components may overlap (a chaos plan may kill the
// broker while Postgres restarts); operations on one component come one
// after the other (operateIf).
func Operate(ctx context.Context, dir, name, action string) (*Component, error) {
	component, _, err := operateIf(ctx, dir, name, action, nil)
	return component, err
}

// StartIfExited starts a component that exited on its own (recorded
// running or failed, its process gone), as a supervisor restarts a process,
// and reports whether it did: a component that is alive again, or that an
// operation killed or stopped since the caller looked, is left as it is.
// The check and the start hold the component's lock, so a fault plan's
// kill or start of the same component comes wholly before or after.
func StartIfExited(ctx context.Context, dir, name string) (*Component, bool, error) {
	return operateIf(ctx, dir, name, ActionStart, exitedOnItsOwn)
}

// exitedOnItsOwn: recorded running or failed, and its process gone.
func exitedOnItsOwn(component *Component) bool {
	return !component.Alive() && (component.State == StateRunning || component.State == StateFailed)
}

// operateIf runs action on the component called name if when (nil: always)
// holds of it as recorded, and records the result. It holds the
// component's own lock throughout: two operations on one component (a
// fault plan's start and a supervisor's restart) would otherwise both read
// it dead and both start a process, or a kill would signal the process a
// start was replacing and record the new one killed while it runs. Other
// components' operations go on meanwhile; the stack file's lock is taken
// only to read and to record.
func operateIf(ctx context.Context, dir, name, action string, when func(*Component) bool) (*Component, bool, error) {
	switch action {
	case ActionStop, ActionKill, ActionStart, ActionRestart:
	default:
		return nil, false, fmt.Errorf("unknown action %q (want stop, kill, start or restart)", action)
	}
	var component *Component
	var done bool
	err := withComponentLock(dir, name, func() error {
		var err error
		if component, err = loadComponent(dir, name); err != nil {
			return err
		}
		if when != nil && !when(component) {
			return nil
		}
		done = true
		var actionError error
		switch action {
		case ActionStop:
			actionError = component.Stop(DefaultStopTimeout)
		case ActionKill:
			actionError = component.Kill()
		case ActionStart:
			actionError = component.Start(ctx)
		case ActionRestart:
			actionError = component.Restart(ctx, DefaultStopTimeout)
		}
		if err := recordComponent(dir, component); err != nil {
			return errors.Join(actionError, err)
		}
		return actionError
	})
	return component, done, err
}

// Stop stops one component cleanly (its stop signal, then SIGKILL after
// DefaultStopTimeout).
func Stop(ctx context.Context, dir, name string) (*Component, error) {
	return Operate(ctx, dir, name, ActionStop)
}

// Kill kills one component with SIGKILL (Postgres: an immediate crash).
func Kill(ctx context.Context, dir, name string) (*Component, error) {
	return Operate(ctx, dir, name, ActionKill)
}

// Start starts one component again with its recorded argv, env and log file
// and waits until it is ready.
func Start(ctx context.Context, dir, name string) (*Component, error) {
	return Operate(ctx, dir, name, ActionStart)
}

// Restart stops then starts one component.
func Restart(ctx context.Context, dir, name string) (*Component, error) {
	return Operate(ctx, dir, name, ActionRestart)
}

// Status loads the stack file of dir; each component's Status method then
// tells its live state.
func Status(dir string) (*File, error) {
	return Load(dir)
}
