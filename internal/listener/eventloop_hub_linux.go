//go:build linux

package listener

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Scheduling the loops.
//
// A packet the kernel received earlier must take effect first: a client
// that sends SUBSCRIBE and then has another client PUBLISH to that topic
// expects the message, as from a single-threaded broker. Loops that each
// park on Go's poller cannot promise it: the runtime wakes ready
// goroutines in no particular order (in practice the last one first), and
// two loops woken together run in parallel, so a PUBLISH read by one loop
// was routed before a SUBSCRIBE that reached another loop's socket first
// (most of the time, measured). A closed connection's will lost to the
// next client's SUBSCRIBE the same way.
//
// So one goroutine, the hub, serves every loop that is not busy. Each
// loop's epoll descriptor sits in the hub's epoll set, which lists ready
// loops in the order they became ready; the hub runs one round of each in
// that order. An idle or lightly loaded broker thus handles packets one at
// a time, in the order they arrived, like a single event loop, and pays
// one more epoll_wait per round. ("Arrived" as the kernel tells it: bytes
// that reach a socket while a loop is in a system call on it wait in the
// socket's backlog until the call returns, and are announced then, after
// what reached other sockets meanwhile.) The set is edge-triggered: a loop is
// listed when a socket in it becomes ready, behind the loops whose sockets
// became ready before. (Level-triggered, a loop just served goes back to
// the end of the list at once, so bytes that reach it later are served
// before those that reached another loop in between; with EPOLLONESHOT a
// loop re-armed after its round goes behind loops that became ready during
// it, with bytes that arrived before theirs. Either way, a SUBSCRIBE lost
// to a later PUBLISH again, in tests.) A loop whose round may have left
// something ready, the hub queues again itself.
//
// Under load one goroutine would cap the broker at one core, so a loop
// whose round takes longer than repollEvery, or that the hub serves while
// it has been busy for longer than hubBusy without a pause, is dedicated:
// the hub starts a goroutine that runs that loop's rounds back to back
// (in parallel with the hub and the other dedicated loops, in no order
// across loops, as in any multi-threaded broker under load) until it has
// nothing to do, and then gives the loop back to the hub.

// The hub is busy when it has run at least hubBusyTurns heavy rounds (see
// heavyEvents) over at least hubBusyTime without finding itself idle (no
// loop ready). Heavy rounds, because a client that answers at once keeps
// some loop ready all the time with one small packet per round, which one
// goroutine serves easily; and time too, so that a short burst does not
// make it give up the order.
const (
	hubBusyTime  = 2 * repollEvery
	hubBusyTurns = 16
)

// errHubFailed ends the loops left when the hub's own epoll set failed.
var errHubFailed = errors.New("listener: the event loop hub failed")

// hubWakeTag marks the hub's own eventfd among the loops in its set, and
// hubAcceptTag the listening socket.
const (
	hubWakeTag   = -2
	hubAcceptTag = -3
)

// hub is the state of the hub goroutine; only it touches the fields below
// the descriptors.
type hub struct {
	epfd   int
	wakefd int // eventfd: a loop that stopped wakes the hub to notice

	// The hub parks on Go's poller, as the loops used to, rather than
	// blocking a thread in epoll_wait (which would hold a P until sysmon
	// retakes it, adding tens of microseconds to every wakeup).
	epf       *os.File
	epRaw     syscall.RawConn
	ready     func(fd uintptr) bool // epRaw.Read's callback: a non-blocking epoll_wait
	nready    int
	readyErr  error
	parkUntil time.Duration // the deadline set on epf, 0 for none
	events    []unix.EpollEvent
	// queue lists the loops to serve, in the order they became ready;
	// spare is the other of the two slices it alternates between.
	queue, spare []*loop
	// busySince is when the hub's busy spell began (its first heavy round
	// after it last found no loop ready), and turns how many heavy rounds
	// it has run since.
	busySince time.Time
	turns     int
	wakeBuf   [8]byte
	rsa       unix.RawSockaddrAny // accept4's
}

func newHub() (*hub, error) {
	epfd, wakefd, err := newEpollWithWaker(hubWakeTag)
	if err != nil {
		return nil, err
	}
	h := &hub{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 64)}
	// Non-blocking, so os.NewFile adds it to the poller. epoll_wait itself
	// ignores the flag: its timeout (always 0 here) decides.
	if err := unix.SetNonblock(epfd, true); err != nil {
		h.close()
		return nil, fmt.Errorf("listener: %w", os.NewSyscallError("fcntl", err))
	}
	h.epf = os.NewFile(uintptr(epfd), "epoll")
	if err := h.epf.SetReadDeadline(time.Time{}); err != nil {
		h.close()
		return nil, fmt.Errorf("listener: the poller does not take an epoll descriptor: %w", err)
	}
	if h.epRaw, err = h.epf.SyscallConn(); err != nil {
		h.close()
		return nil, fmt.Errorf("listener: %w", err)
	}
	h.ready = func(uintptr) bool {
		h.nready, h.readyErr = h.epollWait()
		if h.nready == 0 && h.readyErr == nil {
			h.turns = 0 // caught up: whatever comes next starts a new busy spell
			return false
		}
		return true
	}
	return h, nil
}

