package capacity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of the CPU times in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicksPerSecond = 100

// processTimes is what /proc/PID/stat says of one process's CPU use.
type processTimes struct {
	parent int
	// own is utime+stime; children is cutime+cstime (children that exited
	// and were waited for), both in clock ticks.
	own, children uint64
}

// readProcessTimes parses /proc/PID/stat (fields 4, 14-17). The command name
// may hold spaces and parentheses, so fields are counted after its last ')'.
func readProcessTimes(pid int) (processTimes, error) {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return processTimes{}, err
	}
	end := bytes.LastIndexByte(content, ')')
	if end < 0 {
		return processTimes{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(string(content[end+1:]))
	// fields[0] is field 3 (state): field n is fields[n-3].
	if len(fields) < 15 {
		return processTimes{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	numbers := make([]uint64, 4)
	for i := range numbers {
		if numbers[i], err = strconv.ParseUint(fields[11+i], 10, 64); err != nil {
			return processTimes{}, fmt.Errorf("/proc/%d/stat field %d: %w", pid, 14+i, err)
		}
	}
	parent, err := strconv.Atoi(fields[1])
	if err != nil {
		return processTimes{}, fmt.Errorf("/proc/%d/stat ppid: %w", pid, err)
	}
	return processTimes{parent: parent, own: numbers[0] + numbers[1], children: numbers[2] + numbers[3]}, nil
}

// processTable is one scan of /proc: every process's times.
type processTable map[int]processTimes

func scanProcesses() processTable {
	table := processTable{}
	entries, _ := filepath.Glob("/proc/[0-9]*")
	for _, entry := range entries {
		pid, err := strconv.Atoi(filepath.Base(entry))
		if err != nil {
			continue
		}
		// A process may exit between the listing and the read: skipped.
		if times, err := readProcessTimes(pid); err == nil {
			table[pid] = times
		}
	}
	return table
}

// treeTicks is the CPU a process and all its descendants used so far: its
// own, that of its children that exited (cutime, cstime), and that of its
// live descendants. Postgres is counted this way: the postmaster and every
// backend it forked.
func (t processTable) treeTicks(root int) uint64 {
	children := map[int][]int{}
	for pid, times := range t {
		children[times.parent] = append(children[times.parent], pid)
	}
	var total uint64
	seen := map[int]bool{}
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		times, ok := t[pid]
		if !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		total += times.own + times.children
		stack = append(stack, children[pid]...)
	}
	return total
}

// machineBusyTicks is the CPU every core of the machine spent not idle, from
// /proc/stat: the load of everything, ours and others'.
func machineBusyTicks() (uint64, error) {
	content, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(content), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, field := range fields[1:] {
		value, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// user nice system idle iowait irq softirq steal...: idle and
		// iowait are not busy.
		if i != 3 && i != 4 {
			busy += value
		}
	}
	return busy, nil
}

// cpuSample is the cumulative CPU seconds of each watched process tree at
// one instant.
type cpuSample struct {
	at      time.Time
	seconds map[string]float64
}

// machineComponent is the sample's name for the whole machine's busy time.
const machineComponent = "machine"

// cpuSampler samples the watched process trees every interval.
type cpuSampler struct {
	mutex   sync.Mutex
	watched map[string]int
	samples []cpuSample
}

func newCPUSampler() *cpuSampler { return &cpuSampler{watched: map[string]int{}} }

// watch adds (or, with pid 0, removes) a named process tree.
func (s *cpuSampler) watch(name string, pid int) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	if pid == 0 {
		delete(s.watched, name)
		return
	}
	s.watched[name] = pid
}

// sample takes one sample now.
func (s *cpuSampler) sample() {
	s.mutex.Lock()
	watched := make(map[string]int, len(s.watched))
	for name, pid := range s.watched {
		watched[name] = pid
	}
	s.mutex.Unlock()
	table := scanProcesses()
	sample := cpuSample{at: time.Now(), seconds: map[string]float64{}}
	for name, pid := range watched {
		if _, alive := table[pid]; alive {
			sample.seconds[name] = float64(table.treeTicks(pid)) / clockTicksPerSecond
		}
	}
	if busy, err := machineBusyTicks(); err == nil {
		sample.seconds[machineComponent] = float64(busy) / clockTicksPerSecond
	}
	s.mutex.Lock()
	s.samples = append(s.samples, sample)
	s.mutex.Unlock()
}

// run samples every interval until stop is closed.
func (s *cpuSampler) run(interval time.Duration, stop <-chan struct{}) {
	sampleEvery(interval, stop, s.sample)
}

// sampleEvery calls sample at once, then every interval until stop is
// closed.
func sampleEvery(interval time.Duration, stop <-chan struct{}, sample func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	sample()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			sample()
		}
	}
}

