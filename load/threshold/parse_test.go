package threshold

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name       string
		source     string
		expression string
		want       Threshold
	}{
		{
			name: "percentile on a metric narrowed by a tag", source: "accept_duration{kind:transfer}", expression: "p(95)<250",
			want: Threshold{Source: "accept_duration{kind:transfer}", Expression: "p(95)<250", Metric: AcceptDuration,
				Tags: map[string]string{"kind": "transfer"}, Aggregate: AggregatePercentile, Percentile: 95, Operator: Less, Value: 250},
		},
		{
			name: "decimal percentile", source: "settle_duration", expression: "p(99.9)<=1000",
			want: Threshold{Source: "settle_duration", Expression: "p(99.9)<=1000", Metric: SettleDuration,
				Aggregate: AggregatePercentile, Percentile: 99.9, Operator: LessEqual, Value: 1000},
		},
		{
			name: "hundredth percentile", source: "accept_duration", expression: "p(100) < 5000",
			want: Threshold{Source: "accept_duration", Expression: "p(100) < 5000", Metric: AcceptDuration,
				Aggregate: AggregatePercentile, Percentile: 100, Operator: Less, Value: 5000},
		},
		{
			name: "rate with a decimal value", source: "errors", expression: "rate<0.001",
			want: Threshold{Source: "errors", Expression: "rate<0.001", Metric: Errors, Aggregate: "rate", Operator: Less, Value: 0.001},
		},
		{
			name: "count equal", source: "dropped_iterations", expression: "count==0",
			want: Threshold{Source: "dropped_iterations", Expression: "count==0", Metric: DroppedIterations, Aggregate: "count",
				Operator: Equal, Value: 0},
		},
		{
			name: "spaces around every part", source: " http_reqs{ status : 500 , route:/v1/deposits } ", expression: "  count  !=  3  ",
			want: Threshold{Source: "http_reqs{ status : 500 , route:/v1/deposits }", Expression: "count  !=  3", Metric: HTTPRequests,
				Tags: map[string]string{"status": "500", "route": "/v1/deposits"}, Aggregate: "count", Operator: NotEqual, Value: 3},
		},
		{
			name: "greater or equal, negative value", source: "iterations", expression: "value>=-1.5",
			want: Threshold{Source: "iterations", Expression: "value>=-1.5", Metric: Iterations, Aggregate: "value",
				Operator: GreaterEqual, Value: -1.5},
		},
		{
			name: "greater, exponent", source: "checks", expression: "rate>1e-3",
			want: Threshold{Source: "checks", Expression: "rate>1e-3", Metric: Checks, Aggregate: "rate", Operator: Greater, Value: 0.001},
		},
		{
			name: "average, minimum, median, maximum", source: "http_req_duration{route:/v1/transfers}", expression: "med<100",
			want: Threshold{Source: "http_req_duration{route:/v1/transfers}", Expression: "med<100", Metric: HTTPRequestDuration,
				Tags: map[string]string{"route": "/v1/transfers"}, Aggregate: "med", Operator: Less, Value: 100},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := Parse(test.source, test.expression)
			if err != nil {
				t.Fatalf("Parse(%q, %q): %v", test.source, test.expression, err)
			}
			if !reflect.DeepEqual(got, test.want) {
				t.Fatalf("Parse(%q, %q)\n got %+v\nwant %+v", test.source, test.expression, got, test.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name       string
		source     string
		expression string
		// want are fragments the message must contain: what is wrong and what is allowed.
		want []string
	}{
		{name: "unknown metric", source: "eror", expression: "rate<0.1",
			want: []string{`unknown metric "eror"`, "accept_duration", "dropped_iterations", "errors"}},
		{name: "unknown tag", source: "errors{outcome:info}", expression: "rate<0.1",
			want: []string{`no tag "outcome"`, "tags: kind, step"}},
		{name: "tags on a metric without tags", source: "checks{kind:deposit}", expression: "rate==1",
			want: []string{"checks takes no tags"}},
		{name: "tag without a value", source: "errors{kind}", expression: "rate<0.1", want: []string{`"kind" is not tag:value`}},
		{name: "empty tag value", source: "errors{kind:}", expression: "rate<0.1", want: []string{`"kind:" is not tag:value`}},
		{name: "empty braces", source: "errors{}", expression: "rate<0.1", want: []string{`"" is not tag:value`}},
		{name: "unclosed braces", source: "errors{kind:deposit", expression: "rate<0.1", want: []string{"one pair of braces"}},
		{name: "text after the braces", source: "errors{kind:deposit}x", expression: "rate<0.1", want: []string{"one pair of braces"}},
		{name: "tag given twice", source: "errors{kind:deposit,kind:transfer}", expression: "rate<0.1", want: []string{`tag "kind" given twice`}},
		{name: "no operator", source: "errors", expression: "rate 0.1", want: []string{"no operator"}},
		{name: "single equals", source: "errors", expression: "rate=0", want: []string{`unknown operator at "=0"`, "== !="}},
		{name: "arrow", source: "errors", expression: "rate=>0", want: []string{`unknown operator at "=>0"`}},
		{name: "unknown aggregate", source: "errors", expression: "avgg<1", want: []string{`unknown aggregate "avgg"`, "p(N)"}},
		{name: "no aggregate", source: "errors", expression: "<1", want: []string{"no aggregate"}},
		{name: "percentile zero", source: "accept_duration", expression: "p(0)<1", want: []string{`percentile "0"`, "(0, 100]"}},
		{name: "percentile above 100", source: "accept_duration", expression: "p(100.5)<1", want: []string{`percentile "100.5"`}},
		{name: "percentile not a number", source: "accept_duration", expression: "p(x)<1", want: []string{`percentile "x"`}},
		{name: "percentile empty", source: "accept_duration", expression: "p()<1", want: []string{`percentile ""`}},
		{name: "percentile without parentheses", source: "accept_duration", expression: "p95<1", want: []string{`unknown aggregate "p95"`}},
		{name: "no value", source: "errors", expression: "rate<", want: []string{"no value after <"}},
		{name: "value not a number", source: "errors", expression: "rate<abc", want: []string{`"abc" is not a number`}},
		{name: "value with a unit", source: "accept_duration", expression: "p(95)<250ms", want: []string{`"250ms" is not a number`}},
		{name: "two comparisons", source: "errors", expression: "rate<0.1 && rate>0", want: []string{`"0.1 && rate>0" is not a number`}},
		{name: "operator twice", source: "errors", expression: "rate<=<1", want: []string{`"<1" is not a number`}},
		{name: "infinity", source: "errors", expression: "rate<Inf", want: []string{`"Inf" is not a number`}},
		{name: "hexadecimal", source: "errors", expression: "count<0x10", want: []string{`"0x10" is not a number`}},
		{name: "value out of range", source: "errors", expression: "count<1e999", want: []string{"not a number in range"}},
		{name: "percentile of a rate", source: "errors", expression: "p(95)<1",
			want: []string{"errors is a rate: it has no percentiles (aggregates: rate, value, count, total)"}},
		{name: "percentile of a counter", source: "dropped_iterations", expression: "p(95)<1", want: []string{"dropped_iterations is a counter: it has no percentiles"}},
		{name: "rate of a trend", source: "accept_duration", expression: "rate<1",
			want: []string{`accept_duration is a trend: aggregate "rate" is not one of avg, min, med, max, count, p(N)`}},
		{name: "total of a counter", source: "http_reqs", expression: "total<1", want: []string{`http_reqs is a counter: aggregate "total" is not one of count, value, rate`}},
		{name: "average of a rate", source: "checks", expression: "avg==1", want: []string{`checks is a rate: aggregate "avg"`}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := Parse(test.source, test.expression)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %+v, want an error", test.source, test.expression, got)
			}
			for _, fragment := range test.want {
				if !strings.Contains(err.Error(), fragment) {
					t.Errorf("Parse(%q, %q): %q does not contain %q", test.source, test.expression, err, fragment)
				}
			}
		})
	}
}

