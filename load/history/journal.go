package history

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// JournalVersion is the format version written in the "v" field of every line (JOURNAL.md).
const JournalVersion = 1

const (
	// journalBufferEntriesDefault is the default capacity of the queue between Record and the writer goroutine.
	// At ~300 bytes per queued Entry it bounds the queue to ~20 MiB, and it absorbs several seconds of a fast
	// load while the disk stalls before any iteration blocks.
	journalBufferEntriesDefault = 65536

	// journalWriteBufferBytes is the size at which the writer hands its batch of lines to the file. Big enough
	// that a write system call carries thousands of lines; small enough to stay in cache.
	journalWriteBufferBytes = 256 << 10

	// journalFlushInterval bounds how long a completed operation stays in memory: a killed load process loses at
	// most the lines of this last interval (plus those still queued).
	journalFlushInterval = 200 * time.Millisecond

	// journalDrainInterval is how often the writer takes what was queued. The writer never waits on the queue
	// itself: a goroutine parked on a channel is woken by every send, and at thousands of operations per
	// second those wake-ups (a futex call each, often waking another thread) cost the load more CPU than
	// encoding and writing the lines. Draining on a clock batches them: a hundred wake-ups a second, whatever
	// the rate. A Record that leaves the queue more than half full wakes the writer at once, so a fast load or
	// a small queue never waits for the clock.
	journalDrainInterval = 10 * time.Millisecond
)

