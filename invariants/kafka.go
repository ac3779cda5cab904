package invariants

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultTopic is the reference system's commands topic.
const DefaultTopic = "ledger.commands"

// BrokerOffsets asks the brokers for the high watermark of every partition
// of a topic.
type BrokerOffsets struct {
	client *kgo.Client
	admin  *kadm.Client
	topic  string
}

// OpenBrokerOffsets builds a client; it dials on first use.
func OpenBrokerOffsets(brokers []string, topic string) (*BrokerOffsets, error) {
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &BrokerOffsets{client: client, admin: kadm.NewClient(client), topic: topic}, nil
}

// Close closes the client.
func (b *BrokerOffsets) Close() { b.client.Close() }

// brokerAnswerBound bounds Ends, so a dead broker does not eat a drain's
// budget. It bounds the broker's answer only: a bound around a whole probe
// would also cut the Postgres queries that follow it, and pgx closes a
// connection whose query is cancelled, the connection the audit goes on
// reading the ledger with.
const brokerAnswerBound = 3 * time.Second

// Ends returns each partition's high watermark, or an error when the broker
// does not answer within brokerAnswerBound.
func (b *BrokerOffsets) Ends(ctx context.Context) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, brokerAnswerBound)
	defer cancel()
	listed, err := b.admin.ListEndOffsets(ctx, b.topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", b.topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", b.topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(offset kadm.ListedOffset) {
		if offset.Topic == b.topic {
			ends[offset.Partition] = offset.Offset
		}
	})
	return ends, nil
}

// KafkaDrainProbe is done when the ledger's stored offset of every partition
// has reached the broker's high watermark.
func KafkaDrainProbe(broker *BrokerOffsets, ledger *PostgresSource) DrainProbe {
	return LagProbe(func(ctx context.Context) (map[int32]int64, map[int32]int64, error) {
		ends, err := broker.Ends(ctx)
		if err != nil {
			return nil, nil, err
		}
		stored, err := ledger.StoredOffsets(ctx, broker.topic)
		if err != nil {
			return nil, nil, err
		}
		return ends, stored, nil
	})
}
