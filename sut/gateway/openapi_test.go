package gateway

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// These tests keep sut/openapi.yaml honest: the routes it documents are the
// routes the gateway serves, and its error codes and their statuses are those
// of sut/ledger/errors.go and statusOf.

const openAPIPath = "../openapi.yaml"

// documentedGatewayRoutes is the table of mux patterns registered in
// (*Gateway).routes(), the public API, without the catch-all "/";
// documentedInternalRoutes those of (*Gateway).InternalHandler(). The test
// also derives the patterns from gateway.go's source and asks the muxes
// themselves, so these tables cannot silently drift from the code.
var (
	documentedGatewayRoutes = []string{
		"POST /v1/users",
		"POST /v1/sessions",
		"DELETE /v1/sessions",
		"POST /v1/deposits",
		"POST /v1/withdrawals",
		"POST /v1/transfers",
		"GET /v1/transactions/{id}",
		"GET /v1/accounts/{id}",
		"GET /healthz",
	}
	documentedInternalRoutes = []string{
		"GET /readyz",
		"GET /metrics",
	}
)

// Stand-ins for Store, Cache and Queue. They do nothing useful: these tests
// check routing and documentation only, never behaviour, so no real Postgres,
// Redis or broker is needed. Behaviour is tested against real services
// elsewhere (sut/e2e).
type routingStore struct{}

var errStandIn = errors.New("stand-in: not implemented")

func (routingStore) CreateUserWithKey(context.Context, string, string, string) (ledger.User, error) {
	return ledger.User{}, errStandIn
}
func (routingStore) UserByEmailKey(context.Context, string, string) (ledger.User, error) {
	return ledger.User{}, ledger.Errorf(ledger.CodeNotFound, "stand-in")
}
func (routingStore) UsersWithoutEmailKey(context.Context, int64, int) ([]ledger.User, error) {
	return nil, errStandIn
}
func (routingStore) SetEmailKey(context.Context, int64, string) error { return errStandIn }
func (routingStore) CreateSession(context.Context, []byte, int64, int64, time.Duration) (ledger.Session, error) {
	return ledger.Session{}, errStandIn
}
func (routingStore) LookupSession(context.Context, []byte) (ledger.Session, bool, error) {
	return ledger.Session{}, false, nil
}
func (routingStore) EndSessions(context.Context, int64) (ledger.SessionsValidAfter, error) {
	return ledger.SessionsValidAfter{}, errStandIn
}

// SessionsEndedSince answers that no session was ended.
func (routingStore) SessionsEndedSince(context.Context, time.Time, time.Duration, bool, int) ([]ledger.SessionsValidAfter, time.Time, error) {
	return nil, time.Now(), nil
}
func (routingStore) DeleteExpiredSessions(context.Context, int) (int64, error) { return 0, errStandIn }
func (routingStore) Account(context.Context, int64) (ledger.Account, error) {
	return ledger.Account{}, errStandIn
}
func (routingStore) Transaction(context.Context, string) (ledger.Transaction, error) {
	return ledger.Transaction{}, errStandIn
}
func (routingStore) Ping(context.Context) error                { return nil }
func (routingStore) LedgerEmpty(context.Context) (bool, error) { return false, errStandIn }

type routingCache struct{}

func (routingCache) CreateSession(context.Context, string, redis.Session, time.Duration) error {
	return errStandIn
}
func (routingCache) LookupSession(context.Context, string) (redis.Session, bool, error) {
	return redis.Session{}, false, nil
}
func (routingCache) DeleteSession(context.Context, string) error { return errStandIn }
func (routingCache) SigninAttempt(context.Context, string, time.Time, redis.SigninLock) (redis.SigninAttemptAnswer, error) {
	return redis.SigninAttemptAnswer{}, errStandIn
}
func (routingCache) SigninSucceeded(context.Context, string) error { return errStandIn }
func (routingCache) SigninUndecided(context.Context, string) error { return errStandIn }
func (routingCache) ReserveAndRead(context.Context, int64, string, redis.IdempotencyRecord, time.Duration, redis.CachedReads) (redis.Reservation, error) {
	return redis.Reservation{}, errStandIn
}
func (routingCache) MarkKeysComplete(context.Context, string) (bool, error) { return false, errStandIn }
func (routingCache) UnmarkKeysComplete(context.Context, string) error       { return errStandIn }
func (routingCache) KeysComplete(context.Context) (bool, error)             { return false, errStandIn }
func (routingCache) StoreResponse(context.Context, int64, string, redis.IdempotencyRecord, *redis.PendingTransaction, time.Duration) error {
	return errStandIn
}
func (routingCache) Release(context.Context, int64, string, string) error { return errStandIn }
func (routingCache) LookupOutcome(context.Context, string) (ledger.OutcomeNotice, bool, error) {
	return ledger.OutcomeNotice{}, false, errStandIn
}
func (routingCache) LookupPending(context.Context, string) (redis.PendingTransaction, bool, error) {
	return redis.PendingTransaction{}, false, nil
}
func (routingCache) SubscribeOutcomes(context.Context, func(ledger.OutcomeNotice)) {}
func (routingCache) Ping(context.Context) error                                    { return nil }

