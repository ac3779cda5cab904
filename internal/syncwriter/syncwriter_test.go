package syncwriter

import (
	"runtime"
	"strings"
	"sync"
	"testing"
)

// racyWriter appends byte by byte and yields in between: two Writes at
// once interleave their bytes unless something serialises them.
type racyWriter struct{ out []byte }

func (r *racyWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		r.out = append(r.out, b)
		runtime.Gosched()
	}
	return len(p), nil
}

func TestWritesDoNotInterleave(t *testing.T) {
	target := &racyWriter{}
	w := New(target)
	var group sync.WaitGroup
	for i := range 8 {
		group.Add(1)
		go func() {
			defer group.Done()
			line := strings.Repeat(string(rune('a'+i)), 64) + "\n"
			for range 200 {
				_, _ = w.Write([]byte(line))
			}
		}()
	}
	group.Wait()
	lines := strings.Split(strings.TrimSuffix(string(target.out), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, line := range lines {
		if len(line) != 64 || strings.Count(line, line[:1]) != 64 {
			t.Fatalf("interleaved line %q", line)
		}
	}
}
