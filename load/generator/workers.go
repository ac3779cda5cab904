package generator

import (
	"sync"
	"time"
)

// Workers of the open model. An iteration runs on a worker goroutine that is reused for later iterations,
// rather than on a goroutine of its own: a new goroutine grows its stack through the HTTP client's calls
// (from a few KiB to tens), and at thousands of iterations per second that copying cost more CPU than the rest
// of the generator's own work (`ledgerproof bench-load`, docs/performance.md).
//
// Idle workers wait in a stack, the most recently idle on top, and the scheduler hands an iteration to the top
// one: the few workers a steady load needs stay busy and keep their grown stacks, while those a burst of
// iterations in flight called for sink to the bottom and exit once idle for workerIdleLimit. Without that, a
// burst would leave tens of thousands of idle goroutines behind whose stacks every garbage collection scans and
// shrinks, and every reuse grows again.

// workerIdleLimit is how long a worker waits for an iteration before it exits.
const workerIdleLimit = time.Second

// workerRetirementsPerTake bounds the idle workers one take retires, so that handing out an iteration stays
// cheap however many a burst left (at thousands of takes per second they are gone within a second or two).
const workerRetirementsPerTake = 4

// openIteration is one iteration of the open model, handed to a worker.
type openIteration struct {
	n    int64
	slot uint64
	due  time.Time
	step string
}

// worker is a goroutine that runs open-model iterations one after the other.
type worker struct {
	// jobs carries the worker's next iteration; capacity 1, so that handing it over never blocks. Closed to
	// make an idle worker exit.
	jobs      chan openIteration
	idleSince time.Time
}

func newWorker() *worker { return &worker{jobs: make(chan openIteration, 1)} }

// workerPool holds the idle workers.
type workerPool struct {
	mutex  sync.Mutex
	idle   []*worker // a stack: the most recently idle last
	closed bool
}

// take returns the most recently idle worker, or nil when none is idle. It first retires (makes exit) up to
// workerRetirementsPerTake workers at the bottom that have been idle longer than workerIdleLimit at now.
func (p *workerPool) take(now time.Time) *worker {
	p.mutex.Lock()
	defer p.mutex.Unlock()
	for retired := 0; retired < workerRetirementsPerTake && len(p.idle) > 0 && now.Sub(p.idle[0].idleSince) > workerIdleLimit; retired++ {
		close(p.idle[0].jobs)
		p.idle[0] = nil
		p.idle = p.idle[1:]
	}
	if len(p.idle) == 0 {
		return nil
	}
	top := p.idle[len(p.idle)-1]
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	return top
}

// park puts a worker that finished its iteration on top of the idle ones; false when the pool is closed (the
// schedule is over), and the worker exits.
func (p *workerPool) park(w *worker, now time.Time) bool {
	p.mutex.Lock()
	defer p.mutex.Unlock()
	if p.closed {
		return false
	}
	w.idleSince = now
	p.idle = append(p.idle, w)
	return true
}

// close makes every idle worker exit; busy ones exit when their iteration is over.
func (p *workerPool) close() {
	p.mutex.Lock()
	defer p.mutex.Unlock()
	p.closed = true
	for _, w := range p.idle {
		close(w.jobs)
	}
	p.idle = nil
}

// idleCount is the number of idle workers (tests).
func (p *workerPool) idleCount() int {
	p.mutex.Lock()
	defer p.mutex.Unlock()
	return len(p.idle)
}
