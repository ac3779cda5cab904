package generator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
	"github.com/ledgerproof/ledgerproof/load/history"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// fundingKeyPrefix starts the idempotency keys of setup's funding deposits (setup.go): the fake tells them
// from the load's money operations by it.
const fundingKeyPrefix = "setup-"

// fakeSystem stands in for a system that implements the reference API (sut/openapi.yaml): sign-up, sign-in,
// deposits, withdrawals and transfers applied at once with the idempotency contract (same key and body: the
// first answer again and no second effect; same key, another body: 422), balances and transactions. Its knobs
// are set by configure, before it serves.
type fakeSystem struct {
	t *testing.T
	// delay holds every answer this long.
	delay time.Duration
	// loadDelay holds the answers to the load's money operations (not setup's) this long; hangLoad holds them
	// until the client gives up.
	loadDelay time.Duration
	hangLoad  bool
	// hangSignup holds the answers to sign-ups until the client gives up; unavailableSignin answers every
	// sign-in 503.
	hangSignup, unavailableSignin bool
	// refuseSignup, when set, picks the emails whose sign-up is refused (422 invalid_email).
	refuseSignup func(email string) bool
	// dropFirstSignup creates the user of the first sign-up of each email, then closes the connection without
	// answering (a lost answer).
	dropFirstSignup bool
	// fundingUnavailable answers the first requests of each funding deposit key 503 (nothing applied).
	fundingUnavailable int
	// fundingAccepted answers funding deposits 202 (status accepted); the deposit settles when its transaction
	// is first read.
	fundingAccepted bool
	// balanceOffset is added to every balance the fake reports (a wrong answer).
	balanceOffset int64
	// onLoadMoney, when set, is called on each of the load's money requests, with their number (from 1).
	onLoadMoney func(count int)
	// release is closed at cleanup, to free the handlers that hang.
	release chan struct{}

	mutex sync.Mutex
	// users by email; accounts' balances by id; transactions by id.
	users        map[string]fakeUser
	balances     map[int64]int64
	transactions map[string]*fakeTransaction
	// answers are the first successful answer per idempotency key, with the body it answered.
	answers map[string]fakeStoredAnswer
	// keyRequests counts the money requests per idempotency key.
	keyRequests map[string]int
	// signups are the emails of the sign-up requests, in order; refused those refused.
	signups, refused []string
	// loadMoney counts the load's money requests (keys not of setup).
	loadMoney int
	// fundingKeys maps each account to the keys of the funding deposits sent for it.
	fundingKeys map[int64]map[string]bool
}

type fakeUser struct {
	id, account int64
	password    string
}

type fakeTransaction struct {
	client.Transaction
	// applied is true once the transaction moved the money.
	applied bool
}

type fakeStoredAnswer struct {
	body   string
	status int
	answer string
}

// newFakeSystem starts a fake system; configure sets its knobs before it serves.
func newFakeSystem(t *testing.T, configure func(*fakeSystem)) (*fakeSystem, *httptest.Server) {
	t.Helper()
	f := &fakeSystem{t: t, release: make(chan struct{}),
		users: map[string]fakeUser{}, balances: map[int64]int64{}, transactions: map[string]*fakeTransaction{},
		answers: map[string]fakeStoredAnswer{}, keyRequests: map[string]int{}, fundingKeys: map[int64]map[string]bool{}}
	if configure != nil {
		configure(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", f.signup)
	mux.HandleFunc("POST /v1/sessions", f.signin)
	mux.HandleFunc("POST /v1/deposits", f.money(client.KindDeposit))
	mux.HandleFunc("POST /v1/withdrawals", f.money(client.KindWithdrawal))
	mux.HandleFunc("POST /v1/transfers", f.money(client.KindTransfer))
	mux.HandleFunc("GET /v1/accounts/{id}", f.account)
	mux.HandleFunc("GET /v1/transactions/{id}", f.transaction)
	server := httptest.NewServer(mux)
	// Cleanups run last in, first out: hanging handlers are released before Close waits for them.
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(f.release) })
	return f, server
}

