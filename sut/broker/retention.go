package broker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Retention (Config.Retention) in kfake, pinned version as above: the
// broker-level config log.retention.ms is the retention of every topic
// without its own retention.ms, and Cluster.ApplyRetention deletes, in every
// partition, the batches whose newest record's timestamp is at least that
// old: the partition's log start offset moves past them, their index entries
// leave memory and a segment file whose batches are all gone is removed.
// kfake applies retention by itself only on topics with a topic-level
// retention config, so the broker calls ApplyRetention on a ticker.
const (
	// MinimumRetention is the shortest positive Config.Retention. A shorter
	// one would delete records a healthy consumer has not polled yet (a
	// worker's batch linger and a Postgres commit take tens of
	// milliseconds, a consumer group's rebalance seconds).
	MinimumRetention = time.Second

	// RetentionSegmentBytes is the default segment size with a retention:
	// small enough that expired records leave the disk soon after they
	// leave memory (at 300 bytes a record, a partition receiving 100
	// records a second fills one in about five minutes), large enough that
	// rolling segments costs nothing measurable.
	RetentionSegmentBytes int64 = 8 << 20

	// MinimumSegmentBytes is the smallest Config.SegmentBytes, Kafka's own
	// lower bound of segment.bytes.
	MinimumSegmentBytes int64 = 1 << 20

	// maximumRetentionCheck bounds the time between two retention passes,
	// as Kafka's log.retention.check.interval.ms (5 minutes) does.
	maximumRetentionCheck = 5 * time.Minute
	// minimumRetentionCheck bounds how often a pass runs: each walks the
	// index of every partition inside the cluster's single run loop.
	minimumRetentionCheck = 100 * time.Millisecond
)

// validateRetention rejects a retention or segment size the broker cannot
// honour.
func validateRetention(retention time.Duration, segmentBytes int64) error {
	switch {
	case retention < 0:
		return fmt.Errorf("broker config: retention %s is negative (0 keeps every record)", retention)
	case retention > 0 && retention < MinimumRetention:
		return fmt.Errorf("broker config: retention %s is below the minimum %s (0 keeps every record)", retention, MinimumRetention)
	case segmentBytes < 0 || (segmentBytes > 0 && segmentBytes < MinimumSegmentBytes):
		return fmt.Errorf("broker config: segment size %d bytes is below the minimum %d (0: the default)", segmentBytes, MinimumSegmentBytes)
	case segmentBytes > 1<<30:
		return fmt.Errorf("broker config: segment size %d bytes is above 1 GiB", segmentBytes)
	}
	return nil
}

// retentionOptions are the cluster options of a retention and a segment
// size (none when both are zero: kfake's defaults, nothing is deleted).
func retentionOptions(retention time.Duration, segmentBytes int64) []kfake.Opt {
	configs := map[string]string{}
	if retention > 0 {
		configs["log.retention.ms"] = strconv.FormatInt(retention.Milliseconds(), 10)
	}
	if segmentBytes > 0 {
		configs["log.segment.bytes"] = strconv.FormatInt(segmentBytes, 10)
	}
	if len(configs) == 0 {
		return nil
	}
	return []kfake.Opt{kfake.BrokerConfigs(configs)}
}

// retentionCheckInterval is the time between two retention passes: a tenth
// of the retention, so a record outlives it by at most 10%, within
// [minimumRetentionCheck, maximumRetentionCheck].
func retentionCheckInterval(retention time.Duration) time.Duration {
	return min(maximumRetentionCheck, max(minimumRetentionCheck, retention/10))
}

// enforceRetention applies the retention at once (a reloaded data directory
// may hold expired records) and then every check until ctx
// ends; the returned channel is closed when it has stopped, so the cluster
// is closed only after the last pass. With no retention it does nothing.
func enforceRetention(ctx context.Context, cluster *kfake.Cluster, retention, check time.Duration) <-chan struct{} {
	stopped := make(chan struct{})
	if retention <= 0 {
		close(stopped)
		return stopped
	}
	go func() {
		defer close(stopped)
		cluster.ApplyRetention()
		ticker := time.NewTicker(check)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				cluster.ApplyRetention()
			}
		}
	}()
	return stopped
}
