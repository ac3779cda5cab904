package bench

import (
	"strings"
	"testing"
)

// TestCommandOptionsValidate: contradictory modes and a port out of range are refused; the benchmark's own
// settings, and each process it starts, pass.
func TestCommandOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		o    CommandOptions
		want string
	}{
		{"the benchmark", CommandOptions{Config: DefaultConfig()}, ""},
		{"the benchmark on a port", CommandOptions{Config: DefaultConfig(), Port: 23999}, ""},
		{"the endpoint", CommandOptions{Config: DefaultConfig(), Serve: "127.0.0.1:23999"}, ""},
		{"the bare client", CommandOptions{Config: DefaultConfig(), Bare: true, Target: "http://127.0.0.1:23999"}, ""},
		{"both modes", CommandOptions{Serve: "127.0.0.1:23999", Bare: true, Target: "http://127.0.0.1:23999"}, "--serve and --bare are two modes"},
		{"bare without a target", CommandOptions{Bare: true}, "--bare needs --target"},
		{"a target without bare", CommandOptions{Target: "http://127.0.0.1:23999"}, "--target is the bare client's"},
		{"negative port", CommandOptions{Port: -1}, "--port -1"},
		{"port past the last", CommandOptions{Port: 70000}, "--port 70000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}
