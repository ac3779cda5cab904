package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// ensureTopicTimeout bounds EnsureTopic when its context has no earlier
	// deadline, so a start-up step never waits forever on a dead cluster.
	ensureTopicTimeout = 30 * time.Second

	// ensureTopicPollInterval is how often EnsureTopic looks again for a
	// topic another client reported as created but metadata does not show
	// yet (real Kafka propagates metadata asynchronously).
	ensureTopicPollInterval = 100 * time.Millisecond
)

// ErrPartitionCountMismatch is returned (wrapped) by EnsureTopic when the
// topic exists with a partition count other than the one asked for. Keys map
// to partitions by count, so silently using another count would move
// accounts to other partitions and break per-account ordering.
var ErrPartitionCountMismatch = errors.New("topic exists with a different partition count")

// EnsureTopic makes sure topic exists on the cluster reached through brokers
// with partitions partitions. It creates the topic if it is missing, with
// replicationFactor replicas (-1 for the broker's default). A topic that
// exists with the same partition count is success, including one created by
// a concurrent caller between our look-up and our create; one with a
// different count is an error wrapping ErrPartitionCountMismatch. An existing
// topic's replication factor is not checked. EnsureTopic gives up after 30
// seconds unless ctx ends sooner.
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int32, replicationFactor int16) error {
	if err := validateBrokers(brokers); err != nil {
		return fmt.Errorf("ensure topic: %w", err)
	}
	if topic == "" {
		return errors.New("ensure topic: topic is empty")
	}
	if partitions < 1 {
		return fmt.Errorf("ensure topic %q: partitions %d must be at least 1", topic, partitions)
	}
	if replicationFactor == 0 || replicationFactor < -1 {
		return fmt.Errorf("ensure topic %q: replication factor %d must be -1 (broker default) or at least 1", topic, replicationFactor)
	}
	ctx, cancel := context.WithTimeout(ctx, ensureTopicTimeout)
	defer cancel()

	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("ledgerproof-ensure-topic"),
		// kadm answers from the client's metadata cache, which keeps even
		// "unknown topic" for MetadataMinAge (default 5s); polling for a
		// topic another caller just created must see fresh metadata.
		kgo.MetadataMinAge(ensureTopicPollInterval),
	)
	if err != nil {
		return fmt.Errorf("ensure topic %q: new client: %w", topic, err)
	}
	defer client.Close()
	admin := kadm.NewClient(client)

	found, err := checkTopic(ctx, admin, topic, partitions)
	if err != nil || found {
		return err
	}
	_, err = admin.CreateTopic(ctx, partitions, replicationFactor, nil, topic)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		// Another caller created it after our look-up; it is ours to check,
		// not to fail on. Its metadata may lag behind the create.
		return waitForTopic(ctx, admin, topic, partitions)
	default:
		return fmt.Errorf("ensure topic %q: create with %d partitions: %w", topic, partitions, err)
	}
}

// checkTopic reports whether topic exists, and fails if it exists with
// another partition count.
func checkTopic(ctx context.Context, admin *kadm.Client, topic string, partitions int32) (found bool, err error) {
	details, err := admin.ListTopics(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("ensure topic %q: list topics: %w", topic, err)
	}
	detail, ok := details[topic]
	if !ok || errors.Is(detail.Err, kerr.UnknownTopicOrPartition) {
		return false, nil
	}
	if detail.Err != nil {
		return false, fmt.Errorf("ensure topic %q: describe: %w", topic, detail.Err)
	}
	if got := int32(len(detail.Partitions)); got != partitions {
		return true, fmt.Errorf("ensure topic %q: %w: has %d partitions, want %d", topic, ErrPartitionCountMismatch, got, partitions)
	}
	return true, nil
}

func waitForTopic(ctx context.Context, admin *kadm.Client, topic string, partitions int32) error {
	ticker := time.NewTicker(ensureTopicPollInterval)
	defer ticker.Stop()
	for {
		found, err := checkTopic(ctx, admin, topic, partitions)
		if err != nil || found {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure topic %q: created by another client but not visible in metadata: %w", topic, ctx.Err())
		case <-ticker.C:
		}
	}
}

func validateBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("no brokers given")
	}
	for i, broker := range brokers {
		if broker == "" {
			return fmt.Errorf("broker %d of %d is empty", i+1, len(brokers))
		}
	}
	return nil
}
