//go:build linux

package listener

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/pipebuf"
)

func (l *loop) handle(ev unix.EpollEvent) {
	fd := int(ev.Fd)
	if fd == l.wakefd {
		rawRead(l.wakefd, l.wakeBuf[:])
		return
	}
	c := l.conn(fd)
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
		// The peer's end came with the bytes this read takes: it is left
		// for the next read, and nothing new will announce it.
		if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			l.leftover = true
		}
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
	if sr, ok := c.ep.(SpliceReader); ok && c.phase == phaseOpen {
		if pp, want := sr.ReadPipe(); pp != nil && want > 0 {
			l.readPipe(c, sr, pp, want)
			return
		}
	}
	buf := l.buf
	dr, direct := c.ep.(DirectReader)
	if direct && c.phase == phaseOpen {
		if b := dr.ReadBuffer(); len(b) > 0 {
			buf = b
		} else {
			direct = false
		}
	}
	n, err := rawRead(int(c.fd), buf)
	busy := n >= busyRead
	c.mark(sBusy, busy)
	l.heavy = l.heavy || busy
	// A read that filled its buffer may have left bytes in the socket,
	// which no new event will announce to the hub.
	l.leftover = l.leftover || n == len(buf)
	switch {
	case err == unix.EAGAIN:
	case err != nil:
		l.finalize(c, os.NewSyscallError("read", err))
	case n == 0:
		l.readEOF(c)
	case c.phase == phaseOpen && !c.has(cCloseReq):
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

// readPipe is readable for an endpoint that wants the next bytes in a
// pipe: they are spliced from the socket, never copied.
func (l *loop) readPipe(c *econn, sr SpliceReader, pp *pipebuf.Pipe, want int) {
	n, err := pp.SpliceFrom(int(c.fd), want)
	busy := n >= busyRead
	c.mark(sBusy, busy)
	l.heavy = l.heavy || busy
	// A splice that took less than asked may have stopped at a full pipe
	// rather than an empty socket: the bytes left are announced by no new
	// event, so the loop must look again, as after a read that filled its
	// buffer.
	l.leftover = l.leftover || n > 0
	switch {
	case err == unix.EAGAIN:
		// The socket is empty, or the pipe full: only the second is the
		// endpoint's to know (it then reads the rest into memory, in a
		// round the loop is told to come back for).
		if !socketHasBytes(int(c.fd)) {
			return
		}
		l.leftover = true
		n = 0
	case err != nil:
		l.finalize(c, os.NewSyscallError("splice", err))
		return
	case n == 0:
		l.readEOF(c)
		return
	}
	if c.phase != phaseOpen || c.has(cCloseReq) {
		return // discarded, as readable's bytes are after Close
	}
	if p := l.dataSpliced(c, sr, n); p != nil {
		l.finalize(c, p)
		return
	}
	l.pauseIfAsked(c)
}

// socketHasBytes reports whether a socket's receive queue holds bytes.
func socketHasBytes(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	return err == nil && n > 0
}

func (l *loop) dataSpliced(c *econn, sr SpliceReader, n int) (p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			p = recovered(l.d.opts.Logger, "DataSpliced", c.RemoteAddr(), r)
		}
	}()
	sr.DataSpliced(n)
	return nil
}

