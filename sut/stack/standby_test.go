package stack_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// componentURL is the single-host URL of database on a Postgres component.
func componentURL(t *testing.T, file *stack.File, name, database string) string {
	t.Helper()
	component, err := file.Component(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(component.Endpoint, "/ledger?", "/"+database+"?", 1)
}

// TestStandbyIsSynchronous: with a standby, the stack's URL is multi-host,
// the standby streams synchronously, a commit waits while the standby is
// down and completes once it is back, and what the primary committed is on
// the standby.
func TestStandbyIsSynchronous(t *testing.T) {
	file := stacktest.Stack(t, stacktest.StackOptions{PostgresStandby: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var names []string
	for _, component := range file.Components {
		names = append(names, component.Name)
	}
	if got := strings.Join(names, ","); got != "postgres,postgres-standby,redis,broker" {
		t.Fatalf("components %s, want postgres,postgres-standby,redis,broker", got)
	}
	standby, err := file.Component(stack.StandbyComponentName)
	if err != nil {
		t.Fatal(err)
	}
	primaryURL := componentURL(t, file, "postgres", "ledger")
	standbyURL := standby.Endpoint
	if !strings.Contains(file.Endpoints.PostgresURL, ",127.0.0.1:") || !strings.Contains(file.Endpoints.PostgresURL, "target_session_attrs=read-write") {
		t.Fatalf("postgres URL %s is not multi-host read-write", file.Endpoints.PostgresURL)
	}
	var applicationName, state, syncState string
	queryRow(t, ctx, primaryURL, "SELECT application_name, state, sync_state FROM pg_stat_replication", &applicationName, &state, &syncState)
	if state != "streaming" || syncState != "sync" {
		t.Fatalf("replication of %s: state %q, sync_state %q; want streaming, sync", applicationName, state, syncState)
	}
	var inRecovery bool
	queryRow(t, ctx, standby.Ready.Target, "SELECT pg_is_in_recovery()", &inRecovery)
	if !inRecovery {
		t.Fatal("the standby is not in recovery")
	}
	var port int
	queryRow(t, ctx, file.Endpoints.PostgresURL, "SELECT inet_server_port()", &port)
	if want := stack.PostgresURL(port, "ledger"); want != componentURL(t, file, "postgres", "ledger") {
		t.Fatalf("the multi-host URL reached port %d, not the primary", port)
	}

	// An acknowledged commit is flushed on the standby (synchronous_commit
	// on = remote flush), and soon replayed there: visible to its readers.
	execute(t, ctx, file.Endpoints.PostgresURL, "CREATE TABLE replicated (id int PRIMARY KEY)")
	execute(t, ctx, file.Endpoints.PostgresURL, "INSERT INTO replicated VALUES (1)")
	var count int
	waitRows := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := tryQueryRow(ctx, standbyURL, "SELECT count(*) FROM replicated", &count)
			if err == nil && count == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the standby has %d rows (error %v), want %d", count, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRows(1)
	if err := tryExecute(ctx, standbyURL, "INSERT INTO replicated VALUES (2)"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write on the standby: %v, want a read-only error", err)
	}

	// Standby down: a commit on the primary waits for it (correctness
	// first), and completes when the standby is back.
	if _, err := stack.Kill(ctx, file.Dir, stack.StandbyComponentName); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() { committed <- tryExecute(ctx, primaryURL, "INSERT INTO replicated VALUES (3)") }()
	select {
	case err := <-committed:
		t.Fatalf("a commit returned (%v) while the synchronous standby was down", err)
	case <-time.After(time.Second):
	}
	if _, err := stack.Start(ctx, file.Dir, stack.StandbyComponentName); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("the waiting commit failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting commit did not complete within 30s of the standby's restart")
	}
	waitRows(2)
}

// TestFailoverRefusals: failover needs a standby, and a failed-over primary
// never starts again.
func TestFailoverRefusals(t *testing.T) {
	t.Run("no standby", func(t *testing.T) {
		file := stacktest.Stack(t, stacktest.StackOptions{})
		_, err := stack.Failover(context.Background(), file.Dir)
		if err == nil || !strings.Contains(err.Error(), "no Postgres standby") {
			t.Fatalf("failover without a standby: %v", err)
		}
		primary, err := stack.Load(file.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if component, _ := primary.Component("postgres"); !component.Alive() {
			t.Fatal("a refused failover killed the primary")
		}
	})
	t.Run("old primary fenced", func(t *testing.T) {
		file := stacktest.Stack(t, stacktest.StackOptions{PostgresStandby: true})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Through the CLI, as a drill by hand does.
		output, err := exec.CommandContext(ctx, stacktest.Binary(t), "stack", "--dir", file.Dir, "--action", "failover").CombinedOutput()
		if err != nil || !strings.Contains(string(output), "postgres-standby promoted") {
			t.Fatalf("ledgerproof stack --action failover: %v\n%s", err, output)
		}
		t.Logf("%s", strings.TrimSpace(string(output)))
		after, err := stack.Load(file.Dir)
		if err != nil {
			t.Fatal(err)
		}
		promoted, err := after.Component(stack.StandbyComponentName)
		if err != nil {
			t.Fatal(err)
		}
		if after.PrimaryName() != stack.StandbyComponentName || len(after.Failovers) != 1 || after.Failovers[0].From != "postgres" {
			t.Fatalf("stack file after failover: primary %q, failovers %+v", after.PrimaryName(), after.Failovers)
		}
		if _, err := stack.Start(ctx, file.Dir, "postgres"); err == nil || !strings.Contains(err.Error(), "second primary") {
			t.Fatalf("start of the failed-over primary: %v, want a refusal", err)
		}
		if _, err := stack.Failover(ctx, file.Dir); err == nil || !strings.Contains(err.Error(), "no standby to promote") {
			t.Fatalf("second failover: %v, want 'no standby to promote'", err)
		}
		var port int
		queryRow(t, ctx, file.Endpoints.PostgresURL, "SELECT inet_server_port()", &port)
		if stack.PostgresURL(port, "ledger") != promoted.Endpoint {
			t.Fatalf("the multi-host URL reached port %d, not the promoted %s", port, promoted.Endpoint)
		}
	})
}

// TestFailoverUnderLoad fails Postgres over while transfers flow through two
// gateways and two workers, with clients retrying with the same key; the load
// goes on against the promoted server, and afterwards every acknowledged
// transfer is in its ledger exactly once, money is conserved and balances
// equal postings.
func TestFailoverUnderLoad(t *testing.T) {
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 2, Workers: 2, PostgresStandby: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const userCount, opening = 10, int64(10_000)
	users := make([]*client.Client, userCount)
	accounts := make([]int64, userCount)
	for i := range users {
		users[i], accounts[i] = signedUp(t, ctx, file.Endpoints.Gateways[i%2], fmt.Sprintf("before-%d", i))
		response, err := users[i].Deposit(ctx, fmt.Sprintf("fund-%d", i), accounts[i], opening, 10*time.Second)
		if err != nil || response.Status != http.StatusOK {
			t.Fatalf("fund: %v %d %s", err, response.Status, response.Body)
		}
	}

	var (
		mutex        sync.Mutex
		acknowledged []string
		failures     atomic.Int64
	)
	loadContext, stopLoad := context.WithTimeout(ctx, 40*time.Second)
	defer stopLoad()
	var group sync.WaitGroup
	for g := range 12 {
		group.Add(1)
		go func() {
			defer group.Done()
			random := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; loadContext.Err() == nil; i++ {
				from, to := random.IntN(userCount), random.IntN(userCount)
				if from == to {
					continue
				}
				key := fmt.Sprintf("failover-%d-%d", g, i)
				amount := int64(1 + random.IntN(50))
				// Same key on every retry, as a careful client does when
				// the answer is a 5xx or a broken connection.
				for attempt := 0; loadContext.Err() == nil; attempt++ {
					gateway := client.New(file.Endpoints.Gateways[(g+attempt)%2])
					gateway.Token = users[from].Token
					gateway.HTTP.Timeout = 5 * time.Second
					response, err := gateway.Transfer(loadContext, key, accounts[from], accounts[to], amount, 0)
					if err == nil && (response.Status == http.StatusAccepted || response.Status == http.StatusOK) {
						var outcome client.Transaction
						if err := response.Decode(&outcome); err != nil {
							t.Errorf("acknowledged transfer: %v", err)
						}
						mutex.Lock()
						acknowledged = append(acknowledged, outcome.TransactionID)
						mutex.Unlock()
						break
					}
					if err == nil && response.Status < 500 {
						t.Errorf("transfer %s: %d %s", key, response.Status, response.Body)
						break
					}
					failures.Add(1)
					time.Sleep(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
				}
			}
		}()
	}
	acknowledgedCount := func() int {
		mutex.Lock()
		defer mutex.Unlock()
		return len(acknowledged)
	}
	waitFor := func(what string, condition func() bool) {
		t.Helper()
		for !condition() {
			if loadContext.Err() != nil {
				t.Fatalf("%s: not within the load's time", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	applied := func(url string) int {
		var count int
		if err := tryQueryRow(ctx, url, "SELECT count(*) FROM transactions WHERE kind = 'transfer'", &count); err != nil {
			return -1
		}
		return count
	}

	// Fail over while batches are being applied.
	waitFor("500 acknowledged transfers before the failover", func() bool { return acknowledgedCount() >= 500 })
	waitFor("transfers applied before the failover", func() bool { return applied(file.Endpoints.PostgresURL) >= 400 })
	atFailover := acknowledgedCount()
	result, err := stack.Failover(ctx, file.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover after %d acknowledgements: %s killed at %s, %s promoted %v later, accepted writes %v after the kill",
		atFailover, result.From, result.KilledAt.Format(time.RFC3339Nano), result.To, result.PromotedAt.Sub(result.KilledAt), result.KillToWritable)
	promotedURL := componentURL(t, file, stack.StandbyComponentName, "ledger")
	appliedAtFailover := applied(promotedURL)

	// The load goes on against the promoted server: more acknowledgements,
	// and the workers apply them there.
	waitFor("300 acknowledged transfers after the failover", func() bool { return acknowledgedCount() >= atFailover+300 })
	waitFor("transfers applied on the promoted server", func() bool { return applied(promotedURL) >= appliedAtFailover+100 })
	// Gateways write to Postgres directly too: a signup on each.
	for i, gateway := range file.Endpoints.Gateways {
		signedUp(t, ctx, gateway, fmt.Sprintf("after-%d", i))
	}
	stopLoad()
	group.Wait()
	if t.Failed() {
		t.FailNow()
	}

	db, err := pgxpool.New(ctx, file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var port int
	if err := db.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if stack.PostgresURL(port, "ledger") != promotedURL {
		t.Fatalf("the stack's URL reaches port %d, not the promoted server %s", port, promotedURL)
	}
	// Every process is ready again (its readiness pings Postgres through its
	// pool) and holds connections to the promoted server.
	for _, component := range after(t, file.Dir).Components {
		if component.Kind != stack.KindGateway && component.Kind != stack.KindWorker {
			continue
		}
		readyContext, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := component.Ready.WaitReady(readyContext, nil)
		cancel()
		if err != nil {
			t.Errorf("%s after the failover: %v", component.Name, err)
		}
	}
	var reconnected []string
	if err := db.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT application_name ORDER BY application_name), '{}')
		FROM pg_stat_activity WHERE application_name ~ '^(gateway|worker)-'`).Scan(&reconnected); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reconnected, ","); got != "gateway-0,gateway-1,worker-0,worker-1" {
		t.Errorf("processes connected to the promoted server: %s, want both gateways and both workers", got)
	}

	mutex.Lock()
	ids := append([]string(nil), acknowledged...)
	mutex.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE id = ANY($1::uuid[])`, ids).Scan(&found); err != nil {
			t.Fatal(err)
		}
		if found == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d acknowledged transfers are in the promoted server's ledger", found, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	checks := []struct {
		name  string
		query string
		args  []any
		want  int64
	}{
		{"acknowledged ids settled or rejected, never pending", `SELECT count(*) FROM transactions WHERE id = ANY($1::uuid[]) AND status NOT IN ('settled', 'rejected')`, []any{ids}, 0},
		{"settled transfers with other than two postings", `SELECT count(*) FROM transactions t WHERE t.id = ANY($1::uuid[]) AND t.status = 'settled'
			AND (SELECT count(*) FROM postings p WHERE p.transaction_id = t.id) <> 2`, []any{ids}, 0},
		{"transactions whose postings do not sum to zero", `SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING sum(amount) <> 0) x`, nil, 0},
		{"idempotency keys applied twice", `SELECT count(*) FROM (SELECT user_id, idempotency_key FROM transactions GROUP BY 1, 2 HAVING count(*) > 1) x`, nil, 0},
		{"balances that differ from their postings", `SELECT count(*) FROM accounts a WHERE kind = 'user'
			AND balance <> coalesce((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`, nil, 0},
		{"total of the users' balances", `SELECT coalesce(sum(balance), 0) FROM accounts WHERE id = ANY($1::bigint[])`, []any{accounts}, userCount * opening},
	}
	for _, check := range checks {
		var got int64
		if err := db.QueryRow(ctx, check.query, check.args...).Scan(&got); err != nil {
			t.Fatalf("%s: %v", check.name, err)
		}
		if got != check.want {
			t.Errorf("%s: %d, want %d", check.name, got, check.want)
		}
	}
	t.Logf("%d transfers acknowledged (%d after the failover), %d attempts retried; ledger on the promoted server checked",
		len(ids), len(ids)-atFailover, failures.Load())
}

// signedUp signs a new user up and in on gateway, retrying for a bounded
// time while Postgres fails over.
func signedUp(t *testing.T, ctx context.Context, gateway, label string) (*client.Client, int64) {
	t.Helper()
	email := fmt.Sprintf("%s-%d@example.com", label, time.Now().UnixNano())
	user := client.New(gateway)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, accountID, err := user.Signup(ctx, email, "correct horse")
		if err == nil {
			err = user.Signin(ctx, email, "correct horse")
		}
		if err == nil {
			return user, accountID
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign up %s on %s: %v", email, gateway, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryExecute(ctx context.Context, url, statement string) error {
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer connection.Close(context.Background())
	_, err = connection.Exec(ctx, statement)
	return err
}

func tryQueryRow(ctx context.Context, url, query string, into ...any) error {
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer connection.Close(context.Background())
	err = connection.QueryRow(ctx, query).Scan(into...)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: no rows", query)
	}
	return err
}

// after loads the stack file of dir.
func after(t *testing.T, dir string) *stack.File {
	t.Helper()
	file, err := stack.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return file
}
