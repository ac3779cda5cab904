package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// defaultMaxBufferedRecords is ProducerConfig.MaxBufferedRecords' default.
	defaultMaxBufferedRecords = 10_000
	// defaultRequestTimeout is ProducerConfig.RequestTimeout's default.
	defaultRequestTimeout = 10 * time.Second
	// defaultDeliveryTimeout is ProducerConfig.DeliveryTimeout's default.
	defaultDeliveryTimeout = 30 * time.Second
	// metadataMinAge is the shortest time between two metadata refreshes.
	metadataMinAge = 250 * time.Millisecond
	// defaultClientID is ProducerConfig.ClientID's default.
	defaultClientID = "ledgerproof-producer"
)

// ProducerConfig configures a Producer. The zero value of every field but
// Brokers selects its documented default.
type ProducerConfig struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string

	// Topic is the topic every record is produced to, overriding the default
	// DefaultTopic ("ledger.commands").
	Topic string

	// Linger is how long a partition's batch waits for more records before
	// it is sent, overriding the default 0. With no linger, concurrent
	// callers still batch together: while one produce request is in flight,
	// every record that arrives for the same broker is buffered and goes out
	// in the next request. Lingering would add its full duration to the
	// latency of every command at low load and buys little at high load.
	// Must not be negative.
	Linger time.Duration

	// MaxBufferedRecords is how many records may wait in the producer for an
	// acknowledgement, overriding the default 10,000. When it is reached,
	// Produce blocks until space frees up or its context ends: this is the
	// back pressure a slow broker exerts on the gateways, and the bound on
	// the producer's memory. It is well above the concurrency of a gateway
	// (thousands of requests in flight) so it only bites when the broker
	// cannot keep up. Must not be negative.
	MaxBufferedRecords int

	// RequestTimeout is how long the broker may take to answer a produce
	// request (the request's timeout field, Kafka's request.timeout.ms for
	// produce), overriding the default 10s. Must not be negative.
	RequestTimeout time.Duration

	// DeliveryTimeout is how long a record may wait in the producer before it
	// is failed, overriding the default 30s (Kafka's delivery.timeout.ms).
	// The idempotent producer enforces it only while failing the record is
	// safe, that is while it was never sent or its request got an answer; a
	// record sent to a broker that then died stays until the broker answers,
	// because failing it could break the sequence numbers that make retries
	// exactly-once. The context given to Produce always bounds the caller's
	// wait. Must be at least RequestTimeout, or records would expire while
	// their request is legitimately in flight.
	DeliveryTimeout time.Duration

	// ClientID identifies the producer in the broker's logs and quotas,
	// overriding the default "ledgerproof-producer".
	ClientID string

	// BrokerAddressMap redirects connections to advertised broker addresses
	// (through a fault proxy), overriding the default of dialling them as
	// advertised.
	BrokerAddressMap BrokerAddressMap
}

func (cfg ProducerConfig) withDefaults() ProducerConfig {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.MaxBufferedRecords == 0 {
		cfg.MaxBufferedRecords = defaultMaxBufferedRecords
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = max(defaultDeliveryTimeout, cfg.RequestTimeout)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = defaultClientID
	}
	return cfg
}

// validate rejects a configuration with a missing or contradictory value.
// It expects the defaults to have been applied.
func (cfg ProducerConfig) validate() error {
	if err := validateBrokers(cfg.Brokers); err != nil {
		return fmt.Errorf("producer config: %w", err)
	}
	switch {
	case cfg.Linger < 0:
		return fmt.Errorf("producer config: linger %v is negative", cfg.Linger)
	case cfg.MaxBufferedRecords < 0:
		return fmt.Errorf("producer config: max buffered records %d is negative", cfg.MaxBufferedRecords)
	case cfg.RequestTimeout < 0:
		return fmt.Errorf("producer config: request timeout %v is negative", cfg.RequestTimeout)
	case cfg.DeliveryTimeout < cfg.RequestTimeout:
		return fmt.Errorf("producer config: delivery timeout %v is shorter than request timeout %v", cfg.DeliveryTimeout, cfg.RequestTimeout)
	}
	return nil
}

// Producer appends records to one topic and reports where the broker stored
// each. It is safe for concurrent use: records of concurrent callers share
// batches and requests.
type Producer struct {
	client *kgo.Client
	config ProducerConfig
}

// NewProducer returns a Producer for cfg. It does not contact the brokers,
// so a gateway can start before its broker and report itself unready until
// Ping succeeds; connection problems surface from Produce and Ping. The
// producer is idempotent (the broker drops a retried batch it already
// stored, per partition and producer session), waits for all in-sync replicas
// to acknowledge, and partitions keyed records as the Java client does (see
// PartitionFor). ctx only guards the construction.
func NewProducer(ctx context.Context, cfg ProducerConfig) (*Producer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("new producer: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(withAddressMap([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DefaultProduceTopic(cfg.Topic),
		// Idempotency is on by default and must stay on: it is half of the
		// exactly-once effect (the other half is the consumer's offsets in
		// Postgres). All-ISR acks are what idempotency requires anyway.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(cfg.Linger),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.ProduceRequestTimeout(cfg.RequestTimeout),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// After a broker restart the client refreshes metadata before it
		// produces again, and by default no sooner than 5s after the
		// previous refresh: a 5s stall of every gateway per broker
		// failover. Kafka's Java client retries after 100ms.
		kgo.MetadataMinAge(metadataMinAge),
	}, cfg.BrokerAddressMap)...)
	if err != nil {
		return nil, fmt.Errorf("new producer: %w", err)
	}
	return &Producer{client: client, config: cfg}, nil
}

