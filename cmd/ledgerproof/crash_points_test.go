package main

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

func TestCrashPointFlagsArmAtStart(t *testing.T) {
	t.Cleanup(func() { crash.Install(nil) })
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	var c crashPointFlags
	c.register(flags, ledger.ProcessWorker)
	if err := flags.Parse([]string{"--enable-crash-points", "--crash-point", "mid-batch:3,worker.after-commit-before-cache@0.5", "--crash-point-seed", "11"}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	registry, err := c.activate(ledger.ProcessWorker, logger)
	if err != nil {
		t.Fatal(err)
	}
	if crash.Installed() != registry || registry.Seed() != 11 {
		t.Fatal("the registry was not installed with the seed given")
	}
	armed := registry.Armed()
	if len(armed) != 2 || armed[0].Point != crash.AfterCommitBeforeCache || armed[0].Probability != 0.5 ||
		armed[1].Point != crash.MidBatch || armed[1].After != 3 {
		t.Fatalf("armed %+v", armed)
	}

	// The endpoint exists only with a registry; without one the process's
	// own handler answers, here with 404 as the gateway and the worker do.
	local := func(handler http.Handler, method string) int {
		request := httptest.NewRequest(method, crash.AdminPath, nil)
		request.RemoteAddr = "127.0.0.1:1234"
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, request)
		return recorder.Code
	}
	if status := local(withCrashPoints(http.NotFoundHandler(), nil), "GET"); status != http.StatusNotFound {
		t.Errorf("disabled: GET %s answered %d, want 404", crash.AdminPath, status)
	}
	if status := local(withCrashPoints(http.NotFoundHandler(), registry), "GET"); status != http.StatusOK {
		t.Errorf("enabled: GET %s answered %d, want 200", crash.AdminPath, status)
	}
}
