package runner

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/load/history"
)

// JournalFileName is the load's history inside a run directory
// (load/JOURNAL.md).
const JournalFileName = "journal.jsonl"

// isLoad says whether an operation belongs to the load rather than to its
// setup: setup's operations (signups, funding deposits) run in slot (vu) 0
// at iteration -1 (load/JOURNAL.md).
func isLoad(e *history.Entry) bool { return e.Iter >= 0 && e.VU > 0 }

// isError is the load's errors metric: an unknown outcome, or a rejection
// for any reason but insufficient funds or the daily debit limit (correct
// answers to a random load).
func isError(e *history.Entry) bool {
	if e.Outcome == "fail" && e.Reason == "daily_limit_exceeded" {
		return false
	}
	return e.Outcome == "info" || (e.Outcome == "fail" && e.Reason != "insufficient_funds" && e.Kind != "misuse")
}

// JournalCounts are what the journal says so far.
type JournalCounts struct {
	// Lines are every operation completed, setup included; Load those of
	// the load; Errors the load's errors (as its errors metric counts them).
	Lines, Load, Errors int64
	// LoadStart is the invoke time of the earliest load operation seen;
	// zero until one completed.
	LoadStart time.Time
}

// JournalWatcher tails a journal as the load writes it (the journal flushes
// every 200 ms), counting operations and finding when the load began.
// Only complete lines are read; a partial last line waits for the next poll.
type JournalWatcher struct {
	Path string

	mutex  sync.Mutex
	offset int64
	rest   []byte
	counts JournalCounts
}

// maxJournalReadBytes bounds one poll's read, so a huge journal is caught
// up with over several polls rather than one allocation.
const maxJournalReadBytes = 16 << 20

// Poll reads what was appended since the last poll and returns the counts.
// A missing journal (the load has not opened it yet) is not an error.
func (w *JournalWatcher) Poll() (JournalCounts, error) {
	w.mutex.Lock()
	defer w.mutex.Unlock()
	file, err := os.Open(w.Path)
	if os.IsNotExist(err) {
		return w.counts, nil
	}
	if err != nil {
		return w.counts, err
	}
	defer file.Close()
	if _, err := file.Seek(w.offset, io.SeekStart); err != nil {
		return w.counts, err
	}
	chunk, err := io.ReadAll(io.LimitReader(file, maxJournalReadBytes))
	if err != nil {
		return w.counts, err
	}
	w.offset += int64(len(chunk))
	data := append(w.rest, chunk...)
	last := bytes.LastIndexByte(data, '\n')
	if last < 0 {
		w.rest = data
		return w.counts, nil
	}
	w.rest = append([]byte(nil), data[last+1:]...)
	for _, line := range bytes.Split(data[:last], []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		w.counts.Lines++
		var entry history.Entry
		if json.Unmarshal(line, &entry) != nil || !isLoad(&entry) {
			continue
		}
		w.counts.Load++
		if isError(&entry) {
			w.counts.Errors++
		}
		invoked := time.UnixMicro(entry.Invoke)
		if entry.Invoke > 0 && (w.counts.LoadStart.IsZero() || invoked.Before(w.counts.LoadStart)) {
			w.counts.LoadStart = invoked
		}
	}
	return w.counts, nil
}
