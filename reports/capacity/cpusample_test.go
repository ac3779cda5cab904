package capacity

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestCPUPerSecond: each second's CPU is interpolated between the samples around it, a second that begins before
// the first sample is left out, a process that ended keeps its last figure for a while (so it used nothing more),
// the seconds count from the window's start as the load's do, and the file has one JSON line per second in order.
func TestCPUPerSecond(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(seconds float64) time.Time { return t0.Add(time.Duration(seconds * float64(time.Second))) }
	sampler := newCPUSampler()
	sampler.samples = []cpuSample{
		{at: at(0.5), seconds: map[string]float64{"gateway-0": 0, "load": 0, machineComponent: 10}},
		{at: at(1.5), seconds: map[string]float64{"gateway-0": 0.4, "load": 0.3, machineComponent: 11}},
		{at: at(2.5), seconds: map[string]float64{"gateway-0": 1.0, machineComponent: 12.5}},
		{at: at(3.5), seconds: map[string]float64{"gateway-0": 1.2, machineComponent: 13}},
	}
	names := []string{machineComponent, "load", "gateway-0", "worker-0"}
	want := []cpuSecond{
		{T: t0.Unix() + 1, CPUSeconds: map[string]float64{"gateway-0": 0.5, "load": 0.15, machineComponent: 1.25}},
		{T: t0.Unix() + 2, CPUSeconds: map[string]float64{"gateway-0": 0.4, "load": 0, machineComponent: 1}},
	}
	if got := sampler.perSecond(names, at(1), at(3)); !reflect.DeepEqual(got, want) {
		t.Fatalf("per second:\n got %+v\nwant %+v", got, want)
	}
	// [t0, t0+1) begins before the first sample: nothing covers it.
	if got := sampler.perSecond(names, at(0.2), at(1)); len(got) != 0 {
		t.Errorf("a second before the first sample: %+v", got)
	}
	// A window that starts inside a Unix second counts its seconds from there: [t0+1.3, t0+2.3), [t0+2.3, t0+3.3).
	got := sampler.perSecond(names, at(1.3), at(2.5))
	if len(got) != 2 || got[0].T != t0.Unix()+1 || got[1].T != t0.Unix()+2 || got[0].CPUSeconds["gateway-0"] != 0.56 {
		t.Errorf("from t0+1.3s: %+v, want two seconds from t0+1 (the gateway 0.56 in the first)", got)
	}

	path := filepath.Join(t.TempDir(), cpuTimeseriesFile)
	if err := writeCPUTimeseries(path, want); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var read []cpuSecond
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		var second cpuSecond
		if err := json.Unmarshal(lines.Bytes(), &second); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		read = append(read, second)
	}
	if !reflect.DeepEqual(read, want) {
		t.Errorf("read back %+v, want %+v", read, want)
	}
}
