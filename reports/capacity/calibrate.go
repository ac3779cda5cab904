package capacity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ledgerproof/ledgerproof/reports/runner"
	"github.com/ledgerproof/ledgerproof/sut/bench"
	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// capacityCalibration is this machine's own limits, measured in the same run
// as the capacity steps with bare programs doing what one request of the
// pipeline needs at the least: a JSON POST over HTTP (a trivial handler,
// driven by the load engine, whose CPU is counted too: it shares the machine
// in every step), a batched Postgres apply of a fixed size, one Redis round
// trip, one produce to the broker. Their CPU per operation adds up to what
// one request cannot cost less than; the machine's cores over it is the
// arithmetic ceiling, and a knee is stated as a fraction of it, which says
// more about the code than TPS does on a machine of unknown speed.
type capacityCalibration struct {
	Parts []calibrationPart `json:"parts"`
	// CPUMsPerOperation is the parts' sum: the bare cost of one request.
	CPUMsPerOperation float64 `json:"cpu_ms_per_operation"`
	Cores             int     `json:"cores"`
	// CeilingTPS is Cores × 1,000 / CPUMsPerOperation.
	CeilingTPS float64 `json:"ceiling_tps"`
	Seconds    float64 `json:"seconds"`
}

// calibrationPart is one bare program's figures.
type calibrationPart struct {
	Name string `json:"name"`
	What string `json:"what"`
	// Operations measured; CPUSeconds of every process involved (named in
	// ByProcess: the server and this process's client, or the load).
	Operations        int64              `json:"operations"`
	CPUSeconds        float64            `json:"cpu_seconds"`
	ByProcess         map[string]float64 `json:"cpu_seconds_by_process"`
	CPUMsPerOperation float64            `json:"cpu_ms_per_operation"`
	Seconds           float64            `json:"seconds"`
}

// Calibration sizes: each part runs for a few seconds on a 2-core machine.
const (
	calibrationHTTPRate       = 3000
	calibrationHTTPHold       = 10 * time.Second
	calibrationBatchSize      = 64
	calibrationTransfers      = 20_000
	calibrationRedisOps       = 30_000
	calibrationRedisClients   = 16
	calibrationProduceRecords = 30_000
	calibrationProduceBytes   = 200
	calibrationProducers      = 64
	calibrationTopic          = "ledgerproof.calibration"
	calibrationComponentName  = "bare-endpoint"
)

// calibrationRun names one of a run's calibrations: the directory of its
// stack and of its HTTP part's load run, and its heading on the console.
type calibrationRun struct{ dir, heading string }

var (
	calibrationBefore = calibrationRun{dir: "calibration", heading: "calibration: this machine's own limits, with bare programs (docs/performance.md)"}
	calibrationAfter  = calibrationRun{dir: "calibration-after",
		heading: "calibration after the modes: the same bare programs again, to see whether the machine's speed moved during the run (drift.go)"}
)

