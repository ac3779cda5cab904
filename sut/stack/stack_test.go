package stack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) {
	if address := os.Getenv(fakeServerEnv); address != "" {
		serveReadiness(address)
	}
	stacktest.Main(m)
}

// stackDirectory is a private, world-searchable directory (Postgres may run
// as another OS user) with a short path (the unix socket path is limited).
func stackDirectory(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lps")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("LEDGERPROOF_TEST_KEEP") != "" {
			t.Logf("stack directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// testConfig is a stack of Postgres, Redis and the broker on free ports.
func testConfig(t *testing.T, dir string) stack.Config {
	t.Helper()
	config := stack.DefaultConfig()
	config.Dir = dir
	config.Binary = stacktest.Binary(t)
	config.PostgresPort = stacktest.FreePort(t)
	config.RedisPort = stacktest.FreePort(t)
	config.BrokerPort = stacktest.FreePort(t)
	// Every other port too: the defaults (18080…, 18270…) are the local
	// stack's, which `make up` or a parallel test can hold (seen, when the
	// defaults were still in the ephemeral range: the relay's port
	// "address already in use").
	config.GatewayPort = stacktest.FreeRange(t, 4)
	config.GatewayInternalPort = stacktest.FreeRange(t, 4)
	config.WorkerMetricsPort = stacktest.FreeRange(t, 4)
	config.SettlementPort = stacktest.FreeRange(t, 4)
	config.ProxyPort = stacktest.FreeRange(t, 8)
	config.Gateways = 0
	config.Workers = 0
	config.Partitions = 4
	config.Output = testWriter{t}
	help, _ := exec.Command(config.Binary, "migrate", "-h").CombinedOutput()
	if !strings.Contains(string(help), "postgres-url") {
		t.Logf("ledgerproof migrate is not implemented yet: the stack starts without migrations")
		config.Migrate = false
	}
	return config
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestUpKillStartDown(t *testing.T) {
	dir := stackDirectory(t)
	config := testConfig(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Whatever happens, no process of the stack outlives the test.
	t.Cleanup(func() {
		if err := stack.Down(context.Background(), dir, stack.DownOptions{StopTimeout: 10 * time.Second}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	// Up through the CLI, as a user does: the processes then outlive the
	// command and are not this test's children (nobody here reaps them,
	// exactly as after a real 'ledgerproof up').
	began := time.Now()
	arguments := []string{"up", "--dir", dir,
		"--postgres-port", strconv.Itoa(config.PostgresPort),
		"--redis-port", strconv.Itoa(config.RedisPort),
		"--broker-port", strconv.Itoa(config.BrokerPort),
		"--gateways", "0", "--workers", "0", "--settlement=false", "--partitions", "4",
		"--migrate=" + strconv.FormatBool(config.Migrate)}
	upOutput, err := exec.CommandContext(ctx, config.Binary, arguments...).CombinedOutput()
	if err != nil {
		t.Fatalf("ledgerproof up: %v\n%s", err, upOutput)
	}
	t.Logf("ledgerproof up took %v:\n%s", time.Since(began), upOutput)

	file, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	pids := map[string]int{}
	for _, component := range file.Components {
		names = append(names, component.Name)
		pids[component.Name] = component.PID
		if !component.Alive() || component.State != stack.StateRunning {
			t.Errorf("%s: alive %v, state %q after up", component.Name, component.Alive(), component.State)
		}
		if len(component.Argv) == 0 || component.LogFile == "" || component.StartTime == 0 {
			t.Errorf("%s: incomplete record %+v", component.Name, component)
		}
	}
	if got := strings.Join(names, ","); got != "postgres,redis,broker" {
		t.Fatalf("components %s, want postgres,redis,broker", got)
	}
	wantPostgresURL := stack.PostgresURL(config.PostgresPort, "ledger")
	if file.Endpoints.PostgresURL != wantPostgresURL {
		t.Errorf("postgres URL %s, want %s", file.Endpoints.PostgresURL, wantPostgresURL)
	}
	if len(file.Endpoints.Brokers) != 1 || file.Endpoints.RedisAddr == "" || len(file.Endpoints.Gateways) != 0 {
		t.Errorf("endpoints %+v", file.Endpoints)
	}

	again, err := stack.Up(ctx, config)
	if err != nil || !again.AlreadyRunning {
		t.Fatalf("second up: already running %v, error %v; want an idempotent no-op", again != nil && again.AlreadyRunning, err)
	}

	output, err := exec.Command(config.Binary, "stack", "--dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(output), "broker") || strings.Count(string(output), "running") != 3 {
		t.Errorf("ledgerproof stack: %v\n%s", err, output)
	}

	// Redis: killed, the stack is half up, then started on the same port.
	redis, err := stack.Kill(ctx, dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if redis.Alive() || redis.Ready.Check(ctx) == nil {
		t.Fatal("redis still answers after kill")
	}
	if _, err := stack.Up(ctx, config); err == nil || !strings.Contains(err.Error(), "half up") {
		t.Fatalf("up on a half-up stack: %v, want a 'half up' error", err)
	}
	redis, err = stack.Start(ctx, dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if redis.PID == pids["redis"] || redis.Ready.Check(ctx) != nil {
		t.Fatalf("redis after start: PID %d (was %d)", redis.PID, pids["redis"])
	}

	// Postgres: a row committed before an immediate crash survives it.
	execute(t, ctx, file.Endpoints.PostgresURL, "CREATE TABLE survivor (id int PRIMARY KEY, note text)")
	execute(t, ctx, file.Endpoints.PostgresURL, "INSERT INTO survivor VALUES (1, 'committed before kill -9')")
	postgres, err := stack.Kill(ctx, dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if postgres.Alive() {
		t.Fatal("postmaster alive after kill")
	}
	began = time.Now()
	if _, err := stack.Start(ctx, dir, "postgres"); err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres recovered in %v", time.Since(began))
	var note string
	queryRow(t, ctx, file.Endpoints.PostgresURL, "SELECT note FROM survivor WHERE id = 1", &note)
	if note != "committed before kill -9" {
		t.Fatalf("row after crash: %q", note)
	}

	// Broker: killed and started with its data directory.
	if _, err := stack.Kill(ctx, dir, "broker"); err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Start(ctx, dir, "broker"); err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Restart(ctx, dir, "broker"); err != nil {
		t.Fatal(err)
	}

	// Down stops everything, and only once.
	file, err = stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Down(ctx, dir, stack.DownOptions{}); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, component := range file.Components {
		if component.Alive() {
			t.Errorf("%s (PID %d) alive after down", component.Name, component.PID)
		}
		if processExists(component.PID) {
			t.Errorf("%s: PID %d still exists after down", component.Name, component.PID)
		}
	}
	after, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, component := range after.Components {
		if component.State != stack.StateStopped {
			t.Errorf("%s: state %q after down, want stopped", component.Name, component.State)
		}
	}
	if _, err := os.Stat(dir + "/postgres/data/PG_VERSION"); err != nil {
		t.Errorf("down without purge removed data: %v", err)
	}
	if err := stack.Down(ctx, dir, stack.DownOptions{}); err != nil {
		t.Errorf("second down: %v", err)
	}

	// A stopped stack comes back up on the same data.
	result, err := stack.Up(ctx, config)
	if err != nil {
		t.Fatalf("up after down: %v", err)
	}
	if result.AlreadyRunning {
		t.Fatal("up after down reports the stack already running")
	}
	note = ""
	queryRow(t, ctx, file.Endpoints.PostgresURL, "SELECT note FROM survivor WHERE id = 1", &note)
	if note != "committed before kill -9" {
		t.Fatalf("row after down and up: %q", note)
	}
	if err := stack.Down(ctx, dir, stack.DownOptions{Purge: true}); err != nil {
		t.Fatalf("down --purge: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stack directory after purge: %v", err)
	}
}

// TestUpFailureStopsWhatItStarted: a gateway that cannot start makes up fail
// with its log in the error, and leaves no process running.
func TestUpFailureStopsWhatItStarted(t *testing.T) {
	dir := stackDirectory(t)
	config := testConfig(t, dir)
	config.Gateways = 1
	config.GatewayPort = stacktest.FreePort(t)
	config.GatewayArgs = []string{"--no-such-flag-for-this-test"}
	config.ReadyTimeout = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := stack.Down(context.Background(), dir, stack.DownOptions{StopTimeout: 10 * time.Second}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	_, err := stack.Up(ctx, config)
	if err == nil {
		t.Fatal("up succeeded with a gateway given an unknown flag")
	}
	t.Logf("up failed as expected: %v", err)
	if !strings.Contains(err.Error(), "gateway-0") || !strings.Contains(err.Error(), "no-such-flag-for-this-test") {
		t.Fatalf("error does not name the gateway and show its log: %v", err)
	}
	file, loadError := stack.Load(dir)
	if loadError != nil {
		t.Fatal(loadError)
	}
	for _, component := range file.Components {
		if component.Alive() {
			t.Errorf("%s (PID %d) still running after a failed up", component.Name, component.PID)
		}
	}
}

// processExists reports whether any process has pid (zombies excluded).
func processExists(pid int) bool {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(content[strings.LastIndexByte(string(content), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func execute(t *testing.T, ctx context.Context, databaseURL, statement string) {
	t.Helper()
	connection, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close(context.Background())
	if _, err := connection.Exec(ctx, statement); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}

func queryRow(t *testing.T, ctx context.Context, databaseURL, query string, destination ...any) {
	t.Helper()
	connection, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close(context.Background())
	if err := connection.QueryRow(ctx, query).Scan(destination...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*stack.Config)
		want   string
	}{
		{"negative gateways", func(c *stack.Config) { c.Gateways = -1 }, "gateways -1"},
		{"no partitions", func(c *stack.Config) { c.Partitions = 0 }, "partitions 0"},
		{"port clash", func(c *stack.Config) { c.RedisPort = c.PostgresPort }, "given to both postgres and redis"},
		{"gateway range hits worker metrics", func(c *stack.Config) { c.GatewayPort = c.WorkerMetricsPort - 1 }, "given to both gateway-1 and worker-0 metrics"},
		{"port out of range", func(c *stack.Config) { c.BrokerPort = 70000 }, "broker port 70000"},
		{"settler port taken", func(c *stack.Config) { c.SettlementPort = c.WorkerMetricsPort - 1 }, "given to both worker-0 metrics and settler metrics"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := stack.DefaultConfig()
			config.Dir = t.TempDir()
			test.change(&config)
			_, err := stack.Up(context.Background(), config)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("error %v, want one containing %q", err, test.want)
			}
		})
	}
}

func TestOperateOnMissingStack(t *testing.T) {
	_, err := stack.Kill(context.Background(), t.TempDir(), "redis")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kill in an empty directory: %v, want a not-exist error", err)
	}
}

func TestPlanPassesSeededBugsToGatewaysAndWorkers(t *testing.T) {
	t.Parallel()
	config := stack.DefaultConfig()
	config.Binary = "/bin/ledgerproof"
	config.SeededBugs = []string{"skip-dedupe", "no-idempotency"}
	config.UnsafeAllowSeededBugs = true
	config.GatewayArgs = []string{"--rate-limit=-1"}
	components := stack.PlanForTest(config, t.TempDir())
	seen := 0
	for _, component := range components {
		argv := strings.Join(component.Argv, " ")
		hasBugs := strings.Contains(argv, "--seeded-bug skip-dedupe --seeded-bug no-idempotency --unsafe-allow-seeded-bugs")
		wantBugs := component.Kind == stack.KindGateway || component.Kind == stack.KindWorker ||
			component.Kind == stack.KindRelay || component.Kind == stack.KindSettler
		if hasBugs != wantBugs {
			t.Errorf("%s: argv %q", component.Name, argv)
		}
		if wantBugs {
			seen++
		}
		if component.Kind == stack.KindGateway && !strings.HasSuffix(argv, "--rate-limit=-1") {
			t.Errorf("%s: --gateway-arg is not last: %q", component.Name, argv)
		}
	}
	if seen != config.Gateways+config.Workers+2 {
		t.Errorf("%d gateways, workers, relay and settler, want %d", seen, config.Gateways+config.Workers+2)
	}
}

// TestPlanGivesGatewaysTheTestRigLimitsAndAnInternalListener: every gateway
// gets the test rig's limits before the caller's arguments (which may set
// them again), listens on its internal port (GatewayPort+300 unless set),
// is probed there, and records it as its endpoint; the public API stays in
// Endpoints.Gateways.
func TestPlanGivesGatewaysTheTestRigLimitsAndAnInternalListener(t *testing.T) {
	t.Parallel()
	config := stack.DefaultConfig()
	config.Binary = "/bin/ledgerproof"
	config.GatewayArgs = []string{"--signin-address-rate=0"}
	file := &stack.File{}
	components := stack.PlanWithFileForTest(config, t.TempDir(), file)
	gateways := 0
	for _, component := range components {
		if component.Kind != stack.KindGateway {
			continue
		}
		argv := strings.Join(component.Argv, " ")
		internal := fmt.Sprintf("127.0.0.1:%d", 18380+gateways)
		if !strings.Contains(argv, "--internal-listen "+internal) || component.Endpoint != "http://"+internal ||
			component.Ready.Target != "http://"+internal+"/readyz" {
			t.Errorf("%s: argv %q, endpoint %s, probe %s; want the internal listener %s", component.Name, argv, component.Endpoint, component.Ready.Target, internal)
		}
		rig := strings.Index(argv, strings.Join(stack.TestRigGatewayArgs, " "))
		if rig < 0 || rig > strings.Index(argv, "--signin-address-rate=0") {
			t.Errorf("%s: the test rig's limits are missing or after the caller's arguments: %q", component.Name, argv)
		}
		gateways++
	}
	if gateways != config.Gateways || len(file.Endpoints.Gateways) != gateways || file.Endpoints.Gateways[0] != "http://127.0.0.1:18080" ||
		len(file.Endpoints.GatewayInternal) != gateways || file.Endpoints.GatewayInternal[1] != "http://127.0.0.1:18381" {
		t.Fatalf("%d gateways, endpoints %+v", gateways, file.Endpoints)
	}

	config.GatewayInternalPort = config.WorkerMetricsPort
	if err := stack.ValidateForTest(config); err == nil || !strings.Contains(err.Error(), "internal") {
		t.Fatalf("an internal port on the workers' metrics port: %v", err)
	}
}
