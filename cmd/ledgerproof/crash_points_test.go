package main

import (
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestCrashPointsAreRefusedWithoutTheSwitch(t *testing.T) {
	cases := []struct {
		name    string
		command string
		args    []string
		env     map[string]string
		want    []string
	}{
		{"gateway flag", "gateway", []string{"--crash-point", "gateway.after-ack-before-response"}, nil,
			[]string{"--crash-point gateway.after-ack-before-response is refused without --enable-crash-points", "LEDGERPROOF_ENABLE_CRASH_POINTS=true"}},
		{"worker flag", "worker", []string{"--crash-point", "worker.mid-batch:3", "--crash-point", "after-commit-before-cache"}, nil,
			[]string{"refused without --enable-crash-points", "worker.mid-batch:3"}},
		{"worker environment", "worker", nil, map[string]string{"LEDGERPROOF_CRASH_POINT": "worker.mid-batch"},
			[]string{"refused without --enable-crash-points"}},
		{"unknown point", "worker", []string{"--enable-crash-points", "--crash-point", "worker.everywhere"}, nil,
			[]string{`unknown crash point "worker.everywhere"`, "worker.mid-batch"}},
		{"point of the other process", "gateway", []string{"--enable-crash-points", "--crash-point", "worker.mid-batch"}, nil,
			[]string{"lives in the worker, and this process is a gateway"}},
		{"bad count", "worker", []string{"--enable-crash-points", "--crash-point", "mid-batch:0"}, nil,
			[]string{"not a positive integer"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() { crash.Install(nil) })
			for name, value := range c.env {
				t.Setenv(name, value)
			}
			err := startError(t, c.command, c.args...)
			if err == nil {
				t.Fatal("started")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestCrashPointFlagsSettings(t *testing.T) {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	var c crashPointFlags
	c.register(flags, ledger.ProcessWorker)
	if err := flags.Parse([]string{"--enable-crash-points", "--crash-point", "mid-batch:3,worker.after-commit-before-cache@0.5", "--crash-point-seed", "11"}); err != nil {
		t.Fatal(err)
	}
	settings, err := c.settings()
	if err != nil {
		t.Fatal(err)
	}
	want := crash.Settings{Enabled: true, Armings: []string{"mid-batch:3", "worker.after-commit-before-cache@0.5"}, Seed: 11}
	if !reflect.DeepEqual(settings, want) {
		t.Fatalf("settings %+v, want %+v", settings, want)
	}
}