// calibrate starts a stack of its own (Postgres, Redis, the broker; no
// gateway, no worker) on the ports after the modes', measures the four bare
// parts one after another, and removes the stack.
func calibrate(ctx context.Context, o Options, self string, run calibrationRun, out io.Writer) (capacityCalibration, error) {
	started := time.Now()
	result := capacityCalibration{Cores: runtime.NumCPU()}
	stackDir := filepath.Join(o.StackRoot, run.dir)
	_ = stack.Down(ctx, stackDir, stack.DownOptions{Purge: true})
	config := stack.DefaultConfig()
	config.Dir, config.Binary = stackDir, self
	capacityPorts(&config, o.PortBase, len(o.Modes))
	config.Gateways, config.Workers, config.Partitions = 0, 0, o.Partitions
	config.Env = append(append(config.Env, capacityStackEnv...), o.StackEnv...)
	fmt.Fprintf(out, "\n== %s\n", run.heading)
	up, err := stack.Up(ctx, config)
	if err != nil {
		return result, fmt.Errorf("calibration stack: %w", err)
	}
	file := up.File
	defer func() {
		downContext, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := stack.Down(downContext, file.Dir, stack.DownOptions{Purge: true}); err != nil {
			fmt.Fprintf(out, "calibration: stack down: %v\n", err)
		}
	}()
	pid := func(name string) (int, error) {
		component, err := file.Component(name)
		if err != nil {
			return 0, err
		}
		if component.PID <= 0 {
			return 0, fmt.Errorf("calibration: %s has no process id", name)
		}
		return component.PID, nil
	}
	postgresPID, err := pid("postgres")
	if err != nil {
		return result, err
	}
	redisPID, err := pid("redis")
	if err != nil {
		return result, err
	}
	brokerPID, err := pid("broker")
	if err != nil {
		return result, err
	}

	part, err := calibrateHTTP(ctx, o, self, filepath.Join(o.Out, run.dir), out)
	if err != nil {
		return result, fmt.Errorf("calibration, HTTP: %w", err)
	}
	result.Parts = append(result.Parts, part)
	part, err = calibratePostgres(ctx, o, file, postgresPID, out)
	if err != nil {
		return result, fmt.Errorf("calibration, Postgres: %w", err)
	}
	result.Parts = append(result.Parts, part)
	part, err = calibrateRedis(ctx, file.Endpoints.RedisAddr, redisPID)
	if err != nil {
		return result, fmt.Errorf("calibration, Redis: %w", err)
	}
	result.Parts = append(result.Parts, part)
	part, err = calibrateProduce(ctx, file.Endpoints.Brokers, brokerPID, int32(o.Partitions))
	if err != nil {
		return result, fmt.Errorf("calibration, broker: %w", err)
	}
	result.Parts = append(result.Parts, part)

	for _, part := range result.Parts {
		result.CPUMsPerOperation += part.CPUMsPerOperation
		fmt.Fprintf(out, "calibration %-8s %8d operations, %.3f CPU-ms each (%s): %s\n", part.Name, part.Operations,
			part.CPUMsPerOperation, formatProcessSeconds(part.ByProcess), part.What)
	}
	result.CPUMsPerOperation = round3(result.CPUMsPerOperation)
	if result.CPUMsPerOperation <= 0 {
		return result, errors.New("calibration: the bare parts measured no CPU (is /proc readable?)")
	}
	result.CeilingTPS = math.Round(float64(result.Cores) * 1000 / result.CPUMsPerOperation)
	result.Seconds = round3(time.Since(started).Seconds())
	fmt.Fprintf(out, "calibration: %.3f CPU-ms per request at the least; ceiling %d cores / %.3f ms = %.0f TPS (%.0fs)\n",
		result.CPUMsPerOperation, result.Cores, result.CPUMsPerOperation, result.CeilingTPS, result.Seconds)
	return result, nil
}

// calibrateHTTP runs the trivial endpoint of `bench-load --serve` (the API's
// paths, answers without work) as a process of its own, with the gateways'
// Go settings, and one capacity step of the load engine against it: the CPU
// of a JSON POST and its answer on both sides, the load engine's included.
func calibrateHTTP(ctx context.Context, o Options, self, runDir string, out io.Writer) (calibrationPart, error) {
	part := calibrationPart{Name: "http", What: fmt.Sprintf("a JSON POST to a trivial net/http handler, the load engine sending at %d/s (endpoint and load)", calibrationHTTPRate)}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return part, err
	}
	ports, err := runner.FreePorts(1, nil)
	if err != nil {
		return part, err
	}
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	logFile, err := os.Create(filepath.Join(runDir, "endpoint.log"))
	if err != nil {
		return part, err
	}
	defer logFile.Close()
	endpointContext, stopEndpoint := context.WithCancel(ctx)
	defer stopEndpoint()
	endpoint := exec.CommandContext(endpointContext, self, "bench-load", "--serve", address)
	endpoint.Env = append(append(os.Environ(), capacityStackEnv...), o.StackEnv...)
	endpoint.Stdout, endpoint.Stderr = logFile, logFile
	endpoint.Cancel = func() error { return endpoint.Process.Signal(syscall.SIGTERM) }
	endpoint.WaitDelay = 10 * time.Second
	if err := endpoint.Start(); err != nil {
		return part, err
	}
	defer func() { stopEndpoint(); _ = endpoint.Wait() }()
	if err := waitForListener(ctx, address, 30*time.Second); err != nil {
		return part, fmt.Errorf("the bare endpoint (log %s): %w", logFile.Name(), err)
	}

	sampler := newCPUSampler()
	sampler.watch(calibrationComponentName, endpoint.Process.Pid)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { sampler.run(250*time.Millisecond, stop); close(sampled) }()
	defer func() { close(stop); <-sampled }()

	stepOptions := o
	stepOptions.ProfileAt, stepOptions.Hold, stepOptions.Ramp = 0, calibrationHTTPHold, 2*time.Second
	file := &stack.File{Endpoints: stack.Endpoints{Gateways: []string{"http://" + address}},
		Components: []*stack.Component{{Name: calibrationComponentName}}}
	step, err := runCapacityStep(ctx, stepOptions, self, capacityMode{Name: "calibration"}, file, sampler, stepName(0, calibrationHTTPRate), 0, calibrationHTTPRate, runDir, out)
	if err != nil {
		return part, err
	}
	if step.CompletedInWindow == 0 {
		return part, errors.New("no operation completed against the bare endpoint")
	}
	part.Operations, part.Seconds = step.CompletedInWindow, round3(step.WindowSeconds)
	part.ByProcess = map[string]float64{"endpoint": step.CPUSeconds[calibrationComponentName], "load": step.CPUSeconds[loadComponent]}
	part.finish()
	return part, nil
}

