package ledger

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"go.k6.io/k6/js/modulestest"
	"go.k6.io/k6/lib"
	"go.k6.io/k6/metrics"
	"gopkg.in/guregu/null.v3"
)

// fakeGateway is the gateway stand-in of the unit tests: the money routes answer with the idempotency contract
// of sut/openapi.yaml (same key and body: the same answer; same key, other body: 422), and the first
// failFirst attempts of each key answer 503. answer decides the final answer of a money request.
type fakeGateway struct {
	mutex     sync.Mutex
	failFirst int
	// answer returns the status and body of an accepted money request; nil means 200 settled.
	answer   func(key string) (int, string)
	keys     []string          // Idempotency-Key of every money request, in arrival order
	bodies   map[string]string // first body per key
	attempts map[string]int
	users    map[string]int64 // email → user id
	requests []*http.Request
}

func newFakeGateway(t *testing.T) (*fakeGateway, *httptest.Server) {
	t.Helper()
	g := &fakeGateway{bodies: map[string]string{}, attempts: map[string]int{}, users: map[string]int64{}}
	server := httptest.NewServer(g)
	t.Cleanup(server.Close)
	return g, server
}

func writeJSONResponse(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mutex.Lock()
	defer g.mutex.Unlock()
	g.requests = append(g.requests, r)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/users":
		var credentials struct{ Email, Password string }
		_ = json.Unmarshal(body, &credentials)
		if _, taken := g.users[credentials.Email]; taken {
			writeJSONResponse(w, http.StatusConflict, `{"code":"email_taken","message":"taken"}`)
			return
		}
		id := int64(len(g.users) + 1)
		g.users[credentials.Email] = id
		writeJSONResponse(w, http.StatusCreated, fmt.Sprintf(`{"user_id":%d,"account_id":%d,"email":%q}`, id, id+1000, credentials.Email))
	case r.Method == http.MethodPost && r.URL.Path == "/v1/sessions":
		var credentials struct{ Email, Password string }
		_ = json.Unmarshal(body, &credentials)
		id, found := g.users[credentials.Email]
		if !found {
			writeJSONResponse(w, http.StatusUnauthorized, `{"code":"invalid_credentials","message":"no"}`)
			return
		}
		writeJSONResponse(w, http.StatusCreated, fmt.Sprintf(`{"token":"token-%d","user_id":%d,"account_id":%d,"expires_at":"2030-01-01T00:00:00Z"}`, id, id, id+1000))
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/"):
		key := r.Header.Get("Idempotency-Key")
		g.keys = append(g.keys, key)
		g.attempts[key]++
		if g.attempts[key] <= g.failFirst {
			writeJSONResponse(w, http.StatusServiceUnavailable, `{"code":"unavailable","message":"try again"}`)
			return
		}
		if first, seen := g.bodies[key]; seen && first != string(body) {
			writeJSONResponse(w, http.StatusUnprocessableEntity, `{"code":"idempotency_key_reused","message":"reused"}`)
			return
		}
		g.bodies[key] = string(body)
		if g.answer != nil {
			status, answer := g.answer(key)
			writeJSONResponse(w, status, answer)
			return
		}
		writeJSONResponse(w, http.StatusOK, `{"transaction_id":"tx-`+key+`","kind":"deposit","status":"settled","amount":1,"source_account_id":0,"destination_account_id":1}`)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/accounts/"):
		writeJSONResponse(w, http.StatusOK, `{"account_id":1,"user_id":1,"balance":4200}`)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/transactions/"):
		if strings.HasSuffix(r.URL.Path, "/missing") {
			writeJSONResponse(w, http.StatusNotFound, `{"code":"not_found","message":"no"}`)
			return
		}
		writeJSONResponse(w, http.StatusOK, `{"transaction_id":"t1","kind":"transfer","status":"settled","amount":5,"source_account_id":1,"destination_account_id":2}`)
	default:
		writeJSONResponse(w, http.StatusNotFound, `{"code":"not_found","message":"no route"}`)
	}
}

