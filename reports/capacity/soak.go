package capacity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// The soak: after the batched mode's steps, on the same stack, one load at
// SoakFraction of the knee for Soak, with every process's private memory
// sampled. It passes when the load held (the steps' criteria: nothing
// dropped, errors < 0.1%, p95 accept < 250 ms) and every process's memory is
// flat; the mode's audit, after it, covers its journal too.
const (
	// DefaultSoakFraction is the soak's rate as a fraction of the knee.
	DefaultSoakFraction = 0.7
	// MinimumSoak is the shortest soak: its memory is judged on the samples
	// after a warm-up, in thirds, which needs a few of them.
	MinimumSoak = 10 * time.Second
	// soakWarmUpFraction of the hold's samples are the warm-up (heaps,
	// pools, Postgres's caches grow to their working size), not judged.
	soakWarmUpFraction = 0.2
	// A process's memory is flat when the median of the last third of the
	// judged samples is at most soakGrowthFraction above that of the first
	// third, plus soakGrowthSlackKiB (a Go heap's collection cycle, a
	// Postgres backend's caches: noise that is not growth).
	soakGrowthFraction = 0.10
	soakGrowthSlackKiB = 16 * 1024
	// soakMinimumSamples is how many judged samples a verdict needs.
	soakMinimumSamples = 6
	// soakTimelinePoints are the report's columns of memory over time.
	soakTimelinePoints = 10
	// soakSamplesFile is every memory sample, one JSON line each, in the
	// soak's step directory.
	soakSamplesFile = "memory.jsonl"
)

// soakResult is what the soak measured (capacity.json's modes[].soak).
type soakResult struct {
	TargetTPS int     `json:"target_tps"`
	Fraction  float64 `json:"fraction_of_knee"`
	// HoldSeconds is the soak's hold (--soak).
	HoldSeconds float64 `json:"hold_seconds"`
	// NotRun says why there was no soak (the mode held no step).
	NotRun string        `json:"not_run,omitempty"`
	Step   *capacityStep `json:"step,omitempty"`
	// Memory is each process tree's private memory over the hold.
	Memory []soakMemory `json:"memory,omitempty"`
	// SampleSeconds is the interval of the memory samples.
	SampleSeconds float64  `json:"sample_seconds"`
	SamplesFile   string   `json:"samples_file,omitempty"`
	Passed        bool     `json:"passed"`
	Reasons       []string `json:"reasons"`
	// RetentionSeconds is the stack's retention (Options.Retention; 0: the
	// reference's defaults); Redis what Redis held when the hold ended
	// (redismemory.go).
	RetentionSeconds float64         `json:"retention_seconds"`
	Redis            *redisFootprint `json:"redis,omitempty"`
	// Aging is the soak's CPU per request beside the held step nearest its
	// rate (aging.go); nil without figures to compare.
	Aging *soakAging `json:"aging,omitempty"`
}

// soakMemory is one process tree's private memory (RssAnon summed over the
// tree) during the soak's hold, in MiB.
type soakMemory struct {
	Component string `json:"component"`
	Samples   int    `json:"samples"`
	// StartMiB and EndMiB are the medians of the first and last thirds of
	// the samples after the warm-up; PeakMiB the highest sample.
	StartMiB      float64 `json:"start_mib"`
	EndMiB        float64 `json:"end_mib"`
	PeakMiB       float64 `json:"peak_mib"`
	GrowthPercent float64 `json:"growth_percent"`
	// Judged is false with too few samples (then Flat says nothing).
	Judged bool `json:"judged"`
	Flat   bool `json:"flat"`
	// Timeline is the median of each tenth of the hold.
	Timeline []float64 `json:"timeline_mib"`
}

// soakSampleInterval spreads about 60 samples over the soak, 1 to 10 s apart.
func soakSampleInterval(soak time.Duration) time.Duration {
	return min(10*time.Second, max(time.Second, soak/60))
}

// soakRate is the soak's arrival rate: fraction of the knee, at least 1.
func soakRate(knee int, fraction float64) int {
	return max(1, int(math.Round(float64(knee)*fraction)))
}

