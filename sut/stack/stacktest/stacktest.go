// Package stacktest gives integration tests real services, started by the
// project's own code (package stack): one Postgres cluster per test binary
// with a fresh database per call, a fresh redis-server per call, and the
// ledgerproof binary built once per test binary.
//
// Use it from a package's TestMain:
//
//	func TestMain(m *testing.M) { stacktest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		databaseURL := stacktest.PostgresURL(t) // empty database of its own
//		redisAddress := stacktest.RedisAddr(t)  // redis-server of its own
//		...
//	}
//
// Services are started lazily, so a package whose tests skip pays nothing.
// Every server gets SIGINT/SIGTERM if the test binary dies, so a crashed or
// timed-out test does not leave servers behind. Set LEDGERPROOF_TEST_KEEP=1
// to keep the temporary directories (logs, data) after the run.
package stacktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// binaryPackage is the package Binary builds.
const binaryPackage = "github.com/ledgerproof/ledgerproof/cmd/ledgerproof"

// startTimeout bounds starting one service (initdb included).
const startTimeout = 90 * time.Second

// shared holds the services shared by all tests of the binary; each is
// started at most once.
var shared struct {
	mutex sync.Mutex
	// root is the binary's private temporary directory.
	root string

	postgres      *stack.Component
	postgresPort  int
	postgresError error

	binary      string
	binaryError error

	databaseCounter atomic.Int64
}

// Main runs the tests, then stops every shared service started for them and
// removes their temporary directory, then exits with the tests' code.
func Main(m *testing.M) {
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stacktest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// stopShared stops the shared Postgres and removes the temporary directory.
func stopShared() error {
	shared.mutex.Lock()
	defer shared.mutex.Unlock()
	var errs []error
	if shared.postgres != nil {
		if err := shared.postgres.Stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
		shared.postgres = nil
		shared.postgresError = errors.New("stacktest: shared Postgres already stopped (called after Main's tests ended?)")
	}
	if shared.root != "" && os.Getenv("LEDGERPROOF_TEST_KEEP") == "" {
		if err := os.RemoveAll(shared.root); err != nil {
			errs = append(errs, err)
		}
		shared.root = ""
	}
	return errors.Join(errs...)
}

// rootDirectory returns the binary's private temporary directory, creating it
// (world-searchable, so a postgres OS user can reach its subdirectories).
// The caller holds shared.mutex.
func rootDirectory() (string, error) {
	if shared.root != "" {
		return shared.root, nil
	}
	removeAbandonedRoots()
	// A short path keeps the Postgres unix socket path under the OS limit.
	// The name holds our PID, so a later run can remove it if we die before
	// Main cleans up (a test timeout panics past Main).
	root, err := os.MkdirTemp("", fmt.Sprintf("lpt%d-", os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("stacktest: %w", err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return "", fmt.Errorf("stacktest: %w", err)
	}
	shared.root = root
	return root, nil
}

// removeAbandonedRoots removes the temporary directories of earlier test
// binaries that died without cleaning up (their PID is gone). Their servers
// are already gone: they got the parent-death signal.
func removeAbandonedRoots() {
	if os.Getenv("LEDGERPROOF_TEST_KEEP") != "" {
		return
	}
	candidates, _ := filepath.Glob(filepath.Join(os.TempDir(), "lpt*-*"))
	for _, candidate := range candidates {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(candidate), "lpt%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(candidate)
		}
	}
}

// SkipIfShort skips a test that starts servers or builds the binary when
// go test runs with -short: `make test-unit` runs the tests that need none,
// `make test` runs them all.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts servers or builds the binary: `make test` runs it, `make test-unit` (-short) does not")
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("stacktest: free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	listener, err := listenBelowEphemeral()
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// listenBelowEphemeral listens on a random free loopback port below the
// ephemeral range, claimed for this process (ports.go) so no other test
// process of the run is handed it.
func listenBelowEphemeral() (net.Listener, error) {
	var err error
	for attempt := 0; attempt < 200; attempt++ {
		port := lowestRangePort + rand.IntN(lowestEphemeralPort-lowestRangePort)
		var listener net.Listener
		if listener, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
			continue
		}
		if claim(port, 1) {
			return listener, nil
		}
		listener.Close()
	}
	return nil, fmt.Errorf("no free port on 127.0.0.1 below %d (last: %v)", lowestEphemeralPort, err)
}

// Listen returns a listener of the test's on a free loopback port below the
// ephemeral range, closed when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	listener, err := listenBelowEphemeral()
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(func() { listener.Close() })
	return listener
}

// PostgresURL returns the URL of a new, empty database of its own on the
// binary's shared Postgres 15 cluster (started on first use: initdb into a
// temporary directory, fsync off, 127.0.0.1 on a free port, trust auth,
// superuser role "ledger"). The database is dropped when the test ends.
// The URL has the form postgres://ledger@127.0.0.1:PORT/DBNAME?sslmode=disable.
func PostgresURL(t testing.TB) string {
	t.Helper()
	SkipIfShort(t)
	port, err := sharedPostgres()
	if err != nil {
		t.Fatalf("%v", err)
	}
	name := databaseName(t.Name(), shared.databaseCounter.Add(1))
	adminURL := stack.PostgresURL(port, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stack.CreateDatabase(ctx, adminURL, name); err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The cluster may already be gone (Main ended); nothing to drop then.
		_ = stack.DropDatabase(ctx, adminURL, name)
	})
	return stack.PostgresURL(port, name)
}

