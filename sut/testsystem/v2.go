package testsystem

import (
	"net/http"
	"regexp"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The v2 API shape (Options.Shape ShapeV2): a payment API of another
// dialect than sut/openapi.yaml, over the same operations as http.go.
//
//   - POST /api/v2/customers {"emailAddress","secret"}: sign-up, 200
//     {"customer":{"id":USER,"wallet":{"number":ACCOUNT}}};
//   - POST /api/v2/auth/token {"emailAddress","secret"}: sign-in, 200
//     {"access_token","customer_id","wallet_number"}; later requests send
//     the token as X-Auth-Token (no "Bearer");
//   - POST /api/v2/wallets/{number}/top-ups {"value"}: a deposit;
//   - POST /api/v2/wallets/{number}/payouts {"value"}: a withdrawal;
//   - POST /api/v2/transfers {"debitWallet","creditWallet","value"};
//   - GET /api/v2/payments/{ref}: a money request's payment;
//   - GET /api/v2/wallets/{number}: {"wallet":{"number","available"}}.
//
// Money requests need an X-Request-Key header, the idempotency key (the
// same rules as the reference's Idempotency-Key, and the key the ledger
// records). A value is a decimal string of major units with exactly two
// fraction digits ("12.34" is 1234 minor units). A money request answers
// {"payment":{"ref":TRANSACTION,"state":STATE[,"declineCode":CODE]}}: 200
// COMPLETED or DECLINED once applied, 202 PROCESSING with an apply delay;
// a repeated request replays that first answer. Errors are
// {"error":{"type":TYPE}} and nothing else: the reference's error codes,
// mapped by v2Errors.
//
// Bodies are read as strictly as the reference's (readJSON: one JSON
// object, Content-Type application/json, documented members only), and
// refusals come in the reference's order: authentication, key, body,
// amount, ownership, same account.

// v2Error is how the v2 shape answers one of the reference's error codes.
type v2Error struct {
	status int
	kind   string
}

// v2Errors maps every error code of statusOfCode to its v2 answer.
var v2Errors = map[string]v2Error{
	"invalid_request":           {http.StatusBadRequest, "bad_request"},
	"invalid_amount":            {http.StatusBadRequest, "bad_value"},
	"invalid_email":             {http.StatusBadRequest, "invalid_customer"},
	"weak_password":             {http.StatusBadRequest, "invalid_customer"},
	"idempotency_key_missing":   {http.StatusBadRequest, "missing_request_key"},
	"same_account":              {http.StatusBadRequest, "same_wallet"},
	"invalid_credentials":       {http.StatusUnauthorized, "bad_credentials"},
	"unauthenticated":           {http.StatusUnauthorized, "unauthenticated"},
	"forbidden":                 {http.StatusForbidden, "not_yours"},
	"not_found":                 {http.StatusNotFound, "not_found"},
	"account_not_found":         {http.StatusNotFound, "not_found"},
	"email_taken":               {http.StatusConflict, "email_taken"},
	"idempotency_key_in_flight": {http.StatusConflict, "in_progress"},
	"idempotency_key_reused":    {http.StatusConflict, "key_conflict"},
	"body_too_large":            {http.StatusRequestEntityTooLarge, "body_too_large"},
	"unsupported_media_type":    {http.StatusUnsupportedMediaType, "unsupported_media_type"},
	"internal":                  {http.StatusInternalServerError, "internal"},
	"unavailable":               {http.StatusServiceUnavailable, "unavailable"},
}

// v2States and v2DeclineCodes spell a transaction's status and rejection
// reason as a v2 payment's state and decline code.
var (
	v2States = map[string]string{
		statusAccepted: "PROCESSING",
		statusSettled:  "COMPLETED",
		statusRejected: "DECLINED",
	}
	v2DeclineCodes = map[string]string{
		"insufficient_funds": "NSF",
		"account_not_found":  "NO_SUCH_WALLET",
		"forbidden":          "NOT_YOURS",
		"same_account":       "SAME_WALLET",
		"balance_limit":      "LIMIT",
	}
)

// v2ValuePattern is the form of a v2 value: major units and exactly two
// fraction digits.
var v2ValuePattern = regexp.MustCompile(`^[0-9]+\.[0-9]{2}$`)

// v2ValueRule is the message of a bad value (never answered: a v2 error
// is its type only).
const v2ValueRule = "the value must be a string of major units with two fraction digits, from 0.01 to 1000000000.00"

// routeV2 adds the routes of the v2 shape to mux.
func (s *System) routeV2(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v2/customers", s.v2SignUp)
	mux.HandleFunc("POST /api/v2/auth/token", s.v2SignIn)
	mux.HandleFunc("POST /api/v2/wallets/{number}/top-ups", s.v2Money(kindDeposit))
	mux.HandleFunc("POST /api/v2/wallets/{number}/payouts", s.v2Money(kindWithdrawal))
	mux.HandleFunc("POST /api/v2/transfers", s.v2Money(kindTransfer))
	mux.HandleFunc("GET /api/v2/payments/{ref}", s.v2Payment)
	mux.HandleFunc("GET /api/v2/wallets/{number}", s.v2Wallet)
	// Every other method and path is 404, never 405.
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeV2Error(w, &apiError{"not_found", "no such route"})
	})
}