type routingQueue struct{}

func (routingQueue) Produce(context.Context, []byte, []byte) (int32, int64, error) {
	return 0, 0, errStandIn
}

// openAPIDocument is the part of an OpenAPI document these tests read.
type openAPIDocument struct {
	OpenAPI string `yaml:"openapi"`
	Info    struct {
		Title   string `yaml:"title"`
		Version string `yaml:"version"`
	} `yaml:"info"`
	// Paths maps a path to its path item; only its HTTP-method keys are
	// operations (a path item may also hold summary, parameters, ...).
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Responses map[string]openAPIResponse `yaml:"responses"`
		Schemas   map[string]struct {
			Enum       []string       `yaml:"enum"`
			HTTPStatus map[string]int `yaml:"x-http-status"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

type openAPIOperation struct {
	Responses map[string]openAPIResponse `yaml:"responses"`
}

type openAPIResponse struct {
	Ref        string   `yaml:"$ref"`
	ErrorCodes []string `yaml:"x-error-codes"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t testing.TB) (openAPIDocument, []byte) {
	t.Helper()
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatalf("read %s: %v", openAPIPath, err)
	}
	var document openAPIDocument
	if err := yaml.Unmarshal(raw, &document); err != nil {
		t.Fatalf("parse %s: %v", openAPIPath, err)
	}
	return document, raw
}

// specRoutes lists the documented operations of the public API as Go mux
// patterns ("METHOD /path/{param}"); OpenAPI path templates and Go 1.22
// patterns share the {name} syntax. Paths with a servers list of their own
// are on the internal listener: specInternalRoutes lists those.
func specRoutes(document openAPIDocument) []string {
	return specRoutesWhere(document, false)
}

// specInternalRoutes lists the documented operations of the internal
// listener: the paths whose path item names its own servers.
func specInternalRoutes(document openAPIDocument) []string {
	return specRoutesWhere(document, true)
}

func specRoutesWhere(document openAPIDocument, internal bool) []string {
	var routes []string
	for path, item := range document.Paths {
		if _, own := item["servers"]; own != internal {
			continue
		}
		for key := range item {
			if slices.Contains(httpMethods, key) {
				routes = append(routes, strings.ToUpper(key)+" "+path)
			}
		}
	}
	slices.Sort(routes)
	return routes
}

// compareRoutes reports the documented routes the gateway does not serve and
// the served routes the document lacks.
func compareRoutes(documented, served []string) (notServed, undocumented []string) {
	for _, route := range documented {
		if !slices.Contains(served, route) {
			notServed = append(notServed, route)
		}
	}
	for _, route := range served {
		if !slices.Contains(documented, route) {
			undocumented = append(undocumented, route)
		}
	}
	return notServed, undocumented
}

// registeredPatterns reads the patterns passed to mux.Handle and
// mux.HandleFunc in (*Gateway).routes from gateway.go's source: the routes
// as the code registers them, found without changing the code. The
// catch-all "/" is left out.
func registeredPatterns(t *testing.T) []string {
	t.Helper()
	return registeredPatternsIn(t, "routes")
}

