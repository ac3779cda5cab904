package invariants

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchGenerator writes a valid journal and ledger export of a given number
// of money operations straight to files (no model in memory), so the
// benchmark measures the auditor, not the generator.
type benchGenerator struct {
	random      *rand.Rand
	accounts    int64
	balances    []int64
	offsets     map[int32]int64
	clock       int64
	op          int64
	posting     int64
	line        []byte
	journal     *bufio.Writer
	transaction *bufio.Writer
	postings    *bufio.Writer
}

const benchUserBase = 1_000_000

// generateBench writes operations money operations over operations/100
// accounts (at least 10) into runDir and exportDir. Every account is
// signed up and funded first; then transfers, withdrawals and deposits
// follow at random, with replays and unknown outcomes mixed in.
func generateBench(runDir, exportDir string, operations int64, seed uint64) error {
	g := &benchGenerator{random: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), accounts: max(operations/100, 10),
		offsets: map[int32]int64{}, clock: 1_700_000_000_000_000}
	g.balances = make([]int64, g.accounts+1)
	var files []*os.File
	open := func(path string) (*bufio.Writer, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		file, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		files = append(files, file)
		return bufio.NewWriterSize(file, 1<<20), nil
	}
	var err error
	if g.journal, err = open(filepath.Join(runDir, "journal.jsonl")); err != nil {
		return err
	}
	if g.transaction, err = open(filepath.Join(exportDir, TransactionsFile)); err != nil {
		return err
	}
	if g.postings, err = open(filepath.Join(exportDir, PostingsFile)); err != nil {
		return err
	}
	for account := int64(1); account <= g.accounts; account++ {
		g.signup(account)
	}
	for g.op < operations {
		if g.op < g.accounts {
			g.money(KindDeposit, 0, g.op+1, 50_000)
			continue
		}
		from := 1 + g.random.Int64N(g.accounts)
		amount := 1 + g.random.Int64N(20_000)
		switch choice := g.random.IntN(10); {
		case choice < 6:
			to := 1 + (from+g.random.Int64N(g.accounts-1))%g.accounts
			g.money(KindTransfer, from, to, amount)
		case choice < 8:
			g.money(KindWithdrawal, from, 0, amount)
		default:
			g.money(KindDeposit, 0, from, amount)
		}
	}
	accounts, err := open(filepath.Join(exportDir, AccountsFile))
	if err != nil {
		return err
	}
	fmt.Fprintln(accounts, `{"id":0,"user_id":0,"kind":"external","balance":0}`)
	for account := int64(1); account <= g.accounts; account++ {
		fmt.Fprintf(accounts, `{"id":%d,"user_id":%d,"kind":"user","balance":%d}`+"\n", account, benchUserBase+account, g.balances[account])
	}
	for _, writer := range []*bufio.Writer{g.journal, g.transaction, g.postings, accounts} {
		if err := writer.Flush(); err != nil {
			return err
		}
	}
	for _, file := range files {
		if err := file.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (g *benchGenerator) signup(account int64) {
	g.clock += 3
	fmt.Fprintf(g.journal, `{"v":1,"op":"signup-%d","kind":"signup","user":%d,"from":0,"to":%d,"amount":0,"vu":0,"iter":-1,"seq":0,"invoke":%d,"complete":%d,"attempts":1,"statuses":[201],"outcome":"ok"}`+"\n",
		account, benchUserBase+account, account, g.clock, g.clock+1)
}

// money journals one operation and writes its transaction and postings.
func (g *benchGenerator) money(kind string, from, to, amount int64) {
	g.op++
	g.clock += 3
	ordering, user := from, benchUserBase+from
	if kind == KindDeposit {
		ordering, user = to, benchUserBase+to
	}
	key := "k" + strconv.FormatInt(g.op, 36)
	id := fmt.Sprintf("%08x-0000-8000-8000-%012x", g.op>>32, g.op&0xffffffffffff)
	settled := kind == KindDeposit || g.balances[from] >= amount
	status, reason, outcome := StatusSettled, "", OutcomeOK
	if !settled {
		status, reason, outcome = StatusRejected, "insufficient_funds", OutcomeFail
	}
	unknown := g.random.IntN(100) < 2
	clientStatus, clientReason, clientTx := status, reason, id
	if unknown {
		outcome, clientStatus, clientReason, clientTx = OutcomeInfo, "", "", ""
	}
	entry := func(op string) {
		b := g.line[:0]
		b = append(b, `{"v":1,"op":"`...)
		b = append(b, op...)
		b = append(b, `","kind":"`...)
		b = append(b, kind...)
		b = append(b, `","key":"`...)
		b = append(b, key...)
		b = append(b, `","user":`...)
		b = strconv.AppendInt(b, user, 10)
		b = append(b, `,"from":`...)
		b = strconv.AppendInt(b, from, 10)
		b = append(b, `,"to":`...)
		b = strconv.AppendInt(b, to, 10)
		b = append(b, `,"amount":`...)
		b = strconv.AppendInt(b, amount, 10)
		b = append(b, `,"vu":1,"iter":1,"seq":1,"invoke":`...)
		b = strconv.AppendInt(b, g.clock, 10)
		b = append(b, `,"complete":`...)
		b = strconv.AppendInt(b, g.clock+1, 10)
		b = append(b, `,"attempts":1,"statuses":[200],"outcome":"`...)
		b = append(b, outcome...)
		b = append(b, '"')
		if clientStatus != "" {
			b = append(b, `,"status":"`...)
			b = append(b, clientStatus...)
			b = append(b, '"')
		}
		if clientReason != "" {
			b = append(b, `,"reason":"`...)
			b = append(b, clientReason...)
			b = append(b, '"')
		}
		if clientTx != "" {
			b = append(b, `,"tx":"`...)
			b = append(b, clientTx...)
			b = append(b, '"')
		}
		b = append(b, "}\n"...)
		g.line = b
		g.journal.Write(b)
	}
	entry("op-" + key)
	if g.random.IntN(100) < 1 {
		g.clock += 3
		entry("op-" + key + "-replay")
	}
	partition := int32(ordering % 16)
	offset := g.offsets[partition]
	g.offsets[partition]++
	fmt.Fprintf(g.transaction, `{"id":"%s","user_id":%d,"idempotency_key":"%s","kind":"%s","source_account_id":%d,"destination_account_id":%d,"amount":%d,"status":"%s","reason":"%s","partition":%d,"applied_order":%d}`+"\n",
		id, user, key, kind, from, to, amount, status, reason, partition, offset)
	if !settled {
		return
	}
	for _, leg := range [2]struct{ account, amount int64 }{{from, -amount}, {to, amount}} {
		g.posting++
		if leg.account == 0 {
			fmt.Fprintf(g.postings, `{"id":%d,"transaction_id":"%s","account_id":0,"amount":%d}`+"\n", g.posting, id, leg.amount)
			continue
		}
		g.balances[leg.account] += leg.amount
		fmt.Fprintf(g.postings, `{"id":%d,"transaction_id":"%s","account_id":%d,"amount":%d,"balance_after":%d}`+"\n",
			g.posting, id, leg.account, leg.amount, g.balances[leg.account])
	}
}

// peakHeap samples the heap in use until stopped; the peak is what the
// audit needed at most (plus the garbage not yet collected).
func peakHeap() (stop func() uint64) {
	var peak uint64
	var mutex sync.Mutex
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		var stats runtime.MemStats
		runtime.ReadMemStats(&stats)
		mutex.Lock()
		peak = max(peak, stats.HeapInuse)
		mutex.Unlock()
	}
	go func() {
		defer close(finished)
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		return peak
	}
}

