//go:build linux

package listener

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/petrelmq/petrel/internal/bufpool"
)

// NewEventLoopDriver returns the epoll driver for plain TCP.
//
// Opts.Loops event loops each own an epoll set, an eventfd to wake it, the
// connections assigned to it and one read buffer; an idle connection holds
// no goroutine and no buffer. An idle loop parks its goroutine on Go's
// poller (the epoll descriptor is itself pollable), so no thread blocks in
// epoll_wait. Serve accepts with accept4 (so sockets come
// out non-blocking, without a trip through package net) on a duplicate of
// ln's descriptor, parked on Go's poller between connections, and hands
// each connection to the least loaded loop. Everything a connection
// does (Data, Output, Closed, its close sequence) runs on its loop's
// goroutine; Flush and Close from any goroutine queue work for that loop.
// Output requested during an event batch is written after the batch, one
// write per connection.
//
// Serve closes ln when its context is done; Close closes ln too. Closing
// ln by other means does not stop Serve: the duplicate keeps it listening.
func NewEventLoopDriver(ln *net.TCPListener, h Handler, opts Options) (Driver, error) {
	// A listener's own RawConn cannot Read (it refuses with EINVAL), but a
	// duplicate descriptor as an *os.File can, and still parks on the poller.
	lnFile, err := ln.File()
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	d := &eventLoopDriver{ln: ln, lnFile: lnFile, h: h, opts: opts.withDefaults(true), epoch: time.Now()}
	// (Not lnFile.Fd(): that would put the socket in blocking mode.)
	if rc, err := ln.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { setConnOptions(int(fd)) })
	}
	if la, ok := ln.Addr().(*net.TCPAddr); ok && !la.IP.IsUnspecified() {
		ap := la.AddrPort()
		d.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	for range d.opts.Loops {
		l, err := newLoop(d)
		if err != nil {
			for _, l := range d.loops {
				l.closeFDs()
			}
			lnFile.Close()
			return nil, err
		}
		d.loops = append(d.loops, l)
	}
	for _, l := range d.loops {
		d.running.Add(1)
		go l.run()
	}
	return d, nil
}

type eventLoopDriver struct {
	ln     *net.TCPListener
	lnFile *os.File // a duplicate of ln's descriptor, to accept on
	h      Handler
	opts   Options
	loops  []*loop
	epoch  time.Time      // loops measure deadlines from here (monotonic)
	local  netip.AddrPort // every connection's local address, unless ln is on a wildcard
	next   atomic.Uint32

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	running   sync.WaitGroup // one count per loop goroutine
}

func (d *eventLoopDriver) Addr() net.Addr { return d.ln.Addr() }

// Serve accepts connections until ctx is done, Close is called, or the
// listener fails. It returns nil in the first two cases.
func (d *eventLoopDriver) Serve(ctx context.Context) error {
	if d.closing.Load() {
		return nil
	}
	rc, err := d.lnFile.SyscallConn()
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { d.closeListener() })
	defer stop()

	var (
		nfd    int
		remote netip.AddrPort
		aerr   error
		rsa    = new(unix.RawSockaddrAny)
	)
	accept := func(fd uintptr) bool {
		for {
			nfd, remote, aerr = accept4(int(fd), rsa)
			switch aerr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // park on Go's poller until a connection is queued
			}
			return true
		}
	}
	var backoff time.Duration
	for {
		if err := rc.Read(accept); err != nil {
			if ctx.Err() != nil || d.closing.Load() {
				return nil
			}
			return fmt.Errorf("listener: accept: %w", err)
		}
		if aerr != nil {
			aerr = os.NewSyscallError("accept4", aerr)
			if !temporaryAccept(aerr) {
				return fmt.Errorf("listener: %w", aerr)
			}
			backoff = acceptBackoff(backoff)
			d.opts.Logger.Warn("listener: accept failed; retrying", "err", aerr, "backoff", backoff)
			if !pause(backoff, ctx.Done(), nil) || d.closing.Load() {
				return nil
			}
			continue
		}
		backoff = 0
		d.dispatch(nfd, remote)
	}
}