func (g *fakeGateway) seenKeys() []string {
	g.mutex.Lock()
	defer g.mutex.Unlock()
	return append([]string(nil), g.keys...)
}

// moduleTest is a VU with k6/x/ledger imported as the global "ledger", in the init context until enterVU.
type moduleTest struct {
	t       *testing.T
	runtime *modulestest.Runtime
	root    *RootModule
	samples chan metrics.SampleContainer
	runDir  string
}

func newModuleTest(t *testing.T) *moduleTest {
	t.Helper()
	runtime := modulestest.NewRuntime(t)
	root := New()
	instance := root.NewModuleInstance(runtime.VU)
	if err := runtime.VU.RuntimeField.Set("ledger", instance.Exports().Default); err != nil {
		t.Fatal(err)
	}
	test := &moduleTest{t: t, runtime: runtime, root: root, samples: make(chan metrics.SampleContainer, 100_000), runDir: t.TempDir()}
	t.Cleanup(func() {
		if journal := root.process.journals.current(); journal != nil {
			_ = journal.Close()
		}
	})
	return test
}

// enterVU leaves the init context: VU vuID, iteration 0.
func (m *moduleTest) enterVU(vuID uint64) {
	registry := m.runtime.VU.InitEnvField.Registry
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	state := &lib.State{
		Options: lib.Options{
			SystemTags:   &metrics.DefaultSystemTagSet,
			UserAgent:    null.StringFrom("xk6-ledger-test"),
			MaxRedirects: null.IntFrom(10),
		},
		Logger:         logger,
		BufferPool:     lib.NewBufferPool(),
		Samples:        m.samples,
		Transport:      &http.Transport{MaxIdleConnsPerHost: 16},
		Tags:           lib.NewVUStateTags(registry.RootTagSet().WithTagsFromMap(map[string]string{"group": ""})),
		BuiltinMetrics: m.runtime.BuiltinMetrics,
		VUID:           vuID,
		VUIDGlobal:     vuID,
		Iteration:      0,
	}
	m.runtime.MoveToVUContext(state)
}

func (m *moduleTest) run(code string) (any, error) {
	m.t.Helper()
	value, err := m.runtime.VU.Runtime().RunString(code)
	if err != nil {
		return nil, err
	}
	return value.Export(), nil
}

func (m *moduleTest) mustRun(code string) any {
	m.t.Helper()
	value, err := m.run(code)
	if err != nil {
		m.t.Fatalf("%s: %v", code, err)
	}
	return value
}

// newClient constructs the global "client" in the init context with the given options (JS object source).
func (m *moduleTest) newClient(options string) {
	m.t.Helper()
	m.mustRun("var client = new ledger.Client(" + options + "); var session = {token: 't', userId: 7, accountId: 11, email: 'a@b.test'};")
}

func (m *moduleTest) samplesOf(name string) []metrics.Sample {
	var found []metrics.Sample
	for _, container := range metrics.GetBufferedSamples(m.samples) {
		for _, sample := range container.GetSamples() {
			if sample.Metric.Name == name {
				found = append(found, sample)
			}
		}
	}
	return found
}

// journalLines closes the journal through the JS API and returns its lines.
func (m *moduleTest) journalLines() []map[string]any {
	m.t.Helper()
	closed, ok := m.mustRun("ledger.closeJournal()").(map[string]any)
	if !ok {
		m.t.Fatalf("closeJournal returned no journal")
	}
	file, err := os.Open(closed["path"].(string))
	if err != nil {
		m.t.Fatal(err)
	}
	defer file.Close()
	var lines []map[string]any
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			m.t.Fatalf("journal line %q: %v", scanner.Text(), err)
		}
		lines = append(lines, line)
	}
	if int64(len(lines)) != closed["operations"].(int64) {
		m.t.Fatalf("closeJournal said %v operations, the file has %d lines", closed["operations"], len(lines))
	}
	return lines
}

