//go:build linux

package listener

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/pipebuf"
)

// Tests of the event loop's pipe paths: PieceWriter output (pipe
// pieces teed into a pipe of the driver's and spliced to the socket, or
// copied out when it has no pipe to spare) and SpliceReader input.

var eventLoopKind = driverKind{"eventloop", NewEventLoopDriver}

// srcPipe is a pipe of the endpoint's, filled with known bytes, that
// output sends from.
type srcPipe struct {
	p        *pipebuf.Pipe
	data     []byte
	released bool
}

// newSrcPipe fills a pipe of pool with data. Call it before starting the
// server: its cleanup then runs after the driver's, so no connection can
// still be sending from the pipe when it goes.
func newSrcPipe(t testing.TB, pool *pipebuf.Pool, data []byte) *srcPipe {
	t.Helper()
	p := pool.Get()
	if p == nil {
		t.Skip("no pipes here")
	}
	if n, err := p.Write(data); err != nil || n != len(data) {
		p.Release(-1)
		t.Fatalf("filling a source pipe: wrote %d of %d bytes, %v", n, len(data), err)
	}
	s := &srcPipe{p: p, data: data}
	t.Cleanup(s.release)
	return s
}

func (s *srcPipe) release() {
	if !s.released {
		s.released = true
		s.p.Release(len(s.data))
	}
}

// intact checks that the pipe still holds all its bytes, by CopyOut.
func (s *srcPipe) intact(t testing.TB, what string) {
	t.Helper()
	got := make([]byte, len(s.data))
	if err := s.p.CopyOut(got); err != nil {
		t.Errorf("%s: CopyOut of the source pipe: %v", what, err)
		return
	}
	if !bytes.Equal(got, s.data) {
		t.Errorf("%s: the source pipe no longer holds its bytes", what)
	}
}

// part is one part of a spliceEndpoint's output: bytes, or the first n
// bytes of src.
type part struct {
	b   []byte
	src *srcPipe
	n   int
}

func wantOf(parts []part) []byte {
	var w []byte
	for _, p := range parts {
		if p.src != nil {
			w = append(w, p.src.data[:p.n]...)
		} else {
			w = append(w, p.b...)
		}
	}
	return w
}

// spliceHandler opens spliceEndpoints, which send parts once, on their
// first input.
type spliceHandler struct {
	*testHandler
	parts  []part
	opened chan *spliceEndpoint
}

func newSpliceHandler(t testing.TB, parts []part, conns int) *spliceHandler {
	return &spliceHandler{testHandler: newTestHandler(t), parts: parts, opened: make(chan *spliceEndpoint, conns)}
}

func (h *spliceHandler) Open(c Conn) Endpoint {
	e := &spliceEndpoint{testEndpoint: h.testHandler.Open(c).(*testEndpoint), parts: h.parts,
		taken: make(chan struct{}), done: make(chan struct{})}
	h.opened <- e
	return e
}

// spliceEndpoint is a PieceWriter and a WriteWatcher: it checks that
// Written counts each byte once, and notes where the writes stopped.
type spliceEndpoint struct {
	*testEndpoint
	parts []part

	mu      sync.Mutex
	started bool
	output  bool
	total   int64
	pipeAt  [][2]int64 // where the pipe pieces are in the output: [start, end)
	isDone  bool

	written atomic.Int64
	calls   atomic.Int64 // Written calls
	// midPipe counts the Written calls that ended inside a pipe piece: a
	// splice the socket took only part of.
	midPipe   atomic.Int64
	doneCalls atomic.Int32
	taken     chan struct{} // closed when OutputPieces took the parts
	done      chan struct{} // closed by the first done call
}

func (e *spliceEndpoint) Data(b []byte) {
	e.testEndpoint.Data(b)
	e.mu.Lock()
	first := !e.started
	e.started = true
	e.mu.Unlock()
	if first {
		e.conn.Flush()
	}
}

func (e *spliceEndpoint) Output() []byte {
	e.h.t.Error("Output called on a PieceWriter")
	return nil
}

