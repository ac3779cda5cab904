package stack

import (
	"strings"
	"testing"
	"time"
)

func TestControlOptionsValidate(t *testing.T) {
	cases := []struct {
		name    string
		options ControlOptions
		want    string
	}{
		{"show", ControlOptions{Dir: "d"}, ""},
		{"show as JSON", ControlOptions{Dir: "d", JSON: true}, ""},
		{"component without action", ControlOptions{Component: "broker"}, "--component needs --action"},
		{"failover", ControlOptions{Action: "failover", ReadyTimeout: time.Second}, ""},
		{"failover with a component", ControlOptions{Action: "failover", Component: "postgres"}, "--action failover takes no --component"},
		{"action without component", ControlOptions{Action: "kill"}, "--action kill needs --component"},
		{"action", ControlOptions{Action: "restart", Component: "worker-0"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, c.options.validate(), c.want)
		})
	}
}

func TestLinkOptionsValidate(t *testing.T) {
	cases := []struct {
		name    string
		options LinkOptions
		want    string
	}{
		{"list", LinkOptions{Dir: "d"}, ""},
		{"heal without link", LinkOptions{Heal: true}, "--heal and --fault need --link"},
		{"fault without link", LinkOptions{Fault: LinkFault{Kind: "cut"}}, "--heal and --fault need --link"},
		{"heal and fault", LinkOptions{Link: "worker->postgres", Heal: true, Fault: LinkFault{Kind: "cut"}}, "give either --heal or --fault"},
		{"heal", LinkOptions{Link: "worker->postgres", Heal: true}, ""},
		{"fault", LinkOptions{Link: "gateway->redis", Fault: LinkFault{Kind: "latency", Latency: time.Second}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, c.options.validate(), c.want)
		})
	}
}

// checkError fails unless err is nil when want is empty, or says want.
func checkError(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("error %q, want none", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not say %q", err, want)
	}
}
