//go:build linux

package floornet

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Listen returns a non-blocking socket listening on 127.0.0.1:port, with
// TCP_NODELAY for the connections it accepts (as Petrel's) and, if
// deferAccept, TCP_DEFER_ACCEPT (as Petrel's too).
func Listen(port int, deferAccept bool) (int, error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptInt(ln, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // inherited
	if deferAccept {
		unix.SetsockoptInt(ln, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return -1, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return -1, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Epoll returns an epoll set holding ln.
func Epoll(ln int) (int, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return -1, fmt.Errorf("epoll_ctl: %w", err)
	}
	return ep, nil
}

// AcceptAll accepts every connection waiting on ln, adds each to ep for
// reading, and hands it to f.
func AcceptAll(ln, ep int, f func(fd int)) {
	for {
		c, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c)})
		f(c)
	}
}
