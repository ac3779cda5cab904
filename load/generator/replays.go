package generator

import (
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
)

// maxPendingReplays bounds the replays waiting for their time: at 10,000 operations per second, a replay rate
// of 5% and 30 s to wait, 15,000 are due; a few MiB. A replay that finds the queue full is not sent (counted).
const maxPendingReplays = 32768

// replay is a money operation with a final answer, to be sent again (same kind, key and body) once due.
type replay struct {
	due     time.Time
	request client.MoneyRequest
	// of is the op of the operation it replays.
	of string
}

// replayQueue holds the replays waiting for their time, in the order they were queued: their due times are
// their first operations' completion plus one delay, so the order is nearly the due order; a head that is not
// due yet holds back the few behind it that are, by at most the spread of completion times.
type replayQueue struct {
	mutex   sync.Mutex
	waiting []replay
	head    int
	// refused counts the replays not queued because the queue was full.
	refused int64
}

// add queues a replay; false when the queue is full.
func (q *replayQueue) add(r replay) bool {
	q.mutex.Lock()
	defer q.mutex.Unlock()
	if len(q.waiting)-q.head >= maxPendingReplays {
		q.refused++
		return false
	}
	if q.head > 0 && q.head == len(q.waiting) {
		q.waiting, q.head = q.waiting[:0], 0
	}
	q.waiting = append(q.waiting, r)
	return true
}

// take returns the first replay if it is due at now.
func (q *replayQueue) take(now time.Time) (replay, bool) {
	q.mutex.Lock()
	defer q.mutex.Unlock()
	if q.head == len(q.waiting) || q.waiting[q.head].due.After(now) {
		return replay{}, false
	}
	next := q.waiting[q.head]
	q.waiting[q.head] = replay{} // drop the session's token from memory
	q.head++
	// Reclaim the consumed front when it is most of the slice, so memory follows what is waiting.
	if q.head > 1024 && q.head*2 > len(q.waiting) {
		q.waiting = append(q.waiting[:0], q.waiting[q.head:]...)
		q.head = 0
	}
	return next, true
}

// pending returns how many replays wait and how many were refused.
func (q *replayQueue) pending() (waiting int, refused int64) {
	q.mutex.Lock()
	defer q.mutex.Unlock()
	return len(q.waiting) - q.head, q.refused
}
