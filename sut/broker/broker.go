// Package broker runs the local Kafka-protocol broker of the reference
// system: a single-node github.com/twmb/franz-go/pkg/kfake cluster with a
// data directory, so machines without Kafka (CI, laptops, the local stack)
// still run the real producer and consumer code over the Kafka wire protocol,
// and a broker killed mid-run restarts with its topics, records and offsets.
//
// Durability contract (verified in kfake's persist.go and data.go, pinned
// version v0.0.0-20260918054303-01f206a7e32c):
//
//   - A produced batch is written to its partition's segment file inside the
//     cluster's single run loop before the produce response is built. A record
//     the broker acknowledged is therefore in the OS page cache and survives
//     SIGKILL of the process. With Sync, segment and index files are fsynced
//     per batch as well, so acknowledged records also survive a machine crash.
//   - topics.json is rewritten on every topic creation and meta.json is written
//     when a data directory is first initialised, so a cluster killed before
//     its first orderly shutdown still reloads. On restart, partitions whose
//     snapshot.json (written only at orderly shutdown) does not match the
//     segment files are rebuilt by scanning every segment; torn tail batches
//     fail their CRC and are dropped.
//   - Group offsets are appended to groups.log as they are committed.
//   - Idempotent-producer sequence windows are saved only at orderly
//     shutdown. After SIGKILL the broker accepts any sequence from a producer
//     it no longer knows, so a batch that was written but whose
//     acknowledgement was lost can be appended twice when the client retries.
//     Acknowledged records are never lost; duplicates in the log are possible
//     and are absorbed by the consumer's idempotency keys.
//   - Retention (Config.Retention, retention.go) is the one exception, and
//     it is off by default: with it, a record older than the retention is
//     deleted whether or not a consumer has read it.
//
// Memory: records live in the segment files (the OS page cache), not in the
// process; the broker keeps an index entry per batch in memory, about 85
// bytes for a batch of one record (measured: TestRetentionMemory), so
// without a retention its memory grows with every batch ever produced.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	// DefaultListen is the address the broker listens on when Config.Listen
	// is empty: loopback, on a fixed port outside Kafka's usual 9092 so a
	// real Kafka on the same machine does not collide with it.
	DefaultListen = "127.0.0.1:19092"

	// DefaultTopic is the topic the broker creates when Config.Topic is
	// empty. It is the same name as kafka.DefaultTopic (a test in sut/kafka
	// asserts they agree); it is repeated here so the broker process does not
	// depend on the producer/consumer adapter.
	DefaultTopic = "ledger.commands"

	// DefaultPartitions is the partition count of the topic when
	// Config.Partitions is zero, the same as kafka.DefaultPartitions.
	DefaultPartitions int32 = 16

	// maxPartitions bounds Config.Partitions. A worker owns a partition, so a
	// count above this is a typing mistake rather than a design.
	maxPartitions int32 = 4096

	// clusterID names the cluster in metadata responses when a data
	// directory is initialised; a restarted broker keeps the persisted one.
	clusterID = "ledgerproof-local"

	// lockFileName is the file in the data directory that the running broker
	// holds an exclusive flock on. kfake does not guard its data directory,
	// and two clusters writing the same segment files would corrupt them.
	// The kernel drops the lock when the process dies, even by SIGKILL, so a
	// killed broker never leaves a stale lock behind.
	lockFileName = "ledgerproof-broker.lock"
)

