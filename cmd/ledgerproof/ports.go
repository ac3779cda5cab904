package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports below lowestEphemeralPort are never picked by the kernel as the source port of an outgoing connection
// (Linux's default ip_local_port_range starts at 32768), so a range found free there stays free until the
// process that was given it listens, however many connections the machine opens meanwhile.
const (
	lowestEphemeralPort = 32768
	lowestRangePort     = 20000
)

// freePorts returns n ports free a moment ago on 127.0.0.1, below the ephemeral range; the port at index i is
// the first of span[i] consecutive free ports, and no two ranges overlap.
func freePorts(n int, span map[int]int) ([]int, error) {
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
