package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionOwnerTimeout bounds the consumer-group lookup when the caller's
// context has no deadline: a dead broker must not stall the plan.
const partitionOwnerTimeout = 10 * time.Second

// partitionOwner asks the brokers which member of the workers' consumer
// group owns partition of topic (DescribeGroups, the classic protocol the
// workers use) and returns the member's static instance id, which the stacks
// set to the worker's name (local: worker-N; compose: the service name),
// else its client id (also the worker's --name). The owner is asked when
// the step runs, since ownership moves with every rebalance.
func partitionOwner(ctx context.Context, brokers []string, group, topic string, partition int) (string, error) {
	if len(brokers) == 0 {
		return "", fmt.Errorf("owner of partition %d: the stack lists no brokers", partition)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, partitionOwnerTimeout)
		defer cancel()
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RetryTimeout(partitionOwnerTimeout))
	if err != nil {
		return "", fmt.Errorf("owner of partition %d: %w", partition, err)
	}
	defer client.Close()
	described, err := kadm.NewClient(client).DescribeGroups(ctx, group)
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
	return "", fmt.Errorf("owner of partition %d: no member of group %s (state %q, members %v) owns %s/%d now (a rebalance in progress?)",
		partition, group, description.State, members, topic, partition)
}
