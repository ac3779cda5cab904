package stacktest

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgresURLGivesDistinctEmptyDatabases(t *testing.T) {
	first := PostgresURL(t)
	second := PostgresURL(t)
	if first == second {
		t.Fatalf("two calls gave the same URL %s", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := map[string]bool{}
	for _, databaseURL := range []string{first, second} {
		parsed, err := url.Parse(databaseURL)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.User.Username() != "ledger" || parsed.Hostname() != "127.0.0.1" || parsed.Query().Get("sslmode") != "disable" {
			t.Errorf("URL %s: want user ledger on 127.0.0.1 with sslmode=disable", databaseURL)
		}
		connection, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			t.Fatalf("connect %s: %v", databaseURL, err)
		}
		defer connection.Close(context.Background())
		var name string
		var tables int
		if err := connection.QueryRow(ctx, "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')").Scan(&name, &tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("database %s has %d tables, want an empty one", name, tables)
		}
		names[name] = true
		// Writing into one database must not be seen in the other.
		if _, err := connection.Exec(ctx, "CREATE TABLE marker (id int)"); err != nil {
			t.Fatalf("create table in %s: %v", name, err)
		}
	}
	if len(names) != 2 {
		t.Fatalf("two calls connected to %d distinct databases, want 2", len(names))
	}
}

func TestRedisAddrAnswersPingAndRestarts(t *testing.T) {
	redis := StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := redis.Ready.Check(ctx); err != nil {
		t.Fatalf("PING %s: %v", redis.Endpoint, err)
	}
	if err := redis.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := redis.Ready.Check(ctx); err == nil {
		t.Fatalf("PING %s succeeded after kill", redis.Endpoint)
	}
	if err := redis.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if other := RedisAddr(t); other == redis.Endpoint {
		t.Fatalf("two redis servers on the same address %s", other)
	}
}

func TestFreePort(t *testing.T) {
	if port := FreePort(t); port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
}

func TestBinaryBuildsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ledgerproof command")
	}
	first := Binary(t)
	second := Binary(t)
	if first != second {
		t.Fatalf("Binary built twice: %s and %s", first, second)
	}
	output, err := exec.Command(first, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s help: %v\n%s", first, err, output)
	}
	if !strings.Contains(string(output), "usage: ledgerproof") {
		t.Fatalf("%s help printed:\n%s", first, output)
	}
}

// TestPortClaimsAcrossProcesses: a port another live process claimed is not
// handed out here; a dead process's claim is taken over.
func TestPortClaimsAcrossProcesses(t *testing.T) {
	if err := os.MkdirAll(portClaimDirectory(), 0o777); err != nil {
		t.Fatal(err)
	}
	// Ports outside every range the helpers pick from, so no real claim is
	// disturbed.
	const live, dead = 9001, 9002
	for port, pid := range map[int]int{live: os.Getppid(), dead: 1 << 22} {
		if err := os.WriteFile(portClaimFile(port), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(portClaimFile(port)) })
	}
	if claim(live, 1) {
		t.Errorf("port %d, claimed by the live process %d, was handed out", live, os.Getppid())
	}
	if !claim(dead, 1) {
		t.Errorf("port %d, claimed by a process that is gone, was not taken over", dead)
	}
	if content, _ := os.ReadFile(portClaimFile(dead)); string(content) != strconv.Itoa(os.Getpid()) {
		t.Errorf("claim file of %d holds %q, want this process's id", dead, content)
	}
	if claim(live-1, 2) {
		t.Errorf("a range overlapping a live claim was handed out")
	}
	if _, err := os.Stat(portClaimFile(live - 1)); !os.IsNotExist(err) {
		t.Errorf("a range that failed left its first port claimed: %v", err)
	}
}
