package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// GroupMembers returns how many members the consumer group has, asked with
// DescribeGroups (the classic group protocol the workers use): 0 when the
// group is empty or the broker does not know it. A gateway is ready only
// while the workers' group has a member, that is while someone applies what
// it queues.
func (p *Producer) GroupMembers(ctx context.Context, group string) (int, error) {
	described, err := kadm.NewClient(p.client).DescribeGroups(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("describe group %s: %w", group, err)
	}
	description, ok := described[group]
	if !ok {
		return 0, nil
	}
	if description.Err != nil {
		if errors.Is(description.Err, kerr.GroupIDNotFound) {
			return 0, nil
		}
		return 0, fmt.Errorf("describe group %s: %w", group, description.Err)
	}
	return len(description.Members), nil
}