// runSoak runs the soak on the mode's stack: one load run at the soak's
// rate, holding for o.Soak, its memory sampled. index is the soak's in the
// order the mode's load runs ran (after its steps): its seed's offset.
func runSoak(ctx context.Context, o Options, self string, mode capacityMode, file *stack.File, sampler *cpuSampler,
	knee, index int, runDir string, out io.Writer) (soakResult, error) {
	result := soakResult{Fraction: o.SoakFraction, HoldSeconds: o.Soak.Seconds(), Reasons: []string{}, RetentionSeconds: o.Retention.Seconds()}
	if knee <= 0 {
		result.NotRun = "no step held, so there is no knee to soak at"
		result.Reasons = append(result.Reasons, result.NotRun)
		fmt.Fprintf(out, "%s soak: not run: %s\n", mode.Name, result.NotRun)
		return result, nil
	}
	result.TargetTPS = soakRate(knee, o.SoakFraction)
	interval := soakSampleInterval(o.Soak)
	result.SampleSeconds = interval.Seconds()
	fmt.Fprintf(out, "%s soak: %d TPS (%.0f%% of the knee, %d TPS) for %s, memory sampled every %s\n",
		mode.Name, result.TargetTPS, o.SoakFraction*100, knee, o.Soak, interval)
	soakOptions := o
	soakOptions.Hold = o.Soak
	memory := &memorySampler{source: sampler.watchedNow}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { memory.run(interval, stop); close(sampled) }()
	name := fmt.Sprintf("soak-%d", result.TargetTPS)
	step, err := runCapacityStep(ctx, soakOptions, self, mode, file, sampler, name, index, result.TargetTPS, runDir, out)
	close(stop)
	<-sampled
	if err != nil {
		return result, fmt.Errorf("soak: %w", err)
	}
	result.Step = &step
	// Redis as the hold left it: what a transaction keeps, for sizing.
	redis := measureRedis(ctx, file.Endpoints.RedisAddr, []redisProjection{
		{Label: "the soak's rate", TPS: result.TargetTPS}, {Label: "the knee", TPS: knee}})
	result.Redis = &redis
	if redis.Error != "" {
		fmt.Fprintf(out, "%s soak: Redis's footprint: %s\n", mode.Name, redis.Error)
	}
	samples := memory.all()
	result.SamplesFile = filepath.Join(runDir, "steps", name, soakSamplesFile)
	if err := writeMemorySamples(result.SamplesFile, samples); err != nil {
		return result, err
	}
	result.Memory = judgeSoakMemory(samples, step.WindowStart, step.windowEnd())
	result.judge()
	verdict := "passed"
	if !result.Passed {
		verdict = "FAILED: " + strings.Join(result.Reasons, "; ")
	}
	var growth []string
	for _, m := range result.Memory {
		growth = append(growth, fmt.Sprintf("%s %.0f->%.0f MiB", m.Component, m.StartMiB, m.EndMiB))
	}
	fmt.Fprintf(out, "%s soak: memory %s; %s\n", mode.Name, strings.Join(growth, ", "), verdict)
	return result, nil
}

// judge sets Passed and Reasons from the load's figures and the memory.
func (r *soakResult) judge() {
	r.Reasons = []string{}
	if r.Step == nil {
		r.Reasons = append(r.Reasons, "no load figures")
	} else if !r.Step.Held {
		r.Reasons = append(r.Reasons, "the load did not hold: "+strings.Join(r.Step.Reasons, ", "))
	}
	if len(r.Memory) == 0 {
		r.Reasons = append(r.Reasons, "no memory samples")
	}
	for _, m := range r.Memory {
		switch {
		case !m.Judged:
			r.Reasons = append(r.Reasons, fmt.Sprintf("%s: %d memory samples after the warm-up, too few to judge (at least %d)", m.Component, m.Samples, soakMinimumSamples))
		case !m.Flat:
			r.Reasons = append(r.Reasons, fmt.Sprintf("%s's memory grew %.0f -> %.0f MiB (%+.1f%%)", m.Component, m.StartMiB, m.EndMiB, m.GrowthPercent))
		}
	}
	r.Passed = len(r.Reasons) == 0
}

// judgeSoakMemory judges each component's samples inside the hold [from,
// to], in name order.
func judgeSoakMemory(samples []memorySample, from, to time.Time) []soakMemory {
	series := map[string][]float64{}
	for _, sample := range samples {
		if sample.At.Before(from) || sample.At.After(to) {
			continue
		}
		for name, kib := range sample.KiB {
			series[name] = append(series[name], float64(kib))
		}
	}
	names := make([]string, 0, len(series))
	for name := range series {
		names = append(names, name)
	}
	sort.Strings(names)
	var result []soakMemory
	for _, name := range names {
		result = append(result, judgeMemorySeries(name, series[name]))
	}
	return result
}