// sharedPostgres starts the shared cluster once and returns its port.
func sharedPostgres() (int, error) {
	shared.mutex.Lock()
	defer shared.mutex.Unlock()
	if shared.postgres != nil {
		return shared.postgresPort, nil
	}
	if shared.postgresError != nil {
		return 0, shared.postgresError
	}
	shared.postgresPort, shared.postgresError = startSharedPostgres()
	return shared.postgresPort, shared.postgresError
}

// startSharedPostgres is called with shared.mutex held. A port taken between
// FreePort and the server's bind is retried with another port.
func startSharedPostgres() (int, error) {
	binDir, err := stack.PostgresBinDir("")
	if err != nil {
		return 0, fmt.Errorf("stacktest: %w", err)
	}
	root, err := rootDirectory()
	if err != nil {
		return 0, err
	}
	directory := filepath.Join(root, "pg")
	const attempts = 3
	var lastError error
	for attempt := 0; attempt < attempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return 0, fmt.Errorf("stacktest: free port: %w", err)
		}
		options := stack.PostgresOptions{
			BinDir:    binDir,
			DataDir:   filepath.Join(directory, "data"),
			SocketDir: filepath.Join(directory, "run"),
			Port:      port,
			OSUser:    stack.PostgresOSUser(),
			Durable:   false,
			Settings:  []string{"max_connections=200", "shared_buffers=64MB"},
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		component, err := stack.StartPostgres(ctx, "postgres", options, filepath.Join(root, "postgres.log"), false, syscall.SIGINT)
		cancel()
		if err == nil {
			shared.postgres = component
			return port, nil
		}
		lastError = err
		if !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return 0, fmt.Errorf("stacktest: start shared postgres: %w", lastError)
}

var unsafeInDatabaseName = regexp.MustCompile(`[^a-z0-9_]+`)

// databaseName is unique in the cluster (process id and counter) and keeps a
// readable piece of the test name; at most 63 bytes, Postgres's limit.
func databaseName(testName string, counter int64) string {
	prefix := fmt.Sprintf("t%d_%d_", os.Getpid(), counter)
	readable := unsafeInDatabaseName.ReplaceAllString(strings.ToLower(testName), "_")
	if room := 63 - len(prefix); len(readable) > room {
		readable = readable[:room]
	}
	return prefix + readable
}

// RedisAddr starts a redis-server of the test's own (127.0.0.1, free port,
// no persistence, its own directory) and returns its address host:port. It
// is stopped when the test ends.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return StartRedis(t).Endpoint
}

// StartRedis is RedisAddr returning the component, so a test can Kill, Stop
// and Start (on the same port) its redis-server. It is stopped when the test
// ends, whatever its state.
func StartRedis(t testing.TB) *stack.Component {
	t.Helper()
	SkipIfShort(t)
	directory := t.TempDir()
	var lastError error
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		component, err := stack.StartRedis(ctx, "redis", port, directory, false, syscall.SIGTERM)
		cancel()
		if err == nil {
			t.Cleanup(func() {
				if err := component.Stop(10 * time.Second); err != nil {
					t.Errorf("stacktest: %v", err)
				}
			})
			return component
		}
		lastError = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("stacktest: start redis: %v", lastError)
	return nil
}

// Binary builds the ledgerproof command once per test binary and returns the
// path of the executable.
func Binary(t testing.TB) string {
	t.Helper()
	SkipIfShort(t)
	path, err := sharedBinary()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

func sharedBinary() (string, error) {
	shared.mutex.Lock()
	defer shared.mutex.Unlock()
	if shared.binary != "" || shared.binaryError != nil {
		return shared.binary, shared.binaryError
	}
	shared.binary, shared.binaryError = buildBinary(binaryPackage, "ledgerproof")
	return shared.binary, shared.binaryError
}

// buildBinary builds a main package into the binary's temporary directory;
// it is called with shared.mutex held.
func buildBinary(mainPackage, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	goMod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("stacktest: go env GOMOD: %w", err)
	}
	moduleFile := strings.TrimSpace(string(goMod))
	if moduleFile == "" || moduleFile == os.DevNull {
		return "", errors.New("stacktest: not inside the ledgerproof module (go env GOMOD is empty)")
	}
	root, err := rootDirectory()
	if err != nil {
		return "", err
	}
	output := filepath.Join(root, "bin", name)
	build := exec.CommandContext(ctx, "go", "build", "-o", output, mainPackage)
	build.Dir = filepath.Dir(moduleFile)
	if combined, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("stacktest: go build %s: %w\n%s", mainPackage, err, combined)
	}
	return output, nil
}
