package dedupe_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/dedupe"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

func id(i int) string { return ledger.TransactionIDFor(int64(i), "key") }

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name   string
		config dedupe.Config
		error  string // "" accepted
	}{
		{"defaults", dedupe.Config{}, ""},
		{"small", dedupe.Config{Capacity: 1, FalsePositiveRate: 0.5}, ""},
		{"negative capacity", dedupe.Config{Capacity: -1}, "capacity -1 must be between 1 and"},
		{"huge capacity", dedupe.Config{Capacity: dedupe.MaxCapacity + 1}, "must be between 1 and 100000000"},
		{"negative rate", dedupe.Config{FalsePositiveRate: -0.1}, "false-positive rate -0.1 must be above 0"},
		{"rate of one", dedupe.Config{FalsePositiveRate: 1}, "at most 0.5"},
		{"NaN rate", dedupe.Config{FalsePositiveRate: math.NaN()}, "false-positive rate NaN"},
		{"tiny rate", dedupe.Config{FalsePositiveRate: 1e-12}, "below 1e-9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			filter, err := dedupe.New(c.config)
			if c.error == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := filter.Config(); got.Capacity <= 0 || got.FalsePositiveRate <= 0 {
					t.Errorf("defaults not applied: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Errorf("error %v, want one containing %q", err, c.error)
			}
		})
	}
}

func TestFilterHasNoFalseNegatives(t *testing.T) {
	filter, err := dedupe.New(dedupe.Config{Capacity: 10_000, FalsePositiveRate: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5_000 {
		filter.Add(id(i))
	}
	for i := range 5_000 {
		if !filter.MightContain(id(i)) {
			t.Fatalf("id %d added but called new", i)
		}
	}
	// Ids never added are mostly called new; the rate is a target, so the
	// bound here is loose (ten times it) to stay deterministic in spirit:
	// the ids and the hash are fixed, so the count is too.
	positives := 0
	for i := 5_000; i < 15_000; i++ {
		if filter.MightContain(id(i)) {
			positives++
		}
	}
	if positives > 1_000 {
		t.Errorf("%d of 10000 new ids called maybe seen, want about 1%%", positives)
	}
	if stats := filter.Stats(); stats.IDs < 4_900 || stats.IDs > 5_000 {
		t.Errorf("filter holds %d ids, want about 5000", stats.IDs)
	}
}

func TestFilterForgetsItsOldestGeneration(t *testing.T) {
	filter, err := dedupe.New(dedupe.Config{Capacity: 100, FalsePositiveRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		filter.Add(id(i)) // the 100th fills the first generation: rotated
	}
	for i := 100; i < 150; i++ {
		filter.Add(id(i))
	}
	// Both generations are tested: everything is still there.
	for i := range 150 {
		if !filter.MightContain(id(i)) {
			t.Fatalf("id %d forgotten with two generations kept", i)
		}
	}
	for i := 150; i < 200; i++ {
		filter.Add(id(i)) // fills the second: the first is dropped
	}
	forgotten := 0
	for i := range 100 {
		if !filter.MightContain(id(i)) {
			forgotten++
		}
	}
	if forgotten < 90 {
		t.Errorf("%d of the oldest 100 ids forgotten, want nearly all", forgotten)
	}
	for i := 100; i < 200; i++ {
		if !filter.MightContain(id(i)) {
			t.Fatalf("recent id %d forgotten", i)
		}
	}
	if stats := filter.Stats(); stats.Rotations != 2 || stats.IDs > 100 {
		t.Errorf("stats %+v, want 2 rotations and at most 100 ids kept", stats)
	}
}

func TestFilterCounters(t *testing.T) {
	filter, err := dedupe.New(dedupe.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if rate := filter.Stats().ObservedFalsePositiveRate(); rate != 0 {
		t.Errorf("rate %v before anything was seen, want 0", rate)
	}
	filter.CountLookups(9, 4, 1)
	filter.CountLookups(0, 2, 0)
	filter.CountBackstopConflict()
	stats := filter.Stats()
	want := dedupe.Stats{LookupsSaved: 9, Positives: 6, FalsePositives: 1, BackstopConflicts: 1}
	if stats != want {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if rate := stats.ObservedFalsePositiveRate(); rate != 0.1 {
		t.Errorf("observed rate %v, want 1/(1+9)", rate)
	}
	defer func() {
		if recover() == nil {
			t.Error("more false positives than positives were accepted")
		}
	}()
	filter.CountLookups(0, 1, 2)
}

func TestFilterIsSafeForConcurrentUse(t *testing.T) {
	filter, err := dedupe.New(dedupe.Config{Capacity: 100_000}) // no rotation: 8,000 ids
	if err != nil {
		t.Fatal(err)
	}
	var group sync.WaitGroup
	for worker := range 4 {
		group.Add(1)
		go func() {
			defer group.Done()
			for i := range 2_000 {
				name := fmt.Sprint(worker, "-", i)
				filter.Add(name)
				if !filter.MightContain(name) {
					t.Errorf("%s added but called new", name)
					return
				}
				filter.CountLookups(1, 0, 0)
			}
		}()
	}
	group.Wait()
	if saved := filter.Stats().LookupsSaved; saved != 8_000 {
		t.Errorf("saved %d, want 8000", saved)
	}
}
