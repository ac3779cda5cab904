package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Topic is the commands topic. Default DefaultTopic.
	Topic string
	// Group is the consumer group. Default "ledger-workers".
	Group string
	// ClientID names the client in broker logs. Default "ledger-worker".
	ClientID string
	// StartOffsets is called when partitions are assigned, before any fetch,
	// and returns where each partition must resume: the next offset stored
	// in Postgres with the postings. Required. Kafka's own committed offsets
	// are only informational (for lag tools).
	StartOffsets func(ctx context.Context, partitions []int32) (map[int32]int64, error)
	// SessionTimeout is how long the group waits for a silent worker before
	// giving its partitions to another. Default 10s, so a killed worker's
	// partitions move quickly in drills.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long a rebalance waits for members to rejoin.
	// Default 20s (franz-go's is 60s): a killed member that never rejoins
	// holds every partition of the group still for that long.
	RebalanceTimeout time.Duration
	// InstanceID, when set, makes the member static (KIP-345): a worker
	// restarted with the same id takes its partitions back at once, with no
	// rebalance and no wait for the old session to expire. Ids must be
	// unique per live worker; default none (dynamic membership).
	InstanceID string
	// BrokerAddressMap redirects connections to advertised broker addresses
	// (through a fault proxy). Default none: dial them as advertised.
	BrokerAddressMap BrokerAddressMap
}

// Consumer reads the commands topic as a member of a consumer group. Between
// Poll and Done no rebalance can take a partition away. A caller that goes on
// applying a partition's records after Done registers a release handler
// (SetReleaseHandler): a rebalance then waits until it stopped applying the
// partitions it loses, so a batch is always applied by the worker that owns
// its partition (and the offset row in Postgres fences a worker that lost it
// anyway).
type Consumer struct {
	client *kgo.Client
	topic  string
	// release is the handler SetReleaseHandler registered, or nil.
	release atomic.Pointer[func(partitions []int32)]
	// committedAt is when Done last committed offsets to Kafka (Done's
	// caller's goroutine only).
	committedAt time.Time
}

// commitInterval is the least time between two commits of offsets to Kafka:
// they only inform lag tools, and the worker calls Done after every poll.
const commitInterval = time.Second

// Record is one consumed record.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time
}

// PartitionRecords is a partition's records from one poll, in offset order,
// with the partition's high watermark for lag.
type PartitionRecords struct {
	Partition     int32
	Records       []Record
	HighWatermark int64
}

