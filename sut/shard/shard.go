// Package shard is the routing rule of a sharded ledger (docs/sharding.md):
// which shard holds an account, and how each shard numbers its accounts so
// that ids stay unique across shards. It is a pure function of the account
// id, shared by the gateway, the workers, the auditor and the docs, so they
// cannot disagree.
package shard

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxShards bounds the number of shards: each is a Postgres process on the
// machine (or a compose service), and account ids are numbered with a
// stride of the shard count, so a large count only wastes ids and memory.
const MaxShards = 16

// Layout is a number of shards. The zero value is invalid; one shard is
// today's single ledger (every account in shard 0).
type Layout struct {
	// Shards is how many ledgers the accounts are split across, 1 to
	// MaxShards.
	Shards int
}

// New returns the layout of n shards, or an error naming the bad count.
func New(n int) (Layout, error) {
	layout := Layout{Shards: n}
	return layout, layout.Validate()
}

// Validate says whether the layout can route accounts.
func (l Layout) Validate() error {
	if l.Shards < 1 || l.Shards > MaxShards {
		return fmt.Errorf("shards: %d shards, want 1 to %d", l.Shards, MaxShards)
	}
	return nil
}

// Of returns the shard that holds accountID: the account id modulo the
// number of shards. The external account (id 0, the world outside the
// ledger) is in every shard as a counterpart of deposits and withdrawals;
// Of names shard 0 for it. A negative id is no account; Of panics on it and
// on an invalid layout (a caller validates ids and the layout first).
func (l Layout) Of(accountID int64) int {
	if err := l.Validate(); err != nil {
		panic(err)
	}
	if accountID < 0 {
		panic(fmt.Sprintf("shards: account id %d is negative", accountID))
	}
	return int(accountID % int64(l.Shards))
}

// CrossShard says whether a transfer from source to destination crosses
// shards, and so runs as a saga instead of one transaction.
func (l Layout) CrossShard(source, destination int64) bool {
	return l.Of(source) != l.Of(destination)
}

// Sequence is how shard numbers the accounts it creates: the first id and
// the step between ids. Shard i's ids are i, i+N, i+2N... (shard 0 starts at
// N: id 0 is the external account), so every id it creates routes back to
// it and no two shards create the same id. With one shard it is 1, 2, 3...:
// today's numbering.
func (l Layout) Sequence(shard int) (first, step int64, err error) {
	if err := l.Validate(); err != nil {
		return 0, 0, err
	}
	if shard < 0 || shard >= l.Shards {
		return 0, 0, fmt.Errorf("shards: shard %d, want 0 to %d", shard, l.Shards-1)
	}
	first = int64(shard)
	if first == 0 {
		first = int64(l.Shards)
	}
	return first, int64(l.Shards), nil
}

// Component is the local stack's name of shard's Postgres process: shard 0
// is the stack's "postgres" (users, sessions and its own accounts), shard
// i > 0 is "postgres-shard-<i>".
func Component(shard int) string {
	if shard == 0 {
		return "postgres"
	}
	return fmt.Sprintf("postgres-shard-%d", shard)
}

// ParseMember parses "I/N", shard I of N shards (the --shard flag of
// `ledgerproof migrate`), as the layout and the index.
func ParseMember(text string) (Layout, int, error) {
	bad := fmt.Errorf("shards: %q is not I/N (shard I of N shards, e.g. 1/2)", text)
	indexText, shardsText, found := strings.Cut(text, "/")
	if !found {
		return Layout{}, 0, bad
	}
	index, indexError := strconv.Atoi(indexText)
	shards, shardsError := strconv.Atoi(shardsText)
	if indexError != nil || shardsError != nil {
		return Layout{}, 0, bad
	}
	layout, err := New(shards)
	if err != nil {
		return Layout{}, 0, err
	}
	if index < 0 || index >= shards {
		return Layout{}, 0, fmt.Errorf("shards: shard %d of %d, want 0 to %d", index, shards, shards-1)
	}
	return layout, index, nil
}

// Group is the consumer group of shard i's workers on a sharded ledger:
// "<group>-shard-<i>" (each shard's workers read the whole topic in their
// own group, docs/sharding.md).
func Group(group string, i int) string {
	return fmt.Sprintf("%s-shard-%d", group, i)
}
