// Package syncwriter lets goroutines share one writer: each Write reaches
// it whole, one at a time, so the lines of a run's goroutines (the load's
// workers, the chaos runner, a supervisor) never interleave.
package syncwriter

import (
	"io"
	"sync"
)

// Writer serialises the writes to w.
type Writer struct {
	mutex sync.Mutex
	w     io.Writer
}

// New returns a Writer over w.
func New(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes p to the underlying writer while no other Write does.
func (s *Writer) Write(p []byte) (int, error) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	return s.w.Write(p)
}
