package testsystem_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
	"github.com/ledgerproof/ledgerproof/sut/testsystem"
)

// sendV2 serves one request of the v2 shape: token goes in X-Auth-Token and
// key in X-Request-Key, each only when not empty.
func (a *api) sendV2(method, path, token, key, body string) answer {
	a.t.Helper()
	header := map[string]string{}
	if token != "" {
		header["X-Auth-Token"] = token
	}
	if key != "" {
		header["X-Request-Key"] = key
	}
	return a.send(method, path, "", body, header)
}

// errorType is the type of a v2 error answer; it fails the test unless the
// body is exactly {"error":{"type":TYPE}}, so that no message or internal
// detail leaks.
func (ans answer) errorType(t *testing.T) string {
	t.Helper()
	var body struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ans.body, &body); err != nil || body.Error.Type == "" {
		t.Fatalf("not a v2 error: HTTP %d %s", ans.status, ans.body)
	}
	if want := fmt.Sprintf(`{"error":{"type":%q}}`, body.Error.Type); string(ans.body) != want {
		t.Errorf("error body %s, want exactly %s", ans.body, want)
	}
	return body.Error.Type
}

// payment is a v2 payment object.
type payment struct {
	Ref         string `json:"ref"`
	State       string `json:"state"`
	DeclineCode string `json:"declineCode"`
}

func (ans answer) payment(t *testing.T) payment {
	t.Helper()
	var body struct {
		Payment payment `json:"payment"`
	}
	if err := json.Unmarshal(ans.body, &body); err != nil || body.Payment.Ref == "" {
		t.Fatalf("not a payment: HTTP %d %s", ans.status, ans.body)
	}
	return body.Payment
}

// v2Customer is a signed-up, signed-in customer of the v2 shape.
type v2Customer struct {
	token      string
	id, wallet int64
}

func (a *api) v2SignUpAndIn(email string) v2Customer {
	a.t.Helper()
	credentials := fmt.Sprintf(`{"emailAddress":%q,"secret":"correct horse"}`, email)
	signup := a.sendV2("POST", "/api/v2/customers", "", "", credentials)
	var created struct {
		Customer struct {
			ID     int64 `json:"id"`
			Wallet struct {
				Number int64 `json:"number"`
			} `json:"wallet"`
		} `json:"customer"`
	}
	if signup.status != http.StatusOK || json.Unmarshal(signup.body, &created) != nil || created.Customer.Wallet.Number == 0 {
		a.t.Fatalf("sign-up %s: HTTP %d %s", email, signup.status, signup.body)
	}
	signin := a.sendV2("POST", "/api/v2/auth/token", "", "", credentials)
	var token struct {
		AccessToken  string `json:"access_token"`
		CustomerID   int64  `json:"customer_id"`
		WalletNumber int64  `json:"wallet_number"`
	}
	if signin.status != http.StatusOK || json.Unmarshal(signin.body, &token) != nil || token.AccessToken == "" {
		a.t.Fatalf("sign-in %s: HTTP %d %s", email, signin.status, signin.body)
	}
	if token.CustomerID != created.Customer.ID || token.WalletNumber != created.Customer.Wallet.Number {
		a.t.Fatalf("sign-in %s answered %s, sign-up %s", email, signin.body, signup.body)
	}
	return v2Customer{token: token.AccessToken, id: token.CustomerID, wallet: token.WalletNumber}
}

func (a *api) topUp(c v2Customer, key, value string) answer {
	a.t.Helper()
	return a.sendV2("POST", fmt.Sprintf("/api/v2/wallets/%d/top-ups", c.wallet), c.token, key, fmt.Sprintf(`{"value":%q}`, value))
}

func (a *api) payout(c v2Customer, key, value string) answer {
	a.t.Helper()
	return a.sendV2("POST", fmt.Sprintf("/api/v2/wallets/%d/payouts", c.wallet), c.token, key, fmt.Sprintf(`{"value":%q}`, value))
}

func (a *api) v2Transfer(c v2Customer, key string, to int64, value string) answer {
	a.t.Helper()
	return a.sendV2("POST", "/api/v2/transfers", c.token, key,
		fmt.Sprintf(`{"debitWallet":%d,"creditWallet":%d,"value":%q}`, c.wallet, to, value))
}

