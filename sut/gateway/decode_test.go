package gateway

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// requestBody is one kind of request body the gateway decodes, as the fuzz
// target and the table tests drive it.
type requestBody struct {
	// method and path name the operation in sut/openapi.yaml.
	method, path string
	// members are the documented member names, exactly.
	members []string
	// decode decodes a body as the gateway does and returns the decoded
	// request and its canonical JSON encoding.
	decode func(body []byte) (decoded any, canonical []byte, err error)
	// check asserts the ledger's rules on an accepted request.
	check func(decoded any) error
	// codes are the codes decoding may answer; each must be documented
	// for the operation's 400.
	codes []ledger.Code
}

// credentials is a decoded signup or sign-in body.
type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func decodeCredentialsBody(body []byte) (any, []byte, error) {
	email, password, err := decodeCredentials(body)
	if err != nil {
		return nil, nil, err
	}
	decoded := credentials{Email: email, Password: password}
	canonical, err := json.Marshal(decoded)
	if err != nil {
		return nil, nil, fmt.Errorf("re-encode %+v: %w", decoded, err)
	}
	return decoded, canonical, nil
}

func decodeMoneyBody(kind ledger.Kind) func(body []byte) (any, []byte, error) {
	return func(body []byte) (any, []byte, error) {
		request, err := decodeMoneyRequest(kind, body)
		if err != nil {
			return nil, nil, err
		}
		return request, request.canonicalJSON(), nil
	}
}

func checkMoneyRequest(decoded any) error {
	request := decoded.(moneyRequest)
	if err := ledger.ValidateAmount(request.AmountMinor); err != nil {
		return fmt.Errorf("accepted amount %d breaks the ledger's rules: %v", request.AmountMinor, err)
	}
	accounts := []int64{request.AccountID}
	if request.Kind == ledger.KindTransfer {
		accounts = []int64{request.FromAccountID, request.ToAccountID}
		if request.AccountID != 0 {
			return fmt.Errorf("a transfer decoded with account_id %d", request.AccountID)
		}
	} else if request.FromAccountID != 0 || request.ToAccountID != 0 {
		return fmt.Errorf("a %s decoded with transfer accounts %d, %d", request.Kind, request.FromAccountID, request.ToAccountID)
	}
	for _, account := range accounts {
		if account <= 0 {
			return fmt.Errorf("accepted account id %d is not positive", account)
		}
	}
	return nil
}

var (
	moneyCodes       = []ledger.Code{ledger.CodeInvalidRequest, ledger.CodeInvalidAmount}
	credentialsCodes = []ledger.Code{ledger.CodeInvalidRequest}
	accountMembers   = []string{"account_id", "amount"}
)

// requestBodies are the bodies of every route that has one.
var requestBodies = []requestBody{
	{"POST", "/v1/deposits", accountMembers, decodeMoneyBody(ledger.KindDeposit), checkMoneyRequest, moneyCodes},
	{"POST", "/v1/withdrawals", accountMembers, decodeMoneyBody(ledger.KindWithdrawal), checkMoneyRequest, moneyCodes},
	{"POST", "/v1/transfers", []string{"from_account_id", "to_account_id", "amount"}, decodeMoneyBody(ledger.KindTransfer), checkMoneyRequest, moneyCodes},
	{"POST", "/v1/users", []string{"email", "password"}, decodeCredentialsBody, func(any) error { return nil }, credentialsCodes},
	{"POST", "/v1/sessions", []string{"email", "password"}, decodeCredentialsBody, func(any) error { return nil }, credentialsCodes},
}

// bodyOf returns the requestBody of path.
func bodyOf(t testing.TB, path string) requestBody {
	t.Helper()
	for _, body := range requestBodies {
		if body.path == path {
			return body
		}
	}
	t.Fatalf("no request body for %s", path)
	return requestBody{}
}

