// Command cpubench measures what the xk6-ledger client and its journal cost
// in k6's CPU per operation, against a plain k6/http script that sends the
// same requests, both against one trivial in-process endpoint, alternating
// runs side by side and reporting medians (`make bench-k6`).
//
// CPU is the k6 process's user+system time (getrusage of the child), divided
// by the number of operations; the endpoint's own CPU is not counted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cpubench:", err)
		os.Exit(1)
	}
}

type measurement struct {
	Script           string  `json:"script"`
	CPUMicrosPerOp   float64 `json:"cpu_us_per_op"`
	WallSeconds      float64 `json:"wall_seconds"`
	Requests         int64   `json:"requests"`
	JournalLines     int     `json:"journal_lines,omitempty"`
	OperationsPerCPU float64 `json:"operations_per_cpu_second"`
}

func run() error {
	k6 := flag.String("k6", "bin/k6", "the custom k6 binary (make k6)")
	scripts := flag.String("scripts", "xk6-ledger/cpubench", "folder holding ledger.js and plain.js")
	iterations := flag.Int("iterations", 20000, "operations per run")
	vus := flag.Int("vus", 8, "virtual users")
	repeats := flag.Int("repeats", 5, "runs of each script, alternated")
	output := flag.String("output", "", "write the measurements as JSON to this file")
	flag.Parse()
	if *iterations < 100 || *repeats < 1 || *vus < 1 {
		return errors.New("need --iterations >= 100, --repeats >= 1, --vus >= 1")
	}
	if _, err := os.Stat(*k6); err != nil {
		return fmt.Errorf("%s: %w (build it with make k6)", *k6, err)
	}

	var requests atomic.Int64
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The trivial endpoint: read the body, answer a settled transfer.
	answer := []byte(`{"transaction_id":"00000000-0000-8000-8000-000000000000","kind":"transfer","status":"settled","amount":100,"source_account_id":1,"destination_account_id":2}` + "\n")
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }()
	defer server.Shutdown(context.Background())
	baseURL := "http://" + listener.Addr().String()

	fmt.Printf("cpubench: %d operations per run, %d VUs, %d runs of each script alternated, %d CPUs, endpoint %s\n",
		*iterations, *vus, *repeats, runtime.NumCPU(), baseURL)
	results := map[string][]measurement{}
	for repeat := range *repeats {
		order := []string{"plain", "ledger", "ledger-no-journal"}
		if repeat%2 == 1 {
			slices.Reverse(order)
		}
		for _, script := range order {
			before := requests.Load()
			file, journal := script, "on"
			if script == "ledger-no-journal" {
				file, journal = "ledger", "off"
			}
			m, err := runK6(*k6, filepath.Join(*scripts, file+".js"), baseURL, *iterations, *vus, journal)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", script, repeat+1, err)
			}
			m.Requests = requests.Load() - before
			if m.Requests != int64(*iterations) {
				return fmt.Errorf("%s run %d: the endpoint saw %d requests, want %d", script, repeat+1, m.Requests, *iterations)
			}
			if journal == "on" && file == "ledger" && m.JournalLines != *iterations {
				return fmt.Errorf("ledger run %d: the journal has %d lines, want %d", repeat+1, m.JournalLines, *iterations)
			}
			m.Script = script
			results[script] = append(results[script], m)
			fmt.Printf("cpubench: run %d %-17s %6.1f µs CPU/op, %5.1fs wall\n", repeat+1, script, m.CPUMicrosPerOp, m.WallSeconds)
		}
	}
	median := func(script string) float64 {
		values := []float64{}
		for _, m := range results[script] {
			values = append(values, m.CPUMicrosPerOp)
		}
		slices.Sort(values)
		return values[len(values)/2]
	}
	plain, ledger, bare := median("plain"), median("ledger"), median("ledger-no-journal")
	fmt.Printf("\n%-28s %s\n", "script", "k6 CPU per operation (median)")
	fmt.Printf("%-28s %.1f µs\n", "plain k6/http", plain)
	fmt.Printf("%-28s %.1f µs\n", "xk6-ledger, no journal", bare)
	fmt.Printf("%-28s %.1f µs\n", "xk6-ledger with journal", ledger)
	fmt.Printf("ratio ledger/plain: %.2f×  (%+.1f µs per operation); the journal itself: %+.1f µs per operation\n",
		ledger/plain, ledger-plain, ledger-bare)
	if *output != "" {
		data, _ := json.MarshalIndent(map[string]any{"runs": results, "plain_median_us": plain, "ledger_median_us": ledger,
			"ledger_no_journal_median_us": bare, "ratio": ledger / plain}, "", "  ")
		if err := os.WriteFile(*output, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func runK6(k6, script, baseURL string, iterations, vus int, journal string) (measurement, error) {
	runDir, err := os.MkdirTemp("", "cpubench-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(runDir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	command := exec.CommandContext(ctx, k6, "run", "--quiet", "--no-usage-report",
		"-e", "BASE_URL="+baseURL, "-e", "RUN_DIR="+runDir, "-e", "JOURNAL="+journal,
		"-e", fmt.Sprintf("ITERATIONS=%d", iterations), "-e", fmt.Sprintf("VUS=%d", vus), script)
	log, err := os.Create(filepath.Join(runDir, "k6.log"))
	if err != nil {
		return measurement{}, err
	}
	defer log.Close()
	command.Stdout, command.Stderr = log, log
	started := time.Now()
	if err := command.Run(); err != nil {
		return measurement{}, fmt.Errorf("k6: %w\n%s", err, stack.LogTail(log.Name(), 20))
	}
	state := command.ProcessState
	cpu := state.UserTime() + state.SystemTime()
	m := measurement{WallSeconds: time.Since(started).Seconds(), CPUMicrosPerOp: float64(cpu.Microseconds()) / float64(iterations),
		OperationsPerCPU: float64(iterations) / cpu.Seconds()}
	if journal, err := os.Open(filepath.Join(runDir, "journal.jsonl")); err == nil {
		scanner := bufio.NewScanner(journal)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			m.JournalLines++
		}
		journal.Close()
	}
	return m, nil
}
