package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestLocalStackPlan runs a short plan with `ledgerproof chaos` against a
// real local stack under light load from sut/client: the broker killed and
// started, worker-0 killed and started, Redis paused and resumed. Every
// fault must be applied and logged, every component must run afterwards,
// and deposits must settle again once the plan is over.
func TestLocalStackPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole stack")
	}
	binary := stacktest.Binary(t)
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: 1, Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The worker owning a partition comes from the consumer group.
	executor, err := NewLocalExecutor(file.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	if err := waitFor(ctx, 30*time.Second, func() bool {
		owner, err = executor.PartitionOwner(ctx, 5)
		return err == nil
	}); err != nil {
		t.Fatalf("owner of partition 5: %v", err)
	}
	if owner != "worker-0" {
		t.Fatalf("owner of partition 5 is %q, want worker-0", owner)
	}

	// Pause freezes: Redis stops answering, and answers again on resume.
	if err := executor.Process(ctx, ActionPause, "redis"); err != nil {
		t.Fatal(err)
	}
	if err := redisPing(file.Endpoints.RedisAddr, 300*time.Millisecond); err == nil {
		t.Error("paused Redis answered PING")
	}
	if err := executor.Process(ctx, ActionResume, "redis"); err != nil {
		t.Fatal(err)
	}
	if err := redisPing(file.Endpoints.RedisAddr, 2*time.Second); err != nil {
		t.Errorf("resumed Redis: %v", err)
	}

	// Dry run: the timeline, checked against the stack; a plan naming a
	// component the stack lacks is rejected before anything runs.
	dryPlan := filepath.Join(t.TempDir(), "dry.yaml")
	if err := os.WriteFile(dryPlan, []byte("duration: 10s\nsteps: [{at: 1s, action: kill, target: \"worker:partition=0\", params: {duration: 2s}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	output, err := exec.CommandContext(ctx, binary, "chaos", "--plan", dryPlan, "--stack", file.Dir, "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(output), "dry run: every target exists in local stack") ||
		!strings.Contains(string(output), "kill        worker:partition=0") {
		t.Errorf("dry run: %v\n%s", err, output)
	}
	// The CI plan arms crash points: a stack started without them refuses it, saying how to get them.
	output, err = exec.CommandContext(ctx, binary, "chaos", "--plan", "plans/ci.yaml", "--stack", file.Dir, "--dry-run").CombinedOutput()
	if err == nil || !strings.Contains(string(output), "--enable-crash-points") {
		t.Errorf("dry run of ci.yaml on a stack without crash points: %v\n%s", err, output)
	}
	badPlan := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badPlan, []byte("duration: 10s\nsteps: [{at: 1s, action: kill, target: worker-3}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	output, err = exec.CommandContext(ctx, binary, "chaos", "--plan", badPlan, "--stack", file.Dir).CombinedOutput()
	if err == nil || !strings.Contains(string(output), `target "worker-3" does not exist in this stack (it has postgres, redis, broker, worker-0, relay, settler, gateway-0)`) {
		t.Errorf("plan with an unknown target: %v\n%s", err, output)
	}

	// Light load during the plan.
	load := startDeposits(ctx, t, file.Endpoints.Gateways[0])
	// The worker is killed and started before the broker's restart: the
	// start resolves worker:partition=0 through the consumer group, where
	// the killed static member stays for its session timeout; after a
	// broker restart the group is empty until a live worker rejoins, so a
	// dead worker could not be found by its partition (CI failed on that).
	plan := filepath.Join(t.TempDir(), "short.yaml")
	if err := os.WriteFile(plan, []byte(`
name: short
duration: 9s
steps:
  - {at: 1s, action: kill, target: worker-0}
  - {at: 2500ms, action: start, target: "worker:partition=0"}
  - {at: 4s, action: kill, target: broker}
  - {at: 5500ms, action: start, target: broker}
  - {at: 6500ms, action: pause, target: redis, params: {duration: 1500ms}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(t.TempDir(), "run")
	command := exec.CommandContext(ctx, binary, "chaos", "--plan", plan, "--stack", file.Dir, "--run", runDir)
	output, err = command.CombinedOutput()
	t.Logf("ledgerproof chaos:\n%s", output)
	if err != nil {
		t.Fatalf("ledgerproof chaos: %v", err)
	}
	settledBefore := load.settledCount()
	if err := waitFor(ctx, 30*time.Second, func() bool { return load.settledCount() >= settledBefore+20 }); err != nil {
		t.Errorf("deposits did not settle again after the plan: %d settled before, %d now", settledBefore, load.settledCount())
	}
	load.stop()
	t.Logf("load: %s", load.describe())
	checkEveryComponentRuns(t, file.Dir)

	records, err := ReadLog(filepath.Join(runDir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, record := range records {
		if record.Result != ResultOK {
			t.Errorf("%s %s failed: %s", record.Action, record.Target, record.Error)
		}
		target := record.Target
		if record.Resolved != "" {
			target += "=" + record.Resolved
		}
		got = append(got, fmt.Sprintf("%s %s %s", record.Planned, record.Action, target))
	}
	want := "1s kill worker-0|2.5s start worker:partition=0=worker-0|4s kill broker|5.5s start broker|6.5s pause redis|8s resume redis"
	if strings.Join(got, "|") != want {
		t.Errorf("chaos log:\n%s\nwant:\n%s", strings.Join(got, "|"), want)
	}
}

// redisPing sends PING and waits for +PONG within timeout.
func redisPing(address string, timeout time.Duration) error {
	connection, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return err
	}
	defer connection.Close()
	if err := connection.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := connection.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(connection).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// deposits is a light load: one user depositing in a loop, each with a key
// of its own and a bounded wait for the outcome.
type deposits struct {
	cancel   context.CancelFunc
	done     sync.WaitGroup
	mutex    sync.Mutex
	statuses map[int]int
	errors   int
	settled  int
}

func startDeposits(ctx context.Context, t *testing.T, gateway string) *deposits {
	t.Helper()
	api := client.New(gateway)
	api.HTTP.Timeout = 5 * time.Second
	email := fmt.Sprintf("chaos-%d@example.com", time.Now().UnixNano())
	_, accountID, err := api.Signup(ctx, email, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Signin(ctx, email, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	loadContext, cancel := context.WithCancel(ctx)
	load := &deposits{cancel: cancel, statuses: map[int]int{}}
	load.done.Add(1)
	go func() {
		defer load.done.Done()
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for sequence := 1; ; sequence++ {
			select {
			case <-loadContext.Done():
				return
			case <-ticker.C:
			}
			response, err := api.Deposit(loadContext, fmt.Sprintf("chaos-%d", sequence), accountID, 100, 2*time.Second)
			var transaction client.Transaction
			load.mutex.Lock()
			if err != nil {
				load.errors++
			} else {
				load.statuses[response.Status]++
				if response.Decode(&transaction) == nil && transaction.Status == "settled" {
					load.settled++
				}
			}
			load.mutex.Unlock()
		}
	}()
	t.Cleanup(load.stop)
	return load
}

func (d *deposits) stop() {
	d.cancel()
	d.done.Wait()
}

func (d *deposits) settledCount() int {
	d.mutex.Lock()
	defer d.mutex.Unlock()
	return d.settled
}

func (d *deposits) describe() string {
	d.mutex.Lock()
	defer d.mutex.Unlock()
	return fmt.Sprintf("%d settled; HTTP statuses %v; %d request errors", d.settled, d.statuses, d.errors)
}
