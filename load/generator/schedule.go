package generator

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// segment is one piece of an open-model schedule: the rate moves linearly from fromRate to toRate over
// duration. Step labels the capacity step it belongs to ("" outside capacity-steps; gaps have none).
type segment struct {
	start, duration time.Duration
	fromRate        float64
	toRate          float64
	step            string
	// before is the number of iterations due before the segment starts (the integral of the rate so far).
	before float64
}

// count is the number of iterations due within the segment after elapsed (0 <= elapsed <= duration).
func (s segment) count(elapsed time.Duration) float64 {
	t := elapsed.Seconds()
	d := s.duration.Seconds()
	if d <= 0 {
		return 0
	}
	return s.fromRate*t + (s.toRate-s.fromRate)*t*t/(2*d)
}

// timeOf is the offset within the segment at which n iterations (0 < n <= count(duration)) are due: the
// inverse of count.
func (s segment) timeOf(n float64) time.Duration {
	d := s.duration.Seconds()
	a := (s.toRate - s.fromRate) / (2 * d)
	b := s.fromRate
	var t float64
	if math.Abs(a) < 1e-12 {
		t = n / b
	} else {
		// At the very end of a ramp down to 0 the discriminant is 0 in exact arithmetic and may round below it:
		// its square root would be NaN, and the iteration due at a nonsense time.
		t = (-b + math.Sqrt(math.Max(0, b*b+4*a*n))) / (2 * a)
	}
	t = math.Max(0, math.Min(t, d))
	return time.Duration(t * float64(time.Second))
}

// Plan is an open-model arrival schedule: when the n-th iteration is due, and which step it belongs to.
type Plan struct {
	segments []segment
	// total is the number of iterations of the whole plan.
	total int64
	// length is the plan's duration.
	length time.Duration
	// steps are the capacity steps' labels and rates, in order.
	steps []StepInfo
}

// StepInfo describes one capacity step of a plan: its label, target rate and where its hold is.
type StepInfo struct {
	Label               string
	Rate                float64
	HoldStart, HoldEnds time.Duration
}

// NewPlan builds the arrival schedule of an open-model scenario, scaled by share (1/N for one of N segments).
func NewPlan(s scenario.Schedule, share float64) (*Plan, error) {
	if share <= 0 || share > 1 {
		return nil, fmt.Errorf("schedule share %v: want (0, 1]", share)
	}
	p := &Plan{}
	add := func(duration time.Duration, from, to float64, step string) {
		if duration <= 0 {
			return
		}
		p.segments = append(p.segments, segment{start: p.length, duration: duration, fromRate: from * share, toRate: to * share, step: step})
		p.length += duration
	}
	switch s.Executor {
	case scenario.ExecutorConstantArrivalRate:
		add(s.Duration, s.Rate, s.Rate, "")
	case scenario.ExecutorRampingArrivalRate:
		previous := s.StartRate
		for _, stage := range s.Stages {
			add(stage.Duration, previous, stage.Target, "")
			previous = stage.Target
		}
	case scenario.ExecutorCapacitySteps:
		previous := 0.0
		for i, rate := range s.Steps {
			label := strconv.FormatFloat(rate, 'f', -1, 64)
			add(s.StepRamp, previous, rate, label)
			holdStart := p.length
			add(s.StepHold, rate, rate, label)
			p.steps = append(p.steps, StepInfo{Label: label, Rate: rate, HoldStart: holdStart, HoldEnds: p.length})
			if i < len(s.Steps)-1 {
				add(s.StepGap, 0, 0, "")
			}
			previous = rate
		}
	default:
		return nil, fmt.Errorf("schedule: executor %q is not an arrival-rate executor", s.Executor)
	}
	if len(p.segments) == 0 {
		return nil, fmt.Errorf("schedule: %s has no time to run", s.Executor)
	}
	before := 0.0
	for i := range p.segments {
		p.segments[i].before = before
		before += p.segments[i].count(p.segments[i].duration)
	}
	p.total = int64(math.Floor(before + 1e-9))
	return p, nil
}

// Length is the schedule's duration.
func (p *Plan) Length() time.Duration { return p.length }

// Total is the number of iterations the schedule starts.
func (p *Plan) Total() int64 { return p.total }

// Steps lists the capacity steps (none for other executors).
func (p *Plan) Steps() []StepInfo { return p.steps }

// Due returns when the n-th iteration (from 1) is due, as an offset from the schedule's start, and its step.
// ok is false beyond the schedule's total.
func (p *Plan) Due(n int64) (at time.Duration, step string, ok bool) {
	if n < 1 || n > p.total {
		return 0, "", false
	}
	target := float64(n)
	// Segments are few (a stage or a step each): a linear scan is cheaper than a search.
	for _, s := range p.segments {
		within := s.count(s.duration)
		if target <= s.before+within+1e-9 && within > 0 {
			return s.start + s.timeOf(target-s.before), s.step, true
		}
	}
	last := p.segments[len(p.segments)-1]
	return last.start + last.duration, last.step, true
}

// RateAt returns the scheduled rate (iterations per second, after the share) at an offset.
func (p *Plan) RateAt(offset time.Duration) float64 {
	for _, s := range p.segments {
		if offset >= s.start && offset < s.start+s.duration {
			fraction := float64(offset-s.start) / float64(s.duration)
			return s.fromRate + (s.toRate-s.fromRate)*fraction
		}
	}
	return 0
}

// MaxRate is the highest rate of the schedule.
func (p *Plan) MaxRate() float64 {
	highest := 0.0
	for _, s := range p.segments {
		highest = math.Max(highest, math.Max(s.fromRate, s.toRate))
	}
	return highest
}