func (a *api) available(c v2Customer) string {
	a.t.Helper()
	got := a.sendV2("GET", fmt.Sprintf("/api/v2/wallets/%d", c.wallet), c.token, "", "")
	var body struct {
		Wallet struct {
			Number    int64   `json:"number"`
			Available *string `json:"available"`
		} `json:"wallet"`
	}
	if got.status != http.StatusOK || json.Unmarshal(got.body, &body) != nil || body.Wallet.Available == nil ||
		body.Wallet.Number != c.wallet {
		a.t.Fatalf("balance of wallet %d: HTTP %d %s", c.wallet, got.status, got.body)
	}
	return *body.Wallet.Available
}

// expectPayment checks an answer's HTTP status, state and decline code.
func expectPayment(t *testing.T, label string, got answer, status int, state, declineCode string) payment {
	t.Helper()
	if got.status != status {
		t.Fatalf("%s: HTTP %d %s, want %d", label, got.status, got.body, status)
	}
	p := got.payment(t)
	if p.State != state || p.DeclineCode != declineCode {
		t.Fatalf("%s: %s, want state %q decline code %q", label, got.body, state, declineCode)
	}
	return p
}

func expectError(t *testing.T, label string, got answer, status int, errorType string) {
	t.Helper()
	if got.status != status {
		t.Errorf("%s: HTTP %d %s, want %d %s", label, got.status, got.body, status, errorType)
		return
	}
	if kind := got.errorType(t); kind != errorType {
		t.Errorf("%s: error type %q, want %q", label, kind, errorType)
	}
}

func TestV2Lifecycle(t *testing.T) {
	a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2})
	alice, bob := a.v2SignUpAndIn("alice@example.test"), a.v2SignUpAndIn("bob@example.test")

	topUp := expectPayment(t, "top-up", a.topUp(alice, "u-1", "1.00"), 200, "COMPLETED", "")
	overdraft := expectPayment(t, "payout beyond the balance", a.payout(alice, "p-1", "5.00"), 200, "DECLINED", "NSF")
	expectPayment(t, "payout", a.payout(alice, "p-2", "0.20"), 200, "COMPLETED", "")
	first := a.v2Transfer(alice, "t-1", bob.wallet, "0.30")
	transfer := expectPayment(t, "transfer", first, 200, "COMPLETED", "")
	expectPayment(t, "transfer to no wallet", a.v2Transfer(alice, "t-2", 999, "0.01"), 200, "DECLINED", "NO_SUCH_WALLET")

	// A duplicate is the first answer again, applied once.
	duplicate := a.v2Transfer(alice, "t-1", bob.wallet, "0.30")
	if duplicate.status != http.StatusOK || !bytes.Equal(duplicate.body, first.body) {
		t.Errorf("duplicate transfer: HTTP %d %s, want the first answer 200 %s", duplicate.status, duplicate.body, first.body)
	}
	expectError(t, "key reused with another value", a.v2Transfer(alice, "t-1", bob.wallet, "0.31"), 409, "key_conflict")
	expectError(t, "key reused for a top-up", a.topUp(alice, "t-1", "0.30"), 409, "key_conflict")
	// Keys are per customer: bob's "u-1" is a request of its own.
	if other := expectPayment(t, "bob's u-1", a.topUp(bob, "u-1", "0.05"), 200, "COMPLETED", ""); other.Ref == topUp.Ref {
		t.Errorf("two customers' keys named one payment %s", other.Ref)
	}

	if got, want := a.available(alice), "0.50"; got != want {
		t.Errorf("alice has %s, want %s (the duplicate and the conflicting key applied nothing)", got, want)
	}
	if got, want := a.available(bob), "0.35"; got != want {
		t.Errorf("bob has %s, want %s", got, want)
	}
	status := a.sendV2("GET", "/api/v2/payments/"+transfer.Ref, alice.token, "", "")
	if got := expectPayment(t, "transfer status", status, 200, "COMPLETED", ""); got != transfer {
		t.Errorf("transfer status %+v, want %+v", got, transfer)
	}
	expectPayment(t, "overdraft status", a.sendV2("GET", "/api/v2/payments/"+overdraft.Ref, alice.token, "", ""), 200, "DECLINED", "NSF")
	expectError(t, "bob reads alice's payment", a.sendV2("GET", "/api/v2/payments/"+topUp.Ref, bob.token, "", ""), 404, "not_found")
	expectError(t, "unknown payment", a.sendV2("GET", "/api/v2/payments/00000000-0000-8000-8000-000000000000", alice.token, "", ""), 404, "not_found")
	expectError(t, "alice reads bob's wallet", a.sendV2("GET", fmt.Sprintf("/api/v2/wallets/%d", bob.wallet), alice.token, "", ""), 404, "not_found")
	expectError(t, "alice reads no wallet", a.sendV2("GET", "/api/v2/wallets/999", alice.token, "", ""), 404, "not_found")
}

