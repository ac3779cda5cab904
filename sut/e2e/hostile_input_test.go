package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/client"
)

// TestHostileInput sends a real stack the bodies and headers that one
// parser may read one way and another parser another way (duplicate and
// case-folded JSON members, trailing data, wrong types, repeated or
// malformed Idempotency-Key headers) and reads unknown and other users'
// accounts. Each is refused with our {code,message,request_id} body, except the header
// bytes Go's net/http refuses itself (documented in sut/openapi.yaml), and
// nothing changes: no user, no transaction, no balance.
func TestHostileInput(t *testing.T) {
	s := startStack(t, 1, 1)
	ctx := context.Background()
	alice, bob := s.newUser(0), s.newUser(0)
	s.fund(alice, 100)
	anonymous := client.New(s.file.Endpoints.Gateways[0])
	before := s.snapshot(alice, bob)

	deposit := func(members string) []byte {
		return []byte(fmt.Sprintf(`{"account_id":%d,%s}`, alice.accountID, members))
	}
	transfer := func(members string) []byte {
		return []byte(fmt.Sprintf(`{"from_account_id":%d,%s}`, alice.accountID, members))
	}
	cases := []struct {
		name   string
		client *client.Client
		method string
		path   string
		body   []byte
		status int
		code   string
	}{
		{"duplicate amount, last larger", alice.Client, "POST", "/v1/deposits", deposit(`"amount":1,"amount":1000000`), 400, "invalid_request"},
		{"duplicate amount, same value", alice.Client, "POST", "/v1/withdrawals", deposit(`"amount":1,"amount":1`), 400, "invalid_request"},
		{"case-folded duplicate amount", alice.Client, "POST", "/v1/deposits", deposit(`"amount":2,"AMOUNT":7`), 400, "invalid_request"},
		{"capitalised amount alone", alice.Client, "POST", "/v1/deposits", deposit(`"Amount":1`), 400, "invalid_request"},
		{"stray closing brace", alice.Client, "POST", "/v1/deposits", append(deposit(`"amount":1`), '}'), 400, "invalid_request"},
		{"duplicate destination", alice.Client, "POST", "/v1/transfers",
			transfer(fmt.Sprintf(`"to_account_id":%d,"amount":1,"to_account_id":%d`, bob.accountID, bob.accountID)), 400, "invalid_request"},
		{"case-folded destination", alice.Client, "POST", "/v1/transfers", transfer(fmt.Sprintf(`"To_Account_Id":%d,"amount":1`, bob.accountID)), 400, "invalid_request"},
		{"string amount", alice.Client, "POST", "/v1/deposits", deposit(`"amount":"10"`), 400, "invalid_amount"},
		{"Arabic-Indic digits amount", alice.Client, "POST", "/v1/deposits", deposit(`"amount":"١٢"`), 400, "invalid_amount"},
		{"float amount", alice.Client, "POST", "/v1/deposits", deposit(`"amount":1.5`), 400, "invalid_amount"},
		{"null amount", alice.Client, "POST", "/v1/deposits", deposit(`"amount":null`), 400, "invalid_amount"},
		{"string account", alice.Client, "POST", "/v1/deposits", []byte(fmt.Sprintf(`{"account_id":"%d","amount":1}`, alice.accountID)), 400, "invalid_request"},
		{"signup with a duplicate email", anonymous, "POST", "/v1/users",
			[]byte(`{"email":"first@example.com","password":"long enough","email":"second@example.com"}`), 400, "invalid_request"},
		{"signup with a capitalised name", anonymous, "POST", "/v1/users", []byte(`{"Email":"third@example.com","password":"long enough"}`), 400, "invalid_request"},
		{"sign-in with a duplicate password", anonymous, "POST", "/v1/sessions",
			[]byte(`{"email":"nobody@example.com","password":"x","password":"correct horse"}`), 400, "invalid_request"},
		{"unknown account", alice.Client, "GET", "/v1/accounts/987654321", nil, 404, "account_not_found"},
		{"another user's account", alice.Client, "GET", fmt.Sprintf("/v1/accounts/%d", bob.accountID), nil, 404, "account_not_found"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := ""
			if c.method == "POST" && c.client != anonymous {
				key = fmt.Sprintf("hostile-body-%d", i)
			}
			response, err := c.client.Do(ctx, c.method, c.path, c.body, key, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkErrorBody(t, response.Status, "application/json", response.Body, c.status, c.code)
		})
	}

	gateway := s.file.Endpoints.Gateways[0]
	body := fmt.Sprintf(`{"account_id":%d,"amount":1}`, alice.accountID)
	rawDeposit := func(keyLines string) string {
		return "POST /v1/deposits HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + alice.Token + "\r\n" + keyLines +
			"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	t.Run("two Idempotency-Key headers", func(t *testing.T) {
		for _, lines := range []string{
			"Idempotency-Key: hostile-two-a\r\nIdempotency-Key: hostile-two-b\r\n",
			"Idempotency-Key: hostile-two-same\r\nidempotency-key: hostile-two-same\r\n",
		} {
			status, contentType, answer := sendRaw(t, gateway, rawDeposit(lines))
			checkErrorBody(t, status, contentType, answer, 400, "idempotency_key_missing")
		}
	})
	// Every byte that a key may not hold, inside an otherwise valid key.
	// Control bytes other than tab never reach the gateway's code: net/http
	// refuses them while parsing, as sut/openapi.yaml documents. Tab,
	// space and bytes above 0x7E reach it and get our body.
	t.Run("every invalid key byte", func(t *testing.T) {
		for value := range 256 {
			b := byte(value)
			if b >= 0x21 && b <= 0x7e {
				continue
			}
			raw := rawDeposit("Idempotency-Key: hostile-byte" + string([]byte{b}) + "x\r\n")
			status, contentType, answer := sendRaw(t, gateway, raw)
			if (b < 0x20 && b != '\t') || b == 0x7f {
				if status != 400 || contentType != "text/plain; charset=utf-8" || string(answer) != "400 Bad Request" {
					t.Errorf("byte 0x%02x: %d %q %q, want net/http's own 400 as documented", b, status, contentType, answer)
				}
				continue
			}
			t.Run(fmt.Sprintf("0x%02x", b), func(t *testing.T) {
				checkErrorBody(t, status, contentType, answer, 400, "idempotency_key_missing")
			})
		}
	})

	// A later deposit of alice's settles: anything a refused request had
	// queued for her account would have been applied before it.
	s.fund(alice, 1)
	after := s.snapshot(alice, bob)
	want := before
	want.transactions++
	want.amounts++
	want.aliceBalance++
	if after != want {
		t.Fatalf("the ledger moved: before %+v, after a deposit of 1 %+v, want %+v", before, after, want)
	}
	var hostile int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE idempotency_key LIKE 'hostile-%'`).Scan(&hostile); err != nil {
		t.Fatal(err)
	}
	if hostile != 0 {
		t.Fatalf("%d transactions of refused requests reached the ledger", hostile)
	}
	s.checkLedger()
}

// ledgerState is what refused requests must not change.
type ledgerState struct {
	users, transactions, amounts int64
	aliceBalance, bobBalance     int64
}

func (s *testStack) snapshot(alice, bob user) ledgerState {
	s.t.Helper()
	var state ledgerState
	if err := s.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM transactions),
		(SELECT COALESCE(sum(amount), 0) FROM transactions)`).Scan(&state.users, &state.transactions, &state.amounts); err != nil {
		s.t.Fatal(err)
	}
	state.aliceBalance, state.bobBalance = s.balance(alice.accountID), s.balance(bob.accountID)
	return state
}

