package capacity

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memorySample is the private memory of each watched process tree at one
// instant, in KiB.
type memorySample struct {
	At  time.Time        `json:"at"`
	KiB map[string]int64 `json:"kib"`
}

// memorySampler records, every interval, the private resident memory
// (RssAnon: heap, stacks, anonymous mappings) of each process tree the CPU
// sampler watches. Private memory is what a leak grows; shared pages
// (Postgres's shared buffers, mapped binaries) are counted once per
// process by VmRSS and would make a tree's sum meaningless.
type memorySampler struct {
	source  func() map[string]int
	mutex   sync.Mutex
	samples []memorySample
}

// watchedNow is a copy of the process trees the sampler watches now.
func (s *cpuSampler) watchedNow() map[string]int {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	watched := make(map[string]int, len(s.watched))
	for name, pid := range s.watched {
		watched[name] = pid
	}
	return watched
}

func (s *memorySampler) sample() {
	table := scanProcesses()
	sample := memorySample{At: time.Now().UTC(), KiB: map[string]int64{}}
	for name, root := range s.source() {
		if _, alive := table[root]; !alive {
			continue
		}
		var total int64
		for _, pid := range table.tree(root) {
			// A process may exit between the scan and the read.
			if kib, err := readPrivateMemory(pid); err == nil {
				total += kib
			}
		}
		sample.KiB[name] = total
	}
	s.mutex.Lock()
	s.samples = append(s.samples, sample)
	s.mutex.Unlock()
}

// run samples every interval until stop is closed, and once more then.
func (s *memorySampler) run(interval time.Duration, stop <-chan struct{}) {
	sampleEvery(interval, stop, s.sample)
	s.sample()
}

func (s *memorySampler) all() []memorySample {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	return append([]memorySample(nil), s.samples...)
}

// tree is a process and its live descendants.
func (t processTable) tree(root int) []int {
	children := map[int][]int{}
	for pid, times := range t {
		children[times.parent] = append(children[times.parent], pid)
	}
	var pids []int
	seen := map[int]bool{}
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := t[pid]; !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		pids = append(pids, pid)
		stack = append(stack, children[pid]...)
	}
	sort.Ints(pids)
	return pids
}

// readPrivateMemory is the RssAnon line of /proc/PID/status, in KiB.
func readPrivateMemory(pid int) (int64, error) {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parsePrivateMemory(content)
}

func parsePrivateMemory(status []byte) (int64, error) {
	scanner := bufio.NewScanner(bytes.NewReader(status))
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), "RssAnon:")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("RssAnon: unexpected %q", strings.TrimSpace(value))
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	// Kernel threads have no memory lines.
	return 0, nil
}
