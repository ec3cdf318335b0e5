//go:build !linux

package listener

import "net"

// NewEventLoopDriver falls back to the goroutine driver where epoll is not
// available, so callers need not care which platform they run on.
func NewEventLoopDriver(ln *net.TCPListener, h Handler, opts Options) (Driver, error) {
	return NewGoroutineDriver(ln, h, opts), nil
}