// accept4 is unix.Accept4 without its two allocations per connection (a
// sockaddr buffer and the decoded address), which would linger as garbage
// among the connection's long-lived objects: the caller's buffer is
// reused and the address decoded into a value.
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, netip.AddrPort, error) {
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	var ap netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		ap = netip.AddrPortFrom(addr6(a.Addr, a.Scope_id), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:]))
	}
	return int(r), ap, nil
}

// dispatch hands a freshly accepted socket to the least loaded loop.
// setConnOptions sets the socket options every connection gets, once, on
// the listening socket: Linux copies them to each socket it accepts, which
// saves five system calls per connection (TestAcceptedSocketOptions).
func setConnOptions(fd int) {
	// Small MQTT packets must not wait for Nagle; the driver batches itself.
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// Probe dead peers as package net does for the connections it accepts
	// (MQTT's keep alive may be off): after 15s idle, every 15s, 9 times.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}

func (d *eventLoopDriver) dispatch(fd int, remote netip.AddrPort) {
	c := &econn{fd: fd, remote: remote}
	l := d.pick()
	c.l = l
	l.load.Add(1)
	if !l.push(loopOp{kind: opRegister, c: c}) {
		l.load.Add(-1)
		unix.Close(fd)
	}
}

// pick returns the loop with the fewest connections, starting the scan at a
// rotating position so ties spread round-robin.
func (d *eventLoopDriver) pick() *loop {
	n := len(d.loops)
	start := int(d.next.Add(1) % uint32(n))
	best := d.loops[start]
	for i := 1; i < n; i++ {
		if l := d.loops[(start+i)%n]; l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// Close stops accepting, closes every connection as Conn.Close does, and
// returns once Closed has returned for each of them and the loops stopped.
// It must not be called from inside an endpoint's method.
func (d *eventLoopDriver) Close() error {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		d.closeErr = d.closeListener()
		for _, l := range d.loops {
			l.push(loopOp{kind: opShutdown})
		}
	})
	d.running.Wait()
	return d.closeErr
}

// closeListener closes ln and its duplicate, which wakes a parked accept.
func (d *eventLoopDriver) closeListener() error {
	err := d.ln.Close()
	d.lnFile.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// writeCalls counts write syscalls on all loops, for tests of batching.
func (d *eventLoopDriver) writeCalls() uint64 {
	var n uint64
	for _, l := range d.loops {
		n += l.writes.Load()
	}
	return n
}

// now is the loops' clock: monotonic time since the driver started.
func (d *eventLoopDriver) now() time.Duration { return time.Since(d.epoch) }

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

// nextDeadline is the nearest close or drain deadline, if any.
func (l *loop) nextDeadline() (time.Duration, bool) {
	next, ok := l.closingQ.next()
	if at, ok2 := l.drainQ.next(); ok2 && (!ok || at < next) {
		next, ok = at, true
	}
	return next, ok
}

func (l *loop) handle(ev unix.EpollEvent) {
	fd := int(ev.Fd)
	if fd == l.wakefd {
		unix.Read(l.wakefd, l.wakeBuf[:])
		return
	}
	c := l.conns[fd]
	if c == nil {
		return // closed earlier in this batch
	}
	// While closing, an error or a hang-up (reset, or both sides shut before
	// our half-close) leaves nothing to write. Draining reads on to the EOF.
	if c.phase == phaseClosing && ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 ||
		c.phase == phaseDraining && ev.Events&unix.EPOLLERR != 0 {
		l.finalize(c, nil)
		return
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.readable(c)
	}
	if ev.Events&unix.EPOLLOUT != 0 {
		switch c.phase {
		case phaseOpen:
			l.flush(c)
		case phaseClosing:
			l.continueClose(c)
		}
	}
}

// readable reads once into the loop buffer. Epoll is level-triggered, so
// bytes left in the socket bring the loop back next round, after the other
// connections had their turn.
func (l *loop) readable(c *econn) {
	buf := l.buf
	dr, direct := c.ep.(DirectReader)
	if direct && c.phase == phaseOpen {
		if b := dr.ReadBuffer(); len(b) > 0 {
			buf = b
		} else {
			direct = false
		}
	}
	n, err := ignoringEINTR(func() (int, error) { return unix.Read(c.fd, buf) })
	c.busy = n >= busyRead
	switch {
	case err == unix.EAGAIN:
	case err != nil:
		l.finalize(c, os.NewSyscallError("read", err))
	case n == 0:
		l.readEOF(c)
	case c.phase == phaseOpen && !c.closeReq.Load():
		var p *PanicError
		if direct {
			p = l.dataRead(c, dr, buf[:n])
		} else {
			p = l.data(c, buf[:n])
		}
		if p != nil {
			l.finalize(c, p)
			return
		}
		l.pauseIfAsked(c)
	}
	// Bytes read after Close are discarded: the drain.
}

// resume reads from a paused connection again once its endpoint allows,
// and hands it what it set aside. The endpoint is asked here, on the loop,
// so a pause decided after the Resume call wins.
func (l *loop) resume(c *econn) {
	if c.phase != phaseOpen || c.ep.(Pauser).ReadPaused() {
		return
	}
	if c.readPaused {
		c.readPaused = false
		l.watch(c)
	}
	if p := l.data(c, nil); p != nil {
		l.finalize(c, p)
		return
	}
	l.pauseIfAsked(c) // paused again by what it took up?
}

// pauseIfAsked stops watching c's input if its endpoint, a Pauser, asked
// after the Data just handed over.
func (l *loop) pauseIfAsked(c *econn) {
	if pz, ok := c.ep.(Pauser); ok && c.phase == phaseOpen && pz.ReadPaused() {
		c.readPaused = true
		l.watch(c)
	}
}

// readEOF handles the peer's end of input.
func (l *loop) readEOF(c *econn) {
	if c.phase != phaseClosing {
		l.finalize(c, io.EOF)
		return
	}
	// Still flushing the final output, which the peer may yet read: stop
	// watching input (level-triggered EOF would spin) and finish the flush.
	c.inputDone = true
	l.watch(c)
}

func (l *loop) data(c *econn, b []byte) (p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			p = recovered(l.d.opts.Logger, "Data", c.RemoteAddr(), r)
		}
	}()
	c.ep.Data(b)
	return nil
}