func (e *spliceEndpoint) OutputPieces() (buf []byte, pieces []Piece, done func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started || e.output {
		return nil, nil, nil
	}
	e.output = true
	// Small byte parts go in buf, big ones are lent; the pieces are made
	// once buf is complete (appending may move it).
	small := 0
	for _, p := range e.parts {
		if p.src == nil && len(p.b) <= 64 {
			small += len(p.b)
		}
	}
	if small > 0 {
		buf = bufpool.Get(small)
	}
	at := make([]int, len(e.parts))
	for i, p := range e.parts {
		if p.src == nil && len(p.b) <= 64 {
			at[i] = len(buf)
			buf = append(buf, p.b...)
		}
	}
	pieces = make([]Piece, 0, len(e.parts)) // the driver changes them: a fresh slice each time
	var off int64
	for i, p := range e.parts {
		switch {
		case p.src != nil:
			pieces = append(pieces, Piece{Pipe: p.src.p, N: p.n})
			e.pipeAt = append(e.pipeAt, [2]int64{off, off + int64(p.n)})
			off += int64(p.n)
		case len(p.b) <= 64:
			pieces = append(pieces, Piece{Bytes: buf[at[i] : at[i]+len(p.b)]})
			off += int64(len(p.b))
		default:
			pieces = append(pieces, Piece{Bytes: p.b})
			off += int64(len(p.b))
		}
	}
	e.total = off
	close(e.taken)
	return buf, pieces, func() {
		e.mu.Lock()
		e.isDone = true
		e.mu.Unlock()
		if e.doneCalls.Add(1) == 1 {
			close(e.done)
		}
	}
}

func (e *spliceEndpoint) Written(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls.Add(1)
	w := e.written.Add(int64(n))
	if n <= 0 || w > e.total {
		e.h.t.Errorf("Written(%d): %d bytes reported written of %d", n, w, e.total)
	}
	if e.isDone {
		e.h.t.Errorf("Written(%d) after done", n)
	}
	for _, r := range e.pipeAt {
		if r[0] < w && w < r[1] {
			e.midPipe.Add(1)
			break
		}
	}
}

// checkDone waits for done and checks it ran once and that Written
// counted the whole output.
func (e *spliceEndpoint) checkDone(t *testing.T, what string, total int) {
	t.Helper()
	receive(t, e.done, what+": done")
	if n := e.doneCalls.Load(); n != 1 {
		t.Errorf("%s: done called %d times, want 1", what, n)
	}
	if w := e.written.Load(); w != int64(total) {
		t.Errorf("%s: Written reported %d bytes, want %d", what, w, total)
	}
}

func startSpliceServer(t *testing.T, h *spliceHandler, opts Options) *server {
	t.Helper()
	return startServerWith(t, eventLoopKind, h, h.testHandler, opts)
}

