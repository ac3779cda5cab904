// Package bench measures how fast the worker's batched apply moves money into
// Postgres, against the naive design (one Postgres transaction per request
// that locks both account rows), on the same Postgres, in the same run.
//
// Every mode applies the same seeded workload of transfers between random
// distinct accounts, split into Partitions sequential streams (a transfer goes
// to the partition of its source account, as the gateway routes it), applied
// by Partitions goroutines through one pool of PoolSize connections:
//
//   - batched mode B: each goroutine applies its partition's commands through
//     postgres.(*Store).ApplyBatch, B records at a time, with consecutive
//     offsets (the real worker's apply);
//   - naive mode: each goroutine calls postgres.(*Store).ApplyOne per command.
//
// Each mode run gets a fresh database (same table sizes for every mode),
// untimed setup and warm-up, a timed section bounded by a count and a time
// cap, and then a ledger check that fails the benchmark loudly if money was
// created or destroyed or a transfer was not applied exactly once. Modes are
// interleaved (naive, 1, 16, 128, 512, naive, ...) Repeats times, so a noisy
// neighbour slows every mode rather than one, and the median is reported.
package bench

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// ModeNaive names the one-transaction-per-request baseline in results.
const ModeNaive = "naive"

// ModeBatched names the worker's batched apply in results.
const ModeBatched = "batched"

// Topics of the records the benchmark applies. Funding has its own topic so
// the transfer partitions' offsets count transfers only.
const (
	transfersTopic = "bench.transfers"
	fundingTopic   = "bench.funding"
)

// Limits that keep a configuration from asking for something absurd.
const (
	maxBatchSize  = 10_000
	maxPartitions = 256
	maxRepeats    = 25
	maxAccounts   = 1_000_000
	maxTransfers  = 10_000_000
)

// setupConcurrency is how many goroutines create users during setup.
const setupConcurrency = 8

// fundingBatchSize is the number of deposits per funding batch.
const fundingBatchSize = 500

// Config configures a benchmark run. Start from DefaultConfig; Run validates.
type Config struct {
	// PostgresURL, if set, is an existing Postgres server (URL form,
	// postgres://...) to run on. Each mode run creates a fresh database on
	// that server (the role needs CREATEDB) and drops it afterwards, so the
	// database the URL names is never written. Default "": start a private
	// Postgres 15 cluster (initdb into a temporary directory, free port,
	// fsync=on, synchronous_commit=on, full_page_writes=on: the honest
	// production setting) and stop and remove it at the end.
	PostgresURL string
	// PostgresBinDir holds initdb and postgres for the private cluster.
	// Default "": /usr/lib/postgresql/15/bin, then PATH (see
	// stack.PostgresBinDir).
	PostgresBinDir string
	// WorkDir is where the private cluster's temporary directory is created.
	// Default "": the OS temporary directory. Its parents must be searchable
	// by the postgres OS user when run as root.
	WorkDir string

	// Accounts is the number of user accounts, each funded with
	// InitialBalanceMinor. Default 1,000: enough that random transfers rarely
	// contend for a row, as in a real ledger, yet quick to set up.
	Accounts int
	// InitialBalanceMinor funds every account. Default 1,000,000 (10,000.00):
	// far above what the default workload can drain, so transfers settle
	// and every mode does the same work.
	InitialBalanceMinor int64
	// Partitions is the number of sequential streams, each applied by its own
	// goroutine. Default 8: the worker applies up to 8 partitions concurrently.
	Partitions int
	// PoolSize is the connection pool of the timed store, the same for every
	// mode. Default 16, the store's default; at least Partitions.
	PoolSize int
	// BatchSizes are the batched modes' batch sizes. Default 1, 16, 128, 512.
	// The largest is the one RequireRatio is checked on.
	BatchSizes []int
	// Transfers is the timed count of a batched mode run. Default 20,000.
	Transfers int
	// NaiveTransfers is the timed count of a naive mode run. Default 5,000:
	// the naive design is slower, and rates are per second, so a shorter run
	// measures it as fairly while keeping the benchmark short. The naive
	// workload is a prefix of the batched one.
	NaiveTransfers int
	// WarmupTransfers are applied, untimed, in the mode under test before
	// its timed section, so connections, prepared statements and caches are
	// warm. Default 2,000. Zero disables warm-up.
	WarmupTransfers int
	// ModeTimeCap bounds a timed section: when it passes, the partitions stop
	// after their current batch or command and the rate is what was applied
	// in the time taken. Default 10s: batch size 1 is as slow as naive, and
	// the whole benchmark must stay within a few minutes.
	ModeTimeCap time.Duration
	// Repeats is how many times each mode runs, interleaved; the median is
	// reported. Default 3.
	Repeats int
	// Seed drives the workload (accounts and amounts of every transfer). The
	// same seed gives the same workload. Default 1.
	Seed uint64
	// RequireRatio, if positive, makes Run fail with ErrRatioNotMet when the
	// largest batch size's median rate is below RequireRatio times the naive
	// median. Default 0: report only.
	RequireRatio float64
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// BatchedOnly skips the naive mode (ledgerproof capacity's calibration
	// measures one batched apply of a fixed size).
	BatchedOnly bool
	// Timed, when set, is called just before (true) and just after (false)
	// each mode run's timed section, so a caller can measure what the
	// section cost (the calibration samples CPU there).
	Timed func(begin bool)
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Accounts:            1_000,
		InitialBalanceMinor: 1_000_000,
		Partitions:          8,
		PoolSize:            16,
		BatchSizes:          []int{1, 16, 128, 512},
		Transfers:           20_000,
		NaiveTransfers:      5_000,
		WarmupTransfers:     2_000,
		ModeTimeCap:         10 * time.Second,
		Repeats:             3,
		Seed:                1,
		Now:                 time.Now,
	}
}