// hold waits d, or until the client gives up or the test ends; it reports whether the answer should be sent.
func (f *fakeSystem) hold(r *http.Request, d time.Duration, forever bool) bool {
	if d <= 0 && !forever {
		return true
	}
	var timeout <-chan time.Time
	if !forever {
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-f.release:
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, fmt.Sprintf(`{"code":%q,"message":%q}`, code, code))
}

func readCredentials(t *testing.T, r *http.Request) (email, password string) {
	var credentials struct{ Email, Password string }
	if err := json.NewDecoder(r.Body).Decode(&credentials); err != nil {
		t.Errorf("fake system: %s: %v", r.URL.Path, err)
	}
	return credentials.Email, credentials.Password
}

func (f *fakeSystem) signup(w http.ResponseWriter, r *http.Request) {
	email, password := readCredentials(f.t, r)
	if !f.hold(r, f.delay, f.hangSignup) {
		return
	}
	f.mutex.Lock()
	f.signups = append(f.signups, email)
	if f.refuseSignup != nil && f.refuseSignup(email) {
		f.refused = append(f.refused, email)
		f.mutex.Unlock()
		writeError(w, http.StatusUnprocessableEntity, "invalid_email")
		return
	}
	if _, taken := f.users[email]; taken {
		f.mutex.Unlock()
		writeError(w, http.StatusConflict, "email_taken")
		return
	}
	user := fakeUser{id: int64(len(f.users) + 1), account: int64(len(f.users) + 1001), password: password}
	f.users[email] = user
	f.balances[user.account] = 0
	f.mutex.Unlock()
	if f.dropFirstSignup {
		// The user exists, the answer is lost: the client must retry and take email_taken for success.
		connection, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			f.t.Errorf("fake system: hijack: %v", err)
			return
		}
		connection.Close()
		return
	}
	writeJSON(w, http.StatusCreated, fmt.Sprintf(`{"user_id":%d,"account_id":%d,"email":%q}`, user.id, user.account, email))
}