// dialRcvbuf dials with a small receive buffer, so that a client that
// does not read fills the socket soon.
func dialRcvbuf(t testing.TB, addr string, size int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size) }); cerr != nil {
			return cerr
		}
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitStalled waits until the count is above zero and has not moved for
// 50ms (a writer that met a full socket and waits for EPOLLOUT), and
// returns it. Stopping too early only weakens the test that uses it.
func waitStalled(t testing.TB, what string, count *atomic.Int64) int64 {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	last, since := int64(-1), time.Now()
	for {
		v := count.Load()
		if v != last || v == 0 {
			last, since = v, time.Now()
		} else if time.Since(since) >= 50*time.Millisecond {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countFDs is how many descriptors the process has open.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// fdList describes the open descriptors, for a failure message.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, " %s->%s", e.Name(), target)
	}
	return b.String()
}

// waitFDs waits until no more than base descriptors are open.
func waitFDs(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		n := countFDs(t)
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d descriptors open, %d before: a leak?%s", n, base, fdList())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warmDevNull makes pipebuf open its /dev/null (kept for good, on the
// first Release that discards bytes), so that it does not count as a leak.
func warmDevNull(t testing.TB) {
	t.Helper()
	pool := pipebuf.NewPool(1)
	defer pool.Close()
	p := pool.Get()
	if p == nil {
		t.Skip("no pipes here")
	}
	p.Write([]byte{1})
	p.Release(1)
}

// Output of bytes and pipe pieces reaches every client byte for byte, for
// connections that send from the same two pipes at once (one of them
// several times in one output, once in part); a reader copying the pipes
// out meanwhile sees them whole, and after done they still hold all their
// bytes: the driver tees, it never takes.
func TestSplicePiecesFromSharedPipes(t *testing.T) {
	const nconns = 8
	pool := pipebuf.NewPool(64)
	t.Cleanup(pool.Close)
	a := newSrcPipe(t, pool, pattern(300<<10, 11))
	b := newSrcPipe(t, pool, pattern(100<<10+7, 12))
	parts := []part{
		{b: []byte("head")},
		{src: a, n: len(a.data)},
		{b: []byte("between")},
		{src: b, n: len(b.data)},
		{src: a, n: 1000},
		{b: pattern(50<<10, 13)}, // lent
		{src: b, n: len(b.data)},
		{src: a, n: len(a.data)},
		{b: []byte("tail")},
	}
	want := wantOf(parts)
	h := newSpliceHandler(t, parts, nconns)
	s := startSpliceServer(t, h, Options{Pipes: pool})

	stop := make(chan struct{})
	var copies atomic.Int64
	var copier sync.WaitGroup
	copier.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			a.intact(t, "during the output")
			b.intact(t, "during the output")
			copies.Add(1)
		}
	})

	var clients sync.WaitGroup
	for i := range nconns {
		c := dial(t, s.addr)
		clients.Go(func() {
			expectOutput(t, i, c, want)
		})
	}
	clients.Wait()
	close(stop)
	copier.Wait()
	for i := range nconns {
		e := receive(t, h.opened, "Open")
		e.checkDone(t, fmt.Sprintf("connection %d", i), len(want))
	}
	a.intact(t, "after done")
	b.intact(t, "after done")
	t.Logf("%d connections got %d bytes each; %d concurrent copies of the pipes; %d pipes live",
		nconns, len(want), copies.Load(), pool.Live())
}

// expectOutput is client i's part: it starts the output ("go") and reads
// it, which must be want.
func expectOutput(t *testing.T, i int, c *net.TCPConn, want []byte) {
	if _, err := c.Write([]byte("go")); err != nil {
		t.Errorf("client %d: %v", i, err)
		return
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Errorf("client %d: reading: %v", i, err)
		return
	}
	sameBytes(t, fmt.Sprintf("client %d", i), got, want)
}

// A peer that stops reading fills the socket in the middle of a pipe
// piece: the splice takes part of it, EPOLLOUT brings the rest, and the
// output arrives exact once the peer reads, with Written adding up to it.
func TestSplicePiecesToSlowReader(t *testing.T) {
	pool := pipebuf.NewPool(8)
	t.Cleanup(pool.Close)
	a := newSrcPipe(t, pool, pattern(300<<10, 21))
	b := newSrcPipe(t, pool, pattern(123<<10+5, 22))
	parts := []part{{b: []byte("h")}}
	for i := range 15 {
		parts = append(parts, part{src: a, n: len(a.data)}, part{b: []byte{'0' + byte(i%10)}}, part{src: b, n: len(b.data)})
	}
	want := wantOf(parts) // over 6 MiB: more than both sockets' buffers hold
	h := newSpliceHandler(t, parts, 1)
	s := startSpliceServer(t, h, Options{Pipes: pool})
	c := dialRcvbuf(t, s.addr, 64<<10)
	if _, err := c.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	e := receive(t, h.opened, "Open")
	receive(t, e.taken, "OutputPieces")
	stalled := waitStalled(t, "the writes to stall", &e.written)
	if stalled >= int64(len(want)) {
		t.Fatalf("all %d bytes were written before the client read: the test cannot see a full socket", stalled)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading: %v", err)
	}
	sameBytes(t, "output", got, want)
	e.checkDone(t, "output", len(want))
	if e.midPipe.Load() == 0 {
		t.Errorf("no write ended inside a pipe piece (%d Written calls): the partial splice was not exercised", e.calls.Load())
	}
	a.intact(t, "after done")
	b.intact(t, "after done")
	t.Logf("stalled at %d of %d bytes; %d Written calls, %d inside a pipe piece", stalled, len(want), e.calls.Load(), e.midPipe.Load())
}

