package invariants

import (
	"context"
	"fmt"
	"strings"
)

// ShardedKafkaDrainProbe is KafkaDrainProbe for a sharded reference ledger
// (docs/sharding.md): each shard's workers read the whole topic and store
// their offsets for all of it (records of other shards skipped) in their
// own shard's consumer_offsets, so the commands are drained when EVERY
// shard's stored offsets have reached the topic's high watermarks. A shard
// whose worker was killed is quiet, yet its commands are not applied: only
// its offsets say so.
func ShardedKafkaDrainProbe(broker *BrokerOffsets, shards []*PostgresSource) DrainProbe {
	stored := make([]func(ctx context.Context) (map[int32]int64, error), len(shards))
	for i, shard := range shards {
		stored[i] = func(ctx context.Context) (map[int32]int64, error) { return shard.StoredOffsets(ctx, broker.topic) }
	}
	return ShardsLagProbe(broker.Ends, stored)
}

// ShardsLagProbe is a DrainProbe over shards that each consume the whole
// topic: ends returns the topic's high watermark per partition, stored[i]
// the next offset shard i stored per partition. It is done when no shard
// lags; a partition's lag is its largest over the shards. An error (of the
// broker or of a shard) is returned as is, shard named.
func ShardsLagProbe(ends func(ctx context.Context) (map[int32]int64, error), stored []func(ctx context.Context) (map[int32]int64, error)) DrainProbe {
	return func(ctx context.Context) (DrainState, error) {
		highs, err := ends(ctx)
		if err != nil {
			return DrainState{}, err
		}
		if len(stored) == 0 {
			return DrainState{}, fmt.Errorf("no shard to compare with the topic's high watermarks")
		}
		state := DrainState{Done: true}
		progress := make([]string, 0, len(stored))
		for i, read := range stored {
			offsets, err := read(ctx)
			if err != nil {
				return DrainState{}, fmt.Errorf("shard %d: %w", i, err)
			}
			shard, err := LagProbe(func(context.Context) (map[int32]int64, map[int32]int64, error) { return highs, offsets, nil })(ctx)
			if err != nil {
				return DrainState{}, err
			}
			if !shard.Done {
				state.Done = false
			}
			for partition, lag := range shard.Lag {
				if state.Lag == nil {
					state.Lag = map[int32]int64{}
				}
				state.Lag[partition] = max(state.Lag[partition], lag)
			}
			progress = append(progress, fmt.Sprintf("shard %d: %s", i, shard.Progress))
		}
		state.Progress = strings.Join(progress, "; ")
		return state, nil
	}
}
