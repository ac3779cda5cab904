// Package profile describes how to speak to a payment system whose API is
// not the reference's: per operation the method, the path, the headers and
// the body, how amounts are written, and how to read the answers. The load
// client keeps speaking the reference dialect inside (its outcome rules are
// written once, load/JOURNAL.md): a profile renders each request in the
// system's dialect and translates each answer back into the reference's.
//
// The format is documented in docs/external.md; profiles/reference.yaml is
// the reference system described as a profile.
package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Operations a profile describes.
const (
	OpSignup     = "signup"
	OpSignin     = "signin"
	OpDeposit    = "deposit"
	OpWithdrawal = "withdrawal"
	OpTransfer   = "transfer"
	OpStatus     = "status"
	OpBalance    = "balance"
)

// The reference dialect's words the client reads (sut/openapi.yaml).
const (
	refSettled        = "settled"
	refRejected       = "rejected"
	refAccepted       = "accepted"
	codeKeyReused     = "idempotency_key_reused"
	codeKeyInFlight   = "idempotency_key_in_flight"
	codeEmailTaken    = "email_taken"
	codeUnknownAnswer = "invalid_response"
)

// Profile is a validated system profile.
type Profile struct {
	Name        string
	Description string
	// Amounts says how amounts are written: minor units (integers), or
	// decimal major units with Scale fraction digits, as JSON strings when
	// Quoted.
	Amounts Amounts
	// AuthHeader carries the session: its value is AuthValue with {token}
	// replaced. IdempotencyHeader carries the key of money requests.
	AuthHeader, AuthValue, IdempotencyHeader string
	// PreferWait sends the reference's "Prefer: wait=N" on money requests.
	PreferWait bool
	// Headers are sent on every request.
	Headers map[string]string
	// Endpoints by operation.
	Endpoints map[string]Endpoint
	Answers   Answers
}

// Amounts is how the system writes amounts.
type Amounts struct {
	Format string // minor or decimal
	Scale  int
	Quoted bool
}

// Endpoint is one operation's request and where its answer's fields are.
type Endpoint struct {
	Method string
	// Path is a template: {account}, {from}, {to}, {id}.
	Path string
	// Body is a JSON template: {amount}, {account}, {from}, {to}, {email},
	// {password} (email and password are written as JSON strings).
	Body string
	// Success are the statuses of a successful answer (sign-up, sign-in,
	// balance); money and status answers are read by Answers.
	Success []int
	// Pointers (RFC 6901) into a successful answer: user id, account id,
	// token, balance.
	UserID, AccountID, Token, Balance string
}

// Answers reads money and status answers.
type Answers struct {
	// Pointers to the transaction's id, its status and its reason (money
	// and status answers), and to an error's code (error answers).
	TransactionID, Status, Reason, Error string
	// Status values meaning settled, rejected and pending.
	Settled, Rejected, Pending []string
	// Reasons maps the reference's reason codes (insufficient_funds,
	// account_not_found, forbidden, same_account, balance_limit,
	// invalid_amount) to the system's values; unmapped values pass as they
	// are.
	Reasons map[string][]string
	// KeyReused, KeyInFlight and EmailTaken recognise those answers.
	KeyReused, KeyInFlight, EmailTaken Match
}

// Match recognises an error answer: its HTTP status and, when given, the
// value at Answers.Error.
type Match struct {
	Status int
	Error  string
}

// ---- the file ----

type file struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Amounts     amountsFile       `yaml:"amounts"`
	Auth        authFile          `yaml:"auth"`
	Idempotency string            `yaml:"idempotency_header"`
	PreferWait  bool              `yaml:"prefer_wait"`
	Headers     map[string]string `yaml:"headers"`
	Signup      *endpointFile     `yaml:"signup"`
	Signin      *endpointFile     `yaml:"signin"`
	Deposit     *endpointFile     `yaml:"deposit"`
	Withdrawal  *endpointFile     `yaml:"withdrawal"`
	Transfer    *endpointFile     `yaml:"transfer"`
	Status      *endpointFile     `yaml:"status"`
	Balance     *endpointFile     `yaml:"balance"`
	Answers     answersFile       `yaml:"answers"`
}

type amountsFile struct {
	Format string `yaml:"format"`
	Scale  int    `yaml:"scale"`
	Quoted bool   `yaml:"quoted"`
}

type authFile struct {
	Header string `yaml:"header"`
	Value  string `yaml:"value"`
}

