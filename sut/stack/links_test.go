package stack_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack"
	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

// TestPlanRoutesThroughProxies: with Proxies, the proxy starts before the
// gateways and workers, which get the links' addresses, and the Kafka
// clients also get the address map that keeps produce and fetch on the
// proxy after metadata names the broker's own address.
func TestPlanRoutesThroughProxies(t *testing.T) {
	config := stack.DefaultConfig()
	config.Binary = "/bin/ledgerproof"
	config.Gateways, config.Workers = 1, 1
	config.Proxies, config.ProxyPort = true, 60000
	for _, standby := range []bool{false, true} {
		t.Run(fmt.Sprintf("standby=%v", standby), func(t *testing.T) {
			config.PostgresStandby = standby
			components := stack.PlanForTest(config, "/tmp/stack")
			var names []string
			argv := map[string]string{}
			for _, component := range components {
				names = append(names, component.Name)
				argv[component.Name] = strings.Join(component.Argv, " ")
			}
			proxyAt, gatewayAt := slices.Index(names, stack.KindProxy), slices.Index(names, "gateway-0")
			if proxyAt < 0 || proxyAt > gatewayAt {
				t.Fatalf("components %v: want the proxy before gateway-0", names)
			}
			if want := "proxy --listen-api 127.0.0.1:60000 --config /tmp/stack/proxy/links.json"; !strings.Contains(argv["proxy"], want) {
				t.Errorf("proxy argv %q lacks %q", argv["proxy"], want)
			}
			for name, wants := range map[string][]string{
				"gateway-0": {"--broker-address-map 127.0.0.1:19092=127.0.0.1:60001", "--brokers 127.0.0.1:60001", "--redis-addr 127.0.0.1:60004"},
				"worker-0":  {"--broker-address-map 127.0.0.1:19092=127.0.0.1:60002", "--brokers 127.0.0.1:60002", "--redis-addr 127.0.0.1:60005", "127.0.0.1:60003"},
			} {
				for _, want := range wants {
					if !strings.Contains(argv[name], want) {
						t.Errorf("%s argv %q lacks %q", name, argv[name], want)
					}
				}
				for _, direct := range []string{"--brokers 127.0.0.1:19092", "--redis-addr 127.0.0.1:16379"} {
					if strings.Contains(argv[name], direct) {
						t.Errorf("%s argv %q still has %q", name, argv[name], direct)
					}
				}
			}
			if strings.Contains(argv["worker-0"], "127.0.0.1:15432/") || strings.Contains(argv["worker-0"], "127.0.0.1:15432,") {
				t.Errorf("worker reaches the primary directly: %q", argv["worker-0"])
			}
		})
	}
	config.PostgresStandby = false
	config.ProxyPort = config.RedisPort - 3 // link 2 (worker->postgres) lands on Redis's port
	if _, err := stack.Up(context.Background(), config); err == nil || !strings.Contains(err.Error(), "worker->postgres") {
		t.Fatalf("a link port on Redis's port: got %v, want an error naming the link", err)
	}
}