// fuzzSeeds are the seed corpus of FuzzDecodeRequest: the index of a
// requestBodies entry and a body.
var fuzzSeeds = []struct {
	body    int
	content string
}{
	// Valid bodies.
	{0, `{"account_id":1,"amount":1000}`},
	{1, ` { "amount" : 100000000000 , "account_id" : 9223372036854775807 } `},
	{2, `{"from_account_id":1,"to_account_id":2,"amount":5}`},
	{3, `{"email":"alice@example.com","password":"correct horse"}`},
	{4, `{"password":"p\u00e4ssw\u00f6rd \ud83d\ude00","email":"a@b.c"}`},
	{3, `{}`},
	// Duplicates, also with equal values, nested and through escapes.
	{0, `{"account_id":1,"amount":1,"amount":1000000}`},
	{0, `{"account_id":1,"amount":1,"amount":1}`},
	{2, `{"from_account_id":1,"to_account_id":2,"amount":5,"from_account_id":3}`},
	{0, `{"account_id":1,"am\u006fu\u006et":1,"amount":2}`},
	{3, `{"email":"a@b.c","password":"x","email":"d@e.f"}`},
	{0, `{"account_id":{"a":1,"a":2},"amount":1}`},
	// Case variants.
	{0, `{"account_id":1,"amount":2,"AMOUNT":7}`},
	{0, `{"account_id":1,"Amount":1}`},
	{2, `{"From_Account_Id":1,"to_account_id":2,"amount":5}`},
	{4, `{"EMAIL":"a@b.c","password":"x"}`},
	{0, `{"account_id":1,"amount":1,"amount ":2}`},
	{0, `{"account_id":1,"amount":1,"\u212aamount":2}`},
	// Trailing and missing data.
	{0, `{"account_id":1,"amount":1}}`},
	{0, `{"account_id":1,"amount":1} {}`},
	{0, `{"account_id":1,"amount":1}x`},
	{0, `{"account_id":1,"amount":1`},
	{0, ``},
	{0, ` `},
	{0, `null`},
	{0, `[{"account_id":1,"amount":1}]`},
	{0, `{"account_id":1}`},
	{2, `{"from_account_id":1,"amount":5}`},
	// Huge, odd and wrong numbers.
	{0, `{"account_id":1,"amount":100000000001}`},
	{0, `{"account_id":1,"amount":99999999999999999999}`},
	{0, `{"account_id":1,"amount":1` + strings.Repeat("0", 1000) + `}`},
	{0, `{"account_id":1,"amount":1e3}`},
	{0, `{"account_id":1,"amount":1.0}`},
	{0, `{"account_id":1,"amount":-0}`},
	{0, `{"account_id":1,"amount":0}`},
	{0, `{"account_id":1,"amount":-5}`},
	{0, `{"account_id":1,"amount":01}`},
	{0, `{"account_id":9223372036854775808,"amount":1}`},
	{0, `{"account_id":0,"amount":1}`},
	{0, `{"account_id":1.0,"amount":1}`},
	// Wrong types.
	{0, `{"account_id":1,"amount":"10"}`},
	{0, `{"account_id":1,"amount":null}`},
	{0, `{"account_id":1,"amount":true}`},
	{0, `{"account_id":1,"amount":[1]}`},
	{0, `{"account_id":"1","amount":1}`},
	{3, `{"email":null,"password":"long enough"}`},
	{4, `{"email":"a@b.c","password":12345678}`},
	// Unicode digits, in a string and bare.
	{0, `{"account_id":1,"amount":"١٢"}`},
	{0, `{"account_id":1,"amount":١٢}`},
	{0, `{"account_id":1,"amount":"\u0661\u0662"}`},
	{0, `{"account_id":"١","amount":1}`},
	// Invalid UTF-8, raw and escaped, in names and values; a BOM.
	{0, "{\"account_id\":1,\"amount\":1,\"\xff\":1}"},
	{3, "{\"email\":\"a@b.c\",\"password\":\"\xc3\x28long enough\"}"},
	{3, `{"email":"a@b.c","password":"\ud800long enough"}`},
	{0, "\xef\xbb\xbf{\"account_id\":1,\"amount\":1}"},
	// Control and right-to-left characters in names.
	{0, `{"account_id":1,"amount":1,"a\u0000b":1}`},
	{0, `{"account_id":1,"amount":1,"\u202eamount":1}`},
	{0, "{\"account_id\":1,\"amount\":1,\"" + strings.Repeat("n", 300) + "\":1}"},
}

