package profile

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, name string) *Profile {
	t.Helper()
	p, err := Load(filepath.Join("..", "..", "profiles", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShippedProfilesAreValid(t *testing.T) {
	for _, name := range []string{"reference.yaml", "example-v2.yaml"} {
		load(t, name)
	}
}

func TestRenderInTheSystemsDialect(t *testing.T) {
	v2 := load(t, "example-v2.yaml")
	request := v2.Render(OpDeposit, Values{Amount: 1205, To: 11})
	if request.Method != http.MethodPost || request.Path != "/api/v2/wallets/11/top-ups" || string(request.Body) != `{"value": "12.05"}` {
		t.Errorf("deposit %+v %s", request, request.Body)
	}
	request = v2.Render(OpSignup, Values{Email: `a"b@x.test`, Password: "pw"})
	if string(request.Body) != `{"emailAddress": "a\"b@x.test", "secret": "pw"}` {
		t.Errorf("signup body %s", request.Body)
	}
	if got := v2.Render(OpStatus, Values{ID: "a/b c"}).Path; got != "/api/v2/payments/a%2Fb%20c" {
		t.Errorf("status path %s", got)
	}
	if v2.AuthorizationValue("t0k") != "t0k" || load(t, "reference.yaml").AuthorizationValue("t0k") != "Bearer t0k" {
		t.Error("authorization values")
	}
	reference := load(t, "reference.yaml")
	if got := string(reference.Render(OpTransfer, Values{Amount: 7, From: 1, To: 2}).Body); got != `{"from_account_id": 1, "to_account_id": 2, "amount": 7}` {
		t.Errorf("reference transfer body %s", got)
	}
}

func TestTranslateAnswersIntoTheReferenceDialect(t *testing.T) {
	v2 := load(t, "example-v2.yaml")
	for _, c := range []struct {
		name, op   string
		status     int
		body       string
		wantStatus int
		want       string
	}{
		{"completed", OpTransfer, 200, `{"payment":{"ref":"r1","state":"COMPLETED"}}`, 200, `{"status":"settled","transaction_id":"r1"}`},
		{"declined, reason mapped", OpWithdrawal, 200, `{"payment":{"ref":"r2","state":"DECLINED","declineCode":"NSF"}}`, 200, `{"reason":"insufficient_funds","status":"rejected","transaction_id":"r2"}`},
		{"processing", OpDeposit, 202, `{"payment":{"ref":"r3","state":"PROCESSING"}}`, 202, `{"status":"accepted","transaction_id":"r3"}`},
		{"key reused", OpDeposit, 409, `{"error":{"type":"key_conflict"}}`, 422, `{"code":"idempotency_key_reused"}`},
		{"key in flight", OpDeposit, 409, `{"error":{"type":"in_progress"}}`, 409, `{"code":"idempotency_key_in_flight"}`},
		{"error mapped", OpDeposit, 400, `{"error":{"type":"bad_value"}}`, 400, `{"code":"invalid_amount"}`},
		{"status value unknown", OpStatus, 200, `{"payment":{"ref":"r4","state":"ON_HOLD"}}`, 200, `"unreadable"`},
		{"pending status read", OpStatus, 200, `{"payment":{"ref":"r5","state":"PROCESSING"}}`, 200, `{"status":"accepted","transaction_id":"r5"}`},
		{"success not listed", OpSignup, 201, `{"customer":{"id":7}}`, 201, `"unreadable"`},
		{"unreadable", OpTransfer, 200, `<html>`, 200, `"unreadable"`},
		{"signup", OpSignup, 200, `{"customer":{"id":7,"wallet":{"number":11}}}`, 201, `{"account_id":11,"user_id":7}`},
		{"email taken", OpSignup, 409, `{"error":{"type":"email_taken"}}`, 409, `{"code":"email_taken"}`},
		{"signin", OpSignin, 200, `{"access_token":"t","customer_id":7,"wallet_number":11}`, 201, `{"account_id":11,"token":"t","user_id":7}`},
		{"balance", OpBalance, 200, `{"wallet":{"number":11,"available":"12.30"}}`, 200, `{"balance":1230}`},
		{"no answer", OpDeposit, 0, ``, 0, ``},
	} {
		status, body := v2.Translate(c.op, c.status, []byte(c.body))
		if status != c.wantStatus || string(body) != c.want {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.wantStatus, c.want)
		}
	}
}

func TestAmounts(t *testing.T) {
	decimal := Amounts{Format: "decimal", Scale: 2}
	for minor, want := range map[int64]string{0: "0.00", 5: "0.05", 1234: "12.34", -1234: "-12.34", 100000000000: "1000000000.00"} {
		if got := decimal.FormatAmount(minor); got != want {
			t.Errorf("FormatAmount(%d) = %s, want %s", minor, got, want)
		}
		if back, err := decimal.ParseAmount(want); err != nil || back != minor {
			t.Errorf("ParseAmount(%s) = %d, %v", want, back, err)
		}
	}
	for _, bad := range []string{"1.234", "5.-1", "1e3", "", ".5.", "99999999999999999999.00"} {
		if got, err := decimal.ParseAmount(bad); err == nil {
			t.Errorf("ParseAmount(%q) = %d, want an error", bad, got)
		}
	}
	if got := (Amounts{Format: "decimal", Scale: 2, Quoted: true}).FormatAmount(5); got != `"0.05"` {
		t.Errorf("quoted %s", got)
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("name: x\namounts: {format: cents}\nauth: {header: A, value: nope}\nsignup: {method: FETCH, path: v1/users, body: '{\"e\": {mail}}'}\nanswers: {status: /s}\n"), "bad.yaml")
	if err == nil {
		t.Fatal("an invalid profile accepted")
	}
	for _, want := range []string{`amounts.format: "cents"`, "value containing {token}", "idempotency_header: missing", `signup (line 4): method "FETCH"`,
		"must start with /", "{mail} is not known in the body", "signin: missing", "answers.transaction_id", "answers.key_reused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("name: x\nsurprise: 1\n"), "unknown.yaml"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("an unknown field: %v, want its line", err)
	}
}
