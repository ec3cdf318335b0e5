//go:build linux

package listener

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type opKind uint8

const (
	opRegister opKind = iota // a new connection for this loop
	opClose                  // Conn.Close was called
	opShutdown               // Driver.Close: close everything and stop
	opResume                 // Conn.Resume was called
)

type loopOp struct {
	kind opKind
	c    *econn
}

// loop is one event loop. Fields below mu are shared with other goroutines;
// the rest belong to the loop goroutine alone.
type loop struct {
	d      *eventLoopDriver
	epfd   int
	wakefd int // eventfd: written to wake the loop while it is parked

	// The epoll descriptor is itself pollable, so the loop parks on Go's
	// poller rather than blocking its thread in epoll_wait (which would
	// hold a P until sysmon retakes it, adding tens of microseconds to
	// every wakeup of every goroutine).
	epf       *os.File
	epRaw     syscall.RawConn
	ready     func(fd uintptr) bool // epRaw.Read's callback: a non-blocking epoll_wait
	nready    int
	readyErr  error
	parkUntil time.Duration // the deadline set on epf, 0 for none

	sleeping atomic.Bool  // the loop is (about to be) parked
	load     atomic.Int32 // connections assigned, for balancing
	writes   atomic.Uint64

	// mu guards the queues other goroutines fill. Lock order: mu is a leaf;
	// no endpoint method is ever called under it.
	mu      sync.Mutex
	ops     []loopOp
	flushes []*econn
	stopped bool // the loop is gone: nothing more can be queued

	conns map[int]*econn // by descriptor
	// pieces holds the output of connections that lent memory
	// (PieceWriter), being written with writev; econn.pieces marks them.
	pieces     map[*econn]*pieceOut
	buf        []byte // the loop's one read buffer
	events     []unix.EpollEvent
	more       []unix.EpollEvent // a round's later looks (serve)
	seen       map[int32]struct{}
	busyEvents []unix.EpollEvent // quietFirst's scratch
	longRounds bool              // the last round took longer than repollEvery
	wakeBuf    [8]byte
	opsSpare   []loopOp
	flushSpare []*econn
	closingQ   deadlineQueue // conns flushing their final output
	drainQ     deadlineQueue // conns draining input after the half-close
	shutting   bool
}

// wakeValue is what a waker adds to the eventfd counter; any non-zero
// value makes it readable.
var wakeValue = binary.NativeEndian.AppendUint64(nil, 1)

func newLoop(d *eventLoopDriver) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", os.NewSyscallError("epoll_create1", err))
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("listener: %w", os.NewSyscallError("eventfd", err))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("listener: %w", os.NewSyscallError("epoll_ctl", err))
	}
	l := &loop{
		d:      d,
		epfd:   epfd,
		wakefd: wakefd,
		conns:  make(map[int]*econn),
		buf:    make([]byte, d.opts.ReadBufferSize),
		events: make([]unix.EpollEvent, 256),
		more:   make([]unix.EpollEvent, 64),
	}
	// Non-blocking, so os.NewFile adds it to the poller. epoll_wait itself
	// ignores the flag: its timeout (always 0 here) decides.
	if err := unix.SetNonblock(epfd, true); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("listener: %w", os.NewSyscallError("fcntl", err))
	}
	l.epf = os.NewFile(uintptr(epfd), "epoll")
	if err := l.epf.SetReadDeadline(time.Time{}); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("listener: the poller does not take an epoll descriptor: %w", err)
	}
	if l.epRaw, err = l.epf.SyscallConn(); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("listener: %w", err)
	}
	l.ready = func(uintptr) bool {
		l.nready, l.readyErr = l.epollWait()
		return l.nready > 0 || l.readyErr != nil
	}
	return l, nil
}

func (l *loop) closeFDs() {
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.epfd)
	}
	unix.Close(l.wakefd)
}

// epollWait collects ready events without blocking.
func (l *loop) epollWait() (int, error) { return l.epollWaitInto(l.events) }