func (c Config) validate() error {
	var problems []string
	if c.BatchedOnly && c.RequireRatio > 0 {
		problems = append(problems, "a required ratio to naive needs the naive mode (BatchedOnly is set)")
	}
	check := func(ok bool, format string, arguments ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, arguments...))
		}
	}
	check(c.Accounts >= 2 && c.Accounts <= maxAccounts, "accounts %d must be between 2 and %d (a transfer needs two distinct accounts)", c.Accounts, maxAccounts)
	check(c.InitialBalanceMinor > 0 && c.InitialBalanceMinor <= ledger.MaxAmountMinor, "initial balance %d must be between 1 and %d minor units", c.InitialBalanceMinor, ledger.MaxAmountMinor)
	check(c.Partitions >= 1 && c.Partitions <= maxPartitions, "partitions %d must be between 1 and %d", c.Partitions, maxPartitions)
	check(c.PoolSize >= c.Partitions, "pool size %d must be at least partitions %d, or partitions would queue for connections", c.PoolSize, c.Partitions)
	check(c.PoolSize <= 1_000, "pool size %d is above 1000", c.PoolSize)
	check(len(c.BatchSizes) > 0, "at least one batch size is required")
	seen := map[int]bool{}
	for _, size := range c.BatchSizes {
		check(size >= 1 && size <= maxBatchSize, "batch size %d must be between 1 and %d", size, maxBatchSize)
		check(!seen[size], "batch size %d is listed twice", size)
		seen[size] = true
	}
	check(c.Transfers >= 1 && c.Transfers <= maxTransfers, "transfers %d must be between 1 and %d", c.Transfers, maxTransfers)
	check(c.NaiveTransfers >= 1 && c.NaiveTransfers <= maxTransfers, "naive transfers %d must be between 1 and %d", c.NaiveTransfers, maxTransfers)
	check(c.WarmupTransfers >= 0 && c.WarmupTransfers <= maxTransfers, "warm-up transfers %d must be between 0 and %d", c.WarmupTransfers, maxTransfers)
	check(c.ModeTimeCap > 0, "mode time cap %v must be positive", c.ModeTimeCap)
	check(c.Repeats >= 1 && c.Repeats <= maxRepeats, "repeats %d must be between 1 and %d", c.Repeats, maxRepeats)
	check(c.RequireRatio >= 0, "required ratio %v must not be negative", c.RequireRatio)
	if c.PostgresURL != "" {
		parsed, err := url.Parse(c.PostgresURL)
		check(err == nil && (parsed.Scheme == "postgres" || parsed.Scheme == "postgresql") && parsed.Host != "",
			"postgres URL must have the form postgres://user@host:port/database (the benchmark derives one fresh database per mode run from it)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("bench: invalid config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// ErrRatioNotMet is returned (wrapped) by Run when Config.RequireRatio is set
// and the largest batch size is not that many times faster than naive.
var ErrRatioNotMet = errors.New("required ratio to naive not met")

// ErrLedgerInconsistent is returned (wrapped) when a mode run leaves the
// ledger broken. It is a bug in the apply path, never noise.
var ErrLedgerInconsistent = errors.New("ledger inconsistent")

// Result is what a benchmark measured. It is written as JSON by the CLI.
type Result struct {
	Seed                uint64  `json:"seed"`
	Accounts            int     `json:"accounts"`
	InitialBalanceMinor int64   `json:"initial_balance_minor"`
	Partitions          int     `json:"partitions"`
	PoolSize            int     `json:"pool_size"`
	Transfers           int     `json:"transfers"`
	NaiveTransfers      int     `json:"naive_transfers"`
	WarmupTransfers     int     `json:"warmup_transfers"`
	ModeTimeCapSeconds  float64 `json:"mode_time_cap_seconds"`
	Repeats             int     `json:"repeats"`
	Machine             Machine `json:"machine"`
	Postgres            Server  `json:"postgres"`
	// Modes holds one summary per mode, naive first, then batch sizes in
	// the configured order.
	Modes []ModeSummary `json:"modes"`
	// Runs holds every mode run in the order they ran.
	Runs []RunResult `json:"runs"`
	// RequiredRatio is Config.RequireRatio; RatioMet says whether the
	// largest batch size reached it (true when none was required).
	RequiredRatio   float64 `json:"required_ratio"`
	RatioMet        bool    `json:"ratio_met"`
	StartedAt       string  `json:"started_at"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs         int    `json:"cpus"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	CPUModel     string `json:"cpu_model,omitempty"`
}

// Server describes the Postgres the benchmark ran on, as the server reports
// its settings (not as the benchmark asked for them).
type Server struct {
	// Private is true when the benchmark started its own cluster.
	Private           bool   `json:"private"`
	Version           string `json:"version"`
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
	FullPageWrites    string `json:"full_page_writes"`
	WalSyncMethod     string `json:"wal_sync_method"`
	SharedBuffers     string `json:"shared_buffers"`
}

// ModeSummary is the median of a mode's runs and its ratio to naive.
type ModeSummary struct {
	Mode string `json:"mode"`
	// BatchSize is 0 for naive.
	BatchSize int `json:"batch_size"`
	// TransfersPerSecond are the runs' rates in run order.
	TransfersPerSecond       []float64 `json:"transfers_per_second"`
	MedianTransfersPerSecond float64   `json:"median_transfers_per_second"`
	MinTransfersPerSecond    float64   `json:"min_transfers_per_second"`
	MaxTransfersPerSecond    float64   `json:"max_transfers_per_second"`
	// RatioToNaive is this mode's median over the naive median.
	RatioToNaive float64 `json:"ratio_to_naive"`
}

// Label names the mode for people: "naive" or "batch 128".
func (m ModeSummary) Label() string { return modeLabel(m.Mode, m.BatchSize) }

func modeLabel(mode string, batchSize int) string {
	if mode == ModeNaive {
		return ModeNaive
	}
	return "batch " + strconv.Itoa(batchSize)
}

// RunResult is one timed mode run.
type RunResult struct {
	Mode      string `json:"mode"`
	BatchSize int    `json:"batch_size"`
	Repeat    int    `json:"repeat"`
	// Transfers counts commands applied in the timed section (settled or
	// rejected); Settled and Rejected split them.
	Transfers int `json:"transfers"`
	Settled   int `json:"settled"`
	Rejected  int `json:"rejected"`
	// Transactions counts Postgres transactions committed in the timed
	// section: one per batch, or one per command for naive.
	Transactions       int     `json:"transactions"`
	ElapsedSeconds     float64 `json:"elapsed_seconds"`
	TransfersPerSecond float64 `json:"transfers_per_second"`
	// StoppedByTimeCap is true when the time cap ended the timed section
	// before its count.
	StoppedByTimeCap bool `json:"stopped_by_time_cap"`
	// LedgerChecked is true once the ledger check passed.
	LedgerChecked bool `json:"ledger_checked"`
}

// mode is one thing to measure: naive, or batched with a batch size.
type mode struct {
	name      string
	batchSize int
}

func (m mode) label() string { return modeLabel(m.name, m.batchSize) }

// Run runs the benchmark, writing progress and the final table to output.
// It fails if Postgres cannot be started or reached, if any mode run leaves
// the ledger inconsistent (ErrLedgerInconsistent), or if RequireRatio is set
// and not met (ErrRatioNotMet; the Result is complete then). Everything it
// starts (Postgres, temporary directories, databases) is stopped and removed
// before it returns, also when ctx is cancelled.
func Run(ctx context.Context, config Config, output io.Writer) (Result, error) {
	if config.Now == nil {
		config.Now = time.Now
	}
	if err := config.validate(); err != nil {
		return Result{}, err
	}
	started := config.Now()
	result := Result{
		Seed: config.Seed, Accounts: config.Accounts, InitialBalanceMinor: config.InitialBalanceMinor,
		Partitions: config.Partitions, PoolSize: config.PoolSize, Transfers: config.Transfers,
		NaiveTransfers: config.NaiveTransfers, WarmupTransfers: config.WarmupTransfers,
		ModeTimeCapSeconds: config.ModeTimeCap.Seconds(), Repeats: config.Repeats,
		RequiredRatio: config.RequireRatio, StartedAt: started.UTC().Format(time.RFC3339),
		Machine: Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Architecture: runtime.GOARCH, CPUModel: cpuModel()},
	}
	fmt.Fprintf(output, "bench: seed %d, %d accounts, %d partitions, pool %d, %d transfers per batched run, %d per naive run, %d warm-up, time cap %v per run, %d repeats\n",
		config.Seed, config.Accounts, config.Partitions, config.PoolSize, config.Transfers, config.NaiveTransfers,
		config.WarmupTransfers, config.ModeTimeCap, config.Repeats)
	fmt.Fprintf(output, "bench: machine %d CPUs (%s/%s) %s\n", result.Machine.CPUs, result.Machine.OS, result.Machine.Architecture, result.Machine.CPUModel)

	adminURL := config.PostgresURL
	if adminURL == "" {
		cluster, err := startPrivatePostgres(ctx, config, output)
		if err != nil {
			return result, err
		}
		defer cluster.stop(output)
		adminURL = cluster.adminURL
		result.Postgres.Private = true
	}
	server, err := readServer(ctx, adminURL)
	if err != nil {
		return result, err
	}
	server.Private = result.Postgres.Private
	result.Postgres = server
	fmt.Fprintf(output, "bench: Postgres %s, fsync=%s, synchronous_commit=%s, full_page_writes=%s, wal_sync_method=%s, shared_buffers=%s (every commit waits for its WAL flush)\n",
		server.Version, server.Fsync, server.SynchronousCommit, server.FullPageWrites, server.WalSyncMethod, server.SharedBuffers)
	if server.Fsync != "on" || server.SynchronousCommit == "off" {
		fmt.Fprintf(output, "bench: WARNING: this server does not flush every commit to disk; the figures are not those of a durable ledger\n")
	}

	modes := []mode{{name: ModeNaive}}
	if config.BatchedOnly {
		modes = nil
	}
	for _, size := range config.BatchSizes {
		modes = append(modes, mode{name: ModeBatched, batchSize: size})
	}
	workload := newWorkload(config)
	nonce := randomNonce()
	runNumber := 0
	for repeat := 1; repeat <= config.Repeats; repeat++ {
		for _, m := range modes {
			runNumber++
			if err := ctx.Err(); err != nil {
				return result, fmt.Errorf("bench: %w", err)
			}
			database := fmt.Sprintf("lpbench_%d_%s_%d", os.Getpid(), nonce, runNumber)
			run, err := runMode(ctx, config, adminURL, database, workload, m, repeat)
			if err != nil {
				return result, fmt.Errorf("bench: %s, repeat %d: %w", m.label(), repeat, err)
			}
			result.Runs = append(result.Runs, run)
			capped := ""
			if run.StoppedByTimeCap {
				capped = " (stopped by the time cap)"
			}
			fmt.Fprintf(output, "bench: repeat %d/%d %-9s %6d transfers in %6.2fs = %8.0f transfers/s, %d transactions, %d settled, %d rejected%s; ledger consistent\n",
				repeat, config.Repeats, m.label(), run.Transfers, run.ElapsedSeconds, run.TransfersPerSecond,
				run.Transactions, run.Settled, run.Rejected, capped)
		}
	}
	result.Modes = summarize(modes, result.Runs)
	result.RatioMet = true
	largest := result.Modes[len(result.Modes)-1]
	for _, summary := range result.Modes {
		if summary.Mode == ModeBatched && summary.BatchSize > largest.BatchSize {
			largest = summary
		}
	}
	if config.RequireRatio > 0 && !(largest.RatioToNaive >= config.RequireRatio) {
		result.RatioMet = false
	}
	result.DurationSeconds = config.Now().Sub(started).Seconds()
	writeTable(output, result)
	if !result.RatioMet {
		return result, fmt.Errorf("bench: %s is %.1f× naive, below the required %.1f×: %w",
			largest.Label(), largest.RatioToNaive, config.RequireRatio, ErrRatioNotMet)
	}
	if config.RequireRatio > 0 {
		fmt.Fprintf(output, "bench: %s is %.1f× naive (required %.1f×): ok\n", largest.Label(), largest.RatioToNaive, config.RequireRatio)
	}
	return result, nil
}

// summarize computes each mode's median, range and ratio to naive.
func summarize(modes []mode, runs []RunResult) []ModeSummary {
	summaries := make([]ModeSummary, 0, len(modes))
	for _, m := range modes {
		summary := ModeSummary{Mode: m.name, BatchSize: m.batchSize}
		for _, run := range runs {
			if run.Mode == m.name && run.BatchSize == m.batchSize {
				summary.TransfersPerSecond = append(summary.TransfersPerSecond, run.TransfersPerSecond)
			}
		}
		sorted := slices.Clone(summary.TransfersPerSecond)
		slices.Sort(sorted)
		if len(sorted) > 0 {
			summary.MinTransfersPerSecond, summary.MaxTransfersPerSecond = sorted[0], sorted[len(sorted)-1]
			summary.MedianTransfersPerSecond = median(sorted)
		}
		summaries = append(summaries, summary)
	}
	naive := 0.0
	if len(summaries) > 0 && summaries[0].Mode == ModeNaive {
		naive = summaries[0].MedianTransfersPerSecond
	}
	for i := range summaries {
		if naive > 0 {
			summaries[i].RatioToNaive = summaries[i].MedianTransfersPerSecond / naive
		}
	}
	return summaries
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	middle := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[middle]
	}
	return (sorted[middle-1] + sorted[middle]) / 2
}

