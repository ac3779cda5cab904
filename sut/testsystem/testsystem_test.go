package testsystem_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/testsystem"
)

// api drives a System's handler in process: no listener, no port.
type api struct {
	t       *testing.T
	system  *testsystem.System
	handler http.Handler
}

func newAPI(t *testing.T, options testsystem.Options) *api {
	t.Helper()
	system, err := testsystem.New(options)
	if err != nil {
		t.Fatalf("New(%+v): %v", options, err)
	}
	t.Cleanup(system.Close)
	return &api{t: t, system: system, handler: system.Handler()}
}

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() string {
	var body struct{ Code string }
	_ = json.Unmarshal(a.body, &body)
	return body.Code
}

func (a answer) transaction(t *testing.T) transactionBody {
	t.Helper()
	var body transactionBody
	if err := json.Unmarshal(a.body, &body); err != nil || body.ID == "" {
		t.Fatalf("not a transaction: HTTP %d %s", a.status, a.body)
	}
	return body
}

type transactionBody struct {
	ID          string `json:"transaction_id"`
	Kind        string `json:"kind"`
	Status      string `json:"status"`
	Amount      int64  `json:"amount"`
	Source      int64  `json:"source_account_id"`
	Destination int64  `json:"destination_account_id"`
	Reason      string `json:"reason"`
}

// send serves one request; header holds extra headers (Content-Type is set
// for a body unless header sets it).
func (a *api) send(method, path, token, body string, header map[string]string) answer {
	a.t.Helper()
	request := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		request.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	for name, value := range header {
		request.Header.Set(name, value)
	}
	recorder := httptest.NewRecorder()
	a.handler.ServeHTTP(recorder, request)
	return answer{status: recorder.Code, header: recorder.Header(), body: recorder.Body.Bytes()}
}

// customer is a signed-in user.
type customer struct {
	token             string
	userID, accountID int64
}

func (a *api) signUpAndIn(email string) customer {
	a.t.Helper()
	credentials := fmt.Sprintf(`{"email":%q,"password":"correct horse"}`, email)
	signup := a.send("POST", "/v1/users", "", credentials, nil)
	if signup.status != http.StatusCreated {
		a.t.Fatalf("signup %s: HTTP %d %s", email, signup.status, signup.body)
	}
	signin := a.send("POST", "/v1/sessions", "", credentials, nil)
	var session struct {
		Token     string `json:"token"`
		UserID    int64  `json:"user_id"`
		AccountID int64  `json:"account_id"`
	}
	if signin.status != http.StatusCreated || json.Unmarshal(signin.body, &session) != nil || session.Token == "" {
		a.t.Fatalf("signin %s: HTTP %d %s", email, signin.status, signin.body)
	}
	return customer{token: session.Token, userID: session.UserID, accountID: session.AccountID}
}

func (a *api) deposit(c customer, key string, amount int64) answer {
	a.t.Helper()
	return a.send("POST", "/v1/deposits", c.token, fmt.Sprintf(`{"account_id":%d,"amount":%d}`, c.accountID, amount),
		map[string]string{"Idempotency-Key": key})
}

func (a *api) withdraw(c customer, key string, amount int64) answer {
	a.t.Helper()
	return a.send("POST", "/v1/withdrawals", c.token, fmt.Sprintf(`{"account_id":%d,"amount":%d}`, c.accountID, amount),
		map[string]string{"Idempotency-Key": key})
}

func (a *api) transfer(c customer, key string, to, amount int64) answer {
	a.t.Helper()
	return a.send("POST", "/v1/transfers", c.token,
		fmt.Sprintf(`{"from_account_id":%d,"to_account_id":%d,"amount":%d}`, c.accountID, to, amount),
		map[string]string{"Idempotency-Key": key})
}

func (a *api) balance(c customer) int64 {
	a.t.Helper()
	got := a.send("GET", fmt.Sprintf("/v1/accounts/%d", c.accountID), c.token, "", nil)
	var body struct {
		Balance *int64 `json:"balance"`
	}
	if got.status != http.StatusOK || json.Unmarshal(got.body, &body) != nil || body.Balance == nil {
		a.t.Fatalf("balance of %d: HTTP %d %s", c.accountID, got.status, got.body)
	}
	return *body.Balance
}