func (l *loop) dataRead(c *econn, dr DirectReader, b []byte) (p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			p = recovered(l.d.opts.Logger, "DataRead", c.RemoteAddr(), r)
		}
	}()
	dr.DataRead(b)
	return nil
}

func (l *loop) output(c *econn) (out []byte, p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			out, p = nil, recovered(l.d.opts.Logger, "Output", c.RemoteAddr(), r)
		}
	}()
	if pw, ok := c.ep.(PieceWriter); ok {
		var pieces [][]byte
		var done func()
		out, pieces, done = pw.OutputPieces()
		if pieces != nil {
			if l.pieces == nil {
				l.pieces = make(map[*econn]*pieceOut)
			}
			l.pieces[c] = &pieceOut{pieces: pieces, done: done}
			c.pieces = true
			if out == nil {
				out = bufpool.Get(0) // c.out marks that output is pending
			}
			return out, nil
		}
	} else {
		out = c.ep.Output()
	}
	if len(out) == 0 {
		if out != nil {
			bufpool.Put(out)
		}
		return nil, nil
	}
	return out, nil
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

func (l *loop) register(c *econn) {
	if l.shutting {
		l.load.Add(-1)
		unix.Close(c.fd)
		return
	}
	c.events = unix.EPOLLIN | unix.EPOLLRDHUP
	ev := unix.EpollEvent{Events: c.events, Fd: int32(c.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		l.d.opts.Logger.Error("listener: cannot watch a connection", "err", os.NewSyscallError("epoll_ctl", err))
		l.load.Add(-1)
		c.phase = phaseClosed
		c.gone.Store(true)
		unix.Close(c.fd)
		return
	}
	l.conns[c.fd] = c
	c.ep = l.open(c)
	if c.ep == nil {
		delete(l.conns, c.fd)
		l.load.Add(-1)
		c.phase = phaseClosed
		c.gone.Store(true)
		unix.Close(c.fd)
	}
}

func (l *loop) open(c *econn) (ep Endpoint) {
	defer func() {
		if r := recover(); r != nil {
			recovered(l.d.opts.Logger, "Open", c.RemoteAddr(), r)
			ep = nil
		}
	}()
	ep = l.d.h.Open(c)
	if ep == nil {
		l.d.opts.Logger.Error("listener: Handler.Open returned no endpoint; closing the connection",
			"remote", addrString(c.RemoteAddr()))
	}
	return ep
}

// flush writes c's output while the connection is open: the unwritten
// remainder first, then one fresh Output. On EAGAIN it keeps the rest and
// watches EPOLLOUT; Output is not called again until the rest is written.
func (l *loop) flush(c *econn) {
	fresh := false
	for {
		if c.out == nil {
			if fresh {
				break
			}
			fresh = true
			out, p := l.output(c)
			if p != nil {
				l.finalize(c, p)
				return
			}
			if out == nil {
				break
			}
			c.out, c.off = out, 0
		}
		if !l.writeOut(c) {
			return
		}
	}
	if c.outWatched {
		c.outWatched = false
		l.watch(c)
	}
}

// writeOut writes c.out from c.off. It reports true when all of it went
// out; false when the socket is full (EPOLLOUT is then watched) or the
// connection was finalized.
func (l *loop) writeOut(c *econn) bool {
	if c.pieces {
		return l.writePieces(c)
	}
	for c.off < len(c.out) {
		n, err := ignoringEINTR(func() (int, error) { return unix.Write(c.fd, c.out[c.off:]) })
		l.writes.Add(1)
		if n > 0 {
			c.off += n
			if !l.written(c, n) {
				return false
			}
		}
		if l.writeStopped(c, err, "write") {
			return false
		}
	}
	bufpool.Put(c.out)
	c.out, c.off = nil, 0
	return true
}

// written tells a WriteWatcher endpoint that n bytes of its output went
// out. It reports false when the endpoint panicked, which closed the
// connection.
func (l *loop) written(c *econn, n int) (ok bool) {
	w, watches := c.ep.(WriteWatcher)
	if !watches {
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			l.finalize(c, recovered(l.d.opts.Logger, "Written", c.RemoteAddr(), r))
			ok = false
		}
	}()
	w.Written(n)
	return true
}