// Without a pool of its own, or with one that has no pipe to spare, the
// driver copies pipe pieces out and writes them: the output is the same,
// the source pipes keep their bytes, and no descriptor is left behind.
func TestSplicePiecesWithoutDriverPipes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// pools returns the pool of the source pipes and the driver's.
		pools func(t *testing.T) (src, driver *pipebuf.Pool)
	}{
		{"no pool", func(t *testing.T) (*pipebuf.Pool, *pipebuf.Pool) {
			return pipebuf.NewPool(8), nil
		}},
		{"driver pool exhausted", func(t *testing.T) (*pipebuf.Pool, *pipebuf.Pool) {
			driver := pipebuf.NewPool(1)
			held := driver.Get()
			if held == nil {
				t.Skip("no pipes here")
			}
			t.Cleanup(func() { held.Release(0); driver.Close() })
			return pipebuf.NewPool(8), driver
		}},
		// One pool of two for both, both pipes taken by the sources: the
		// driver gets none, and CopyOut's scratch pipe is not the pool's.
		{"shared pool exhausted", func(t *testing.T) (*pipebuf.Pool, *pipebuf.Pool) {
			p := pipebuf.NewPool(2)
			return p, p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const nconns = 3
			warmDevNull(t)
			srcPool, driverPool := tc.pools(t)
			t.Cleanup(srcPool.Close)
			a := newSrcPipe(t, srcPool, pattern(200<<10, 31))
			b := newSrcPipe(t, srcPool, pattern(100<<10+3, 32))
			if driverPool != nil && driverPool.Get() != nil {
				t.Fatal("the driver's pool is not exhausted")
			}
			srcLive := srcPool.Live()
			parts := []part{
				{b: []byte("head")}, {src: a, n: len(a.data)}, {b: []byte("mid")},
				{src: b, n: len(b.data)}, {src: a, n: 4097}, {src: b, n: len(b.data)}, {b: []byte("tail")},
			}
			want := wantOf(parts)
			h := newSpliceHandler(t, parts, nconns)
			s := startSpliceServer(t, h, Options{Pipes: driverPool})
			base := countFDs(t)

			var clients sync.WaitGroup
			conns := make([]*net.TCPConn, nconns)
			for i := range nconns {
				c := dial(t, s.addr)
				conns[i] = c
				clients.Go(func() {
					expectOutput(t, i, c, want)
				})
			}
			clients.Wait()
			for i := range nconns {
				e := receive(t, h.opened, "Open")
				e.checkDone(t, fmt.Sprintf("connection %d", i), len(want))
				conns[i].Close()
				if err := closedWith(t, e.testEndpoint); !errors.Is(err, io.EOF) {
					t.Errorf("connection %d: Closed(%v), want io.EOF", i, err)
				}
			}
			if tc.name == "shared pool exhausted" && srcPool.Live() != srcLive {
				t.Errorf("pool: %d pipes live, %d before", srcPool.Live(), srcLive)
			}
			a.intact(t, "after done")
			b.intact(t, "after done")
			srcPool.Close() // CopyOut's scratch pipes wait in its free list
			waitFDs(t, base)
		})
	}
}