type endpointFile struct {
	Method    string `yaml:"method"`
	Path      string `yaml:"path"`
	Body      string `yaml:"body"`
	Success   []int  `yaml:"success"`
	UserID    string `yaml:"user_id"`
	AccountID string `yaml:"account_id"`
	Token     string `yaml:"token"`
	Balance   string `yaml:"balance"`
	line      int
}

type answersFile struct {
	TransactionID string              `yaml:"transaction_id"`
	Status        string              `yaml:"status"`
	Reason        string              `yaml:"reason"`
	Error         string              `yaml:"error"`
	Settled       []string            `yaml:"settled"`
	Rejected      []string            `yaml:"rejected"`
	Pending       []string            `yaml:"pending"`
	Reasons       map[string][]string `yaml:"reasons"`
	KeyReused     Match               `yaml:"key_reused"`
	KeyInFlight   Match               `yaml:"key_in_flight"`
	EmailTaken    Match               `yaml:"email_taken"`
}

// UnmarshalYAML keeps the endpoint's line for messages.
func (e *endpointFile) UnmarshalYAML(node *yaml.Node) error {
	type plain endpointFile
	var decoded plain
	if err := node.Decode(&decoded); err != nil {
		return err
	}
	*e = endpointFile(decoded)
	e.line = node.Line
	return nil
}

// UnmarshalYAML reads a match.
func (m *Match) UnmarshalYAML(node *yaml.Node) error {
	var decoded struct {
		Status int    `yaml:"status"`
		Error  string `yaml:"error"`
	}
	if err := node.Decode(&decoded); err != nil {
		return err
	}
	m.Status, m.Error = decoded.Status, decoded.Error
	return nil
}

// referenceReasons are the reason codes the audit judges.
var referenceReasons = []string{"insufficient_funds", "account_not_found", "forbidden", "same_account", "balance_limit", "invalid_amount"}

// Load reads and validates a profile file, listing every problem with its
// line where the file has one.
func Load(path string) (*Profile, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return Parse(content, path)
}

