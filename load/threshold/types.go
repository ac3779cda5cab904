package threshold

// Type is how a metric aggregates, as k6's metric types do.
type Type string

// The metric types.
const (
	// Trend is a distribution of values (milliseconds): avg, min, med, max, p(N), and count (samples).
	Trend Type = "trend"
	// Rate is a fraction of samples that were 1: rate and value (the fraction), count (samples that were 1),
	// total (samples).
	Rate Type = "rate"
	// Counter is a count of events: count and value (the same), rate (count per second of the load's time).
	Counter Type = "counter"
)

// Types gives each metric of Known its type.
var Types = map[string]Type{
	AcceptDuration:      Trend,
	SettleDuration:      Trend,
	HTTPRequestDuration: Trend,
	Errors:              Rate,
	UnknownOutcomes:     Rate,
	HTTPRequestFailed:   Rate,
	Checks:              Rate,
	Operations:          Counter,
	HTTPRequests:        Counter,
	Iterations:          Counter,
	DroppedIterations:   Counter,
	Retries:             Counter,
	DuplicatesSent:      Counter,
	MisuseSent:          Counter,
}

// AggregatesOf lists the aggregates a type can be tested on; "p(N)" stands for every percentile.
func AggregatesOf(metricType Type) []string {
	switch metricType {
	case Trend:
		return []string{"avg", "min", "med", "max", "count", "p(N)"}
	case Rate:
		return []string{"rate", "value", "count", "total"}
	case Counter:
		return []string{"count", "value", "rate"}
	}
	return nil
}
