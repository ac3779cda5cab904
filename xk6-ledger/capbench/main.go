// Command capbench measures k6's own CPU per operation while a capacity-style
// script runs at a fixed arrival rate against a trivial in-process ledger
// that answers every route the scenarios use (sign-up 201, sessions 201,
// deposits/withdrawals/transfers 200 settled, transactions and accounts 200).
// Variants (scripts, k6 flags, environment) run alternated, and the medians
// are reported side by side.
//
// CPU is the k6 process's utime+stime from /proc/<pid>/stat, read when the
// script logs "capacity: load starts" (end of setup) and again when the load
// window (RAMP_DURATION + STEP_DURATION, after a 5 s WARM_UP) has passed, divided by the money
// operations the endpoint answered meanwhile: the same window `ledgerproof
// capacity` samples. The whole process (VU init, setup, summary) is reported
// too, per operation of the window.
//
//	go run ./xk6-ledger/capbench --k6 bin/k6 --rate 2000 --seconds 20 --repeats 3 \
//	  --variant 'current=scenarios/capacity.js' \
//	  --variant 'no-thresholds=scenarios/capacity.js --no-thresholds' \
//	  --variant 'gogc100=scenarios/capacity.js GOGC=100'
//
// A variant is "name=script [k6 flags...] [NAME=value...]": words after the
// script that start with '-' (and the word after -e/--env) go to k6 run,
// NAME=value words set the k6 process's environment.
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
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// capacityWarmUp is the WARM_UP given to the script: the step starts when it
// ends, and so does the measured window.
const capacityWarmUp = 5 * time.Second

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "capbench:", err)
		os.Exit(1)
	}
}

type variant struct {
	name, script string
	args, env    []string
}

type variants []variant

func (v *variants) String() string { return "" }

func (v *variants) Set(text string) error {
	name, rest, ok := strings.Cut(text, "=")
	words := strings.Fields(rest)
	if !ok || name == "" || len(words) == 0 {
		return fmt.Errorf("variant %q: want name=script [flags] [NAME=value]", text)
	}
	item := variant{name: name, script: words[0]}
	for i := 1; i < len(words); i++ {
		word := words[i]
		switch {
		case (word == "-e" || word == "--env") && i+1 < len(words):
			item.args = append(item.args, word, words[i+1])
			i++
		case strings.HasPrefix(word, "-"):
			item.args = append(item.args, word)
		case strings.Contains(word, "="):
			item.env = append(item.env, word)
		default:
			return fmt.Errorf("variant %q: unexpected word %q", text, word)
		}
	}
	*v = append(*v, item)
	return nil
}

// keep leaves the run directories in place (--keep).
var keep bool

type measurement struct {
	Variant          string  `json:"variant"`
	Operations       int64   `json:"operations"`
	WindowCPUSeconds float64 `json:"window_cpu_seconds"`
	CPUMsPerOp       float64 `json:"cpu_ms_per_op"`
	TotalCPUMsPerOp  float64 `json:"total_cpu_ms_per_op"`
	MaxRSSMB         float64 `json:"max_rss_mb"`
	WallSeconds      float64 `json:"wall_seconds"`
}

