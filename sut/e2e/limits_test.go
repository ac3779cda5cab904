package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRateLimitAndMetrics: a user over the per-user rate gets 429 with
// Retry-After while another user is unaffected, and both gateway and worker
// expose their Prometheus metrics.
func TestRateLimitAndMetrics(t *testing.T) {
	s := startStackWith(t, 1, 1, []string{"--rate-limit=2", "--rate-burst=3"}, nil)
	ctx := context.Background()
	greedy, calm := s.newUser(0), s.newUser(0)
	limited := 0
	for range 20 {
		response, err := greedy.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", greedy.accountID), nil, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if response.Status == http.StatusTooManyRequests {
			if response.ErrorCode() != "rate_limited" {
				t.Fatalf("429 with code %q", response.ErrorCode())
			}
			limited++
		}
	}
	if limited < 10 {
		t.Fatalf("only %d of 20 rapid requests were limited at 2/s with a burst of 3", limited)
	}
	if _, err := calm.Balance(ctx, calm.accountID); err != nil {
		t.Fatalf("another user was limited too: %v", err)
	}

	gatewayMetrics := scrape(t, s.file.Endpoints.GatewayInternal[0]+"/metrics")
	for _, want := range []string{`ledger_gateway_requests_total{route="account",status="429"}`, "ledger_gateway_request_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(gatewayMetrics, want) {
			t.Errorf("gateway metrics lack %s", want)
		}
	}
	s.fund(calm, 5)
	workerMetrics := scrape(t, s.file.Endpoints.WorkerMetrics[0])
	for _, want := range []string{`ledger_worker_commands_total{result="settled"}`, "ledger_worker_batches_total", "ledger_worker_consumer_lag_records"} {
		if !strings.Contains(workerMetrics, want) {
			t.Errorf("worker metrics lack %s", want)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	response, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil || response.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, response.StatusCode, err)
	}
	return string(body)
}
