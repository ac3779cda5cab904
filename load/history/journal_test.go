package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sampleEntry returns a fully populated entry whose strings need escaping.
func sampleEntry(op string) Entry {
	return Entry{
		Op: op, Kind: "transfer", Key: `k"\é𝄞` + "\x01\u2028",
		User: 42, From: 7, To: 8, Amount: 12345, VU: 3, Iter: -1, Seq: 9,
		Invoke: 1_700_000_000_000_000, Complete: 1_700_000_000_123_456,
		Attempts: 2, Statuses: []int{503, 201},
		Outcome: "ok", Status: "settled", Reason: "", Tx: "tx-1",
		Dup: "concurrent", DupStatuses: []int{409, 201}, MisuseOf: "", ReplayOf: "op-0\n", Intent: "over-balance",
	}
}

// readJournal parses every line of the journal at path strictly (unknown fields are an error).
func readJournal(t *testing.T, path string) []Entry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("journal does not end with a newline")
	}
	var entries []Entry
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; scanner.Scan(); line++ {
		entries = append(entries, decodeLine(t, scanner.Bytes(), line))
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

func decodeLine(t *testing.T, line []byte, number int) Entry {
	t.Helper()
	if !json.Valid(line) {
		t.Fatalf("line %d is not valid JSON: %q", number, line)
	}
	decoder := json.NewDecoder(bytes.NewReader(line))
	decoder.DisallowUnknownFields()
	var e Entry
	if err := decoder.Decode(&e); err != nil {
		t.Fatalf("line %d: %v: %q", number, err, line)
	}
	return e
}

// normalized makes empty slices nil, as the journal writes a nil Statuses as [].
func normalized(e Entry) Entry {
	if len(e.Statuses) == 0 {
		e.Statuses = nil
	}
	if len(e.DupStatuses) == 0 {
		e.DupStatuses = nil
	}
	return e
}

func openTestJournal(t *testing.T, bufferEntries int, wrap func(io.Writer) io.Writer) *Journal {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "nested", "journal.jsonl")
	j, err := openJournal(path, bufferEntries, wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// waitFor polls condition until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJournalRoundTripConcurrent(t *testing.T) {
	const goroutines, perGoroutine = 16, 3000
	j := openTestJournal(t, 128, nil) // small queue, so writers do contend with the writer goroutine
	want := make(map[string]Entry, goroutines*perGoroutine)
	var wantMu sync.Mutex
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				e := sampleEntry(fmt.Sprintf("op-%d-%d", g, i))
				e.VU, e.Iter, e.Amount = uint64(g), int64(i), int64(g*perGoroutine+i)
				if i%3 == 0 { // omitempty fields absent, nil statuses
					e.Key, e.Status, e.Tx, e.Dup, e.DupStatuses, e.Statuses = "", "", "", "", nil, nil
					e.Kind, e.Outcome, e.Reason, e.MisuseOf = "misuse", "fail", "idempotency_key_reused", "op-0-0"
				}
				j.Record(e)
				e.Version = JournalVersion
				wantMu.Lock()
				want[e.Op] = e
				wantMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	got := readJournal(t, j.Path())
	if len(got) != goroutines*perGoroutine {
		t.Fatalf("journal has %d lines, want %d", len(got), goroutines*perGoroutine)
	}
	seen := make(map[string]bool, len(got))
	for _, e := range got {
		if seen[e.Op] {
			t.Fatalf("operation %s journaled twice", e.Op)
		}
		seen[e.Op] = true
		if w, ok := want[e.Op]; !ok || !reflect.DeepEqual(normalized(e), normalized(w)) {
			t.Fatalf("line of %s decodes to\n%+v\nwant\n%+v", e.Op, e, w)
		}
	}
	info, err := os.Stat(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	stats := j.Stats()
	if stats.Operations != int64(len(got)) || stats.Bytes != info.Size() {
		t.Fatalf("Stats = %+v, want %d operations and %d bytes", stats, len(got), info.Size())
	}
}

func TestJournalEncodeRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
	}{
		{"full", sampleEntry("op-1")},
		{"zero", Entry{}},
		{"quotes and backslashes", Entry{Op: `a"b\c`, Key: `\"\\"`, Reason: `"quoted"`}},
		{"unicode", Entry{Op: "日本語", Key: "émoji 😀 𝄞", Tx: "ü"}},
		{"control characters", Entry{Op: "\x00\x01\x1f\t\n\r\b\f", Key: "\x7f"}},
		{"line and paragraph separators", Entry{Key: "a\u2028b\u2029c"}},
		{"html characters", Entry{Key: "<script>&</script>"}},
		{"invalid utf-8", Entry{Key: "a\xffb\xc3", Op: "\xed\xa0\x80"}},
		{"extreme integers", Entry{User: -1 << 63, From: 1<<63 - 1, VU: 1<<64 - 1, Attempts: -5, Statuses: []int{0, -1, 1 << 40}}},
		{"empty statuses", Entry{Statuses: []int{}, DupStatuses: []int{}}},
		{"misuse", Entry{Kind: "misuse", MisuseOf: "op-7", Outcome: "fail", Reason: "idempotency_key_reused"}},
		{"replay", Entry{Kind: "withdrawal", ReplayOf: "op-8", Outcome: "fail", Reason: "insufficient_funds", Intent: "over-balance"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			checkEncoding(t, test.entry)
		})
	}
}

