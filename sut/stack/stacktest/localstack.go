package stacktest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// StackOptions shapes a test's local stack.
type StackOptions struct {
	Gateways, Workers int
	// GatewayArgs and WorkerArgs are appended to the processes' command
	// lines, after the test defaults (cheap password hashing, 20s wait cap).
	GatewayArgs, WorkerArgs []string
}

// Stack starts a whole local stack of the test's own (Postgres, Redis, the
// broker, gateways and workers, as processes) on free ports, with cheap
// password hashing so tests can sign up many users, and stops it when the
// test ends, printing the components' last log lines if the test failed.
func Stack(t testing.TB, options StackOptions) *stack.File {
	t.Helper()
	config := stack.DefaultConfig()
	config.Dir = t.TempDir()
	// Postgres runs as the postgres OS user when the tests run as root: it
	// must be able to enter the test's temporary directories.
	for _, dir := range []string{filepath.Dir(config.Dir), config.Dir} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config.Binary = Binary(t)
	config.PostgresPort = FreePort(t)
	config.RedisPort = FreePort(t)
	config.BrokerPort = FreePort(t)
	config.Gateways, config.Workers, config.Partitions = options.Gateways, options.Workers, 16
	config.GatewayPort = freeRange(t, max(1, options.Gateways))
	config.WorkerMetricsPort = freeRange(t, max(1, options.Workers))
	config.BrokerSync = false
	config.GatewayArgs = append([]string{"--kdf-memory-kib=64", "--kdf-iterations=1", "--wait-max=20s"}, options.GatewayArgs...)
	config.WorkerArgs = options.WorkerArgs
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	result, err := stack.Up(ctx, config)
	t.Cleanup(func() {
		if t.Failed() {
			names := []string{"broker"}
			for i := range options.Gateways {
				names = append(names, "gateway-"+strconv.Itoa(i))
			}
			for i := range options.Workers {
				names = append(names, "worker-"+strconv.Itoa(i))
			}
			for _, name := range names {
				if tail, err := exec.Command("tail", "-n", "25", filepath.Join(config.Dir, "logs", name+".log")).Output(); err == nil {
					t.Logf("last lines of %s's log:\n%s", name, tail)
				}
			}
		}
		if err := stack.Down(context.Background(), config.Dir, stack.DownOptions{}); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	return result.File
}

// freeRange finds n consecutive free ports.
func freeRange(t testing.TB, n int) int {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		first := FreePort(t)
		ok := true
		for i := 1; i < n; i++ {
			listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+i))
			if err != nil {
				ok = false
				break
			}
			listener.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatal("no range of free ports")
	return 0
}
