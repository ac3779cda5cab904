package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestDrillOptionsValidate: the chaos command refuses settings it cannot
// use before it reads the plan, naming the flag; good settings pass.
func TestDrillOptionsValidate(t *testing.T) {
	good := DrillOptions{Plan: "plan.yaml", StackDir: ".ledgerproof/stack", StepTimeout: 2 * time.Minute}
	refused := []struct {
		name   string
		change func(o *DrillOptions)
		want   string
	}{
		{"no plan", func(o *DrillOptions) { o.Plan = "" }, "--plan FILE is required"},
		{"step timeout zero", func(o *DrillOptions) { o.StepTimeout = 0 }, "--step-timeout must be positive"},
		{"negative seed", func(o *DrillOptions) { o.Seed = "-1" }, `--seed "-1": want a non-negative integer`},
		{"seed not a number", func(o *DrillOptions) { o.Seed = "x" }, `--seed "x": want a non-negative integer`},
		{"services without compose", func(o *DrillOptions) { o.Services = "broker=kafka-1" }, "--service maps targets to compose services: it needs --compose"},
		{"service without its name", func(o *DrillOptions) { o.ComposeFile, o.Services = "c.yml", "broker=" }, `--service "broker=": want TARGET=SERVICE`},
		{"service without a target", func(o *DrillOptions) { o.ComposeFile, o.Services = "c.yml", "broker=kafka-1,kafka-2" }, "want TARGET=SERVICE"},
		{"supervise with compose", func(o *DrillOptions) { o.ComposeFile, o.Supervise = "c.yml", true }, "--supervise restarts the local stack's processes"},
	}
	for _, c := range refused {
		o := good
		c.change(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	supervised := good
	supervised.Supervise = true
	compose := good
	compose.ComposeFile, compose.Services, compose.Seed = "c.yml", "broker=kafka-1, worker-1=worker", "0"
	for _, o := range []DrillOptions{good, supervised, compose} {
		if err := o.validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if services, err := compose.services(); err != nil || services["broker"] != "kafka-1" || services["worker-1"] != "worker" {
		t.Errorf("services %v, %v", services, err)
	}
}
