//go:build unix

package listener

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readinessWaiter returns what lets a read goroutine park until nc is
// readable without holding a buffer: the raw connection and a callback for
// its Read that peeks one byte. Both are nil when nc hides its descriptor
// (TLS, adapters), which then read into a small buffer instead.
//
// Peeking before parking matters: Go's poller is edge-triggered, so bytes
// that are already queued would not wake a parked reader.
func readinessWaiter(nc net.Conn) (syscall.RawConn, func(fd uintptr) bool) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	var one [1]byte
	return rc, func(fd uintptr) bool {
		for {
			_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch err {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing yet: park on the poller
			}
			return true // bytes, EOF or an error: the next Read reports it
		}
	}
}
