package listener

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The event loop sets its socket options once, on the listening socket:
// every accepted connection must have them all the same.
func TestAcceptedSocketOptions(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{})
		dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		ec, ok := e.conn.(*econn)
		if !ok {
			t.Skip("the goroutine driver leaves the options to package net")
		}
		for _, o := range []struct {
			name       string
			level, opt int
			want       int
		}{
			{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
		} {
			got, err := unix.GetsockoptInt(int(ec.fd), o.level, o.opt)
			if err != nil || got != o.want {
				t.Errorf("%s on an accepted socket: %d (%v), want %d", o.name, got, err, o.want)
			}
		}
	})
}