// registeredPatternsIn is registeredPatterns of the method called method.
func registeredPatternsIn(t *testing.T, method string) []string {
	t.Helper()
	fileSet := token.NewFileSet()
	file, err := parser.ParseFile(fileSet, "gateway.go", nil, 0)
	if err != nil {
		t.Fatalf("parse gateway.go: %v", err)
	}
	var patterns []string
	found := false
	for _, declaration := range file.Decls {
		function, ok := declaration.(*ast.FuncDecl)
		if !ok || function.Name.Name != method || function.Recv == nil {
			continue
		}
		found = true
		ast.Inspect(function.Body, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			selector, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (selector.Sel.Name != "Handle" && selector.Sel.Name != "HandleFunc") {
				return true
			}
			literal, ok := call.Args[0].(*ast.BasicLit)
			if !ok || literal.Kind != token.STRING {
				t.Errorf("gateway.go: a %s pattern is not a string literal; extend this test", selector.Sel.Name)
				return true
			}
			pattern, err := strconv.Unquote(literal.Value)
			if err != nil {
				t.Fatalf("gateway.go: pattern %s: %v", literal.Value, err)
			}
			if pattern != "/" {
				patterns = append(patterns, pattern)
			}
			return true
		})
	}
	if !found {
		t.Fatalf("gateway.go: no %s method found", method)
	}
	slices.Sort(patterns)
	return patterns
}

// ledgerErrorCodes reads the values of the Code constants declared in
// sut/ledger/errors.go.
func ledgerErrorCodes(t *testing.T) []string {
	t.Helper()
	fileSet := token.NewFileSet()
	file, err := parser.ParseFile(fileSet, filepath.Join("..", "ledger", "errors.go"), nil, 0)
	if err != nil {
		t.Fatalf("parse ledger/errors.go: %v", err)
	}
	var codes []string
	for _, declaration := range file.Decls {
		general, ok := declaration.(*ast.GenDecl)
		if !ok || general.Tok != token.CONST {
			continue
		}
		for _, spec := range general.Specs {
			value := spec.(*ast.ValueSpec)
			if typeName, ok := value.Type.(*ast.Ident); !ok || typeName.Name != "Code" {
				continue
			}
			for _, expression := range value.Values {
				literal, ok := expression.(*ast.BasicLit)
				if !ok || literal.Kind != token.STRING {
					t.Fatalf("ledger/errors.go: a Code constant is not a string literal")
				}
				code, _ := strconv.Unquote(literal.Value)
				codes = append(codes, code)
			}
		}
	}
	slices.Sort(codes)
	return codes
}

// samplePath fills a documented path's parameters with valid-looking values.
func samplePath(path string) string {
	return strings.NewReplacer(
		"/v1/transactions/{id}", "/v1/transactions/00000000-0000-8000-8000-000000000000",
		"/v1/accounts/{id}", "/v1/accounts/1",
	).Replace(path)
}

// routingTestHashing is the cheapest KDF, so New's decoy hash is instant.
var routingTestHashing = PasswordHashing{MemoryKiB: 64, Iterations: 1}

