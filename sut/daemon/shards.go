package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// OpenShardStores connects (lazily) to shards 1..N-1 of a sharded ledger
// (docs/sharding.md), urls[i-1] being shard i's database, with the pool size
// and name of c and storeConfig's seeded bugs and settings, and makes in
// each the schema changes those bugs need, as OpenBackends does in shard 0
// (a gateway's bug such as no-idempotency needs the transactions' unique key
// gone in every shard). On an error nothing stays open.
func (c Config) OpenShardStores(ctx context.Context, logger *slog.Logger, urls []string, storeConfig postgres.Config) ([]*postgres.Store, error) {
	var stores []*postgres.Store
	closeAll := func() {
		for _, store := range stores {
			store.Close()
		}
	}
	for index, url := range urls {
		config := storeConfig
		config.URL, config.MaxConnections, config.ApplicationName = url, int32(c.PostgresMaxConnections), c.Name
		store, err := postgres.Open(ctx, config)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("shard %d: %w", index+1, err)
		}
		stores = append(stores, store)
		if err := prepareSeededBugs(ctx, store, logger); err != nil {
			closeAll()
			return nil, fmt.Errorf("shard %d: %w", index+1, err)
		}
	}
	return stores, nil
}