// calibratePostgres applies transfers through the worker's own batched
// apply (postgres.Store.ApplyBatch, sut/bench) in batches of a fixed size,
// on a fresh database of the calibration stack's cluster: the CPU of its
// timed section, Postgres's backends and this process's client.
func calibratePostgres(ctx context.Context, o Options, file *stack.File, postgresPID int, out io.Writer) (calibrationPart, error) {
	part := calibrationPart{Name: "postgres", What: fmt.Sprintf("one transfer of a batched apply (%d per transaction, %d partitions; the worker's ApplyBatch)", calibrationBatchSize, o.Partitions)}
	adminURL, err := url.Parse(file.Endpoints.PostgresURL)
	if err != nil {
		return part, err
	}
	adminURL.Path = "/postgres"
	config := bench.DefaultConfig()
	config.PostgresURL = adminURL.String()
	config.BatchedOnly, config.BatchSizes, config.Repeats = true, []int{calibrationBatchSize}, 1
	config.Transfers, config.Partitions = calibrationTransfers, max(1, o.Partitions)
	config.ModeTimeCap = 30 * time.Second
	var meter cpuMeter
	config.Timed = func(begin bool) {
		if begin {
			meter.begin(map[string]int{"postgres": postgresPID})
		} else {
			meter.end()
		}
	}
	result, err := bench.Run(ctx, config, io.Discard)
	if err != nil {
		return part, err
	}
	if len(result.Runs) != 1 || result.Runs[0].Transfers == 0 {
		return part, fmt.Errorf("%d runs, want one that applied transfers", len(result.Runs))
	}
	part.Operations, part.Seconds, part.ByProcess = int64(result.Runs[0].Transfers), round3(meter.seconds), meter.used
	part.finish()
	return part, nil
}

// calibrateRedis sends SET key value EX 600 (the gateway's idempotency
// reservation is one such round trip) from a few concurrent clients.
func calibrateRedis(ctx context.Context, address string, redisPID int) (calibrationPart, error) {
	part := calibrationPart{Name: "redis", What: fmt.Sprintf("one round trip (SET with a TTL, %d clients)", calibrationRedisClients)}
	client := goredis.NewClient(&goredis.Options{Addr: address, PoolSize: calibrationRedisClients})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return part, err
	}
	var meter cpuMeter
	meter.begin(map[string]int{"redis": redisPID})
	failed := concurrently(ctx, calibrationRedisClients, calibrationRedisOps, func(i int64) error {
		return client.Set(ctx, "calibration:"+strconv.FormatInt(i, 10), "reserved", 10*time.Minute).Err()
	})
	meter.end()
	if failed > 0 {
		return part, fmt.Errorf("%d of %d round trips failed", failed, calibrationRedisOps)
	}
	part.Operations, part.Seconds, part.ByProcess = calibrationRedisOps, round3(meter.seconds), meter.used
	part.finish()
	return part, nil
}

