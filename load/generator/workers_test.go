package generator

import (
	"testing"
	"time"
)

// retired reports whether a worker was told to exit (its jobs channel closed).
func retired(w *worker) bool {
	select {
	case _, open := <-w.jobs:
		return !open
	default:
		return false
	}
}

func TestWorkerPoolHandsOutTheMostRecentlyIdle(t *testing.T) {
	pool := &workerPool{}
	start := time.Unix(1_700_000_000, 0)
	first, second, third := newWorker(), newWorker(), newWorker()
	for i, w := range []*worker{first, second, third} {
		if !pool.park(w, start.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatal("park refused by an open pool")
		}
	}
	for _, want := range []*worker{third, second, first} {
		if got := pool.take(start.Add(10 * time.Millisecond)); got != want {
			t.Fatalf("take = %p, want %p (the most recently idle)", got, want)
		}
	}
	if got := pool.take(start); got != nil {
		t.Fatalf("take from an empty pool = %p, want nil", got)
	}
}

func TestWorkerPoolRetiresLongIdleWorkers(t *testing.T) {
	pool := &workerPool{}
	start := time.Unix(1_700_000_000, 0)
	var burst []*worker
	for range 10 { // a burst left ten workers idle
		w := newWorker()
		burst = append(burst, w)
		pool.park(w, start)
	}
	hot := newWorker()
	pool.park(hot, start.Add(workerIdleLimit)) // one stays busy

	later := start.Add(workerIdleLimit + time.Millisecond)
	if got := pool.take(later); got != hot {
		t.Fatalf("take = %p, want the hot worker %p", got, hot)
	}
	if got := pool.idleCount(); got != 10-workerRetirementsPerTake {
		t.Fatalf("%d idle after one take, want %d: a take retires at most %d", got, 10-workerRetirementsPerTake, workerRetirementsPerTake)
	}
	for i, w := range burst[:workerRetirementsPerTake] {
		if !retired(w) {
			t.Fatalf("burst worker %d, idle longer than %s, was not retired", i, workerIdleLimit)
		}
	}
	for pool.take(later) != nil { // every take retires more, then hands out what is left
	}
	for i, w := range burst {
		if !retired(w) && pool.idleCount() > 0 {
			t.Fatalf("burst worker %d is neither retired nor handed out", i)
		}
	}
}

func TestWorkerPoolCloseRetiresIdleWorkersAndRefusesBusyOnes(t *testing.T) {
	pool := &workerPool{}
	now := time.Unix(1_700_000_000, 0)
	idle, busy := newWorker(), newWorker()
	pool.park(idle, now)
	pool.close()
	if !retired(idle) {
		t.Fatal("close left an idle worker waiting")
	}
	if pool.park(busy, now) {
		t.Fatal("a closed pool took a worker back: it would wait forever")
	}
}