// Parse decodes a profile strictly (unknown fields are errors) and
// validates it; name names it in messages.
func Parse(content []byte, name string) (*Profile, error) {
	decoder := yaml.NewDecoder(bytes.NewReader(content))
	decoder.KnownFields(true)
	var f file
	if err := decoder.Decode(&f); err != nil {
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	p := &Profile{Name: f.Name, Description: f.Description, AuthHeader: f.Auth.Header, AuthValue: f.Auth.Value,
		IdempotencyHeader: f.Idempotency, PreferWait: f.PreferWait, Headers: f.Headers,
		Amounts:   Amounts{Format: f.Amounts.Format, Scale: f.Amounts.Scale, Quoted: f.Amounts.Quoted},
		Endpoints: map[string]Endpoint{},
		Answers: Answers{TransactionID: f.Answers.TransactionID, Status: f.Answers.Status, Reason: f.Answers.Reason,
			Error: f.Answers.Error, Settled: f.Answers.Settled, Rejected: f.Answers.Rejected, Pending: f.Answers.Pending,
			Reasons: f.Answers.Reasons, KeyReused: f.Answers.KeyReused, KeyInFlight: f.Answers.KeyInFlight, EmailTaken: f.Answers.EmailTaken}}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if p.Name == "" {
		problem("name: missing")
	}
	switch p.Amounts.Format {
	case "minor":
		if p.Amounts.Scale != 0 {
			problem("amounts.scale: only for format decimal")
		}
	case "decimal":
		if p.Amounts.Scale < 0 || p.Amounts.Scale > 6 {
			problem("amounts.scale: %d, want 0 to 6 fraction digits", p.Amounts.Scale)
		}
	default:
		problem("amounts.format: %q, want minor (integer minor units) or decimal (major units with scale fraction digits)", p.Amounts.Format)
	}
	if p.AuthHeader == "" || !strings.Contains(p.AuthValue, "{token}") {
		problem("auth: want header (e.g. Authorization) and value containing {token} (e.g. \"Bearer {token}\")")
	}
	if p.IdempotencyHeader == "" {
		problem("idempotency_header: missing (the header carrying the idempotency key, e.g. Idempotency-Key)")
	}
	endpoints := map[string]*endpointFile{OpSignup: f.Signup, OpSignin: f.Signin, OpDeposit: f.Deposit, OpWithdrawal: f.Withdrawal,
		OpTransfer: f.Transfer, OpStatus: f.Status, OpBalance: f.Balance}
	for _, op := range []string{OpSignup, OpSignin, OpDeposit, OpWithdrawal, OpTransfer, OpStatus, OpBalance} {
		e := endpoints[op]
		if e == nil {
			problem("%s: missing", op)
			continue
		}
		where := fmt.Sprintf("%s (line %d)", op, e.line)
		endpoint := Endpoint{Method: strings.ToUpper(e.Method), Path: e.Path, Body: e.Body, Success: e.Success,
			UserID: e.UserID, AccountID: e.AccountID, Token: e.Token, Balance: e.Balance}
		if !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch}, endpoint.Method) {
			problem("%s: method %q, want GET, POST, PUT or PATCH", where, e.Method)
		}
		if !strings.HasPrefix(endpoint.Path, "/") {
			problem("%s: path %q must start with /", where, e.Path)
		}
		// What each operation may name, in its path (ids) and in its body.
		pathPlaceholders := map[string][]string{OpDeposit: {"account", "to"}, OpWithdrawal: {"account", "from"}, OpTransfer: {"from", "to"},
			OpStatus: {"id"}, OpBalance: {"account"}}[op]
		bodyPlaceholders := map[string][]string{OpSignup: {"email", "password"}, OpSignin: {"email", "password"},
			OpDeposit: {"amount", "account", "to"}, OpWithdrawal: {"amount", "account", "from"}, OpTransfer: {"amount", "from", "to"}}[op]
		for _, part := range []struct {
			name, text string
			known      []string
		}{{"path", endpoint.Path, pathPlaceholders}, {"body", endpoint.Body, bodyPlaceholders}} {
			for _, used := range placeholdersIn(part.text) {
				if !slices.Contains(part.known, used) {
					known := "none"
					if len(part.known) > 0 {
						known = braced(part.known)
					}
					problem("%s: {%s} is not known in the %s (%s's %s takes %s)", where, used, part.name, op, part.name, known)
				}
			}
		}
		if endpoint.Body != "" {
			sample := renderBody(endpoint.Body, p.Amounts, sampleValues)
			if !json.Valid(sample) {
				problem("%s: body is not JSON once filled in: %s", where, sample)
			}
		}
		needs := map[string][]string{OpSignup: {"user_id", "account_id"}, OpSignin: {"token"}, OpBalance: {"balance"}}[op]
		values := map[string]string{"user_id": endpoint.UserID, "account_id": endpoint.AccountID, "token": endpoint.Token, "balance": endpoint.Balance}
		for _, need := range needs {
			if !strings.HasPrefix(values[need], "/") {
				problem("%s: %s: a JSON pointer into the answer (e.g. /%s) is required", where, need, need)
			}
		}
		if len(needs) > 0 && len(endpoint.Success) == 0 {
			problem("%s: success: the HTTP statuses of a successful answer (e.g. [200])", where)
		}
		p.Endpoints[op] = endpoint
	}
	a := p.Answers
	for name, pointer := range map[string]string{"transaction_id": a.TransactionID, "status": a.Status, "error": a.Error} {
		if !strings.HasPrefix(pointer, "/") {
			problem("answers.%s: a JSON pointer (e.g. /%s) is required", name, name)
		}
	}
	if a.Reason != "" && !strings.HasPrefix(a.Reason, "/") {
		problem("answers.reason: %q is not a JSON pointer", a.Reason)
	}
	if len(a.Settled) == 0 || len(a.Rejected) == 0 {
		problem("answers: settled and rejected: the status values of a settled and a rejected transaction are required")
	}
	for reason := range a.Reasons {
		if !slices.Contains(referenceReasons, reason) {
			problem("answers.reasons: %q is not a reason the audit judges (%s)", reason, strings.Join(referenceReasons, ", "))
		}
	}
	for name, match := range map[string]Match{"key_reused": a.KeyReused, "key_in_flight": a.KeyInFlight, "email_taken": a.EmailTaken} {
		if match.Status < 400 || match.Status > 599 {
			problem("answers.%s: status %d, want the 4xx (or 5xx) the system answers", name, match.Status)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("profile %s is invalid:\n  - %s", name, strings.Join(problems, "\n  - "))
	}
	return p, nil
}

var sampleValues = Values{Amount: 1234, Account: 11, From: 11, To: 12, Email: "a@example.test", Password: "p\"w"}

func braced(names []string) string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = "{" + name + "}"
	}
	return strings.Join(out, ", ")
}

// placeholdersIn lists the {name} placeholders of a template: a brace,
// lowercase letters and underscores, a brace (JSON's own braces are not).
func placeholdersIn(template string) []string {
	var names []string
	for i := 0; i < len(template); i++ {
		if template[i] != '{' {
			continue
		}
		end := i + 1
		for end < len(template) && (template[end] >= 'a' && template[end] <= 'z' || template[end] == '_') {
			end++
		}
		if end > i+1 && end < len(template) && template[end] == '}' {
			names = append(names, template[i+1:end])
			i = end
		}
	}
	return names
}

