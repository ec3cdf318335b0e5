//go:build linux

package listener

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewEventLoopDriver returns the epoll driver for plain TCP.
//
// Opts.Loops event loops each own an epoll set, an eventfd to wake it, the
// connections assigned to it and one read buffer; an idle connection holds
// no goroutine and no buffer. One goroutine, the hub, runs the loops that
// are not busy, in the order they became ready, and parks on Go's poller
// when none is (eventloop_hub_linux.go says why); a busy loop gets a
// goroutine of its own until it is quiet again. The hub also accepts: a
// duplicate of ln's descriptor sits in its epoll set, and it takes new
// connections with accept4 (so sockets come out non-blocking, without a
// trip through package net) and hands each to the least loaded loop; Serve
// puts the descriptor there and backs off after accept errors. Everything a connection
// does (Data, Output, Closed, its close sequence) runs on whichever
// goroutine runs its loop, one at a time; Flush and Close from any goroutine queue work for that loop.
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
	d := &eventLoopDriver{ln: ln, lnFile: lnFile, h: h, opts: opts.withDefaults(true), epoch: time.Now(),
		lnfd: -1, acceptErr: make(chan error, 1), unlistened: make(chan struct{})}
	// (Not lnFile.Fd(): that would put the socket in blocking mode.)
	if rc, err := ln.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { setConnOptions(int(fd)) })
	}
	if la, ok := ln.Addr().(*net.TCPAddr); ok && !la.IP.IsUnspecified() {
		ap := la.AddrPort()
		d.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if d.hub, err = newHub(); err != nil {
		lnFile.Close()
		return nil, err
	}
	for i := range d.opts.Loops {
		l, err := newLoop(d, int32(i))
		if err == nil {
			d.loops = append(d.loops, l)
			err = d.add(l)
		}
		if err != nil {
			for _, l := range d.loops {
				l.closeFDs()
			}
			d.hub.close()
			lnFile.Close()
			return nil, err
		}
	}
	d.loopsLeft.Store(int32(len(d.loops)))
	d.running.Add(len(d.loops) + 1)
	go d.runHub()
	return d, nil
}

type eventLoopDriver struct {
	ln     *net.TCPListener
	lnFile *os.File // a duplicate of ln's descriptor, to accept on
	h      Handler
	opts   Options
	loops  []*loop
	hub    *hub
	epoch  time.Time      // loops measure deadlines from here (monotonic)
	local  netip.AddrPort // every connection's local address, unless ln is on a wildcard
	next   atomic.Uint32

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	running   sync.WaitGroup // one count per loop until it stops, one for the hub
	loopsLeft atomic.Int32   // loops not stopped yet
	hubDown   atomic.Bool    // the hub failed: a loop given back would wait for ever
	hubMu     sync.Mutex     // a leaf: guards hubClosed, and the hub's eventfd with it
	hubClosed bool
	fds       fdTable // every loop's connections, by descriptor

	// acceptMu guards lnfd: the hub accepts on it, Serve puts it in the
	// hub's set, closeListener takes it out before closing it. hubMu is
	// taken under it (docs/LOCKING.md).
	acceptMu sync.Mutex
	// lnfd is lnFile's descriptor once Serve put it in the hub's set; -1
	// before, -2 once closed.
	lnfd int
	// deferred: the listening socket has TCP_DEFER_ACCEPT, so an accepted
	// connection comes with its client's first bytes (register). Set with
	// lnfd.
	deferred   bool
	acceptErr  chan error    // the hub's accept errors, for Serve
	unlistened chan struct{} // closed by closeListener
}

func (d *eventLoopDriver) Addr() net.Addr { return d.ln.Addr() }

// Serve accepts connections until ctx is done, Close is called, or the
// listener fails. It returns nil in the first two cases.
//
// The hub accepts (acceptReady): the listening socket sits in its epoll set
// beside the loops, so a connection costs no goroutine wakeup of its own and
// goes to a pooled loop without a trip through that loop's queue and
// eventfd. Serve puts the socket there and then only waits, to back off
// after an accept error that may pass (descriptors run out) and to return
// one that will not.
func (d *eventLoopDriver) Serve(ctx context.Context) error {
	if d.closing.Load() {
		return nil
	}
	rc, err := d.lnFile.SyscallConn()
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	lnfd := -1
	rc.Control(func(fd uintptr) { lnfd = int(fd) })
	d.acceptMu.Lock()
	switch {
	case d.lnfd == -2 || d.closing.Load():
		d.acceptMu.Unlock()
		return nil // closed, or closing
	case d.lnfd >= 0:
		d.acceptMu.Unlock()
		return errors.New("listener: Serve called twice")
	}
	d.lnfd = lnfd
	if v, err := unix.GetsockoptInt(lnfd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); err == nil && v > 0 {
		d.deferred = true
	}
	err = d.armAccept(unix.EPOLL_CTL_ADD)
	d.acceptMu.Unlock()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { d.closeListener() })
	defer stop()

	var (
		backoff time.Duration
		lastErr time.Time
	)
	for {
		var aerr error
		select {
		case <-d.unlistened:
			return nil
		case aerr = <-d.acceptErr:
		}
		if ctx.Err() != nil || d.closing.Load() {
			return nil
		}
		aerr = os.NewSyscallError("accept4", aerr)
		if !temporaryAccept(aerr) {
			d.closeListener()
			return fmt.Errorf("listener: %w", aerr)
		}
		if time.Since(lastErr) > time.Second+backoff {
			backoff = 0 // accepting went on well in between
		}
		backoff = acceptBackoff(backoff)
		d.opts.Logger.Warn("listener: accept failed; retrying", "err", aerr, "backoff", backoff)
		if !pause(backoff, ctx.Done(), d.unlistened) {
			return nil
		}
		lastErr = time.Now()
		d.acceptMu.Lock()
		if d.lnfd >= 0 {
			err = d.armAccept(unix.EPOLL_CTL_MOD)
		}
		d.acceptMu.Unlock()
		if err != nil {
			d.closeListener()
			return err
		}
	}
}

