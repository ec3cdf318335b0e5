//go:build linux

package pipebuf

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Pipe is one kernel pipe. Its methods make non-blocking system calls and
// report EAGAIN as such; a Pipe is used by one goroutine at a time, except
// TeeTo and CopyOut, which only read it without taking its bytes and may
// run at once from several.
type Pipe struct {
	r, w int32
	pool *Pool
}

var errRefused = errors.New("pipebuf: the kernel refused the pipe's size")

// Limit returns the pipes a process may keep at most so that they never
// take more than an eighth of its descriptors (RLIMIT_NOFILE; two each),
// and at most max.
func Limit(max int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(min(uint64(max), rl.Cur/16))
}

func newPipe() (*Pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, Size); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("%w: %w", errRefused, err)
	}
	return &Pipe{r: int32(fds[0]), w: int32(fds[1])}, nil
}

// devNull takes what discard throws away.
var devNull = sync.OnceValue(func() int {
	fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
})

// discard throws away the n bytes in the pipe, and reports whether it is
// empty.
func (pp *Pipe) discard(n int) bool {
	fd := devNull()
	for n > 0 && fd >= 0 {
		k, err := splice(int(pp.r), fd, n)
		if err != nil || k == 0 {
			return false
		}
		n -= k
	}
	return n == 0
}

func (pp *Pipe) close() {
	unix.Close(int(pp.r))
	unix.Close(int(pp.w))
}

// The calls are made with RawSyscall, as the event loops' own are (see
// internal/listener's eventloop_sys_linux.go): every descriptor involved is
// non-blocking, so none of them can block.

// SpliceFrom moves up to n bytes from the socket fd into the pipe.
func (pp *Pipe) SpliceFrom(fd, n int) (int, error) {
	return splice(fd, int(pp.w), n)
}

// SpliceTo moves up to n bytes from the pipe to the socket fd, taking them
// out of the pipe.
func (pp *Pipe) SpliceTo(fd, n int) (int, error) {
	return splice(int(pp.r), fd, n)
}

// TeeTo puts the first n bytes of the pipe into dst as well, leaving them
// in pp. dst must be empty: a tee that moves less than n is an error (the
// next would start again from the first byte), and an empty pipe of the
// same size has room for every buffer pp can hold. After an error, dst
// holds an unknown part of the bytes: release it with held -1.
func (pp *Pipe) TeeTo(dst *Pipe, n int) error {
	got, err := retry6(unix.SYS_TEE, uintptr(pp.r), uintptr(dst.w), uintptr(n), unix.SPLICE_F_NONBLOCK, 0, 0)
	if err != nil {
		return fmt.Errorf("tee: %w", err)
	}
	if got != n {
		return fmt.Errorf("%w: tee moved %d of %d bytes (one pipe or the other short)", ErrShort, got, n)
	}
	return nil
}

// Write copies b into the pipe, as far as it has room.
func (pp *Pipe) Write(b []byte) (int, error) {
	return retry6(unix.SYS_WRITE, uintptr(pp.w), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
}

// ReadFull takes len(b) bytes out of the pipe into b; they must be there.
func (pp *Pipe) ReadFull(b []byte) error {
	for len(b) > 0 {
		n, err := retry6(unix.SYS_READ, uintptr(pp.r), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
		if err != nil {
			return fmt.Errorf("read pipe: %w", err)
		}
		if n == 0 {
			return ErrShort
		}
		b = b[n:]
	}
	return nil
}

// CopyOut copies the first len(b) bytes of the pipe into b, leaving them in
// the pipe: a tee into a scratch pipe from p's pool, read out.
func (pp *Pipe) CopyOut(b []byte) error {
	scratch := pp.pool.Get()
	if scratch == nil {
		// The pool is at its limit: this is rare, and must not fail.
		var err error
		if scratch, err = newPipe(); err != nil {
			return pp.copyViaSpare(b, err)
		}
		defer scratch.close()
		return pp.copyVia(scratch, b)
	}
	err := pp.copyVia(scratch, b)
	held := 0
	if err != nil {
		held = -1
	}
	scratch.Release(held)
	return err
}

// copyViaSpare is CopyOut through the pool's spare pipe, for when no
// other can be had (err says why).
func (pp *Pipe) copyViaSpare(b []byte, err error) error {
	p := pp.pool
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if p.spare == nil {
		return err
	}
	if err := pp.copyVia(p.spare, b); err != nil {
		// Whatever a failed tee left goes, for the next user.
		p.spare.close()
		p.spare, _ = newPipe()
		return err
	}
	return nil
}

func (pp *Pipe) copyVia(scratch *Pipe, b []byte) error {
	if err := pp.TeeTo(scratch, len(b)); err != nil {
		return err
	}
	return scratch.ReadFull(b)
}

func splice(in, out, n int) (int, error) {
	return retry6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
}

func retry6(trap, a1, a2, a3, a4, a5, a6 uintptr) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		if e != unix.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(r), nil
		}
	}
}