func writeTable(output io.Writer, result Result) {
	fmt.Fprintf(output, "\nApply rate into Postgres (fsync=%s, synchronous_commit=%s), %d partitions, pool %d, median of %d runs, seed %d:\n\n",
		result.Postgres.Fsync, result.Postgres.SynchronousCommit, result.Partitions, result.PoolSize, result.Repeats, result.Seed)
	table := tabwriter.NewWriter(output, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(table, "mode\tbatch size\ttransfers/s (median)\tmin – max\tratio to naive\t")
	for _, summary := range result.Modes {
		batch := "–"
		if summary.Mode == ModeBatched {
			batch = strconv.Itoa(summary.BatchSize)
		}
		fmt.Fprintf(table, "%s\t%s\t%.0f\t%.0f – %.0f\t%.1f×\t\n", summary.Mode, batch, summary.MedianTransfersPerSecond,
			summary.MinTransfersPerSecond, summary.MaxTransfersPerSecond, summary.RatioToNaive)
	}
	table.Flush()
	fmt.Fprintf(output, "\n(%d CPUs; run took %.0fs)\n", result.Machine.CPUs, result.DurationSeconds)
}

// workload is the seeded sequence of transfers every mode applies: the
// first WarmupTransfers are the warm-up, the rest the timed section (naive
// takes a prefix of it). Transfers name accounts by index; each mode run maps
// indexes to the users it created.
type workload struct {
	warmup, timed []plannedTransfer
}

type plannedTransfer struct {
	source, destination int
	amountMinor         int64
}

func newWorkload(config Config) workload {
	random := rand.New(rand.NewPCG(config.Seed, 0x6c65646765727072)) // "ledgerpr"
	draw := func(count int) []plannedTransfer {
		transfers := make([]plannedTransfer, count)
		for i := range transfers {
			source := random.IntN(config.Accounts)
			destination := random.IntN(config.Accounts - 1)
			if destination >= source {
				destination++ // distinct accounts, uniformly
			}
			transfers[i] = plannedTransfer{source: source, destination: destination, amountMinor: 1 + random.Int64N(1_000)}
		}
		return transfers
	}
	return workload{warmup: draw(config.WarmupTransfers), timed: draw(max(config.Transfers, config.NaiveTransfers))}
}

// expectation is what the ledger must hold after a mode run.
type expectation struct {
	// accounts is the number of user accounts; fundedMinor the money put in.
	accounts    int
	fundedMinor int64
	// outcomes is the status the apply call reported for every transfer it
	// was given, by transaction id.
	outcomes map[string]ledger.Status
	// nextOffsets is each transfer partition's expected next offset
	// (batched mode only).
	nextOffsets map[int32]int64
}

// runMode creates a fresh database, sets it up, warms up, runs the timed
// section, checks the ledger and drops the database.
func runMode(ctx context.Context, config Config, adminURL, database string, work workload, m mode, repeat int) (run RunResult, err error) {
	databaseURL, err := withDatabase(adminURL, database)
	if err != nil {
		return run, err
	}
	if err := stack.CreateDatabase(ctx, adminURL, database); err != nil {
		return run, fmt.Errorf("%w (with --postgres-url the role needs CREATEDB: each mode run gets a fresh database)", err)
	}
	defer func() {
		dropContext, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if dropError := stack.DropDatabase(dropContext, adminURL, database); dropError != nil && err == nil {
			err = dropError
		}
	}()
	users, err := setUp(ctx, config, databaseURL)
	if err != nil {
		return run, err
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: databaseURL, MaxConnections: int32(config.PoolSize)})
	if err != nil {
		return run, err
	}
	defer store.Close()

	expected := expectation{
		accounts:    config.Accounts,
		fundedMinor: int64(config.Accounts) * config.InitialBalanceMinor,
		outcomes:    map[string]ledger.Status{},
		nextOffsets: map[int32]int64{},
	}
	count := config.Transfers
	if m.name == ModeNaive {
		count = config.NaiveTransfers
	}
	applier := &modeApplier{store: store, mode: m, partitions: config.Partitions, nextOffsets: make([]int64, config.Partitions)}
	warmup := applier.partition(commandsFor(work.warmup, users, "warmup"))
	timed := applier.partition(commandsFor(work.timed[:count], users, fmt.Sprintf("timed-%d", repeat)))

	if _, err := applier.apply(ctx, warmup, time.Time{}, config.Now, expected.outcomes); err != nil {
		return run, fmt.Errorf("warm-up: %w", err)
	}
	if config.Timed != nil {
		config.Timed(true)
	}
	startedAt := config.Now()
	counts, err := applier.apply(ctx, timed, startedAt.Add(config.ModeTimeCap), config.Now, expected.outcomes)
	elapsed := config.Now().Sub(startedAt)
	if config.Timed != nil {
		config.Timed(false)
	}
	if err != nil {
		return run, fmt.Errorf("timed section: %w", err)
	}
	if m.name == ModeBatched {
		for partition, next := range applier.nextOffsets {
			expected.nextOffsets[int32(partition)] = next
		}
	}
	run = RunResult{
		Mode: m.name, BatchSize: m.batchSize, Repeat: repeat,
		Transfers: counts.settled + counts.rejected, Settled: counts.settled, Rejected: counts.rejected,
		Transactions: counts.transactions, ElapsedSeconds: elapsed.Seconds(),
		StoppedByTimeCap: counts.settled+counts.rejected < count,
	}
	if elapsed > 0 {
		run.TransfersPerSecond = float64(run.Transfers) / elapsed.Seconds()
	}
	if run.Transfers == 0 {
		return run, fmt.Errorf("no transfer applied within the time cap of %v", config.ModeTimeCap)
	}
	if err := checkLedger(ctx, store, expected); err != nil {
		return run, err
	}
	run.LedgerChecked = true
	return run, nil
}