// expectFinal checks a 200 answer with a final status (and reason).
func expectFinal(t *testing.T, label string, got answer, status, reason string) transactionBody {
	t.Helper()
	if got.status != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s, want 200", label, got.status, got.body)
	}
	body := got.transaction(t)
	if body.Status != status || body.Reason != reason {
		t.Fatalf("%s: status %q reason %q, want %q %q", label, body.Status, body.Reason, status, reason)
	}
	return body
}

func TestMoneyLifecycle(t *testing.T) {
	a := newAPI(t, testsystem.Options{})
	alice, bob := a.signUpAndIn("alice@example.test"), a.signUpAndIn("bob@example.test")

	deposit := expectFinal(t, "deposit", a.deposit(alice, "d-1", 1000), "settled", "")
	if deposit.Kind != "deposit" || deposit.Source != 0 || deposit.Destination != alice.accountID || deposit.Amount != 1000 {
		t.Errorf("deposit answered %+v", deposit)
	}
	overdraft := expectFinal(t, "withdrawal beyond the balance", a.withdraw(alice, "w-1", 5000), "rejected", "insufficient_funds")
	expectFinal(t, "withdrawal", a.withdraw(alice, "w-2", 200), "settled", "")
	transfer := expectFinal(t, "transfer", a.transfer(alice, "t-1", bob.accountID, 300), "settled", "")
	expectFinal(t, "transfer to no account", a.transfer(alice, "t-2", 999, 1), "rejected", "account_not_found")

	replay := a.deposit(alice, "d-1", 1000)
	if replay.transaction(t).ID != deposit.ID || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: HTTP %d %s, replayed %q; want the first answer (%s) again", replay.status, replay.body,
			replay.header.Get("Idempotent-Replayed"), deposit.ID)
	}
	if reuse := a.deposit(alice, "d-1", 1001); reuse.status != http.StatusUnprocessableEntity || reuse.code() != "idempotency_key_reused" {
		t.Errorf("key reused with another amount: HTTP %d %s, want 422 idempotency_key_reused", reuse.status, reuse.body)
	}
	// Keys are per user: bob's "d-1" is a request of its own.
	if other := expectFinal(t, "bob's d-1", a.deposit(bob, "d-1", 5), "settled", ""); other.ID == deposit.ID {
		t.Errorf("two users' keys named one transaction %s", other.ID)
	}

	if got, want := a.balance(alice), int64(1000-200-300); got != want {
		t.Errorf("alice's balance %d, want %d (the replay and the reused key applied nothing)", got, want)
	}
	if got, want := a.balance(bob), int64(305); got != want {
		t.Errorf("bob's balance %d, want %d", got, want)
	}
	status := a.send("GET", "/v1/transactions/"+transfer.ID, alice.token, "", nil)
	if got := status.transaction(t); got != transfer {
		t.Errorf("transfer status %+v, want %+v", got, transfer)
	}
	if got := a.send("GET", "/v1/transactions/"+overdraft.ID, alice.token, "", nil).transaction(t); got.Reason != "insufficient_funds" {
		t.Errorf("overdraft status %+v", got)
	}
	for _, path := range []string{"/v1/transactions/" + deposit.ID, "/v1/transactions/00000000-0000-8000-8000-000000000000"} {
		if got := a.send("GET", path, bob.token, "", nil); got.status != http.StatusNotFound || got.code() != "not_found" {
			t.Errorf("bob reads %s: HTTP %d %s, want 404 not_found", path, got.status, got.body)
		}
	}
	if got := a.send("GET", fmt.Sprintf("/v1/accounts/%d", bob.accountID), alice.token, "", nil); got.status != http.StatusNotFound {
		t.Errorf("alice reads bob's account: HTTP %d %s, want 404", got.status, got.body)
	}
}

