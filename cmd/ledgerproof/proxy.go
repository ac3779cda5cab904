package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/kafka"
	"github.com/ledgerproof/ledgerproof/sut/proxy"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// proxyCommand runs the fault proxy of the local stack (toxiproxy embedded)
// until SIGINT or SIGTERM: one TCP proxy per link of the configuration file
// and toxiproxy's HTTP API on --listen-api.
func proxyCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listenAPI := flags.String("listen-api", "127.0.0.1:18290", "loopback host:port of toxiproxy's HTTP API")
	configFile := flags.String("config", "", "JSON array of links {name, listen, upstream, enabled} (toxiproxy's populate format; required)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return proxy.RunFile(ctx, *configFile, proxy.Config{
			APIListen: *listenAPI,
			Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
			LogOutput: os.Stderr,
		})
	}
}

// brokerAddressMapFlag is the --broker-address-map flag of gateway and
// worker: advertised=dialled pairs, so the process reaches the broker
// through a proxy even after metadata names the broker's own address.
type brokerAddressMapFlag kafka.BrokerAddressMap

func (f *brokerAddressMapFlag) String() string { return kafka.BrokerAddressMap(*f).String() }

func (f *brokerAddressMapFlag) Set(value string) error {
	addresses, err := kafka.ParseBrokerAddressMap(value)
	if err != nil {
		return err
	}
	*f = brokerAddressMapFlag(addresses)
	return nil
}

// linkCommand puts a fault on a link of a stack started with `up --proxies`,
// heals it, or lists the links:
//
//	ledgerproof link --dir D                                    # list
//	ledgerproof link --dir D --link 'worker->postgres' --fault cut
//	ledgerproof link --dir D --link 'gateway->redis' --fault latency --latency 200ms
//	ledgerproof link --dir D --link 'worker->postgres' --heal
//
// Quote link names in a shell: ">" redirects.
func linkCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("link", flag.ContinueOnError)
	var options stack.LinkOptions
	flags.StringVar(&options.Dir, "dir", stack.DefaultConfig().Dir, "stack directory")
	flags.StringVar(&options.Link, "link", "", "link: "+strings.Join(stack.Links, ", ")+" (empty lists the links)")
	flags.BoolVar(&options.Heal, "heal", false, "remove the link's fault")
	fault := &options.Fault
	flags.StringVar(&fault.Kind, "fault", "", "latency, cut, bandwidth, reset or timeout")
	flags.DurationVar(&fault.Latency, "latency", 0, "latency: added delay")
	flags.DurationVar(&fault.Jitter, "jitter", 0, "latency: ± random part of the delay")
	flags.IntVar(&fault.RateKBps, "rate-kbps", 0, "bandwidth: KB/s")
	flags.DurationVar(&fault.After, "after", 0, "reset: delay before the RST once data flows; timeout: how long a black-holed connection lives")
	flags.StringVar(&fault.Direction, "direction", "", "downstream, upstream or both (default: downstream for latency, both otherwise)")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		return stack.ControlLink(ctx, options, os.Stdout)
	}
}
