package kafka

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// The tests run the real broker: the ledgerproof binary, built once per test
// binary by stacktest, started as a child process per test.
func TestMain(m *testing.M) { stacktest.Main(m) }

// freeAddress is a loopback address for a broker child process, below the
// ephemeral range (stacktest.FreePort): a port above it that was free a
// moment ago may be taken by another process's outgoing connection before
// the child listens.
func freeAddress(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(stacktest.FreePort(t)))
}

// lockedBuffer collects a child's stderr; the child writes while the test
// reads.
type lockedBuffer struct {
	mu     sync.Mutex
	buffer bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffer.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffer.String()
}

// brokerProcess is one `ledgerproof broker` child process, restartable on
// the same address and data directory.
type brokerProcess struct {
	t       *testing.T
	address string
	dataDir string
	sync    bool

	mu      sync.Mutex
	command *exec.Cmd
	exited  chan struct{}
	stderr  *lockedBuffer
}

// startBroker starts a broker on a free port with a fresh data directory,
// waits until it serves metadata, and kills it when the test ends.
func startBroker(t *testing.T, sync bool) *brokerProcess {
	t.Helper()
	broker := &brokerProcess{t: t, address: freeAddress(t), dataDir: t.TempDir(), sync: sync}
	broker.start()
	t.Cleanup(func() {
		broker.kill()
		if t.Failed() {
			t.Logf("broker stderr:\n%s", broker.stderr.String())
		}
	})
	return broker
}

// start launches the process and waits for readiness.
func (b *brokerProcess) start() {
	b.t.Helper()
	args := []string{"broker", "--listen", b.address, "--data-dir", b.dataDir}
	if b.sync {
		args = append(args, "--sync")
	}
	command := exec.Command(stacktest.Binary(b.t), args...)
	// A LEDGERPROOF_* variable in the test's environment must not change
	// the broker under test.
	for _, variable := range os.Environ() {
		if !strings.HasPrefix(variable, "LEDGERPROOF_") {
			command.Env = append(command.Env, variable)
		}
	}
	stderr := &lockedBuffer{}
	command.Stderr = stderr
	if err := command.Start(); err != nil {
		b.t.Fatalf("start broker: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		command.Wait()
		close(exited)
	}()
	b.mu.Lock()
	b.command, b.exited, b.stderr = command, exited, stderr
	b.mu.Unlock()
	b.waitReady(20 * time.Second)
}

// waitReady polls with metadata requests until the broker lists the
// default topic with its partitions, or fails the test at the deadline.
func (b *brokerProcess) waitReady(timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastError error
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			b.t.Fatalf("broker exited before it was ready: %s\n%s", b.command.ProcessState, b.stderr.String())
		default:
		}
		lastError = probeBroker(b.address)
		if lastError == nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // bounded by the deadline above
	}
	b.t.Fatalf("broker at %s not ready after %v: %v\n%s", b.address, timeout, lastError, b.stderr.String())
}

func probeBroker(address string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	client, err := kgo.NewClient(kgo.SeedBrokers(address), kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	details, err := kadm.NewClient(client).ListTopics(ctx, DefaultTopic)
	if err != nil {
		return err
	}
	detail := details[DefaultTopic]
	if detail.Err != nil {
		return detail.Err
	}
	if len(detail.Partitions) != int(DefaultPartitions) {
		return fmt.Errorf("topic has %d partitions", len(detail.Partitions))
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be gone. It does nothing
// if the process already exited.
func (b *brokerProcess) kill() {
	b.t.Helper()
	b.mu.Lock()
	command, exited := b.command, b.exited
	b.mu.Unlock()
	if command == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	if err := command.Process.Signal(syscall.SIGKILL); err != nil {
		b.t.Errorf("kill broker pid %d: %v", command.Process.Pid, err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		b.t.Errorf("broker pid %d still running 10s after SIGKILL", command.Process.Pid)
	}
}

// stop sends SIGTERM and waits for the orderly shutdown, killing the
// process if it takes longer than 15 seconds.
func (b *brokerProcess) stop() {
	b.t.Helper()
	b.mu.Lock()
	command, exited := b.command, b.exited
	b.mu.Unlock()
	if err := command.Process.Signal(syscall.SIGTERM); err != nil {
		b.t.Errorf("stop broker pid %d: %v", command.Process.Pid, err)
	}
	select {
	case <-exited:
		if !command.ProcessState.Success() {
			b.t.Errorf("broker pid %d exited with %s after SIGTERM", command.Process.Pid, command.ProcessState)
		}
	case <-time.After(15 * time.Second):
		b.t.Errorf("broker pid %d still running 15s after SIGTERM; killing it", command.Process.Pid)
		b.kill()
	}
}

// readTopic consumes every partition of topic from its start to the high
// watermark it had when readTopic began, and returns the records by
// partition and offset.
func readTopic(t *testing.T, address, topic string) map[int32]map[int64]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(address))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	highWatermarks := map[int32]int64{}
	starts := map[int32]kgo.Offset{}
	ends.Each(func(offset kadm.ListedOffset) {
		if offset.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, offset.Partition, offset.Err)
		}
		highWatermarks[offset.Partition] = offset.Offset
		starts[offset.Partition] = kgo.NewOffset().AtStart()
	})
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(address),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()

	records := map[int32]map[int64]*kgo.Record{}
	remaining := func() int64 {
		var total int64
		for partition, end := range highWatermarks {
			total += end - int64(len(records[partition]))
		}
		return total
	}
	for remaining() > 0 {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %d records missing below the high watermarks after 30s", topic, remaining())
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, partition, err)
		})
		fetches.EachRecord(func(record *kgo.Record) {
			if record.Offset >= highWatermarks[record.Partition] {
				return
			}
			if records[record.Partition] == nil {
				records[record.Partition] = map[int64]*kgo.Record{}
			}
			records[record.Partition][record.Offset] = record
		})
	}
	return records
}
