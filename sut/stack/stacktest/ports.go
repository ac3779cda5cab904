package stacktest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut holds every port this test process gave a stack: a port found
// free is free only until someone listens on it, and the components of one
// stack are probed one after the other before any of them starts, so two of
// them could otherwise be given the same free port (seen: Redis and a
// gateway).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// claim reserves ports first..first+n-1 for this process unless one of them
// was handed out already.
func claim(first, n int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for port := first; port < first+n; port++ {
		if handedOut.ports[port] {
			return false
		}
	}
	for port := first; port < first+n; port++ {
		handedOut.ports[port] = true
	}
	return true
}

// Ports below lowestEphemeralPort are never picked by the kernel as the
// source port of an outgoing connection (Linux's default
// ip_local_port_range starts at 32768), so a range found free there stays
// free until the test's process listens on it, however many connections
// the stack opens meanwhile.
const (
	lowestEphemeralPort = 32768
	lowestRangePort     = 20000
)

// freeRangeBelowEphemeral finds n consecutive free ports below the
// ephemeral range. The fault proxy of a test stack listens on such a range:
// with six ports found free well before the proxy starts, a range among the
// ephemeral ports is often taken meanwhile by the source port of some
// connection the stack opened.
func freeRangeBelowEphemeral(t testing.TB, n int) int {
	t.Helper()
	for attempt := 0; attempt < 100; attempt++ {
		first := lowestRangePort + rand.IntN(lowestEphemeralPort-lowestRangePort-n)
		free := true
		for i := 0; i < n && free; i++ {
			listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+i))
			if err != nil {
				free = false
				break
			}
			listener.Close()
		}
		if free && claim(first, n) {
			return first
		}
	}
	t.Fatal("stacktest: no range of free ports below the ephemeral range")
	return 0
}
