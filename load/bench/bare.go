package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Lines the bare client process prints: the first when its loop starts (the benchmark reads the process's CPU
// then), the second at the end with the result as JSON.
const (
	bareStartLine    = "bench-load bare: start"
	bareResultPrefix = "bench-load bare result: "
)

// BareConfig is the bare client loop: the generator's requests, sent by the simplest paced loop net/http
// allows, for comparison.
type BareConfig struct {
	// BaseURL is the endpoint's base URL. Required.
	BaseURL string
	// Rate is requests per second; Duration how long. Rate × Duration requests are sent (rounded down).
	Rate     float64
	Duration time.Duration
	// Workers is the number of goroutines sending (each sends every Workers-th request); it bounds the
	// requests in flight and the connections. Default 64.
	Workers int
	// Accounts is how many account ids (1 to Accounts) the requests name. Default 200.
	Accounts int
	// Mix weights the routes as the generator's workload does (deposit, withdrawal, transfer). Default the
	// gate's 3, 2, 5.
	Mix [3]float64
	// Wait is sent as "Prefer: wait=N", as the generator's client does. Default 5s.
	Wait time.Duration
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// Seed drives the route, account and amount choices.
	Seed int64
}

// BareResult is what the bare loop did.
type BareResult struct {
	// Requests were sent; OK answered 200; Failed got no answer or another status.
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Failed   int64 `json:"failed"`
	// Seconds is from the loop's start to its last answer.
	Seconds float64 `json:"seconds"`
	// BehindMaxMilliseconds is the most a request was sent after it was due (the loop fell behind).
	BehindMaxMilliseconds float64 `json:"behind_max_ms"`
	// FirstError describes the first failure, if any.
	FirstError string `json:"first_error,omitempty"`
}

func (c *BareConfig) validate() error {
	if c.BaseURL == "" {
		return errors.New("bare: no base URL")
	}
	if c.Rate <= 0 || c.Rate > 1_000_000 || c.Duration <= 0 || c.Duration > time.Hour {
		return fmt.Errorf("bare: rate %v for %s: want a rate in (0, 1000000] for at most an hour", c.Rate, c.Duration)
	}
	if c.Workers == 0 {
		c.Workers = 64
	}
	if c.Workers < 1 || c.Workers > 10_000 {
		return fmt.Errorf("bare: %d workers: want 1 to 10000", c.Workers)
	}
	if c.Accounts == 0 {
		c.Accounts = 200
	}
	if c.Accounts < 2 {
		return fmt.Errorf("bare: %d accounts: want at least 2", c.Accounts)
	}
	if c.Mix == [3]float64{} {
		c.Mix = [3]float64{3, 2, 5}
	}
	if c.Mix[0] < 0 || c.Mix[1] < 0 || c.Mix[2] < 0 || c.Mix[0]+c.Mix[1]+c.Mix[2] <= 0 {
		return fmt.Errorf("bare: mix %v: weights must be 0 or more, one above 0", c.Mix)
	}
	if c.Wait == 0 {
		c.Wait = 5 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	return nil
}

// bareRoutes are the money routes, in the order of BareConfig.Mix.
var bareRoutes = [3]string{"/v1/deposits", "/v1/withdrawals", "/v1/transfers"}

// RunBare sends the requests and returns what came back. started, when set, is called as the loop starts.
// The loop is bounded by the request count, each request by Timeout, and the whole by ctx.
func RunBare(ctx context.Context, config BareConfig, started func()) (BareResult, error) {
	if err := config.validate(); err != nil {
		return BareResult{}, err
	}
	base := strings.TrimRight(config.BaseURL, "/")
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: config.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        config.Workers,
		MaxIdleConnsPerHost: config.Workers,
		MaxConnsPerHost:     config.Workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Transport: transport, Timeout: config.Timeout}
	prefer := "wait=" + strconv.FormatFloat(config.Wait.Seconds(), 'f', -1, 64)
	total := int64(config.Rate * config.Duration.Seconds())
	interval := float64(time.Second) / config.Rate
	mixTotal := config.Mix[0] + config.Mix[1] + config.Mix[2]

	var sent, ok, failed atomic.Int64
	var behindMax atomic.Int64
	var lastAnswer atomic.Int64
	var firstError sync.Once
	var firstErrorText string
	fail := func(text string) {
		failed.Add(1)
		firstError.Do(func() { firstErrorText = text })
	}
	if started != nil {
		started()
	}
	start := time.Now()
	var workers sync.WaitGroup
	for worker := range config.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			random := mathrand.New(mathrand.NewPCG(uint64(config.Seed), uint64(worker)))
			body := make([]byte, 0, 96)
			var key [16]byte
			for n := int64(worker); n < total && ctx.Err() == nil; n += int64(config.Workers) {
				due := start.Add(time.Duration(float64(n) * interval))
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				} else {
					for behind := -int64(wait); ; {
						seen := behindMax.Load()
						if behind <= seen || behindMax.CompareAndSwap(seen, behind) {
							break
						}
					}
				}
				pick := random.Float64() * mixTotal
				route := 2
				switch {
				case pick < config.Mix[0]:
					route = 0
				case pick < config.Mix[0]+config.Mix[1]:
					route = 1
				}
				from := 1 + random.Int64N(int64(config.Accounts))
				to := 1 + (from+random.Int64N(int64(config.Accounts-1)))%int64(config.Accounts)
				amount := 1 + random.Int64N(1000)
				body = body[:0]
				switch route {
				case 0:
					body = strconv.AppendInt(append(body, `{"account_id":`...), to, 10)
				case 1:
					body = strconv.AppendInt(append(body, `{"account_id":`...), from, 10)
				default:
					body = strconv.AppendInt(append(body, `{"from_account_id":`...), from, 10)
					body = strconv.AppendInt(append(body, `,"to_account_id":`...), to, 10)
				}
				body = strconv.AppendInt(append(body, `,"amount":`...), amount, 10)
				body = append(body, '}')
				_, _ = rand.Read(key[:])

				request, err := http.NewRequestWithContext(ctx, http.MethodPost, base+bareRoutes[route], bytes.NewReader(body))
				if err != nil {
					fail(err.Error())
					continue
				}
				request.Header["Accept"] = []string{"application/json"}
				request.Header["User-Agent"] = []string{"ledgerproof-bare"}
				request.Header["Content-Type"] = []string{"application/json"}
				request.Header["Authorization"] = []string{"Bearer t"}
				request.Header["Idempotency-Key"] = []string{hex.EncodeToString(key[:])}
				request.Header["Prefer"] = []string{prefer}
				sent.Add(1)
				response, err := httpClient.Do(request)
				if err != nil {
					fail(err.Error())
					continue
				}
				_, readErr := io.Copy(io.Discard, io.LimitReader(response.Body, 64<<10))
				response.Body.Close()
				lastAnswer.Store(int64(time.Since(start)))
				switch {
				case readErr != nil:
					fail("reading the answer: " + readErr.Error())
				case response.StatusCode != http.StatusOK:
					fail("HTTP " + response.Status)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	workers.Wait()
	result := BareResult{Requests: sent.Load(), OK: ok.Load(), Failed: failed.Load(),
		Seconds: time.Duration(lastAnswer.Load()).Seconds(), BehindMaxMilliseconds: float64(behindMax.Load()) / 1e6,
		FirstError: firstErrorText}
	if ctx.Err() != nil {
		return result, fmt.Errorf("bare: interrupted after %d of %d requests", result.Requests, total)
	}
	return result, nil
}

// Bare is the bare client process: it prints its start line, runs the loop and prints its result line.
func Bare(ctx context.Context, config BareConfig, out io.Writer) error {
	result, err := RunBare(ctx, config, func() { fmt.Fprintln(out, bareStartLine) })
	if err != nil {
		return err
	}
	line, err := json.Marshal(result)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s%s\n", bareResultPrefix, line)
	return err
}