func TestMetricsEmitted(t *testing.T) {
	_, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q}`, server.URL))
	m.enterVU(3)
	result := m.mustRun(`client.deposit(session, 11, 500)`).(map[string]any)
	if result["outcome"] != "ok" {
		t.Fatalf("outcome %v, want ok: %v", result["outcome"], result)
	}
	all := metrics.GetBufferedSamples(m.samples)
	seen := map[string][]metrics.Sample{}
	for _, container := range all {
		for _, sample := range container.GetSamples() {
			seen[sample.Metric.Name] = append(seen[sample.Metric.Name], sample)
		}
	}
	operations := seen[metricOperations]
	if len(operations) != 1 {
		t.Fatalf("%d ledger_operations samples, want 1", len(operations))
	}
	tags := operations[0].Tags.Map()
	if tags["kind"] != "deposit" || tags["outcome"] != "ok" || operations[0].Value != 1 {
		t.Errorf("ledger_operations sample tags %v value %v, want kind=deposit outcome=ok value 1", tags, operations[0].Value)
	}
	for _, name := range []string{metricAcceptDuration, metricSettleDuration} {
		if len(seen[name]) != 1 || seen[name][0].Tags.Map()["kind"] != "deposit" {
			t.Errorf("%s: samples %v, want one with kind=deposit", name, seen[name])
		}
	}
	if len(seen[metricRetries]) != 0 || len(seen[metricUnknownOutcomes]) != 0 {
		t.Errorf("no retries or unknown outcomes expected, got %v %v", seen[metricRetries], seen[metricUnknownOutcomes])
	}
	durations := seen["http_req_duration"]
	if len(durations) != 1 {
		t.Fatalf("%d http_req_duration samples, want 1 (the request must go through k6's httpext)", len(durations))
	}
	httpTags := durations[0].Tags.Map()
	if httpTags["name"] != "POST /v1/deposits" || httpTags["url"] != "POST /v1/deposits" || httpTags["status"] != "200" || httpTags["method"] != "POST" {
		t.Errorf("http_req_duration tags %v, want name and url = route template, status 200", httpTags)
	}
	if len(seen["http_reqs"]) != 1 {
		t.Errorf("http_reqs samples %d, want 1", len(seen["http_reqs"]))
	}
}

func TestRetriesReuseTheKey(t *testing.T) {
	gateway, server := newFakeGateway(t)
	gateway.failFirst = 2
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q, retry: {maxAttempts: 3, backoff: "1ms", maxBackoff: "5ms"}}`, server.URL))
	m.enterVU(1)
	result := m.mustRun(`client.transfer(session, 11, 12, 250)`).(map[string]any)
	keys := gateway.seenKeys()
	if len(keys) != 3 {
		t.Fatalf("%d attempts reached the gateway, want 3", len(keys))
	}
	if keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] || keys[0] != result["key"] {
		t.Errorf("keys of the attempts %v and result key %v: want one key on every attempt", keys, result["key"])
	}
	if result["outcome"] != "ok" || result["attempts"] != int64(3) {
		t.Errorf("result %v: want outcome ok after 3 attempts", result)
	}
	statuses := fmt.Sprint(result["httpStatuses"])
	if statuses != "[503 503 200]" {
		t.Errorf("httpStatuses %s, want [503 503 200]", statuses)
	}
	retries := m.samplesOf(metricRetries)
	if len(retries) != 1 || retries[0].Value != 2 || retries[0].Tags.Map()["kind"] != "transfer" {
		t.Errorf("ledger_retries samples %v, want one of value 2 with kind=transfer", retries)
	}
}