func TestV2Refusals(t *testing.T) {
	a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2})
	alice, bob := a.v2SignUpAndIn("alice@example.test"), a.v2SignUpAndIn("bob@example.test")
	expectPayment(t, "funding", a.topUp(alice, "fund", "1.00"), 200, "COMPLETED", "")
	topUps := fmt.Sprintf("/api/v2/wallets/%d/top-ups", alice.wallet)
	payouts := fmt.Sprintf("/api/v2/wallets/%d/payouts", alice.wallet)
	cases := []struct {
		name, method, path, token, key, body string
		header                               map[string]string
		status                               int
		errorType                            string
	}{
		{"no token", "POST", topUps, "", "k", `{"value":"1.00"}`, nil, 401, "unauthenticated"},
		{"unknown token", "POST", topUps, "nope", "k", `{"value":"1.00"}`, nil, 401, "unauthenticated"},
		{"bearer token", "POST", topUps, "Bearer " + alice.token, "k", `{"value":"1.00"}`, nil, 401, "unauthenticated"},
		{"reference authorization", "POST", topUps, "", "k", `{"value":"1.00"}`, map[string]string{"Authorization": "Bearer " + alice.token}, 401, "unauthenticated"},
		{"status without token", "GET", "/api/v2/payments/x", "", "", "", nil, 401, "unauthenticated"},
		{"wallet without token", "GET", fmt.Sprintf("/api/v2/wallets/%d", alice.wallet), "", "", "", nil, 401, "unauthenticated"},
		{"no key", "POST", topUps, alice.token, "", `{"value":"1.00"}`, nil, 400, "missing_request_key"},
		{"reference key header", "POST", topUps, alice.token, "", `{"value":"1.00"}`, map[string]string{"Idempotency-Key": "k"}, 400, "missing_request_key"},
		{"key with a space", "POST", topUps, alice.token, "a b", `{"value":"1.00"}`, nil, 400, "missing_request_key"},
		{"top-up of another's wallet", "POST", fmt.Sprintf("/api/v2/wallets/%d/top-ups", bob.wallet), alice.token, "k", `{"value":"1.00"}`, nil, 403, "not_yours"},
		{"payout of another's wallet", "POST", fmt.Sprintf("/api/v2/wallets/%d/payouts", bob.wallet), alice.token, "k", `{"value":"1.00"}`, nil, 403, "not_yours"},
		{"payout of no wallet", "POST", "/api/v2/wallets/999/payouts", alice.token, "k", `{"value":"1.00"}`, nil, 403, "not_yours"},
		{"debit another's wallet", "POST", "/api/v2/transfers", alice.token, "k", fmt.Sprintf(`{"debitWallet":%d,"creditWallet":%d,"value":"0.01"}`, bob.wallet, alice.wallet), nil, 403, "not_yours"},
		{"same wallet", "POST", "/api/v2/transfers", alice.token, "k", fmt.Sprintf(`{"debitWallet":%d,"creditWallet":%d,"value":"0.01"}`, alice.wallet, alice.wallet), nil, 400, "same_wallet"},
		{"bad value before ownership", "POST", fmt.Sprintf("/api/v2/wallets/%d/payouts", bob.wallet), alice.token, "k", `{"value":"1"}`, nil, 400, "bad_value"},
		{"wallet not a number", "POST", "/api/v2/wallets/x/top-ups", alice.token, "k", `{"value":"1.00"}`, nil, 400, "bad_request"},
		{"wallet zero", "POST", "/api/v2/wallets/0/payouts", alice.token, "k", `{"value":"1.00"}`, nil, 400, "bad_request"},
		{"no credit wallet", "POST", "/api/v2/transfers", alice.token, "k", fmt.Sprintf(`{"debitWallet":%d,"value":"0.01"}`, alice.wallet), nil, 400, "bad_request"},
		{"unknown member", "POST", topUps, alice.token, "k", `{"value":"1.00","currency":"EUR"}`, nil, 400, "bad_request"},
		{"reference member", "POST", payouts, alice.token, "k", `{"value":"1.00","amount":100}`, nil, 400, "bad_request"},
		{"capitalised member", "POST", payouts, alice.token, "k", `{"Value":"1.00"}`, nil, 400, "bad_request"},
		{"duplicate member", "POST", payouts, alice.token, "k", `{"value":"1.00","value":"0.50"}`, nil, 400, "bad_request"},
		{"wallet in a top-up body", "POST", topUps, alice.token, "k", fmt.Sprintf(`{"value":"1.00","debitWallet":%d}`, alice.wallet), nil, 400, "bad_request"},
		{"array", "POST", payouts, alice.token, "k", `["1.00"]`, nil, 400, "bad_request"},
		{"text body", "POST", payouts, alice.token, "k", `{"value":"1.00"}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"reference sign-up body", "POST", "/api/v2/customers", "", "", `{"email":"c@example.test","password":"long enough"}`, nil, 400, "bad_request"},
		{"bad email", "POST", "/api/v2/customers", "", "", `{"emailAddress":"no-at-sign","secret":"long enough"}`, nil, 400, "invalid_customer"},
		{"no email", "POST", "/api/v2/customers", "", "", `{"secret":"long enough"}`, nil, 400, "invalid_customer"},
		{"weak secret", "POST", "/api/v2/customers", "", "", `{"emailAddress":"c@example.test","secret":"short"}`, nil, 400, "invalid_customer"},
		{"email taken", "POST", "/api/v2/customers", "", "", `{"emailAddress":" ALICE@example.test","secret":"long enough"}`, nil, 409, "email_taken"},
		{"wrong secret", "POST", "/api/v2/auth/token", "", "", `{"emailAddress":"alice@example.test","secret":"not it at all"}`, nil, 401, "bad_credentials"},
		{"unknown email", "POST", "/api/v2/auth/token", "", "", `{"emailAddress":"nobody@example.test","secret":"correct horse"}`, nil, 401, "bad_credentials"},
		{"no secret", "POST", "/api/v2/auth/token", "", "", `{"emailAddress":"alice@example.test"}`, nil, 401, "bad_credentials"},
		{"wallet number not a number", "GET", "/api/v2/wallets/x", alice.token, "", "", nil, 400, "bad_request"},
		{"reference route", "POST", "/v1/deposits", alice.token, "k", fmt.Sprintf(`{"account_id":%d,"amount":1}`, alice.wallet), nil, 404, "not_found"},
		{"reference sign-up route", "POST", "/v1/users", "", "", `{"email":"c@example.test","password":"long enough"}`, nil, 404, "not_found"},
		{"no route", "GET", "/api/v2/nothing", "", "", "", nil, 404, "not_found"},
		{"listed path, other method", "GET", "/api/v2/transfers", alice.token, "", "", nil, 404, "not_found"},
		{"wallet, other method", "DELETE", fmt.Sprintf("/api/v2/wallets/%d", alice.wallet), alice.token, "", "", nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			header := map[string]string{}
			if c.token != "" {
				header["X-Auth-Token"] = c.token
			}
			if c.key != "" {
				header["X-Request-Key"] = c.key
			}
			for name, value := range c.header {
				header[name] = value
			}
			expectError(t, c.name, a.send(c.method, c.path, "", c.body, header), c.status, c.errorType)
		})
	}
	// A refusal is not remembered and applied nothing: the key is still free.
	expectPayment(t, "key k after its refusals", a.payout(alice, "k", "0.01"), 200, "COMPLETED", "")
	if got := a.available(alice); got != "0.99" {
		t.Errorf("alice has %s after the refusals and one payout of 0.01, want 0.99", got)
	}
	// The two routes both shapes keep.
	if got := a.send("GET", "/healthz", "", "", nil); got.status != http.StatusOK || string(got.body) != `{"status":"ok"}` {
		t.Errorf("healthz: HTTP %d %s", got.status, got.body)
	}
	if got := a.send("POST", "/admin/export?dir=relative", "", "", nil); got.status != http.StatusBadRequest || got.code() != "invalid_request" {
		t.Errorf("relative export directory: HTTP %d %s, want the reference's 400 invalid_request", got.status, got.body)
	}
}

func TestV2BadValue(t *testing.T) {
	a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2})
	alice, bob := a.v2SignUpAndIn("alice@example.test"), a.v2SignUpAndIn("bob@example.test")
	expectPayment(t, "funding", a.topUp(alice, "fund", "10.00"), 200, "COMPLETED", "")
	bad := []struct{ name, value string }{
		{"no fraction", `"1"`},
		{"one fraction digit", `"1.0"`},
		{"three fraction digits", `"1.000"`},
		{"no whole part", `".50"`},
		{"no fraction digits", `"1."`},
		{"zero", `"0.00"`},
		{"many zeros", `"000.00"`},
		{"negative", `"-1.00"`},
		{"plus sign", `"+1.00"`},
		{"comma", `"1,00"`},
		{"exponent", `"1e2"`},
		{"leading space", `" 1.00"`},
		{"trailing space", `"1.00 "`},
		{"trailing newline", `"1.00\n"`},
		{"thousands separator", `"1_000.00"`},
		{"other digits", `"١.٠٠"`},
		{"empty", `""`},
		{"above the maximum", `"1000000000.01"`},
		{"overflow", `"99999999999999999999.00"`},
		{"number", `1.00`},
		{"integer", `100`},
		{"null", `null`},
		{"boolean", `true`},
		{"array", `["1.00"]`},
		{"object", `{"value":"1.00"}`},
	}
	routes := []struct {
		name, path string
		body       func(value string) string
	}{
		{"top-up", fmt.Sprintf("/api/v2/wallets/%d/top-ups", alice.wallet), func(v string) string { return `{"value":` + v + `}` }},
		{"payout", fmt.Sprintf("/api/v2/wallets/%d/payouts", alice.wallet), func(v string) string { return `{"value":` + v + `}` }},
		{"transfer", "/api/v2/transfers", func(v string) string {
			return fmt.Sprintf(`{"debitWallet":%d,"creditWallet":%d,"value":%s}`, alice.wallet, bob.wallet, v)
		}},
	}
	for _, route := range routes {
		for _, c := range bad {
			t.Run(route.name+"/"+c.name, func(t *testing.T) {
				got := a.sendV2("POST", route.path, alice.token, "bad", route.body(c.value))
				expectError(t, route.name+" "+c.value, got, 400, "bad_value")
			})
		}
		t.Run(route.name+"/left out", func(t *testing.T) {
			body := route.body(`"1.00"`)
			body = body[:bytes.Index([]byte(body), []byte(`"value"`))]
			if body[len(body)-1] == ',' {
				body = body[:len(body)-1]
			}
			expectError(t, route.name+" without a value", a.sendV2("POST", route.path, alice.token, "bad", body+"}"), 400, "bad_value")
		})
	}
	if got := a.available(alice); got != "10.00" {
		t.Errorf("alice has %s after bad values only, want 10.00", got)
	}
	// The bounds and a leading zero are values.
	expectPayment(t, "smallest value", a.payout(alice, "min", "0.01"), 200, "COMPLETED", "")
	expectPayment(t, "leading zero", a.payout(alice, "lead", "01.99"), 200, "COMPLETED", "")
	expectPayment(t, "largest value", a.topUp(bob, "max", "1000000000.00"), 200, "COMPLETED", "")
	if got := a.available(alice); got != "8.00" {
		t.Errorf("alice has %s, want 8.00", got)
	}
	if got := a.available(bob); got != "1000000000.00" {
		t.Errorf("bob has %s, want 1000000000.00", got)
	}
	read := readExport(t, a.system)
	var amounts []int64
	for _, tr := range read.transactions {
		amounts = append(amounts, tr.Amount)
	}
	if fmt.Sprint(amounts) != "[1000 1 199 100000000000]" {
		t.Errorf("exported amounts %v, want [1000 1 199 100000000000]: the bad values applied nothing", amounts)
	}
}

func TestV2ApplyDelay(t *testing.T) {
	// Long enough that the checks "before the apply" run before it even on a
	// loaded machine (they are in-process calls of a few microseconds).
	const delay = 2 * time.Second
	a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2, ApplyDelay: delay})
	alice := a.v2SignUpAndIn("alice@example.test")
	start := time.Now()
	first := a.topUp(alice, "d", "2.50")
	topUp := expectPayment(t, "top-up", first, http.StatusAccepted, "PROCESSING", "")
	payout := expectPayment(t, "payout", a.payout(alice, "w", "1.00"), http.StatusAccepted, "PROCESSING", "")
	expectPayment(t, "status right after the 202", a.sendV2("GET", "/api/v2/payments/"+topUp.Ref, alice.token, "", ""), 200, "PROCESSING", "")
	if got := a.available(alice); got != "0.00" {
		t.Errorf("alice has %s before the apply delay, want 0.00", got)
	}
	var settled payment
	waitFor(t, "the payout completes", func() bool {
		settled = a.sendV2("GET", "/api/v2/payments/"+payout.Ref, alice.token, "", "").payment(t)
		return settled.State != "PROCESSING"
	})
	if settled.State != "COMPLETED" || time.Since(start) < delay {
		t.Errorf("payout %+v after %s, want COMPLETED after at least %s (applied in order, after its top-up)",
			settled, time.Since(start), delay)
	}
	expectPayment(t, "top-up status", a.sendV2("GET", "/api/v2/payments/"+topUp.Ref, alice.token, "", ""), 200, "COMPLETED", "")
	// The duplicate is the stored first answer, 202 PROCESSING, though the top-up has completed since.
	if replay := a.topUp(alice, "d", "2.50"); replay.status != http.StatusAccepted || !bytes.Equal(replay.body, first.body) {
		t.Errorf("duplicate: HTTP %d %s, want the first answer: 202 %s", replay.status, replay.body, first.body)
	}
	expectError(t, "key conflict", a.topUp(alice, "d", "2.51"), 409, "key_conflict")
	if got := a.available(alice); got != "1.50" {
		t.Errorf("alice has %s after a top-up of 2.50 and a payout of 1.00, want 1.50", got)
	}
}

// TestV2Export runs one history through both shapes: the v2 export holds
// what happened, in minor units, with the X-Request-Key values as keys and
// the refs as transaction ids, and is byte for byte the reference shape's
// export of the same history.
func TestV2Export(t *testing.T) {
	v2 := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2})
	alice, bob := v2.v2SignUpAndIn("alice@example.test"), v2.v2SignUpAndIn("bob@example.test")
	deposit := expectPayment(t, "top-up", v2.topUp(alice, "d", "12.34"), 200, "COMPLETED", "")
	transfer := expectPayment(t, "transfer", v2.v2Transfer(alice, "t", bob.wallet, "4.00"), 200, "COMPLETED", "")
	expectPayment(t, "duplicate transfer", v2.v2Transfer(alice, "t", bob.wallet, "4.00"), 200, "COMPLETED", "")
	payout := expectPayment(t, "payout", v2.payout(bob, "w", "1.50"), 200, "COMPLETED", "")
	declined := expectPayment(t, "overdraft", v2.payout(bob, "o", "2.51"), 200, "DECLINED", "NSF")

	read := readExport(t, v2.system)
	wantAccounts := map[int64]invariants.Account{
		0:            {ID: 0, Kind: "external", Balance: -1084},
		alice.wallet: {ID: alice.wallet, UserID: alice.id, Kind: "user", Balance: 834},
		bob.wallet:   {ID: bob.wallet, UserID: bob.id, Kind: "user", Balance: 250},
	}
	if fmt.Sprint(read.accounts) != fmt.Sprint(wantAccounts) {
		t.Errorf("accounts %+v, want %+v", read.accounts, wantAccounts)
	}
	type row struct {
		id, key, kind, status, reason string
		user, source, destination     int64
		amount                        int64
	}
	want := []row{
		{deposit.Ref, "d", "deposit", "settled", "", alice.id, 0, alice.wallet, 1234},
		{transfer.Ref, "t", "transfer", "settled", "", alice.id, alice.wallet, bob.wallet, 400},
		{payout.Ref, "w", "withdrawal", "settled", "", bob.id, bob.wallet, 0, 150},
		{declined.Ref, "o", "withdrawal", "rejected", "insufficient_funds", bob.id, bob.wallet, 0, 251},
	}
	var got []row
	for _, tr := range read.transactions {
		got = append(got, row{tr.ID, tr.IdempotencyKey, tr.Kind, tr.Status, tr.Reason, tr.UserID,
			tr.SourceAccountID, tr.DestinationAccountID, tr.Amount})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("transactions\n %v\nwant\n %v", got, want)
	}
	var postings []int64
	for _, p := range read.postings {
		postings = append(postings, p.AccountID, p.Amount)
	}
	if want := "[0 -1234 1 1234 1 -400 2 400 2 -150 0 150]"; fmt.Sprint(postings) != want {
		t.Errorf("postings (account, amount) %v, want %s", postings, want)
	}
	if problems := read.unbalanced(); len(problems) > 0 {
		t.Errorf("a correct system's export is unbalanced: %v", problems)
	}

	// The same history through the reference shape exports the same bytes.
	reference := newAPI(t, testsystem.Options{Shape: testsystem.ShapeReference})
	ra, rb := reference.signUpAndIn("alice@example.test"), reference.signUpAndIn("bob@example.test")
	expectFinal(t, "deposit", reference.deposit(ra, "d", 1234), "settled", "")
	expectFinal(t, "transfer", reference.transfer(ra, "t", rb.accountID, 400), "settled", "")
	expectFinal(t, "duplicate transfer", reference.transfer(ra, "t", rb.accountID, 400), "settled", "")
	expectFinal(t, "withdrawal", reference.withdraw(rb, "w", 150), "settled", "")
	expectFinal(t, "overdraft", reference.withdraw(rb, "o", 251), "rejected", "insufficient_funds")
	v2Dir, referenceDir := t.TempDir(), t.TempDir()
	// The v2 shape keeps the reference's admin export route.
	if got := v2.send("POST", "/admin/export?dir="+v2Dir, "", "", nil); got.status != http.StatusNoContent {
		t.Fatalf("POST /admin/export: HTTP %d %s", got.status, got.body)
	}
	if err := reference.system.WriteExport(referenceDir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{invariants.AccountsFile, invariants.TransactionsFile, invariants.PostingsFile} {
		v2File, err1 := os.ReadFile(filepath.Join(v2Dir, name))
		referenceFile, err2 := os.ReadFile(filepath.Join(referenceDir, name))
		if err1 != nil || err2 != nil || !bytes.Equal(v2File, referenceFile) {
			t.Errorf("%s of the v2 shape differs from the reference shape's (%v, %v):\n%s\nwant\n%s", name, err1, err2, v2File, referenceFile)
		}
	}
}

// TestV2Bugs: the bugs are the same whatever the shape.
func TestV2Bugs(t *testing.T) {
	t.Run("double-apply", func(t *testing.T) {
		a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2, Bug: testsystem.BugDoubleApply})
		alice := a.v2SignUpAndIn("alice@example.test")
		first := expectPayment(t, "top-up", a.topUp(alice, "same-key", "1.00"), 200, "COMPLETED", "")
		second := expectPayment(t, "its duplicate", a.topUp(alice, "same-key", "1.00"), 200, "COMPLETED", "")
		if first.Ref == second.Ref {
			t.Errorf("the double-apply bug answered one ref %s twice", first.Ref)
		}
		if got := a.available(alice); got != "2.00" {
			t.Errorf("alice has %s, want 2.00 (applied twice)", got)
		}
	})
	t.Run("lost-update", func(t *testing.T) {
		a := newAPI(t, testsystem.Options{Shape: testsystem.ShapeV2, Bug: testsystem.BugLostUpdate})
		alice := a.v2SignUpAndIn("alice@example.test")
		expectPayment(t, "funding", a.topUp(alice, "fund", "10000.00"), 200, "COMPLETED", "")
		var wait sync.WaitGroup
		for worker := range 8 {
			wait.Go(func() {
				for i := range 10 {
					key := fmt.Sprintf("%d-%d", worker, i)
					if i%2 == 0 {
						a.topUp(alice, key, "0.07")
					} else {
						a.payout(alice, key, "0.03")
					}
				}
			})
		}
		wait.Wait()
		if problems := readExport(t, a.system).unbalanced(); len(problems) == 0 {
			t.Error("the lost-update bug left every balance equal to its postings")
		}
	})
}