// Config configures the broker. The zero value of every field but DataDir
// selects its documented default.
type Config struct {
	// Listen is the host:port to listen on, overriding the default
	// DefaultListen (127.0.0.1:19092). The host must be a loopback address
	// (or "localhost"): the broker advertises its listener's address in
	// metadata, so a wildcard address such as 0.0.0.0 would be advertised to
	// clients as an address they cannot dial, and this broker has no
	// authentication to expose beyond the machine. Port 0 picks a free port,
	// which is logged; a broker that must be restarted on the same address
	// needs a fixed port.
	Listen string

	// DataDir is the directory holding the broker's topics, records, group
	// offsets and producer state. It is required: a broker without one would
	// lose everything when killed, which defeats its purpose. It is created
	// if missing and reloaded if it holds a previous run's state.
	DataDir string

	// Sync fsyncs the segment and index files after every produced batch,
	// overriding the default false. Without it a record acknowledged to a
	// producer survives the broker process being killed (it is in the OS page
	// cache) but not the machine crashing, which matches Kafka's own default
	// (log.flush.interval.messages=MAX). With it, every acknowledged record is
	// on disk, at the cost of produce throughput.
	Sync bool

	// Topic is the topic the broker makes sure exists at start, overriding
	// the default DefaultTopic ("ledger.commands"). Auto creation of topics
	// is disabled, so producers cannot create a misspelled topic by accident.
	Topic string

	// Partitions is the partition count of Topic, overriding the default
	// DefaultPartitions (16). It is also the count used for topics created
	// with a partition count of -1. If Topic already exists in DataDir with a
	// different count, Run fails rather than silently re-partitioning keys.
	Partitions int32

	// Logger receives the broker's lifecycle events and kfake's warnings and
	// errors, overriding the default of discarding them. kfake's per-request
	// informational logs are passed at debug level.
	Logger *slog.Logger

	// Retention is how long the broker keeps a record, on every topic,
	// counted from the record's timestamp (retention.go). Default 0: every
	// record is kept for as long as the data directory lives, as Kafka
	// would with retention.ms=-1. Keeping everything is the default because
	// chaos drills stop workers for as long as a plan says, and a record
	// deleted before a worker read it is money lost; the audit itself reads
	// only the topics' end offsets. A positive Retention (at least
	// MinimumRetention) bounds the broker's memory and disk: a record not
	// consumed within it is deleted unread, which the audit reports as a
	// durability violation (an acknowledged operation missing from the
	// ledger).
	Retention time.Duration

	// SegmentBytes is the size at which a partition's segment file is
	// closed and a new one started; retention deletes a segment file only
	// once every record in it has expired. Default 0: kfake's (and Kafka's)
	// 100 MiB without Retention, RetentionSegmentBytes (8 MiB) with it, so
	// the disk holds at most one segment per partition beyond what the
	// retention keeps. At least MinimumSegmentBytes (1 MiB).
	SegmentBytes int64

	// retentionCheck overrides retentionCheckInterval(Retention), so a test
	// can keep records for an hour and still see a pass soon.
	retentionCheck time.Duration
}

// withDefaults returns cfg with every empty field set to its default.
func (cfg Config) withDefaults() Config {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SegmentBytes == 0 && cfg.Retention > 0 {
		cfg.SegmentBytes = RetentionSegmentBytes
	}
	return cfg
}