func TestHoldsFollowsTheParsedOperator(t *testing.T) {
	tests := []struct {
		name       string
		expression string
		observed   float64
		want       bool
	}{
		{name: "less holds", expression: "count<1", observed: 0, want: true},
		{name: "less fails at the bound", expression: "count<1", observed: 1, want: false},
		{name: "less or equal holds at the bound", expression: "count<=1", observed: 1, want: true},
		{name: "greater fails at the bound", expression: "count>1", observed: 1, want: false},
		{name: "greater or equal holds at the bound", expression: "count>=1", observed: 1, want: true},
		{name: "equal fails", expression: "count==0", observed: 2, want: false},
		{name: "not equal holds", expression: "count!=0", observed: 2, want: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			threshold, err := Parse(DroppedIterations, test.expression)
			if err != nil {
				t.Fatal(err)
			}
			if got := threshold.Holds(test.observed); got != test.want {
				t.Fatalf("%s with %v: Holds = %v, want %v", threshold.Name(), test.observed, got, test.want)
			}
		})
	}
}

func TestEveryKnownMetricHasAType(t *testing.T) {
	for metric := range Known {
		if AggregatesOf(Types[metric]) == nil {
			t.Errorf("metric %s has no type in Types", metric)
		}
	}
	for metric := range Types {
		if _, known := Known[metric]; !known {
			t.Errorf("Types names %s, which is not in Known", metric)
		}
	}
}

func TestEveryAggregateOfEachTypeParses(t *testing.T) {
	for metric, metricType := range Types {
		for _, aggregate := range AggregatesOf(metricType) {
			expression := aggregate + "<1"
			if aggregate == "p(N)" {
				expression = "p(99.9)<1"
			}
			t.Run(metric+" "+expression, func(t *testing.T) {
				if _, err := Parse(metric, expression); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestMetricsDocumented keeps the metrics table of docs/scenarios.md in agreement with Known and Types.
func TestMetricsDocumented(t *testing.T) {
	content, err := os.ReadFile("../../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(content)
	start, stop := strings.Index(text, "<!-- metrics:"), strings.Index(text, "<!-- end of metrics -->")
	if start < 0 || stop < start {
		t.Fatal("docs/scenarios.md: no metrics table between <!-- metrics: ... --> and <!-- end of metrics -->")
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(text[start:stop], "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		metric := strings.Trim(strings.TrimSpace(cells[1]), "`")
		metricType := Type(strings.TrimSpace(cells[2]))
		var tags []string
		for _, tag := range strings.Split(cells[3], ",") {
			if tag = strings.Trim(strings.TrimSpace(tag), "`"); tag != "" && tag != "—" {
				tags = append(tags, tag)
			}
		}
		documented[metric] = true
		known, ok := Known[metric]
		switch {
		case !ok:
			t.Errorf("docs name metric %s, which is not in Known", metric)
		case !slices.Equal(tags, known) && !(len(tags) == 0 && len(known) == 0):
			t.Errorf("docs give %s the tags %q, Known %q", metric, tags, known)
		case Types[metric] != metricType:
			t.Errorf("docs give %s the type %s, Types %s", metric, metricType, Types[metric])
		}
	}
	for metric := range Known {
		if !documented[metric] {
			t.Errorf("metric %s is not in the docs' metrics table", metric)
		}
	}
}