// at interpolates a component's cumulative CPU seconds at an instant between
// two samples; ok is false when the samples do not cover it.
func (s *cpuSampler) at(name string, instant time.Time) (float64, bool) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	var before, after *cpuSample
	for i := range s.samples {
		sample := &s.samples[i]
		if _, has := sample.seconds[name]; !has {
			continue
		}
		if !sample.at.After(instant) {
			before = sample
			continue
		}
		after = sample
		break
	}
	if before != nil && after == nil && instant.Sub(before.at) <= 3*time.Second {
		// The process ended (the load exits soon after its hold) or the
		// next sample is not taken yet: its last value stands, which
		// undercounts by at most what it used after that sample.
		return before.seconds[name], true
	}
	if before == nil || after == nil {
		return 0, false
	}
	span := after.at.Sub(before.at).Seconds()
	from, to := before.seconds[name], after.seconds[name]
	if span <= 0 || to < from {
		return from, true
	}
	return from + (to-from)*instant.Sub(before.at).Seconds()/span, true
}

// used is the CPU seconds a component used in [from, to]; ok is false when
// the samples do not cover the window.
func (s *cpuSampler) used(name string, from, to time.Time) (float64, bool) {
	start, ok := s.at(name, from)
	if !ok {
		return 0, false
	}
	end, ok := s.at(name, to)
	if !ok {
		return 0, false
	}
	return end - start, true
}

// cpuTimeseriesFile is a step's CPU by process, one JSON line per second, in
// the step's directory beside the load's load-timeseries.jsonl.
const cpuTimeseriesFile = "cpu-timeseries.jsonl"

// cpuSecond is one line of cpuTimeseriesFile: the CPU seconds each watched
// process tree, and the whole machine, used in one second of the step, which
// began in the Unix second T.
type cpuSecond struct {
	T          int64              `json:"t"`
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
}

// perSecond is the CPU each named component used in every second from from
// on (from, from+1s, ... while before to), interpolated between the samples
// (one a second, so a second's figure is spread over the two samples around
// it). From the schedule's start, these are the seconds of the load's own
// time series, whose lines count from its start. A component the samples do
// not cover in a second is left out of it, and a second no component is
// covered in is left out.
func (s *cpuSampler) perSecond(names []string, from, to time.Time) []cpuSecond {
	var seconds []cpuSecond
	for start := from; start.Before(to); start = start.Add(time.Second) {
		row := cpuSecond{T: start.Unix(), CPUSeconds: map[string]float64{}}
		for _, name := range names {
			if used, ok := s.used(name, start, start.Add(time.Second)); ok {
				row.CPUSeconds[name] = round3(used)
			}
		}
		if len(row.CPUSeconds) > 0 {
			seconds = append(seconds, row)
		}
	}
	return seconds
}

// writeCPUTimeseries writes seconds as JSON lines to path.
func writeCPUTimeseries(path string, seconds []cpuSecond) error {
	var content bytes.Buffer
	encoder := json.NewEncoder(&content)
	for _, second := range seconds {
		if err := encoder.Encode(second); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, content.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write the CPU time series: %w", err)
	}
	return nil
}
