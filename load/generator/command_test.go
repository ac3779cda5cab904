package generator

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadRefusesBadInput: each mistake is refused before any load starts (nothing listens at the base URL,
// so a load that started would fail differently), exit 2, with the file and line or the flag that is wrong.
func TestLoadRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", "name: good\nschedule:\n  rate: 10\n  duration: 1s\n")
	cases := []struct {
		name    string
		options CommandOptions
		want    []string
	}{
		{"unknown scenario field", CommandOptions{Scenario: write("unknown.yaml", "name: x\nschedule:\n  rate: 10\n  colour: blue\n")},
			[]string{"unknown.yaml:4", "colour"}},
		{"negative rate", CommandOptions{Scenario: write("negative.yaml", "name: x\nschedule:\n  rate: -5\n")},
			[]string{"negative.yaml:3", "rate"}},
		{"threshold on an unknown metric", CommandOptions{Scenario: write("metric.yaml", "name: x\nthresholds:\n  no_such_metric: [\"count==0\"]\n")},
			[]string{"metric.yaml:3", "no_such_metric"}},
		{"segment 3/2", CommandOptions{Scenario: good, Segment: "3/2"}, []string{"--segment", "3/2"}},
		{"segment without N", CommandOptions{Scenario: good, Segment: "1"}, []string{"--segment", "i/N"}},
		{"bad override", CommandOptions{Scenario: good, Sets: []string{"schedule.rat=5"}}, []string{"schedule.rat", "rat"}},
		{"missing scenario", CommandOptions{Scenario: filepath.Join(dir, "none.yaml")}, []string{"none.yaml"}},
		{"two ways to start", CommandOptions{Scenario: good, StartAt: "1", ReadyFile: "r", StartFile: "s"}, []string{"--start-at"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.options
			o.BaseURLs = []string{"http://127.0.0.1:1"}
			o.Out = filepath.Join(t.TempDir(), "run")
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := RunCommand(ctx, o, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			for _, want := range c.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
			if !strings.Contains(stderr.String(), "no load was started") {
				t.Errorf("stderr does not say no load was started:\n%s", stderr.String())
			}
			if _, err := os.Stat(o.Out); !os.IsNotExist(err) {
				t.Errorf("the run directory exists after a refused load: %v", err)
			}
		})
	}
}

// TestCommandOptionsValidate: the load command's settings that contradict
// each other or cannot be read are refused, naming the flag; good ones pass.
func TestCommandOptionsValidate(t *testing.T) {
	good := CommandOptions{Scenario: "s.yaml", BaseURLs: []string{"http://127.0.0.1:1"}, StartTimeout: time.Minute}
	refused := []struct {
		name   string
		change func(o *CommandOptions)
		want   string
	}{
		{"no base URL", func(o *CommandOptions) { o.BaseURLs = nil }, "--base-url: none given"},
		{"segment not i/N", func(o *CommandOptions) { o.Segment = "1" }, "want i/N"},
		{"segment beyond N", func(o *CommandOptions) { o.Segment = "3/2" }, "i must be 0 to 1"},
		{"no segments", func(o *CommandOptions) { o.Segment = "0/0" }, "N must be 1 to 1000"},
		{"start at with a ready file", func(o *CommandOptions) { o.StartAt, o.ReadyFile, o.StartFile = "1", "r", "s" }, "two ways to share a start"},
		{"start at unreadable", func(o *CommandOptions) { o.StartAt = "tomorrow" }, `--start-at "tomorrow"`},
		{"ready file alone", func(o *CommandOptions) { o.ReadyFile = "r" }, "--ready-file and --start-file go together"},
		{"start file alone", func(o *CommandOptions) { o.StartFile = "s" }, "--ready-file and --start-file go together"},
	}
	for _, c := range refused {
		o := good
		c.change(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	for _, change := range []func(o *CommandOptions){
		func(o *CommandOptions) {},
		func(o *CommandOptions) { o.Segment, o.StartAt = "1/2", "2026-01-02T03:04:05Z" },
		func(o *CommandOptions) {
			o.BaseURLs, o.ReadyFile, o.StartFile = []string{"http://a:1", "http://b:1"}, "r", "s"
		},
	} {
		o := good
		change(&o)
		if err := o.validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