// v2ErrorBody is the body of every v2 error.
type v2ErrorBody struct {
	Error struct {
		Type string `json:"type"`
	} `json:"error"`
}

// writeV2Error answers a failure as {"error":{"type":TYPE}}, with
// Retry-After on the answers a retry may change. The message stays inside.
func writeV2Error(w http.ResponseWriter, failure *apiError) {
	answer, known := v2Errors[failure.code]
	if !known {
		panic("testsystem: error code " + strconv.Quote(failure.code) + " has no v2 answer")
	}
	if answer.status == http.StatusServiceUnavailable || failure.code == "idempotency_key_in_flight" {
		w.Header().Set("Retry-After", "1")
	}
	var body v2ErrorBody
	body.Error.Type = answer.kind
	writeJSON(w, answer.status, body)
}

// v2Credentials is the body of a v2 sign-up and sign-in.
type v2Credentials struct {
	EmailAddress *string `json:"emailAddress"`
	Secret       *string `json:"secret"`
}

// v2Customer is the answer to a v2 sign-up.
type v2Customer struct {
	Customer struct {
		ID     int64 `json:"id"`
		Wallet struct {
			Number int64 `json:"number"`
		} `json:"wallet"`
	} `json:"customer"`
}

// v2SignUp serves POST /api/v2/customers: signUp.
func (s *System) v2SignUp(w http.ResponseWriter, r *http.Request) {
	var body v2Credentials
	if failure := readJSON(w, r, &body); failure != nil {
		writeV2Error(w, failure)
		return
	}
	u, failure := s.signUp(body.EmailAddress, body.Secret)
	if failure != nil {
		writeV2Error(w, failure)
		return
	}
	var answer v2Customer
	answer.Customer.ID, answer.Customer.Wallet.Number = u.id, u.accountID
	writeJSON(w, http.StatusOK, answer)
}

// v2Token is the answer to a v2 sign-in.
type v2Token struct {
	AccessToken  string `json:"access_token"`
	CustomerID   int64  `json:"customer_id"`
	WalletNumber int64  `json:"wallet_number"`
}

// v2SignIn serves POST /api/v2/auth/token: signIn.
func (s *System) v2SignIn(w http.ResponseWriter, r *http.Request) {
	var body v2Credentials
	if failure := readJSON(w, r, &body); failure != nil {
		writeV2Error(w, failure)
		return
	}
	token, u, _, failure := s.signIn(body.EmailAddress, body.Secret)
	if failure != nil {
		writeV2Error(w, failure)
		return
	}
	writeJSON(w, http.StatusOK, v2Token{AccessToken: token, CustomerID: u.id, WalletNumber: u.accountID})
}

// v2Authenticate returns the user of the request's X-Auth-Token, or nil
// after answering 401.
func (s *System) v2Authenticate(w http.ResponseWriter, r *http.Request) *user {
	u := s.userOfToken(r.Header.Get("X-Auth-Token"))
	if u == nil {
		writeV2Error(w, &apiError{"unauthenticated", "send X-Auth-Token"})
	}
	return u
}

// v2ValueRequest is the body of a top-up and a payout.
type v2ValueRequest struct {
	Value jsontext.Value `json:"value"`
}

// v2TransferRequest is the body of a transfer.
type v2TransferRequest struct {
	DebitWallet  *int64         `json:"debitWallet"`
	CreditWallet *int64         `json:"creditWallet"`
	Value        jsontext.Value `json:"value"`
}