// NewConsumer joins the group.
func NewConsumer(config ConsumerConfig) (*Consumer, error) {
	if len(config.Brokers) == 0 {
		return nil, errors.New("kafka consumer: at least one broker is required")
	}
	if config.StartOffsets == nil {
		return nil, errors.New("kafka consumer: StartOffsets is required")
	}
	if config.Topic == "" {
		config.Topic = DefaultTopic
	}
	if config.Group == "" {
		config.Group = "ledger-workers"
	}
	if config.ClientID == "" {
		config.ClientID = "ledger-worker"
	}
	if config.SessionTimeout == 0 {
		config.SessionTimeout = 10 * time.Second
	}
	if config.RebalanceTimeout == 0 {
		config.RebalanceTimeout = 20 * time.Second
	}
	topic := config.Topic
	consumer := &Consumer{topic: topic}
	adjust := func(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
		partitions := make([]int32, 0, len(assigned[topic]))
		for partition := range assigned[topic] {
			partitions = append(partitions, partition)
		}
		if len(partitions) == 0 {
			return assigned, nil
		}
		// Postgres may be restarting: retry until the rebalance context
		// ends rather than start a partition at a guessed offset.
		var offsets map[int32]int64
		var err error
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
			offsets, err = config.StartOffsets(ctx, partitions)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("start offsets: %w", err)
			case <-time.After(backoff):
			}
		}
		for _, partition := range partitions {
			next, ok := offsets[partition]
			if !ok {
				return nil, fmt.Errorf("start offsets: none for partition %d", partition)
			}
			assigned[topic][partition] = kgo.NewOffset().At(next).WithEpoch(-1)
		}
		return assigned, nil
	}
	options := []kgo.Opt{
		kgo.SeedBrokers(config.Brokers...),
		kgo.ClientID(config.ClientID),
		kgo.ConsumerGroup(config.Group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(adjust),
		kgo.SessionTimeout(config.SessionTimeout),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RebalanceTimeout(config.RebalanceTimeout),
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.OnPartitionsRevoked(consumer.released),
		kgo.OnPartitionsLost(consumer.released),
	}
	if config.InstanceID != "" {
		options = append(options, kgo.InstanceID(config.InstanceID))
	}
	client, err := kgo.NewClient(withAddressMap(options, config.BrokerAddressMap)...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	consumer.client = client
	return consumer, nil
}

// SetReleaseHandler registers release, called with the partitions of the
// topic this consumer stops owning (revoked by a rebalance, or lost when its
// membership expired) before the rebalance may give them to another
// consumer: release must return only once nothing applies them any more.
func (c *Consumer) SetReleaseHandler(release func(partitions []int32)) {
	c.release.Store(&release)
}

// released is the client's revoke and lost callback. A released partition
// is resumed too: paused partitions stay paused across rebalances, and one
// assigned again must be fetched.
func (c *Consumer) released(_ context.Context, client *kgo.Client, partitions map[string][]int32) {
	owned := partitions[c.topic]
	if len(owned) == 0 {
		return
	}
	if release := c.release.Load(); release != nil {
		(*release)(owned)
	}
	client.ResumeFetchPartitions(map[string][]int32{c.topic: owned})
}

// Pause stops fetching partition (records already polled stay with the
// caller); a paused partition's buffered records are dropped, not skipped:
// fetching resumes after the last record Poll returned.
func (c *Consumer) Pause(partition int32) {
	c.client.PauseFetchPartitions(map[string][]int32{c.topic: {partition}})
}

// Resume fetches partition again after Pause.
func (c *Consumer) Resume(partition int32) {
	c.client.ResumeFetchPartitions(map[string][]int32{c.topic: {partition}})
}

// Poll waits for records (at most maxRecords) until ctx ends and returns
// them grouped by partition. Call Done after the records are applied.
func (c *Consumer) Poll(ctx context.Context, maxRecords int) ([]PartitionRecords, error) {
	return pollRecords(ctx, c.client, maxRecords, "kafka consumer")
}

// pollRecords polls client for records (at most maxRecords) until ctx ends
// and returns them grouped by partition, in offset order; the first fetch
// error other than ctx's end comes with them. who names the client in
// errors.
func pollRecords(ctx context.Context, client *kgo.Client, maxRecords int, who string) ([]PartitionRecords, error) {
	fetches := client.PollRecords(ctx, maxRecords)
	if fetches.IsClientClosed() {
		return nil, errors.New(who + ": closed")
	}
	var fetchError error
	fetches.EachError(func(topic string, partition int32, err error) {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && fetchError == nil {
			fetchError = fmt.Errorf("fetch %s/%d: %w", topic, partition, err)
		}
	})
	var result []PartitionRecords
	fetches.EachPartition(func(partition kgo.FetchTopicPartition) {
		if len(partition.Records) == 0 {
			return
		}
		records := make([]Record, len(partition.Records))
		for i, record := range partition.Records {
			records[i] = Record{Partition: record.Partition, Offset: record.Offset, Key: record.Key, Value: record.Value, Timestamp: record.Timestamp}
		}
		result = append(result, PartitionRecords{Partition: partition.Partition, Records: records, HighWatermark: partition.HighWatermark})
	})
	return result, fetchError
}

// Done lets a pending rebalance proceed and, best effort and at most every
// commitInterval, commits the polled offsets to Kafka so lag tools see
// progress. Postgres holds the real offset (the records polled may still be
// waiting to be applied); Kafka's committed offsets are never read back.
func (c *Consumer) Done(ctx context.Context) {
	if time.Since(c.committedAt) >= commitInterval {
		commitContext, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = c.client.CommitUncommittedOffsets(commitContext)
		cancel()
		c.committedAt = time.Now()
	}
	c.client.AllowRebalance()
}

// Ping checks a broker answers.
func (c *Consumer) Ping(ctx context.Context) error { return c.client.Ping(ctx) }

// Close leaves the group.
func (c *Consumer) Close() { c.client.Close() }
