//go:build !unix

package listener

import (
	"net"
	"syscall"
)

// readinessWaiter is not available here: connections read into a small
// buffer while they wait.
func readinessWaiter(net.Conn) (syscall.RawConn, func(fd uintptr) bool) { return nil, nil }