// resume reads from a paused connection again once its endpoint allows,
// and hands it what it set aside. The endpoint is asked here, on the loop,
// so a pause decided after the Resume call wins.
func (l *loop) resume(c *econn) {
	if c.phase != phaseOpen || c.ep.(Pauser).ReadPaused() {
		return
	}
	if c.is(sReadPaused) {
		c.mark(sReadPaused, false)
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
		c.mark(sReadPaused, true)
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
	c.mark(sInputDone, true)
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
		var pieces []Piece
		var done func()
		out, pieces, done = pw.OutputPieces()
		if pieces != nil {
			if l.pieces == nil {
				l.pieces = make(map[*econn]*pieceOut)
			}
			l.pieces[c] = &pieceOut{pieces: pieces, done: done}
			c.mark(sPieces, true)
			if out == nil {
				out = bufpool.Get(0) // c's output marks that output is pending
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

// register opens c's endpoint and then puts its socket in the loop's epoll
// set, watching what its state asks for by then (watch only records while
// it is out, sOffSet). A connection the listener deferred until its
// client's first bytes came (TCP_DEFER_ACCEPT) is read first, and what
// they asked for (a CONNACK) written: it joins with nothing to read, so its
// loop is not woken again for bytes already taken, which saves a reconnect
// storm a loop round and two epoll_waits a connection.
func (l *loop) register(c *econn) {
	if l.shutting {
		l.drop(c)
		return
	}
	c.mark(sEpollIn|sOffSet, true)
	l.d.fds.set(c)
	l.nconns++
	c.ep = l.open(c)
	if c.ep == nil {
		l.d.fds.clear(c)
		l.nconns--
		l.drop(c)
		return
	}
	if l.d.deferred {
		l.readable(c)
		l.runFlushes()
		if c.phase == phaseClosed {
			return
		}
	}
	c.mark(sOffSet, false)
	ev := unix.EpollEvent{Events: c.interest(), Fd: c.fd}
	if err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &ev); err != nil {
		err = os.NewSyscallError("epoll_ctl", err)
		l.d.opts.Logger.Error("listener: cannot watch a connection", "err", err)
		l.finalize(c, err)
	}
}

// drop closes a connection that never opened, and takes back the load
// dispatch counted for it.
func (l *loop) drop(c *econn) {
	l.load.Add(-1)
	c.phase = phaseClosed
	c.set(cGone)
	unix.Close(int(c.fd))
}

// interest is the epoll events c's state watches.
func (c *econn) interest() uint32 {
	var events uint32
	if c.is(sEpollIn) {
		events = unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if c.is(sEpollOut) {
		events |= unix.EPOLLOUT
	}
	return events
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
		if !c.hasOut() {
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
			c.setOut(out)
		}
		if !l.writeOut(c) {
			return
		}
	}
	if c.is(sOutWatched) {
		c.mark(sOutWatched, false)
		l.watch(c)
	}
}

// writeOut writes c's output from c.off. It reports true when all of it
// went out; false when the socket is full (EPOLLOUT is then watched) or the
// connection was finalized.
func (l *loop) writeOut(c *econn) bool {
	if c.is(sPieces) {
		return l.writePieces(c)
	}
	for int(c.off) < c.ob.Len() {
		n, err := rawWrite(int(c.fd), c.out()[c.off:])
		l.writes.Add(1)
		if n > 0 {
			c.off += int32(n)
			if !l.written(c, n) {
				return false
			}
		}
		if l.writeStopped(c, err, "write") {
			return false
		}
	}
	c.dropOut()
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
	pieces []Piece
	done   func()
	// out holds the copy of the first piece's pipe bytes that is being
	// spliced to the socket, left of them still in it.
	out  *pipebuf.Pipe
	left int
}

// maxIovecs is how many pieces one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// writePieces is writeOut for output in pieces, written with writev.
func (l *loop) writePieces(c *econn) bool {
	v := l.pieces[c]
	for len(v.pieces) > 0 {
		if v.pieces[0].Pipe != nil {
			if !l.writePipe(c, v) {
				return false
			}
			continue
		}
		k := 1
		for k < len(v.pieces) && k < maxIovecs && v.pieces[k].Pipe == nil {
			k++
		}
		n, err := rawWritev(int(c.fd), v.pieces[:k], &l.iovecs)
		l.writes.Add(1)
		wrote := n
		// Drop what was written, and the empty pieces it leads to.
		for len(v.pieces) > 0 && v.pieces[0].Pipe == nil && (n > 0 || len(v.pieces[0].Bytes) == 0) {
			k := max(min(n, len(v.pieces[0].Bytes)), 0)
			v.pieces[0].Bytes = v.pieces[0].Bytes[k:]
			n -= k
			if len(v.pieces[0].Bytes) == 0 {
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
	c.dropOut()
	return true
}

// writePipe writes the pipe piece that v starts with: its bytes are teed
// into a pipe of the loop's and spliced from there to the socket, the
// piece's own pipe left as it was for whoever else sends it. It reports
// false when writing must stop (writeStopped).
func (l *loop) writePipe(c *econn, v *pieceOut) bool {
	p := &v.pieces[0]
	if v.out == nil {
		out := l.d.opts.Pipes.Get()
		if out == nil || p.Pipe.TeeTo(out, p.N) != nil {
			if out != nil {
				out.Release(-1) // a failed tee may have left something
			}
			// No pipe to spare: the bytes are copied out and written.
			b := make([]byte, p.N)
			if err := p.Pipe.CopyOut(b); err != nil {
				l.finalize(c, err)
				return false
			}
			*p = Piece{Bytes: b}
			return true
		}
		v.out, v.left = out, p.N
	}
	n, err := v.out.SpliceTo(int(c.fd), v.left)
	l.writes.Add(1)
	if n > 0 {
		v.left -= n
		if !l.written(c, n) {
			return false
		}
	}
	if v.left == 0 {
		v.out.Release(0)
		v.out = nil
		v.pieces = v.pieces[1:]
		return true
	}
	if n == 0 && err == nil {
		err = io.ErrShortWrite // a socket that takes nothing without EAGAIN
	}
	return !l.writeStopped(c, err, "splice")
}

// writeStopped handles a write's error: on EAGAIN it watches EPOLLOUT, on
// any other it finalizes c. It reports whether writing must stop.
func (l *loop) writeStopped(c *econn, err error, call string) bool {
	switch {
	case err == unix.EAGAIN:
		if !c.is(sOutWatched) {
			c.mark(sOutWatched, true)
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
	c.mark(sPieces, false)
	if v.out != nil {
		v.out.Release(v.left)
		v.out = nil
	}
	defer func() {
		if r := recover(); r != nil {
			recovered(l.d.opts.Logger, "OutputPieces done", c.RemoteAddr(), r)
		}
	}()
	v.done()
}

// watch updates c's epoll interest to its phase and pending output.
func (l *loop) watch(c *econn) {
	var want connState
	if !c.is(sInputDone | sReadPaused) {
		want = sEpollIn
	}
	if c.is(sOutWatched) {
		want |= sEpollOut
	}
	if want == c.state&(sEpollIn|sEpollOut) {
		return
	}
	c.state = c.state&^(sEpollIn|sEpollOut) | want
	if c.is(sOffSet) {
		return // register adds it with this interest
	}
	ev := unix.EpollEvent{Events: c.interest(), Fd: c.fd}
	if err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev); err != nil {
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
	c.mark(sReadPaused, false) // the drain reads (continueClose watches input)
	c.set(cCloseReq)           // also when Driver.Close asked: Closed(nil), and Close is a no-op
	now := l.d.now()
	c.closeBy = msCeil(now + min(l.d.opts.CloseTimeout, maxCloseBy))
	l.closingQ.push(c, now+l.d.opts.CloseTimeout)
	l.continueClose(c)
}

// continueClose writes output until Output has no more, then shuts the
// write side and starts the drain. It resumes on EPOLLOUT.
func (l *loop) continueClose(c *econn) {
	for {
		if !c.hasOut() {
			if int32(msFloor(l.d.now())-c.closeBy) >= 0 {
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
			c.setOut(out)
		}
		if !l.writeOut(c) {
			return
		}
	}
	if c.is(sInputDone) {
		// The peer already closed its side and has all our bytes in its
		// receive queue: nothing to drain.
		l.finalize(c, nil)
		return
	}
	unix.Shutdown(int(c.fd), unix.SHUT_WR)
	c.phase = phaseDraining
	c.mark(sOutWatched, false)
	l.watch(c)
	l.drainQ.push(c, l.d.now()+l.d.opts.DrainTimeout)
}

// maxCloseBy bounds the CloseTimeout that econn.closeBy holds: a wrapping
// compare is right while the two times are less than 2^31 ms (24 days)
// apart, and half that leaves a margin. A longer CloseTimeout still holds
// through the closing queue's exact deadline, which expire enforces.
const maxCloseBy = (1<<31 - 1) * time.Millisecond / 2

// msFloor and msCeil are a time on the loop clock in whole milliseconds,
// rounded down and up, wrapping every 49 days (econn.closeBy).
func msFloor(t time.Duration) uint32 { return uint32(t / time.Millisecond) }
func msCeil(t time.Duration) uint32  { return msFloor(t + time.Millisecond - 1) }

// finalize closes c's socket and calls Closed. The descriptor leaves the
// table before it is closed, so a new connection reusing the number cannot be
// mistaken for this one.
func (l *loop) finalize(c *econn, err error) {
	if c.phase == phaseClosed {
		return
	}
	c.phase = phaseClosed
	c.set(cGone)
	l.d.fds.clear(c)
	l.nconns--
	unix.Close(int(c.fd)) // also leaves the epoll set: the descriptor is never duplicated
	if c.is(sPieces) {
		l.endPieces(c)
	}
	if c.hasOut() {
		c.dropOut()
	}
	l.load.Add(-1)
	if c.has(cCloseReq) {
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

type phase uint8

const (
	phaseOpen     phase = iota
	phaseClosing        // Close was called: writing the final output
	phaseDraining       // write side shut: discarding input until EOF
	phaseClosed
)

// econn is one connection of the event-loop driver, and all it keeps of an
// idle one besides its fdTable entry. The atomics are for Flush and Close
// from any goroutine; everything else belongs to the loop goroutine.
type econn struct {
	l  *loop
	ep Endpoint

	// The remote address is kept (a peer's fields, flat so that they pack
	// with the small fields below); the local address is asked for when
	// wanted (rarely): an idle connection's every byte counts.
	ip [16]byte

	// ob is the output taken from the endpoint (c.out()); off is how much
	// of it is written.
	ob bufpool.Slim

	// The small fields sit together, so that an econn fits 80 bytes
	// (TestEconnSizeClass).
	fd  int32
	off int32
	// flags holds cFlushQueued (on the loop's flush queue), cCloseReq
	// (Close was called) and cGone (finalized: Flush and Close do nothing).
	flags atomic.Uint32
	// closeBy is the final flush's deadline (startClose), in milliseconds
	// on the loop clock, compared as wrapping: half a time.Duration. It
	// stops a continueClose that an endpoint keeps feeding while the
	// socket takes it all; the closing queue holds the exact deadline,
	// for the rest.
	closeBy uint32
	scope   uint32 // the remote address's rest (peer)
	port    uint16
	phase   phase
	state   connState
}

// connState holds an econn's flags that only its loop reads and sets, in
// one byte where bools took one each.
type connState uint8

const (
	sEpollIn    connState = 1 << iota // the descriptor is registered for EPOLLIN|EPOLLRDHUP
	sEpollOut                         // and for EPOLLOUT
	sOutWatched                       // EPOLLOUT is wanted: c's output has an unwritten remainder
	sInputDone                        // the peer's EOF arrived while closing
	sPieces                           // c's output is written as l.pieces[c] (borrowed memory)
	sReadPaused                       // the endpoint (a Pauser) asked for no more input for now
	// sBusy: its last read was busyRead or more (a heavy sender), so a
	// connection that just became ready goes before it (loop.serve).
	sBusy
	sOffSet // not in the epoll set yet (register)
)

// is reports whether any of the state flags s is set.
func (c *econn) is(s connState) bool { return c.state&s != 0 }

// mark sets or clears the state flag s.
func (c *econn) mark(s connState, on bool) {
	if on {
		c.state |= s
	} else {
		c.state &^= s
	}
}

// hasOut reports whether c holds output taken from its endpoint, written
// or not yet.
func (c *econn) hasOut() bool { return !c.ob.IsNil() }

// out is the output c holds, as Output returned it.
func (c *econn) out() []byte { return c.ob.Bytes() }

// setOut makes b, non-nil, the output c holds, none of it written yet.
func (c *econn) setOut(b []byte) {
	c.ob.Set(b)
	c.off = 0
}

// dropOut gives c's output back to bufpool.
func (c *econn) dropOut() {
	bufpool.Put(c.out())
	c.ob.Set(nil)
	c.off = 0
}

// econn.flags.
const (
	cFlushQueued = 1 << iota
	cCloseReq
	cGone
)

// has reports whether any of the flags f is set.
func (c *econn) has(f uint32) bool { return c.flags.Load()&f != 0 }

// set sets the flag f and reports whether it was set already.
func (c *econn) set(f uint32) (was bool) { return c.flags.Or(f)&f != 0 }

// unset clears the flag f.
func (c *econn) unset(f uint32) { c.flags.And(^uint32(f)) }

// Flush implements Conn. Only the first call between two flushes by the
// loop takes the queue's lock; the rest are one atomic load.
func (c *econn) Flush() {
	if c.has(cFlushQueued|cGone) || c.set(cFlushQueued) {
		return
	}
	c.l.pushFlush(c)
}

// Close implements Conn.
func (c *econn) Close() {
	if c.has(cGone) || c.set(cCloseReq) {
		return
	}
	c.l.push(loopOp{kind: opClose, c: c})
}

// Resume implements Conn.
func (c *econn) Resume() {
	if c.has(cGone | cCloseReq) {
		return
	}
	c.l.push(loopOp{kind: opResume, c: c})
}

// RemoteAddr implements Conn. It is decoded at each call, which is rare
// (logs, authentication), from the raw form that an idle connection keeps.
func (c *econn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr6(c.ip, c.scope), c.port))
}

// LocalAddr implements Conn: the listener's address, or when it listens on
// a wildcard address, the one the connection came to.
func (c *econn) LocalAddr() net.Addr {
	local := c.l.d.local
	if !local.IsValid() && !c.has(cGone) {
		if lsa, err := unix.Getsockname(int(c.fd)); err == nil {
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
