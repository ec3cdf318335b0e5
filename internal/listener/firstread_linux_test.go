//go:build linux

package listener

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// deferredKind is the event-loop driver over a listening socket that defers
// accepting until the client speaks (TCP_DEFER_ACCEPT), as the broker's do:
// a connection comes with its first bytes, which the loop reads before the
// socket joins its epoll set (loop.register).
var deferredKind = driverKind{"eventloop-deferred", func(ln *net.TCPListener, h Handler, opts Options) (Driver, error) {
	if err := DeferAccept(ln); err != nil {
		return nil, err
	}
	return NewEventLoopDriver(ln, h, opts)
}}

// offSet reports, from inside the connection's Data, whether it has not
// joined its loop's epoll set yet: its first bytes are being read at accept.
func offSet(c Conn) bool {
	ec, ok := c.(*econn)
	return ok && ec.is(sOffSet)
}

// echoFirst is a handler that echoes every Data and counts the first Data
// calls made before the socket joined the set, and the later ones made
// before it (which must not happen).
type echoFirst struct {
	*testHandler
	mu          sync.Mutex
	seen        map[*testEndpoint]bool
	firstOff    atomic.Int32
	laterOffSet atomic.Int32
}

func newEchoFirst(t *testing.T) *echoFirst {
	h := &echoFirst{testHandler: newTestHandler(t), seen: map[*testEndpoint]bool{}}
	h.onData = func(e *testEndpoint, b []byte) {
		h.mu.Lock()
		first := !h.seen[e]
		h.seen[e] = true
		h.mu.Unlock()
		switch off := offSet(e.conn); {
		case first && off:
			h.firstOff.Add(1)
		case !first && off:
			h.laterOffSet.Add(1)
		}
		e.write(b)
	}
	return h
}

// Each connection's first bytes are read as it is accepted, and everything
// after through the loop's set: a short first packet, then 256 KiB more,
// echoed whole, on 32 connections at once.
func TestReadFirstThenThroughTheSet(t *testing.T) {
	h := newEchoFirst(t)
	s := startServer(t, deferredKind, h.testHandler, Options{})
	const conns = 32
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := dial(t, s.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hello := []byte(fmt.Sprintf("hello %d", i))
			rest := pattern(256<<10, uint64(i))
			if _, err := c.Write(hello); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(hello))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
				errs <- fmt.Errorf("conn %d: first echo %q, %v", i, got, err)
				return
			}
			go c.Write(rest)
			got = make([]byte, len(rest))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, rest) {
				errs <- fmt.Errorf("conn %d: the 256 KiB came back wrong (%v)", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.firstOff.Load(); n != conns {
		t.Errorf("%d of %d connections had their first bytes read before joining the set", n, conns)
	}
	if n := h.laterOffSet.Load(); n != 0 {
		t.Errorf("%d later reads happened before the socket joined the set", n)
	}
}

// A first write larger than the loop's read buffer: what the first read
// leaves in the socket is read once it is in the set.
func TestReadFirstLeavesBytesInTheSocket(t *testing.T) {
	h := newEchoFirst(t)
	s := startServer(t, deferredKind, h.testHandler, Options{})
	c := dial(t, s.addr)
	want := pattern(4<<20, 7)
	go c.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	sameBytes(t, "echo", got, want)
	if h.firstOff.Load() != 1 {
		t.Error("the first bytes were not read as the connection was accepted")
	}
}

// An endpoint that closes the connection in its first Data (a refused
// CONNECT): the reply goes out, the socket never joins the set, and Closed
// comes once.
func TestReadFirstCloseInFirstData(t *testing.T) {
	h := newTestHandler(t)
	var off atomic.Bool
	h.onData = func(e *testEndpoint, b []byte) {
		off.Store(offSet(e.conn))
		e.write([]byte("refused"))
		e.conn.Close()
	}
	s := startServer(t, deferredKind, h, Options{})
	c := dial(t, s.addr)
	c.Write([]byte("connect"))
	if got := readAll(t, c, "client"); string(got) != "refused" {
		t.Errorf("client got %q, want refused", got)
	}
	e := receive(t, h.opened, "Open")
	if err := closedWith(t, e); err != nil {
		t.Errorf("Closed(%v) after Conn.Close, want nil", err)
	}
	if !off.Load() {
		t.Error("the first bytes were not read as the connection was accepted")
	}
}

// An endpoint that pauses in its first Data: the socket joins the set
// without input interest, nothing more is read until Resume, and then
// everything sent meanwhile arrives.
func TestReadFirstPauseInFirstData(t *testing.T) {
	h := &pausingHandler{testHandler: newTestHandler(t), opened: make(chan *pausingEndpoint, 1)}
	s := startServerWith(t, deferredKind, h, h.testHandler, Options{})
	c := dial(t, s.addr)
	c.Write([]byte("x"))
	e := receive(t, h.opened, "Open")
	receive(t, e.first, "the first Data")
	resumeAfterPause(t, e, fillUntilBlocked(t, c))
}

// A first reply larger than the client's receive buffer: the write stops
// before the socket joins the set, which it then joins watching for room,
// and the rest follows.
func TestReadFirstReplyWaitsForRoom(t *testing.T) {
	h := newTestHandler(t)
	want := pattern(8<<20, 3)
	var off atomic.Bool
	h.onData = func(e *testEndpoint, b []byte) {
		off.Store(offSet(e.conn))
		e.write(want)
	}
	s := startServer(t, deferredKind, h, Options{})
	c := dialRcvbuf(t, s.addr, 4<<10)
	c.Write([]byte("go"))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	sameBytes(t, "reply", got, want)
	if !off.Load() {
		t.Error("the first bytes were not read as the connection was accepted")
	}
}

// A client that sends nothing reaches the driver anyway (after the kernel's
// first SYN-ACK retransmission, about a second): the first read (usually)
// finds nothing, the socket joins the set, and what the client sends later
// is read from there.
func TestReadFirstSilentClient(t *testing.T) {
	h := newEchoFirst(t)
	s := startServer(t, deferredKind, h.testHandler, Options{})
	c := dial(t, s.addr)
	receive(t, h.opened, "Open of a silent connection")
	c.Write([]byte("late"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "late" {
		t.Fatalf("echo %q, %v; want late", got, err)
	}
	// Whether "late" came in time for the first read (Open runs just
	// before it) or after, through the set, both paths must echo it.
	if n := h.laterOffSet.Load(); n != 0 {
		t.Errorf("%d later reads happened before the socket joined the set", n)
	}
}