func TestRetriesAreRoundRobinOverBaseURLs(t *testing.T) {
	first, firstServer := newFakeGateway(t)
	second, secondServer := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURLs: [%q, %q]}`, firstServer.URL, secondServer.URL))
	m.enterVU(1)
	m.mustRun(`for (let i = 0; i < 6; i++) client.deposit(session, 11, 10)`)
	if len(first.seenKeys()) != 3 || len(second.seenKeys()) != 3 {
		t.Errorf("requests per gateway %d and %d, want 3 and 3", len(first.seenKeys()), len(second.seenKeys()))
	}
}

func TestDuplicatesAtTheConfiguredRate(t *testing.T) {
	for _, mode := range []string{"concurrent", "delayed"} {
		t.Run(mode, func(t *testing.T) {
			gateway, server := newFakeGateway(t)
			m := newModuleTest(t)
			const operations, rate = 1000, 0.3
			m.newClient(fmt.Sprintf(`{baseURL: %q, duplicateRate: %v, duplicateMode: %q, duplicateDelay: 0, seed: 42, runDir: %q}`,
				server.URL, rate, mode, m.runDir))
			m.enterVU(1)
			m.mustRun(fmt.Sprintf(`for (let i = 0; i < %d; i++) client.deposit(session, 11, 100)`, operations))
			perKey := map[string]int{}
			for _, key := range gateway.seenKeys() {
				perKey[key]++
			}
			duplicated := 0
			for _, count := range perKey {
				if count == 2 {
					duplicated++
				} else if count != 1 {
					t.Fatalf("a key was sent %d times", count)
				}
			}
			if len(perKey) != operations {
				t.Fatalf("%d distinct keys, want %d", len(perKey), operations)
			}
			// Binomial(1000, 0.3): the standard deviation is 14.5; 4.5 of them is 65.
			if math.Abs(float64(duplicated)-rate*operations) > 65 {
				t.Errorf("%d of %d operations duplicated, want about %v", duplicated, operations, rate*operations)
			}
			sent := 0.0
			for _, sample := range m.samplesOf(metricDuplicatesSent) {
				sent += sample.Value
			}
			if int(sent) != duplicated {
				t.Errorf("ledger_duplicates_sent %v, gateway saw %d duplicates", sent, duplicated)
			}
			journaled := 0
			for _, line := range m.journalLines() {
				if line["dup"] != nil {
					journaled++
					if line["dup"] != mode || fmt.Sprint(line["dup_statuses"]) != "[200]" || line["outcome"] != "ok" {
						t.Fatalf("duplicated line %v: want dup %q, dup_statuses [200], outcome ok", line, mode)
					}
				}
			}
			if journaled != duplicated {
				t.Errorf("%d journal lines with dup, gateway saw %d duplicates", journaled, duplicated)
			}
		})
	}
}

func TestDuplicatesReplayWithSeed(t *testing.T) {
	choices := func() []bool {
		gateway, server := newFakeGateway(t)
		m := newModuleTest(t)
		m.newClient(fmt.Sprintf(`{baseURL: %q, duplicateRate: 0.5, duplicateDelay: 0, duplicateMode: "delayed", seed: 7}`, server.URL))
		m.enterVU(2)
		m.mustRun(`for (let i = 0; i < 40; i++) client.deposit(session, 11, 100)`)
		keys := gateway.seenKeys()
		var duplicated []bool
		for i := 0; i < len(keys); i++ {
			twice := i+1 < len(keys) && keys[i+1] == keys[i]
			duplicated = append(duplicated, twice)
			if twice {
				i++
			}
		}
		return duplicated
	}
	first, second := choices(), choices()
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("the same seed made different duplicate choices:\n%v\n%v", first, second)
	}
}

func TestMisuseAtTheConfiguredRate(t *testing.T) {
	gateway, server := newFakeGateway(t)
	m := newModuleTest(t)
	const operations, rate = 500, 0.2
	m.newClient(fmt.Sprintf(`{baseURL: %q, misuseRate: %v, seed: 3, runDir: %q}`, server.URL, rate, m.runDir))
	m.enterVU(1)
	m.mustRun(fmt.Sprintf(`for (let i = 0; i < %d; i++) client.withdraw(session, 11, 100)`, operations))
	lines := m.journalLines()
	byOp := map[string]map[string]any{}
	for _, line := range lines {
		byOp[line["op"].(string)] = line
	}
	misused := 0
	for _, line := range lines {
		if line["kind"] != "misuse" {
			continue
		}
		misused++
		original := byOp[line["misuse_of"].(string)]
		if original == nil || original["kind"] != "withdrawal" {
			t.Fatalf("misuse line %v does not name a withdrawal", line)
		}
		if line["key"] != original["key"] || line["amount"] == original["amount"] || line["from"] != original["from"] {
			t.Fatalf("misuse %v of %v: want the same key and account with a different amount", line, original)
		}
		if line["outcome"] != "fail" || line["reason"] != "idempotency_key_reused" || fmt.Sprint(line["statuses"]) != "[422]" {
			t.Fatalf("misuse line %v: want fail idempotency_key_reused after one 422", line)
		}
	}
	// Binomial(500, 0.2): the standard deviation is 8.9; 4.5 of them is 40.
	if math.Abs(float64(misused)-rate*operations) > 40 {
		t.Errorf("%d misuses over %d operations, want about %v", misused, operations, rate*operations)
	}
	if keys := gateway.seenKeys(); len(keys) != operations+misused {
		t.Errorf("gateway saw %d money requests, want %d", len(keys), operations+misused)
	}
	sent := 0.0
	for _, sample := range m.samplesOf(metricMisuseSent) {
		sent += sample.Value
	}
	if int(sent) != misused {
		t.Errorf("ledger_misuse_sent %v, want %d", sent, misused)
	}
}

func TestJournalLines(t *testing.T) {
	_, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q, runDir: %q}`, server.URL, m.runDir))
	m.enterVU(4)
	m.mustRun(`
		client.deposit(session, 11, 100);
		client.withdraw(session, 11, 30);
		client.transfer(session, 11, 12, 20, {key: "my-own-key"});
		client.deposit(session, 12, 5);
	`)
	stats := m.mustRun(`ledger.journalStats()`).(map[string]any)
	if _, ok := stats["blockedNs"]; !ok {
		t.Errorf("journalStats %v lacks blockedNs", stats)
	}
	lines := m.journalLines()
	if len(lines) != 4 {
		t.Fatalf("%d journal lines, want 4: %v", len(lines), lines)
	}
	if _, err := os.Stat(filepath.Join(m.runDir, "journal.jsonl")); err != nil {
		t.Errorf("journal not at <runDir>/journal.jsonl: %v", err)
	}
	want := []struct {
		kind             string
		from, to, amount float64
		seq              float64
	}{
		{"deposit", 0, 11, 100, 1},
		{"withdrawal", 11, 0, 30, 2},
		{"transfer", 11, 12, 20, 3},
		{"deposit", 0, 12, 5, 1},
	}
	ops := map[any]bool{}
	for i, line := range lines {
		w := want[i]
		if line["v"] != 1.0 || line["kind"] != w.kind || line["from"] != w.from || line["to"] != w.to || line["amount"] != w.amount ||
			line["seq"] != w.seq || line["user"] != 7.0 || line["vu"] != 4.0 || line["iter"] != 0.0 ||
			line["attempts"] != 1.0 || fmt.Sprint(line["statuses"]) != "[200]" || line["outcome"] != "ok" || line["status"] != "settled" {
			t.Errorf("line %d = %v, want %+v user 7 vu 4 iter 0 one attempt [200] ok settled", i, line, w)
		}
		if line["invoke"].(float64) <= 0 || line["complete"].(float64) < line["invoke"].(float64) {
			t.Errorf("line %d: invoke %v complete %v", i, line["invoke"], line["complete"])
		}
		if key, _ := line["key"].(string); key == "" || line["tx"] != "tx-"+key {
			t.Errorf("line %d: key %v tx %v", i, line["key"], line["tx"])
		}
		if ops[line["op"]] {
			t.Errorf("op id %v used twice", line["op"])
		}
		ops[line["op"]] = true
		if _, present := line["dup"]; present {
			t.Errorf("line %d has dup without a duplicate", i)
		}
	}
	if lines[2]["key"] != "my-own-key" {
		t.Errorf("the key option was not used: %v", lines[2]["key"])
	}
	if again := m.mustRun(`ledger.closeJournal()`); again == nil {
		t.Errorf("a second closeJournal returned null; it must be safe and report the journal again")
	}
}

