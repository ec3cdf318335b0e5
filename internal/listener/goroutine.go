package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
)

// NewGoroutineDriver returns a driver for any net.Listener: TLS, WebSocket
// adapters, unix sockets, and TCP where the event loop is unavailable.
//
// Each connection has one goroutine that reads and calls Data. A writer
// goroutine exists only while output is pending: the first Flush after an
// idle spell starts it, later Flush calls only mark more work, and it exits
// once Output comes back empty. While a connection is quiet it holds no read
// buffer when its net.Conn exposes its descriptor (TCP, unix sockets), and a
// 512-byte one otherwise (TLS, adapters).
//
// Serve closes ln when its context is done; Close closes ln too.
func NewGoroutineDriver(ln net.Listener, h Handler, opts Options) Driver {
	return &goroutineDriver{
		ln:    ln,
		h:     h,
		opts:  opts.withDefaults(false),
		conns: make(map[*gconn]struct{}),
		done:  make(chan struct{}),
	}
}

type goroutineDriver struct {
	ln   net.Listener
	h    Handler
	opts Options

	// mu guards conns and closed. It is never held while calling into an
	// endpoint or a net.Conn.
	mu     sync.Mutex
	conns  map[*gconn]struct{}
	closed bool

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	live      sync.WaitGroup // one count per connection until Closed returned

	writes atomic.Uint64 // Write calls, for tests that check batching
}

func (d *goroutineDriver) Addr() net.Addr { return d.ln.Addr() }

// Serve accepts connections until ctx is done, Close is called, or the
// listener fails. It returns nil in the first two cases.
func (d *goroutineDriver) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { d.ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		nc, err := d.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || d.isClosed() {
				return nil
			}
			if !temporaryAccept(err) {
				return fmt.Errorf("listener: accept: %w", err)
			}
			backoff = acceptBackoff(backoff)
			d.opts.Logger.Warn("listener: accept failed; retrying", "err", err, "backoff", backoff)
			if !pause(backoff, ctx.Done(), d.done) {
				return nil
			}
			continue
		}
		backoff = 0
		d.start(nc)
	}
}

func (d *goroutineDriver) isClosed() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Close stops accepting, closes every connection as Conn.Close does, and
// returns once Closed has returned for each of them. It must not be called
// from inside an endpoint's method (it would wait for itself).
func (d *goroutineDriver) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.done)
		conns := make([]*gconn, 0, len(d.conns))
		for c := range d.conns {
			conns = append(conns, c)
		}
		d.mu.Unlock()
		if err := d.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			d.closeErr = err
		}
		for _, c := range conns {
			c.Close()
		}
	})
	d.live.Wait()
	return d.closeErr
}

func (d *goroutineDriver) start(nc net.Conn) {
	c := &gconn{d: d, nc: nc, writerDone: make(chan struct{}), resumed: make(chan struct{}, 1)}
	c.raw, c.readable = readinessWaiter(nc)
	// The opening goroutine owns the write side until Open returned, so a
	// Flush from inside Open cannot start a writer before ep is set.
	c.state.Store(wRunning)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		nc.Close()
		return
	}
	d.conns[c] = struct{}{}
	d.live.Add(1)
	d.mu.Unlock()
	go c.serve()
}

func (d *goroutineDriver) forget(c *gconn) {
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
}

// Writer states, in gconn.state.
const (
	wRunning uint32 = 1 << iota // a goroutine owns the write side
	wDirty                      // Flush was called while it ran: call Output again
	wDead                       // no writer may start any more
)

// gconn is one connection of the goroutine driver. Its life, top to bottom:
// serve opens the endpoint and runs the read loop; Flush starts writeLoop
// when needed; Close asks writeLoop for the final flush and the half-close;
// finish, on the read goroutine, closes the socket and calls Closed.
type gconn struct {
	d  *goroutineDriver
	nc net.Conn
	ep Endpoint

	// raw and readable wait until the socket is readable without holding a
	// buffer; nil when nc does not expose its descriptor.
	raw      syscall.RawConn
	readable func(fd uintptr) bool

	state      atomic.Uint32 // wRunning | wDirty | wDead
	writerDone chan struct{} // closed by the writer that stops with wDead set

	closeReq atomic.Bool  // Close was called (guards its one run)
	closeBy  atomic.Int64 // when the final flush must end, unix nanoseconds
	closing  atomic.Bool  // Close set its deadlines: discard input, flush, half-close
	shut     atomic.Bool  // the final flush is done and the write side shut
	failure  atomic.Pointer[error]
	// resumed wakes a read loop paused by its endpoint (Pauser).
	resumed chan struct{}
}

