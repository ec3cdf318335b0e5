//go:build linux

package listener

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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

// loop is one event loop: an epoll set, the connections in it, and what
// other goroutines queue for them. Fields below mu are shared with other
// goroutines; the rest belong to whoever holds runMu: the hub goroutine
// while the loop is pooled, the loop's own goroutine while it is
// dedicated (eventloop_hub_linux.go).
type loop struct {
	d      *eventLoopDriver
	index  int32 // in d.loops, and its tag in the hub's epoll set
	epfd   int
	wakefd int // eventfd: written to wake the loop while it is parked

	// runMu is held by whoever runs the loop's rounds. The hub takes it
	// for one round at a time; a dedicated goroutine holds it throughout.
	runMu sync.Mutex
	// pooled: the hub runs this loop (its epoll descriptor is armed in
	// the hub's set); false while a goroutine of its own runs it.
	pooled atomic.Bool
	// deadline is the nearest close or drain deadline on the driver's
	// clock (0 for none), published after each round for the hub, which
	// parks no longer than a pooled loop's deadline.
	deadline atomic.Int64

	sleeping atomic.Bool  // the loop is (about to be) parked
	load     atomic.Int32 // connections assigned, for balancing
	writes   atomic.Uint64

	// mu guards the queues other goroutines fill. Lock order: mu is a leaf;
	// no endpoint method is ever called under it.
	mu      sync.Mutex
	ops     []loopOp
	flushes []*econn
	stopped bool // the loop is gone: nothing more can be queued

	nconns int // open connections (the driver's fds finds them)
	// pieces holds the output of connections that lent memory
	// (PieceWriter), being written with writev; econn's sPieces marks them.
	pieces     map[*econn]*pieceOut
	buf        []byte // the loop's one read buffer
	events     []unix.EpollEvent
	more       []unix.EpollEvent // a round's later looks (serve)
	seen       map[int32]struct{}
	busyEvents []unix.EpollEvent // quietFirst's scratch
	iovecs     []unix.Iovec      // writePieces' scratch
	longRounds bool              // the last round took longer than repollEvery
	// heavy: the last round read heavyEvents or more events, or from a
	// busy sender (a read of busyRead or more); the hub counts these.
	heavy  bool
	queued bool // in the hub's queue (the hub's own field)
	// leftover: the last round may have left ready events that the hub's
	// set will not report again (a read that filled its buffer, more
	// events than the buffer holds, one left for the next round).
	leftover   bool
	wakeBuf    [8]byte
	opsSpare   []loopOp
	flushSpare []*econn
	closingQ   deadlineQueue // conns flushing their final output
	drainQ     deadlineQueue // conns draining input after the half-close
	shutting   bool
}

// newEpollWithWaker creates an epoll set with an eventfd in it, tagged
// tag (or with its descriptor, for -1), that wakes whoever waits on the set.
func newEpollWithWaker(tag int32) (epfd, wakefd int, err error) {
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, -1, fmt.Errorf("listener: %w", os.NewSyscallError("epoll_create1", err))
	}
	wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return -1, -1, fmt.Errorf("listener: %w", os.NewSyscallError("eventfd", err))
	}
	if tag == -1 {
		tag = int32(wakefd)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tag}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return -1, -1, fmt.Errorf("listener: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return epfd, wakefd, nil
}

// wakeValue is what a waker adds to the eventfd counter; any non-zero
// value makes it readable.
var wakeValue = binary.NativeEndian.AppendUint64(nil, 1)

func newLoop(d *eventLoopDriver, index int32) (*loop, error) {
	epfd, wakefd, err := newEpollWithWaker(-1)
	if err != nil {
		return nil, err
	}
	l := &loop{
		d:      d,
		index:  index,
		epfd:   epfd,
		wakefd: wakefd,
		buf:    make([]byte, d.opts.ReadBufferSize),
		events: make([]unix.EpollEvent, 256),
		more:   make([]unix.EpollEvent, 64),
	}
	return l, nil
}

// conn is the loop's connection on fd, or nil: a descriptor closed in this
// round may already be another loop's.
func (l *loop) conn(fd int) *econn {
	if c := l.d.fds.get(fd); c != nil && c.l == l {
		return c
	}
	return nil
}

func (l *loop) closeFDs() {
	unix.Close(l.epfd) // which also takes it out of the hub's set
	unix.Close(l.wakefd)
}

// epollWait collects ready events without blocking.
func (l *loop) epollWait() (int, error) { return l.epollWaitInto(l.events) }

// epollWaitInto is epollWait into another buffer.
func (l *loop) epollWaitInto(events []unix.EpollEvent) (int, error) {
	for {
		n, err := rawEpollPoll(l.epfd, events)
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
		rawWrite(l.wakefd, wakeValue)
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

// round handles n ready events in l.events, then the queued operations,
// then the flushes requested meanwhile, then expired deadlines. It reports
// whether the loop stopped: shut down with no connection left.
func (l *loop) round(n int) (stopped bool) {
	l.serve(n)
	return l.chores()
}

// chores is a round without the ready events: the queued operations, the
// flushes, the deadlines. It reports whether the loop stopped.
func (l *loop) chores() (stopped bool) {
	l.runOps()
	l.runFlushes()
	l.expire()
	l.publishDeadline()
	return l.shutting && l.nconns == 0 && l.stop()
}

// repollEvery is how long a loop works through a round's ready
// connections before it looks again for connections that became ready
// meanwhile.
const repollEvery = 500 * time.Microsecond

// busyRead is the read from which a connection counts as a busy sender: a
// SUBSCRIBE or a lone PUBLISH is smaller.
const busyRead = 1 << 10

// heavyEvents is how many ready events make a round heavy, as a read from
// a busy sender does: a round of a loop that keeps up with its clients
// has one or two.
const heavyEvents = 8

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
	l.heavy = n >= heavyEvents
	l.leftover = n == len(l.events)
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
				l.leftover = true
				continue // read once a round: more waits for the next
			}
			l.seen[ev.Fd] = struct{}{}
			if c := l.conn(int(ev.Fd)); c != nil && !c.is(sBusy) {
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
		if c := l.conn(int(ev.Fd)); c != nil && c.is(sBusy) {
			busy = append(busy, ev)
			continue
		}
		work[n] = ev
		n++
	}
	copy(work[n:], busy)
	l.busyEvents = busy[:0]
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
			l.d.fds.each(l, l.startClose)
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
		c.unset(cFlushQueued)
		if c.phase == phaseOpen && !c.is(sOutWatched) {
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
	l.pooled.Store(false) // the hub may still have it queued: it must not run it again
	l.closeFDs()
	l.d.loopGone()
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
			unix.Close(int(op.c.fd))
		}
	}
	l.d.fds.each(l, func(c *econn) { l.finalize(c, err) })
	l.pooled.Store(false)
	l.closeFDs()
	l.d.loopGone()
}