func (f *fakeSystem) signin(w http.ResponseWriter, r *http.Request) {
	email, password := readCredentials(f.t, r)
	if !f.hold(r, f.delay, false) {
		return
	}
	if f.unavailableSignin {
		writeError(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	f.mutex.Lock()
	user, found := f.users[email]
	f.mutex.Unlock()
	if !found || user.password != password {
		writeError(w, http.StatusUnauthorized, "invalid_credentials")
		return
	}
	writeJSON(w, http.StatusCreated, fmt.Sprintf(`{"token":"token-%d","user_id":%d,"account_id":%d,"expires_at":"2030-01-01T00:00:00Z"}`,
		user.id, user.id, user.account))
}

func (f *fakeSystem) money(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			f.t.Errorf("fake system: reading a %s: %v", kind, err)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		funding := strings.HasPrefix(key, fundingKeyPrefix)
		f.mutex.Lock()
		f.keyRequests[key]++
		attempt := f.keyRequests[key]
		loadCount := 0
		if !funding {
			f.loadMoney++
			loadCount = f.loadMoney
		}
		f.mutex.Unlock()
		if f.onLoadMoney != nil && !funding {
			f.onLoadMoney(loadCount)
		}
		delay := f.delay
		if !funding {
			delay += f.loadDelay
		}
		if !f.hold(r, delay, f.hangLoad && !funding) {
			return
		}
		if funding && attempt <= f.fundingUnavailable {
			writeError(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		var request struct {
			AccountID     int64 `json:"account_id"`
			FromAccountID int64 `json:"from_account_id"`
			ToAccountID   int64 `json:"to_account_id"`
			Amount        int64 `json:"amount"`
		}
		if err := json.Unmarshal(body, &request); err != nil || request.Amount < 1 {
			writeError(w, http.StatusBadRequest, "invalid_request")
			return
		}

		f.mutex.Lock()
		defer f.mutex.Unlock()
		if stored, seen := f.answers[key]; seen {
			if stored.body != string(body) {
				writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused")
				return
			}
			writeJSON(w, stored.status, stored.answer)
			return
		}
		transaction := &fakeTransaction{Transaction: client.Transaction{
			ID: "tx-" + strconv.Itoa(len(f.transactions)+1), Kind: kind, Amount: request.Amount, Status: client.StatusSettled}}
		switch kind {
		case client.KindDeposit:
			transaction.DestinationAccountID = request.AccountID
		case client.KindWithdrawal:
			transaction.SourceAccountID = request.AccountID
		default:
			transaction.SourceAccountID, transaction.DestinationAccountID = request.FromAccountID, request.ToAccountID
		}
		for _, account := range []int64{transaction.SourceAccountID, transaction.DestinationAccountID} {
			if _, exists := f.balances[account]; account != 0 && !exists {
				writeError(w, http.StatusNotFound, "account_not_found")
				return
			}
		}
		if funding {
			if f.fundingKeys[request.AccountID] == nil {
				f.fundingKeys[request.AccountID] = map[string]bool{}
			}
			f.fundingKeys[request.AccountID][key] = true
		}
		f.transactions[transaction.ID] = transaction
		status := http.StatusOK
		if funding && f.fundingAccepted {
			transaction.Status, status = client.StatusAccepted, http.StatusAccepted
		} else {
			f.applyLocked(transaction)
		}
		answer, err := json.Marshal(transaction.Transaction)
		if err != nil {
			f.t.Errorf("fake system: %v", err)
			return
		}
		f.answers[key] = fakeStoredAnswer{body: string(body), status: status, answer: string(answer)}
		writeJSON(w, status, string(answer))
	}
}

// applyLocked moves the money of a transaction, or rejects it for insufficient funds.
func (f *fakeSystem) applyLocked(transaction *fakeTransaction) {
	if transaction.applied {
		return
	}
	transaction.applied = true
	if source := transaction.SourceAccountID; source != 0 && f.balances[source] < transaction.Amount {
		transaction.Status, transaction.Reason = client.StatusRejected, "insufficient_funds"
		return
	}
	transaction.Status = client.StatusSettled
	if transaction.SourceAccountID != 0 {
		f.balances[transaction.SourceAccountID] -= transaction.Amount
	}
	if transaction.DestinationAccountID != 0 {
		f.balances[transaction.DestinationAccountID] += transaction.Amount
	}
}

func (f *fakeSystem) account(w http.ResponseWriter, r *http.Request) {
	if !f.hold(r, f.delay, false) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mutex.Lock()
	balance, found := f.balances[id]
	f.mutex.Unlock()
	if err != nil || !found {
		writeError(w, http.StatusNotFound, "not_found")
		return
	}
	writeJSON(w, http.StatusOK, fmt.Sprintf(`{"account_id":%d,"user_id":%d,"balance":%d}`, id, id-1000, balance+f.balanceOffset))
}

func (f *fakeSystem) transaction(w http.ResponseWriter, r *http.Request) {
	if !f.hold(r, f.delay, false) {
		return
	}
	f.mutex.Lock()
	defer f.mutex.Unlock()
	transaction, found := f.transactions[r.PathValue("id")]
	if !found {
		writeError(w, http.StatusNotFound, "not_found")
		return
	}
	// An accepted transaction settles by the time anyone asks.
	f.applyLocked(transaction)
	answer, err := json.Marshal(transaction.Transaction)
	if err != nil {
		f.t.Errorf("fake system: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, string(answer))
}

// balanceOf returns an account's true balance.
func (f *fakeSystem) balanceOf(account int64) int64 {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	return f.balances[account]
}

// signedUp returns the emails of the sign-up requests, in order, and those refused.
func (f *fakeSystem) signedUp() (signups, refused []string) {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	return append([]string(nil), f.signups...), append([]string(nil), f.refused...)
}

// fundingKeysOf returns the keys of the funding deposits sent for an account.
func (f *fakeSystem) fundingKeysOf(account int64) []string {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	var keys []string
	for key := range f.fundingKeys[account] {
		keys = append(keys, key)
	}
	return keys
}

// requestsOfKey counts the money requests of an idempotency key.
func (f *fakeSystem) requestsOfKey(key string) int {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	return f.keyRequests[key]
}

// loadMoneyRequests counts the load's money requests (not setup's).
func (f *fakeSystem) loadMoneyRequests() int {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	return f.loadMoney
}

// emailIndex returns the account index that ends a prepared account's email ("<prefix>-<tag>-<index>@...").
func emailIndex(t *testing.T, email string) int {
	t.Helper()
	local, _, _ := strings.Cut(email, "@")
	index, err := strconv.Atoi(local[strings.LastIndex(local, "-")+1:])
	if err != nil {
		t.Fatalf("email %q does not end with an account index: %v", email, err)
	}
	return index
}

// ---- scenarios and runs ----

// fastClient is a client section for a fake on the loopback: short backoffs and polls, no Prefer: wait.
const fastClient = `
client:
  wait: 0s
  timeout: 5s
  poll_interval: 5ms
  poll_for: 2s
  retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}
`

// parseScenario parses a scenario as the file test.yaml, with the fast client section unless it has one.
func parseScenario(t *testing.T, content string) *scenario.Scenario {
	t.Helper()
	if !strings.Contains(content, "client:") {
		content += fastClient
	}
	s, err := scenario.Parse("test.yaml", []byte(content), nil)
	if err != nil {
		t.Fatalf("scenario:\n%s\n%v", content, err)
	}
	return s
}

// testSeed is the seed of the test runs.
const testSeed = 7

// runLoad runs s against server into a new run directory; change, when set, adjusts the configuration.
func runLoad(t *testing.T, ctx context.Context, server *httptest.Server, s *scenario.Scenario, change func(*Config)) (*Result, *lockedBuffer) {
	t.Helper()
	output := &lockedBuffer{}
	config := Config{Scenario: s, BaseURLs: []string{server.URL}, RunDir: t.TempDir(), Seed: testSeed, Output: output,
		ProgressInterval: 200 * time.Millisecond}
	if change != nil {
		change(&config)
	}
	result, err := Run(ctx, config)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("load output:\n%s", output.String())
		}
	})
	return result, output
}

// lockedBuffer is an output the engine's goroutines write to while the test may read it.
type lockedBuffer struct {
	mutex  sync.Mutex
	buffer bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.buffer.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mutex.Lock()
	defer b.mutex.Unlock()
	return b.buffer.String()
}

// readJournal returns the journal's lines; an unknown field is an error (load/JOURNAL.md is the format).
func readJournal(t *testing.T, path string) []history.Entry {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	defer file.Close()
	var entries []history.Entry
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		decoder := json.NewDecoder(bytes.NewReader(scanner.Bytes()))
		decoder.DisallowUnknownFields()
		var entry history.Entry
		if err := decoder.Decode(&entry); err != nil {
			t.Fatalf("journal line %q: %v", scanner.Text(), err)
		}
		entries = append(entries, entry)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

// splitJournal separates setup's lines (vu 0, iteration -1) from the load's, and fails on a line that is
// neither.
func splitJournal(t *testing.T, entries []history.Entry) (setup, load []history.Entry) {
	t.Helper()
	for _, entry := range entries {
		switch {
		case entry.VU == 0 && entry.Iter == -1:
			setup = append(setup, entry)
		case entry.VU >= 1 && entry.Iter >= 0:
			load = append(load, entry)
		default:
			t.Errorf("journal line %+v: neither setup's (vu 0, iter -1) nor the load's (vu >= 1, iter >= 0)", entry)
		}
	}
	return setup, load
}

// filesIn lists the names of the files in a directory.
func filesIn(t *testing.T, directory string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(directory, "*"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(matches))
	for i, match := range matches {
		names[i] = filepath.Base(match)
	}
	return names
}
