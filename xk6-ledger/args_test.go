package ledger

import (
	"fmt"
	"strings"
	"testing"
)

func TestArgumentErrors(t *testing.T) {
	tests := []struct {
		name string
		code string
		want string // a part of the error message
	}{
		{"amount with a fraction", `client.deposit(session, 11, 1.5)`, "amount must be an integer, got 1.5"},
		{"negative amount", `client.deposit(session, 11, -1)`, "amount must be an integer from 1 to 100000000000, got -1"},
		{"zero amount", `client.withdraw(session, 11, 0)`, "amount must be an integer from 1 to 100000000000"},
		{"amount above the maximum", `client.deposit(session, 11, 100000000001)`, "amount must be an integer from 1"},
		{"amount as a string", `client.deposit(session, 11, "10")`, `amount must be an integer number, got the string "10"`},
		{"missing amount", `client.deposit(session, 11)`, "amount is required"},
		{"NaN amount", `client.deposit(session, 11, NaN)`, "amount must be an integer"},
		{"fractional account", `client.transfer(session, 11, 12.5, 3)`, "toAccountId must be an integer"},
		{"missing session", `client.deposit(undefined, 11, 1)`, "session is required"},
		{"session without token", `client.deposit({userId: 1, accountId: 2}, 11, 1)`, "session.token must be a non-empty string"},
		{"unknown operation option", `client.deposit(session, 11, 1, {wiat: "1s"})`, `unknown option "wiat"`},
		{"bad key", `client.deposit(session, 11, 1, {key: "has space"})`, "options.key must be an idempotency key"},
		{"wait not below timeout", `client.deposit(session, 11, 1, {wait: "20s"})`, "must be shorter than the client's timeout"},
		{"bad transaction id", `client.transaction(session, 5)`, "transactionId must be a non-empty string"},
		{"prepare without count", `client.prepareAccounts({})`, "options.count (the number of users) is required"},
		{"prepare with fractional funding", `client.prepareAccounts({count: 2, funding: 0.5})`, "options.funding must be an integer"},
		{"signup with a number", `client.signup(5, "password1")`, "email must be a string"},
	}
	_, server := newFakeGateway(t)
	m := newModuleTest(t)
	m.newClient(fmt.Sprintf(`{baseURL: %q}`, server.URL))
	m.enterVU(1)
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := m.run(test.code)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("%s: error %v, want it to contain %q", test.code, err, test.want)
			}
		})
	}
}

func TestClientOptionErrors(t *testing.T) {
	tests := []struct {
		name    string
		options string
		want    string
	}{
		{"no options", ``, "options are required"},
		{"missing baseURL", `{timeout: "1s"}`, "options.baseURL or options.baseURLs is required"},
		{"baseURL not a URL", `{baseURL: "localhost:8080"}`, "options.baseURL must be an http(s) URL"},
		{"baseURLs not an array", `{baseURLs: "http://a"}`, "options.baseURLs must be an array"},
		{"misspelt option", `{baseURL: "http://a", duplicaterate: 0.1}`, `unknown option "duplicaterate"`},
		{"rate above 1", `{baseURL: "http://a", duplicateRate: 1.5}`, "options.duplicateRate must be a number from 0 to 1"},
		{"bad mode", `{baseURL: "http://a", duplicateMode: "twice"}`, `options.duplicateMode must be "concurrent" or "delayed"`},
		{"bad duration", `{baseURL: "http://a", timeout: "soon"}`, "options.timeout must be a duration"},
		{"negative duration", `{baseURL: "http://a", duplicateDelay: -5}`, "options.duplicateDelay must be a positive duration"},
		{"wait not below timeout", `{baseURL: "http://a", timeout: "1s", wait: 1000}`, "options.wait (1s) must be shorter than options.timeout (1s)"},
		{"attempts zero", `{baseURL: "http://a", retry: {maxAttempts: 0}}`, "options.retry.maxAttempts must be an integer from 1 to 100"},
		{"jitter above 1", `{baseURL: "http://a", retry: {jitter: 2}}`, "options.retry.jitter must be a number from 0 to 1"},
		{"journal without run directory", `{baseURL: "http://a", journal: true}`, "options.journal is true but there is no run directory"},
		{"seed with a fraction", `{baseURL: "http://a", seed: 0.5}`, "options.seed must be an integer"},
	}
	t.Setenv("LEDGER_RUN_DIR", "")
	m := newModuleTest(t)
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := m.run(`new ledger.Client(` + test.options + `)`)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("new Client(%s): error %v, want it to contain %q", test.options, err, test.want)
			}
		})
	}
}

func TestClientOptionDefaults(t *testing.T) {
	m := newModuleTest(t)
	options, err := parseClientOptions(m.runtime.VU.Runtime(), m.runtime.VU.Runtime().ToValue(map[string]any{
		"baseURLs": []any{"http://a:1/", "https://b"}, "wait": 0, "retry": map[string]any{"backoff": "10ms"},
	}), "/tmp/run")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(options.baseURLs) != "[http://a:1 https://b]" || options.timeout.String() != "10s" || options.wait != 0 ||
		options.retry.maxAttempts != 3 || options.retry.backoff.String() != "10ms" || options.retry.maxBackoff.String() != "1s" ||
		options.retry.jitter != 0.5 || options.duplicateMode != "concurrent" || options.duplicateDelay.String() != "100ms" ||
		options.runDir != "/tmp/run" {
		t.Errorf("options %+v", options)
	}
}