// serve is the connection's read goroutine.
func (c *gconn) serve() {
	c.ep = c.open()
	if c.ep == nil {
		c.state.Or(wDead)
		c.nc.Close()
		c.d.forget(c)
		c.d.live.Done()
		return
	}
	if c.release() {
		go c.writeLoop()
	}
	c.finish(c.readLoop())
}

func (c *gconn) open() (ep Endpoint) {
	defer func() {
		if r := recover(); r != nil {
			recovered(c.d.opts.Logger, "Open", c.nc.RemoteAddr(), r)
			ep = nil
		}
	}()
	ep = c.d.h.Open(c)
	if ep == nil {
		c.d.opts.Logger.Error("listener: Handler.Open returned no endpoint; closing the connection",
			"remote", addrString(c.nc.RemoteAddr()))
	}
	return ep
}

// readLoop reads until the connection fails, the peer closes, or the drain
// after Close ends, and returns that error.
func (c *gconn) readLoop() error {
	var buf []byte
	defer func() {
		if buf != nil {
			bufpool.Put(buf)
		}
	}()
	size := c.d.opts.ReadBufferSize
	if c.raw == nil {
		size = smallReadSize
	}
	for {
		if buf == nil {
			if c.raw != nil {
				// Park until bytes arrive, holding no buffer.
				if err := c.raw.Read(c.readable); err != nil {
					return err
				}
			}
			buf = bufpool.Get(size)
			buf = buf[:cap(buf)]
		}
		n, err := c.nc.Read(buf)
		if n > 0 && !c.closing.Load() && c.failure.Load() == nil {
			c.data(buf[:n])
			c.waitResumed()
		}
		if err != nil {
			return err
		}
		// Keep a big buffer only while reads fill what they get.
		switch {
		case c.raw != nil && n < len(buf):
			bufpool.Put(buf)
			buf = nil
		case c.raw == nil && n == len(buf) && size == smallReadSize:
			size = c.d.opts.ReadBufferSize
			bufpool.Put(buf)
			buf = nil
		case c.raw == nil && n <= smallReadSize && size != smallReadSize:
			size = smallReadSize
			bufpool.Put(buf)
			buf = nil
		}
	}
}

// waitResumed blocks while the endpoint keeps reading paused, until it
// resumes (then Data takes up what the endpoint set aside) or the
// connection closes or fails.
func (c *gconn) waitResumed() {
	pz, ok := c.ep.(Pauser)
	if !ok {
		return
	}
	resumed := false
	for !c.closing.Load() && c.failure.Load() == nil {
		if pz.ReadPaused() {
			<-c.resumed
			resumed = true
			continue
		}
		if !resumed {
			select {
			case <-c.resumed: // resumed before the pause was seen
			default:
				return
			}
		}
		resumed = false
		c.data(nil) // what the endpoint set aside; it may pause again
	}
}

// Resume implements Conn.
func (c *gconn) Resume() {
	select {
	case c.resumed <- struct{}{}:
	default: // a wake is already pending
	}
}

func (c *gconn) data(b []byte) {
	defer func() {
		if r := recover(); r != nil {
			c.fail(recovered(c.d.opts.Logger, "Data", c.nc.RemoteAddr(), r))
		}
	}()
	c.ep.Data(b)
}

func (c *gconn) output() (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			c.fail(recovered(c.d.opts.Logger, "Output", c.nc.RemoteAddr(), r))
			out = nil
		}
	}()
	out = c.ep.Output()
	if len(out) == 0 && out != nil {
		bufpool.Put(out) // ours now, even if empty
		out = nil
	}
	return out
}

// fail records the connection's first error and closes the socket, which
// ends the read loop and any write in progress.
func (c *gconn) fail(err error) {
	if c.failure.CompareAndSwap(nil, &err) {
		c.state.Or(wDead)
		c.nc.Close()
		c.Resume()
	}
}

// Flush implements Conn: lock-free, it starts a writer if none runs, or
// marks the running one dirty so it calls Output once more before it stops.
func (c *gconn) Flush() {
	for {
		s := c.state.Load()
		switch {
		case s&(wDead|wDirty) != 0:
			return
		case s&wRunning != 0:
			if c.state.CompareAndSwap(s, s|wDirty) {
				return
			}
		default:
			if c.state.CompareAndSwap(s, s|wRunning) {
				go c.writeLoop()
				return
			}
		}
	}
}