// setUp migrates the fresh database, creates the users and funds their
// accounts. It is not timed, so it uses its own connections with
// synchronous_commit off (the funding is flushed by the first timed commit
// anyway: the WAL is flushed in order).
func setUp(ctx context.Context, config Config, databaseURL string) ([]ledger.User, error) {
	if err := postgres.Migrate(ctx, databaseURL); err != nil {
		return nil, err
	}
	setupURL, err := withParameter(databaseURL, "synchronous_commit", "off")
	if err != nil {
		return nil, err
	}
	store, err := postgres.Open(ctx, postgres.Config{URL: setupURL, MaxConnections: setupConcurrency})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	users := make([]ledger.User, config.Accounts)
	if err := forEachConcurrently(ctx, config.Accounts, setupConcurrency, func(ctx context.Context, i int) error {
		user, err := store.CreateUser(ctx, fmt.Sprintf("bench-%d@example.com", i), "not-a-password-hash")
		users[i] = user
		return err
	}); err != nil {
		return nil, fmt.Errorf("create users: %w", err)
	}
	var offset int64
	for first := 0; first < len(users); first += fundingBatchSize {
		batch := postgres.Batch{Topic: fundingTopic, Partition: 0}
		for _, user := range users[first:min(first+fundingBatchSize, len(users))] {
			key := "funding"
			command := ledger.Command{TransactionID: ledger.TransactionIDFor(user.ID, key), Kind: ledger.KindDeposit,
				UserID: user.ID, IdempotencyKey: key, SourceAccountID: ledger.ExternalAccountID,
				DestinationAccountID: user.AccountID, AmountMinor: config.InitialBalanceMinor, Fingerprint: "bench-" + key}
			batch.Records = append(batch.Records, postgres.Record{Partition: 0, Offset: offset, Command: command})
			offset++
		}
		result, err := store.ApplyBatch(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("fund accounts: %w", err)
		}
		if result.Settled != len(batch.Records) {
			return nil, fmt.Errorf("fund accounts: %d of %d deposits settled: %w", result.Settled, len(batch.Records), ErrLedgerInconsistent)
		}
	}
	return users, nil
}

