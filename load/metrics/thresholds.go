package metrics

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ledgerproof/ledgerproof/load/threshold"
)

// aggregatesOf lists the aggregates a metric type can be tested on. Trends: avg, min, med, max, count, p(N), in
// milliseconds (count in samples). Rates: rate and value (the fraction of samples that were 1), count (samples
// that were 1), total (samples). Counters: count, value (the same), rate (count per second of elapsed time).
func aggregatesOf(kind metricType) []string {
	switch kind {
	case trendMetric:
		return []string{"avg", "min", "med", "max", "count", "p(N)"}
	case rateMetric:
		return []string{"rate", "value", "count", "total"}
	case counterMetric:
		return []string{"count", "value", "rate"}
	}
	return nil
}

// Validate reports every threshold this package cannot evaluate: an unknown metric, a tag the metric is not
// recorded with, an aggregate its type does not have, a percentile outside 0-100. threshold.Parse refuses the
// same, so a parsed scenario always validates; NewRecorder panics on a threshold that does not.
func Validate(thresholds []threshold.Threshold) error {
	var problems []error
	for _, t := range thresholds {
		if err := validateOne(t); err != nil {
			problems = append(problems, fmt.Errorf("threshold %s: %w", displayName(t), err))
		}
	}
	return errors.Join(problems...)
}

func validateOne(t threshold.Threshold) error {
	if _, err := selectionOf(t.Metric, t.Tags); err != nil {
		return err
	}
	kind := typeOf(t.Metric)
	if n, ok := percentileOf(t.Aggregate, t.Percentile); ok {
		if kind != trendMetric {
			return fmt.Errorf("%s is a %s: it has no percentiles", t.Metric, kind)
		}
		if n < 0 || n > 100 {
			return fmt.Errorf("percentile %v is outside 0-100", n)
		}
	} else if !hasAggregate(kind, t.Aggregate) {
		return fmt.Errorf("%s is a %s: aggregate %q is not one of %s", t.Metric, kind, t.Aggregate,
			strings.Join(aggregatesOf(kind), ", "))
	}
	switch t.Operator {
	case threshold.Less, threshold.LessEqual, threshold.Greater, threshold.GreaterEqual, threshold.Equal,
		threshold.NotEqual:
	default:
		return fmt.Errorf("unknown operator %q", t.Operator)
	}
	return nil
}

func hasAggregate(kind metricType, aggregate string) bool {
	for _, name := range aggregatesOf(kind) {
		if name == aggregate {
			return true
		}
	}
	return false
}

// expressionOf is the expression as the scenario wrote it, or rebuilt from its parts for a threshold built in
// code.
func expressionOf(t threshold.Threshold) string {
	if t.Expression != "" {
		return t.Expression
	}
	aggregate := t.Aggregate
	if n, ok := percentileOf(aggregate, t.Percentile); ok && aggregate == "p" {
		aggregate = "p(" + strconv.FormatFloat(n, 'f', -1, 64) + ")"
	}
	return aggregate + string(t.Operator) + strconv.FormatFloat(t.Value, 'f', -1, 64)
}

// fieldOf is the summary field holding the figure a threshold tests, spelled as the expression spells it
// (`p(99.9)<500` → `p(99.9)`): the report reads a threshold's observed value from the field its expression
// names.
func fieldOf(t threshold.Threshold) string {
	expression := expressionOf(t)
	if i := strings.IndexAny(expression, "<>=!"); i > 0 {
		return strings.TrimSpace(expression[:i])
	}
	return t.Aggregate
}

// displayName is how errors name a threshold.
func displayName(t threshold.Threshold) string {
	source := t.Source
	if source == "" {
		source = t.Metric
	}
	return source + ": " + expressionOf(t)
}

// Result is one threshold's verdict.
//
// A threshold on a trend or rate metric that got no samples (a kind the mix never drew, a step never reached)
// has nothing to compare: it is reported NotObserved, with Observed nil and Passed true, so a report can show
// it as "not exercised" rather than as a failure that did not happen. A counter is always observed: zero
// events is a measurement (dropped_iterations count==0 holds when nothing was dropped).
type Result struct {
	// Threshold is the threshold evaluated; not written to JSON (Metric and Expression name it there).
	Threshold threshold.Threshold `json:"-"`
	// Metric is the (sub)metric's canonical name, its key in Summary.Metrics: `accept_duration{kind:transfer}`.
	Metric string `json:"metric"`
	// Expression is the expression as written: `p(95)<250`.
	Expression string `json:"expression"`
	// Passed is true when the observed value satisfies the expression, or nothing was observed.
	Passed bool `json:"passed"`
	// Observed is the aggregate's value (milliseconds for durations); nil when NotObserved.
	Observed *float64 `json:"observed"`
	// NotObserved is true when a trend or rate metric got no samples.
	NotObserved bool `json:"not_observed"`
	// AbortOnFail is the threshold's abort_on_fail.
	AbortOnFail bool `json:"abort_on_fail,omitempty"`
}

// compiledThreshold is a threshold with its selection resolved once.
type compiledThreshold struct {
	threshold threshold.Threshold
	selection selection
}

func compileThresholds(thresholds []threshold.Threshold) ([]compiledThreshold, error) {
	if err := Validate(thresholds); err != nil {
		return nil, err
	}
	compiled := make([]compiledThreshold, len(thresholds))
	for i, t := range thresholds {
		chosen, err := selectionOf(t.Metric, t.Tags)
		if err != nil {
			panic("metrics: a validated threshold has no selection: " + err.Error())
		}
		compiled[i] = compiledThreshold{threshold: t, selection: chosen}
	}
	return compiled, nil
}

// evaluateThreshold computes one threshold's Result on a dataset.
func evaluateThreshold(data *dataset, compiled compiledThreshold, elapsedSeconds float64,
	scratch *trendSeries) Result {
	t := compiled.threshold
	result := Result{
		Threshold:   t,
		Metric:      compiled.selection.name(),
		Expression:  expressionOf(t),
		AbortOnFail: t.AbortOnFail,
	}
	value, observed := data.evaluate(compiled.selection, t.Aggregate, t.Percentile, elapsedSeconds, scratch)
	if !observed {
		result.Passed = true
		result.NotObserved = true
		return result
	}
	result.Observed = &value
	result.Passed = t.Holds(value)
	return result
}