// epollWaitInto is epollWait into another buffer.
func (l *loop) epollWaitInto(events []unix.EpollEvent) (int, error) {
	for {
		n, err := unix.EpollWait(l.epfd, events, 0)
		if err != unix.EINTR {
			if err != nil {
				return 0, os.NewSyscallError("epoll_wait", err)
			}
			return n, nil
		}
	}
}

// push queues an operation for the loop and wakes it if it sleeps. It
// reports false when the loop has stopped.
func (l *loop) push(op loopOp) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.ops = append(l.ops, op)
	l.wake()
	return true
}

// pushFlush queues c for a flush after the loop's current batch.
func (l *loop) pushFlush(c *econn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.flushes = append(l.flushes, c)
	l.wake()
}

// wake writes the eventfd if, and only if, the loop is parked (or is about
// to park): one write per sleep, however many producers. Called
// with mu held, so the eventfd cannot be closed underneath.
func (l *loop) wake() {
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		unix.Write(l.wakefd, wakeValue)
	}
}

// hasWork reports whether queued work waits. The loop calls it after
// setting sleeping: a producer either queued before (seen here) or sees
// sleeping and writes the eventfd. mu orders the two.
func (l *loop) hasWork() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ops) > 0 || len(l.flushes) > 0
}

// run is the loop goroutine: wait for events, handle them, then the queued
// operations, then the flushes requested meanwhile, then expired deadlines.
func (l *loop) run() {
	defer l.d.running.Done()
	for {
		n, err := l.wait()
		if err != nil {
			l.fatal(err)
			return
		}
		l.serve(n)
		l.runOps()
		l.runFlushes()
		l.expire()
		if l.shutting && len(l.conns) == 0 && l.stop() {
			return
		}
	}
}

// repollEvery is how long a loop works through a round's ready
// connections before it looks again for connections that became ready
// meanwhile.
const repollEvery = 500 * time.Microsecond

// busyRead is the read from which a connection counts as a busy sender: a
// SUBSCRIBE or a lone PUBLISH is smaller.
const busyRead = 1 << 10

// serve handles the round's n ready events in l.events, one read each.
//
// Under load a round takes milliseconds (a read of every busy connection,
// and what it carries), and a connection that becomes ready meanwhile used
// to wait for the next round, behind every busy sender again (epoll lists
// them first). Another loop, whose round happened to start later, could
// then route a PUBLISH that arrived after, say, a SUBSCRIBE waiting here:
// the subscriber missed a message that a single-threaded broker would have
// delivered. So, once rounds are long, connections that are not busy
// senders (a SUBSCRIBE, a PUBLISH now and then) go first in a round, and
// every repollEvery the loop asks epoll again, without waiting, and puts
// those that became ready meanwhile next (busy ones at the end). A
// connection is read at most once a round, so reads stay as large as
// before. A quiet loop pays for none of it.
func (l *loop) serve(n int) {
	start := time.Now()
	// work may grow past n, within l.events or beyond: nothing else reads
	// l.events until the next round's epoll_wait.
	work := l.events[:n]
	if l.longRounds {
		l.quietFirst(work)
	}
	polled := start
	seen := false // l.seen holds every fd taken up this round
	// Only the round's own events look again: what they add cannot make
	// the round go on and on, keeping the flushes after it waiting.
	for i := 0; i < len(work); i++ {
		l.handle(work[i])
		if i+1 >= n {
			continue
		}
		now := time.Now()
		if now.Sub(polled) < repollEvery {
			continue
		}
		polled = now
		m, err := l.epollWaitInto(l.more)
		if err != nil || m == 0 {
			continue
		}
		if !seen {
			if l.seen == nil {
				l.seen = make(map[int32]struct{})
			}
			for _, ev := range work {
				l.seen[ev.Fd] = struct{}{}
			}
			seen = true
		}
		next := i + 1
		for _, ev := range l.more[:m] {
			if _, ok := l.seen[ev.Fd]; ok {
				continue // read once a round: more waits for the next
			}
			l.seen[ev.Fd] = struct{}{}
			if c := l.conns[int(ev.Fd)]; c != nil && !c.busy {
				work = slices.Insert(work, next, ev)
				next++
			} else {
				work = append(work, ev)
			}
		}
	}
	if seen {
		clear(l.seen)
	}
	l.longRounds = time.Since(start) > repollEvery
}