// release gives up the write side. It reports true, keeping ownership,
// when Flush was called meanwhile: the caller must write once more.
func (c *gconn) release() bool {
	for {
		s := c.state.Load()
		if s&wDirty != 0 && s&wDead == 0 {
			if c.state.CompareAndSwap(s, s&^wDirty) {
				return true
			}
			continue
		}
		if c.state.CompareAndSwap(s, s&^(wRunning|wDirty)) {
			if s&wDead != 0 {
				close(c.writerDone)
			}
			return false
		}
	}
}

// writeLoop runs while output is pending; after Close it also performs the
// half-close.
func (c *gconn) writeLoop() {
	for {
		if c.writeAll() && c.closing.Load() && !c.shut.Load() {
			c.shutdown()
		}
		if !c.release() {
			return
		}
	}
}

// writeAll writes what Output returns until it returns nothing. Only the
// owner of the write side calls it. It reports false if the connection failed.
func (c *gconn) writeAll() bool {
	for c.failure.Load() == nil {
		if c.closing.Load() && time.Now().UnixNano() > c.closeBy.Load() {
			// The peer reads, but the endpoint keeps producing after Close.
			c.fail(os.ErrDeadlineExceeded)
			return false
		}
		out := c.output()
		if len(out) == 0 {
			return c.failure.Load() == nil
		}
		n, err := c.nc.Write(out)
		c.d.writes.Add(1)
		bufpool.Put(out)
		if n > 0 {
			c.written(n)
		}
		if err != nil {
			c.fail(err)
		}
	}
	return false
}

// written tells a WriteWatcher endpoint that n bytes of its output went
// out.
func (c *gconn) written(n int) {
	w, ok := c.ep.(WriteWatcher)
	if !ok {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.fail(recovered(c.d.opts.Logger, "Written", c.nc.RemoteAddr(), r))
		}
	}()
	w.Written(n)
}

// shutdown ends the write side after the final flush and bounds the drain
// of input that follows; without half-close support it closes outright.
func (c *gconn) shutdown() {
	c.shut.Store(true)
	c.state.Or(wDead)
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.nc.SetReadDeadline(time.Now().Add(c.d.opts.DrainTimeout))
		return
	}
	c.nc.Close()
}

// Close implements Conn.
func (c *gconn) Close() {
	if !c.closeReq.CompareAndSwap(false, true) {
		return
	}
	now := time.Now()
	c.closeBy.Store(now.Add(c.d.opts.CloseTimeout).UnixNano())
	// Deadlines first: once closing is visible the writer may already set
	// the tighter drain deadline, which this must not override.
	c.nc.SetWriteDeadline(now.Add(c.d.opts.CloseTimeout))
	c.nc.SetReadDeadline(now.Add(c.d.opts.CloseTimeout + c.d.opts.DrainTimeout))
	c.closing.Store(true)
	c.Resume()
	c.Flush()
}

// finish runs on the read goroutine once reading ended: it waits for the
// writer, closes the socket and calls Closed.
func (c *gconn) finish(readErr error) {
	closing := c.closing.Load()
	if !closing {
		c.nc.Close() // a writer blocked in Write returns now
	}
	if old := c.state.Or(wDead); old&wRunning != 0 {
		<-c.writerDone
	}
	if closing && !c.shut.Load() && c.failure.Load() == nil {
		// Reading ended (the peer's EOF) before the writer got to the final
		// flush. No writer can start any more, so write it here.
		c.writeAll()
	}
	c.nc.Close()
	var err error
	switch {
	case c.closeReq.Load():
	case c.failure.Load() != nil:
		err = *c.failure.Load()
	default:
		err = readErr
	}
	c.d.forget(c)
	c.closed(err)
	c.d.live.Done()
}

func (c *gconn) closed(err error) {
	defer func() {
		if r := recover(); r != nil {
			recovered(c.d.opts.Logger, "Closed", c.nc.RemoteAddr(), r)
		}
	}()
	if err != nil && c.d.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		c.d.opts.Logger.Debug("listener: connection failed", "remote", addrString(c.nc.RemoteAddr()), "err", err)
	}
	c.ep.Closed(err)
}

func (c *gconn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// NetConn is the connection the driver serves (a *tls.Conn on TLS
// listeners), for endpoints that need more than bytes: see Underlying.
func (c *gconn) NetConn() net.Conn   { return c.nc }
func (c *gconn) LocalAddr() net.Addr { return c.nc.LocalAddr() }