// validate rejects a configuration the broker cannot run with. It expects
// the defaults to have been applied.
func (cfg Config) validate() error {
	if cfg.DataDir == "" {
		return errors.New("broker config: data directory is required (a broker without one loses everything when killed)")
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker config: listen address %q: %w", cfg.Listen, err)
	}
	if !isLoopback(host) {
		return fmt.Errorf("broker config: listen address %q: host must be a loopback address such as 127.0.0.1 (the broker advertises its listener address and has no authentication)", cfg.Listen)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("broker config: listen address %q: %w", cfg.Listen, err)
	}
	if cfg.Partitions < 1 || cfg.Partitions > maxPartitions {
		return fmt.Errorf("broker config: partitions %d out of range [1, %d]", cfg.Partitions, maxPartitions)
	}
	if cfg.Topic == "" {
		return errors.New("broker config: topic is empty")
	}
	return validateRetention(cfg.Retention, cfg.SegmentBytes)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run starts the broker, makes sure Config.Topic exists with
// Config.Partitions partitions, logs the address it listens on, and serves
// until ctx is done. It then shuts the cluster down in order, which writes the
// snapshots that make the next start fast, and returns nil. It returns an
// error if the configuration is invalid, the address or data directory is in
// use, the data directory cannot be loaded, or the topic exists with another
// partition count.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	logger := cfg.Logger

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("broker: create data directory: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	// We listen ourselves instead of letting kfake do it, because kfake
	// always listens on 127.0.0.1; this way "localhost" and ::1 work too, and
	// a busy port is reported before any state is loaded.
	listener, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker: listen on %s: %w", cfg.Listen, err)
	}
	listenerUsed := false
	options := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if listenerUsed {
				return nil, errors.New("broker: kfake asked for a second listener of a single-node cluster")
			}
			listenerUsed = true
			return listener, nil
		}),
		kfake.DataDir(cfg.DataDir),
		kfake.ClusterID(clusterID),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		// Seeding creates the topic on a fresh data directory before the
		// listener accepts connections; ensureTopic covers a reloaded one.
		kfake.SeedTopics(cfg.Partitions, cfg.Topic),
		kfake.WithLogger(slogAdapter{logger}),
	}
	if cfg.Sync {
		options = append(options, kfake.SyncWrites())
	}
	options = append(options, retentionOptions(cfg.Retention, cfg.SegmentBytes)...)
	cluster, err := kfake.NewCluster(options...)
	if err != nil {
		listener.Close()
		return fmt.Errorf("broker: start cluster in %s: %w", cfg.DataDir, err)
	}

	created, err := ensureTopic(cluster, cfg.Topic, cfg.Partitions)
	if err != nil {
		cluster.Close()
		return err
	}
	addresses := cluster.ListenAddrs()
	if len(addresses) != 1 {
		cluster.Close()
		return fmt.Errorf("broker: single-node cluster listens on %d addresses: %v", len(addresses), addresses)
	}
	logger.Info("broker listening",
		"address", addresses[0],
		"data_dir", cfg.DataDir,
		"sync", cfg.Sync,
		"topic", cfg.Topic,
		"partitions", cfg.Partitions,
		"topic_created", created,
		"retention", cfg.Retention,
	)

	check := cfg.retentionCheck
	if check == 0 {
		check = retentionCheckInterval(cfg.Retention)
	}
	retained := enforceRetention(ctx, cluster, cfg.Retention, check)
	<-ctx.Done()
	logger.Info("broker stopping", "address", addresses[0])
	<-retained
	cluster.Close()
	logger.Info("broker stopped", "address", addresses[0])
	return nil
}

// ensureTopic creates topic with partitions partitions unless it exists. A
// topic reloaded from the data directory with another partition count is an
// error: keys would map to different partitions than the ones their earlier
// commands are in, breaking per-account ordering. It reports whether it
// created the topic (it does not when SeedTopics or the data directory
// already did).
func ensureTopic(cluster *kfake.Cluster, topic string, partitions int32) (created bool, err error) {
	existing := cluster.PartitionInfos(topic)
	if existing == nil {
		if err := cluster.CreateTopic(topic, partitions, nil); err != nil {
			return false, fmt.Errorf("broker: create topic %q with %d partitions: %w", topic, partitions, err)
		}
		existing = cluster.PartitionInfos(topic)
		created = true
	}
	if int32(len(existing)) != partitions {
		return false, fmt.Errorf("broker: topic %q exists with %d partitions, configured %d; use the configured count or a new data directory",
			topic, len(existing), partitions)
	}
	return created, nil
}

// lockDataDir takes an exclusive, non-blocking flock on a file in dir and
// returns the function that releases it.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFileName)
	file, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("broker: open lock file: %w", err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("broker: data directory %s is in use by another broker", dir)
		}
		return nil, fmt.Errorf("broker: lock data directory %s: %w", dir, err)
	}
	return func() {
		syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
		file.Close()
	}, nil
}

// slogAdapter passes kfake's log lines to a slog.Logger. kfake logs every
// request at its info level, so that level maps to slog's debug level.
type slogAdapter struct{ logger *slog.Logger }

func (a slogAdapter) Logf(level kfake.LogLevel, format string, args ...any) {
	var slogLevel slog.Level
	switch level {
	case kfake.LogLevelError:
		slogLevel = slog.LevelError
	case kfake.LogLevelWarn:
		slogLevel = slog.LevelWarn
	case kfake.LogLevelInfo:
		slogLevel = slog.LevelDebug
	default:
		slogLevel = slog.LevelDebug - 4
	}
	ctx := context.Background()
	if !a.logger.Enabled(ctx, slogLevel) {
		return
	}
	a.logger.Log(ctx, slogLevel, fmt.Sprintf(format, args...), "component", "kfake")
}