// checkErrorBody asserts an error answer: the status, a JSON body of
// exactly {code, message, request_id} with the code wanted, and a message of
// printable ASCII (nothing of the client's echoed raw).
func checkErrorBody(t *testing.T, status int, contentType string, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || contentType != "application/json" {
		t.Fatalf("%d %q %q, want %d application/json", status, contentType, body, wantStatus)
	}
	var answer struct {
		Code      *string `json:"code"`
		Message   *string `json:"message"`
		RequestID *string `json:"request_id"`
	}
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&answer); err != nil || answer.Code == nil || answer.Message == nil || answer.RequestID == nil || *answer.RequestID == "" {
		t.Fatalf("%q is not a {code,message,request_id} body: %v", body, err)
	}
	if *answer.Code != wantCode {
		t.Errorf("code %q, want %q: %s", *answer.Code, wantCode, body)
	}
	for i := 0; i < len(*answer.Message); i++ {
		if c := (*answer.Message)[i]; c < 0x20 || c > 0x7e {
			t.Errorf("message %q: byte %d is 0x%02x, not printable ASCII", *answer.Message, i, c)
			break
		}
	}
}

// sendRaw writes one raw HTTP/1.1 request to the gateway at baseURL on a
// connection of its own (Go's client refuses to send malformed headers) and
// returns the answer's status, content type and body.
func sendRaw(t *testing.T, baseURL, raw string) (int, string, []byte) {
	t.Helper()
	address, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	connection, err := net.DialTimeout("tcp", address.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close()
	if err := connection.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(connection, raw); err != nil {
		t.Fatal(err)
	}
	response, err := http.ReadResponse(bufio.NewReader(connection), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 1<<16))
	if err != nil {
		t.Fatal(err)
	}
	return response.StatusCode, response.Header.Get("Content-Type"), bytes.TrimSuffix(body, []byte("\n"))
}
