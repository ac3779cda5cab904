package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The gateway's soft checks (docs/limits.md) read two things from this
// cache: an account's cached balance (the balance cache the workers keep)
// and a user's settled debits of a UTC day, which the workers write after
// each commit. Both are values the ledger held at some moment: a soft check
// that refuses on them refuses only what the ledger would have refused then.
// Keeping the balance from being older than that is the workers' part:
// InvalidateBalances before a batch's commit, the versioned set after it.

// InvalidateBalances deletes the cached balances of accounts a worker is
// about to change, before its batch commits. A worker killed between the
// commit and the cache update then leaves a miss, not a balance the ledger
// no longer holds; a miss means no soft check. The balances' versions stay,
// so a late write of an older balance is still refused.
func (c *Client) InvalidateBalances(ctx context.Context, accountIDs []int64) error {
	if len(accountIDs) == 0 {
		return nil
	}
	keys := make([]string, len(accountIDs))
	for i, id := range accountIDs {
		keys[i] = balanceKey(id)
	}
	if err := c.client.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("invalidate cached balances: %w", err)
	}
	return nil
}

// DailyDebits is a user's settled debits of one UTC day, as a worker counted
// them in the ledger (daily_debits).
type DailyDebits struct {
	UserID       int64
	Day          time.Time
	DebitedMinor int64
}

func dailyDebitsKey(userID int64, day time.Time) string {
	return "daily-debits:" + strconv.FormatInt(userID, 10) + ":" + day.UTC().Format(time.DateOnly)
}

// setDailyDebitsScript raises each cached daily total to the given one,
// never lowers it: a day's settled debits only grow, so the larger of two
// totals is the later (two workers of one partition, during a handover,
// may write in either order). KEYS are the totals' keys; ARGV[1] is the TTL
// in milliseconds, then a total per key.
var setDailyDebitsScript = goredis.NewScript(`
for i = 1, #KEYS do
  local total = tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('GET', KEYS[i]) or '-1')
  if total > current then
    redis.call('SET', KEYS[i], total, 'PX', ARGV[1])
  end
end
return #KEYS`)

// SetDailyDebits records users' settled debits of their days, after the
// batch that counted them committed. ttl bounds how long a total stays
// (a day and a margin is enough: only the current day's totals are read).
func (c *Client) SetDailyDebits(ctx context.Context, totals []DailyDebits, ttl time.Duration) error {
	if len(totals) == 0 {
		return nil
	}
	keys := make([]string, len(totals))
	arguments := make([]any, 0, 1+len(totals))
	arguments = append(arguments, ttl.Milliseconds())
	for i, total := range totals {
		if total.DebitedMinor < 0 {
			return fmt.Errorf("set daily debits: user %d's total %d is negative", total.UserID, total.DebitedMinor)
		}
		keys[i] = dailyDebitsKey(total.UserID, total.Day)
		arguments = append(arguments, total.DebitedMinor)
	}
	if err := setDailyDebitsScript.Run(ctx, c.client, keys, arguments...).Err(); err != nil {
		return fmt.Errorf("set daily debits: %w", err)
	}
	return nil
}

// CachedDailyDebits reads a user's settled debits of a UTC day as the
// workers last wrote them; found is false when the cache does not know
// (no debit that day, or a lost cache).
func (c *Client) CachedDailyDebits(ctx context.Context, userID int64, day time.Time) (debitedMinor int64, found bool, err error) {
	debitedMinor, err = c.client.Get(ctx, dailyDebitsKey(userID, day)).Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read daily debits: %w", err)
	}
	return debitedMinor, true, nil
}
