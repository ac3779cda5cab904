// Package coalesce sends many callers' small requests to a server as one
// batch: while a batch is in flight, the calls that arrive wait, and they go
// together as the next batch (the "group commit" or "smart batching"
// pattern). Without a linger there is no timer: an idle system sends each
// call at once, a busy one sends fewer, bigger batches; a linger
// (Options.Linger) also gathers calls that arrive spread out, for a bounded
// delay. A gateway uses it to turn thousands of one-key Redis and Postgres
// round trips per second into far fewer pipelines, which is where a round
// trip's CPU goes: system calls and the server's per-request work, on both
// sides.
package coalesce

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("coalesce: closed")

// Func runs one batch: out[i] answers in[i]. An error fails every call of
// the batch; a call that can fail alone carries its error in its Out.
type Func[In, Out any] func(ctx context.Context, in []In) (out []Out, err error)

// Options shape a Batcher.
type Options struct {
	// Lanes is how many batches may be in flight at once (at least 1):
	// with one, a slow batch holds every caller; two keep calls moving
	// while one batch waits.
	Lanes int
	// Max bounds a batch (at least 1).
	Max int
	// Linger is how long a lane waits, after a batch's first call, for more
	// (stopping early at Max). 0 sends what is already waiting at once.
	// Calls that arrive spread out (one request's single round trip, a few
	// thousand a second) rarely meet a batch in flight; a linger of a
	// millisecond gathers them at the cost of that millisecond.
	Linger time.Duration
}

// Batcher coalesces calls into batches.
type Batcher[In, Out any] struct {
	run    Func[In, Out]
	max    int
	linger time.Duration
	calls  chan call[In, Out]

	start    sync.Once
	lanes    int
	stop     chan struct{}
	stopOnce sync.Once
	running  sync.WaitGroup
}

type call[In, Out any] struct {
	in   In
	done chan result[Out]
}

type result[Out any] struct {
	out Out
	err error
}

// New returns a batcher running batches with run.
func New[In, Out any](run Func[In, Out], options Options) *Batcher[In, Out] {
	lanes, max := options.Lanes, options.Max
	if lanes < 1 {
		lanes = 1
	}
	if max < 1 {
		max = 1
	}
	return &Batcher[In, Out]{run: run, max: max, linger: options.Linger, lanes: lanes,
		calls: make(chan call[In, Out]), stop: make(chan struct{})}
}

// Do runs in as part of a batch and returns its answer. A caller whose ctx
// ends stops waiting; its call may still be sent (the batch it joined is
// not undone).
func (b *Batcher[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	var zero Out
	b.start.Do(b.startLanes)
	c := call[In, Out]{in: in, done: make(chan result[Out], 1)}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.stop:
		return zero, ErrClosed
	}
	select {
	case r := <-c.done:
		return r.out, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Close stops the lanes once their batches in flight are answered; later
// calls fail with ErrClosed.
func (b *Batcher[In, Out]) Close() {
	b.stopOnce.Do(func() { close(b.stop) })
	b.running.Wait()
}

func (b *Batcher[In, Out]) startLanes() {
	for range b.lanes {
		b.running.Add(1)
		go b.lane()
	}
}

// lane takes a first call, adds the calls already waiting or, with a linger,
// arriving within it (up to max), runs the batch and answers each call. Calls that arrive meanwhile wait in the
// channel for the next batch of this lane or another.
func (b *Batcher[In, Out]) lane() {
	defer b.running.Done()
	batch := make([]call[In, Out], 0, b.max)
	inputs := make([]In, 0, b.max)
	var lingering *time.Timer
	if b.linger > 0 {
		lingering = time.NewTimer(b.linger)
		lingering.Stop()
	}
	for {
		batch, inputs = batch[:0], inputs[:0]
		select {
		case c := <-b.calls:
			batch = append(batch, c)
		case <-b.stop:
			return
		}
		b.gather(&batch, lingering)
		for _, c := range batch {
			inputs = append(inputs, c.in)
		}
		// The batch outlives any one caller: it runs without their
		// contexts, and run bounds it with its own timeout.
		outputs, err := b.run(context.Background(), inputs)
		if err == nil && len(outputs) != len(batch) {
			err = errors.New("coalesce: a batch answered a different number of calls")
		}
		for i, c := range batch {
			if err != nil {
				c.done <- result[Out]{err: err}
				continue
			}
			c.done <- result[Out]{out: outputs[i]}
		}
	}
}

// gather adds the calls waiting now (no linger) or arriving within the linger
// to batch, up to max.
func (b *Batcher[In, Out]) gather(batch *[]call[In, Out], lingering *time.Timer) {
	if lingering == nil {
		for len(*batch) < b.max {
			select {
			case c := <-b.calls:
				*batch = append(*batch, c)
			default:
				return
			}
		}
		return
	}
	lingering.Reset(b.linger)
	defer lingering.Stop()
	for len(*batch) < b.max {
		select {
		case c := <-b.calls:
			*batch = append(*batch, c)
		case <-lingering.C:
			return
		case <-b.stop:
			return
		}
	}
}
