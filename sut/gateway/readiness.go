package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/shard"
)

// DefaultWorkersCheckCache is how long WorkersCheck reuses an answer: a
// probe every second from each of several orchestrators costs the broker
// one DescribeGroups per gateway every two seconds at most, and a worker
// group that empties is noticed within the group's session timeout plus
// this.
const DefaultWorkersCheckCache = 2 * time.Second

// WorkersCheck tells whether anything applies what the gateway queues: the
// workers' consumer group has at least one member. Without a worker, every
// money request would be accepted (202) and never settle, so a gateway in
// the queue apply mode is not ready then. A worker that died stays a member
// until the group's session timeout ends (10s by default), so the check
// lags a dead group by that much.
type WorkersCheck struct {
	group    string
	members  func(ctx context.Context, group string) (int, error)
	cacheFor time.Duration
	clock    func() time.Time

	mutex     sync.Mutex
	checkedAt time.Time
	answer    error
}

// NewWorkersCheck checks group with members (kafka.Producer.GroupMembers),
// reusing an answer for cacheFor (DefaultWorkersCheckCache when 0). clock
// defaults to time.Now.
func NewWorkersCheck(group string, members func(ctx context.Context, group string) (int, error), cacheFor time.Duration, clock func() time.Time) (*WorkersCheck, error) {
	if group == "" || members == nil {
		return nil, errors.New("gateway: the workers check needs a group and a way to count its members")
	}
	if cacheFor < 0 {
		return nil, fmt.Errorf("gateway: workers check cache %s must not be negative", cacheFor)
	}
	if cacheFor == 0 {
		cacheFor = DefaultWorkersCheckCache
	}
	if clock == nil {
		clock = time.Now
	}
	return &WorkersCheck{group: group, members: members, cacheFor: cacheFor, clock: clock}, nil
}

// Check returns nil when the group had a member at the last look (at most
// cacheFor ago), otherwise why not. Concurrent probes share one look.
func (c *WorkersCheck) Check(ctx context.Context) error {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	now := c.clock()
	if !c.checkedAt.IsZero() && now.Sub(c.checkedAt) < c.cacheFor {
		return c.answer
	}
	members, err := c.members(ctx, c.group)
	switch {
	case err != nil:
		c.answer = fmt.Errorf("consumer group %s: %w", c.group, err)
	case members == 0:
		c.answer = fmt.Errorf("consumer group %s has no member: no worker applies the commands topic", c.group)
	default:
		c.answer = nil
	}
	c.checkedAt = now
	return c.answer
}

// ShardWorkersCheck is the workers check of a sharded ledger: each shard's
// workers form their own consumer group, "<group>-shard-<i>" for shard i
// of shards (docs/sharding.md), and apply only the commands of their
// shard's accounts, so the gateway is ready only while every shard's group
// has a member: without one, the commands of that shard's users would be
// accepted and never settle. Each group's answer is cached as WorkersCheck
// caches it.
func ShardWorkersCheck(group string, shards int, members func(ctx context.Context, group string) (int, error), cacheFor time.Duration, clock func() time.Time) (func(ctx context.Context) error, error) {
	if shards < 2 {
		return nil, fmt.Errorf("gateway: the shards' workers check needs 2 shards or more, not %d", shards)
	}
	var checks []*WorkersCheck
	for index := range shards {
		check, err := NewWorkersCheck(shard.Group(group, index), members, cacheFor, clock)
		if err != nil {
			return nil, err
		}
		checks = append(checks, check)
	}
	return func(ctx context.Context) error {
		for index, check := range checks {
			if err := check.Check(ctx); err != nil {
				return fmt.Errorf("shard %d: %w", index, err)
			}
		}
		return nil
	}, nil
}
