package runner

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// Ports below lowestEphemeralPort are never picked by the kernel as the source port of an outgoing connection
// (Linux's default ip_local_port_range starts at 32768), so a range found free there stays free until the
// process that was given it listens, however many connections the machine opens meanwhile.
const (
	lowestEphemeralPort = 32768
	lowestRangePort     = 20000
)

// FreePorts returns n ports free a moment ago on 127.0.0.1, below the ephemeral range; the port at index i is
// the first of span[i] consecutive free ports, and no two ranges overlap.
func FreePorts(n int, span map[int]int) ([]int, error) {
	taken := map[int]bool{}
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		width := max(span[i], 1)
		found := false
		for attempt := 0; attempt < 200 && !found; attempt++ {
			first := lowestRangePort + rand.IntN(lowestEphemeralPort-lowestRangePort-width)
			found = true
			for port := first; port < first+width; port++ {
				if taken[port] || !portFree(port) {
					found = false
					break
				}
			}
			if found {
				for port := first; port < first+width; port++ {
					taken[port] = true
				}
				ports = append(ports, first)
			}
		}
		if !found {
			return nil, errors.New("no free ports on 127.0.0.1 below the ephemeral range")
		}
	}
	return ports, nil
}

// portFree reports whether 127.0.0.1:port could be listened on a moment ago.
func portFree(port int) bool {
	listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	listener.Close()
	return true
}

// UseFreePorts puts a stack on ports free a moment ago: Postgres, Redis and
// the broker, and a range each for the gateways, the workers' metrics and
// the gateways' internal listeners, as wide as config.Gateways and
// config.Workers (times the shards), one for the relay, the settler and
// the other shards' relays, and, for a sharded stack, one for the other
// shards' Postgres.
func UseFreePorts(config *stack.Config) error {
	shards := max(config.Shards, 1)
	ports, err := FreePorts(8, map[int]int{3: config.Gateways, 4: config.Workers * shards, 5: config.Gateways, 6: 1 + shards, 7: shards - 1})
	if err != nil {
		return err
	}
	config.PostgresPort, config.RedisPort, config.BrokerPort, config.GatewayPort, config.WorkerMetricsPort, config.GatewayInternalPort =
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	config.SettlementPort = ports[6]
	if shards > 1 {
		config.PostgresShardPort = ports[7]
	}
	return nil
}