func TestOutcomeClassification(t *testing.T) {
	settled := `{"transaction_id":"t1","kind":"deposit","status":"settled","amount":1,"source_account_id":0,"destination_account_id":11}`
	rejected := `{"transaction_id":"t1","kind":"withdrawal","status":"rejected","reason":"insufficient_funds","amount":1,"source_account_id":11,"destination_account_id":0}`
	accepted := `{"transaction_id":"t1","kind":"deposit","status":"accepted","amount":1,"source_account_id":0,"destination_account_id":11}`
	tests := []struct {
		name       string
		status     int
		body       string
		refused    bool // the gateway is not listening
		outcome    string
		ledger     string
		reason     string
		statuses   string
		settleSeen bool
	}{
		{name: "200 settled", status: 200, body: settled, outcome: "ok", ledger: "settled", statuses: "[200]", settleSeen: true},
		{name: "200 rejected", status: 200, body: rejected, outcome: "fail", ledger: "rejected", reason: "insufficient_funds", statuses: "[200]", settleSeen: true},
		{name: "202 accepted", status: 202, body: accepted, outcome: "info", ledger: "accepted", statuses: "[202]"},
		{name: "422 key reused", status: 422, body: `{"code":"idempotency_key_reused","message":"x"}`, outcome: "fail", reason: "idempotency_key_reused", statuses: "[422]", settleSeen: true},
		{name: "403 forbidden", status: 403, body: `{"code":"forbidden","message":"x"}`, outcome: "fail", reason: "forbidden", statuses: "[403]", settleSeen: true},
		{name: "503 after max attempts", status: 503, body: `{"code":"unavailable","message":"x"}`, outcome: "info", reason: "unavailable", statuses: "[503 503 503]"},
		{name: "409 in flight after max attempts", status: 409, body: `{"code":"idempotency_key_in_flight","message":"x"}`, outcome: "info", reason: "idempotency_key_in_flight", statuses: "[409 409 409]"},
		{name: "429 on every attempt", status: 429, body: `{"code":"rate_limited","message":"x"}`, outcome: "fail", reason: "rate_limited", statuses: "[429 429 429]", settleSeen: true},
		{name: "connection refused", refused: true, outcome: "info", reason: "connection_error", statuses: "[0 0 0]"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateway, server := newFakeGateway(t)
			gateway.answer = func(string) (int, string) { return test.status, test.body }
			base := server.URL
			if test.refused {
				server.Close()
			}
			m := newModuleTest(t)
			m.newClient(fmt.Sprintf(`{baseURL: %q, retry: {backoff: 1, maxBackoff: 2}, runDir: %q}`, base, m.runDir))
			m.enterVU(1)
			result := m.mustRun(`client.deposit(session, 11, 1)`).(map[string]any)
			if result["outcome"] != test.outcome || fmt.Sprint(result["httpStatuses"]) != test.statuses {
				t.Errorf("result %v: want outcome %s statuses %s", result, test.outcome, test.statuses)
			}
			if (result["status"] == nil && test.ledger != "") || (result["status"] != nil && result["status"] != test.ledger) {
				t.Errorf("status %v, want %q", result["status"], test.ledger)
			}
			if (result["reason"] == nil && test.reason != "") || (result["reason"] != nil && result["reason"] != test.reason) {
				t.Errorf("reason %v, want %q", result["reason"], test.reason)
			}
			if _, settled := result["settleMs"]; settled != test.settleSeen {
				t.Errorf("settleMs present %v, want %v", settled, test.settleSeen)
			}
			unknown := len(m.samplesOf(metricUnknownOutcomes))
			if (unknown == 1) != (test.outcome == "info") {
				t.Errorf("%d ledger_unknown_outcomes samples for outcome %s", unknown, test.outcome)
			}
			line := m.journalLines()[0]
			if line["outcome"] != test.outcome || fmt.Sprint(line["statuses"]) != test.statuses {
				t.Errorf("journal line %v: want outcome %s statuses %s", line, test.outcome, test.statuses)
			}
		})
	}
}