// A connection that ends while a pipe piece is half written (the peer
// does not read, then resets; or the endpoint closes and CloseTimeout
// expires) calls done once, before Closed, and gives the driver's pipe
// back emptied: the pool is as it was, and no descriptor is left open.
func TestSplicePieceClosedHalfWritten(t *testing.T) {
	for _, how := range []string{"peer resets", "Conn.Close"} {
		t.Run(how, func(t *testing.T) {
			warmDevNull(t)
			// Two pipes: the source's, and one for the driver.
			pool := pipebuf.NewPool(2)
			t.Cleanup(pool.Close)
			src := newSrcPipe(t, pool, pattern(300<<10, 41))
			parts := []part{{b: []byte("h")}}
			for range 60 { // 18 MiB: the sockets' buffers cannot take it all
				parts = append(parts, part{src: src, n: len(src.data)})
			}
			want := wantOf(parts)
			h := newSpliceHandler(t, parts, 1)
			s := startSpliceServer(t, h, Options{Pipes: pool, CloseTimeout: 200 * time.Millisecond, DrainTimeout: 100 * time.Millisecond})
			base := countFDs(t)
			liveBefore := pool.Live()

			c := dialRcvbuf(t, s.addr, 64<<10)
			if _, err := c.Write([]byte("go")); err != nil {
				t.Fatal(err)
			}
			e := receive(t, h.opened, "Open")
			receive(t, e.taken, "OutputPieces")
			at := waitStalled(t, "the writes to stall", &e.written)
			if at <= 1 || at >= int64(len(want)) {
				t.Fatalf("the writes stopped at %d of %d bytes, not inside a pipe piece", at, len(want))
			}
			if n := pool.Live(); n != 2 {
				t.Errorf("%d pipes live half-way through a pipe piece, want 2 (the driver's own)", n)
			}
			// The driver still holds a pipe: it cannot be had.
			if p := pool.Get(); p != nil {
				p.Release(0)
				t.Errorf("the pool gave a pipe while the driver should hold the last one")
			}

			var err error
			switch how {
			case "peer resets":
				c.SetLinger(0)
				c.Close()
				err = closedWith(t, e.testEndpoint)
				if err == nil {
					t.Errorf("Closed(nil) after a reset")
				}
			case "Conn.Close":
				e.conn.Close()
				if err = closedWith(t, e.testEndpoint); err != nil {
					t.Errorf("Closed(%v) after Conn.Close, want nil", err)
				}
				c.Close()
			}
			// done runs before Closed.
			if n := e.doneCalls.Load(); n != 1 {
				t.Fatalf("done called %d times when Closed(%v) ran, want 1", n, err)
			}
			if w := e.written.Load(); w >= int64(len(want)) {
				t.Errorf("all the output was written")
			}

			// The driver's pipe is back, and empty.
			p := pool.Get()
			if p == nil {
				t.Fatalf("the driver did not give its pipe back (%d live)", pool.Live())
			}
			if _, err := p.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			one := make([]byte, 1)
			if err := p.ReadFull(one); err != nil || one[0] != 'x' {
				t.Errorf("the driver's pipe came back holding bytes: read %q, %v", one, err)
			} else if err := p.ReadFull(one); err == nil {
				t.Errorf("the driver's pipe came back holding bytes")
			}
			p.Release(-1)
			if n := pool.Live(); n != liveBefore {
				t.Errorf("%d pipes live after the connection ended, %d before", n, liveBefore)
			}
			src.intact(t, "after done")
			pool.Close()
			if n := pool.Live(); n != liveBefore {
				t.Errorf("%d pipes live after Pool.Close, want %d (the source's)", n, liveBefore)
			}
			waitFDs(t, base)
			src.release()
			if n := pool.Live(); n != 0 {
				t.Errorf("%d pipes live after the last was released, want 0", n)
			}
			t.Logf("stopped at %d of %d bytes; Closed(%v)", at, len(want), err)
		})
	}
}

// A pipe piece longer than what its pipe holds is the endpoint's mistake:
// the connection ends with ErrShort, done runs once, and no pipe is kept.
func TestSplicePieceLongerThanItsPipe(t *testing.T) {
	pool := pipebuf.NewPool(4)
	t.Cleanup(pool.Close)
	src := newSrcPipe(t, pool, pattern(10<<10, 51))
	parts := []part{{b: []byte("head")}, {src: src, n: len(src.data) + 1}}
	h := newSpliceHandler(t, parts, 1)
	s := startSpliceServer(t, h, Options{Pipes: pool})
	c := dial(t, s.addr)
	c.Write([]byte("go"))
	e := receive(t, h.opened, "Open")
	err := closedWith(t, e.testEndpoint)
	if !errors.Is(err, pipebuf.ErrShort) {
		t.Errorf("Closed(%v), want pipebuf.ErrShort", err)
	}
	if n := e.doneCalls.Load(); n != 1 {
		t.Errorf("done called %d times, want 1", n)
	}
	io.Copy(io.Discard, c) // ends: the connection is gone
	src.intact(t, "after the failure")
	// One pipe may wait in the free list (CopyOut's scratch); none is held.
	for range 3 {
		if p := pool.Get(); p == nil {
			t.Errorf("the pool gave no pipe: the driver kept some (%d live)", pool.Live())
		} else {
			defer p.Release(0)
		}
	}
}