// pieceOut is output in pieces, partly lent by the endpoint (PieceWriter).
type pieceOut struct {
	pieces [][]byte
	done   func()
}

// maxIovecs is how many pieces one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// writePieces is writeOut for output in pieces, written with writev.
func (l *loop) writePieces(c *econn) bool {
	v := l.pieces[c]
	for len(v.pieces) > 0 {
		iov := v.pieces[:min(len(v.pieces), maxIovecs)]
		n, err := ignoringEINTR(func() (int, error) { return unix.Writev(c.fd, iov) })
		l.writes.Add(1)
		wrote := n
		// Drop what was written, and the empty pieces it leads to.
		for len(v.pieces) > 0 && (n > 0 || len(v.pieces[0]) == 0) {
			k := max(min(n, len(v.pieces[0])), 0)
			v.pieces[0] = v.pieces[0][k:]
			n -= k
			if len(v.pieces[0]) == 0 {
				v.pieces = v.pieces[1:]
			}
		}
		if wrote > 0 && !l.written(c, wrote) {
			return false
		}
		if l.writeStopped(c, err, "writev") {
			return false
		}
	}
	l.endPieces(c)
	bufpool.Put(c.out)
	c.out, c.off = nil, 0
	return true
}

// writeStopped handles a write's error: on EAGAIN it watches EPOLLOUT, on
// any other it finalizes c. It reports whether writing must stop.
func (l *loop) writeStopped(c *econn, err error, call string) bool {
	switch {
	case err == unix.EAGAIN:
		if !c.outWatched {
			c.outWatched = true
			l.watch(c)
		}
		return true
	case err != nil:
		l.finalize(c, os.NewSyscallError(call, err))
		return true
	}
	return false
}

