package kafka

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// javaMurmur2 are golden vectors from the Java client's
// UtilsTest.testMurmur2: Utils.murmur2(bytes) as a Java int.
var javaMurmur2 = []struct {
	key  string
	hash int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

func TestMurmur2MatchesJavaClient(t *testing.T) {
	t.Parallel()
	for _, vector := range javaMurmur2 {
		t.Run(vector.key, func(t *testing.T) {
			if got := int32(murmur2([]byte(vector.key))); got != vector.hash {
				t.Errorf("murmur2(%q) = %d, Java says %d", vector.key, got, vector.hash)
			}
		})
	}
}

// TestPartitionForMatchesJavaClient derives the Java client's partition from
// its golden hash: Utils.toPositive(hash) % numPartitions, with toPositive
// being hash & 0x7fffffff. Negative hashes exercise the sign masking.
func TestPartitionForMatchesJavaClient(t *testing.T) {
	t.Parallel()
	for _, vector := range javaMurmur2 {
		for _, partitions := range []int32{1, 3, 16, 100, 1<<31 - 1} {
			want := (vector.hash & 0x7fffffff) % partitions
			if got := PartitionFor([]byte(vector.key), partitions); got != want {
				t.Errorf("PartitionFor(%q, %d) = %d, Java client gives %d", vector.key, partitions, got, want)
			}
		}
	}
}

func TestPartitionForPanicsOnNoPartitions(t *testing.T) {
	t.Parallel()
	for _, partitions := range []int32{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("PartitionFor(key, %d) did not panic", partitions)
				}
			}()
			PartitionFor([]byte("key"), partitions)
		}()
	}
}

func requireKcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not on PATH (apt package kcat); skipping the librdkafka interoperability test")
	}
	return path
}

func runKcat(t *testing.T, kcat, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	command := exec.CommandContext(ctx, kcat, args...)
	command.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	command.Stderr = &stderr
	output, err := command.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(output)
}

// TestKcatInteroperates checks the broker and the Producer against
// librdkafka, an independent Kafka client: kcat lists the broker and topic,
// kcat's murmur2_random partitioner puts keys where PartitionFor says, and
// kcat consumes a record our Producer produced.
func TestKcatInteroperates(t *testing.T) {
	t.Parallel()
	kcat := requireKcat(t)
	broker := startBroker(t, false)

	t.Run("metadata", func(t *testing.T) {
		output := runKcat(t, kcat, "", "-b", broker.address, "-L", "-m", "10")
		for _, want := range []string{
			"1 brokers:",
			"broker 0 at " + broker.address,
			fmt.Sprintf("topic %q with %d partitions", DefaultTopic, DefaultPartitions),
		} {
			if !strings.Contains(output, want) {
				t.Errorf("kcat -L output lacks %q:\n%s", want, output)
			}
		}
	})

	t.Run("kcat murmur2_random partitions like PartitionFor", func(t *testing.T) {
		// One record with a fixed key (-k), as the gateway's keys look,
		// then many keys in one run (-K: splits key:value lines).
		runKcat(t, kcat, "kcat-fixed-key\n", "-b", broker.address, "-P", "-t", DefaultTopic,
			"-k", "acct-42", "-X", "partitioner=murmur2_random", "-m", "10")
		var lines strings.Builder
		want := map[string]int32{"kcat-fixed-key": PartitionFor([]byte("acct-42"), DefaultPartitions)}
		for i := range 300 {
			key := fmt.Sprintf("kcat-acct-%d", i)
			value := fmt.Sprintf("kcat-value-%d", i)
			fmt.Fprintf(&lines, "%s:%s\n", key, value)
			want[value] = PartitionFor([]byte(key), DefaultPartitions)
		}
		runKcat(t, kcat, lines.String(), "-b", broker.address, "-P", "-t", DefaultTopic,
			"-K", ":", "-X", "partitioner=murmur2_random", "-m", "10")

		got := map[string]int32{}
		for partition, byOffset := range readTopic(t, broker.address, DefaultTopic) {
			for _, record := range byOffset {
				got[string(record.Value)] = partition
			}
		}
		for value, wantPartition := range want {
			gotPartition, ok := got[value]
			switch {
			case !ok:
				t.Errorf("record %q produced by kcat is not in the topic", value)
			case gotPartition != wantPartition:
				t.Errorf("kcat put record %q in partition %d, PartitionFor says %d", value, gotPartition, wantPartition)
			}
		}
	})

	t.Run("kcat consumes what the Producer produced", func(t *testing.T) {
		producer := newTestProducer(t, ProducerConfig{Brokers: []string{broker.address}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		key, value := "acct-7", "from-ledgerproof-producer"
		partition, offset, err := producer.Produce(ctx, []byte(key), []byte(value))
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		output := runKcat(t, kcat, "", "-b", broker.address, "-C", "-t", DefaultTopic,
			"-p", fmt.Sprint(partition), "-o", "beginning", "-e", "-m", "10", "-f", "%k\t%s\t%p\t%o\n")
		want := fmt.Sprintf("%s\t%s\t%d\t%d", key, value, partition, offset)
		scanner := bufio.NewScanner(strings.NewReader(output))
		for scanner.Scan() {
			if scanner.Text() == want {
				return
			}
		}
		t.Errorf("kcat did not consume %q from partition %d; it printed:\n%s", want, partition, output)
	})
}