// Pipe pieces of no bytes and of one, empty byte pieces, and output with
// no buffer of its own.
func TestSplicePieceEdgeSizes(t *testing.T) {
	pool := pipebuf.NewPool(4)
	t.Cleanup(pool.Close)
	src := newSrcPipe(t, pool, pattern(8<<10, 52))
	parts := []part{{src: src, n: 0}, {b: []byte{}}, {src: src, n: 1}, {src: src, n: 0}, {src: src, n: 3}}
	want := wantOf(parts)
	h := newSpliceHandler(t, parts, 1)
	s := startSpliceServer(t, h, Options{Pipes: pool})
	c := dial(t, s.addr)
	c.Write([]byte("go"))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading: %v", err)
	}
	sameBytes(t, "output", got, want)
	e := receive(t, h.opened, "Open")
	e.checkDone(t, "output", len(want))
	src.intact(t, "after done")
}

// readHandler opens readEndpoints. A client sends a 4-byte length, waits
// for "ok", then sends that many payload bytes and a trailer; the endpoint
// asks for the payload in a pipe of pool (prefilled with prefill), and
// takes the trailer through Data.
type readHandler struct {
	*testHandler
	pool    *pipebuf.Pool
	prefill []byte
	trailer int
	opened  chan *readEndpoint
}

func (h *readHandler) Open(c Conn) Endpoint {
	e := &readEndpoint{testEndpoint: h.testHandler.Open(c).(*testEndpoint), rh: h, finished: make(chan struct{})}
	h.opened <- e
	return e
}

// readEndpoint is a SpliceReader (and DirectReader, for the rest of a
// payload once its pipe is full).
type readEndpoint struct {
	*testEndpoint
	rh *readHandler

	mu      sync.Mutex
	hdr     []byte
	pipe    *pipebuf.Pipe
	left    int   // payload bytes still to come
	inPipe  int   // payload bytes in the pipe
	spliced []int // DataSpliced's arguments
	full    int   // DataSpliced(0) calls
	// splicedAfterFull counts DataSpliced calls after one said 0.
	splicedAfterFull int
	mem              []byte // payload bytes read into memory
	rbuf             []byte
	after            []byte // bytes Data got after the payload
	asks             [2]int // ReadPipe and ReadBuffer calls
	finished         chan struct{}
}

// enter and leave check that the driver's calls do not overlap.
func (e *readEndpoint) enter(method string) {
	if !e.inData.CompareAndSwap(false, true) {
		e.h.t.Errorf("%s called during another input call", method)
	}
	if e.closedCalls.Load() != 0 {
		e.h.t.Errorf("%s called after Closed", method)
	}
}

func (e *readEndpoint) leave() { e.inData.Store(false) }

func (e *readEndpoint) Data(b []byte) {
	e.testEndpoint.Data(b)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.hdr) < 4 {
		k := min(4-len(e.hdr), len(b))
		e.hdr = append(e.hdr, b[:k]...)
		b = b[k:]
		if len(e.hdr) == 4 {
			e.left = int(binary.BigEndian.Uint32(e.hdr))
			e.pipe = e.rh.pool.Get()
			if e.pipe == nil {
				e.h.t.Error("no pipe for the payload")
				return
			}
			if n, err := e.pipe.Write(e.rh.prefill); err != nil || n != len(e.rh.prefill) {
				e.h.t.Errorf("prefilling the pipe: %d of %d bytes, %v", n, len(e.rh.prefill), err)
			}
			e.write([]byte("ok"))
		}
		if len(b) > 0 {
			e.h.t.Errorf("%d bytes came with the header, before the ack", len(b))
		}
		return
	}
	if e.left > 0 && len(b) > 0 {
		e.h.t.Errorf("Data got %d bytes of the payload (%d still to come), which the pipe or ReadBuffer was to take", len(b), e.left)
		return
	}
	e.after = append(e.after, b...)
	if len(e.after) == e.rh.trailer {
		close(e.finished)
	}
}

