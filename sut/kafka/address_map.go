package kafka

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerDialTimeout bounds one connection attempt to a broker through the
// address map, the same as franz-go's default dial timeout.
const brokerDialTimeout = 10 * time.Second

// BrokerAddressMap redirects the client's connections to brokers: a key is
// an address a broker advertises in metadata (host:port), its value is the
// address the client dials instead. Addresses not in the map are dialled as
// advertised.
//
// A Kafka client only uses its seed addresses to fetch metadata; it then
// connects to the host:port each broker advertises. A client meant to reach
// a broker through a TCP proxy (the fault proxy of the local stack) would
// therefore bypass the proxy for every produce and fetch. Real Kafka solves
// this with one listener per route, each advertising its own address; the
// local broker has a single listener, so the client rewrites the address
// instead, which lets gateways and workers each go through a proxy of their
// own to the same broker.
type BrokerAddressMap map[string]string

// ParseBrokerAddressMap parses "advertised=dialled,advertised=dialled". An
// empty string is an empty map.
func ParseBrokerAddressMap(text string) (BrokerAddressMap, error) {
	addressMap := BrokerAddressMap{}
	for _, entry := range strings.Split(text, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		advertised, dialled, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("broker address map entry %q: want advertised-host:port=dialled-host:port", entry)
		}
		for _, address := range []string{advertised, dialled} {
			if _, _, err := net.SplitHostPort(address); err != nil {
				return nil, fmt.Errorf("broker address map entry %q: %w", entry, err)
			}
		}
		if _, duplicate := addressMap[advertised]; duplicate {
			return nil, fmt.Errorf("broker address map: %s mapped twice", advertised)
		}
		addressMap[advertised] = dialled
	}
	return addressMap, nil
}

// String formats the map as ParseBrokerAddressMap reads it, sorted.
func (m BrokerAddressMap) String() string {
	entries := make([]string, 0, len(m))
	for advertised, dialled := range m {
		entries = append(entries, advertised+"="+dialled)
	}
	sort.Strings(entries)
	return strings.Join(entries, ",")
}

// dialOption is the client option that applies the map; nil when the map is
// empty, so the client keeps its own dialer.
func (m BrokerAddressMap) dialOption() kgo.Opt {
	if len(m) == 0 {
		return nil
	}
	dialer := &net.Dialer{Timeout: brokerDialTimeout}
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if dialled, ok := m[host]; ok {
			host = dialled
		}
		return dialer.DialContext(ctx, network, host)
	})
}

// withAddressMap appends the map's dial option to options when it has one.
func withAddressMap(options []kgo.Opt, m BrokerAddressMap) []kgo.Opt {
	if option := m.dialOption(); option != nil {
		options = append(options, option)
	}
	return options
}
