//go:build linux

// Command connfloor is the least an epoll server can do for an MQTT
// client's connect, to tell what a broker adds from what the kernel costs:
// one thread accepts, adds the socket to its epoll set, reads the CONNECT
// and writes a fixed CONNACK (PINGREQ gets PINGRESP, DISCONNECT a close).
// It keeps no state per connection. docs/BENCHMARKS.md ("Connecting
// faster") runs a storm against it as against the brokers:
//
//	taskset -c 0 go run ./scripts/connfloor PORT [defer] [uring [direct]]
//	petrel bench preset storm -p PORT --broker-pid PID ...
//
// With "defer", the listening socket has TCP_DEFER_ACCEPT, as Petrel's;
// with "uring", the same is done through io_uring instead of epoll
// (uring_linux.go), and with "direct" too, the accepted sockets are the
// ring's registered files, never descriptors of the process. Loopback only.
package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"

	"github.com/petrelmq/petrel/scripts/internal/floornet"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: connfloor PORT [defer] [uring [direct]]")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "connfloor: port:", err)
		os.Exit(2)
	}
	if err := serve(port, slices.Contains(os.Args[2:], "defer"), slices.Contains(os.Args[2:], "uring"), slices.Contains(os.Args[2:], "direct")); err != nil {
		fmt.Fprintln(os.Stderr, "connfloor:", err)
		os.Exit(1)
	}
}

func serve(port int, deferAccept, uring, direct bool) error {
	runtime.LockOSThread()
	ln, err := floornet.Listen(port, deferAccept)
	if err != nil {
		return err
	}
	if uring {
		fmt.Println("listening on", port, "(io_uring)")
		return serveURing(ln, direct)
	}
	ep, err := floornet.Epoll(ln)
	if err != nil {
		return err
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
				floornet.AcceptAll(ln, ep, func(int) {})
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
