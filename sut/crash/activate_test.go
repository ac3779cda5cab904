package crash

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestActivateRefusesBadSettings(t *testing.T) {
	cases := []struct {
		name     string
		settings Settings
		process  ledger.Process
		want     string
	}{
		{"armed without the switch", Settings{Armings: []string{"worker.mid-batch"}}, ledger.ProcessWorker, errNotEnabled.Error()},
		{"unknown point", Settings{Enabled: true, Armings: []string{"worker.everywhere"}}, ledger.ProcessWorker, `unknown crash point "worker.everywhere"`},
		{"point of the other process", Settings{Enabled: true, Armings: []string{"worker.mid-batch"}}, ledger.ProcessGateway, "lives in the worker, and this process is a gateway"},
		{"bad count", Settings{Enabled: true, Armings: []string{"mid-batch:0"}}, ledger.ProcessWorker, "not a positive integer"},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() { Install(nil) })
			registry, err := Activate(c.settings, c.process, logger)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if registry != nil || Installed() != nil {
				t.Fatal("a refused activation installed a registry")
			}
		})
	}
	registry, err := Activate(Settings{}, ledger.ProcessGateway, logger)
	if registry != nil || err != nil {
		t.Fatalf("disabled: registry %v, error %v; want neither", registry, err)
	}
}

func TestActivateArmsAtStart(t *testing.T) {
	t.Cleanup(func() { Install(nil) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	registry, err := Activate(Settings{Enabled: true, Armings: []string{"mid-batch:3", "worker.after-commit-before-cache@0.5"}, Seed: 11},
		ledger.ProcessWorker, logger)
	if err != nil {
		t.Fatal(err)
	}
	if Installed() != registry || registry.Seed() != 11 {
		t.Fatal("the registry was not installed with the seed given")
	}
	armed := registry.Armed()
	if len(armed) != 2 || armed[0].Point != AfterCommitBeforeCache || armed[0].Probability != 0.5 ||
		armed[1].Point != MidBatch || armed[1].After != 3 {
		t.Fatalf("armed %+v", armed)
	}

	// The endpoint exists only with a registry; without one the process's
	// own handler answers, here with 404 as the gateway and the worker do.
	local := func(handler http.Handler, method string) int {
		request := httptest.NewRequest(method, AdminPath, nil)
		request.RemoteAddr = "127.0.0.1:1234"
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, request)
		return recorder.Code
	}
	if status := local(WithAdmin(http.NotFoundHandler(), nil), "GET"); status != http.StatusNotFound {
		t.Errorf("disabled: GET %s answered %d, want 404", AdminPath, status)
	}
	if status := local(WithAdmin(http.NotFoundHandler(), registry), "GET"); status != http.StatusOK {
		t.Errorf("enabled: GET %s answered %d, want 200", AdminPath, status)
	}
}
