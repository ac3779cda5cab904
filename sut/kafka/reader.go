package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Topic is the topic read. Required.
	Topic string
	// StartOffsets are where each partition is read from: the next offsets
	// the reader's owner stored with its effects. Every partition to read
	// must be listed. Required.
	StartOffsets map[int32]int64
	// ClientID names the client in broker logs. Default "ledger-reader".
	ClientID string
	// BrokerAddressMap redirects connections to advertised broker addresses
	// (through a fault proxy). Default none.
	BrokerAddressMap BrokerAddressMap
	// FetchMinBytes is how many bytes of records a fetch waits for, at most
	// FetchMaxWait, before the broker answers it. A reader whose every poll
	// costs a Postgres transaction reads fewer and larger polls under load
	// with more; an idle topic's records then wait up to FetchMaxWait.
	// Default 1: the broker answers with the first record.
	FetchMinBytes int32
	// FetchMaxWait bounds how long a fetch waits for FetchMinBytes, and a
	// poll of an idle topic for any record. Default 500ms.
	FetchMaxWait time.Duration
}

// Reader reads every listed partition of one topic from given offsets,
// without a consumer group: its owner stores its offsets itself, with its
// effects, and seeks to them when it starts (the settlement consumer, of
// which one runs: docs/settlement.md).
type Reader struct {
	client *kgo.Client
}

// readerFetchMaxWait is ReaderConfig.FetchMaxWait's default.
const readerFetchMaxWait = 500 * time.Millisecond

// NewReader builds a Reader; it dials on first use.
func NewReader(config ReaderConfig) (*Reader, error) {
	if err := validateBrokers(config.Brokers); err != nil {
		return nil, fmt.Errorf("kafka reader: %w", err)
	}
	if config.Topic == "" {
		return nil, errors.New("kafka reader: topic is required")
	}
	if len(config.StartOffsets) == 0 {
		return nil, errors.New("kafka reader: no partition to read (StartOffsets is empty)")
	}
	if config.ClientID == "" {
		config.ClientID = "ledger-reader"
	}
	if config.FetchMinBytes == 0 {
		config.FetchMinBytes = 1
	}
	if config.FetchMaxWait == 0 {
		config.FetchMaxWait = readerFetchMaxWait
	}
	if config.FetchMinBytes < 1 || config.FetchMaxWait < time.Millisecond {
		return nil, fmt.Errorf("kafka reader: fetch min bytes %d must be at least 1 and fetch max wait %s at least 1ms",
			config.FetchMinBytes, config.FetchMaxWait)
	}
	offsets := make(map[int32]kgo.Offset, len(config.StartOffsets))
	for partition, next := range config.StartOffsets {
		if next < 0 {
			return nil, fmt.Errorf("kafka reader: partition %d starts at negative offset %d", partition, next)
		}
		offsets[partition] = kgo.NewOffset().At(next)
	}
	client, err := kgo.NewClient(withAddressMap([]kgo.Opt{
		kgo.SeedBrokers(config.Brokers...),
		kgo.ClientID(config.ClientID),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{config.Topic: offsets}),
		kgo.FetchMinBytes(config.FetchMinBytes),
		kgo.FetchMaxWait(config.FetchMaxWait),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.MetadataMinAge(metadataMinAge),
	}, config.BrokerAddressMap)...)
	if err != nil {
		return nil, fmt.Errorf("kafka reader: %w", err)
	}
	return &Reader{client: client}, nil
}

// Poll waits for records (at most maxRecords) until ctx ends and returns
// them grouped by partition, in offset order.
func (r *Reader) Poll(ctx context.Context, maxRecords int) ([]PartitionRecords, error) {
	return pollRecords(ctx, r.client, maxRecords, "kafka reader")
}

// Ping checks a broker answers.
func (r *Reader) Ping(ctx context.Context) error { return r.client.Ping(ctx) }

// Close closes the client.
func (r *Reader) Close() { r.client.Close() }

// EndOffsets returns the high watermark of every partition of topic.
func EndOffsets(ctx context.Context, brokers []string, topic string) (map[int32]int64, error) {
	if err := validateBrokers(brokers); err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	defer client.Close()
	listed, err := kadm.NewClient(client).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(offset kadm.ListedOffset) {
		if offset.Topic == topic {
			ends[offset.Partition] = offset.Offset
		}
	})
	return ends, nil
}