// calibrateProduce produces records of a command's size to a topic of its
// own as the gateways do: each of a few dozen senders waits for its
// record's acknowledgement before the next (a request waits for its
// produce), with the gateways' producer linger (1 ms).
func calibrateProduce(ctx context.Context, brokers []string, brokerPID int, partitions int32) (calibrationPart, error) {
	part := calibrationPart{Name: "produce", What: fmt.Sprintf("one record of %d bytes produced and acknowledged (%d senders, each waiting for its acknowledgement; linger 1 ms)", calibrationProduceBytes, calibrationProducers)}
	if err := kafka.EnsureTopic(ctx, brokers, calibrationTopic, max(1, partitions), -1); err != nil {
		return part, err
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(calibrationTopic), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		return part, err
	}
	defer client.Close()
	value := []byte(strings.Repeat("x", calibrationProduceBytes))
	var meter cpuMeter
	meter.begin(map[string]int{"broker": brokerPID})
	failed := concurrently(ctx, calibrationProducers, calibrationProduceRecords, func(i int64) error {
		return client.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.FormatInt(i, 10)), Value: value}).FirstErr()
	})
	meter.end()
	if failed > 0 {
		return part, fmt.Errorf("%d of %d records not acknowledged", failed, calibrationProduceRecords)
	}
	_, _ = kadm.NewClient(client).DeleteTopics(context.WithoutCancel(ctx), calibrationTopic)
	part.Operations, part.Seconds, part.ByProcess = calibrationProduceRecords, round3(meter.seconds), meter.used
	part.finish()
	return part, nil
}

// concurrently calls operation for 1..total from senders goroutines, each
// taking the next number when its last call returned, and returns how many
// calls failed.
func concurrently(ctx context.Context, senders int, total int64, operation func(i int64) error) int64 {
	var next, failed atomic.Int64
	var wait sync.WaitGroup
	for range senders {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for {
				i := next.Add(1)
				if i > total || ctx.Err() != nil {
					return
				}
				if operation(i) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wait.Wait()
	return failed.Load()
}

// finish sums the processes' CPU and divides it per operation.
func (p *calibrationPart) finish() {
	total := 0.0
	for name, seconds := range p.ByProcess {
		p.ByProcess[name] = round3(seconds)
		total += seconds
	}
	p.CPUSeconds = round3(total)
	if p.Operations > 0 {
		p.CPUMsPerOperation = round3(total * 1000 / float64(p.Operations))
	}
}

// cpuMeter measures the CPU of some process trees (from /proc) and of this
// process (getrusage: the in-process client) between begin and end.
type cpuMeter struct {
	pids    map[string]int
	ticks   map[string]uint64
	self    float64
	started time.Time
	used    map[string]float64
	seconds float64
}

func (m *cpuMeter) begin(pids map[string]int) {
	m.pids, m.ticks = pids, map[string]uint64{}
	table := scanProcesses()
	for name, pid := range pids {
		m.ticks[name] = table.treeTicks(pid)
	}
	m.self, m.started = selfCPUSeconds(), time.Now()
}

func (m *cpuMeter) end() {
	table := scanProcesses()
	m.used = map[string]float64{"client": selfCPUSeconds() - m.self}
	for name, pid := range m.pids {
		m.used[name] = float64(table.treeTicks(pid)-m.ticks[name]) / clockTicksPerSecond
	}
	m.seconds = time.Since(m.started).Seconds()
}

// selfCPUSeconds is this process's user + system CPU so far.
func selfCPUSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

// waitForListener waits until address accepts a TCP connection.
func waitForListener(ctx context.Context, address string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		connection, err := net.DialTimeout("tcp", address, time.Second)
		if err == nil {
			return connection.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s after %s: %w", address, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// formatProcessSeconds lists CPU seconds by process, in name order.
func formatProcessSeconds(byProcess map[string]float64) string {
	names := make([]string, 0, len(byProcess))
	for name := range byProcess {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.2fs", name, byProcess[name]))
	}
	return strings.Join(parts, ", ")
}