func TestFourHundredAfterTimeoutIsUnknown(t *testing.T) {
	exchanges := []exchange{{status: 0}, {status: 401, body: []byte(`{"code":"unauthenticated"}`)}}
	if got := classifyMoney(exchanges); got.outcome != outcomeInfo || got.reason != "unauthenticated" {
		t.Errorf("401 after no answer classified %+v, want info: the first attempt may have been applied", got)
	}
	if got := classifyMoney([]exchange{{status: 503}, {status: 429, body: []byte(`{"code":"rate_limited"}`)}}); got.outcome != outcomeInfo {
		t.Errorf("429 after 503 classified %+v, want info", got)
	}
}

func TestMergeDuplicate(t *testing.T) {
	ok := classification{outcome: outcomeOK, status: statusSettled, fromLedger: true}
	inFlight := classification{outcome: outcomeInfo, reason: codeIdempotencyKeyInFlight}
	refused := classification{outcome: outcomeFail, reason: codeRateLimited}
	tests := []struct {
		name                string
		original, duplicate classification
		want                string
	}{
		{"original settled", ok, inFlight, outcomeOK},
		{"duplicate settled while the original met it in flight", inFlight, ok, outcomeOK},
		{"original refused but the duplicate unknown", refused, inFlight, outcomeInfo},
		{"both refused", refused, refused, outcomeFail},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := mergeDuplicate(test.original, test.duplicate); got.outcome != test.want {
				t.Errorf("merged %+v, want outcome %s", got, test.want)
			}
		})
	}
}