// checkEncoding asserts appendEntry writes one valid JSON line that decodes to what encoding/json's own
// encoding of e decodes to (so invalid UTF-8 is replaced the same way).
func checkEncoding(t *testing.T, e Entry) {
	t.Helper()
	line := appendEntry(nil, &e)
	if len(line) == 0 || line[len(line)-1] != '\n' || bytes.IndexByte(line[:len(line)-1], '\n') >= 0 {
		t.Fatalf("not exactly one line: %q", line)
	}
	got := decodeLine(t, line[:len(line)-1], 1)
	reference, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var want Entry
	if err := json.Unmarshal(reference, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalized(got), normalized(want)) {
		t.Fatalf("appendEntry line %q\ndecodes to %+v\nwant       %+v", line, got, want)
	}
	if !bytes.Contains(line, []byte(`"statuses":[`)) {
		t.Fatalf("statuses is not an array: %q", line)
	}
}

func FuzzJournalEncode(f *testing.F) {
	f.Add("op", `k"\`, "reason\n", int64(1), 503)
	f.Add("\xff\u2028", "日本", "", int64(-1), 0)
	f.Fuzz(func(t *testing.T, op, key, reason string, amount int64, status int) {
		checkEncoding(t, Entry{Op: op, Key: key, Reason: reason, Amount: amount, Statuses: []int{status}, MisuseOf: key + op,
			ReplayOf: op + key, Intent: reason})
	})
}

// gatedWriter blocks every Write until the test releases it.
type gatedWriter struct {
	out     io.Writer
	entered chan struct{} // receives when a Write starts
	release chan struct{} // closed to let writes through
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return w.out.Write(p)
}

func TestJournalBlocksWhenBufferFullAndLosesNothing(t *testing.T) {
	const bufferEntries, total = 4, 50
	gate := &gatedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	j := openTestJournal(t, bufferEntries, func(out io.Writer) io.Writer { gate.out = out; return gate })
	var releaseOnce sync.Once
	releaseGate := func() { releaseOnce.Do(func() { close(gate.release) }) }
	t.Cleanup(releaseGate) // runs before the journal's Close, which would otherwise wait forever on a failure

	// The first entry is taken by the writer, which then blocks in its periodic write.
	j.Record(sampleEntry("op-0"))
	select {
	case <-gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never wrote")
	}

	var recorded atomic.Int64
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		for i := 1; i < total; i++ {
			j.Record(sampleEntry(fmt.Sprintf("op-%d", i)))
			recorded.Add(1)
		}
	}()
	waitFor(t, 5*time.Second, "the queue to fill", func() bool {
		return recorded.Load() == bufferEntries && len(j.entries) == bufferEntries
	})
	// The queue is full and its reader is stuck: Record must block, not drop and not return.
	select {
	case <-recorderDone:
		t.Fatal("Record returned while the queue was full")
	case <-time.After(100 * time.Millisecond):
	}
	if got := recorded.Load(); got != bufferEntries {
		t.Fatalf("%d Records returned while the queue holds %d", got, bufferEntries)
	}

	releaseGate()
	select {
	case <-recorderDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Record still blocked after the writer was released")
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if blocked := j.Stats().BlockedNs; blocked < int64(50*time.Millisecond) {
		t.Fatalf("BlockedNs = %d, want at least the 100 ms Record was seen blocked (minus slack)", blocked)
	}
	entries := readJournal(t, j.Path())
	if len(entries) != total {
		t.Fatalf("journal has %d lines, want %d", len(entries), total)
	}
	for i, e := range entries {
		if want := fmt.Sprintf("op-%d", i); e.Op != want { // one producer after op-0: order is kept
			t.Fatalf("line %d is %s, want %s", i+1, e.Op, want)
		}
	}
	if got := j.Stats().Operations; got != total {
		t.Fatalf("Stats().Operations = %d, want %d", got, total)
	}
}

func TestJournalFlushesPeriodicallyWithoutClose(t *testing.T) {
	j := openTestJournal(t, 0, nil)
	j.Record(sampleEntry("op-early"))
	var data []byte
	waitFor(t, 2*time.Second, "the line to reach the file", func() bool {
		data, _ = os.ReadFile(j.Path())
		return bytes.HasSuffix(data, []byte("\n"))
	})
	if e := decodeLine(t, bytes.TrimSuffix(data, []byte("\n")), 1); e.Op != "op-early" || e.Version != 1 {
		t.Fatalf("flushed line decodes to %+v", e)
	}
	waitFor(t, 2*time.Second, "Stats to count the flushed line", func() bool { return j.Stats().Operations == 1 })
}

func TestJournalCloseIdempotentAndRecordAfterClose(t *testing.T) {
	j := openTestJournal(t, 0, nil)
	for i := range 3 {
		j.Record(sampleEntry(fmt.Sprintf("op-%d", i)))
	}
	for i := range 2 {
		if err := j.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	j.Record(sampleEntry("op-late"))
	if err := j.Close(); err != nil {
		t.Fatalf("Close after a late Record: %v", err)
	}
	entries := readJournal(t, j.Path())
	if len(entries) != 4 || entries[3].Op != "op-late" {
		t.Fatalf("journal = %+v, want op-0..op-2 then op-late", entries)
	}
	if got := j.Stats().Operations; got != 4 {
		t.Fatalf("Stats().Operations = %d, want 4", got)
	}
}

func TestJournalCloseConcurrentWithRecord(t *testing.T) {
	j := openTestJournal(t, 8, nil)
	const goroutines, perGoroutine = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				j.Record(sampleEntry(fmt.Sprintf("op-%d-%d", g, i)))
			}
		}()
	}
	if err := j.Close(); err != nil { // races the Records: those after it are written synchronously
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if got := len(readJournal(t, j.Path())); got != goroutines*perGoroutine {
		t.Fatalf("journal has %d lines, want %d", got, goroutines*perGoroutine)
	}
}

func TestJournalAppendsAndTerminatesTruncatedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	// A previous run: one complete line, then one cut by a kill.
	if err := os.WriteFile(path, []byte(`{"v":1,"op":"old"}`+"\n"+`{"v":1,"op":"cut`), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	j.Record(sampleEntry("new"))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != `{"v":1,"op":"cut` {
		t.Fatalf("lines = %q, want the old line, the cut line alone, the new line", lines)
	}
	if e := decodeLine(t, []byte(lines[2]), 3); e.Op != "new" {
		t.Fatalf("new line decodes to %+v", e)
	}
}

// failingWriter fails every write.
type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestJournalWriteErrorReportedByClose(t *testing.T) {
	errBroken := errors.New("disk on fire")
	tests := []struct {
		name string
		open func(t *testing.T) (*Journal, error)
		want error
	}{
		{
			name: "/dev/full",
			open: func(t *testing.T) (*Journal, error) {
				if _, err := os.Stat("/dev/full"); err != nil {
					t.Skip("no /dev/full")
				}
				return OpenJournal("/dev/full", 0)
			},
			want: syscall.ENOSPC,
		},
		{
			name: "failing writer",
			open: func(t *testing.T) (*Journal, error) {
				path := filepath.Join(t.TempDir(), "journal.jsonl")
				return openJournal(path, 0, func(io.Writer) io.Writer { return failingWriter{errBroken} })
			},
			want: errBroken,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			j, err := test.open(t)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			for i := range 1000 {
				j.Record(sampleEntry(fmt.Sprintf("op-%d", i)))
			}
			err = j.Close()
			if !errors.Is(err, test.want) {
				t.Fatalf("Close = %v, want %v", err, test.want)
			}
			if again := j.Close(); again != err {
				t.Fatalf("second Close = %v, want the same %v", again, err)
			}
			if got := j.Stats().Operations; got != 0 {
				t.Fatalf("Stats().Operations = %d after every write failed, want 0", got)
			}
		})
	}
}

func TestJournalOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path string }{
		{"empty path", ""},
		{"parent is a file", filepath.Join(file, "journal.jsonl")},
		{"path is a directory", t.TempDir()},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if j, err := OpenJournal(test.path, 0); err == nil {
				j.Close()
				t.Fatalf("OpenJournal(%q) succeeded", test.path)
			}
		})
	}
}
