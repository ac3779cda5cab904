package threshold

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Aggregates lists the aggregates an expression may name besides p(N), in the order messages show them; which
// of them a metric has depends on its type (AggregatesOf).
var Aggregates = []string{"avg", "min", "med", "max", "count", "rate", "value", "total"}

// AggregatePercentile is the Aggregate of p(N); N is the threshold's Percentile.
const AggregatePercentile = "p"

// Operators lists the comparisons, longest first so that `<=` is not read as `<` followed by `=5`.
var Operators = []Operator{LessEqual, GreaterEqual, Equal, NotEqual, Less, Greater}

// numberPattern is a plain decimal number: no hex, no underscores, no Inf or NaN, which strconv.ParseFloat
// would accept but a threshold has no use for.
var numberPattern = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$`)

// percentilePattern is `p(N)`, spaces allowed inside the parentheses.
var percentilePattern = regexp.MustCompile(`^p\(\s*([^()]*?)\s*\)$`)

// Parse reads one threshold: source is the metric, optionally narrowed by tags (`accept_duration` or
// `accept_duration{kind:transfer,step:2}`), expression a comparison of one of its aggregates in k6's syntax
// (`p(95)<250`, `rate < 0.01`, `count==0`). A metric not in Known, a tag the metric does not carry, an unknown
// aggregate or one the metric's type does not have (a percentile of a rate), a percentile outside (0, 100], an
// unknown operator or a value that is not a number is an error that says what is allowed.
func Parse(source, expression string) (Threshold, error) {
	metric, tags, err := ParseSource(source)
	if err != nil {
		return Threshold{}, err
	}
	threshold := Threshold{
		Source:     strings.TrimSpace(source),
		Expression: strings.TrimSpace(expression),
		Metric:     metric,
		Tags:       tags,
	}
	if err := threshold.parseExpression(); err != nil {
		return Threshold{}, fmt.Errorf("%s: %q: %w", threshold.Source, threshold.Expression, err)
	}
	return threshold, nil
}

// ParseSource reads a threshold's metric and its tags: `metric` (tags nil) or `metric{tag:value,tag2:value2}`.
// The metric must be in Known and each tag one of the metric's.
func ParseSource(source string) (metric string, tags map[string]string, err error) {
	text := strings.TrimSpace(source)
	metric, tagText, narrowed := strings.Cut(text, "{")
	metric = strings.TrimSpace(metric)
	allowedTags, known := Known[metric]
	if !known {
		return "", nil, fmt.Errorf("unknown metric %q (metrics: %s)", metric, strings.Join(KnownMetrics(), ", "))
	}
	if !narrowed {
		return metric, nil, nil
	}
	tagText, closed := strings.CutSuffix(tagText, "}")
	if !closed || strings.ContainsAny(tagText, "{}") {
		return "", nil, fmt.Errorf("%q: tags go between one pair of braces, e.g. %s{%s}", text, metric, exampleTags(allowedTags))
	}
	if len(allowedTags) == 0 {
		return "", nil, fmt.Errorf("%q: metric %s takes no tags", text, metric)
	}
	tags = map[string]string{}
	for _, pair := range strings.Split(tagText, ",") {
		name, value, found := strings.Cut(pair, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !found || name == "" || value == "":
			return "", nil, fmt.Errorf("%q: %q is not tag:value (e.g. %s{%s})", text, strings.TrimSpace(pair), metric, exampleTags(allowedTags))
		case !slices.Contains(allowedTags, name):
			return "", nil, fmt.Errorf("%q: metric %s has no tag %q (tags: %s)", text, metric, name, strings.Join(allowedTags, ", "))
		}
		if _, repeated := tags[name]; repeated {
			return "", nil, fmt.Errorf("%q: tag %q given twice", text, name)
		}
		tags[name] = value
	}
	return metric, tags, nil
}

// KnownMetrics returns the names in Known, sorted, for messages and docs.
func KnownMetrics() []string {
	names := make([]string, 0, len(Known))
	for name := range Known {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// exampleTags shows the form of a metric's tags in a message.
func exampleTags(allowedTags []string) string {
	if len(allowedTags) == 0 {
		return "tag:value"
	}
	return allowedTags[0] + ":value"
}

// parseExpression fills Aggregate, Percentile, Operator and Value from Expression.
func (t *Threshold) parseExpression() error {
	const want = "want an aggregate, an operator and a number, e.g. p(95)<250, rate<0.01, count==0"
	position := strings.IndexAny(t.Expression, "<>=!")
	if position < 0 {
		return fmt.Errorf("no operator (%s)", want)
	}
	aggregate, rest := strings.TrimSpace(t.Expression[:position]), t.Expression[position:]
	for _, operator := range Operators {
		if strings.HasPrefix(rest, string(operator)) {
			t.Operator = operator
			break
		}
	}
	if t.Operator == "" {
		return fmt.Errorf("unknown operator at %q (operators: %s)", rest, operatorList())
	}
	if err := t.parseAggregate(aggregate); err != nil {
		return err
	}
	if err := t.checkAggregateOfType(); err != nil {
		return err
	}
	valueText := strings.TrimSpace(rest[len(t.Operator):])
	if valueText == "" {
		return fmt.Errorf("no value after %s (%s)", t.Operator, want)
	}
	if !numberPattern.MatchString(valueText) {
		return fmt.Errorf("%q is not a number (%s)", valueText, want)
	}
	value, err := strconv.ParseFloat(valueText, 64)
	if err != nil || math.IsInf(value, 0) {
		return fmt.Errorf("%q is not a number in range", valueText)
	}
	t.Value = value
	return nil
}

// parseAggregate reads the aggregate before the operator: a name of Aggregates or p(N).
func (t *Threshold) parseAggregate(aggregate string) error {
	if aggregate == "" {
		return fmt.Errorf("no aggregate before %s (aggregates: %s, p(N))", t.Operator, strings.Join(Aggregates, ", "))
	}
	if slices.Contains(Aggregates, aggregate) {
		t.Aggregate = aggregate
		return nil
	}
	match := percentilePattern.FindStringSubmatch(aggregate)
	if match == nil {
		return fmt.Errorf("unknown aggregate %q (aggregates: %s, p(N) with N in (0, 100], e.g. p(99.9))",
			aggregate, strings.Join(Aggregates, ", "))
	}
	percentile, err := strconv.ParseFloat(match[1], 64)
	if !numberPattern.MatchString(match[1]) || err != nil || percentile <= 0 || percentile > 100 {
		return fmt.Errorf("percentile %q: want a number in (0, 100], e.g. p(95), p(99.9)", match[1])
	}
	t.Aggregate = AggregatePercentile
	t.Percentile = percentile
	return nil
}

// checkAggregateOfType refuses an aggregate the metric's type does not have, so that a parsed threshold can
// always be evaluated.
func (t *Threshold) checkAggregateOfType() error {
	metricType := Types[t.Metric]
	allowed := AggregatesOf(metricType)
	switch {
	case t.Aggregate == AggregatePercentile && !slices.Contains(allowed, "p(N)"):
		return fmt.Errorf("%s is a %s: it has no percentiles (aggregates: %s)", t.Metric, metricType, strings.Join(allowed, ", "))
	case t.Aggregate != AggregatePercentile && !slices.Contains(allowed, t.Aggregate):
		return fmt.Errorf("%s is a %s: aggregate %q is not one of %s", t.Metric, metricType, t.Aggregate, strings.Join(allowed, ", "))
	}
	return nil
}

// operatorList shows the operators in messages.
func operatorList() string {
	names := make([]string, len(Operators))
	for index, operator := range Operators {
		names[index] = string(operator)
	}
	return strings.Join(names, " ")
}