func TestLinkFaultValidation(t *testing.T) {
	cases := []struct {
		name  string
		fault stack.LinkFault
		want  string // empty: valid
	}{
		{"latency", stack.LinkFault{Kind: stack.FaultLatency, Latency: 200 * time.Millisecond, Jitter: 20 * time.Millisecond}, ""},
		{"cut", stack.LinkFault{Kind: stack.FaultCut}, ""},
		{"bandwidth", stack.LinkFault{Kind: stack.FaultBandwidth, RateKBps: 64}, ""},
		{"reset at once", stack.LinkFault{Kind: stack.FaultReset}, ""},
		{"timeout", stack.LinkFault{Kind: stack.FaultTimeout, After: time.Second, Direction: stack.DirectionUpstream}, ""},
		{"unknown kind", stack.LinkFault{Kind: "partition"}, "unknown kind"},
		{"latency of zero", stack.LinkFault{Kind: stack.FaultLatency}, "at least 1ms"},
		{"cut with a rate", stack.LinkFault{Kind: stack.FaultCut, RateKBps: 5}, "rate is not a parameter of cut"},
		{"bandwidth without rate", stack.LinkFault{Kind: stack.FaultBandwidth}, "at least 1 KB/s"},
		{"timeout that never closes", stack.LinkFault{Kind: stack.FaultTimeout}, "at least 1ms"},
		{"bad direction", stack.LinkFault{Kind: stack.FaultReset, Direction: "sideways"}, "direction"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fault.Validate()
			if tc.want == "" && err != nil {
				t.Fatalf("valid fault rejected: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := stack.Link(context.Background(), t.TempDir(), "gateway->moon", stack.LinkFault{Kind: stack.FaultCut}); err == nil || !strings.Contains(err.Error(), "unknown link") {
		t.Fatalf("unknown link: got %v", err)
	}
}

// linkStack is a running stack with proxies, a database pool and users.
type linkStack struct {
	t    *testing.T
	file *stack.File
	db   *pgxpool.Pool
}

func startLinkStack(t *testing.T, gateways, workers int, gatewayArgs ...string) *linkStack {
	t.Helper()
	file := stacktest.Stack(t, stacktest.StackOptions{Gateways: gateways, Workers: workers, Proxies: true, GatewayArgs: gatewayArgs})
	db, err := pgxpool.New(context.Background(), file.Endpoints.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return &linkStack{t: t, file: file, db: db}
}

// link puts a fault on a link, failing the test on error.
func (s *linkStack) link(name string, fault stack.LinkFault) {
	s.t.Helper()
	if err := stack.Link(context.Background(), s.file.Dir, name, fault); err != nil {
		s.t.Fatal(err)
	}
}

func (s *linkStack) heal(name string) {
	s.t.Helper()
	if err := stack.HealLink(context.Background(), s.file.Dir, name); err != nil {
		s.t.Fatal(err)
	}
}

var linkUserCounter int

// newUser signs up and signs in a user on gateway 0 and returns its client
// and account.
func (s *linkStack) newUser() (*client.Client, int64) {
	s.t.Helper()
	ctx := context.Background()
	linkUserCounter++
	c := client.New(s.file.Endpoints.Gateways[0])
	email := fmt.Sprintf("link%d-%d@example.com", time.Now().UnixNano(), linkUserCounter)
	_, accountID, err := c.Signup(ctx, email, "correct horse")
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Signin(ctx, email, "correct horse"); err != nil {
		s.t.Fatal(err)
	}
	return c, accountID
}

// deposit sends a deposit without waiting for its outcome and returns the
// status, the transaction id (if accepted) and how long the gateway took.
func deposit(c *client.Client, accountID, amount int64, key string) (int, string, time.Duration, error) {
	began := time.Now()
	response, err := c.Deposit(context.Background(), key, accountID, amount, 0)
	elapsed := time.Since(began)
	if err != nil {
		return 0, "", elapsed, err
	}
	var transaction client.Transaction
	if response.Status == http.StatusAccepted || response.Status == http.StatusOK {
		if err := response.Decode(&transaction); err != nil {
			return response.Status, "", elapsed, err
		}
	}
	return response.Status, transaction.TransactionID, elapsed, nil
}

// applied counts how many of ids are in the ledger.
func (s *linkStack) applied(ids []string) int {
	s.t.Helper()
	var found int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE id = ANY($1::uuid[])`, ids).Scan(&found); err != nil {
		s.t.Fatal(err)
	}
	return found
}

func (s *linkStack) waitApplied(ids []string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for s.applied(ids) < len(ids) {
		if time.Now().After(deadline) {
			s.t.Fatalf("only %d of %d acknowledged transactions reached the ledger within %s", s.applied(ids), len(ids), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// workerMetric is the sum of a counter's samples on worker-0's /metrics.
func (s *linkStack) workerMetric(name string) float64 {
	s.t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Get(s.file.Endpoints.WorkerMetrics[0])
	if err != nil {
		s.t.Fatalf("worker metrics: %v", err)
	}
	defer response.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(response.Body)
	if err != nil {
		s.t.Fatalf("worker metrics: %v", err)
	}
	total := 0.0
	if family, ok := families[name]; ok {
		for _, metric := range family.GetMetric() {
			total += metric.GetCounter().GetValue()
		}
	}
	return total
}

// waitForEvidence waits, within a bound, until the fault has shown: a
// window that only sleeps proves nothing on a slow machine (the worker
// may not even have tried yet) and wastes time on a fast one.
func (s *linkStack) waitForEvidence(what string, within time.Duration, shown func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for !shown() {
		if time.Now().After(deadline) {
			s.t.Fatalf("no sign within %s that %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// workerLogSays reports whether worker-0's log has a line containing text
// after its first offset bytes.
func (s *linkStack) workerLogSays(offset int64, text string) bool {
	s.t.Helper()
	content, err := os.ReadFile(filepath.Join(s.file.Dir, "logs", "worker-0.log"))
	if err != nil || int64(len(content)) < offset {
		return false
	}
	return strings.Contains(string(content[offset:]), text)
}

// workerLogSize is the length of worker-0's log now.
func (s *linkStack) workerLogSize() int64 {
	info, err := os.Stat(filepath.Join(s.file.Dir, "logs", "worker-0.log"))
	if err != nil {
		return 0
	}
	return info.Size()
}

// acceptDeposits sends n deposits that must each be accepted (202).
func (s *linkStack) acceptDeposits(c *client.Client, accountID int64, n int, label string) []string {
	s.t.Helper()
	var ids []string
	for i := range n {
		status, id, _, err := deposit(c, accountID, 1, fmt.Sprintf("%s-%d-%d", label, i, time.Now().UnixNano()))
		if err != nil || status != http.StatusAccepted {
			s.t.Fatalf("%s deposit %d: status %d, %v", label, i, status, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// socketPeers lists the remote TCP ports of the established connections of
// process pid (from /proc/PID/fd and /proc/net/tcp), to tell whether it
// talks to a service directly or through a link.
func socketPeers(t *testing.T, pid int) map[int]int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	peers := map[int]int{}
	table, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	scanner := bufio.NewScanner(table)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 10 || fields[3] != "01" || !inodes[fields[9]] { // 01: ESTABLISHED
			continue
		}
		_, portHex, _ := strings.Cut(fields[2], ":")
		port, _ := strconv.ParseInt(portHex, 16, 32)
		peers[int(port)]++
	}
	return peers
}

func componentPID(t *testing.T, file *stack.File, name string) int {
	t.Helper()
	component, err := file.Component(name)
	if err != nil {
		t.Fatal(err)
	}
	return component.PID
}

func median(durations []time.Duration) time.Duration {
	sorted := slices.Clone(durations)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[len(sorted)/2]
}

// TestLinkFaults shows traffic really flows through each link: the
// processes' connections go to the links, never to the services directly;
// cutting worker->postgres or worker->broker stops settling while
// deposits are still accepted, and healing settles them; 200ms of latency
// on gateway->redis slows every money request; cutting gateway->broker
// fails money requests with 503 after the produce timeout, and healing
// restores them.
func TestLinkFaults(t *testing.T) {
	s := startLinkStack(t, 1, 1, "--produce-timeout=2s")
	states, err := stack.LinkStates(context.Background(), s.file.Dir)
	if err != nil {
		t.Fatal(err)
	}
	linkPort := map[string]int{}
	for _, state := range states {
		_, port, _ := strings.Cut(state.Listen, ":")
		linkPort[state.Name], _ = strconv.Atoi(port)
		if !state.Enabled || len(state.Toxics) != 0 {
			t.Fatalf("link %s starts faulty: %+v", state.Name, state)
		}
	}
	if len(linkPort) != len(stack.Links) {
		t.Fatalf("links %v, want %v", states, stack.Links)
	}
	user, accountID := s.newUser()
	s.waitApplied(s.acceptDeposits(user, accountID, 5, "warm-up"), 30*time.Second)

	t.Run("connections go through the links", func(t *testing.T) {
		servicePorts := map[string]int{}
		for _, name := range []string{"broker", "redis", "postgres"} {
			component, err := s.file.Component(name)
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := strings.Cut(strings.TrimPrefix(component.Ready.Target, "postgres://ledger@"), ":")
			port, _, _ = strings.Cut(port, "/")
			servicePorts[name], _ = strconv.Atoi(port)
		}
		for process, links := range map[string]map[string]string{
			"gateway-0": {"broker": stack.LinkGatewayBroker, "redis": stack.LinkGatewayRedis},
			"worker-0":  {"broker": stack.LinkWorkerBroker, "redis": stack.LinkWorkerRedis, "postgres": stack.LinkWorkerPostgres},
		} {
			peers := socketPeers(t, componentPID(t, s.file, process))
			for service, link := range links {
				if peers[servicePorts[service]] != 0 {
					t.Errorf("%s has %d connections straight to %s (port %d), bypassing %s; peers %v", process, peers[servicePorts[service]], service, servicePorts[service], link, peers)
				}
				if peers[linkPort[link]] == 0 {
					t.Errorf("%s has no connection through %s (port %d); peers %v", process, link, linkPort[link], peers)
				}
			}
			t.Logf("%s's connections by remote port: %v", process, peers)
		}
	})

	t.Run("cut worker->postgres: accepted, not settled until healed", func(t *testing.T) {
		s.link(stack.LinkWorkerPostgres, stack.LinkFault{Kind: stack.FaultCut})
		failedBefore := s.workerMetric("ledger_worker_apply_errors_total")
		ids := s.acceptDeposits(user, accountID, 10, "postgres-cut")
		// The fault's window lasts until the worker has tried to apply
		// them and failed: nothing may settle in it.
		s.waitForEvidence("the worker failed to apply a batch through the cut", 60*time.Second, func() bool {
			return s.workerMetric("ledger_worker_apply_errors_total") > failedBefore
		})
		if n := s.applied(ids); n != 0 {
			t.Fatalf("%d of %d deposits settled while worker->postgres was cut", n, len(ids))
		}
		s.heal(stack.LinkWorkerPostgres)
		began := time.Now()
		s.waitApplied(ids, 60*time.Second)
		t.Logf("10 deposits accepted during the cut settled %.1fs after the heal", time.Since(began).Seconds())
	})

	t.Run("cut worker->broker: accepted, not settled until healed", func(t *testing.T) {
		logOffset := s.workerLogSize()
		s.link(stack.LinkWorkerBroker, stack.LinkFault{Kind: stack.FaultCut})
		ids := s.acceptDeposits(user, accountID, 10, "worker-broker-cut")
		// Until the worker has said it cannot reach the broker: its polls
		// fail (logged as msg=poll).
		s.waitForEvidence("the worker's polls failed through the cut", 60*time.Second, func() bool {
			return s.workerLogSays(logOffset, "msg=poll")
		})
		if n := s.applied(ids); n != 0 {
			t.Fatalf("%d of %d deposits settled while worker->broker was cut", n, len(ids))
		}
		s.heal(stack.LinkWorkerBroker)
		began := time.Now()
		s.waitApplied(ids, 60*time.Second)
		t.Logf("10 deposits accepted during the cut settled %.1fs after the heal", time.Since(began).Seconds())
	})

	t.Run("latency on gateway->redis slows money requests", func(t *testing.T) {
		measure := func(label string) time.Duration {
			var durations []time.Duration
			for i := range 15 {
				status, _, elapsed, err := deposit(user, accountID, 1, fmt.Sprintf("%s-%d-%d", label, i, time.Now().UnixNano()))
				if err != nil || status != http.StatusAccepted {
					t.Fatalf("%s deposit: %d %v", label, status, err)
				}
				durations = append(durations, elapsed)
			}
			return median(durations)
		}
		before := measure("latency-before")
		s.link(stack.LinkGatewayRedis, stack.LinkFault{Kind: stack.FaultLatency, Latency: 200 * time.Millisecond})
		during := measure("latency-during")
		s.heal(stack.LinkGatewayRedis)
		after := measure("latency-after")
		t.Logf("median deposit latency: before %s | with 200ms on gateway->redis %s | healed %s", before, during, after)
		if during-before < 150*time.Millisecond {
			t.Fatalf("200ms of latency on gateway->redis raised the median only from %s to %s", before, during)
		}
		if after > before+100*time.Millisecond {
			t.Fatalf("after healing the median is still %s (before %s)", after, before)
		}
	})

	t.Run("cut gateway->broker: 503 after the produce timeout, then healed", func(t *testing.T) {
		s.link(stack.LinkGatewayBroker, stack.LinkFault{Kind: stack.FaultCut})
		status, _, elapsed, err := deposit(user, accountID, 1, fmt.Sprintf("broker-cut-%d", time.Now().UnixNano()))
		if err != nil || status != http.StatusServiceUnavailable {
			t.Fatalf("with gateway->broker cut: status %d, %v; want 503", status, err)
		}
		if elapsed < 1500*time.Millisecond || elapsed > 10*time.Second {
			t.Fatalf("503 after %s; want about the 2s produce timeout", elapsed)
		}
		s.heal(stack.LinkGatewayBroker)
		deadline := time.Now().Add(30 * time.Second)
		for attempt := 0; ; attempt++ {
			status, id, _, err := deposit(user, accountID, 1, fmt.Sprintf("broker-healed-%d-%d", attempt, time.Now().UnixNano()))
			if err == nil && status == http.StatusAccepted {
				s.waitApplied([]string{id}, 30*time.Second)
				t.Logf("503 after %.1fs during the cut; accepted again after the heal (attempt %d)", elapsed.Seconds(), attempt+1)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway->broker healed but deposits still fail: %d %v", status, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestCutLinkHealedDrill: transfers flow with retries (same key on every
// retry) while gateway->broker and then worker->postgres are cut for a few
// seconds and healed; afterwards every acknowledged transfer is in the
// ledger exactly once and the money is conserved.
func TestCutLinkHealedDrill(t *testing.T) {
	s := startLinkStack(t, 2, 2, "--produce-timeout=2s")
	ctx := context.Background()
	type account struct {
		client    *client.Client
		accountID int64
	}
	// Funding must cover every debit an account may have queued: during a
	// cut, one partition's backlog of debits can be applied before the
	// credits queued in other partitions, so a random walk's margin is not
	// enough.
	const users, funding = 10, 1_000_000
	accounts := make([]account, users)
	for i := range accounts {
		c, accountID := s.newUser()
		accounts[i] = account{client: c, accountID: accountID}
		response, err := c.Deposit(ctx, fmt.Sprintf("fund-%d", i), accountID, funding, 10*time.Second)
		if err != nil || response.Status != http.StatusOK {
			t.Fatalf("fund: %v %d %s", err, response.Status, response.Body)
		}
	}

	// The load: transfers with retries, same key on every retry, recording
	// the transaction id each key was acknowledged with.
	var mutex sync.Mutex
	acknowledged := map[string]string{} // key -> transaction id
	var attempts, failures int
	loadContext, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var group sync.WaitGroup
	const loadGoroutines = 12
	for worker := range loadGoroutines {
		group.Add(1)
		go func() {
			defer group.Done()
			random := rand.New(rand.NewPCG(uint64(worker), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from, to := accounts[random.IntN(users)], accounts[random.IntN(users)]
				if from.accountID == to.accountID {
					continue
				}
				key := fmt.Sprintf("drill-%d-%d", worker, i)
				amount := int64(1 + random.IntN(50))
				gateway := s.file.Endpoints.Gateways[i%len(s.file.Endpoints.Gateways)]
				for attempt := 0; loadContext.Err() == nil; attempt++ {
					c := client.New(gateway)
					c.Token = from.client.Token
					response, err := c.Transfer(loadContext, key, from.accountID, to.accountID, amount, 0)
					mutex.Lock()
					attempts++
					mutex.Unlock()
					if err == nil && (response.Status == http.StatusAccepted || response.Status == http.StatusOK) {
						var transaction client.Transaction
						if response.Decode(&transaction) == nil {
							mutex.Lock()
							if previous, ok := acknowledged[key]; ok && previous != transaction.TransactionID {
								t.Errorf("key %s acknowledged as %s and as %s", key, previous, transaction.TransactionID)
							}
							acknowledged[key] = transaction.TransactionID
							mutex.Unlock()
						}
						break
					}
					mutex.Lock()
					failures++
					mutex.Unlock()
					time.Sleep(time.Duration(min(attempt+1, 10)) * 25 * time.Millisecond)
				}
			}
		}()
	}
	count := func() int {
		mutex.Lock()
		defer mutex.Unlock()
		return len(acknowledged)
	}
	waitFor := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d acknowledgements within a minute", count(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	type window struct {
		link          string
		before, after int
	}
	var windows []window
	failed := func() int {
		mutex.Lock()
		defer mutex.Unlock()
		return failures
	}
	// Each cut lasts until it has shown: requests failing through the
	// gateway's cut, the worker's applies failing through its own.
	evidence := map[string]func() func() bool{
		stack.LinkGatewayBroker: func() func() bool {
			before := failed()
			return func() bool { return failed() >= before+loadGoroutines }
		},
		stack.LinkWorkerPostgres: func() func() bool {
			before := s.workerMetric("ledger_worker_apply_errors_total")
			return func() bool { return s.workerMetric("ledger_worker_apply_errors_total") > before }
		},
	}
	for _, link := range []string{stack.LinkGatewayBroker, stack.LinkWorkerPostgres} {
		waitFor(count() + 200)
		s.link(link, stack.LinkFault{Kind: stack.FaultCut})
		before := count()
		s.waitForEvidence(link+" was cut", 60*time.Second, evidence[link]())
		s.heal(link)
		windows = append(windows, window{link: link, before: before, after: count()})
	}
	waitFor(count() + 200)
	close(stop)
	group.Wait()

	mutex.Lock()
	transactionIDs := make([]string, 0, len(acknowledged))
	for _, id := range acknowledged {
		transactionIDs = append(transactionIDs, id)
	}
	mutex.Unlock()
	for _, w := range windows {
		t.Logf("%s cut until it showed: %d acknowledgements before the cut, %d by the heal", w.link, w.before, w.after)
	}
	// Only requests produced before the cut may be acknowledged in its
	// window: at most one per load goroutine, plus as many finishing in the
	// instant after the heal. Traffic bypassing the proxy would acknowledge
	// hundreds.
	if gatewayCut := windows[0]; gatewayCut.after-gatewayCut.before > 2*loadGoroutines {
		t.Errorf("%d transfers acknowledged while gateway->broker was cut (only requests already produced may finish)", gatewayCut.after-gatewayCut.before)
	}
	t.Logf("%d transfers acknowledged, %d attempts, %d failed attempts retried", len(transactionIDs), attempts, failures)
	s.waitApplied(transactionIDs, 90*time.Second)

	// Exactly once, conservation and balances from postings.
	checks := []struct {
		what string
		sql  string
		args []any
		want int64
	}{
		{"acknowledged transfers in the ledger", `SELECT count(DISTINCT id) FROM transactions WHERE id = ANY($1::uuid[]) AND kind = 'transfer'`, []any{transactionIDs}, int64(len(transactionIDs))},
		{"transactions with other than two postings", `SELECT count(*) FROM (SELECT t.id FROM transactions t LEFT JOIN postings p ON p.transaction_id = t.id WHERE t.status = 'settled' GROUP BY t.id HAVING count(p.id) <> 2) x`, nil, 0},
		{"transactions whose postings do not sum to zero", `SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING sum(amount) <> 0) x`, nil, 0},
		{"keys with more than one transaction", `SELECT count(*) FROM (SELECT user_id, idempotency_key FROM transactions GROUP BY 1, 2 HAVING count(*) > 1) x`, nil, 0},
		{"balances that differ from their postings", `SELECT count(*) FROM accounts a WHERE kind = 'user' AND balance <> COALESCE((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`, nil, 0},
		{"total of the user balances", `SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind = 'user'`, nil, users * funding},
		{"rejected transfers (funding covers every transfer)", `SELECT count(*) FROM transactions WHERE status <> 'settled' AND id = ANY($1::uuid[])`, []any{transactionIDs}, 0},
	}
	for _, check := range checks {
		var got int64
		if err := s.db.QueryRow(ctx, check.sql, check.args...).Scan(&got); err != nil {
			t.Fatalf("%s: %v", check.what, err)
		}
		if got != check.want {
			t.Errorf("%s: %d, want %d", check.what, got, check.want)
		}
	}
	if t.Failed() {
		rows, err := s.db.Query(ctx, `SELECT t.reason, t.source_account_id, count(*), min(a.balance)
			FROM transactions t JOIN accounts a ON a.id = t.source_account_id
			WHERE t.status <> 'settled' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10`)
		if err == nil {
			for rows.Next() {
				var reason string
				var source, count, balance int64
				if rows.Scan(&reason, &source, &count, &balance) == nil {
					t.Logf("rejected: %d × %q from account %d (its balance now %d)", count, reason, source, balance)
				}
			}
			rows.Close()
		}
	}
}