// Values fill a template.
type Values struct {
	Amount, Account, From, To int64
	Email, Password, ID       string
}

// FormatAmount writes minor units as the system does.
func (a Amounts) FormatAmount(minor int64) string {
	if a.Format != "decimal" {
		return strconv.FormatInt(minor, 10)
	}
	scale := int64(math.Pow10(a.Scale))
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	text := strconv.FormatInt(minor/scale, 10)
	if a.Scale > 0 {
		text += "." + fmt.Sprintf("%0*d", a.Scale, minor%scale)
	}
	text = sign + text
	if a.Quoted {
		return strconv.Quote(text)
	}
	return text
}

// ParseAmount reads an amount the system wrote (a JSON number or string)
// back into minor units.
func (a Amounts) ParseAmount(value any) (int64, error) {
	var text string
	switch v := value.(type) {
	case json.Number:
		text = v.String()
	case string:
		text = v
	default:
		return 0, fmt.Errorf("amount %v is neither a number nor a string", value)
	}
	if a.Format != "decimal" {
		return strconv.ParseInt(text, 10, 64)
	}
	whole, fraction, _ := strings.Cut(text, ".")
	negative := strings.HasPrefix(whole, "-")
	whole = strings.TrimPrefix(whole, "-")
	if len(fraction) > a.Scale || !digits(whole) || (fraction != "" && !digits(fraction)) {
		return 0, fmt.Errorf("amount %q is not a decimal with at most %d fraction digits", text, a.Scale)
	}
	fraction += strings.Repeat("0", a.Scale-len(fraction))
	total, err := strconv.ParseInt(whole+fraction, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: %w", text, err)
	}
	if negative {
		total = -total
	}
	return total, nil
}

