//go:build linux

package listener

import (
	"net"

	"golang.org/x/sys/unix"
)

// DeferAccept has the kernel hold each connection to ln until the client's
// first bytes arrive (TCP_DEFER_ACCEPT), for protocols whose client speaks
// first: MQTT's CONNECT, a TLS ClientHello, a WebSocket's HTTP request.
// Accepted that way, a connection comes with its first packet already in
// it, so the loop that takes it reads it in the same busy spell instead of
// waking again for it: in a reconnect storm a third less broker CPU per
// connection (docs/BENCHMARKS.md, issue 21). A client that sends nothing
// costs the broker nothing until the kernel gives up waiting (its first
// SYN-ACK retransmission, after about a second); it is accepted then, and
// the broker's connect timeout runs from there.
func DeferAccept(ln *net.TCPListener) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
	}); err != nil {
		return err
	}
	return serr
}
