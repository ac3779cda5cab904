package invariants

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestShardsLagProbe: the commands of a sharded ledger are drained only
// when every shard's stored offsets reach the topic's high watermarks; one
// shard behind keeps the drain waiting and its lag is reported.
func TestShardsLagProbe(t *testing.T) {
	ctx := context.Background()
	ends := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 10, 1: 7}, nil }
	caughtUp := func(context.Context) (map[int32]int64, error) { return map[int32]int64{0: 10, 1: 7}, nil }
	shard1 := map[int32]int64{0: 10, 1: 4}
	behind := func(context.Context) (map[int32]int64, error) { return shard1, nil }
	probe := ShardsLagProbe(ends, []func(context.Context) (map[int32]int64, error){caughtUp, behind})
	state, err := probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.Done || state.Lag[1] != 3 || !strings.Contains(state.Progress, "shard 1: lag 3") {
		t.Fatalf("shard 1 three records behind: %+v, want not done with partition 1's lag 3 named for shard 1", state)
	}
	shard1[1] = 7
	if state, err := probe(ctx); err != nil || !state.Done {
		t.Fatalf("every shard caught up: %+v %v, want done", state, err)
	}
	failing := func(context.Context) (map[int32]int64, error) { return nil, errors.New("down") }
	if _, err := ShardsLagProbe(ends, []func(context.Context) (map[int32]int64, error){caughtUp, failing})(ctx); err == nil || !strings.Contains(err.Error(), "shard 1") {
		t.Errorf("a shard that cannot be read: %v, want an error naming shard 1", err)
	}
	if _, err := ShardsLagProbe(failing, []func(context.Context) (map[int32]int64, error){caughtUp})(ctx); err == nil {
		t.Error("a broker that cannot answer was not reported")
	}
}