// quietFirst reorders a round's events so that connections that are not
// busy senders come first, each group in epoll's order.
func (l *loop) quietFirst(work []unix.EpollEvent) {
	busy := l.busyEvents[:0]
	n := 0
	for _, ev := range work {
		if c := l.conns[int(ev.Fd)]; c != nil && c.busy {
			busy = append(busy, ev)
			continue
		}
		work[n] = ev
		n++
	}
	copy(work[n:], busy)
	l.busyEvents = busy[:0]
}

// wait returns the number of ready events in l.events. With none, and no
// queued work or due deadline, it parks the goroutine on Go's poller until
// the epoll set has events (a socket, or the eventfd) or the nearest close
// deadline passes.
func (l *loop) wait() (int, error) {
	n, err := l.epollWait()
	if n > 0 || err != nil {
		return n, err
	}
	until, ok := l.nextDeadline()
	if ok && until <= l.d.now() {
		return 0, nil
	}
	l.sleeping.Store(true)
	if l.hasWork() {
		l.sleeping.Store(false)
		return 0, nil
	}
	if !ok {
		until = 0
	}
	if until != l.parkUntil {
		var t time.Time
		if until != 0 {
			t = l.d.epoch.Add(until)
		}
		l.epf.SetReadDeadline(t)
		l.parkUntil = until
	}
	l.nready, l.readyErr = 0, nil
	err = l.epRaw.Read(l.ready)
	l.sleeping.Store(false)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return l.nready, l.readyErr
}

// runOps performs the operations queued since the last round.
func (l *loop) runOps() {
	l.mu.Lock()
	ops := l.ops
	l.ops = l.opsSpare[:0]
	l.mu.Unlock()
	for i, op := range ops {
		switch op.kind {
		case opRegister:
			l.register(op.c)
		case opClose:
			l.startClose(op.c)
		case opResume:
			l.resume(op.c)
		case opShutdown:
			l.shutting = true
			for _, c := range l.conns {
				l.startClose(c)
			}
		}
		ops[i] = loopOp{}
	}
	l.opsSpare = ops[:0]
}

// runFlushes writes the output of every connection that asked since the
// last round: one Output and one write each, however many Flush calls.
func (l *loop) runFlushes() {
	l.mu.Lock()
	cs := l.flushes
	l.flushes = l.flushSpare[:0]
	l.mu.Unlock()
	for i, c := range cs {
		// Clear first: a Flush from now on queues c again, and anything
		// appended before it is taken by the Output below.
		c.flushQueued.Store(false)
		if c.phase == phaseOpen && !c.outWatched {
			l.flush(c)
		}
		// A conn waiting for EPOLLOUT calls Output again once its remainder
		// is written; a closing conn's sequence takes all output anyway.
		cs[i] = nil
	}
	l.flushSpare = cs[:0]
}

// stop ends the loop once shutting down left no connection and nothing is
// queued. Marking it stopped under mu means no producer can queue (or write
// the eventfd) after the descriptors close.
func (l *loop) stop() bool {
	l.mu.Lock()
	if len(l.ops) > 0 || len(l.flushes) > 0 {
		l.mu.Unlock()
		return false
	}
	l.stopped = true
	l.mu.Unlock()
	l.closeFDs()
	return true
}

// fatal ends the loop after epoll itself failed, which leaves no way to
// serve its connections.
func (l *loop) fatal(err error) {
	l.d.opts.Logger.Error("listener: event loop failed", "err", err)
	l.mu.Lock()
	l.stopped = true
	ops := l.ops
	l.ops = nil
	l.mu.Unlock()
	for _, op := range ops {
		if op.kind == opRegister {
			l.load.Add(-1)
			unix.Close(op.c.fd)
		}
	}
	for _, c := range l.conns {
		l.finalize(c, err)
	}
	l.closeFDs()
}
