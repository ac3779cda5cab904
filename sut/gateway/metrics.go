package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The stages of ledger_gateway_stage_seconds.
const (
	stageClaim    = "claim"
	stageRemember = "remember"
)

type metrics struct {
	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	produceSeconds prometheus.Histogram
	stageSeconds   *prometheus.HistogramVec
	// claimSeconds and rememberSeconds are stageSeconds's two series,
	// resolved once rather than looked up by label at every request.
	claimSeconds, rememberSeconds prometheus.Observer
	replays                       prometheus.Counter
	keyReused                     prometheus.Counter
	waitTimeouts                  prometheus.Counter
	cacheErrors                   prometheus.Counter
	localSessions                 prometheus.Counter
	ledgerSessions                prometheus.Counter
	ledgerChecks                  *prometheus.CounterVec
	refusals                      *prometheus.CounterVec
	signinFailures                prometheus.Counter
	keysComplete                  *prometheus.CounterVec
}

func newMetrics(registerer prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_gateway_requests_total",
			Help: "HTTP requests by route and status."}, []string{"route", "status"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_gateway_request_seconds",
			Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"}),
		produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_gateway_produce_seconds",
			Help: "Time until the broker acknowledged a command.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		stageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_gateway_stage_seconds",
			Help:    "Time a money request spent in a step of its path, by stage: claim (the idempotency key's reservation in Redis, or the ledger's answer for it; a replay answered from the ledger includes storing that answer), remember (storing a response for replays).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"stage"}),
		replays:      prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_idempotent_replays_total", Help: "Responses replayed for a reused key."}),
		keyReused:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_idempotency_key_reused_total", Help: "Requests rejected: key reused with another body."}),
		waitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_wait_timeouts_total", Help: "Bounded waits that ended before the outcome."}),
		cacheErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_cache_errors_total", Help: "Failed Redis calls (the ledger answered instead)."}),
		localSessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_local_sessions_total",
			Help: "Requests authenticated from the gateway's own memory of sessions, without asking Redis (which may be down or have lost them)."}),
		ledgerSessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_ledger_sessions_total",
			Help: "Sessions found in the ledger database because neither this gateway's memory nor Redis had them."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_gateway_refusals_total",
			Help: "Requests and connections refused by a limit on clients, by reason (docs/security.md)."}, []string{"reason"}),
		signinFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_gateway_signin_failures_total",
			Help: "Sign-ins refused for a wrong password or an unknown email."}),
		ledgerChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_gateway_ledger_key_checks_total",
			Help: "Money requests by whether the ledger was asked about their key: checked, or skipped (Redis reserved a new key in a dataset whose keys are complete)."}, []string{"result"}),
		keysComplete: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_gateway_keys_complete_checks_total",
			Help: "Looks at whether Redis's idempotency keys are complete (--keys-complete-interval), by result: complete, marked (the ledger was empty), ledger-not-empty, error."}, []string{"result"}),
	}
	m.claimSeconds, m.rememberSeconds = m.stageSeconds.WithLabelValues(stageClaim), m.stageSeconds.WithLabelValues(stageRemember)
	registerer.MustRegister(m.requests, m.requestSeconds, m.produceSeconds, m.stageSeconds, m.replays, m.keyReused, m.waitTimeouts, m.cacheErrors, m.localSessions, m.ledgerSessions, m.ledgerChecks, m.refusals, m.signinFailures, m.keysComplete)
	return m
}

func (m *metrics) observe(route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.requestSeconds.WithLabelValues(route).Observe(elapsed.Seconds())
}
