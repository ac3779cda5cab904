package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/redis"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// The crash point drills: load runs, a point is armed through the process's
// admin endpoint, the process dies there (exit status 87), it is started
// again, the load finishes, and every acknowledged transfer must be in the
// ledger exactly once with the amounts the client asked for.

// crashFunding is what each user of a drill starts with.
const crashFunding = 10_000

// transferRecord is one transfer of a drill's load, acknowledged at last.
type transferRecord struct {
	key           string
	from, to      int64
	amountMinor   int64
	transactionID string
	// brokenConnections counts the attempts that got no HTTP answer at all:
	// the outcome of those attempts was unknown to the client.
	brokenConnections int
	// replayed is set when the acknowledgement was a replay of an earlier
	// attempt's effect (Idempotent-Replayed).
	replayed bool
}

// crashLoad is a drill's load: transfers among users, each retried with
// its key until acknowledged, alternating gateways between attempts.
type crashLoad struct {
	mutex        sync.Mutex
	acknowledged []transferRecord
	issued       atomic.Int64
	retries      atomic.Int64
}

func (l *crashLoad) records() []transferRecord {
	l.mutex.Lock()
	defer l.mutex.Unlock()
	return append([]transferRecord(nil), l.acknowledged...)
}

// run sends perGoroutine transfers from each of goroutines goroutines,
// pausing pause between transfers so the load outlasts a crash and restart.
// A transfer is retried with the same key on connection errors, 409 (its
// first attempt is in flight), 429 and 5xx, until acknowledged or ctx ends;
// any other answer fails the test.
func (l *crashLoad) run(ctx context.Context, t *testing.T, s *testStack, users []user, goroutines, perGoroutine int, pause time.Duration) {
	gateways := len(s.file.Endpoints.Gateways)
	var group sync.WaitGroup
	for g := range goroutines {
		group.Add(1)
		go func() {
			defer group.Done()
			random := rand.New(rand.NewPCG(uint64(g), 87))
			for i := 0; i < perGoroutine && ctx.Err() == nil; i++ {
				from, to := users[random.IntN(len(users))], users[random.IntN(len(users))]
				if from.accountID == to.accountID {
					continue
				}
				record := transferRecord{key: fmt.Sprintf("crash-load-%d-%d", g, i), from: from.accountID, to: to.accountID,
					amountMinor: int64(1 + random.IntN(50))}
				l.issued.Add(1)
				for attempt := 0; ctx.Err() == nil; attempt++ {
					if attempt > 0 {
						l.retries.Add(1)
						time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
					}
					// Another gateway on each attempt: a retry takes another
					// path when one is there.
					response, err := from.on(s, (i+attempt)%gateways).Transfer(ctx, record.key, record.from, record.to, record.amountMinor, 0)
					switch {
					case err != nil:
						if ctx.Err() == nil {
							record.brokenConnections++
						}
						continue
					case response.Status == http.StatusAccepted || response.Status == http.StatusOK:
					case response.Status == http.StatusConflict || response.Status == http.StatusTooManyRequests || response.Status >= 500:
						continue
					default:
						t.Errorf("transfer %s: unexpected answer %d %s", record.key, response.Status, response.Body)
						return
					}
					var outcome client.Transaction
					if err := response.Decode(&outcome); err != nil || outcome.TransactionID == "" {
						t.Errorf("transfer %s: acknowledged with %s", record.key, response.Body)
						return
					}
					record.transactionID, record.replayed = outcome.TransactionID, response.Replayed
					l.mutex.Lock()
					l.acknowledged = append(l.acknowledged, record)
					l.mutex.Unlock()
					break
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	group.Wait()
}

// crashDrill is one drill against the stack s.
type crashDrill struct {
	s         *testStack
	users     []user
	component string
	arm       crash.ArmRequest
	load      crashLoad
}

// start begins the load in the background and returns a channel closed when
// it ended.
func (d *crashDrill) start(ctx context.Context, goroutines, perGoroutine int, pause time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.load.run(ctx, d.s.t, d.s, d.users, goroutines, perGoroutine, pause)
	}()
	return done
}

// crash arms the drill's point once acknowledgedBefore transfers were
// acknowledged, and waits until the component died at it: the process is
// gone and its log's last words are the crash point's line with exit status
// 87.
func (d *crashDrill) crash(acknowledgedBefore int) {
	t := d.s.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(d.load.records()) < acknowledgedBefore {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d transfers acknowledged before arming", len(d.load.records()), acknowledgedBefore)
		}
		time.Sleep(10 * time.Millisecond)
	}
	component, err := d.s.file.Component(d.component)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := crash.NewClient(component.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	armed, err := admin.Arm(ctx, d.arm)
	if err != nil {
		t.Fatalf("arm %s on %s: %v", d.arm.Point, d.component, err)
	}
	// The answer says the point is armed (it is armed before the answer
	// leaves). No listing is asked for here: a busy worker hits a point
	// armed for its 2nd hit within milliseconds, and a list request then
	// meets a process that already died of it (make test beside a CPU-bound
	// process failed on exactly that EOF). sut/crash tests the listing.
	if armed.Point == "" {
		t.Fatalf("arm %s on %s: the answer names no point", d.arm.Point, d.component)
	}
	t.Logf("armed %+v on %s after %d acknowledged transfers", armed, d.component, len(d.load.records()))

	for {
		file, err := stack.Load(d.s.dir)
		if err != nil {
			t.Fatal(err)
		}
		component, err := file.Component(d.component)
		if err != nil {
			t.Fatal(err)
		}
		if !component.Alive() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still alive a minute after arming %s", d.component, d.arm.Point)
		}
		time.Sleep(10 * time.Millisecond)
	}
	log, err := os.ReadFile(component.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("CRASH POINT %s HIT: exiting with status %d", armed.Point, crash.ExitStatus)
	if !strings.Contains(string(log), line) || !strings.Contains(string(log), "exit_status=87") {
		t.Fatalf("%s died, but its log does not say %q:\n%s", d.component, line, stack.LogTail(component.LogFile, 10))
	}
	t.Logf("%s died at %s after %d acknowledged transfers", d.component, armed.Point, len(d.load.records()))
}

// restart starts the dead component again, as the chaos executor does.
func (d *crashDrill) restart() {
	d.s.t.Helper()
	d.s.operate(stack.ActionStart, d.component)
}

// check waits for every acknowledged transfer to reach the ledger and
// asserts exactly one effect each: one row per acknowledged transaction id
// and no transfer the client was not acknowledged, two postings per settled
// transfer, each user's balance equal to its funding plus the settled
// transfers the client asked for (so no effect twice, none lost, none with
// another amount), totals conserved, balances equal to postings.
func (d *crashDrill) check(funding map[int64]int64) []transferRecord {
	s, t := d.s, d.s.t
	t.Helper()
	records := d.load.records()
	if int64(len(records)) != d.load.issued.Load() {
		t.Fatalf("%d transfers issued, %d acknowledged: the load did not finish", d.load.issued.Load(), len(records))
	}
	ids := make([]string, len(records))
	for i, record := range records {
		ids[i] = record.transactionID
	}
	s.waitApplied(ids, 60*time.Second)
	ctx := context.Background()
	rows, err := s.db.Query(ctx, `SELECT t.id::text, t.status, t.amount, t.source_account_id, t.destination_account_id,
		(SELECT count(*) FROM postings p WHERE p.transaction_id = t.id)
		FROM transactions t WHERE t.id = ANY($1::uuid[])`, ids)
	if err != nil {
		t.Fatal(err)
	}
	type stored struct {
		status           string
		amount, from, to int64
		postings         int
	}
	ledgerRows := map[string]stored{}
	for rows.Next() {
		var id string
		var row stored
		if err := rows.Scan(&id, &row.status, &row.amount, &row.from, &row.to, &row.postings); err != nil {
			t.Fatal(err)
		}
		ledgerRows[id] = row
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var transfersInLedger int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE kind = 'transfer'`).Scan(&transfersInLedger); err != nil {
		t.Fatal(err)
	}
	if transfersInLedger != len(records) {
		t.Fatalf("the ledger holds %d transfers, the client was acknowledged %d", transfersInLedger, len(records))
	}
	want := map[int64]int64{}
	for account, amount := range funding {
		want[account] = amount
	}
	settled := 0
	for _, record := range records {
		row, ok := ledgerRows[record.transactionID]
		switch {
		case !ok:
			t.Fatalf("acknowledged transfer %s (%s) is not in the ledger", record.key, record.transactionID)
		case row.amount != record.amountMinor || row.from != record.from || row.to != record.to:
			t.Fatalf("transfer %s: the ledger has %d from %d to %d, the client asked %d from %d to %d",
				record.key, row.amount, row.from, row.to, record.amountMinor, record.from, record.to)
		case row.status == "settled" && row.postings != 2, row.status != "settled" && row.postings != 0:
			t.Fatalf("transfer %s is %s with %d postings", record.key, row.status, row.postings)
		}
		if row.status == "settled" {
			settled++
			want[record.from] -= record.amountMinor
			want[record.to] += record.amountMinor
		}
	}
	for account, balance := range want {
		if got := s.balance(account); got != balance {
			t.Errorf("account %d: balance %d, the acknowledged transfers make it %d", account, got, balance)
		}
	}
	s.checkTotal(d.users, int64(len(d.users))*crashFunding)
	s.checkLedger()
	broken := 0
	for _, record := range records {
		if record.brokenConnections > 0 {
			broken++
		}
	}
	t.Logf("%d transfers acknowledged (%d settled), %d retried attempts, %d transfers saw a broken connection",
		len(records), settled, d.load.retries.Load(), broken)
	return records
}

// newCrashDrill starts users on s, each funded with crashFunding, and
// returns the drill and the funding per account.
func newCrashDrill(s *testStack, component string, arm crash.ArmRequest) (*crashDrill, map[int64]int64) {
	users := s.fundedUsers(8, crashFunding)
	funding := map[int64]int64{}
	for _, u := range users {
		funding[u.accountID] = crashFunding
	}
	return &crashDrill{s: s, users: users, component: component, arm: arm}, funding
}

// expectNoCrashEndpoint checks a process started without
// --enable-crash-points has no crash points endpoint.
func expectNoCrashEndpoint(t *testing.T, s *testStack, name string) {
	t.Helper()
	component, err := s.file.Component(name)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := crash.NewClient(component.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.List(context.Background()); !errors.Is(err, crash.ErrNotEnabled) {
		t.Fatalf("%s, started without --enable-crash-points, answered its crash points endpoint: %v", name, err)
	}
}

// TestCrashPointWorkerMidBatch: the worker dies inside a batch's open
// transaction, everything written and nothing committed. Postgres must roll
// the batch back, and the restarted worker apply it once from the stored
// offset.
func TestCrashPointWorkerMidBatch(t *testing.T) {
	s := startStackWith(t, 1, 1, nil, []string{"--enable-crash-points", "--linger=20ms"})
	expectNoCrashEndpoint(t, s, "gateway-0")
	drill, funding := newCrashDrill(s, "worker-0", crash.ArmRequest{Point: "worker.mid-batch", After: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := drill.start(ctx, 8, 60, 5*time.Millisecond)
	drill.crash(80)
	drill.restart()
	<-done
	drill.check(funding)
	log, err := os.ReadFile(filepath.Join(s.dir, "logs", "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "unexpected EOF on client connection with an open transaction") {
		t.Fatal("Postgres saw no connection vanish with a transaction open: the crash did not land inside a batch")
	}
}

// TestCrashPointWorkerAfterCommitBeforeCache: the worker dies after a
// batch committed and before it updated Redis. The ledger must be right
// (the batch is not applied again: its offset committed with it); the cache
// is left stale for the batch's accounts until a later batch touches them.
func TestCrashPointWorkerAfterCommitBeforeCache(t *testing.T) {
	s := startStackWith(t, 1, 1, nil, []string{"--enable-crash-points"})
	drill, funding := newCrashDrill(s, "worker-0", crash.ArmRequest{Point: "after-commit-before-cache", After: 2})
	cache, err := redis.New(redis.Config{Addr: s.file.Endpoints.RedisAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := drill.start(ctx, 8, 60, 5*time.Millisecond)
	drill.crash(80)
	// Nothing applies while the worker is dead: what the cache says now is
	// what the crash left.
	if stale := staleCachedBalances(t, s, cache, drill.users); len(stale) == 0 {
		t.Fatal("no cached balance differs from the ledger after a crash between the commit and the cache update")
	} else {
		t.Logf("after the crash, %d accounts' cached balances are stale: %v", len(stale), stale)
	}
	drill.restart()
	<-done
	drill.check(funding)
	t.Logf("after the load drained, %d accounts' cached balances are stale", len(staleCachedBalances(t, s, cache, drill.users)))
	// A later batch that touches an account writes its balance from the
	// ledger's locked row: one settled deposit per account corrects them all.
	for _, u := range drill.users {
		s.fund(u, 1)
	}
	if stale := staleCachedBalances(t, s, cache, drill.users); len(stale) != 0 {
		t.Fatalf("cached balances still stale after a later batch touched every account: %v", stale)
	}
}

// staleCachedBalances returns, per account whose cached balance is missing
// or differs from the ledger, the pair [cached, ledger].
func staleCachedBalances(t *testing.T, s *testStack, cache *redis.Client, users []user) map[int64][2]int64 {
	t.Helper()
	ids := make([]int64, len(users))
	for i, u := range users {
		ids[i] = u.accountID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cached, err := cache.CachedBalances(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	stale := map[int64][2]int64{}
	for _, id := range ids {
		balance, found := cached[id]
		if ledgerBalance := s.balance(id); !found || balance != ledgerBalance {
			stale[id] = [2]int64{balance, ledgerBalance}
		}
	}
	return stale
}

// TestCrashPointGatewayAfterAckBeforeResponse: a gateway dies after the
// broker acknowledged a command and before it answered. The client sees a
// broken connection (unknown outcome), retries with the same key through the
// other gateway and, once the dead one is back, through it too, and gets
// exactly one effect: the retry of the acknowledged command is answered as a
// replay.
func TestCrashPointGatewayAfterAckBeforeResponse(t *testing.T) {
	// A short in-flight lease: the retry of a request whose gateway died
	// waits for it (409) before taking over.
	s := startStackWith(t, 2, 1, []string{"--enable-crash-points", "--produce-timeout=2s", "--wait-max=5s", "--in-flight-lease=8s"}, nil)
	expectNoCrashEndpoint(t, s, "worker-0")
	drill, funding := newCrashDrill(s, "gateway-0", crash.ArmRequest{Point: "gateway.after-ack-before-response", After: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := drill.start(ctx, 8, 60, 5*time.Millisecond)
	drill.crash(80)
	drill.restart()
	<-done
	records := drill.check(funding)
	resolvedByReplay := 0
	for _, record := range records {
		if record.brokenConnections > 0 && record.replayed {
			resolvedByReplay++
		}
	}
	if resolvedByReplay == 0 {
		t.Fatal("no transfer whose connection broke was answered as a replay: the command acknowledged before the crash was not found again")
	}
	t.Logf("%d transfers with a broken connection were answered as replays of their first attempt", resolvedByReplay)
}
