package worker

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func TestDedupeConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		config DedupeConfig
		error  string // "" accepted
	}{
		{"defaults", DedupeConfig{}, ""},
		{"enabled", DedupeConfig{Enabled: true, Filter: dedupe.Config{Capacity: 10, FalsePositiveRate: 0.01}, WarmTimeout: time.Second}, ""},
		{"negative warm timeout", DedupeConfig{WarmTimeout: -time.Second}, "bloom warm timeout -1s must be positive"},
		{"bad capacity, even when off", DedupeConfig{Filter: dedupe.Config{Capacity: -5}}, "capacity -5"},
		{"bad rate", DedupeConfig{Enabled: true, Filter: dedupe.Config{FalsePositiveRate: 0.9}}, "false-positive rate 0.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := c.config
			err := config.validate()
			if c.error == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if config.WarmTimeout <= 0 {
					t.Errorf("warm timeout %s after defaults", config.WarmTimeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Errorf("error %v, want one containing %q", err, c.error)
			}
		})
	}
}

func TestNewDedupeFilter(t *testing.T) {
	cases := []struct {
		name    string
		enabled bool
		bugs    ledger.Bugs
		want    bool
	}{
		{"off by default", false, nil, false},
		{"on", true, nil, true},
		{"the seeded bug needs it", false, ledger.Bugs{ledger.BugBloomOnlyDedupe}, true},
		{"another bug does not", false, ledger.Bugs{ledger.BugSkipDedupe}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			filter, err := newDedupeFilter(DedupeConfig{Enabled: c.enabled}, c.bugs)
			if err != nil {
				t.Fatal(err)
			}
			if (filter != nil) != c.want {
				t.Errorf("filter %v, want one: %v", filter, c.want)
			}
		})
	}
}

// TestDedupeMetrics: the filter's counters on /metrics, only when there is
// a filter.
func TestDedupeMetrics(t *testing.T) {
	scrape := func(filter *dedupe.Filter) string {
		registry := prometheus.NewRegistry()
		registerDedupeMetrics(registry, filter)
		recorder := httptest.NewRecorder()
		promhttp.HandlerFor(registry, promhttp.HandlerOpts{}).ServeHTTP(recorder, httptest.NewRequest("GET", "/metrics", nil))
		return recorder.Body.String()
	}
	if body := scrape(nil); strings.Contains(body, "ledger_worker_dedupe") {
		t.Errorf("metrics without a filter:\n%s", body)
	}
	filter, err := dedupe.New(dedupe.Config{})
	if err != nil {
		t.Fatal(err)
	}
	filter.Add("a", "b")
	filter.CountLookups(3, 2, 1)
	filter.CountBackstopConflict()
	body := scrape(filter)
	for _, line := range []string{
		"ledger_worker_dedupe_lookups_saved_total 3",
		"ledger_worker_dedupe_filter_positives_total 2",
		"ledger_worker_dedupe_false_positives_total 1",
		"ledger_worker_dedupe_false_positive_ratio 0.25",
		"ledger_worker_dedupe_backstop_conflicts_total 1",
		"ledger_worker_dedupe_filter_ids 2",
		"ledger_worker_dedupe_filter_rotations_total 0",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("no %q in:\n%s", line, body)
		}
	}
}