func (e *readEndpoint) ReadPipe() (*pipebuf.Pipe, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asks[0]++
	if e.pipe == nil || e.left == 0 || e.full > 0 {
		return nil, 0
	}
	return e.pipe, e.left
}

func (e *readEndpoint) DataSpliced(n int) {
	e.enter("DataSpliced")
	defer e.leave()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spliced = append(e.spliced, n)
	if e.full > 0 {
		e.splicedAfterFull++
	}
	if n == 0 {
		e.full++
		return
	}
	if n > e.left {
		e.h.t.Errorf("DataSpliced(%d) with %d bytes asked for", n, e.left)
	}
	e.left -= n
	e.inPipe += n
}

func (e *readEndpoint) ReadBuffer() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asks[1]++
	if e.full == 0 || e.left == 0 {
		return nil
	}
	if cap(e.rbuf) < e.left {
		e.rbuf = make([]byte, e.left)
	}
	return e.rbuf[:e.left]
}

func (e *readEndpoint) DataRead(b []byte) {
	e.enter("DataRead")
	defer e.leave()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(b) > e.left {
		e.h.t.Errorf("DataRead of %d bytes with %d asked for", len(b), e.left)
	}
	e.mem = append(e.mem, b...)
	e.left -= len(b)
}

// await waits for the payload and the trailer. When they do not come
// (the whole exchange takes milliseconds), it says what the endpoint got
// and how many bytes the driver left in the server's socket.
func (e *readEndpoint) await() error {
	const wait = testTimeout / 4
	select {
	case <-e.finished:
		return nil
	case <-time.After(wait):
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ec := e.conn.(*econn)
	inq, _ := unix.IoctlGetInt(int(ec.fd), unix.SIOCINQ)
	return fmt.Errorf("no progress for %v: DataSpliced%v, %d bytes read into memory, %d of the payload not taken, %d bytes of the trailer; "+
		"ReadPipe and ReadBuffer were called %d and %d times (once each for the header); the server's socket holds %d unread bytes, "+
		"which the driver does not come back for", wait, e.spliced, len(e.mem), e.left, len(e.after), e.asks[0], e.asks[1], inq)
}

var trailer = []byte("and then the next packet")

// startReadServer serves readEndpoints with loops event loops: with more
// than one, they take turns on the hub, whose epoll set is edge-triggered.
func startReadServer(t *testing.T, prefill []byte, loops int) (*readHandler, *server) {
	t.Helper()
	pool := pipebuf.NewPool(32)
	t.Cleanup(pool.Close)
	h := &readHandler{testHandler: newTestHandler(t), pool: pool, prefill: prefill, trailer: len(trailer), opened: make(chan *readEndpoint, 16)}
	s := startServerWith(t, eventLoopKind, h, h.testHandler, Options{Pipes: pool, Loops: loops})
	return h, s
}

// sendPayload sends the header, waits for the ack, and sends the payload
// in chunks of varying size, then the trailer; or both in one write.
func sendPayload(c net.Conn, payload []byte, seed uint64, oneWrite bool) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	ack := make([]byte, 2)
	if _, err := io.ReadFull(c, ack); err != nil || string(ack) != "ok" {
		return fmt.Errorf("ack %q, %v", ack, err)
	}
	if oneWrite {
		_, err := c.Write(append(append([]byte(nil), payload...), trailer...))
		return err
	}
	if err := writeChunks(c, payload, seed); err != nil {
		return err
	}
	_, err := c.Write(trailer)
	return err
}

// checkPipe reads the pipe: want, then nothing more.
func checkPipe(t *testing.T, what string, p *pipebuf.Pipe, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := p.ReadFull(got); err != nil {
		t.Errorf("%s: reading the pipe: %v", what, err)
		return
	}
	sameBytes(t, what, got, want)
	if err := p.ReadFull(make([]byte, 1)); err == nil {
		t.Errorf("%s: the pipe holds more bytes than it was given", what)
	}
}

