package kafka

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func partitionCount(t *testing.T, address, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := kgo.NewClient(kgo.SeedBrokers(address))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	details, err := kadm.NewClient(client).ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	if err := details[topic].Err; err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	return len(details[topic].Partitions)
}

func TestEnsureTopic(t *testing.T) {
	t.Parallel()
	broker := startBroker(t, false)
	brokers := []string{broker.address}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cases := []struct {
		name              string
		topic             string
		partitions        int32
		replicationFactor int16
		brokers           []string
		wantErr           error  // checked with errors.Is when set
		wantErrText       string // checked with strings.Contains when set
		wantPartitions    int    // checked after success
	}{
		{name: "existing topic, same count", topic: DefaultTopic, partitions: 16, replicationFactor: -1, wantPartitions: 16},
		{name: "existing topic, same count again", topic: DefaultTopic, partitions: 16, replicationFactor: 1, wantPartitions: 16},
		{name: "existing topic, other count", topic: DefaultTopic, partitions: 8, replicationFactor: -1,
			wantErr: ErrPartitionCountMismatch, wantErrText: "has 16 partitions, want 8"},
		{name: "new topic", topic: "ensure-new", partitions: 4, replicationFactor: 1, wantPartitions: 4},
		{name: "new topic again", topic: "ensure-new", partitions: 4, replicationFactor: 1, wantPartitions: 4},
		{name: "new topic, broker default replication", topic: "ensure-default-rf", partitions: 2, replicationFactor: -1, wantPartitions: 2},
		{name: "replication above broker count", topic: "ensure-rf3", partitions: 2, replicationFactor: 3, wantErrText: "create with 2 partitions"},
		{name: "no brokers", topic: "x", partitions: 1, replicationFactor: 1, brokers: []string{}, wantErrText: "no brokers"},
		{name: "empty topic", topic: "", partitions: 1, replicationFactor: 1, wantErrText: "topic is empty"},
		{name: "zero partitions", topic: "x", partitions: 0, replicationFactor: 1, wantErrText: "at least 1"},
		{name: "zero replication", topic: "x", partitions: 1, replicationFactor: 0, wantErrText: "replication factor"},
	}
	for _, tc := range cases { // sequential: cases build on each other
		t.Run(tc.name, func(t *testing.T) {
			caseBrokers := brokers
			if tc.brokers != nil {
				caseBrokers = tc.brokers
			}
			err := EnsureTopic(ctx, caseBrokers, tc.topic, tc.partitions, tc.replicationFactor)
			if tc.wantErr == nil && tc.wantErrText == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got := partitionCount(t, broker.address, tc.topic); got != tc.wantPartitions {
					t.Fatalf("topic %s has %d partitions, want %d", tc.topic, got, tc.wantPartitions)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErrText) {
				t.Errorf("error %q lacks %q", err, tc.wantErrText)
			}
		})
	}

	t.Run("concurrent creators all succeed", func(t *testing.T) {
		const creators = 8
		var wait sync.WaitGroup
		errs := make(chan error, creators)
		for range creators {
			wait.Go(func() { errs <- EnsureTopic(ctx, brokers, "ensure-race", 5, 1) })
		}
		wait.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent EnsureTopic: %v", err)
			}
		}
		if got := partitionCount(t, broker.address, "ensure-race"); got != 5 {
			t.Errorf("ensure-race has %d partitions, want 5", got)
		}
	})
}