func newRoutingGateway(t *testing.T) *Gateway {
	t.Helper()
	g, err := New(Config{PasswordHashing: routingTestHashing}, Dependencies{Store: routingStore{}, Cache: routingCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

func TestOpenAPIDocument(t *testing.T) {
	document, _ := loadOpenAPI(t)
	if !strings.HasPrefix(document.OpenAPI, "3.") {
		t.Errorf("openapi: %q, want 3.x", document.OpenAPI)
	}
	if document.Info.Title == "" || document.Info.Version == "" {
		t.Errorf("info needs a title and a version: %+v", document.Info)
	}
	if len(document.Paths) == 0 {
		t.Fatal("no paths")
	}
}

// TestOpenAPIReferences checks that every local $ref resolves.
func TestOpenAPIReferences(t *testing.T) {
	_, raw := loadOpenAPI(t)
	var tree any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	var walk func(node any)
	walk = func(node any) {
		switch value := node.(type) {
		case map[string]any:
			if ref, ok := value["$ref"].(string); ok {
				if !resolves(tree, ref) {
					t.Errorf("$ref %q does not resolve", ref)
				}
			}
			for _, child := range value {
				walk(child)
			}
		case []any:
			for _, child := range value {
				walk(child)
			}
		}
	}
	walk(tree)
}

func resolves(tree any, ref string) bool {
	pointer, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	node := tree
	for _, part := range strings.Split(pointer, "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		object, ok := node.(map[string]any)
		if !ok {
			return false
		}
		if node, ok = object[part]; !ok {
			return false
		}
	}
	return true
}

func TestOpenAPIRoutesMatchGateway(t *testing.T) {
	document, _ := loadOpenAPI(t)
	documented := specRoutes(document)
	registered := registeredPatterns(t)

	table := slices.Clone(documentedGatewayRoutes)
	slices.Sort(table)
	if !slices.Equal(table, registered) {
		t.Errorf("the test's route table %v differs from the patterns gateway.go registers %v", table, registered)
	}
	notServed, undocumented := compareRoutes(documented, registered)
	for _, route := range notServed {
		t.Errorf("openapi.yaml documents %s, which the gateway does not register", route)
	}
	for _, route := range undocumented {
		t.Errorf("the gateway registers %s, which openapi.yaml does not document", route)
	}

	// The internal listener's routes likewise.
	internalDocumented, internalRegistered := specInternalRoutes(document), registeredPatternsIn(t, "internalRoutes")
	internalTable := slices.Sorted(slices.Values(documentedInternalRoutes))
	if !slices.Equal(internalTable, internalRegistered) {
		t.Errorf("the test's internal route table %v differs from the patterns internalRoutes registers %v", internalTable, internalRegistered)
	}
	notServed, undocumented = compareRoutes(internalDocumented, internalRegistered)
	for _, route := range notServed {
		t.Errorf("openapi.yaml documents %s on the internal listener, which internalRoutes does not register", route)
	}
	for _, route := range undocumented {
		t.Errorf("internalRoutes registers %s, which openapi.yaml does not document on the internal listener", route)
	}

	g := newRoutingGateway(t)
	for _, listener := range []struct {
		name    string
		mux     *http.ServeMux
		handler http.Handler
		routes  []string
		other   []string
	}{
		{"public", g.routes(), g.Handler(), append(slices.Clone(documented), table...), internalTable},
		{"internal", g.internalRoutes(), g.InternalHandler(), append(slices.Clone(internalDocumented), internalTable...), table},
	} {
		// Every route, documented or registered, must be served by exactly
		// its own pattern and must not reach the catch-all.
		for _, route := range listener.routes {
			method, path, _ := strings.Cut(route, " ")
			request := httptest.NewRequest(method, samplePath(path), nil)
			if _, pattern := listener.mux.Handler(request); pattern != route {
				t.Errorf("%s: %s %s is served by pattern %q, want %q", listener.name, method, request.URL.Path, pattern, route)
			}
			recorder := httptest.NewRecorder()
			listener.handler.ServeHTTP(recorder, request)
			body, _ := io.ReadAll(recorder.Body)
			if strings.Contains(string(body), "no route for") {
				t.Errorf("%s: %s %s reached the catch-all: %d %s", listener.name, method, request.URL.Path, recorder.Code, body)
			}
		}
		// The other listener's routes are not served here: the catch-all
		// answers them, as it answers what the document says: 404
		// not_found, also for a documented path with another method.
		requests := []*http.Request{
			httptest.NewRequest(http.MethodGet, "/v1/unknown", nil),
			httptest.NewRequest(http.MethodDelete, "/v1/users", nil),
		}
		for _, route := range listener.other {
			method, path, _ := strings.Cut(route, " ")
			if !slices.Contains(listener.routes, route) {
				requests = append(requests, httptest.NewRequest(method, samplePath(path), nil))
			}
		}
		for _, request := range requests {
			recorder := httptest.NewRecorder()
			listener.handler.ServeHTTP(recorder, request)
			body := recorder.Body.String()
			if recorder.Code != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) || !strings.Contains(body, "no route for") {
				t.Errorf("%s: %s %s: %d %s, want the catch-all 404", listener.name, request.Method, request.URL.Path, recorder.Code, body)
			}
		}
	}
}

func TestOpenAPIRouteComparisonNegative(t *testing.T) {
	_, raw := loadOpenAPI(t)
	var mutated openAPIDocument
	if err := yaml.Unmarshal(raw, &mutated); err != nil {
		t.Fatal(err)
	}
	const droppedPath, droppedMethod = "/v1/transfers", "post"
	if _, ok := mutated.Paths[droppedPath][droppedMethod]; !ok {
		t.Fatalf("the spec has no %s %s to drop", droppedMethod, droppedPath)
	}
	delete(mutated.Paths[droppedPath], droppedMethod)
	notServed, undocumented := compareRoutes(specRoutes(mutated), registeredPatterns(t))
	if len(notServed) != 0 || !slices.Equal(undocumented, []string{"POST /v1/transfers"}) {
		t.Errorf("dropping POST /v1/transfers: not served %v, undocumented %v; want only the dropped route undocumented", notServed, undocumented)
	}

	// And an extra, unserved route is reported the other way round.
	extra := append(specRoutes(mutated), "POST /v1/transfers", "DELETE /v1/users")
	notServed, undocumented = compareRoutes(extra, registeredPatterns(t))
	if !slices.Equal(notServed, []string{"DELETE /v1/users"}) || len(undocumented) != 0 {
		t.Errorf("adding DELETE /v1/users: not served %v, undocumented %v", notServed, undocumented)
	}
}

// errorCodeProblems compares the document's error codes with the ledger's
// codes and the gateway's statusOf table.
func errorCodeProblems(document openAPIDocument, ledgerCodes []string) []string {
	var problems []string
	schema, ok := document.Components.Schemas["ErrorCode"]
	if !ok {
		return []string{"components.schemas.ErrorCode is missing"}
	}
	enum := slices.Sorted(slices.Values(schema.Enum))
	if !slices.Equal(enum, ledgerCodes) {
		problems = append(problems, "ErrorCode enum "+strings.Join(enum, ",")+" != ledger codes "+strings.Join(ledgerCodes, ","))
	}
	for _, code := range ledgerCodes {
		want := HTTPStatus(ledger.Code(code))
		if got, ok := schema.HTTPStatus[code]; !ok {
			problems = append(problems, "x-http-status lacks "+code)
		} else if got != want {
			problems = append(problems, "x-http-status "+code+": "+strconv.Itoa(got)+", statusOf says "+strconv.Itoa(want))
		}
	}
	for code := range schema.HTTPStatus {
		if !slices.Contains(ledgerCodes, code) {
			problems = append(problems, "x-http-status has unknown code "+code)
		}
	}

	// Every response that lists the codes it carries must have their status.
	for path, item := range document.Paths {
		for method, node := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var operation openAPIOperation
			if err := node.Decode(&operation); err != nil {
				problems = append(problems, method+" "+path+": "+err.Error())
				continue
			}
			for status, response := range operation.Responses {
				where := strings.ToUpper(method) + " " + path + " " + status
				if name, ok := strings.CutPrefix(response.Ref, "#/components/responses/"); ok {
					component, found := document.Components.Responses[name]
					if !found {
						problems = append(problems, where+": unknown response "+name)
						continue
					}
					response = component
				}
				for _, code := range response.ErrorCodes {
					if !slices.Contains(ledgerCodes, code) {
						problems = append(problems, where+": unknown code "+code)
					} else if got := strconv.Itoa(HTTPStatus(ledger.Code(code))); got != status {
						problems = append(problems, where+": code "+code+" is answered with "+got)
					}
				}
				if code, err := strconv.Atoi(status); err == nil && code >= 400 && len(response.ErrorCodes) == 0 &&
					!(path == "/readyz" && code == http.StatusServiceUnavailable) {
					problems = append(problems, where+": an error response without x-error-codes")
				}
			}
		}
	}
	// Rejection reasons are error codes too.
	for _, reason := range document.Components.Schemas["RejectionReason"].Enum {
		if !slices.Contains(ledgerCodes, reason) {
			problems = append(problems, "RejectionReason has unknown code "+reason)
		}
	}
	slices.Sort(problems)
	return problems
}

func TestOpenAPIErrorCodes(t *testing.T) {
	ledgerCodes := ledgerErrorCodes(t)
	if len(ledgerCodes) == 0 {
		t.Fatal("no Code constants found in ledger/errors.go")
	}
	// statusOf must cover every code, so HTTPStatus never falls back to 500
	// for a real code by accident.
	var mapped []string
	for code := range statusOf {
		mapped = append(mapped, string(code))
	}
	slices.Sort(mapped)
	if !slices.Equal(mapped, ledgerCodes) {
		t.Errorf("statusOf maps %v, ledger declares %v", mapped, ledgerCodes)
	}

	document, _ := loadOpenAPI(t)
	for _, problem := range errorCodeProblems(document, ledgerCodes) {
		t.Error(problem)
	}

	// Negative: a wrong status and a missing code must be reported.
	_, raw := loadOpenAPI(t)
	var mutated openAPIDocument
	if err := yaml.Unmarshal(raw, &mutated); err != nil {
		t.Fatal(err)
	}
	schema := mutated.Components.Schemas["ErrorCode"]
	schema.HTTPStatus["idempotency_key_reused"] = http.StatusConflict
	schema.Enum = slices.DeleteFunc(schema.Enum, func(code string) bool { return code == "rate_limited" })
	mutated.Components.Schemas["ErrorCode"] = schema
	problems := errorCodeProblems(mutated, ledgerCodes)
	if len(problems) != 2 || !strings.Contains(strings.Join(problems, "\n"), "idempotency_key_reused: 409") {
		t.Errorf("mutated spec: problems %q, want the enum and the idempotency_key_reused status reported", problems)
	}
}

// documentedCodes returns the error codes sut/openapi.yaml lists for one
// response (x-error-codes, through a $ref to components.responses), and
// whether the document has that response at all.
func documentedCodes(document openAPIDocument, method, path string, status int) ([]string, bool) {
	node, ok := document.Paths[path][strings.ToLower(method)]
	if !ok {
		return nil, false
	}
	var operation openAPIOperation
	if err := node.Decode(&operation); err != nil {
		return nil, false
	}
	response, ok := operation.Responses[strconv.Itoa(status)]
	if !ok {
		return nil, false
	}
	if name, isRef := strings.CutPrefix(response.Ref, "#/components/responses/"); isRef {
		if response, ok = document.Components.Responses[name]; !ok {
			return nil, false
		}
	}
	return response.ErrorCodes, true
}

// undocumentedAnswer says what sut/openapi.yaml lacks for the gateway to
// answer status with code on the operation (method, path), or "".
func undocumentedAnswer(document openAPIDocument, method, path string, status int, code string) string {
	codes, found := documentedCodes(document, method, path, status)
	switch {
	case !found:
		return fmt.Sprintf("%s %s documents no %d response", method, path, status)
	case !slices.Contains(codes, code):
		return fmt.Sprintf("%s %s %d documents the codes %v, not %s", method, path, status, codes, code)
	}
	return ""
}

// sessionCache is routingCache with one valid session: the token
// standInToken names user 7, whose account is 70.
type sessionCache struct{ routingCache }

const (
	standInToken     = "token-of-user-7"
	standInUserID    = 7
	standInAccountID = 70
)

func (sessionCache) LookupSession(_ context.Context, token string) (redis.Session, bool, error) {
	if token != standInToken {
		return redis.Session{}, false, nil
	}
	return redis.Session{UserID: standInUserID, AccountID: standInAccountID, ExpiresAt: time.Now().Add(time.Hour)}, true, nil
}

// TestOpenAPIDocumentsRefusals sends the refusals of hostile or malformed
// requests (duplicate and case-folded JSON members, trailing data, wrong
// types, bad Idempotency-Key headers, another user's or an unknown account)
// through the gateway's handler and checks each answer: the expected status
// and code, our {code,message} body with a printable ASCII message, and a
// response sut/openapi.yaml documents with that code. Every refusal here
// happens before the stand-ins are asked anything that matters.
// Requests are built in memory, so header bytes that net/http's server
// refuses on the wire reach the handler here; sut/e2e sends those on a real
// connection.
func TestOpenAPIDocumentsRefusals(t *testing.T) {
	document, _ := loadOpenAPI(t)
	g, err := New(Config{PasswordHashing: routingTestHashing}, Dependencies{Store: routingStore{}, Cache: sessionCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatal(err)
	}
	handler, routes := g.Handler(), g.routes()
	cases := []struct {
		name, method, path string
		// keys are the Idempotency-Key header values sent, in order.
		keys       []string
		body       string
		wantStatus int
		wantCode   ledger.Code
	}{
		{"unknown account", "GET", "/v1/accounts/999", nil, "", 404, ledger.CodeAccountNotFound},
		{"account id not a number", "GET", "/v1/accounts/abc", nil, "", 400, ledger.CodeInvalidRequest},
		{"account id in Arabic-Indic digits", "GET", "/v1/accounts/%D9%A1%D9%A2", nil, "", 400, ledger.CodeInvalidRequest},
		{"duplicate amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1,"amount":1000000}`, 400, ledger.CodeInvalidRequest},
		{"duplicate amount, same value", "POST", "/v1/withdrawals", []string{"k"}, `{"account_id":70,"amount":1,"amount":1}`, 400, ledger.CodeInvalidRequest},
		{"duplicate account", "POST", "/v1/transfers", []string{"k"}, `{"from_account_id":70,"from_account_id":71,"to_account_id":72,"amount":1}`, 400, ledger.CodeInvalidRequest},
		{"case-folded duplicate", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":2,"AMOUNT":7}`, 400, ledger.CodeInvalidRequest},
		{"capitalised name", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"Amount":1}`, 400, ledger.CodeInvalidRequest},
		{"unknown member", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1,"currency":"EUR"}`, 400, ledger.CodeInvalidRequest},
		{"stray closing brace", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1}}`, 400, ledger.CodeInvalidRequest},
		{"two objects", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1} {}`, 400, ledger.CodeInvalidRequest},
		{"not an object", "POST", "/v1/deposits", []string{"k"}, `[70,1]`, 400, ledger.CodeInvalidRequest},
		{"invalid UTF-8", "POST", "/v1/deposits", []string{"k"}, "{\"account_id\":70,\"amount\":1,\"\xff\":1}", 400, ledger.CodeInvalidRequest},
		{"string amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":"10"}`, 400, ledger.CodeInvalidAmount},
		{"Arabic-Indic digits amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":"١٢"}`, 400, ledger.CodeInvalidAmount},
		{"float amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1.5}`, 400, ledger.CodeInvalidAmount},
		{"null amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":null}`, 400, ledger.CodeInvalidAmount},
		{"object amount", "POST", "/v1/transfers", []string{"k"}, `{"from_account_id":70,"to_account_id":71,"amount":{"value":1}}`, 400, ledger.CodeInvalidAmount},
		{"huge amount", "POST", "/v1/deposits", []string{"k"}, `{"account_id":70,"amount":1` + strings.Repeat("0", 400) + `}`, 400, ledger.CodeInvalidAmount},
		{"string account", "POST", "/v1/deposits", []string{"k"}, `{"account_id":"70","amount":1}`, 400, ledger.CodeInvalidRequest},
		{"boolean account", "POST", "/v1/transfers", []string{"k"}, `{"from_account_id":70,"to_account_id":true,"amount":1}`, 400, ledger.CodeInvalidRequest},
		{"two Idempotency-Key headers", "POST", "/v1/deposits", []string{"a", "b"}, `{"account_id":70,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"two equal Idempotency-Key headers", "POST", "/v1/deposits", []string{"a", "a"}, `{"account_id":70,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"control byte in the key", "POST", "/v1/deposits", []string{"a\x01b"}, `{"account_id":70,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"tab in the key", "POST", "/v1/deposits", []string{"a\tb"}, `{"account_id":70,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"non-ASCII byte in the key", "POST", "/v1/transfers", []string{"a\xffb"}, `{"from_account_id":70,"to_account_id":71,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"empty key", "POST", "/v1/withdrawals", []string{""}, `{"account_id":70,"amount":1}`, 400, ledger.CodeIdempotencyKeyMissing},
		{"another user's account", "POST", "/v1/deposits", []string{"k"}, `{"account_id":71,"amount":1}`, 403, ledger.CodeForbidden},
		{"signup with a duplicate email", "POST", "/v1/users", nil, `{"email":"a@example.com","password":"long enough","email":"b@example.com"}`, 400, ledger.CodeInvalidRequest},
		{"signup with a capitalised name", "POST", "/v1/users", nil, `{"Email":"a@example.com","password":"long enough"}`, 400, ledger.CodeInvalidRequest},
		{"signup with a right-to-left invalid email", "POST", "/v1/users", nil, `{"email":"١٢ \u202e not an email","password":"long enough"}`, 400, ledger.CodeInvalidEmail},
		{"signup with a null password", "POST", "/v1/users", nil, `{"email":"a@example.com","password":null}`, 400, ledger.CodeInvalidRequest},
		{"signup with trailing data", "POST", "/v1/users", nil, `{"email":"a@example.com","password":"long enough"}x`, 400, ledger.CodeInvalidRequest},
		{"sign-in with a duplicate password", "POST", "/v1/sessions", nil, `{"email":"a@example.com","password":"x","password":"long enough"}`, 400, ledger.CodeInvalidRequest},
		{"sign-in with a numeric email", "POST", "/v1/sessions", nil, `{"email":1,"password":"long enough"}`, 400, ledger.CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			request := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			if c.method == http.MethodPost {
				request.Header.Set("Content-Type", "application/json")
			}
			if strings.HasPrefix(c.path, "/v1/accounts/") || c.keys != nil {
				request.Header.Set("Authorization", "Bearer "+standInToken)
			}
			for _, key := range c.keys {
				request.Header.Add(IdempotencyKeyHeader, key)
			}
			recorder := httptest.NewRecorder()
			handler.ServeHTTP(recorder, request)
			checkErrorAnswer(t, recorder, c.wantStatus, c.wantCode)
			_, pattern := routes.Handler(request)
			method, path, _ := strings.Cut(pattern, " ")
			if problem := undocumentedAnswer(document, method, path, c.wantStatus, string(c.wantCode)); problem != "" {
				t.Errorf("sut/openapi.yaml: %s", problem)
			}
		})
	}

	// Negative: an answer the document lacks is reported, whether the
	// status or only the code is missing.
	if undocumentedAnswer(document, "GET", "/v1/accounts/{id}", http.StatusForbidden, string(ledger.CodeForbidden)) == "" {
		t.Error("GET /v1/accounts/{id} 403 forbidden is reported as documented; the route never answers it")
	}
	if undocumentedAnswer(document, "POST", "/v1/users", http.StatusBadRequest, string(ledger.CodeInvalidAmount)) == "" {
		t.Error("POST /v1/users 400 invalid_amount is reported as documented")
	}
}

// checkErrorAnswer asserts an error answer: status, JSON content type, the
// headers every answer carries, a body of exactly {code, message,
// request_id} with the code wanted and the request id of the X-Request-Id
// header, and a message of printable ASCII (no client byte echoed raw).
func checkErrorAnswer(t *testing.T, recorder *httptest.ResponseRecorder, wantStatus int, wantCode ledger.Code) {
	t.Helper()
	body := recorder.Body.Bytes()
	if recorder.Code != wantStatus {
		t.Fatalf("status %d, want %d: %s", recorder.Code, wantStatus, body)
	}
	if contentType := recorder.Header().Get("Content-Type"); contentType != "application/json" {
		t.Errorf("Content-Type %q, want application/json", contentType)
	}
	for name, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := recorder.Header().Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	var answer struct {
		Code      jsonString `json:"code"`
		Message   jsonString `json:"message"`
		RequestID jsonString `json:"request_id"`
	}
	if err := decodeStrict(body, &answer); err != nil {
		t.Fatalf("the body %q is not our error body: %v", body, err)
	}
	if id := recorder.Header().Get("X-Request-Id"); answer.RequestID == "" || string(answer.RequestID) != id {
		t.Errorf("request_id %q, X-Request-Id %q: want the same, not empty", answer.RequestID, id)
	}
	if ledger.Code(answer.Code) != wantCode {
		t.Errorf("code %q, want %q: %s", answer.Code, wantCode, body)
	}
	if problem := messageProblem(string(answer.Message)); problem != "" {
		t.Errorf("message %q: %s", answer.Message, problem)
	}
}

// messageProblem says what is wrong with an error message, or "": it must
// be non-empty printable ASCII, so a client's control, invisible or
// right-to-left characters never reach it unescaped.
func messageProblem(message string) string {
	if message == "" {
		return "empty"
	}
	for i := 0; i < len(message); i++ {
		if message[i] < 0x20 || message[i] > 0x7e {
			return fmt.Sprintf("byte %d is 0x%02x, not printable ASCII", i, message[i])
		}
	}
	return ""
}
