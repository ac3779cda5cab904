package stacktest

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	// BrokerArgs are appended to the broker's command line (stack.Config.BrokerArgs).
	BrokerArgs []string
	// Proxies routes the links through the fault proxy (component proxy,
	// stack.Link) on free ports.
	Proxies bool
	// PostgresStandby adds the synchronous standby (component
	// postgres-standby) on a free port; the endpoints' Postgres URL is then
	// multi-host.
	PostgresStandby bool
}

// Stack starts a whole local stack of the test's own (Postgres, Redis, the
// broker, gateways and workers, and with workers the relay and the settler
// of docs/settlement.md, as processes) on free ports, with cheap
// password hashing so tests can sign up many users, and stops it when the
// test ends, printing the components' last log lines if the test failed.
func Stack(t testing.TB, options StackOptions) *stack.File {
	t.Helper()
	SkipIfShort(t)
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
	config.PostgresPort = listenPort(t)
	if options.PostgresStandby {
		config.PostgresStandby = true
		config.PostgresStandbyPort = listenPort(t)
	}
	config.RedisPort = listenPort(t)
	config.BrokerPort = listenPort(t)
	if options.Proxies {
		config.Proxies = true
		config.ProxyPort = freeRangeBelowEphemeral(t, 1+len(stack.Links))
	}
	config.Gateways, config.Workers, config.Partitions = options.Gateways, options.Workers, 16
	config.GatewayPort = freeRangeBelowEphemeral(t, max(1, options.Gateways))
	config.GatewayInternalPort = freeRangeBelowEphemeral(t, max(1, options.Gateways))
	config.WorkerMetricsPort = freeRangeBelowEphemeral(t, max(1, options.Workers))
	// The settlement pipeline follows what the workers apply: a rig of
	// services alone (no worker) has none.
	config.Settlement = options.Workers > 0
	config.SettlementPort = freeRangeBelowEphemeral(t, 2)
	config.BrokerSync = false
	config.GatewayArgs = append([]string{"--kdf-memory-kib=64", "--kdf-iterations=1", "--wait-max=20s"}, options.GatewayArgs...)
	config.WorkerArgs = options.WorkerArgs
	config.BrokerArgs = options.BrokerArgs
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	result, err := stack.Up(ctx, config)
	t.Cleanup(func() {
		if t.Failed() {
			names := []string{"broker"}
			if options.Proxies {
				names = append(names, stack.KindProxy)
			}
			if options.PostgresStandby {
				names = append(names, "postgres", stack.StandbyComponentName)
			}
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

// listenPort returns a port on 127.0.0.1 that is free now and lies below the
// kernel's ephemeral range, so the outgoing connections of the stack's own
// processes (which take ephemeral ports) cannot grab it between this choice
// and the component's start, as they can a port 0 chose. It falls back to
// FreePort when the range leaves no room below it.
func listenPort(t testing.TB) int {
	t.Helper()
	low := 32768
	if content, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(content)); len(fields) == 2 {
			if value, err := strconv.Atoi(fields[0]); err == nil {
				low = value
			}
		}
	}
	const floor = 10000
	if low-floor < 1000 {
		return FreePort(t)
	}
	for attempt := 0; attempt < 100; attempt++ {
		port := floor + rand.IntN(low-floor)
		listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		listener.Close()
		if claim(port, 1) {
			return port
		}
	}
	return FreePort(t)
}
