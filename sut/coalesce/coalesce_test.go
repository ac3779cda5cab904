package coalesce

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatchesAnswerEachCall runs many concurrent calls through a slow batch
// function: every call gets its own answer, and calls that waited went
// together (fewer batches than calls, none above the maximum).
func TestBatchesAnswerEachCall(t *testing.T) {
	var batches, largest atomic.Int64
	release := make(chan struct{})
	b := New(func(_ context.Context, in []int) ([]int, error) {
		batches.Add(1)
		if n := int64(len(in)); n > largest.Load() {
			largest.Store(n)
		}
		<-release
		out := make([]int, len(in))
		for i, v := range in {
			out[i] = v * 10
		}
		return out, nil
	}, Options{Lanes: 2, Max: 16})
	defer b.Close()

	const calls = 200
	var wg sync.WaitGroup
	failures := make(chan string, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := b.Do(context.Background(), i)
			if err != nil || out != i*10 {
				failures <- "wrong answer"
			}
		}()
	}
	// Let the callers pile up behind the first batches, then let them all go.
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(failures)
	for failure := range failures {
		t.Fatal(failure)
	}
	if got := batches.Load(); got >= calls {
		t.Fatalf("%d batches for %d calls: nothing was coalesced", got, calls)
	}
	if got := largest.Load(); got > 16 || got < 2 {
		t.Fatalf("largest batch %d, want 2..16", got)
	}
}

func TestBatchErrorFailsEveryCallOfTheBatch(t *testing.T) {
	boom := errors.New("boom")
	b := New(func(_ context.Context, in []string) ([]string, error) { return nil, boom }, Options{Lanes: 1, Max: 8})
	defer b.Close()
	if _, err := b.Do(context.Background(), "x"); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the batch's error", err)
	}
}

func TestWrongAnswerCountIsAnError(t *testing.T) {
	b := New(func(_ context.Context, in []string) ([]string, error) { return nil, nil }, Options{Lanes: 1, Max: 8})
	defer b.Close()
	if _, err := b.Do(context.Background(), "x"); err == nil {
		t.Fatal("a batch that answered no call was taken as an answer")
	}
}

func TestCallerContextAndClose(t *testing.T) {
	block := make(chan struct{})
	b := New(func(_ context.Context, in []int) ([]int, error) {
		<-block
		return make([]int, len(in)), nil
	}, Options{Lanes: 1, Max: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Do(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	close(block)
	b.Close()
	if _, err := b.Do(context.Background(), 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close got %v, want ErrClosed", err)
	}
}

// TestLingerGathersSpreadCalls: calls arriving a little apart, each alone
// when sent, go together when the lane lingers.
func TestLingerGathersSpreadCalls(t *testing.T) {
	var batches atomic.Int64
	b := New(func(_ context.Context, in []int) ([]int, error) {
		batches.Add(1)
		return in, nil
	}, Options{Lanes: 1, Max: 64, Linger: 50 * time.Millisecond})
	defer b.Close()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := b.Do(context.Background(), i); err != nil || out != i {
				t.Errorf("call %d: %d, %v", i, out, err)
			}
		}()
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	if got := batches.Load(); got > 3 {
		t.Fatalf("%d batches for 10 calls 2 ms apart with a 50 ms linger", got)
	}
}
