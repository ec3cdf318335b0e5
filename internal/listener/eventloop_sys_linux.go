//go:build linux

package listener

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops' system calls, made with RawSyscall.
//
// Every descriptor a loop reads, writes or accepts on is non-blocking, and
// every epoll_wait it makes has a timeout of 0, so none of these calls can
// block. Made with Syscall, each would still tell the runtime that it might
// (entersyscall and exitsyscall), and the runtime wakes sysmon to watch for
// a blocked thread: in a reconnect storm, with half a dozen such calls per
// connection, that bookkeeping, sysmon's own naps and the scheduler's
// wakeups took about a third of the broker's CPU (perf, issue 21). A raw
// call keeps the P for its few microseconds, as any Go code would.
//
// Each retries on EINTR, which a signal can cause even here.

func rawRead(fd int, p []byte) (int, error) {
	return rawRetry(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
}

func rawWrite(fd int, p []byte) (int, error) {
	return rawRetry(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
}

// rawWritev writes the pieces with one writev, building its iovecs in
// *scratch (the loop's, reused).
func rawWritev(fd int, pieces []Piece, scratch *[]unix.Iovec) (int, error) {
	iov := (*scratch)[:0]
	for _, p := range pieces {
		v := unix.Iovec{Base: unsafe.SliceData(p.Bytes)}
		v.SetLen(len(p.Bytes))
		iov = append(iov, v)
	}
	*scratch = iov
	n, err := rawRetry(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)))
	clear(iov) // the pieces may go back to their pools: do not pin them
	return n, err
}

// rawEpollPoll collects ready events from epfd without waiting.
func rawEpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
			uintptr(len(events)), 0, 0, 0)
		if e != unix.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(r), nil
		}
	}
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func rawRetry(trap, a1, a2, a3 uintptr) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, a1, a2, a3)
		if e != unix.EINTR {
			if e != 0 {
				return -1, e
			}
			return int(r), nil
		}
	}
}
