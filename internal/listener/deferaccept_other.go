//go:build !linux

package listener

import "net"

// DeferAccept does nothing here: only Linux has TCP_DEFER_ACCEPT.
func DeferAccept(ln *net.TCPListener) error { return nil }
