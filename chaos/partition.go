package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionOwnerTimeout bounds each request of the consumer-group lookup
// (the client's retries), and, added to partitionOwnerWait, the whole lookup
// when the caller's context has no deadline: a dead broker must not stall
// the plan.
const partitionOwnerTimeout = 10 * time.Second

// partitionOwnerPoll is how often the lookup asks again while nobody owns
// the partition: after a broker restart or a worker's death the group
// rebalances for a few seconds, and a step at that moment must wait for
// the new owner, not fail.
const partitionOwnerPoll = 250 * time.Millisecond

// partitionOwnerWait bounds that waiting: longer than a rebalance, shorter
// than a plan's patience.
const partitionOwnerWait = 20 * time.Second

// partitionOwner asks the brokers which member of the workers' consumer
// group owns partition of topic (DescribeGroups, the classic protocol the
// workers use) and returns the member's static instance id, which the stacks
// set to the worker's name (local: worker-N; compose: the service name),
// else its client id (also the worker's --name). The owner is asked when
// the step runs, since ownership moves with every rebalance; while nobody
// owns it (a rebalance, or members still joining) it asks again until the
// deadline, then says what the group looked like.
func partitionOwner(ctx context.Context, brokers []string, group, topic string, partition int) (string, error) {
	if len(brokers) == 0 {
		return "", fmt.Errorf("owner of partition %d: the stack lists no brokers", partition)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, partitionOwnerWait+partitionOwnerTimeout)
		defer cancel()
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RetryTimeout(partitionOwnerTimeout))
	if err != nil {
		return "", fmt.Errorf("owner of partition %d: %w", partition, err)
	}
	defer client.Close()
	admin := kadm.NewClient(client)
	giveUp := time.Now().Add(partitionOwnerWait)
	for {
		owner, err := describeOwner(ctx, admin, group, topic, partition)
		var nobody noOwnerError
		if err == nil || !errors.As(err, &nobody) {
			return owner, err
		}
		if time.Now().After(giveUp) {
			return "", fmt.Errorf("%w; asked for %s", err, partitionOwnerWait)
		}
		timer := time.NewTimer(partitionOwnerPoll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return "", fmt.Errorf("%w (waited until %v)", err, context.Cause(ctx))
		case <-timer.C:
		}
	}
}

// noOwnerError is a group that answered but in which nobody owns the
// partition yet: worth asking again.
type noOwnerError struct{ message string }

func (e noOwnerError) Error() string { return e.message }

// describeOwner is one DescribeGroups round of partitionOwner.
func describeOwner(ctx context.Context, admin *kadm.Client, group, topic string, partition int) (string, error) {
	described, err := admin.DescribeGroups(ctx, group)
	if err != nil {
		return "", fmt.Errorf("owner of partition %d: describe group %s: %w", partition, group, err)
	}
	description, ok := described[group]
	if !ok {
		return "", fmt.Errorf("owner of partition %d: group %s not described", partition, group)
	}
	if description.Err != nil {
		return "", fmt.Errorf("owner of partition %d: group %s: %w", partition, group, description.Err)
	}
	var members []string
	for _, member := range description.Members {
		name := member.ClientID
		if member.InstanceID != nil && *member.InstanceID != "" {
			name = *member.InstanceID
		}
		members = append(members, name)
		assignment, ok := member.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, assigned := range assignment.Topics {
			if assigned.Topic != topic {
				continue
			}
			for _, owned := range assigned.Partitions {
				if int(owned) == partition {
					return name, nil
				}
			}
		}
	}
	sort.Strings(members)
	return "", noOwnerError{fmt.Sprintf("owner of partition %d: no member of group %s (state %q, members %v) owns %s/%d (a rebalance in progress, or no worker alive?)",
		partition, group, description.State, members, topic, partition)}
}
