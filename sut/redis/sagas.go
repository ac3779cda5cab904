package redis

import (
	"context"
	"fmt"
)

// ForgetDailyDebits deletes the cached daily totals of the users' days
// given (DebitedMinor is unused): a compensated cross-shard saga lowered
// them in the ledger (docs/sharding.md), and a cached total only grows
// (SetDailyDebits), so it would stay above the ledger's for the rest of the
// day and make the gateways' soft check refuse debits the ledger allows. A
// total the cache misses only lets the gateway pass debits on to the
// worker's exact check.
func (c *Client) ForgetDailyDebits(ctx context.Context, days []DailyDebits) error {
	if len(days) == 0 {
		return nil
	}
	keys := make([]string, len(days))
	for i, day := range days {
		keys[i] = dailyDebitsKey(day.UserID, day.Day)
	}
	if err := c.client.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("forget daily debits: %w", err)
	}
	return nil
}