// acceptEvents is how the hub's set watches the listening socket:
// level-triggered, so that the connections still queued after the hub took
// one bring it back.
const acceptEvents = unix.EPOLLIN

// armAccept puts the listening socket in the hub's set (op ADD), or has it
// reported again after a pause (MOD). The caller holds acceptMu.
func (d *eventLoopDriver) armAccept(op int) error {
	ev := unix.EpollEvent{Events: acceptEvents, Fd: hubAcceptTag}
	d.hubMu.Lock()
	defer d.hubMu.Unlock()
	if d.hubClosed {
		return errHubFailed
	}
	if err := rawEpollCtl(d.hub.epfd, op, d.lnfd, &ev); err != nil {
		return fmt.Errorf("listener: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// acceptReady is the hub's part: it accepts one connection and hands it
// to a loop (whose register reads its CONNECT and answers it at once, some
// 50 µs). One a turn, not a burst: the hub's next epoll_wait says whether
// more are queued, together with the loops that became ready meanwhile,
// so the clients already connected wait for one CONNECT at most; and the
// accept4 that would end a burst finding the queue empty, nearly one a
// connection when clients come one at a time, is not made. (Bursts of 64
// doubled those clients' p99 during a storm; bursts of 8 cost 6% more CPU
// a connection than one at a time, and 1.5 ms more p99: docs/BENCHMARKS.md.)
// An error other than one the next connection will not meet (a peer that
// gave up while queued) stops the hub's set from reporting the socket and
// goes to Serve, which decides.
func (d *eventLoopDriver) acceptReady() {
	d.acceptMu.Lock()
	for d.lnfd >= 0 {
		fd, remote, err := accept4(d.lnfd, &d.hub.rsa)
		if err == nil {
			d.acceptMu.Unlock()
			d.dispatch(fd, remote)
			return
		}
		if err == unix.EAGAIN {
			break
		}
		if err == unix.ECONNABORTED || err == unix.EINTR {
			continue
		}
		ev := unix.EpollEvent{Fd: hubAcceptTag} // no events: quiet until Serve re-arms it
		rawEpollCtl(d.hub.epfd, unix.EPOLL_CTL_MOD, d.lnfd, &ev)
		select {
		case d.acceptErr <- err:
		default:
		}
		break
	}
	d.acceptMu.Unlock()
}

// accept4 is unix.Accept4 without its two allocations per connection (a
// sockaddr buffer and the decoded address), which would linger as garbage
// among the connection's long-lived objects: the caller's buffer is
// reused and the address kept raw, as a value.
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, peer, error) {
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, peer{}, e
	}
	return int(r), peerOf(rsa), nil
}

// peerOf decodes an accepted socket's remote address.
func peerOf(rsa *unix.RawSockaddrAny) peer {
	var p peer
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p.ip = netip.AddrFrom4(a.Addr).As16() // IPv4-mapped, which addr6 unmaps
		p.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p.ip, p.scope = a.Addr, a.Scope_id
		p.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
	}
	return p
}

// peer is a connection's remote address as the kernel gave it. An econn
// keeps these fields, 22 bytes, where a netip.AddrPort takes 32 (its
// zone is a pointer).
type peer struct {
	ip    [16]byte // IPv6, or IPv4 in its IPv4-mapped form
	scope uint32   // the IPv6 zone (a link-local peer's interface), or 0
	port  uint16
}

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

// dispatch hands a freshly accepted socket to the least loaded loop. The
// hub calls it, and runs every pooled loop itself: such a loop's socket is
// registered at once. A loop that has a goroutine of its own (or is being
// given back by it) gets the socket through its queue.
func (d *eventLoopDriver) dispatch(fd int, remote peer) {
	c := &econn{fd: int32(fd), ip: remote.ip, scope: remote.scope, port: remote.port}
	l := d.pick()
	c.l = l
	l.load.Add(1)
	if l.pooled.Load() && l.runMu.TryLock() {
		if l.pooled.Load() {
			// Awake while it registers: the CONNECT read with it queues a
			// flush, which must not write the eventfd.
			l.sleeping.Store(false)
			l.register(c)
			if !l.settle() {
				d.hub.enqueue(l)
			}
			l.runMu.Unlock()
			return
		}
		l.runMu.Unlock()
	}
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

// closeListener takes the listening socket out of the hub's set, so that
// the hub cannot accept on its number once it is closed (and perhaps
// reused), then closes ln and its duplicate.
func (d *eventLoopDriver) closeListener() error {
	d.acceptMu.Lock()
	if d.lnfd >= 0 {
		d.hubMu.Lock() // a failed hub's set may be closed already
		if !d.hubClosed {
			rawEpollCtl(d.hub.epfd, unix.EPOLL_CTL_DEL, d.lnfd, nil)
		}
		d.hubMu.Unlock()
	}
	first := d.lnfd != -2
	d.lnfd = -2
	d.acceptMu.Unlock()
	if first {
		close(d.unlistened)
	}
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