func run() error {
	var list variants
	k6 := flag.String("k6", "bin/k6", "the custom k6 binary (make k6)")
	rate := flag.Int("rate", 2000, "operations per second (STEPS=TARGET_TPS=rate, RAMP_DURATION=0s)")
	seconds := flag.Int("seconds", 20, "seconds of load (STEP_DURATION)")
	accounts := flag.Int("accounts", 200, "ACCOUNTS")
	repeats := flag.Int("repeats", 3, "runs of each variant, alternated")
	output := flag.String("output", "", "write the measurements as JSON to this file")
	flag.BoolVar(&keep, "keep", false, "keep each run's RUN_DIR (capacity.json, k6-summary.json, k6.log) and print it")
	flag.Var(&list, "variant", "name=script [k6 flags] [NAME=value] (repeatable)")
	flag.Parse()
	if len(list) == 0 {
		return errors.New("give at least one --variant")
	}
	if _, err := os.Stat(*k6); err != nil {
		return fmt.Errorf("%s: %w (build it with make k6)", *k6, err)
	}
	ticks := float64(100) // USER_HZ on Linux

	var money, ids atomic.Int64
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := &http.Server{Handler: fakeLedger(&money, &ids), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }()
	defer server.Shutdown(context.Background())
	baseURL := "http://" + listener.Addr().String()

	fmt.Printf("capbench: %d/s for %ds, %d accounts, %d runs of %d variants alternated, %d CPUs, endpoint %s\n",
		*rate, *seconds, *accounts, *repeats, len(list), runtime.NumCPU(), baseURL)
	results := map[string][]measurement{}
	for repeat := range *repeats {
		order := slices.Clone(list)
		if repeat%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			m, err := runK6(*k6, v, baseURL, *rate, *seconds, *accounts, &money, ticks)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", v.name, repeat+1, err)
			}
			results[v.name] = append(results[v.name], m)
			fmt.Printf("capbench: run %d %-24s %6d ops %.3f CPU-ms/op in the window, %.3f whole run, %4.0f MB RSS\n",
				repeat+1, v.name, m.Operations, m.CPUMsPerOp, m.TotalCPUMsPerOp, m.MaxRSSMB)
		}
	}
	median := func(name string, field func(measurement) float64) float64 {
		values := []float64{}
		for _, m := range results[name] {
			values = append(values, field(m))
		}
		slices.Sort(values)
		return values[len(values)/2]
	}
	fmt.Printf("\n| variant | k6 CPU-ms/op (load window, median) | whole run | max RSS MB |\n|---|---:|---:|---:|\n")
	medians := map[string]float64{}
	for _, v := range list {
		window := median(v.name, func(m measurement) float64 { return m.CPUMsPerOp })
		medians[v.name] = window
		fmt.Printf("| %s | %.3f | %.3f | %.0f |\n", v.name, window,
			median(v.name, func(m measurement) float64 { return m.TotalCPUMsPerOp }),
			median(v.name, func(m measurement) float64 { return m.MaxRSSMB }))
	}
	if *output != "" {
		data, _ := json.MarshalIndent(map[string]any{"runs": results, "medians_cpu_ms_per_op": medians}, "", "  ")
		return os.WriteFile(*output, data, 0o644)
	}
	return nil
}

// fakeLedger answers every route of sut/openapi.yaml the scenarios call, at once, with fixed bodies.
func fakeLedger(money, ids *atomic.Int64) http.Handler {
	settled := func(kind string) []byte {
		return []byte(`{"transaction_id":"00000000-0000-8000-8000-000000000000","kind":"` + kind +
			`","status":"settled","amount":100,"source_account_id":1,"destination_account_id":2}` + "\n")
	}
	deposit, withdrawal, transfer := settled("deposit"), settled("withdrawal"), settled("transfer")
	write := func(w http.ResponseWriter, status int, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var request struct {
			Email string `json:"email"`
		}
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/users":
			_ = json.Unmarshal(body, &request)
			id := ids.Add(1)
			answer, _ := json.Marshal(map[string]any{"user_id": id, "account_id": id, "email": request.Email})
			write(w, http.StatusCreated, answer)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/sessions":
			id := ids.Add(1)
			answer, _ := json.Marshal(map[string]any{"token": "t" + strconv.FormatInt(id, 10), "user_id": id, "account_id": id,
				"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
			write(w, http.StatusCreated, answer)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/deposits":
			money.Add(1)
			write(w, http.StatusOK, deposit)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/withdrawals":
			money.Add(1)
			write(w, http.StatusOK, withdrawal)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/transfers":
			money.Add(1)
			write(w, http.StatusOK, transfer)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/transactions/"):
			write(w, http.StatusOK, transfer)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/accounts/"):
			id := strings.TrimPrefix(r.URL.Path, "/v1/accounts/")
			write(w, http.StatusOK, []byte(`{"account_id":`+id+`,"balance":1000000}`+"\n"))
		default:
			write(w, http.StatusNotFound, []byte(`{"code":"not_found","message":"no such route"}`+"\n"))
		}
	})
}