func TestAsyncForms(t *testing.T) {
	gateway, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q, runDir: %q}`, server.URL, m.runDir))
	if _, err := m.run(`client.depositAsync(session, 11, 1)`); err == nil || !strings.Contains(err.Error(), "init context") {
		t.Errorf("depositAsync in the init context: error %v, want one about the init context", err)
	}
	m.enterVU(1)
	_, err := m.runtime.RunOnEventLoop(`
		var results = [];
		Promise.all([
			client.depositAsync(session, 11, 10),
			client.withdrawAsync(session, 11, 5),
			client.transferAsync(session, 11, 12, 1),
			client.balanceAsync(session, 11),
			client.transactionAsync(session, "t1"),
			client.transactionAsync(session, "missing"),
		]).then((values) => { results = values; });
		var rejected = "";
		client.depositAsync(session, 11, 1.5).catch((e) => { rejected = String(e); });
	`)
	if err != nil {
		t.Fatal(err)
	}
	results := m.mustRun(`results`).([]any)
	if len(results) != 6 {
		t.Fatalf("results %v", results)
	}
	for i := 0; i < 3; i++ {
		if results[i].(map[string]any)["outcome"] != "ok" {
			t.Errorf("async result %d: %v", i, results[i])
		}
	}
	if results[3] != int64(4200) || results[4].(map[string]any)["status"] != "settled" || results[5] != nil {
		t.Errorf("balance %v, transaction %v, missing transaction %v", results[3], results[4], results[5])
	}
	if rejected := m.mustRun(`rejected`).(string); !strings.Contains(rejected, "amount must be an integer") {
		t.Errorf("depositAsync with amount 1.5 rejected with %q", rejected)
	}
	if got := len(gateway.seenKeys()); got != 3 {
		t.Errorf("%d money requests, want 3", got)
	}
	if lines := m.journalLines(); len(lines) != 3 {
		t.Errorf("%d journal lines, want 3", len(lines))
	}
}

func TestSyncFormsRefuseTheInitContext(t *testing.T) {
	_, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q}`, server.URL))
	for _, call := range []string{`client.deposit(session, 11, 1)`, `client.signup("a@b.test", "password1")`, `client.prepareAccounts({count: 1})`} {
		if _, err := m.run(call); err == nil || !strings.Contains(err.Error(), "init context") {
			t.Errorf("%s in the init context: error %v, want one about the init context", call, err)
		}
	}
}