// FuzzDecodeRequest decodes arbitrary bodies as each route's body and checks
// the decoder's properties: it never panics; an accepted request re-encodes
// to its canonical JSON, which decodes to the same request; an accepted body
// has each documented member at most once, spelled exactly, and nothing
// else, so a reader that keeps the first duplicate and one that keeps the
// last (encoding/json) agree with it; accepted amounts and account ids
// follow the ledger's rules; every rejection is a code the route documents
// in sut/openapi.yaml, with a printable ASCII message.
func FuzzDecodeRequest(f *testing.F) {
	document, _ := loadOpenAPI(f)
	for _, body := range requestBodies {
		codes, found := documentedCodes(document, body.method, body.path, http.StatusBadRequest)
		for _, code := range body.codes {
			if !found || !slices.Contains(codes, string(code)) {
				f.Fatalf("%s %s: sut/openapi.yaml does not document 400 %s", body.method, body.path, code)
			}
		}
	}
	for _, seed := range fuzzSeeds {
		f.Add(uint8(seed.body), []byte(seed.content))
	}
	f.Fuzz(func(t *testing.T, index uint8, content []byte) {
		body := requestBodies[int(index)%len(requestBodies)]
		decoded, canonical, err := body.decode(content)
		if err != nil {
			var domainError *ledger.Error
			if !errors.As(err, &domainError) {
				t.Fatalf("%s %q: %T %v is not a domain error", body.path, content, err, err)
			}
			if !slices.Contains(body.codes, domainError.Code) {
				t.Fatalf("%s %q: code %s, not one of %v", body.path, content, domainError.Code, body.codes)
			}
			if problem := messageProblem(domainError.Message); problem != "" {
				t.Fatalf("%s %q: message %q: %s", body.path, content, domainError.Message, problem)
			}
			return
		}
		if err := body.check(decoded); err != nil {
			t.Fatalf("%s %q: %v", body.path, content, err)
		}
		again, canonicalAgain, err := body.decode(canonical)
		if err != nil {
			t.Fatalf("%s %q: its canonical form %s is refused: %v", body.path, content, canonical, err)
		}
		if again != decoded || !bytes.Equal(canonical, canonicalAgain) {
			t.Fatalf("%s %q: decoded %+v, its canonical form %s decodes to %+v (%s)", body.path, content, decoded, canonical, again, canonicalAgain)
		}
		if problem := membersProblem(content, body.members); problem != "" {
			t.Fatalf("%s %q was accepted: %s", body.path, content, problem)
		}
	})
}

// membersProblem reads an accepted body's top-level member names with
// encoding/json's tokenizer, a reader independent of the gateway's, and says
// what is wrong with them, or "": a name repeated, or not one of members.
func membersProblem(content []byte, members []string) string {
	decoder := stdjson.NewDecoder(bytes.NewReader(content))
	if token, err := decoder.Token(); err != nil || token != stdjson.Delim('{') {
		return fmt.Sprintf("encoding/json does not read an object: %v %v", token, err)
	}
	seen := map[string]bool{}
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return fmt.Sprintf("encoding/json: %v", err)
		}
		name, ok := token.(string)
		if !ok {
			return fmt.Sprintf("encoding/json reads the name %v", token)
		}
		if seen[name] {
			return fmt.Sprintf("member %q twice", name)
		}
		seen[name] = true
		if !slices.Contains(members, name) {
			return fmt.Sprintf("member %q is not one of %v", name, members)
		}
		var value stdjson.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return fmt.Sprintf("encoding/json: %v", err)
		}
	}
	if _, err := decoder.Token(); err != nil {
		return fmt.Sprintf("encoding/json: %v", err)
	}
	if _, err := decoder.Token(); err != io.EOF {
		return fmt.Sprintf("encoding/json reads more after the object: %v", err)
	}
	return ""
}