// judgeMemorySeries judges one process tree's samples (KiB, in time order).
func judgeMemorySeries(name string, kib []float64) soakMemory {
	m := soakMemory{Component: name}
	const kibPerMiB = 1024
	for _, value := range kib {
		m.PeakMiB = max(m.PeakMiB, round3(value/kibPerMiB))
	}
	for i := 0; i < soakTimelinePoints && len(kib) > 0; i++ {
		from, to := i*len(kib)/soakTimelinePoints, (i+1)*len(kib)/soakTimelinePoints
		if to <= from {
			to = from + 1
		}
		if from >= len(kib) {
			break
		}
		m.Timeline = append(m.Timeline, round3(median(kib[from:min(to, len(kib))])/kibPerMiB))
	}
	judged := kib[int(math.Ceil(float64(len(kib))*soakWarmUpFraction)):]
	m.Samples = len(judged)
	if len(judged) < soakMinimumSamples {
		return m
	}
	third := len(judged) / 3
	start, end := median(judged[:third]), median(judged[len(judged)-third:])
	m.Judged = true
	m.StartMiB, m.EndMiB = round3(start/kibPerMiB), round3(end/kibPerMiB)
	if start > 0 {
		m.GrowthPercent = round3((end - start) / start * 100)
	}
	m.Flat = end <= start*(1+soakGrowthFraction)+soakGrowthSlackKiB
	return m
}

func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	middle := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[middle]
	}
	return (sorted[middle-1] + sorted[middle]) / 2
}

func writeMemorySamples(path string, samples []memorySample) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(file)
	for _, sample := range samples {
		if err := encoder.Encode(sample); err != nil {
			file.Close()
			return err
		}
	}
	return file.Close()
}

// soakMarkdown is the soak's part of the report.
func (r *soakResult) markdown() string {
	var b strings.Builder
	if r.NotRun != "" {
		fmt.Fprintf(&b, "**Soak**: not run: %s.\n\n", r.NotRun)
		return b.String()
	}
	verdict := "passed"
	if !r.Passed {
		verdict = "FAILED: " + strings.Join(r.Reasons, "; ")
	}
	fmt.Fprintf(&b, "**Soak** at %d TPS (%.0f%% of the knee) for %s: %s.", r.TargetTPS, r.Fraction*100, time.Duration(r.HoldSeconds*float64(time.Second)), verdict)
	if s := r.Step; s != nil {
		fmt.Fprintf(&b, " Sustained %.0f/s, %.0f iterations, %.0f dropped, errors %s, accept p95 / p99 %s / %s ms, settle p99 %s ms.",
			s.AchievedTPS, s.Iterations, s.Dropped, formatPercent(s.ErrorRate, 3), formatOptional(s.P95AcceptMs, 1),
			formatOptional(s.P99AcceptMs, 1), formatOptional(s.P99SettleMs, 1))
	}
	fmt.Fprintf(&b, " Private memory (RssAnon of each process tree, MiB) over the hold, every %gs sampled (`%s`); flat = the last third's median at most %.0f%% + %d MiB above the first third's, after a warm-up of the first %.0f%%:\n\n",
		r.SampleSeconds, r.SamplesFile, soakGrowthFraction*100, soakGrowthSlackKiB/1024, soakWarmUpFraction*100)
	points := 0
	for _, m := range r.Memory {
		points = max(points, len(m.Timeline))
	}
	b.WriteString("| process |")
	for i := 0; i < points; i++ {
		fmt.Fprintf(&b, " t+%.0f%% |", float64(i)*100/float64(soakTimelinePoints))
	}
	b.WriteString(" start | end | peak | growth | flat |\n|---|" + strings.Repeat("---:|", points) + "---:|---:|---:|---:|---|\n")
	for _, m := range r.Memory {
		fmt.Fprintf(&b, "| %s |", m.Component)
		for i := 0; i < points; i++ {
			if i < len(m.Timeline) {
				fmt.Fprintf(&b, " %.1f |", m.Timeline[i])
			} else {
				b.WriteString(" – |")
			}
		}
		flat := "yes"
		switch {
		case !m.Judged:
			flat = "not judged (too few samples)"
		case !m.Flat:
			flat = "**NO**"
		}
		fmt.Fprintf(&b, " %.1f | %.1f | %.1f | %+.1f%% | %s |\n", m.StartMiB, m.EndMiB, m.PeakMiB, m.GrowthPercent, flat)
	}
	b.WriteString("\n")
	if r.Step != nil {
		if sentences := holdSentences(r.Step, "the soak's hold"); sentences != "" {
			b.WriteString(sentences + "\n")
		}
	}
	if r.Aging != nil {
		b.WriteString(r.Aging.sentence() + "\n")
	}
	if r.Redis != nil {
		b.WriteString(r.Redis.markdown(time.Duration(r.RetentionSeconds * float64(time.Second))))
	}
	return b.String()
}