// A SpliceReader gets exactly the bytes it asked for in its pipe, in
// DataSpliced calls that add up to them, however the peer cuts them; what
// follows comes through Data. Several connections at once, of several
// sizes.
func TestSpliceReaderTakesExactBytes(t *testing.T) {
	h, s := startReadServer(t, nil, 2)
	sizes := []int{1, 4096 + 3, 64<<10 + 1, 200 << 10, pipebuf.MaxBytes}
	var wg sync.WaitGroup
	payloads := make([][]byte, len(sizes))
	for i, n := range sizes {
		payloads[i] = pattern(n, uint64(60+i))
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		wg.Go(func() {
			if err := sendPayload(c, payloads[i], uint64(i), false); err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			if err := e.await(); err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			what := fmt.Sprintf("payload of %d bytes", n)
			sum := 0
			for _, k := range e.spliced {
				sum += k
			}
			if sum != n || e.full != 0 || len(e.mem) != 0 {
				t.Errorf("%s: DataSpliced%v (sum %d), %d bytes read into memory", what, e.spliced, sum, len(e.mem))
			}
			checkPipe(t, what, e.pipe, payloads[i])
			if !bytes.Equal(e.after, trailer) {
				t.Errorf("%s: Data got %q after the payload, want %q", what, e.after, trailer)
			}
			t.Logf("%s: %d DataSpliced calls", what, len(e.spliced))
			e.pipe.Release(0)
		})
	}
	wg.Wait()
}

// A SpliceReader's pipe that cannot take the bytes (full, or all but one
// page full of what was there before) gets DataSpliced(0) while the
// socket holds them; the endpoint then takes the rest into memory, and no
// byte is lost or doubled. The payload comes in chunks, or in one write:
// then every byte is in the socket before the first splice, and nothing
// new arrives after the pipe is found full. With one loop, the hub runs
// it while its (level-triggered) set has events; with two, a loop is run
// again only on a new edge or when its round set leftover.
func TestSpliceReaderPipeFull(t *testing.T) {
	type tcase struct {
		name     string
		prefill  int
		size     int
		oneWrite bool
		loops    int
	}
	var cases []tcase
	for _, loops := range []int{1, 2} {
		for _, tc := range []tcase{
			{"full, chunks", pipebuf.Size, 200 << 10, false, loops},
			{"one page free, chunks", pipebuf.Size - 4096, 200 << 10, false, loops},
			{"full, one write", pipebuf.Size, 60 << 10, true, loops},
			{"one page free, one write", pipebuf.Size - 4096, 60 << 10, true, loops},
		} {
			tc.name = fmt.Sprintf("%d loops, %s", loops, tc.name)
			cases = append(cases, tc)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefill := pattern(tc.prefill, 70)
			h, s := startReadServer(t, prefill, tc.loops)
			payload := pattern(tc.size, 71)
			c := dial(t, s.addr)
			e := receive(t, h.opened, "Open")
			if err := sendPayload(c, payload, 7, tc.oneWrite); err != nil {
				t.Fatal(err)
			}
			if err := e.await(); err != nil {
				t.Fatal(err)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.full == 0 {
				t.Fatalf("no DataSpliced(0) with a full pipe: DataSpliced%v", e.spliced)
			}
			if e.splicedAfterFull != 0 {
				t.Errorf("DataSpliced called %d times after the endpoint stopped asking: %v", e.splicedAfterFull, e.spliced)
			}
			if e.inPipe+len(e.mem) != len(payload) || e.left != 0 {
				t.Errorf("%d bytes in the pipe and %d in memory, %d missing; want %d", e.inPipe, len(e.mem), e.left, len(payload))
			}
			checkPipe(t, "prefill and payload", e.pipe, append(append([]byte(nil), prefill...), payload[:e.inPipe]...))
			sameBytes(t, "payload read into memory", e.mem, payload[e.inPipe:])
			if !bytes.Equal(e.after, trailer) {
				t.Errorf("Data got %q after the payload, want %q", e.after, trailer)
			}
			t.Logf("DataSpliced%v: %d bytes in the pipe, %d into memory", e.spliced, e.inPipe, len(e.mem))
			e.pipe.Release(0)
		})
	}
}