func TestRefusals(t *testing.T) {
	a := newAPI(t, testsystem.Options{})
	alice, bob := a.signUpAndIn("alice@example.test"), a.signUpAndIn("bob@example.test")
	expectFinal(t, "funding", a.deposit(alice, "fund", 100), "settled", "")
	own := fmt.Sprintf(`"account_id":%d`, alice.accountID)
	key := map[string]string{"Idempotency-Key": "k"}
	cases := []struct {
		name, method, path, token, body string
		header                          map[string]string
		status                          int
		code                            string
	}{
		{"no token", "POST", "/v1/deposits", "", "{" + own + `,"amount":1}`, key, 401, "unauthenticated"},
		{"unknown token", "POST", "/v1/deposits", "nope", "{" + own + `,"amount":1}`, key, 401, "unauthenticated"},
		{"no key", "POST", "/v1/deposits", alice.token, "{" + own + `,"amount":1}`, nil, 400, "idempotency_key_missing"},
		{"key with a space", "POST", "/v1/deposits", alice.token, "{" + own + `,"amount":1}`, map[string]string{"Idempotency-Key": "a b"}, 400, "idempotency_key_missing"},
		{"another's account", "POST", "/v1/deposits", alice.token, fmt.Sprintf(`{"account_id":%d,"amount":1}`, bob.accountID), key, 403, "forbidden"},
		{"debit another's account", "POST", "/v1/transfers", alice.token, fmt.Sprintf(`{"from_account_id":%d,"to_account_id":%d,"amount":1}`, bob.accountID, alice.accountID), key, 403, "forbidden"},
		{"same account", "POST", "/v1/transfers", alice.token, fmt.Sprintf(`{"from_account_id":%d,"to_account_id":%d,"amount":1}`, alice.accountID, alice.accountID), key, 400, "same_account"},
		{"fraction", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":1.5}`, key, 400, "invalid_amount"},
		{"exponent", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":1e1}`, key, 400, "invalid_amount"},
		{"minus zero", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":-0}`, key, 400, "invalid_amount"},
		{"quoted amount", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":"10"}`, key, 400, "invalid_amount"},
		{"null amount", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":null}`, key, 400, "invalid_amount"},
		{"no amount", "POST", "/v1/withdrawals", alice.token, "{" + own + `}`, key, 400, "invalid_amount"},
		{"amount too large", "POST", "/v1/deposits", alice.token, "{" + own + `,"amount":100000000001}`, key, 400, "invalid_amount"},
		{"no account", "POST", "/v1/withdrawals", alice.token, `{"amount":1}`, key, 400, "invalid_request"},
		{"duplicate member", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":1,"amount":50}`, key, 400, "invalid_request"},
		{"capitalised member", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"Amount":1}`, key, 400, "invalid_request"},
		{"transfer member in a deposit", "POST", "/v1/deposits", alice.token, "{" + own + `,"amount":1,"to_account_id":2}`, key, 400, "invalid_request"},
		{"two objects", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":1}{}`, key, 400, "invalid_request"},
		{"array", "POST", "/v1/withdrawals", alice.token, `[1]`, key, 400, "invalid_request"},
		{"invalid UTF-8", "POST", "/v1/users", "", "{\"email\":\"\xff@x.test\",\"password\":\"long enough\"}", nil, 400, "invalid_request"},
		{"text body", "POST", "/v1/withdrawals", alice.token, "{" + own + `,"amount":1}`, map[string]string{"Idempotency-Key": "k", "Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"huge body", "POST", "/v1/users", "", `{"email":"` + strings.Repeat("a", 20000) + `"}`, nil, 413, "body_too_large"},
		{"bad email", "POST", "/v1/users", "", `{"email":"no-at-sign","password":"long enough"}`, nil, 400, "invalid_email"},
		{"short password", "POST", "/v1/users", "", `{"email":"c@example.test","password":"short"}`, nil, 400, "weak_password"},
		{"email taken", "POST", "/v1/users", "", `{"email":" ALICE@example.test","password":"long enough"}`, nil, 409, "email_taken"},
		{"wrong password", "POST", "/v1/sessions", "", `{"email":"alice@example.test","password":"not it at all"}`, nil, 401, "invalid_credentials"},
		{"unknown email", "POST", "/v1/sessions", "", `{"email":"nobody@example.test","password":"correct horse"}`, nil, 401, "invalid_credentials"},
		{"account id not a number", "GET", "/v1/accounts/x", alice.token, "", nil, 400, "invalid_request"},
		{"no route", "GET", "/v1/nothing", "", "", nil, 404, "not_found"},
		{"listed path, other method", "GET", "/v1/deposits", "", "", nil, 404, "not_found"},
		{"relative export directory", "POST", "/admin/export?dir=relative", "", "", nil, 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := a.send(c.method, c.path, c.token, c.body, c.header)
			if got.status != c.status || got.code() != c.code {
				t.Errorf("HTTP %d %s, want %d %s", got.status, got.body, c.status, c.code)
			}
		})
	}
	// A refusal is not remembered and applied nothing: the key is still free.
	expectFinal(t, "key k after its refusals", a.withdraw(alice, "k", 1), "settled", "")
	if got := a.balance(alice); got != 99 {
		t.Errorf("balance %d after the refusals and one withdrawal of 1, want 99", got)
	}
	if got := a.send("GET", "/healthz", "", "", nil); got.status != http.StatusOK {
		t.Errorf("healthz: HTTP %d", got.status)
	}
}

// waitFor polls check every few milliseconds until it holds or 20s pass.
func waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestApplyDelay(t *testing.T) {
	// Long enough that the checks "before the apply" run before it even on a
	// loaded machine (they are in-process calls of a few microseconds).
	const delay = 2 * time.Second
	a := newAPI(t, testsystem.Options{ApplyDelay: delay})
	alice := a.signUpAndIn("alice@example.test")
	start := time.Now()
	// Prefer: wait is ignored: the answer is 202 at once.
	first := a.send("POST", "/v1/deposits", alice.token, fmt.Sprintf(`{"account_id":%d,"amount":100}`, alice.accountID),
		map[string]string{"Idempotency-Key": "d", "Prefer": "wait=5"})
	withdrawal := a.withdraw(alice, "w", 100) // covered only once the deposit before it is applied
	for label, got := range map[string]answer{"deposit": first, "withdrawal": withdrawal} {
		if got.status != http.StatusAccepted || got.transaction(t).Status != "accepted" {
			t.Fatalf("%s: HTTP %d %s, want 202 accepted", label, got.status, got.body)
		}
	}
	deposit := first.transaction(t)
	if got := a.send("GET", "/v1/transactions/"+deposit.ID, alice.token, "", nil).transaction(t); got.Status != "accepted" {
		t.Errorf("status right after the 202: %q, want accepted", got.Status)
	}
	if got := a.balance(alice); got != 0 {
		t.Errorf("balance %d before the apply delay, want 0", got)
	}
	var settled transactionBody
	waitFor(t, "the withdrawal settles", func() bool {
		settled = a.send("GET", "/v1/transactions/"+withdrawal.transaction(t).ID, alice.token, "", nil).transaction(t)
		return settled.Status != "accepted"
	})
	if settled.Status != "settled" || time.Since(start) < delay {
		t.Errorf("withdrawal %q %q after %s, want settled after at least %s (applied in order, after its deposit)",
			settled.Status, settled.Reason, time.Since(start), delay)
	}
	// The replay is the first answer byte for byte, 202 accepted, though the deposit has settled since.
	if replay := a.deposit(alice, "d", 100); replay.status != http.StatusAccepted || string(replay.body) != string(first.body) {
		t.Errorf("replay: HTTP %d %s, want the first answer: 202 %s", replay.status, replay.body, first.body)
	}
	if got := a.balance(alice); got != 0 {
		t.Errorf("balance %d after deposit and withdrawal of 100, want 0", got)
	}
}

// ledger is an export read back through the auditor's own reader.
type ledger struct {
	accounts     map[int64]invariants.Account
	transactions []invariants.Transaction
	postings     []invariants.Posting
}

func readExport(t *testing.T, s *testsystem.System) ledger {
	t.Helper()
	dir := t.TempDir()
	if err := s.WriteExport(dir); err != nil {
		t.Fatalf("WriteExport: %v", err)
	}
	read := ledger{accounts: make(map[int64]invariants.Account)}
	err := invariants.ExportSource{Dir: dir}.Scan(context.Background(), invariants.Visitor{
		Account:     func(a *invariants.Account) error { read.accounts[a.ID] = *a; return nil },
		Transaction: func(tr *invariants.Transaction) error { read.transactions = append(read.transactions, *tr); return nil },
		Posting:     func(p *invariants.Posting) error { read.postings = append(read.postings, *p); return nil },
	})
	if err != nil {
		t.Fatalf("reading the export back: %v", err)
	}
	return read
}

// unbalanced lists the accounts whose stored balance is not the sum of their
// postings.
func (l ledger) unbalanced() []string {
	sums := make(map[int64]int64)
	for _, p := range l.postings {
		sums[p.AccountID] += p.Amount
	}
	var problems []string
	for id, a := range l.accounts {
		if a.Kind == "user" && a.Balance != sums[id] {
			problems = append(problems, fmt.Sprintf("account %d: balance %d, postings %d", id, a.Balance, sums[id]))
		}
	}
	return problems
}

func TestExport(t *testing.T) {
	a := newAPI(t, testsystem.Options{})
	alice, bob := a.signUpAndIn("alice@example.test"), a.signUpAndIn("bob@example.test")
	expectFinal(t, "deposit", a.deposit(alice, "d", 1000), "settled", "")
	expectFinal(t, "transfer", a.transfer(alice, "t", bob.accountID, 400), "settled", "")
	expectFinal(t, "withdrawal", a.withdraw(bob, "w", 150), "settled", "")
	rejected := expectFinal(t, "overdraft", a.withdraw(bob, "o", 251), "rejected", "insufficient_funds")

	read := readExport(t, a.system)
	want := map[int64]invariants.Account{
		0:               {ID: 0, Kind: "external", Balance: -850},
		alice.accountID: {ID: alice.accountID, UserID: alice.userID, Kind: "user", Balance: 600},
		bob.accountID:   {ID: bob.accountID, UserID: bob.userID, Kind: "user", Balance: 250},
	}
	if fmt.Sprint(read.accounts) != fmt.Sprint(want) {
		t.Errorf("accounts %+v, want %+v", read.accounts, want)
	}
	if len(read.transactions) != 4 || len(read.postings) != 6 {
		t.Fatalf("%d transactions and %d postings, want 4 and 6", len(read.transactions), len(read.postings))
	}
	last := read.transactions[3]
	if last.ID != rejected.ID || last.UserID != bob.userID || last.IdempotencyKey != "o" || last.Status != "rejected" ||
		last.Reason != "insufficient_funds" || last.AppliedOrder == nil || *last.AppliedOrder != 4 {
		t.Errorf("the rejected withdrawal exported as %+v", last)
	}
	for i, p := range read.postings {
		if p.ID != int64(i)+1 {
			t.Errorf("posting %d has id %d: want ascending ids from 1", i, p.ID)
		}
	}
	if problems := read.unbalanced(); len(problems) > 0 {
		t.Errorf("a correct system's export is unbalanced: %v", problems)
	}

	// The admin route writes the same export.
	dir := t.TempDir()
	if got := a.send("POST", "/admin/export?dir="+dir, "", "", nil); got.status != http.StatusNoContent {
		t.Fatalf("POST /admin/export: HTTP %d %s", got.status, got.body)
	}
	for _, name := range []string{invariants.AccountsFile, invariants.TransactionsFile, invariants.PostingsFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("admin export: %v", err)
		}
	}
}

func TestExportOfAcceptedCommands(t *testing.T) {
	t.Run("left out until applied", func(t *testing.T) {
		a := newAPI(t, testsystem.Options{ApplyDelay: 2 * time.Second})
		alice := a.signUpAndIn("alice@example.test")
		deposit := a.deposit(alice, "d", 10).transaction(t)
		if read := readExport(t, a.system); len(read.transactions) != 0 || len(read.postings) != 0 {
			t.Errorf("export %+v while the deposit is accepted: want it left out", read)
		}
		waitFor(t, "the deposit settles", func() bool {
			return a.send("GET", "/v1/transactions/"+deposit.ID, alice.token, "", nil).transaction(t).Status == "settled"
		})
		read := readExport(t, a.system)
		if len(read.transactions) != 1 || read.transactions[0].Status != "settled" || len(read.postings) != 2 {
			t.Errorf("export %+v after the apply: want the deposit settled", read)
		}
	})
	t.Run("never applied", func(t *testing.T) {
		a := newAPI(t, testsystem.Options{ApplyDelay: time.Hour})
		alice := a.signUpAndIn("alice@example.test")
		if got := a.deposit(alice, "d", 10); got.status != http.StatusAccepted {
			t.Fatalf("deposit: HTTP %d %s", got.status, got.body)
		}
		a.system.Close()
		read := readExport(t, a.system)
		if len(read.transactions) != 0 || len(read.postings) != 0 {
			t.Errorf("export %+v: an accepted command that was never applied must not be exported", read)
		}
		if got := a.deposit(alice, "e", 10); got.status != http.StatusServiceUnavailable {
			t.Errorf("money request after Close: HTTP %d %s, want 503", got.status, got.body)
		}
	})
}

// TestConcurrentUpdates hammers one account with concurrent deposits and
// withdrawals: the correct system keeps every balance equal to its
// postings, the lost-update bug does not.
func TestConcurrentUpdates(t *testing.T) {
	cases := []struct {
		bug          string
		wantBalanced bool
	}{
		{bug: "", wantBalanced: true},
		{bug: testsystem.BugLostUpdate, wantBalanced: false},
	}
	for _, c := range cases {
		t.Run("bug="+c.bug, func(t *testing.T) {
			a := newAPI(t, testsystem.Options{Bug: c.bug})
			alice := a.signUpAndIn("alice@example.test")
			expectFinal(t, "funding", a.deposit(alice, "fund", 1_000_000), "settled", "")
			const workers, operations = 8, 10
			var wait sync.WaitGroup
			start := make(chan struct{})
			for worker := range workers {
				wait.Go(func() {
					<-start
					for i := range operations {
						key := fmt.Sprintf("%d-%d", worker, i)
						if i%2 == 0 {
							a.deposit(alice, key, 7)
						} else {
							a.withdraw(alice, key, 3)
						}
					}
				})
			}
			close(start)
			wait.Wait()

			read := readExport(t, a.system)
			problems := read.unbalanced()
			if balanced := len(problems) == 0; balanced != c.wantBalanced {
				t.Errorf("balanced %v, want %v: %v", balanced, c.wantBalanced, problems)
			}
			if c.wantBalanced {
				want := int64(1_000_000 + workers*operations/2*(7-3))
				if got := a.balance(alice); got != want {
					t.Errorf("balance %d, want %d", got, want)
				}
			}
		})
	}
}

// TestDoubleApply sends one deposit twice with one key: the correct system
// applies it once, the double-apply bug twice.
func TestDoubleApply(t *testing.T) {
	cases := []struct {
		bug             string
		wantTransaction int
	}{
		{bug: "", wantTransaction: 1},
		{bug: testsystem.BugDoubleApply, wantTransaction: 2},
	}
	for _, c := range cases {
		t.Run("bug="+c.bug, func(t *testing.T) {
			a := newAPI(t, testsystem.Options{Bug: c.bug})
			alice := a.signUpAndIn("alice@example.test")
			first := expectFinal(t, "deposit", a.deposit(alice, "same-key", 100), "settled", "")
			second := expectFinal(t, "its replay", a.deposit(alice, "same-key", 100), "settled", "")
			if (first.ID == second.ID) != (c.wantTransaction == 1) {
				t.Errorf("transaction ids %s and %s", first.ID, second.ID)
			}
			read := readExport(t, a.system)
			settled := 0
			for _, tr := range read.transactions {
				if tr.IdempotencyKey == "same-key" && tr.Status == "settled" {
					settled++
				}
			}
			if settled != c.wantTransaction {
				t.Errorf("%d settled transactions for the key, want %d", settled, c.wantTransaction)
			}
			if got, want := a.balance(alice), int64(100*c.wantTransaction); got != want {
				t.Errorf("balance %d, want %d", got, want)
			}
		})
	}
}

func TestConcurrentDuplicatesApplyOnce(t *testing.T) {
	for _, delay := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			a := newAPI(t, testsystem.Options{ApplyDelay: delay})
			alice := a.signUpAndIn("alice@example.test")
			var wait sync.WaitGroup
			ids := make([]string, 8)
			for i := range ids {
				wait.Go(func() { ids[i] = a.deposit(alice, "once", 5).transaction(t).ID })
			}
			wait.Wait()
			waitFor(t, "the deposit settles", func() bool {
				return a.send("GET", "/v1/transactions/"+ids[0], alice.token, "", nil).transaction(t).Status == "settled"
			})
			read := readExport(t, a.system)
			if len(read.transactions) != 1 || strings.Count(strings.Join(ids, " "), ids[0]) != len(ids) {
				t.Errorf("ids %v, %d transactions exported: want one", ids, len(read.transactions))
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	for name, options := range map[string]testsystem.Options{
		"unknown bug":                  {Bug: "off-by-one"},
		"lost update with apply delay": {Bug: testsystem.BugLostUpdate, ApplyDelay: time.Millisecond},
		"negative delay":               {ApplyDelay: -time.Second},
		"unknown shape":                {Shape: "v3"},
		"shape in capitals":            {Shape: "V2"},
	} {
		if _, err := testsystem.New(options); err == nil {
			t.Errorf("%s: New accepted %+v", name, options)
		}
	}
}
