// Package dedupe is the first tier of the worker's two-tier dedupe
// (docs/two-tier-dedupe.md): a Bloom filter of the transaction ids the
// worker has recently seen in the ledger. A negative ("definitely not seen
// here") lets a command skip the exact lookup by id; a positive ("maybe")
// goes to the exact lookup as every command does without the filter.
//
// A negative only means "not seen by this filter": the filter is one
// process's, starts empty (or warmed from a bounded slice of the ledger),
// forgets its oldest generation, and never sees what other workers apply.
// So the filter is never the last word: the ledger's primary key and unique
// key refuse a wrong negative, and the apply then looks every command up
// (sut/postgres, ApplyBatch). This package only keeps the filter and its
// counters; it reads and writes nothing else.
package dedupe

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bits-and-blooms/bloom/v3"
)

// Config configures a Filter.
type Config struct {
	// Capacity is how many ids one generation of the filter holds at the
	// target false-positive rate; the filter keeps two generations, so it
	// remembers between Capacity and 2·Capacity of the latest ids. Default
	// 1,000,000: at 150 to 2,500 new transactions a second that is minutes
	// to hours of history (the replays and retries a gateway's key TTL lets
	// through come within that), for about 1.8 MB per generation at the
	// default rate.
	Capacity int
	// FalsePositiveRate is the target share of new ids the filter calls
	// "maybe seen" (each costs the exact lookup the filter was meant to
	// save, never a wrong answer). Default 0.001.
	FalsePositiveRate float64
}

// Defaults of Config.
const (
	DefaultCapacity          = 1_000_000
	DefaultFalsePositiveRate = 0.001
	// MaxCapacity bounds Capacity: 100 million ids take about 180 MB per
	// generation at the default rate.
	MaxCapacity = 100_000_000
)

func (c *Config) applyDefaults() error {
	if c.Capacity == 0 {
		c.Capacity = DefaultCapacity
	}
	if c.FalsePositiveRate == 0 {
		c.FalsePositiveRate = DefaultFalsePositiveRate
	}
	return c.Validate()
}

// Validate rejects a capacity or a rate the filter cannot honour. Zero
// values mean the defaults and are accepted.
func (c Config) Validate() error {
	if c.Capacity < 0 || c.Capacity > MaxCapacity {
		return fmt.Errorf("dedupe filter: capacity %d must be between 1 and %d (0: the default, %d)", c.Capacity, MaxCapacity, DefaultCapacity)
	}
	// NaN fails both comparisons below, so it is refused too.
	if !(c.FalsePositiveRate >= 0 && c.FalsePositiveRate <= 0.5) {
		return fmt.Errorf("dedupe filter: false-positive rate %v must be above 0 and at most 0.5 (0: the default, %v)", c.FalsePositiveRate, DefaultFalsePositiveRate)
	}
	if c.FalsePositiveRate > 0 && c.FalsePositiveRate < 1e-9 {
		return fmt.Errorf("dedupe filter: false-positive rate %v is below 1e-9: the filter would need more than 43 bits per id", c.FalsePositiveRate)
	}
	return nil
}

// Filter is a two-generation Bloom filter of transaction ids with the
// counters the worker's metrics read. It is safe for concurrent use: the
// batches of several partitions test and add at once.
type Filter struct {
	config Config

	mutex sync.Mutex
	// current takes new ids; previous is the generation before it, still
	// tested. When current holds Capacity ids it becomes previous and the
	// old previous is dropped: the filter forgets the oldest ids instead of
	// letting its false-positive rate climb without bound.
	current, previous *bloom.BloomFilter
	currentIDs        int
	previousIDs       int
	rotations         uint64

	lookupsSaved, positives, falsePositives, backstopConflicts atomic.Uint64
}

// New returns an empty filter.
func New(config Config) (*Filter, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, err
	}
	return &Filter{config: config, current: newGeneration(config)}, nil
}

func newGeneration(config Config) *bloom.BloomFilter {
	return bloom.NewWithEstimates(uint(config.Capacity), config.FalsePositiveRate)
}

// Config returns the filter's configuration, defaults applied.
func (f *Filter) Config() Config { return f.config }

// MightContain reports whether id may have been added: false means it
// surely was not (in the generations the filter still keeps).
func (f *Filter) MightContain(id string) bool {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	return f.current.TestString(id) || (f.previous != nil && f.previous.TestString(id))
}

// Add records ids as seen in the ledger.
func (f *Filter) Add(ids ...string) {
	f.mutex.Lock()
	defer f.mutex.Unlock()
	for _, id := range ids {
		if f.current.TestOrAddString(id) {
			continue // already there (or a collision): it costs no room
		}
		f.currentIDs++
		if f.currentIDs >= f.config.Capacity {
			f.previous, f.previousIDs = f.current, f.currentIDs
			f.current, f.currentIDs = newGeneration(f.config), 0
			f.rotations++
		}
	}
}

// CountLookups records what one attempt to apply a batch did with the
// filter: saved ids skipped the exact lookup (negatives), positives were
// looked up, and falsePositives of those were not in the ledger.
func (f *Filter) CountLookups(saved, positives, falsePositives int) {
	if saved < 0 || positives < 0 || falsePositives < 0 || falsePositives > positives {
		panic(fmt.Sprintf("dedupe filter: impossible counts saved %d, positives %d, false positives %d", saved, positives, falsePositives))
	}
	f.lookupsSaved.Add(uint64(saved))
	f.positives.Add(uint64(positives))
	f.falsePositives.Add(uint64(falsePositives))
}

// CountBackstopConflict records a batch the ledger's unique keys refused
// while the filter was in use: a negative was wrong (an id the filter never
// saw, or forgot, was in the ledger), and the batch is applied again with
// the exact lookup of every command.
func (f *Filter) CountBackstopConflict() { f.backstopConflicts.Add(1) }

// Stats is a snapshot of the filter's counters.
type Stats struct {
	// LookupsSaved counts ids the filter called new: they skipped the
	// exact lookup.
	LookupsSaved uint64
	// Positives counts ids the filter called "maybe seen": looked up.
	Positives uint64
	// FalsePositives counts positives the lookup did not find.
	FalsePositives uint64
	// BackstopConflicts counts batches the ledger's unique keys refused
	// after a wrong negative (applied again with every lookup).
	BackstopConflicts uint64
	// IDs is how many distinct ids the kept generations hold (about: a
	// collision on Add is not counted).
	IDs int
	// Rotations counts the generations dropped.
	Rotations uint64
}

// ObservedFalsePositiveRate is the share of new ids (those the lookup did
// not find) that the filter called "maybe seen": FalsePositives over
// FalsePositives plus LookupsSaved; 0 when nothing new was seen yet. A
// wrong negative, caught by the backstop, was counted as saved by the
// attempt the ledger refused, so the figure can be a little low.
func (s Stats) ObservedFalsePositiveRate() float64 {
	newIDs := s.FalsePositives + s.LookupsSaved
	if newIDs == 0 {
		return 0
	}
	return float64(s.FalsePositives) / float64(newIDs)
}

// Stats returns the filter's counters.
func (f *Filter) Stats() Stats {
	f.mutex.Lock()
	ids, rotations := f.currentIDs, f.rotations
	if f.previous != nil {
		ids += f.previousIDs
	}
	f.mutex.Unlock()
	return Stats{LookupsSaved: f.lookupsSaved.Load(), Positives: f.positives.Load(), FalsePositives: f.falsePositives.Load(),
		BackstopConflicts: f.backstopConflicts.Load(), IDs: ids, Rotations: rotations}
}