// TestDecodeRequest pins what the decoder makes of named bodies: the request
// or the code. The fuzz target checks properties; this checks answers.
func TestDecodeRequest(t *testing.T) {
	deposit := func(account, amount int64) moneyRequest {
		return moneyRequest{Kind: ledger.KindDeposit, AccountID: account, AmountMinor: amount}
	}
	cases := []struct {
		name, path, body string
		want             any
		wantCode         ledger.Code
	}{
		{"deposit", "/v1/deposits", `{"account_id":1,"amount":1000}`, deposit(1, 1000), ""},
		{"members in any order, whitespace", "/v1/deposits", "\n{ \"amount\" : 7 ,\t\"account_id\" : 2 }\n", deposit(2, 7), ""},
		{"escaped name", "/v1/deposits", `{"account_id":1,"\u0061mount":3}`, deposit(1, 3), ""},
		{"largest amount", "/v1/deposits", `{"account_id":1,"amount":100000000000}`, deposit(1, ledger.MaxAmountMinor), ""},
		{"transfer", "/v1/transfers", `{"from_account_id":1,"to_account_id":2,"amount":5}`,
			moneyRequest{Kind: ledger.KindTransfer, FromAccountID: 1, ToAccountID: 2, AmountMinor: 5}, ""},
		{"credentials", "/v1/users", `{"email":"a@b.c","password":"p\u00e4ss"}`, credentials{Email: "a@b.c", Password: "päss"}, ""},
		{"missing credentials are empty", "/v1/sessions", `{}`, credentials{}, ""},

		{"duplicate amount", "/v1/deposits", `{"account_id":1,"amount":1,"amount":1000000}`, nil, ledger.CodeInvalidRequest},
		{"duplicate through an escape", "/v1/deposits", `{"account_id":1,"amount":1,"\u0061mount":1}`, nil, ledger.CodeInvalidRequest},
		{"duplicate before a wrong amount", "/v1/deposits", `{"account_id":1,"amount":"x","account_id":1}`, nil, ledger.CodeInvalidRequest},
		{"case-folded duplicate", "/v1/deposits", `{"account_id":1,"amount":2,"AMOUNT":7}`, nil, ledger.CodeInvalidRequest},
		{"capitalised name alone", "/v1/deposits", `{"account_id":1,"Amount":1}`, nil, ledger.CodeInvalidRequest},
		{"upper-case name", "/v1/sessions", `{"EMAIL":"a@b.c","password":"x"}`, nil, ledger.CodeInvalidRequest},
		{"stray brace", "/v1/deposits", `{"account_id":1,"amount":1}}`, nil, ledger.CodeInvalidRequest},
		{"empty body", "/v1/users", ``, nil, ledger.CodeInvalidRequest},
		{"top-level null", "/v1/users", `null`, nil, ledger.CodeInvalidRequest},
		{"byte order mark", "/v1/deposits", "\xef\xbb\xbf{\"account_id\":1,\"amount\":1}", nil, ledger.CodeInvalidRequest},
		{"lone surrogate", "/v1/users", `{"email":"a@b.c","password":"\ud800 long enough"}`, nil, ledger.CodeInvalidRequest},

		{"string amount", "/v1/deposits", `{"account_id":1,"amount":"10"}`, nil, ledger.CodeInvalidAmount},
		{"unicode digits amount", "/v1/deposits", `{"account_id":1,"amount":"١٢"}`, nil, ledger.CodeInvalidAmount},
		{"null amount", "/v1/deposits", `{"account_id":1,"amount":null}`, nil, ledger.CodeInvalidAmount},
		{"float amount", "/v1/deposits", `{"account_id":1,"amount":1.5}`, nil, ledger.CodeInvalidAmount},
		{"missing amount", "/v1/deposits", `{"account_id":1}`, nil, ledger.CodeInvalidAmount},
		{"string account", "/v1/deposits", `{"account_id":"1","amount":1}`, nil, ledger.CodeInvalidRequest},
		{"null account", "/v1/transfers", `{"from_account_id":1,"to_account_id":null,"amount":1}`, nil, ledger.CodeInvalidRequest},
		{"missing account", "/v1/deposits", `{"amount":1}`, nil, ledger.CodeInvalidRequest},
		{"null email", "/v1/users", `{"email":null,"password":"long enough"}`, nil, ledger.CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			decoded, _, err := bodyOf(t, c.path).decode([]byte(c.body))
			if c.wantCode == "" {
				if err != nil || decoded != c.want {
					t.Fatalf("got %+v, %v; want %+v", decoded, err, c.want)
				}
				return
			}
			if code := ledger.ErrorCode(err); code != c.wantCode {
				t.Fatalf("got %+v, %v; want code %s", decoded, err, c.wantCode)
			}
			if problem := messageProblem(ledger.ErrorMessage(err)); problem != "" {
				t.Errorf("message %q: %s", ledger.ErrorMessage(err), problem)
			}
		})
	}
}

