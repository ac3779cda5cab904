// Package threshold is the pass/fail criteria of a load run, in k6's syntax: a metric (optionally narrowed by
// tags, `accept_duration{kind:transfer}`) and expressions on one of its aggregates (`p(95)<250`, `rate<0.01`,
// `count==0`). The metrics package evaluates them; the scenario package parses them from scenario files.
package threshold

// Metric names the load engine records (docs/scenarios.md, "Metrics"). A threshold on any other name is refused
// before the load starts.
const (
	// Operations counts money operations (tags kind, outcome). Aggregates: count, rate (per second).
	Operations = "operations"
	// Errors is, per money operation, 1 when it ended info, or fail for a reason other than insufficient_funds or
	// daily_limit_exceeded (tag kind). Aggregates: rate (fraction), count (errors), total.
	Errors = "errors"
	// UnknownOutcomes is, per money operation, 1 when it ended info (tag kind). Aggregates: rate, count.
	UnknownOutcomes = "unknown_outcomes"
	// AcceptDuration is invoke to the system's acceptance (first 200/202), in milliseconds (tag kind); an
	// operation never accepted counts its whole time. Aggregates: avg, min, med, max, p(N), count.
	AcceptDuration = "accept_duration"
	// SettleDuration is invoke to a final outcome (ok or fail), in milliseconds (tag kind).
	SettleDuration = "settle_duration"
	// HTTPRequests counts HTTP requests (tags status, route). Aggregates: count, rate.
	HTTPRequests = "http_reqs"
	// HTTPRequestDuration is one HTTP exchange, in milliseconds (tag route).
	HTTPRequestDuration = "http_req_duration"
	// HTTPRequestFailed is, per HTTP request, 1 when it got no answer or a status outside 200-399 that the
	// client did not expect (409 for a duplicate, 422 for misuse). Aggregates: rate, count.
	HTTPRequestFailed = "http_req_failed"
	// Iterations counts iterations the generator started. Aggregates: count, rate.
	Iterations = "iterations"
	// DroppedIterations counts iterations the schedule called for that could not start (max_in_flight
	// reached). Aggregates: count, rate.
	DroppedIterations = "dropped_iterations"
	// Retries counts HTTP attempts beyond the first (tag kind).
	Retries = "retries"
	// DuplicatesSent and MisuseSent count the injected duplicates and key misuse (tag kind).
	DuplicatesSent = "duplicates_sent"
	MisuseSent     = "misuse_sent"
	// Checks is, per check of the smoke walk, 1 when it held. Aggregates: rate, count.
	Checks = "checks"
)

// Known lists every metric a threshold may name, with the tags it can be narrowed by.
var Known = map[string][]string{
	Operations:          {"kind", "outcome", "step"},
	Errors:              {"kind", "step"},
	UnknownOutcomes:     {"kind", "step"},
	AcceptDuration:      {"kind", "step"},
	SettleDuration:      {"kind", "step"},
	HTTPRequests:        {"status", "route"},
	HTTPRequestDuration: {"route"},
	HTTPRequestFailed:   {"route"},
	Iterations:          {"step"},
	DroppedIterations:   {"step"},
	Retries:             {"kind"},
	DuplicatesSent:      {"kind"},
	MisuseSent:          {"kind"},
	Checks:              {},
}

// Operator is a comparison of a threshold expression.
type Operator string

// The operators of k6's threshold syntax.
const (
	Less         Operator = "<"
	LessEqual    Operator = "<="
	Greater      Operator = ">"
	GreaterEqual Operator = ">="
	Equal        Operator = "=="
	NotEqual     Operator = "!="
)

// Threshold is one expression on one metric, e.g. `accept_duration{kind:transfer}` `p(95)<250`.
type Threshold struct {
	// Source is the metric as written (`accept_duration{kind:transfer}`); Expression the expression as written.
	Source, Expression string
	// Metric is the metric's name; Tags narrow it to the samples carrying every tag (nil: all samples).
	Metric string
	Tags   map[string]string
	// Aggregate is what the expression tests: avg, min, med, max, count, rate, value, or AggregatePercentile
	// ("p") for p(N), whose N is Percentile (`p(99.9)`: Aggregate "p", Percentile 99.9).
	Aggregate  string
	Percentile float64
	Operator   Operator
	Value      float64
	// AbortOnFail stops the load as soon as the threshold fails (after AbortDelaySeconds from the load's
	// start, so a cold start does not abort it).
	AbortOnFail       bool
	AbortDelaySeconds float64
}

// Name is how reports name the threshold: `accept_duration{kind:transfer}: p(95)<250`.
func (t Threshold) Name() string { return t.Source + ": " + t.Expression }

// Holds reports whether observed satisfies the threshold.
func (t Threshold) Holds(observed float64) bool {
	switch t.Operator {
	case Less:
		return observed < t.Value
	case LessEqual:
		return observed <= t.Value
	case Greater:
		return observed > t.Value
	case GreaterEqual:
		return observed >= t.Value
	case Equal:
		return observed == t.Value
	case NotEqual:
		return observed != t.Value
	}
	panic("threshold: unknown operator " + string(t.Operator)) // Parse never builds one
}