func cpuTicks(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	user, _ := strconv.ParseFloat(fields[11], 64)
	system, _ := strconv.ParseFloat(fields[12], 64)
	return user + system, nil
}

func runK6(k6 string, v variant, baseURL string, rate, seconds, accounts int, money *atomic.Int64, ticks float64) (measurement, error) {
	runDir, err := os.MkdirTemp("", "capbench-")
	if err != nil {
		return measurement{}, err
	}
	if keep {
		fmt.Printf("capbench: %s: run directory %s\n", v.name, runDir)
	} else {
		defer os.RemoveAll(runDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"run", "--no-usage-report",
		"-e", "BASE_URL=" + baseURL, "-e", "RUN_DIR=" + runDir, "-e", fmt.Sprintf("ACCOUNTS=%d", accounts),
		"-e", fmt.Sprintf("TARGET_TPS=%d", rate), "-e", fmt.Sprintf("STEPS=%d", rate), "-e", "RAMP_DURATION=0s",
		"-e", fmt.Sprintf("STEP_DURATION=%ds", seconds), "-e", "STEP_GAP=1s", "-e", "WAIT=5s", "-e", "SEED=7",
		"-e", fmt.Sprintf("WARM_UP=%ds", int(capacityWarmUp.Seconds()))}
	args = append(append(args, v.args...), v.script)
	command := exec.CommandContext(ctx, k6, args...)
	command.Env = append(os.Environ(), v.env...)
	log, err := os.Create(filepath.Join(runDir, "k6.log"))
	if err != nil {
		return measurement{}, err
	}
	defer log.Close()
	pipe, err := command.StderrPipe()
	if err != nil {
		return measurement{}, err
	}
	command.Stdout = log
	started := time.Now()
	if err := command.Start(); err != nil {
		return measurement{}, err
	}
	loadStarts := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(pipe)
		once := false
		for scanner.Scan() {
			line := scanner.Text()
			fmt.Fprintln(log, line)
			if !once && strings.Contains(line, "capacity: load starts") {
				once = true
				close(loadStarts)
			}
		}
	}()
	m := measurement{Variant: v.name}
	var before, after float64
	var opsBefore int64
	select {
	case <-loadStarts:
		// The window is the step's, after the VUs' warm-up (as
		// `ledgerproof capacity` samples it).
		time.Sleep(capacityWarmUp)
		before, err = cpuTicks(command.Process.Pid)
		opsBefore = money.Load()
		if err == nil {
			time.Sleep(time.Duration(seconds)*time.Second + 500*time.Millisecond)
			after, err = cpuTicks(command.Process.Pid)
			m.Operations = money.Load() - opsBefore
		}
	case <-time.After(5 * time.Minute):
		err = errors.New("no 'capacity: load starts' line within 5 minutes")
	}
	waitErr := command.Wait()
	if err == nil {
		err = waitErr
	}
	if err != nil {
		return m, fmt.Errorf("k6: %w\n%s", err, stack.LogTail(log.Name(), 20))
	}
	if m.Operations < int64(rate*seconds)*9/10 {
		return m, fmt.Errorf("only %d operations in the window, want about %d\n%s", m.Operations, rate*seconds, stack.LogTail(log.Name(), 20))
	}
	state := command.ProcessState
	m.WallSeconds = time.Since(started).Seconds()
	m.WindowCPUSeconds = (after - before) / ticks
	m.CPUMsPerOp = 1000 * m.WindowCPUSeconds / float64(m.Operations)
	m.TotalCPUMsPerOp = 1000 * (state.UserTime() + state.SystemTime()).Seconds() / float64(m.Operations)
	if usage, ok := state.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSSMB = float64(usage.Maxrss) / 1024
	}
	return m, nil
}