func (h *hub) close() {
	if h.epf != nil {
		h.epf.Close()
	} else {
		unix.Close(h.epfd)
	}
	unix.Close(h.wakefd)
}

// epollWait collects ready loops without blocking.
func (h *hub) epollWait() (int, error) {
	for {
		n, err := rawEpollPoll(h.epfd, h.events)
		if err != unix.EINTR {
			if err != nil {
				return 0, os.NewSyscallError("epoll_wait", err)
			}
			return n, nil
		}
	}
}

// add puts a new loop in the hub's set, pooled.
func (d *eventLoopDriver) add(l *loop) error {
	l.pooled.Store(true)
	l.sleeping.Store(true)
	ev := unix.EpollEvent{Events: loopEvents, Fd: l.index}
	if err := unix.EpollCtl(d.hub.epfd, unix.EPOLL_CTL_ADD, l.epfd, &ev); err != nil {
		return fmt.Errorf("listener: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// loopEvents is how the hub's set watches a loop: edge-triggered, so that
// a loop is listed when something new becomes ready in it, behind what
// became ready before.
const loopEvents = unix.EPOLLIN | unix.EPOLLET

// watchLoop has the hub's set report l when it has new events, or not at all
// while a goroutine of its own runs it.
func (d *eventLoopDriver) watchLoop(l *loop, on bool) {
	ev := unix.EpollEvent{Fd: l.index}
	if on {
		ev.Events = loopEvents
	}
	if err := rawEpollCtl(d.hub.epfd, unix.EPOLL_CTL_MOD, l.epfd, &ev); err != nil {
		// Only a closed descriptor fails here, and a loop closes its
		// descriptors only once it stopped.
		d.opts.Logger.Error("listener: cannot watch an event loop", "err", os.NewSyscallError("epoll_ctl", err))
	}
}

// wakeHub makes the hub look at its loops again. hubMu keeps the hub from
// closing the eventfd underneath (the number could be reused).
func (d *eventLoopDriver) wakeHub() {
	d.hubMu.Lock()
	if !d.hubClosed {
		rawWrite(d.hub.wakefd, wakeValue)
	}
	d.hubMu.Unlock()
}

// closeHub closes the hub's descriptors once it has stopped.
func (d *eventLoopDriver) closeHub() {
	d.hubMu.Lock()
	d.hubClosed = true
	d.hub.close()
	d.hubMu.Unlock()
}

// loopGone counts a loop out; the hub stops after the last one.
func (d *eventLoopDriver) loopGone() {
	if d.loopsLeft.Add(-1) == 0 {
		d.wakeHub()
	}
	d.running.Done()
}

// runHub is the hub goroutine: it serves the pooled loops, one round each
// in the order they became ready, and their deadlines (without a round).
func (d *eventLoopDriver) runHub() {
	defer d.running.Done()
	defer d.closeHub()
	h := d.hub
	for d.loopsLeft.Load() > 0 {
		n, err := d.hubWait(len(h.queue) == 0)
		if err != nil {
			d.opts.Logger.Error("listener: event loop hub failed", "err", err)
			d.hubFailed()
			return
		}
		accept := false
		for _, ev := range h.events[:n] {
			switch ev.Fd {
			case hubWakeTag:
				rawRead(h.wakefd, h.wakeBuf[:])
			case hubAcceptTag:
				accept = true
			default:
				h.enqueue(d.loops[ev.Fd])
			}
		}
		batch := h.queue
		h.queue = h.spare[:0]
		for _, l := range batch {
			l.queued = false
			if d.turn(l) {
				h.enqueue(l)
			}
		}
		clear(batch)
		h.spare = batch[:0]
		// After the loops: a new connection's CONNECT is read as it is
		// accepted (register), and must not go before packets that were
		// ready before it.
		if accept {
			d.acceptReady()
		}
		now := d.now()
		for _, l := range d.loops {
			if at := time.Duration(l.deadline.Load()); at != 0 && at <= now && l.pooled.Load() {
				d.deadlineTurn(l)
			}
		}
	}
}

// enqueue puts l at the end of the hub's queue, unless it is in it.
func (h *hub) enqueue(l *loop) {
	if !l.queued {
		l.queued = true
		h.queue = append(h.queue, l)
	}
}

// hubWait returns the number of ready loops in the hub's events. With none,
// park set and no pooled loop's deadline due, it parks on Go's poller until a loop
// is ready or the nearest deadline passes.
func (d *eventLoopDriver) hubWait(park bool) (int, error) {
	h := d.hub
	if !park {
		return h.epollWait()
	}
	var until time.Duration
	for _, l := range d.loops {
		if at := time.Duration(l.deadline.Load()); at != 0 && l.pooled.Load() && (until == 0 || at < until) {
			until = at
		}
	}
	if until != 0 && until <= d.now() {
		h.ready(0) // a deadline is due: poll, but do not park
		return h.nready, h.readyErr
	}
	if until != h.parkUntil {
		var t time.Time
		if until != 0 {
			t = d.epoch.Add(until)
		}
		h.epf.SetReadDeadline(t)
		h.parkUntil = until
	}
	// Read polls before it parks (h.ready): a poll of our own first would
	// be a second epoll_wait, on every park, for nothing.
	h.nready, h.readyErr = 0, nil
	err := h.epRaw.Read(h.ready)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return h.nready, h.readyErr
}

// busy counts a round in the hub's busy spell and reports whether the
// spell is long enough to dedicate the loop that ran it. The spell starts
// over then, so the next loop waits as long.
func (h *hub) busy(heavy bool) bool {
	if !heavy {
		return false
	}
	h.turns++
	if h.turns == 1 {
		h.busySince = time.Now()
		return false
	}
	if h.turns < hubBusyTurns || time.Since(h.busySince) < hubBusyTime {
		return false
	}
	h.turns = 0
	return true
}

// turn runs one round of a pooled loop on the hub, or more while work is
// queued for it (or, for the only loop, while it has events), and
// dedicates it when it is busy.
func (d *eventLoopDriver) turn(l *loop) (again bool) {
	if !l.pooled.Load() {
		return false // dedicated earlier in the hub's batch
	}
	l.runMu.Lock()
	l.sleeping.Store(false)
	// The only loop keeps no order with others: it goes on while it has
	// events, as a loop of its own would, without asking the hub's set.
	alone := len(d.loops) == 1
	for {
		n, err := l.epollWait()
		if err != nil {
			l.fatal(err)
			l.runMu.Unlock()
			return false
		}
		if l.round(n) {
			l.runMu.Unlock()
			return false
		}
		if alone && n > 0 {
			continue
		}
		// Work queued while the round ran found the loop awake and did
		// not write the eventfd: take it up now.
		if l.settle() {
			break
		}
	}
	// One loop has nothing to run in parallel with: it stays on the hub.
	if !alone && d.hub.busy(l.heavy) {
		l.sleeping.Store(false)
		l.pooled.Store(false)
		d.watchLoop(l, false)
		go l.runDedicated() // runMu goes with it
		return false
	}
	l.runMu.Unlock()
	// The set reports what becomes ready from now on, not what the round
	// left: the hub comes back for that itself.
	return !alone && l.leftover
}

// deadlineTurn closes the connections whose deadlines passed on a pooled
// loop, and runs its queued work, without reading its sockets. A round
// would also take the bytes that reached the loop after those of loops
// still waiting in the hub's set, out of the order the hub keeps: a PUBLISH
// routed before a SUBSCRIBE that reached another loop earlier, whenever a
// closed connection's deadline passed in between (measured, the cause of
// issue 15's last misses). The loop's ready sockets wait for the hub's set
// to report them in turn.
func (d *eventLoopDriver) deadlineTurn(l *loop) {
	if !l.pooled.Load() {
		return
	}
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.sleeping.Store(false)
	for {
		if l.chores() || l.settle() {
			return // stopped, or nothing queued meanwhile
		}
	}
}

// settle marks the loop asleep unless work was queued while it ran (which
// found it awake and so did not write the eventfd): it reports whether
// the loop may stop, and leaves it awake otherwise.
func (l *loop) settle() bool {
	l.sleeping.Store(true)
	if !l.hasWork() {
		return true
	}
	l.sleeping.Store(false)
	return false
}

// runDedicated runs a busy loop's rounds on a goroutine of its own until
// the loop has nothing to do, then gives it back to the hub. The caller
// holds runMu for it.
func (l *loop) runDedicated() {
	for {
		n, err := l.epollWait()
		if err != nil {
			l.fatal(err)
			l.runMu.Unlock()
			return
		}
		if n == 0 && !l.deadlineDue() && l.settle() {
			break
		}
		if l.round(n) {
			l.runMu.Unlock()
			return
		}
	}
	if l.d.hubDown.Load() {
		l.fatal(errHubFailed)
		l.runMu.Unlock()
		return
	}
	l.pooled.Store(true)
	l.runMu.Unlock()
	l.d.watchLoop(l, true)
	if l.deadline.Load() != 0 {
		l.d.wakeHub() // to park no longer than the deadline
	}
}

// hubFailed ends every pooled loop after the hub's epoll set failed, which
// leaves no way to know when they have work.
func (d *eventLoopDriver) hubFailed() {
	d.hubDown.Store(true)
	for _, l := range d.loops {
		if !l.pooled.Load() {
			continue
		}
		l.runMu.Lock()
		if l.pooled.Load() {
			l.fatal(errHubFailed)
		}
		l.runMu.Unlock()
	}
}
