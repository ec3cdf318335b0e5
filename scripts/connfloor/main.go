//go:build linux

// Command connfloor is the least an epoll server can do for an MQTT
// client's connect, to tell what a broker adds from what the kernel costs:
// one thread accepts, adds the socket to its epoll set, reads the CONNECT
// and writes a fixed CONNACK (PINGREQ gets PINGRESP, DISCONNECT a close).
// It keeps no state per connection. docs/BENCHMARKS.md ("Connecting
// faster") runs a storm against it as against the brokers:
//
//	taskset -c 0 go run ./scripts/connfloor PORT [defer] [uring]
//	petrel bench preset storm -p PORT --broker-pid PID ...
//
// With "defer", the listening socket has TCP_DEFER_ACCEPT, as Petrel's;
// with "uring", the same is done through io_uring instead of epoll
// (uring_linux.go). Loopback only.
package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: connfloor PORT [defer] [uring]")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "connfloor: port:", err)
		os.Exit(2)
	}
	if err := serve(port, slices.Contains(os.Args[2:], "defer"), slices.Contains(os.Args[2:], "uring")); err != nil {
		fmt.Fprintln(os.Stderr, "connfloor:", err)
		os.Exit(1)
	}
}

func serve(port int, deferAccept, uring bool) error {
	runtime.LockOSThread()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptInt(ln, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // inherited, as in Petrel
	if deferAccept {
		unix.SetsockoptInt(ln, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if uring {
		fmt.Println("listening on", port, "(io_uring)")
		return serveURing(ln)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	connack, pingresp := []byte{0x20, 2, 0, 0}, []byte{0xd0, 0}
	fmt.Println("listening on", port)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == ln {
				for {
					c, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break
					}
					unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c)})
				}
				continue
			}
			// A whole packet per read is enough for what the storm sends.
			m, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil || m <= 0 {
				unix.Close(fd)
				continue
			}
			switch buf[0] >> 4 {
			case 1: // CONNECT
				unix.Write(fd, connack)
			case 12: // PINGREQ
				unix.Write(fd, pingresp)
			case 14: // DISCONNECT
				unix.Close(fd)
			}
		}
	}
}
