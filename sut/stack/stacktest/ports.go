package stacktest

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// Other test processes pick from the same range at the same time (go
	// test runs packages in parallel): a port one of them found free and
	// has not bound yet (its Postgres still starting) must not be taken
	// here. Each claim is a file naming the claiming process; a dead
	// process's claims are taken over.
	var claimed []int
	for port := first; port < first+n; port++ {
		if !claimAcrossProcesses(port) {
			for _, taken := range claimed {
				_ = os.Remove(portClaimFile(taken))
			}
			return false
		}
		claimed = append(claimed, port)
	}
	for port := first; port < first+n; port++ {
		handedOut.ports[port] = true
	}
	return true
}

// portClaimDirectory holds one file per port claimed by a live test
// process, named after the port, holding the process id.
func portClaimDirectory() string { return filepath.Join(os.TempDir(), "ledgerproof-test-ports") }

func portClaimFile(port int) string { return filepath.Join(portClaimDirectory(), strconv.Itoa(port)) }

// claimAcrossProcesses creates the port's claim file, or takes it over from
// a process that is gone. It fails when a live process holds it.
func claimAcrossProcesses(port int) bool {
	if err := os.MkdirAll(portClaimDirectory(), 0o777); err != nil {
		return true // no shared directory: the in-process claim only
	}
	path := portClaimFile(port)
	for attempt := 0; attempt < 2; attempt++ {
		file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = file.WriteString(strconv.Itoa(os.Getpid()))
			_ = file.Close()
			return true
		}
		if !errors.Is(err, os.ErrExist) {
			return true
		}
		content, err := os.ReadFile(path)
		if err != nil {
			continue // removed meanwhile: try again
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(content)))
		if err == nil && pid > 0 && pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.Remove(path) // its process is gone
			continue
		}
		// A live process's, or one being written (no PID in yet): held.
		return false
	}
	return false
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

// FreeRange returns the first of n consecutive loopback ports below the
// ephemeral range that were free a moment ago, claimed for this test
// process: for a stack's defaulted port ranges (worker metrics, the relay
// and settler, the proxy), whose defaults are the local stack's, which
// `make up` may hold.
func FreeRange(t testing.TB, n int) int {
	t.Helper()
	return freeRangeBelowEphemeral(t, n)
}

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