// commandsFor turns planned transfers into commands between the run's
// users. Keys carry the phase so warm-up and timed transfers never collide.
func commandsFor(planned []plannedTransfer, users []ledger.User, phase string) []ledger.Command {
	commands := make([]ledger.Command, len(planned))
	for i, transfer := range planned {
		source, destination := users[transfer.source], users[transfer.destination]
		key := phase + "-" + strconv.Itoa(i)
		commands[i] = ledger.Command{
			TransactionID: ledger.TransactionIDFor(source.ID, key), Kind: ledger.KindTransfer, UserID: source.ID,
			IdempotencyKey: key, SourceAccountID: source.AccountID, DestinationAccountID: destination.AccountID,
			AmountMinor: transfer.amountMinor, Fingerprint: "bench-" + key,
		}
	}
	return commands
}

// modeApplier applies partitioned commands the way its mode does, keeping
// each partition's next offset across calls (warm-up, then timed).
type modeApplier struct {
	store       *postgres.Store
	mode        mode
	partitions  int
	nextOffsets []int64
}

// partition routes each command to the partition of its key, as the gateway
// does (Kafka's default partitioner over the decimal account id), keeping
// the order within each partition.
func (a *modeApplier) partition(commands []ledger.Command) [][]ledger.Command {
	partitioned := make([][]ledger.Command, a.partitions)
	for _, command := range commands {
		key := []byte(strconv.FormatInt(command.PartitionKey(), 10))
		partition := kafka.PartitionFor(key, int32(a.partitions))
		partitioned[partition] = append(partitioned[partition], command)
	}
	return partitioned
}