// parseV2Value reads a value: a JSON string of v2ValuePattern, in minor
// units from 1 to amountMaximumMinor. Numbers, null, a value left out, a
// sign, an exponent, another count of fraction digits are refused.
func parseV2Value(raw jsontext.Value) (int64, bool) {
	if raw.Kind() != '"' {
		return 0, false
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil || !v2ValuePattern.MatchString(text) {
		return 0, false
	}
	// The pattern leaves one '.' three bytes from the end: drop it.
	minor, err := strconv.ParseInt(text[:len(text)-3]+text[len(text)-2:], 10, 64)
	return minor, err == nil && minor >= 1 && minor <= amountMaximumMinor
}

// formatV2Value writes minor units as a v2 value: "12.34" for 1234.
func formatV2Value(minor int64) string {
	sign, magnitude := "", uint64(minor)
	if minor < 0 {
		sign, magnitude = "-", -magnitude
	}
	fraction := strconv.FormatUint(magnitude%100, 10)
	if len(fraction) == 1 {
		fraction = "0" + fraction
	}
	return sign + strconv.FormatUint(magnitude/100, 10) + "." + fraction
}

// readV2Command reads a v2 money request (the wallet of its path and its
// body) into a draft, which commandDraft.check turns into the command.
func readV2Command(w http.ResponseWriter, r *http.Request, kind string, caller *user) (command, *apiError) {
	draft := commandDraft{kind: kind, amountRule: v2ValueRule}
	var value jsontext.Value
	switch kind {
	case kindTransfer:
		var body v2TransferRequest
		if failure := readJSON(w, r, &body); failure != nil {
			return command{kind: kind}, failure
		}
		if body.DebitWallet == nil || body.CreditWallet == nil || *body.CreditWallet < 1 {
			return command{kind: kind}, &apiError{"invalid_request", "debitWallet and creditWallet must be positive integers"}
		}
		draft.account, value, draft.destination = body.DebitWallet, body.Value, *body.CreditWallet
	default:
		var body v2ValueRequest
		if failure := readJSON(w, r, &body); failure != nil {
			return command{kind: kind}, failure
		}
		// A path that is no wallet number leaves the draft without its
		// account: check refuses it as the reference refuses a body's.
		if number, failure := accountIDOf(r.PathValue("number")); failure == nil {
			draft.account = &number
		}
		value = body.Value
	}
	draft.amountMinor, draft.amountValid = parseV2Value(value)
	return draft.check(caller)
}

// v2PaymentBody is a money request's answer and a payment's status.
type v2PaymentBody struct {
	Payment struct {
		Ref         string `json:"ref"`
		State       string `json:"state"`
		DeclineCode string `json:"declineCode,omitempty"`
	} `json:"payment"`
}

// renderV2Payment encodes a transaction (a copy taken under the mutex) as a
// v2 payment.
func renderV2Payment(t transaction) v2PaymentBody {
	var body v2PaymentBody
	body.Payment.Ref = t.id
	state, known := v2States[t.status]
	if !known {
		panic("testsystem: transaction status " + strconv.Quote(t.status) + " has no v2 state")
	}
	body.Payment.State = state
	if t.status == statusRejected {
		code, known := v2DeclineCodes[t.reason]
		if !known {
			panic("testsystem: rejection reason " + strconv.Quote(t.reason) + " has no v2 decline code")
		}
		body.Payment.DeclineCode = code
	}
	return body
}

// v2Money serves the three v2 money routes as money serves the reference's:
// the caller, the key and the request are checked, then submitted.
func (s *System) v2Money(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller := s.v2Authenticate(w, r)
		if caller == nil {
			return
		}
		key, valid := idempotencyKeyOf(r.Header.Values("X-Request-Key"))
		if !valid {
			writeV2Error(w, &apiError{"idempotency_key_missing", "send one X-Request-Key header"})
			return
		}
		c, failure := readV2Command(w, r, kind, caller)
		if failure != nil {
			writeV2Error(w, failure)
			return
		}
		status, answer, _, failure := s.submit(caller.id, key, c)
		if failure != nil {
			writeV2Error(w, failure)
			return
		}
		writeJSON(w, status, renderV2Payment(answer))
	}
}

// v2Payment serves GET /api/v2/payments/{ref}: the caller's payment in its
// current state; another customer's and an unknown ref are 404 alike.
func (s *System) v2Payment(w http.ResponseWriter, r *http.Request) {
	caller := s.v2Authenticate(w, r)
	if caller == nil {
		return
	}
	t, failure := s.transactionOf(caller, r.PathValue("ref"))
	if failure != nil {
		writeV2Error(w, failure)
		return
	}
	writeJSON(w, http.StatusOK, renderV2Payment(t))
}

// v2WalletBody is the answer to a balance request.
type v2WalletBody struct {
	Wallet struct {
		Number    int64  `json:"number"`
		Available string `json:"available"`
	} `json:"wallet"`
}

// v2Wallet serves GET /api/v2/wallets/{number}: the caller's own wallet
// and its balance; any other wallet is 404, whether it exists or not.
func (s *System) v2Wallet(w http.ResponseWriter, r *http.Request) {
	caller := s.v2Authenticate(w, r)
	if caller == nil {
		return
	}
	number, failure := accountIDOf(r.PathValue("number"))
	if failure != nil {
		writeV2Error(w, failure)
		return
	}
	balance, failure := s.balanceOf(caller, number)
	if failure != nil {
		writeV2Error(w, failure)
		return
	}
	var body v2WalletBody
	body.Wallet.Number, body.Wallet.Available = number, formatV2Value(balance)
	writeJSON(w, http.StatusOK, body)
}
