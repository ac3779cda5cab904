package bench

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// startEndpoint serves the trivial endpoint on a test server, handing every request to observe first.
func startEndpoint(t *testing.T, observe func(*http.Request)) string {
	t.Helper()
	handler := NewEndpoint().Handler()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if observe != nil {
			observe(r)
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(server.Close)
	return server.URL
}

// The endpoint must answer the load client exactly as the reference API would for the outcomes the benchmark
// counts: sign-up and sign-in give a session, every money operation settles (ok, never polled).
func TestEndpointAnswersTheLoadClient(t *testing.T) {
	base := startEndpoint(t, nil)
	ledger, err := client.NewHTTP(client.Options{BaseURLs: []string{base}, Timeout: 5 * time.Second, Wait: time.Second,
		PollFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ledger.Close)
	ctx := context.Background()
	const email, password = "a@ledgerproof.test", "password-1"
	user, err := ledger.Signup(ctx, client.SetupCaller, email, password, 1)
	if err != nil || user.UserID == 0 || user.AccountID == 0 {
		t.Fatalf("signup = %+v, %v", user, err)
	}
	session, err := ledger.Signin(ctx, email, password)
	if err != nil || session.Token == "" || session.AccountID != user.AccountID {
		t.Fatalf("signin = %+v, %v; want the signed-up user's account %d", session, err, user.AccountID)
	}
	for _, kind := range []string{client.KindDeposit, client.KindWithdrawal, client.KindTransfer} {
		t.Run(kind, func(t *testing.T) {
			result := ledger.Money(ctx, client.MoneyRequest{Kind: kind, Session: session, From: session.AccountID,
				To: session.AccountID + 1, Amount: 1234})
			if result.Outcome != client.OutcomeOK || result.Status != client.StatusSettled || result.TransactionID == "" || result.Polls != 0 {
				t.Fatalf("money = %+v, want settled and ok at once", result)
			}
		})
	}
	transaction, found, err := ledger.Transaction(ctx, session, "00000000-0000-4000-8000-000000000001")
	if err != nil || !found || transaction.Status != client.StatusSettled {
		t.Fatalf("transaction = %+v, %v, %v", transaction, found, err)
	}
	if _, err := ledger.Balance(ctx, session, session.AccountID); err != nil {
		t.Fatalf("balance: %v", err)
	}
}

func TestSettledBody(t *testing.T) {
	got := string(settledBody(0xabc, "transfer", []byte("42")))
	want := `{"transaction_id":"00000000-0000-4000-8000-000000000abc","kind":"transfer","status":"settled","amount":42}`
	if got != want {
		t.Fatalf("settledBody = %s\nwant %s", got, want)
	}
}

// The bare loop must send the generator's requests: the money routes in the mix, each with its own key and
// the client's headers, as many as the rate and duration say.
func TestBareSendsTheGeneratorsRequests(t *testing.T) {
	var mutex sync.Mutex
	keys := map[string]bool{}
	routes := map[string]int{}
	var problems []string
	base := startEndpoint(t, func(r *http.Request) {
		mutex.Lock()
		defer mutex.Unlock()
		routes[r.Method+" "+r.URL.Path]++
		key := r.Header.Get("Idempotency-Key")
		if len(key) != 32 || keys[key] {
			problems = append(problems, "key "+key+" missing, malformed or reused")
		}
		keys[key] = true
		for header, want := range map[string]string{"Authorization": "Bearer t", "Prefer": "wait=5",
			"Content-Type": "application/json", "Accept": "application/json"} {
			if got := r.Header.Get(header); got != want {
				problems = append(problems, header+": "+got)
			}
		}
	})
	result, err := RunBare(context.Background(), BareConfig{BaseURL: base, Rate: 2000, Duration: 300 * time.Millisecond,
		Workers: 8, Accounts: 10, Seed: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if result.Requests != 600 || result.OK != 600 || result.Failed != 0 {
		t.Fatalf("result = %+v, want 600 requests, all ok", result)
	}
	mutex.Lock()
	defer mutex.Unlock()
	if len(problems) > 0 {
		t.Fatalf("%d bad requests, first: %s", len(problems), problems[0])
	}
	for _, route := range []string{"POST /v1/deposits", "POST /v1/withdrawals", "POST /v1/transfers"} {
		if routes[route] == 0 {
			t.Fatalf("routes = %v: none to %s", routes, route)
		}
	}
	if routes["POST /v1/transfers"] < routes["POST /v1/withdrawals"] {
		t.Fatalf("routes = %v: the mix (3, 2, 5) sends more transfers than withdrawals", routes)
	}
}

func TestBareRefusesUnboundedLoops(t *testing.T) {
	for _, config := range []BareConfig{
		{BaseURL: "http://127.0.0.1:1", Rate: 0, Duration: time.Second},
		{BaseURL: "http://127.0.0.1:1", Rate: 10, Duration: 2 * time.Hour},
		{BaseURL: "http://127.0.0.1:1", Rate: 10, Duration: time.Second, Workers: 20_000},
		{Rate: 10, Duration: time.Second},
	} {
		if _, err := RunBare(context.Background(), config, nil); err == nil {
			t.Fatalf("RunBare(%+v) ran", config)
		}
	}
}

// The generator's scenario must be one `ledgerproof load` accepts, with no thresholds.
func TestScenarioTextLoads(t *testing.T) {
	config := DefaultConfig()
	config.Rate, config.Accounts, config.Seed = 12_345, 300, 9
	path := filepath.Join(t.TempDir(), "bench-load.yaml")
	if err := os.WriteFile(path, []byte(scenarioText(config)), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Load(path, []string{"schedule.max_in_flight=1000"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Schedule.Executor != scenario.ExecutorConstantArrivalRate || s.Schedule.Rate != 12_345 ||
		s.Schedule.Duration != 10*time.Second || s.Setup.Accounts != 300 || s.Seed != 9 || len(s.Thresholds) != 0 {
		t.Fatalf("scenario = %+v", s)
	}
	if s.Workload.Mix.Deposit != 3 || s.Workload.Mix.Withdrawal != 2 || s.Workload.Mix.Transfer != 5 {
		t.Fatalf("mix = %+v, want the gate's", s.Workload.Mix)
	}
}

func TestSummariseJudgesTheTarget(t *testing.T) {
	round := func(generatorMilliseconds, bareMilliseconds, perSecond float64, dropped int64) Round {
		return Round{Generator: Side{CPUMillisecondsPerOperation: generatorMilliseconds, OperationsPerSecond: perSecond, Dropped: dropped},
			Bare: Side{CPUMillisecondsPerOperation: bareMilliseconds}, Ratio: generatorMilliseconds / bareMilliseconds}
	}
	tests := []struct {
		name   string
		rounds []Round
		misses []string // substrings, one per expected miss
	}{
		{"met", []Round{round(0.09, 0.08, 9990, 0), round(0.10, 0.08, 9995, 0), round(0.3, 0.08, 5000, 5)}, nil},
		{"ratio", []Round{round(0.2, 0.08, 10_000, 0), round(0.2, 0.1, 10_000, 0), round(0.1, 0.1, 10_000, 0)}, []string{"CPU ratio 2.00"}},
		{"dropped and slow", []Round{round(0.1, 0.08, 9000, 10), round(0.1, 0.08, 9400, 3), round(0.1, 0.08, 10_000, 0)},
			[]string{"3 dropped", "achieved 9400"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := DefaultConfig()
			result := &Result{Rounds: test.rounds}
			summarise(result, config)
			if len(result.Misses) != len(test.misses) {
				t.Fatalf("misses = %q, want %d", result.Misses, len(test.misses))
			}
			for i, want := range test.misses {
				if !strings.Contains(result.Misses[i], want) {
					t.Fatalf("miss %d = %q, want it to say %q", i, result.Misses[i], want)
				}
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		values []float64
		want   float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, test := range tests {
		if got := median(test.values); math.Abs(got-test.want) > 1e-12 {
			t.Fatalf("median(%v) = %v, want %v", test.values, got, test.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Executable: "/bin/true", Address: "127.0.0.1:20000"}
	if err := good.validate(); err != nil || good.Rate != 10_000 || good.Rounds != 3 || good.MaxRatio != 1.5 {
		t.Fatalf("validate = %v, config %+v: want the defaults filled in", err, good)
	}
	for name, config := range map[string]Config{
		"no executable":      {Address: "127.0.0.1:20000"},
		"not loopback":       {Executable: "/bin/true", Address: "0.0.0.0:20000"},
		"rate beyond bounds": {Executable: "/bin/true", Address: "127.0.0.1:20000", Rate: 2_000_000},
		"too many rounds":    {Executable: "/bin/true", Address: "127.0.0.1:20000", Rounds: 21},
		"ratio below one":    {Executable: "/bin/true", Address: "127.0.0.1:20000", MaxRatio: 0.5},
		"achieved above one": {Executable: "/bin/true", Address: "127.0.0.1:20000", MinAchieved: 1.5},
	} {
		if err := config.validate(); err == nil {
			t.Fatalf("%s: validate accepted %+v", name, config)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	// Burn a little CPU so that the figure cannot be zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = math.Sqrt(float64(x))
	}
	cpu, err := processCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("processCPU = %v, %v", cpu, err)
	}
}

func TestCountLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	if err := os.WriteFile(path, []byte(strings.Repeat("{}\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if lines, err := countLines(path); err != nil || lines != 1000 {
		t.Fatalf("countLines = %d, %v", lines, err)
	}
}