// Entry is one journal line: one logical operation the load issued and its outcome. The JSON field names are
// those of load/JOURNAL.md. Times are Unix microseconds.
type Entry struct {
	Version     int    `json:"v"`
	Op          string `json:"op"`
	Kind        string `json:"kind"`
	Key         string `json:"key,omitempty"`
	User        int64  `json:"user"`
	From        int64  `json:"from"`
	To          int64  `json:"to"`
	Amount      int64  `json:"amount"`
	VU          uint64 `json:"vu"`
	Iter        int64  `json:"iter"`
	Seq         int64  `json:"seq"`
	Invoke      int64  `json:"invoke"`
	Complete    int64  `json:"complete"`
	Attempts    int    `json:"attempts"`
	Statuses    []int  `json:"statuses"`
	Outcome     string `json:"outcome"`
	Status      string `json:"status,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Tx          string `json:"tx,omitempty"`
	Dup         string `json:"dup,omitempty"`
	DupStatuses []int  `json:"dup_statuses,omitempty"`
	MisuseOf    string `json:"misuse_of,omitempty"`
	// ReplayOf is, for an operation the client sent again later as an operation of its own (same kind, key and
	// body), the op of the first; empty otherwise.
	ReplayOf string `json:"replay_of,omitempty"`
	// Intent says what the generator aimed the amount at (JOURNAL.md: over-balance, whole-balance, minimum,
	// top-up, rival, limit-edge, limit-rival), from what it believed of the balance and the day's debits when it
	// decided; empty for an ordinary amount. It is the
	// generator's aim, not a fact: the auditor judges the operation by the ledger alone.
	Intent string `json:"intent,omitempty"`
}

// JournalStats are counters of a Journal.
type JournalStats struct {
	// Operations is the number of lines handed to the operating system (written to the file), so after Close it
	// is the number of lines the run added to the journal. While the run goes on it lags Record by at most the
	// queue and one flush interval.
	Operations int64
	// Bytes is the number of bytes those lines take, newlines included.
	Bytes int64
	// BlockedNs is the total time, in nanoseconds, callers of Record spent waiting for room in a full queue.
	BlockedNs int64
}

// Journal appends Entries, one JSON line each, to a file. Record only enqueues; one background goroutine owns
// the file, takes the queue every 10 ms, encodes, batches, writes at least every 200 ms, and fsyncs on Close.
// The queue is bounded: when it is full Record blocks (and the time is counted) rather than drop an entry,
// because a journal with holes would make the auditor report operations that were never lost.
//
// A Journal is safe for concurrent use.
type Journal struct {
	path string

	// mu orders Record against Close: Record holds it shared while it enqueues, Close holds it exclusively
	// while it marks the journal closed, so no entry is ever queued after the writer's last drain.
	mu      sync.RWMutex
	closed  bool
	entries chan Entry
	closing chan struct{} // closed by Close: the writer drains the queue a last time and exits
	wake    chan struct{} // one pending signal: the queue is more than half full, drain it now
	done    chan struct{} // closed when the writer goroutine has exited

	file *os.File
	// out is where batches go; the file, unless a test wrapped it.
	out io.Writer

	operations atomic.Int64
	bytes      atomic.Int64
	blockedNs  atomic.Int64

	// errMu guards firstErr, written by the writer goroutine and by late (after Close) Records.
	errMu    sync.Mutex
	firstErr error
}

// OpenJournal opens the journal at path for appending, creating it and its parent directories if needed, and
// starts its writer. bufferEntries is the capacity of the queue between Record and the writer; zero or less
// means the default, 65536 entries.
func OpenJournal(path string, bufferEntries int) (*Journal, error) {
	return openJournal(path, bufferEntries, nil)
}

// openJournal is OpenJournal with a hook for tests: wrap, when not nil, wraps the file the writer writes to
// (to make it slow or failing).
func openJournal(path string, bufferEntries int, wrap func(io.Writer) io.Writer) (*Journal, error) {
	if path == "" {
		return nil, errors.New("open journal: empty path")
	}
	if bufferEntries <= 0 {
		bufferEntries = journalBufferEntriesDefault
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	// A previous process killed in the middle of a line would leave it unterminated, and the first line we
	// append would be glued to it. End it, so the damage stays one invalid line the auditor can report.
	if err := terminateLastLine(file); err != nil {
		file.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	j := &Journal{
		path:    path,
		entries: make(chan Entry, bufferEntries),
		closing: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		file:    file,
		out:     file,
	}
	if wrap != nil {
		j.out = wrap(file)
	}
	go j.run()
	return j, nil
}

// terminateLastLine writes a newline at the end of a regular, non-empty file that does not end with one.
func terminateLastLine(file *os.File) error {
	info, err := file.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() || info.Size() == 0 {
		return nil
	}
	last := make([]byte, 1)
	if _, err := file.ReadAt(last, info.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = file.Write([]byte{'\n'})
	return err
}

// Path returns the path the journal was opened with.
func (j *Journal) Path() string { return j.path }

// Stats returns the journal's counters so far.
func (j *Journal) Stats() JournalStats {
	return JournalStats{
		Operations: j.operations.Load(),
		Bytes:      j.bytes.Load(),
		BlockedNs:  j.blockedNs.Load(),
	}
}

// Record adds e to the journal, with Version set to 1 when it is 0. It returns as soon as e is queued and
// blocks while the queue is full; it never drops an entry. The slices of e are not copied: the caller must not
// modify them afterwards.
//
// Recording after Close is a programming error, but it still does not lose the entry: it is written
// synchronously, under a lock, by reopening the file (slow, and any error is logged and reported by a later
// Close).
func (j *Journal) Record(e Entry) {
	if e.Version == 0 {
		e.Version = JournalVersion
	}
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		j.recordAfterClose(&e)
		return
	}
	select {
	case j.entries <- e:
		if len(j.entries) > cap(j.entries)/2 {
			j.wakeWriter()
		}
	default:
		start := time.Now()
		j.wakeWriter()
		j.entries <- e
		j.blockedNs.Add(int64(time.Since(start)))
	}
	j.mu.RUnlock()
}

// wakeWriter asks the writer to drain now rather than at its next tick (a no-op when it was already asked).
func (j *Journal) wakeWriter() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// recordAfterClose appends one line to the closed journal's file.
func (j *Journal) recordAfterClose(e *Entry) {
	<-j.done    // the writer has written, synced and closed everything queued before Close
	j.mu.Lock() // exclusive: late records are rare and must not interleave their lines
	defer j.mu.Unlock()
	line := appendEntry(make([]byte, 0, 512), e)
	err := func() error {
		file, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		if _, err := file.Write(line); err != nil {
			file.Close()
			return err
		}
		if err := file.Sync(); err != nil {
			file.Close()
			return err
		}
		return file.Close()
	}()
	if err != nil {
		j.fail(fmt.Errorf("journal %s: record after close: %w", j.path, err))
		return
	}
	j.operations.Add(1)
	j.bytes.Add(int64(len(line)))
}

// Close drains the queue, writes and fsyncs everything, and closes the file. It returns the first write error
// the journal met, if any (then lines may be missing from the file). Close is idempotent: later calls wait for
// the first to finish and return the same error.
func (j *Journal) Close() error {
	j.mu.Lock()
	if !j.closed {
		j.closed = true
		close(j.closing)
	}
	j.mu.Unlock()
	<-j.done
	return j.err()
}

// err returns the first error met.
func (j *Journal) err() error {
	j.errMu.Lock()
	defer j.errMu.Unlock()
	return j.firstErr
}

// fail remembers err if it is the first, and logs it: the run goes on (the load must not stop because the
// journal disk is full) but Close will report it, so the run is known to have an incomplete journal.
func (j *Journal) fail(err error) {
	j.errMu.Lock()
	defer j.errMu.Unlock()
	if j.firstErr != nil {
		return
	}
	j.firstErr = err
	fmt.Fprintf(os.Stderr, "ledger: %v (the journal is incomplete; later lines are discarded)\n", err)
}

// run is the writer goroutine: it owns the file from OpenJournal to Close.
func (j *Journal) run() {
	defer close(j.done)
	w := journalWriter{j: j, batch: make([]byte, 0, journalWriteBufferBytes+4096)}
	ticker := time.NewTicker(journalDrainInterval)
	defer ticker.Stop()
	lastFlush := time.Now()
	for {
		select {
		case <-j.closing:
			// Close marked the journal closed under its lock: nothing is queued any more, and what is in the
			// queue is the last of it.
			w.drain()
			w.flush()
			w.close()
			return
		case <-j.wake:
			w.drain()
		case now := <-ticker.C:
			w.drain()
			if now.Sub(lastFlush) >= journalFlushInterval {
				w.flush()
				lastFlush = now
			}
		}
	}
}

// drain takes every entry queued now, at most the queue's capacity (Records go on meanwhile: the rest waits
// for the next drain).
func (w *journalWriter) drain() {
	for range cap(w.j.entries) {
		select {
		case e := <-w.j.entries:
			w.add(&e)
		default:
			return
		}
	}
}

// journalWriter batches encoded lines. A batch holds whole lines only and goes to the file in one write, so a
// process killed between writes never leaves half a line behind.
type journalWriter struct {
	j          *Journal
	batch      []byte
	batchLines int64
	failed     bool // after the first write error, lines are discarded: appending after a short write would corrupt lines
}

func (w *journalWriter) add(e *Entry) {
	if w.failed {
		return
	}
	w.batch = appendEntry(w.batch, e)
	w.batchLines++
	if len(w.batch) >= journalWriteBufferBytes {
		w.flush()
	}
}

func (w *journalWriter) flush() {
	if w.failed || len(w.batch) == 0 {
		return
	}
	n, err := w.j.out.Write(w.batch)
	if err == nil && n != len(w.batch) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.failed = true
		w.j.fail(fmt.Errorf("journal %s: write: %w", w.j.path, err))
	} else {
		w.j.operations.Add(w.batchLines)
		w.j.bytes.Add(int64(len(w.batch)))
	}
	w.batch = w.batch[:0]
	w.batchLines = 0
}

func (w *journalWriter) close() {
	file := w.j.file
	if !w.failed {
		if err := file.Sync(); err != nil && !isSyncUnsupported(file) {
			w.j.fail(fmt.Errorf("journal %s: fsync: %w", w.j.path, err))
		}
	}
	if err := file.Close(); err != nil {
		w.j.fail(fmt.Errorf("journal %s: close: %w", w.j.path, err))
	}
}

// isSyncUnsupported reports whether file is not a regular file (a pipe, a character device), on which fsync
// fails with EINVAL although nothing was lost.
func isSyncUnsupported(file *os.File) bool {
	info, err := file.Stat()
	return err == nil && !info.Mode().IsRegular()
}

// appendEntry appends e as one JSON line (with its newline) to dst. It writes the fields in the order of Entry,
// omits the omitempty ones exactly as encoding/json would, writes a nil Statuses as [] (the format says it is
// an array), and escapes strings so that encoding/json decodes them back unchanged (invalid UTF-8 becomes
// U+FFFD, as encoding/json.Marshal does).
func appendEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(e.Version), 10)
	dst = append(dst, `,"op":`...)
	dst = appendJSONString(dst, e.Op)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, e.Kind)
	if e.Key != "" {
		dst = append(dst, `,"key":`...)
		dst = appendJSONString(dst, e.Key)
	}
	dst = append(dst, `,"user":`...)
	dst = strconv.AppendInt(dst, e.User, 10)
	dst = append(dst, `,"from":`...)
	dst = strconv.AppendInt(dst, e.From, 10)
	dst = append(dst, `,"to":`...)
	dst = strconv.AppendInt(dst, e.To, 10)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendInt(dst, e.Amount, 10)
	dst = append(dst, `,"vu":`...)
	dst = strconv.AppendUint(dst, e.VU, 10)
	dst = append(dst, `,"iter":`...)
	dst = strconv.AppendInt(dst, e.Iter, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	dst = append(dst, `,"invoke":`...)
	dst = strconv.AppendInt(dst, e.Invoke, 10)
	dst = append(dst, `,"complete":`...)
	dst = strconv.AppendInt(dst, e.Complete, 10)
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(e.Attempts), 10)
	dst = append(dst, `,"statuses":`...)
	dst = appendJSONInts(dst, e.Statuses)
	dst = append(dst, `,"outcome":`...)
	dst = appendJSONString(dst, e.Outcome)
	if e.Status != "" {
		dst = append(dst, `,"status":`...)
		dst = appendJSONString(dst, e.Status)
	}
	if e.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendJSONString(dst, e.Reason)
	}
	if e.Tx != "" {
		dst = append(dst, `,"tx":`...)
		dst = appendJSONString(dst, e.Tx)
	}
	if e.Dup != "" {
		dst = append(dst, `,"dup":`...)
		dst = appendJSONString(dst, e.Dup)
	}
	if len(e.DupStatuses) > 0 {
		dst = append(dst, `,"dup_statuses":`...)
		dst = appendJSONInts(dst, e.DupStatuses)
	}
	if e.MisuseOf != "" {
		dst = append(dst, `,"misuse_of":`...)
		dst = appendJSONString(dst, e.MisuseOf)
	}
	if e.ReplayOf != "" {
		dst = append(dst, `,"replay_of":`...)
		dst = appendJSONString(dst, e.ReplayOf)
	}
	if e.Intent != "" {
		dst = append(dst, `,"intent":`...)
		dst = appendJSONString(dst, e.Intent)
	}
	return append(dst, "}\n"...)
}

func appendJSONInts(dst []byte, values []int) []byte {
	dst = append(dst, '[')
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(v), 10)
	}
	return append(dst, ']')
}

// jsonSafeASCII[b] is true for the ASCII bytes a JSON string can hold unescaped.
var jsonSafeASCII = func() (safe [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		safe[b] = b != '"' && b != '\\'
	}
	return safe
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Control characters, quotes and backslashes are escaped; so are
// U+2028 and U+2029 (valid JSON, but not valid JavaScript in older engines); invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied unchanged
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafeASCII[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