// BenchmarkAudit1M audits 1,000,000 operations (LEDGERPROOF_AUDIT_BENCH_OPS
// changes the number) and their ledger from export files generated first.
// It reports operations per second and the peak heap in use:
//
//	go test ./invariants -run '^$' -bench BenchmarkAudit1M -benchtime 1x
func BenchmarkAudit1M(b *testing.B) {
	operations := int64(1_000_000)
	if value := os.Getenv("LEDGERPROOF_AUDIT_BENCH_OPS"); value != "" {
		parsed, err := strconv.ParseInt(value, 10, 64)
		if err != nil || parsed <= 0 {
			b.Fatalf("LEDGERPROOF_AUDIT_BENCH_OPS=%q is not a positive number", value)
		}
		operations = parsed
	}
	root := b.TempDir()
	runDir, exportDir := filepath.Join(root, "run"), filepath.Join(root, "ledger")
	const seed = 1
	b.Logf("generating %d operations (seed %d)", operations, seed)
	if err := generateBench(runDir, exportDir, operations, seed); err != nil {
		b.Fatal(err)
	}
	var bytes int64
	for _, path := range []string{filepath.Join(runDir, "journal.jsonl"), filepath.Join(exportDir, AccountsFile),
		filepath.Join(exportDir, TransactionsFile), filepath.Join(exportDir, PostingsFile)} {
		info, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		bytes += info.Size()
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var peak uint64
	for i := 0; i < b.N; i++ {
		stop := peakHeap()
		result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}})
		peak = max(peak, stop())
		if err != nil {
			b.Fatal(err)
		}
		if result.Verdict != VerdictPassed {
			b.Fatalf("the generated history fails: %v\n%s", result.violated(), result.summary())
		}
		if i == 0 {
			b.Logf("journal %d lines, ledger %v; timings %v ms", result.JournalLines, result.LedgerCounts, result.TimingsMs)
		}
	}
	b.StopTimer()
	seconds := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(operations)/seconds, "operations/s")
	b.ReportMetric(float64(peak-min(peak, before.HeapInuse))/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(bytes)/(1<<20), "input-MiB")
}