// applyCounts adds up what the partitions applied.
type applyCounts struct {
	settled, rejected, transactions int
}

// apply runs one goroutine per partition until every partition's commands are
// applied, or deadline (if not zero) passes: a partition then stops before
// its next batch or command. It records every reported outcome in outcomes.
// The first error stops every partition.
func (a *modeApplier) apply(ctx context.Context, partitioned [][]ledger.Command, deadline time.Time, now func() time.Time, outcomes map[string]ledger.Status) (applyCounts, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mutex sync.Mutex
	var total applyCounts
	var group sync.WaitGroup
	for partition, commands := range partitioned {
		group.Add(1)
		go func() {
			defer group.Done()
			counts, reported, err := a.applyPartition(ctx, int32(partition), commands, deadline, now)
			mutex.Lock()
			defer mutex.Unlock()
			total.settled += counts.settled
			total.rejected += counts.rejected
			total.transactions += counts.transactions
			for id, status := range reported {
				outcomes[id] = status
			}
			if err != nil {
				cancel(fmt.Errorf("partition %d: %w", partition, err))
			}
		}()
	}
	group.Wait()
	if err := context.Cause(ctx); err != nil {
		return total, err
	}
	return total, nil
}

func (a *modeApplier) applyPartition(ctx context.Context, partition int32, commands []ledger.Command, deadline time.Time, now func() time.Time) (applyCounts, map[string]ledger.Status, error) {
	var counts applyCounts
	reported := make(map[string]ledger.Status, len(commands))
	record := func(id string, status ledger.Status) error {
		if _, twice := reported[id]; twice {
			return fmt.Errorf("transaction %s reported twice: %w", id, ErrLedgerInconsistent)
		}
		reported[id] = status
		switch status {
		case ledger.StatusSettled:
			counts.settled++
		case ledger.StatusRejected:
			counts.rejected++
		default:
			return fmt.Errorf("transaction %s has non-final status %q: %w", id, status, ErrLedgerInconsistent)
		}
		return nil
	}
	step := 1
	if a.mode.name == ModeBatched {
		step = a.mode.batchSize
	}
	for first := 0; first < len(commands); first += step {
		if err := ctx.Err(); err != nil {
			return counts, reported, err
		}
		if !deadline.IsZero() && !now().Before(deadline) {
			return counts, reported, nil
		}
		chunk := commands[first:min(first+step, len(commands))]
		if a.mode.name == ModeNaive {
			outcome, err := a.store.ApplyOne(ctx, chunk[0])
			if err != nil {
				return counts, reported, err
			}
			counts.transactions++
			if err := record(outcome.TransactionID, outcome.Status); err != nil {
				return counts, reported, err
			}
			continue
		}
		batch := postgres.Batch{Topic: transfersTopic, Partition: partition, Records: make([]postgres.Record, len(chunk))}
		for i, command := range chunk {
			batch.Records[i] = postgres.Record{Partition: partition, Offset: a.nextOffsets[partition] + int64(i), Command: command}
		}
		result, err := a.store.ApplyBatch(ctx, batch)
		if err != nil {
			return counts, reported, err
		}
		counts.transactions++
		a.nextOffsets[partition] += int64(len(chunk))
		if result.Applied != len(chunk) || result.Duplicates != 0 || result.AlreadyApplied != 0 || result.NextOffset != a.nextOffsets[partition] {
			return counts, reported, fmt.Errorf("batch of %d at offset %d: applied %d, duplicates %d, already applied %d, next offset %d (want %d): %w",
				len(chunk), batch.Records[0].Offset, result.Applied, result.Duplicates, result.AlreadyApplied, result.NextOffset,
				a.nextOffsets[partition], ErrLedgerInconsistent)
		}
		for _, outcome := range result.Outcomes {
			if err := record(outcome.TransactionID, outcome.Status); err != nil {
				return counts, reported, err
			}
		}
	}
	return counts, reported, nil
}

