package invariants

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"
)

// ShardedSource is the union of the shards of a sharded ledger
// (docs/sharding.md), read as one ledger so every invariant is checked
// across shards: conservation over all of them, and a cross-shard
// transfer's debit (in the source shard) and credit (in the destination
// shard) seen as the transaction's two postings. Shard i is Shards[i].
//
// Each shard's ids are its own, so ShardedSource renumbers postings and
// dead letters as id×N+i (N shards): ascending within a shard stays
// ascending, and the shards' streams are merged into one ascending order.
// Account ids are unique across shards by construction (shard.Layout), but
// the external account (id 0) is in every shard: it is listed once. Each
// table is read in its own pass over every shard (accounts, then
// transactions, then postings, dead letters and settlements, the shards' postings
// merged as they stream), so the union is not one snapshot: read it after
// drain, as the audit does.
type ShardedSource struct {
	Shards []Source
}

// Describe names every shard.
func (s ShardedSource) Describe() string {
	names := make([]string, len(s.Shards))
	for i, shard := range s.Shards {
		names[i] = fmt.Sprintf("%d: %s", i, shard.Describe())
	}
	return fmt.Sprintf("%d shards [%s]", len(s.Shards), strings.Join(names, "; "))
}

// errStopScan ends a pass once the tables it wants are read.
var errStopScan = errors.New("stop scan")

// Scan implements Source.
func (s ShardedSource) Scan(ctx context.Context, visitor Visitor) error {
	n := int64(len(s.Shards))
	if n == 0 {
		return errors.New("sharded ledger: no shard")
	}
	externalListed := false
	for i, shard := range s.Shards {
		err := shard.Scan(ctx, Visitor{
			Account: func(account *Account) error {
				if account.Kind == "external" {
					if externalListed {
						return nil
					}
					externalListed = true
				}
				return visitor.Account(account)
			},
			Transaction: func(*Transaction) error { return errStopScan },
			Posting:     func(*Posting) error { return errStopScan },
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return fmt.Errorf("shard %d: accounts: %w", i, err)
		}
	}
	for i, shard := range s.Shards {
		err := shard.Scan(ctx, Visitor{
			Account:     func(*Account) error { return nil },
			Transaction: visitor.Transaction,
			Posting:     func(*Posting) error { return errStopScan },
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return fmt.Errorf("shard %d: transactions: %w", i, err)
		}
	}
	return s.scanPostings(ctx, visitor, n)
}

// shardedItem is a posting or a dead letter of one shard on its way to the
// merge; the values are copies (a Source may reuse its own).
type shardedItem struct {
	posting    *Posting
	deadLetter *DeadLetter
	// available and note are the shard's dead-letter availability, sent
	// once after its postings.
	deadLettersSaid bool
	available       bool
	note            string
	// settlementsSaid, with available and note, is the shard's
	// settlement availability; settlement one of its records.
	settlementsSaid bool
	settlement      *Settlement
}

// shardedQueue bounds the items each shard streams ahead of the merge.
const shardedQueue = 256

// scanPostings streams every shard's postings concurrently and merges
// them in ascending renumbered id; then the dead letters, shard by shard.
func (s ShardedSource) scanPostings(ctx context.Context, visitor Visitor, n int64) error {
	group, ctx := errgroup.WithContext(ctx)
	streams := make([]chan shardedItem, n)
	for i := range s.Shards {
		stream := make(chan shardedItem, shardedQueue)
		streams[i] = stream
		shard, index := s.Shards[i], int64(i)
		group.Go(func() error {
			defer close(stream)
			send := func(item shardedItem) error {
				select {
				case stream <- item:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			err := shard.Scan(ctx, Visitor{
				Account:     func(*Account) error { return nil },
				Transaction: func(*Transaction) error { return nil },
				Posting: func(p *Posting) error {
					copied := *p
					copied.ID = p.ID*n + index
					if p.BalanceAfter != nil {
						copied.BalanceAfter = ptr(*p.BalanceAfter)
					}
					return send(shardedItem{posting: &copied})
				},
				DeadLetters: func(available bool, note string) error {
					return send(shardedItem{deadLettersSaid: true, available: available, note: note})
				},
				DeadLetter: func(letter *DeadLetter) error {
					copied := *letter
					copied.ID = letter.ID*n + index
					copied.Raw = append([]byte(nil), letter.Raw...)
					return send(shardedItem{deadLetter: &copied})
				},
				Settlements: func(available bool, note string) error {
					return send(shardedItem{settlementsSaid: true, available: available, note: note})
				},
				Settlement: func(settlement *Settlement) error {
					copied := *settlement
					return send(shardedItem{settlement: &copied})
				},
			})
			if err != nil {
				return fmt.Errorf("shard %d: %w", index, err)
			}
			return nil
		})
	}
	group.Go(func() error { return mergeShards(visitor, streams) })
	return group.Wait()
}

// mergeShards forwards the shards' postings in ascending id, then their
// dead letters, then their settlements (the auditor adds up a
// transaction's events and effects from several shards), draining every
// stream to its end. Dead letters and settlements are held until every
// shard has streamed its postings: they are said once for all shards.
func mergeShards(visitor Visitor, streams []chan shardedItem) error {
	heads := make([]*shardedItem, len(streams))
	var letters []*DeadLetter
	var settlements []*Settlement
	available, said := true, 0
	var notes []string
	settlementsAvailable, settlementsSaid := true, 0
	var settlementNotes []string
	// advance reads the shard's next posting into heads, keeping what
	// comes after the postings aside.
	advance := func(i int) {
		heads[i] = nil
		for item := range streams[i] {
			switch {
			case item.posting != nil:
				heads[i] = &item
				return
			case item.deadLettersSaid:
				said++
				available = available && item.available
				if item.note != "" {
					notes = append(notes, fmt.Sprintf("shard %d: %s", i, item.note))
				}
			case item.deadLetter != nil:
				letters = append(letters, item.deadLetter)
			case item.settlementsSaid:
				settlementsSaid++
				settlementsAvailable = settlementsAvailable && item.available
				if item.note != "" {
					settlementNotes = append(settlementNotes, fmt.Sprintf("shard %d: %s", i, item.note))
				}
			case item.settlement != nil:
				settlements = append(settlements, item.settlement)
			}
		}
	}
	for i := range streams {
		advance(i)
	}
	for {
		next := -1
		for i, head := range heads {
			if head != nil && (next < 0 || head.posting.ID < heads[next].posting.ID) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		if err := visitor.Posting(heads[next].posting); err != nil {
			return err
		}
		advance(next)
	}
	if visitor.DeadLetters != nil && said > 0 {
		if said < len(streams) {
			available = false
			notes = append(notes, fmt.Sprintf("%d of %d shards say whether they set records aside", said, len(streams)))
		}
		if err := visitor.DeadLetters(available, strings.Join(notes, "; ")); err != nil {
			return err
		}
		if available && visitor.DeadLetter != nil {
			for _, letter := range letters {
				if err := visitor.DeadLetter(letter); err != nil {
					return err
				}
			}
		}
	}
	if visitor.Settlements != nil && settlementsSaid > 0 {
		if settlementsSaid < len(streams) {
			settlementsAvailable = false
			settlementNotes = append(settlementNotes, fmt.Sprintf("%d of %d shards say whether they know the settlements", settlementsSaid, len(streams)))
		}
		if err := visitor.Settlements(settlementsAvailable, strings.Join(settlementNotes, "; ")); err != nil {
			return err
		}
		if settlementsAvailable && visitor.Settlement != nil {
			for _, settlement := range settlements {
				if err := visitor.Settlement(settlement); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
