package capacity

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Postgres log as a capacity stack writes it (initdb's output first, then the server's lines), with two complete
// autovacuum actions, one without the usage line (the log ends inside it) and other lines that look alike.
const autovacuumLogSample = `The files belonging to this database system will be owned by user "postgres".
2026-12-07 13:14:01.100 UTC [3493] LOG:  database system is ready to accept connections
2026-12-07 13:15:19.870 UTC [24453] LOG:  automatic vacuum of table "ledger.public.transactions": index scans: 0
	pages: 0 removed, 7505 remain, 7505 scanned (100.00% of total)
	WAL usage: 7504 records, 1 full page images, 451062 bytes
	system usage: CPU: user: 0.03 s, system: 0.01 s, elapsed: 0.36 s
2026-12-07 13:15:20.294 UTC [24453] LOG:  automatic analyze of table "ledger.public.transactions"
	avg read rate: 7.978 MB/s, avg write rate: 0.203 MB/s
	system usage: CPU: user: 0.16 s, system: 0.00 s, elapsed: 0.42 s
2026-12-07 13:15:21.000 UTC [3493] LOG:  checkpoint starting: time
	system usage: CPU: user: 9.00 s, system: 9.00 s, elapsed: 9.00 s
2026-12-07 13:15:22.075 UTC [24453] LOG:  automatic vacuum of table "ledger.public.settlement_history": index scans: 0
	pages: 0 removed, 100 remain, 100 scanned (100.00% of total)
`

// TestParseAutovacuumLog: every complete action with its end, length, CPU (user + system), kind and table; no usage
// line read as an action's unless it follows one's header; an action cut off by the log's end left out.
func TestParseAutovacuumLog(t *testing.T) {
	actions, err := parseAutovacuumLog(strings.NewReader(autovacuumLogSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(actions) != 2 {
		t.Fatalf("%d actions, want 2: %+v", len(actions), actions)
	}
	vacuum, analyze := actions[0], actions[1]
	if want := time.Date(2026, 12, 7, 13, 15, 19, 870e6, time.UTC); !vacuum.End.Equal(want) || vacuum.Kind != "vacuum" ||
		vacuum.Table != "ledger.public.transactions" || vacuum.Elapsed != 0.36 || math.Abs(vacuum.CPUSeconds-0.04) > 1e-9 {
		t.Errorf("vacuum: %+v", vacuum)
	}
	if analyze.Kind != "analyze" || analyze.CPUSeconds != 0.16 || analyze.Elapsed != 0.42 {
		t.Errorf("analyze: %+v", analyze)
	}
	if _, err := readAutovacuumLog(filepath.Join(t.TempDir(), "absent.log")); err == nil {
		t.Error("a missing log: no error")
	}
}

// TestAutovacuumDuring: an action counts in a window it overlaps, with the share of its CPU that fell inside; one
// outside the window does not count; one logged with no length counts whole if it ended inside.
func TestAutovacuumDuring(t *testing.T) {
	at := func(second float64) time.Time {
		return time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC).Add(time.Duration(second * float64(time.Second)))
	}
	actions := []autovacuumAction{
		{End: at(12), Elapsed: 4, CPUSeconds: 0.8}, // 8-12: half inside [10, 30)
		{End: at(20), Elapsed: 1, CPUSeconds: 0.3}, // inside
		{End: at(31), Elapsed: 0.5, CPUSeconds: 5}, // after
		{End: at(15), Elapsed: 0, CPUSeconds: 0.01},
		{End: at(5), Elapsed: 0, CPUSeconds: 7},
	}
	share := autovacuumDuring(actions, at(10), at(30))
	if share.Actions != 3 || math.Abs(share.CPUSeconds-0.71) > 1e-9 {
		t.Errorf("got %d actions, %.4f CPU s; want 3 and 0.4 + 0.3 + 0.01", share.Actions, share.CPUSeconds)
	}
	if share := autovacuumDuring(actions, at(40), at(60)); share.Actions != 0 || share.CPUSeconds != 0 {
		t.Errorf("an empty window: %+v", share)
	}
}

// TestNoteAutovacuum: each step with a hold gets what autovacuum did in it, from the stack's log; the report prints
// it beside the step's CPU, and "–" where the log was not read.
func TestNoteAutovacuum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "postgres.log")
	if err := os.WriteFile(path, []byte(autovacuumLogSample), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []capacityStep{
		{TargetTPS: 5000, Held: true, WindowStart: time.Date(2026, 12, 7, 13, 15, 0, 0, time.UTC), WindowSeconds: 30,
			CPUSeconds: map[string]float64{machineComponent: 30}, CPUPer1000: map[string]float64{machineComponent: 0.3}},
		{TargetTPS: 6000, Held: true, WindowStart: time.Date(2026, 12, 7, 13, 16, 0, 0, time.UTC), WindowSeconds: 20,
			CPUSeconds: map[string]float64{machineComponent: 35}, CPUPer1000: map[string]float64{machineComponent: 0.29}},
		{TargetTPS: 7500},
	}
	var out strings.Builder
	noteAutovacuum([]*capacityStep{&steps[0], &steps[1], &steps[2]}, path, &out)
	if a := steps[0].Autovacuum; a == nil || a.Actions != 2 || math.Abs(a.CPUSeconds-0.20) > 1e-9 {
		t.Errorf("5000 TPS: %+v, want 2 actions and 0.20 CPU s", a)
	}
	if a := steps[1].Autovacuum; a == nil || a.Actions != 0 {
		t.Errorf("6000 TPS: %+v, want none", a)
	}
	if steps[2].Autovacuum != nil {
		t.Errorf("a step without a hold: %+v", steps[2].Autovacuum)
	}
	page := (&capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}, Steps: steps[:2]}}}).markdown("/run")
	for _, want := range []string{"| load avg | autovacuum |", "| 0.00 | 0.20 (2) |", "| 0.00 | 0.00 (0) |"} {
		if !strings.Contains(page, want) {
			t.Errorf("capacity.md lacks %q:\n%s", want, page)
		}
	}

	missing := []capacityStep{steps[0]}
	missing[0].Autovacuum = nil
	noteAutovacuum([]*capacityStep{&missing[0]}, filepath.Join(t.TempDir(), "absent.log"), &out)
	if missing[0].Autovacuum != nil || !strings.Contains(out.String(), "not read from the Postgres log") {
		t.Errorf("an unreadable log: %+v, output %q", missing[0].Autovacuum, out.String())
	}
	page = (&capacityResult{Modes: []capacityModeResult{{Mode: capacityMode{Name: ModeBatched}, Steps: missing}}}).markdown("/run")
	if !strings.Contains(page, "| 0.00 | – |") {
		t.Errorf("a step whose log was not read must print –:\n%s", page)
	}
}
