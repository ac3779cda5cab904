package bench

import (
	"bytes"
	"runtime/trace"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/generator"
	"github.com/ledgerproof/ledgerproof/load/scenario"
)

// TEMPORARY: profiling harness, deleted before handing back.
func TestZZProfileGenerator(t *testing.T) {
	target := os.Getenv("BENCH_TARGET")
	if target == "" {
		t.Skip("BENCH_TARGET not set")
	}
	rate := os.Getenv("BENCH_RATE")
	if rate == "" {
		rate = "10000"
	}
	path := t.TempDir() + "/s.yaml"
	cfg := DefaultConfig()
	cfg.Address = "127.0.0.1:1"
	cfg.Rate, _ = strconv.ParseFloat(rate, 64)
	os.WriteFile(path, []byte(scenarioText(cfg)), 0o644)
	s, err := scenario.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	result, err := generator.Run(context.Background(), generator.Config{Scenario: s, BaseURLs: []string{target}, RunDir: os.Getenv("BENCH_RUNDIR"), Seed: 1, Output: &traceStarter{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exit %d in %s", result.ExitCode, time.Since(started))
}

func TestZZProfileBare(t *testing.T) {
	target := os.Getenv("BENCH_TARGET")
	if target == "" {
		t.Skip("BENCH_TARGET not set")
	}
	rate, _ := strconv.ParseFloat(os.Getenv("BENCH_RATE"), 64)
	result, err := RunBare(context.Background(), BareConfig{BaseURL: target, Rate: rate, Duration: 10 * time.Second, Seed: 1}, nil)
	t.Logf("%+v %v", result, err)
}

type traceStarter struct{ done bool }

func (w *traceStarter) Write(p []byte) (int, error) {
	os.Stdout.Write(p)
	if !w.done && bytes.Contains(p, []byte("constant-arrival-rate,")) && os.Getenv("BENCH_TRACE") != "" {
		w.done = true
		f, _ := os.Create(os.Getenv("BENCH_TRACE"))
		trace.Start(f)
		go func() { time.Sleep(1500 * time.Millisecond); trace.Stop(); f.Close() }()
	}
	return len(p), nil
}
