package gateway

import (
	"context"
	"errors"
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
// (*Gateway).Handler(), without the catch-all "/". The test also derives the
// patterns from gateway.go's source and asks the mux itself, so this table
// cannot silently drift from the code.
var documentedGatewayRoutes = []string{
	"POST /v1/users",
	"POST /v1/sessions",
	"POST /v1/deposits",
	"POST /v1/withdrawals",
	"POST /v1/transfers",
	"GET /v1/transactions/{id}",
	"GET /v1/accounts/{id}",
	"GET /healthz",
	"GET /readyz",
	"GET /metrics",
}

// Stand-ins for Store, Cache and Queue. They do nothing useful: these tests
// check routing and documentation only, never behaviour, so no real Postgres,
// Redis or broker is needed. Behaviour is tested against real services
// elsewhere (sut/e2e).
type routingStore struct{}

var errStandIn = errors.New("stand-in: not implemented")

func (routingStore) CreateUser(context.Context, string, string) (ledger.User, error) {
	return ledger.User{}, errStandIn
}
func (routingStore) UserByEmail(context.Context, string) (ledger.User, error) {
	return ledger.User{}, ledger.Errorf(ledger.CodeNotFound, "stand-in")
}
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
func (routingCache) Reserve(context.Context, int64, string, redis.IdempotencyRecord, redis.PendingTransaction, time.Duration) (redis.Reservation, error) {
	return redis.Reservation{}, errStandIn
}
func (routingCache) MarkKeysComplete(context.Context, string) (bool, error) { return false, errStandIn }
func (routingCache) UnmarkKeysComplete(context.Context, string) error       { return errStandIn }
func (routingCache) KeysComplete(context.Context) (bool, error)             { return false, errStandIn }
func (routingCache) StoreResponse(context.Context, int64, string, redis.IdempotencyRecord, time.Duration) error {
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

func loadOpenAPI(t *testing.T) (openAPIDocument, []byte) {
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

// specRoutes lists the documented operations as Go mux patterns
// ("METHOD /path/{param}"); OpenAPI path templates and Go 1.22 patterns share
// the {name} syntax.
func specRoutes(document openAPIDocument) []string {
	var routes []string
	for path, item := range document.Paths {
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
// mux.HandleFunc in (*Gateway).Handler from gateway.go's source: the routes as
// the code registers them, found without changing the code. The catch-all
// "/" is left out.
func registeredPatterns(t *testing.T) []string {
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
		if !ok || function.Name.Name != "Handler" || function.Recv == nil {
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
		t.Fatal("gateway.go: no Handler method found")
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

func newRoutingGateway(t *testing.T) *http.ServeMux {
	t.Helper()
	g, err := New(Config{}, Dependencies{Store: routingStore{}, Cache: routingCache{}, Queue: routingQueue{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux, ok := g.Handler().(*http.ServeMux)
	if !ok {
		t.Fatalf("Handler() is a %T, not an *http.ServeMux; adapt this test", g.Handler())
	}
	return mux
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

	mux := newRoutingGateway(t)
	// Every route, documented or registered, must be served by exactly its
	// own pattern and must not reach the catch-all.
	for _, route := range append(slices.Clone(documented), table...) {
		method, path, _ := strings.Cut(route, " ")
		request := httptest.NewRequest(method, samplePath(path), nil)
		if _, pattern := mux.Handler(request); pattern != route {
			t.Errorf("%s %s is served by pattern %q, want %q", method, request.URL.Path, pattern, route)
		}
		recorder := httptest.NewRecorder()
		mux.ServeHTTP(recorder, request)
		body, _ := io.ReadAll(recorder.Body)
		if strings.Contains(string(body), "no route for") {
			t.Errorf("%s %s reached the catch-all: %d %s", method, request.URL.Path, recorder.Code, body)
		}
	}

	// The catch-all itself answers what the document says: 404 not_found,
	// also for a documented path with another method.
	for _, request := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/v1/unknown", nil),
		httptest.NewRequest(http.MethodDelete, "/v1/users", nil),
	} {
		recorder := httptest.NewRecorder()
		mux.ServeHTTP(recorder, request)
		body := recorder.Body.String()
		if recorder.Code != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) || !strings.Contains(body, "no route for") {
			t.Errorf("%s %s: %d %s, want the catch-all 404", request.Method, request.URL.Path, recorder.Code, body)
		}
	}
}

// TestOpenAPIRouteComparisonNegative makes sure the comparison is not
// vacuous: a copy of the spec missing one route must be reported.
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
