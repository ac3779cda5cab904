// Package kafka is the reference system's Kafka adapter: the producer the
// gateways use to append commands to the ledger.commands topic, keyed by
// source account, and the consumer the workers read them with. It speaks the
// Kafka protocol through github.com/twmb/franz-go and runs unchanged against
// real Kafka and against the local broker (sut/broker).
package kafka

const (
	// DefaultTopic is the topic commands are produced to and consumed from.
	DefaultTopic = "ledger.commands"

	// DefaultPartitions is the partition count of DefaultTopic. One worker
	// owns a partition, so this bounds the parallelism of applying commands;
	// 16 lets a 2 to 8 core machine run several workers per core while each
	// partition still gets batches large enough to amortise a Postgres
	// transaction.
	DefaultPartitions int32 = 16
)

// PartitionFor returns the partition a record keyed by key is produced to in
// a topic with partitions partitions, using Kafka's default partitioner for
// keyed records (the Java client's, which franz-go's StickyKeyPartitioner
// and librdkafka's murmur2_random partitioner also implement):
// toPositive(murmur2(key)) % partitions. The workers and the auditor use it to
// know which partition, and so which worker, owns an account. It panics if
// partitions is not positive, which is a caller's bug.
func PartitionFor(key []byte, partitions int32) int32 {
	if partitions <= 0 {
		panic("kafka.PartitionFor: partitions must be positive")
	}
	// Java's Utils.toPositive masks the sign bit of the int32 hash; masking
	// the uint32 is the same thing.
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is the 32-bit MurmurHash2 with Kafka's seed, as in the Java
// client's org.apache.kafka.common.utils.Utils.murmur2: four bytes are read
// little endian, and the tail is mixed in the same order as the C reference.
func murmur2(data []byte) uint32 {
	const (
		seed       uint32 = 0x9747b28c
		multiplier uint32 = 0x5bd1e995
		shift             = 24
	)
	hash := seed ^ uint32(len(data))
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		data = data[4:]
		k *= multiplier
		k ^= k >> shift
		k *= multiplier
		hash *= multiplier
		hash ^= k
	}
	switch len(data) {
	case 3:
		hash ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		hash ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		hash ^= uint32(data[0])
		hash *= multiplier
	}
	hash ^= hash >> 13
	hash *= multiplier
	hash ^= hash >> 15
	return hash
}
