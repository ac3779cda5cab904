package stacktest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

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
		if free {
			return first
		}
	}
	t.Fatal("stacktest: no range of free ports below the ephemeral range")
	return 0
}