// endPieces gives the lent memory of c's output back to its endpoint.
func (l *loop) endPieces(c *econn) {
	v := l.pieces[c]
	delete(l.pieces, c)
	c.pieces = false
	defer func() {
		if r := recover(); r != nil {
			recovered(l.d.opts.Logger, "OutputPieces done", c.RemoteAddr(), r)
		}
	}()
	v.done()
}

// watch updates c's epoll interest to its phase and pending output.
func (l *loop) watch(c *econn) {
	var events uint32
	if !c.inputDone && !c.readPaused {
		events = unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if c.outWatched {
		events |= unix.EPOLLOUT
	}
	if events == c.events {
		return
	}
	c.events = events
	ev := unix.EpollEvent{Events: events, Fd: int32(c.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		l.finalize(c, os.NewSyscallError("epoll_ctl", err))
	}
}

// startClose begins the close sequence: flush everything, half-close,
// drain input until the peer closes, then close. Deadlines bound each step.
func (l *loop) startClose(c *econn) {
	if c.phase != phaseOpen {
		return
	}
	c.phase = phaseClosing
	c.readPaused = false   // the drain reads (continueClose watches input)
	c.closeReq.Store(true) // also when Driver.Close asked: Closed(nil), and Close is a no-op
	c.deadline = l.d.now() + l.d.opts.CloseTimeout
	l.closingQ.push(c, c.deadline)
	l.continueClose(c)
}

// continueClose writes output until Output has no more, then shuts the
// write side and starts the drain. It resumes on EPOLLOUT.
func (l *loop) continueClose(c *econn) {
	for {
		if c.out == nil {
			if l.d.now() > c.deadline {
				l.finalize(c, nil) // an endpoint that keeps producing
				return
			}
			out, p := l.output(c)
			if p != nil {
				l.finalize(c, p)
				return
			}
			if out == nil {
				break
			}
			c.out, c.off = out, 0
		}
		if !l.writeOut(c) {
			return
		}
	}
	if c.inputDone {
		// The peer already closed its side and has all our bytes in its
		// receive queue: nothing to drain.
		l.finalize(c, nil)
		return
	}
	unix.Shutdown(c.fd, unix.SHUT_WR)
	c.phase = phaseDraining
	c.outWatched = false
	l.watch(c)
	c.deadline = l.d.now() + l.d.opts.DrainTimeout
	l.drainQ.push(c, c.deadline)
}

// expire closes connections whose close or drain deadline passed.
func (l *loop) expire() {
	now := l.d.now()
	for _, q := range [...]struct {
		q     *deadlineQueue
		phase phase
	}{{&l.closingQ, phaseClosing}, {&l.drainQ, phaseDraining}} {
		for {
			c, at, ok := q.q.peek()
			if !ok || at > now {
				break
			}
			q.q.pop()
			// An entry is stale if the connection moved on.
			if c.phase == q.phase && c.deadline == at {
				l.finalize(c, nil)
			}
		}
	}
}

// finalize closes c's socket and calls Closed. The descriptor leaves the
// map before it is closed, so a new connection reusing the number cannot be
// mistaken for this one.
func (l *loop) finalize(c *econn, err error) {
	if c.phase == phaseClosed {
		return
	}
	c.phase = phaseClosed
	c.gone.Store(true)
	delete(l.conns, c.fd)
	unix.Close(c.fd) // also leaves the epoll set: the descriptor is never duplicated
	if c.pieces {
		l.endPieces(c)
	}
	if c.out != nil {
		bufpool.Put(c.out)
		c.out = nil
	}
	l.load.Add(-1)
	if c.closeReq.Load() {
		err = nil
	}
	if err != nil && l.d.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		l.d.opts.Logger.Debug("listener: connection ended", "remote", addrString(c.RemoteAddr()), "err", err)
	}
	l.closed(c, err)
}

func (l *loop) closed(c *econn, err error) {
	defer func() {
		if r := recover(); r != nil {
			recovered(l.d.opts.Logger, "Closed", c.RemoteAddr(), r)
		}
	}()
	c.ep.Closed(err)
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

type phase uint8

const (
	phaseOpen     phase = iota
	phaseClosing        // Close was called: writing the final output
	phaseDraining       // write side shut: discarding input until EOF
	phaseClosed
)

// econn is one connection of the event-loop driver: about 200 bytes while
// idle. The atomics are for Flush and Close from any goroutine; everything
// else belongs to the loop goroutine.
type econn struct {
	l  *loop
	ep Endpoint
	fd int

	// remote is kept; the local address is asked for when wanted (rarely):
	// an idle connection's every byte counts.
	remote netip.AddrPort

	flushQueued atomic.Bool // on the loop's flush queue
	closeReq    atomic.Bool // Close was called
	gone        atomic.Bool // finalized: Flush and Close do nothing

	phase      phase
	outWatched bool // EPOLLOUT is watched: c.out has an unwritten remainder
	inputDone  bool // the peer's EOF arrived while closing
	pieces     bool // c.out is written as l.pieces[c] (borrowed memory)
	readPaused bool // the endpoint (a Pauser) asked for no more input for now
	// busy: its last read was busyRead or more (a heavy sender), so a
	// connection that just became ready goes before it (loop.serve).
	busy     bool
	events   uint32
	out      []byte // output taken from the endpoint, written up to off
	off      int
	deadline time.Duration // of the current close phase, on the loop clock
}

// Flush implements Conn. Only the first call between two flushes by the
// loop takes the queue's lock; the rest are one atomic load.
func (c *econn) Flush() {
	if c.flushQueued.Load() || c.gone.Load() || !c.flushQueued.CompareAndSwap(false, true) {
		return
	}
	c.l.pushFlush(c)
}

// Close implements Conn.
func (c *econn) Close() {
	if c.gone.Load() || !c.closeReq.CompareAndSwap(false, true) {
		return
	}
	c.l.push(loopOp{kind: opClose, c: c})
}

// Resume implements Conn.
func (c *econn) Resume() {
	if c.gone.Load() || c.closeReq.Load() {
		return
	}
	c.l.push(loopOp{kind: opResume, c: c})
}

func (c *econn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// LocalAddr implements Conn: the listener's address, or when it listens on
// a wildcard address, the one the connection came to.
func (c *econn) LocalAddr() net.Addr {
	local := c.l.d.local
	if !local.IsValid() && !c.gone.Load() {
		if lsa, err := unix.Getsockname(c.fd); err == nil {
			local = addrPort(lsa)
		}
	}
	return net.TCPAddrFromAddrPort(local)
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(addr6(sa.Addr, sa.ZoneId), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// addr6 is an IPv6 socket address's IP: an IPv4-mapped one as IPv4, a
// scoped one with its zone.
func addr6(a [16]byte, scope uint32) netip.Addr {
	ip := netip.AddrFrom16(a).Unmap()
	if scope != 0 && ip.Is6() {
		ip = ip.WithZone(strconv.FormatUint(uint64(scope), 10))
	}
	return ip
}

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// deadlineQueue holds close deadlines in the order they were set. Each
// queue has one fixed timeout, so that order is also deadline order and a
// FIFO serves as a priority queue. Stale entries are skipped when popped.
type deadlineQueue struct {
	items []deadlineItem
	head  int
}

type deadlineItem struct {
	c  *econn
	at time.Duration
}

func (q *deadlineQueue) push(c *econn, at time.Duration) {
	if q.head > 64 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, deadlineItem{c, at})
}

func (q *deadlineQueue) peek() (*econn, time.Duration, bool) {
	if q.head == len(q.items) {
		return nil, 0, false
	}
	it := q.items[q.head]
	return it.c, it.at, true
}

func (q *deadlineQueue) next() (time.Duration, bool) {
	_, at, ok := q.peek()
	return at, ok
}

func (q *deadlineQueue) pop() {
	q.items[q.head] = deadlineItem{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}