// checkLedger verifies the ledger after a mode run: money is conserved (the
// user balances sum to what funding put in, and to the settled deposits
// minus withdrawals), every settled transaction has two postings that sum to
// zero and every rejected one none, each balance equals its postings and is
// not negative, every transfer the benchmark applied is stored exactly once
// with the status it was reported with and no other transfer exists, and (in
// batched mode) each partition's stored offset covers exactly its records.
func checkLedger(ctx context.Context, store *postgres.Store, expected expectation) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pool := store.Pool()
	var problems []string
	fail := func(format string, arguments ...any) {
		problems = append(problems, fmt.Sprintf(format, arguments...))
	}

	var accounts int
	var balances, negative int64
	if err := pool.QueryRow(ctx, `SELECT count(*), COALESCE(sum(balance), 0), count(*) FILTER (WHERE balance < 0)
		FROM accounts WHERE kind = 'user'`).Scan(&accounts, &balances, &negative); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if accounts != expected.accounts {
		fail("%d user accounts, want %d", accounts, expected.accounts)
	}
	if balances != expected.fundedMinor {
		fail("user balances sum to %d, but %d was deposited: money was created or destroyed", balances, expected.fundedMinor)
	}
	if negative != 0 {
		fail("%d accounts have a negative balance", negative)
	}
	var netDeposits int64
	if err := pool.QueryRow(ctx, `SELECT COALESCE(sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount END), 0)
		FROM transactions WHERE status = 'settled' AND kind <> 'transfer'`).Scan(&netDeposits); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if netDeposits != balances {
		fail("user balances sum to %d, settled deposits minus withdrawals to %d", balances, netDeposits)
	}
	var badPostings int
	// One pass over the postings, grouped (they have no index by
	// transaction: migration 008).
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM transactions t LEFT JOIN
		(SELECT transaction_id, count(*) AS n, sum(amount) AS total FROM postings GROUP BY transaction_id) p ON p.transaction_id = t.id
		WHERE (t.status = 'settled' AND (COALESCE(p.n, 0) <> 2 OR COALESCE(p.total, 0) <> 0))
			OR (t.status = 'rejected' AND COALESCE(p.n, 0) <> 0)`).Scan(&badPostings); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if badPostings != 0 {
		fail("%d transactions have wrong postings (settled: two summing to zero; rejected: none)", badPostings)
	}
	var orphanPostings int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM postings p WHERE NOT EXISTS
		(SELECT 1 FROM transactions t WHERE t.id = p.transaction_id)`).Scan(&orphanPostings); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if orphanPostings != 0 {
		fail("%d postings belong to no transaction", orphanPostings)
	}
	var strayPostings int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM postings p WHERE NOT EXISTS
		(SELECT 1 FROM accounts a WHERE a.id = p.account_id)`).Scan(&strayPostings); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if strayPostings != 0 {
		fail("%d postings are on an account the ledger does not have", strayPostings)
	}
	var wrongBalances int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM accounts a WHERE kind = 'user' AND balance <>
		COALESCE((SELECT sum(amount) FROM postings p WHERE p.account_id = a.id), 0)`).Scan(&wrongBalances); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	if wrongBalances != 0 {
		fail("%d balances differ from the sum of their postings", wrongBalances)
	}

	rows, err := pool.Query(ctx, `SELECT id::text, status FROM transactions WHERE kind = 'transfer'`)
	if err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	stored := make(map[string]ledger.Status, len(expected.outcomes))
	var id, status string
	var unexpected, duplicated, wrongStatus []string
	if _, err := pgx.ForEachRow(rows, []any{&id, &status}, func() error {
		if _, twice := stored[id]; twice {
			duplicated = append(duplicated, id)
		}
		stored[id] = ledger.Status(status)
		want, ok := expected.outcomes[id]
		switch {
		case !ok:
			unexpected = append(unexpected, id)
		case want != ledger.Status(status):
			wrongStatus = append(wrongStatus, fmt.Sprintf("%s stored %s, reported %s", id, status, want))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	var missing []string
	for id := range expected.outcomes {
		if _, ok := stored[id]; !ok {
			missing = append(missing, id)
		}
	}
	for _, list := range []struct {
		what string
		ids  []string
	}{
		{"transfers stored but never applied by the benchmark", unexpected},
		{"transfers stored twice", duplicated},
		{"transfers stored with another status than reported", wrongStatus},
		{"transfers reported but not stored", missing},
	} {
		if len(list.ids) > 0 {
			slices.Sort(list.ids)
			fail("%d %s (first: %s)", len(list.ids), list.what, list.ids[0])
		}
	}

	if len(expected.nextOffsets) > 0 {
		rows, err := pool.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1`, transfersTopic)
		if err != nil {
			return fmt.Errorf("check ledger: %w", err)
		}
		storedOffsets := map[int32]int64{}
		var partition int32
		var next int64
		if _, err := pgx.ForEachRow(rows, []any{&partition, &next}, func() error {
			storedOffsets[partition] = next
			return nil
		}); err != nil {
			return fmt.Errorf("check ledger: %w", err)
		}
		for partition, want := range expected.nextOffsets {
			if got := storedOffsets[partition]; got != want {
				fail("partition %d stores next offset %d, want %d", partition, got, want)
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrLedgerInconsistent, strings.Join(problems, "; "))
	}
	return nil
}

// forEachConcurrently calls work for 0..count-1 on at most concurrency
// goroutines; the first error stops the rest and is returned.
func forEachConcurrently(ctx context.Context, count, concurrency int, work func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var group sync.WaitGroup
	for range concurrency {
		group.Add(1)
		go func() {
			defer group.Done()
			for i := range next {
				if err := work(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
feed:
	for i := range count {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	group.Wait()
	return context.Cause(ctx)
}

// withDatabase returns adminURL naming database instead.
func withDatabase(adminURL, database string) (string, error) {
	parsed, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("postgres URL: %w", err)
	}
	parsed.Path = "/" + database
	parsed.RawPath = ""
	return parsed.String(), nil
}

// withParameter adds a run-time parameter to a postgres:// URL; pgx sends
// unknown query parameters as session settings.
func withParameter(databaseURL, name, value string) (string, error) {
	parsed, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("postgres URL: %w", err)
	}
	query := parsed.Query()
	query.Set(name, value)
	parsed.RawQuery = query.Encode()
	return parsed.String(), nil
}

// readServer reads the settings that decide what a commit costs.
func readServer(ctx context.Context, adminURL string) (Server, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	connection, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return Server{}, fmt.Errorf("bench: connect to Postgres: %w", err)
	}
	defer connection.Close(context.Background())
	var server Server
	if err := connection.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('full_page_writes'), current_setting('wal_sync_method'),
		current_setting('shared_buffers')`).Scan(&server.Version, &server.Fsync, &server.SynchronousCommit,
		&server.FullPageWrites, &server.WalSyncMethod, &server.SharedBuffers); err != nil {
		return Server{}, fmt.Errorf("bench: read Postgres settings: %w", err)
	}
	return server, nil
}

// privateCluster is the Postgres the benchmark started for itself.
type privateCluster struct {
	component *stack.Component
	directory string
	adminURL  string
}

// startPrivatePostgres initialises and starts a durable cluster (fsync,
// full_page_writes and synchronous_commit on) in a new temporary directory,
// on a free port. The postmaster gets SIGINT (fast shutdown) if this process
// dies without stopping it.
func startPrivatePostgres(ctx context.Context, config Config, output io.Writer) (*privateCluster, error) {
	binDir, err := stack.PostgresBinDir(config.PostgresBinDir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	removeAbandonedDirectories(config.WorkDir)
	// The PID in the name lets a later run remove it if this one dies
	// before cleaning up. A short name keeps the socket path short.
	directory, err := os.MkdirTemp(config.WorkDir, fmt.Sprintf("lpbench%d-", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := os.Chmod(directory, 0o755); err != nil {
		_ = os.RemoveAll(directory)
		return nil, fmt.Errorf("bench: %w", err)
	}
	var lastError error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			lastError = err
			break
		}
		options := stack.PostgresOptions{
			BinDir:    binDir,
			DataDir:   filepath.Join(directory, "data"),
			SocketDir: filepath.Join(directory, "run"),
			Port:      port,
			OSUser:    stack.PostgresOSUser(),
			Durable:   true,
			Settings:  []string{"max_connections=200", "shared_buffers=256MB"},
		}
		startContext, cancel := context.WithTimeout(ctx, 120*time.Second)
		fmt.Fprintf(output, "bench: starting a private Postgres (initdb into %s, port %d, fsync=on, synchronous_commit=on)\n", directory, port)
		component, err := stack.StartPostgres(startContext, "bench-postgres", options, filepath.Join(directory, "postgres.log"), false, syscall.SIGINT)
		cancel()
		if err == nil {
			return &privateCluster{component: component, directory: directory, adminURL: stack.PostgresURL(port, "postgres")}, nil
		}
		lastError = err
		if !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	_ = os.RemoveAll(directory)
	return nil, fmt.Errorf("bench: start Postgres: %w", lastError)
}

// stop stops the postmaster this benchmark started (by its PID and start
// time) and removes its directory.
func (c *privateCluster) stop(output io.Writer) {
	if err := c.component.Stop(30 * time.Second); err != nil {
		fmt.Fprintf(output, "bench: stop Postgres (PID %d): %v; its directory %s is left\n", c.component.PID, err, c.directory)
		return
	}
	if err := os.RemoveAll(c.directory); err != nil {
		fmt.Fprintf(output, "bench: remove %s: %v\n", c.directory, err)
		return
	}
	fmt.Fprintf(output, "bench: stopped the private Postgres (PID %d) and removed %s\n", c.component.PID, c.directory)
}

// removeAbandonedDirectories removes the directories of earlier runs that
// died without cleaning up: their PID is gone and no postmaster still runs
// in their data directory (it got SIGINT when the run died).
func removeAbandonedDirectories(workDir string) {
	if workDir == "" {
		workDir = os.TempDir()
	}
	candidates, _ := filepath.Glob(filepath.Join(workDir, "lpbench*-*"))
	for _, candidate := range candidates {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(candidate), "lpbench%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if postmasterRunning(filepath.Join(candidate, "data")) {
			continue
		}
		_ = os.RemoveAll(candidate)
	}
}

// postmasterRunning reports whether the postmaster.pid of dataDir names a
// live process.
func postmasterRunning(dataDir string) bool {
	content, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	firstLine, _, _ := strings.Cut(string(content), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(firstLine))
	if err != nil || pid <= 0 {
		return false
	}
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// randomNonce keeps database names of concurrent runs on one server apart.
func randomNonce() string {
	bytes := make([]byte, 3)
	_, _ = cryptorand.Read(bytes)
	return hex.EncodeToString(bytes)
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	content, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(content), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
