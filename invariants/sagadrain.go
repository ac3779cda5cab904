package invariants

import (
	"context"
	"fmt"
)

// SagaDrainProbe makes commands' "done" wait for the sagas of a sharded
// ledger (docs/sharding.md): while any shard holds a saga still `debited`
// (a debit whose credit or refund has not been made yet) the pipeline is
// not drained, even when every shard is quiet — a saga interrupted by a
// crash waits quietly for the recovery pass that resumes it, and an audit
// then would report it in flight. A saga whose destination stays
// unreachable keeps the drain waiting until its timeout, and the audit then
// says it was not drained. shards[i] is shard i's ledger, its connection
// reused at every poll for the drain's life (the caller closes it).
func SagaDrainProbe(commands DrainProbe, shards []*PostgresSource) DrainProbe {
	return func(ctx context.Context) (DrainState, error) {
		state, err := commands(ctx)
		if err != nil || !state.Done {
			return state, err
		}
		var inFlight int64
		for shard, source := range shards {
			count, err := source.sagasInFlight(ctx)
			if err != nil {
				return DrainState{Progress: state.Progress}, fmt.Errorf("shard %d: %w", shard, err)
			}
			inFlight += count
		}
		if inFlight > 0 {
			return DrainState{Progress: fmt.Sprintf("%s; %d saga(s) in flight (debited, neither credited nor refunded yet)", state.Progress, inFlight)}, nil
		}
		state.Progress += "; no saga in flight"
		return state, nil
	}
}

// sagasInFlight counts the sagas of the shard still `debited`.
func (s *PostgresSource) sagasInFlight(ctx context.Context) (int64, error) {
	var count int64
	if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM sagas WHERE state = 'debited'`).Scan(&count); err != nil {
		return 0, fmt.Errorf("count sagas in flight: %w", err)
	}
	return count, nil
}