// digits reports whether text is one or more ASCII digits.
func digits(text string) bool {
	if text == "" {
		return false
	}
	for _, r := range text {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// renderBody fills a body template.
func renderBody(template string, amounts Amounts, v Values) []byte {
	email, _ := json.Marshal(v.Email)
	password, _ := json.Marshal(v.Password)
	return []byte(strings.NewReplacer("{amount}", amounts.FormatAmount(v.Amount), "{account}", strconv.FormatInt(v.Account, 10),
		"{from}", strconv.FormatInt(v.From, 10), "{to}", strconv.FormatInt(v.To, 10),
		"{email}", string(email), "{password}", string(password)).Replace(template))
}

// renderPath fills a path template, escaping each value.
func renderPath(template string, v Values) string {
	return strings.NewReplacer("{account}", strconv.FormatInt(v.Account, 10), "{from}", strconv.FormatInt(v.From, 10),
		"{to}", strconv.FormatInt(v.To, 10), "{id}", url.PathEscape(v.ID)).Replace(template)
}

// Request is one request in the system's dialect.
type Request struct {
	Method, Path string
	Body         []byte
}

// Render renders an operation's request.
func (p *Profile) Render(op string, v Values) Request {
	endpoint := p.Endpoints[op]
	request := Request{Method: endpoint.Method, Path: renderPath(endpoint.Path, v)}
	if endpoint.Body != "" {
		request.Body = renderBody(endpoint.Body, p.Amounts, v)
	}
	return request
}

// AuthorizationValue is the auth header's value for a token.
func (p *Profile) AuthorizationValue(token string) string {
	return strings.ReplaceAll(p.AuthValue, "{token}", token)
}

// ---- answers ----

// Translate turns the system's answer to op into the answer the reference
// system would have given (its status and JSON body), which is what the
// client's outcome rules read. An answer the profile cannot read becomes a
// 200 whose body the client cannot read either (an unknown outcome, reason
// invalid_response), never a made-up outcome.
func (p *Profile) Translate(op string, status int, body []byte) (int, []byte) {
	if status == 0 {
		return 0, body
	}
	var document any
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.UseNumber()
	if decoder.Decode(&document) != nil {
		document = nil
	}
	a := p.Answers
	errorCode, _ := text(pointer(document, a.Error))
	matches := func(m Match) bool { return m.Status == status && (m.Error == "" || m.Error == errorCode) }
	switch op {
	case OpDeposit, OpWithdrawal, OpTransfer, OpStatus:
		switch {
		case matches(a.KeyReused):
			return http.StatusUnprocessableEntity, codeBody(codeKeyReused)
		case matches(a.KeyInFlight):
			return http.StatusConflict, codeBody(codeKeyInFlight)
		case status >= 200 && status < 300:
			code, translated := p.translateTransaction(document)
			if op == OpStatus && code == http.StatusAccepted {
				// The reference answers a status read 200, whatever the status.
				code = http.StatusOK
			}
			return code, translated
		}
	case OpSignup:
		if matches(a.EmailTaken) {
			return http.StatusConflict, codeBody(codeEmailTaken)
		}
		if slices.Contains(p.Endpoints[op].Success, status) {
			user, errUser := integer(pointer(document, p.Endpoints[op].UserID))
			account, errAccount := integer(pointer(document, p.Endpoints[op].AccountID))
			if errUser != nil || errAccount != nil {
				return http.StatusCreated, []byte(`{}`)
			}
			return http.StatusCreated, mustJSON(map[string]int64{"user_id": user, "account_id": account})
		}
	case OpSignin:
		if slices.Contains(p.Endpoints[op].Success, status) {
			answer := map[string]any{}
			if token, err := text(pointer(document, p.Endpoints[op].Token)); err == nil {
				answer["token"] = token
			}
			if user, err := integer(pointer(document, p.Endpoints[op].UserID)); err == nil {
				answer["user_id"] = user
			}
			if account, err := integer(pointer(document, p.Endpoints[op].AccountID)); err == nil {
				answer["account_id"] = account
			}
			return http.StatusCreated, mustJSON(answer)
		}
	case OpBalance:
		if slices.Contains(p.Endpoints[op].Success, status) {
			balance, err := p.Amounts.ParseAmount(pointer(document, p.Endpoints[op].Balance))
			if err != nil {
				return http.StatusOK, []byte(`{}`)
			}
			return http.StatusOK, mustJSON(map[string]int64{"balance": balance})
		}
	}
	if status >= 200 && status < 300 {
		// A success the profile does not list: its body is the system's
		// dialect, which must not be read as the reference's.
		return status, unreadable
	}
	// An error: its code, in the reference's words where the profile maps it.
	return status, codeBody(p.reason(errorCode))
}

// translateTransaction reads a transaction's id, status and reason.
func (p *Profile) translateTransaction(document any) (int, []byte) {
	a := p.Answers
	id, errID := text(pointer(document, a.TransactionID))
	status, errStatus := text(pointer(document, a.Status))
	if errID != nil || errStatus != nil || id == "" {
		return http.StatusOK, unreadable
	}
	answer := map[string]string{"transaction_id": id}
	code := http.StatusOK
	switch {
	case slices.Contains(a.Settled, status):
		answer["status"] = refSettled
	case slices.Contains(a.Rejected, status):
		answer["status"] = refRejected
		reason, _ := text(pointer(document, a.Reason))
		answer["reason"] = p.reason(reason)
	case slices.Contains(a.Pending, status):
		answer["status"], code = refAccepted, http.StatusAccepted
	default:
		// A status value the profile does not list: unreadable, so the
		// outcome is unknown with reason invalid_response, resolved by the
		// audit against the ledger.
		return http.StatusOK, unreadable
	}
	return code, mustJSON(answer)
}

// unreadable is an answer body the client cannot read as the reference's (a
// JSON string, not an object): the outcome is unknown, reason
// invalid_response.
var unreadable = []byte(`"unreadable"`)

// reason maps a system's reason or error value to the reference's.
func (p *Profile) reason(value string) string {
	for reference, values := range p.Answers.Reasons {
		if slices.Contains(values, value) {
			return reference
		}
	}
	return value
}

func codeBody(code string) []byte { return mustJSON(map[string]string{"code": code}) }

func mustJSON(value any) []byte {
	content, err := json.Marshal(value)
	if err != nil {
		panic(err)
	}
	return content
}

// pointer resolves an RFC 6901 JSON pointer; nil when it leads nowhere.
func pointer(document any, path string) any {
	if path == "" || document == nil {
		return nil
	}
	current := document
	for _, token := range strings.Split(path, "/")[1:] {
		token = strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		switch node := current.(type) {
		case map[string]any:
			current = node[token]
		case []any:
			index, err := strconv.Atoi(token)
			if err != nil || index < 0 || index >= len(node) {
				return nil
			}
			current = node[index]
		default:
			return nil
		}
	}
	return current
}

var errNotThere = errors.New("not in the answer")

func text(value any) (string, error) {
	switch v := value.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", errNotThere
}

func integer(value any) (int64, error) {
	switch v := value.(type) {
	case json.Number:
		return v.Int64()
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, errNotThere
}