// produceResult is what the client's promise hands to the waiting caller.
type produceResult struct {
	partition int32
	offset    int64
	err       error
}

// Produce appends a record with key and value to the producer's topic and
// returns the partition and offset the broker stored it at. It returns only
// after the broker acknowledged the record, or with an error. An error means
// the outcome is unknown unless it says otherwise: when ctx ends first, the
// record may still be stored later, so callers must treat it like a timeout
// and rely on the command's idempotency key. Produce blocks while the
// producer holds MaxBufferedRecords records, until space frees up or ctx ends.
func (p *Producer) Produce(ctx context.Context, key, value []byte) (partition int32, offset int64, err error) {
	done := make(chan produceResult, 1) // buffered: the promise must never block
	record := &kgo.Record{
		Key:   key,
		Value: value,
		// The client fails a whole partition's batch when its first record's
		// context ends, so the record must not carry this caller's context:
		// one impatient caller would fail the records of every caller
		// batched behind it. The caller's ctx bounds only its own wait.
		Context: context.Background(),
	}
	p.client.Produce(ctx, record, func(record *kgo.Record, err error) {
		done <- produceResult{record.Partition, record.Offset, err}
	})
	select {
	case result := <-done:
		if result.err != nil {
			return -1, -1, fmt.Errorf("produce to %s: %w", p.config.Topic, result.err)
		}
		if err := positionError(result.partition, result.offset); err != nil {
			return -1, -1, fmt.Errorf("produce to %s: %w", p.config.Topic, err)
		}
		return result.partition, result.offset, nil
	case <-ctx.Done():
		return -1, -1, fmt.Errorf("produce to %s: outcome unknown: %w", p.config.Topic, ctx.Err())
	}
}

// positionError is the error of an acknowledgement without a position: the
// client promised success without saying where the record is, a bug in it
// or in us, and acknowledging the record onwards would be a lie.
func positionError(partition int32, offset int64) error {
	if partition < 0 || offset < 0 {
		return fmt.Errorf("acknowledged without a position (partition %d, offset %d)", partition, offset)
	}
	return nil
}

// KeyValue is one record of ProduceAll.
type KeyValue struct{ Key, Value []byte }

// ProduceAll appends every record and returns once the broker acknowledged
// all of them, or with the first error. It is Produce for a set, with one
// wait for the set instead of one per record: a caller with many records
// (the settlement relay: a pass publishes up to its batch size) needs no
// goroutine per record, and the records share batches as concurrent
// Produce calls would. On an error, or when ctx ends first, any of the
// records may have been stored: the caller must treat the set like a
// timeout and publish it again (the consumers dedupe).
func (p *Producer) ProduceAll(ctx context.Context, records []KeyValue) error {
	if len(records) == 0 {
		return nil
	}
	done := make(chan struct{})
	var (
		mutex     sync.Mutex
		remaining = len(records)
		firstErr  error
	)
	// The promise of every record is called exactly once (on success, on a
	// delivery failure, or when ctx ended while the buffer was full).
	promise := func(record *kgo.Record, err error) {
		if err == nil {
			err = positionError(record.Partition, record.Offset)
		}
		mutex.Lock()
		defer mutex.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if remaining--; remaining == 0 {
			close(done)
		}
	}
	for _, kv := range records {
		// As in Produce: the record carries no caller context.
		p.client.Produce(ctx, &kgo.Record{Key: kv.Key, Value: kv.Value, Context: context.Background()}, promise)
	}
	select {
	case <-done:
		if firstErr != nil {
			return fmt.Errorf("produce %d record(s) to %s: %w", len(records), p.config.Topic, firstErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("produce %d record(s) to %s: outcome unknown: %w", len(records), p.config.Topic, ctx.Err())
	}
}

// Ping checks that a broker of the cluster answers, for readiness probes.
func (p *Producer) Ping(ctx context.Context) error {
	if err := p.client.Ping(ctx); err != nil {
		return fmt.Errorf("ping brokers: %w", err)
	}
	return nil
}

// Close waits up to DeliveryTimeout for buffered records to be acknowledged,
// then closes the connections. Records still unacknowledged then are failed
// and their Produce calls return errors.
func (p *Producer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), p.config.DeliveryTimeout)
	defer cancel()
	// Flush fails only when our deadline passes; Close then fails what is
	// left, which is the documented outcome.
	_ = p.client.Flush(ctx)
	p.client.Close()
}