// TestDecodeRequestMessages: a message describes the refusal without
// echoing the body's values; a member name is quoted in ASCII, bounded.
func TestDecodeRequestMessages(t *testing.T) {
	cases := []struct{ name, body, want, absent string }{
		{"unicode digits are described, not echoed", `{"account_id":1,"amount":"١٢"}`, `"amount" must be a JSON number`, "١"},
		{"duplicate names the member", `{"account_id":1,"amount":1,"amount":1000000}`, `member "amount" more than once`, "1000000"},
		{"unknown name quoted in ASCII", `{"account_id":1,"amount":1,"\u202eamount":1}`, `"\u202eamount"`, "\u202e"},
		{"long name bounded", `{"account_id":1,"amount":1,"` + strings.Repeat("n", 300) + `":1}`, `nnn"...`, strings.Repeat("n", 65)},
		{"trailing data", `{"account_id":1,"amount":1}}`, "data after its JSON object", ""},
		{"huge amount not echoed", `{"account_id":1,"amount":1` + strings.Repeat("0", 100) + `}`, "not an integer of at most", "0000000000000000000000000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeMoneyRequest(ledger.KindDeposit, []byte(c.body))
			message := ledger.ErrorMessage(err)
			if !strings.Contains(message, c.want) || (c.absent != "" && strings.Contains(message, c.absent)) {
				t.Errorf("message %q: want it to contain %q and not %q", message, c.want, c.absent)
			}
		})
	}
}

// TestCanonicalJSONUnchanged pins the canonical bytes the fingerprints are
// made of: the ledger and Redis keep fingerprints of earlier versions, so a
// change here would turn every replay into idempotency_key_reused.
func TestCanonicalJSONUnchanged(t *testing.T) {
	cases := []struct {
		request moneyRequest
		want    string
	}{
		{moneyRequest{Kind: ledger.KindDeposit, AccountID: 12, AmountMinor: 500}, `{"account_id":12,"amount":500}`},
		{moneyRequest{Kind: ledger.KindWithdrawal, AccountID: 3, AmountMinor: 1}, `{"account_id":3,"amount":1}`},
		{moneyRequest{Kind: ledger.KindTransfer, FromAccountID: 1, ToAccountID: 2, AmountMinor: 9}, `{"from_account_id":1,"to_account_id":2,"amount":9}`},
	}
	for _, c := range cases {
		if got := string(c.request.canonicalJSON()); got != c.want {
			t.Errorf("%+v: canonical %s, want %s", c.request, got, c.want)
		}
	}
}
