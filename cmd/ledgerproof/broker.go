package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"

	"github.com/ledgerproof/ledgerproof/sut/broker"
)

// brokerCommand runs the local Kafka-protocol broker (kfake with a data
// directory) until SIGINT or SIGTERM, then shuts it down in order.
func brokerCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("broker", flag.ContinueOnError)
	listen := flags.String("listen", broker.DefaultListen, "loopback host:port to listen on")
	dataDir := flags.String("data-dir", "", "directory for topics, records and offsets (required; reloaded on restart)")
	sync := flags.Bool("sync", false, "fsync every produced batch before acknowledging it (survives machine crashes, slower)")
	topic := flags.String("topic", broker.DefaultTopic, "topic to create if missing")
	partitions := flags.Int("partitions", int(broker.DefaultPartitions), "partition count of the topic")
	retention := flags.Duration("retention", 0, "delete records older than this, on every topic (at least 1s; 0: keep every record). A record not consumed within it is lost, which the audit reports as a durability violation")
	segmentBytes := flags.Int64("segment-bytes", 0, "size at which a partition's segment file is rolled; expired records leave the disk a whole segment at a time (0: 100 MiB, or 8 MiB with --retention; at least 1 MiB)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if *partitions < 1 || *partitions > math.MaxInt32 {
			return fmt.Errorf("--partitions %d out of range", *partitions)
		}
		return broker.Run(ctx, broker.Config{
			Listen:       *listen,
			DataDir:      *dataDir,
			Sync:         *sync,
			Topic:        *topic,
			Partitions:   int32(*partitions),
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
			Retention:    *retention,
			SegmentBytes: *segmentBytes,
		})
	}
}