func TestSignupSigninReads(t *testing.T) {
	_, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q, runDir: %q}`, server.URL, m.runDir))
	m.enterVU(1)
	user := m.mustRun(`client.signup("ann@example.test", "password1")`).(map[string]any)
	if user["userId"] != int64(1) || user["accountId"] != int64(1001) {
		t.Errorf("signup returned %v", user)
	}
	s := m.mustRun(`var s = client.signin("ann@example.test", "password1"); s`).(map[string]any)
	if s["token"] != "token-1" || s["userId"] != int64(1) || s["accountId"] != int64(1001) || s["email"] != "ann@example.test" {
		t.Errorf("signin returned %v", s)
	}
	if balance := m.mustRun(`client.balance(s, 1001)`); balance != int64(4200) {
		t.Errorf("balance %v", balance)
	}
	if _, err := m.run(`client.signup("ann@example.test", "password1")`); err == nil || !strings.Contains(err.Error(), "email_taken") {
		t.Errorf("second signup: %v, want an email_taken error", err)
	}
	if _, err := m.run(`client.signin("bob@example.test", "password1")`); err == nil || !strings.Contains(err.Error(), "invalid_credentials") {
		t.Errorf("signin of an unknown user: %v", err)
	}
	lines := m.journalLines()
	if len(lines) != 2 || lines[0]["kind"] != "signup" || lines[0]["outcome"] != "ok" || lines[0]["to"] != 1001.0 || lines[0]["user"] != 1.0 ||
		lines[1]["outcome"] != "fail" || lines[1]["reason"] != "email_taken" {
		t.Errorf("signup journal lines %v", lines)
	}
}

func TestPrepareAccounts(t *testing.T) {
	gateway, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q, runDir: %q, duplicateRate: 1, misuseRate: 1}`, server.URL, m.runDir))
	m.enterVU(0) // setup()
	accounts := m.mustRun(`client.prepareAccounts({count: 50, funding: 777, concurrency: 8})`).([]any)
	if len(accounts) != 50 {
		t.Fatalf("%d accounts, want 50", len(accounts))
	}
	emails := map[any]bool{}
	for _, value := range accounts {
		account := value.(map[string]any)
		if account["token"] == "" || account["balance"] != int64(777) || account["password"] == "" || emails[account["email"]] {
			t.Fatalf("account %v", account)
		}
		emails[account["email"]] = true
	}
	if got := len(gateway.seenKeys()); got != 50 {
		t.Errorf("%d funding requests, want 50 (no duplicates or misuse while preparing)", got)
	}
	kinds := map[string]int{}
	for _, line := range m.journalLines() {
		kinds[line["kind"].(string)]++
		if line["vu"] != 0.0 || line["iter"] != -1.0 || line["outcome"] != "ok" {
			t.Fatalf("setup line %v: want vu 0, iter -1, outcome ok", line)
		}
		if line["kind"] == "deposit" && (line["amount"] != 777.0 || line["seq"] != 1.0) {
			t.Fatalf("funding line %v", line)
		}
	}
	if kinds["signup"] != 50 || kinds["deposit"] != 50 || len(kinds) != 2 {
		t.Errorf("journal kinds %v, want 50 signups and 50 deposits", kinds)
	}
}

func TestPrepareAccountsReportsFailures(t *testing.T) {
	gateway, server := newFakeGateway(t)
	gateway.answer = func(string) (int, string) {
		return 422, `{"code":"invalid_amount","message":"no"}`
	}
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q}`, server.URL))
	m.enterVU(0)
	_, err := m.run(`client.prepareAccounts({count: 5})`)
	if err == nil || !strings.Contains(err.Error(), "funding deposit") {
		t.Errorf("prepareAccounts with refused deposits: %v", err)
	}
}
