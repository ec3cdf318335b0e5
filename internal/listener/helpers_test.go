package listener

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
)

// Every behavioural test runs against both drivers.
type driverKind struct {
	name string
	new  func(ln *net.TCPListener, h Handler, opts Options) (Driver, error)
}

var driverKinds = []driverKind{
	{"goroutine", func(ln *net.TCPListener, h Handler, opts Options) (Driver, error) {
		return NewGoroutineDriver(ln, h, opts), nil
	}},
	{"eventloop", NewEventLoopDriver},
	// The goroutine driver once more, over connections that hide their
	// descriptor as TLS and adapters do: reads then wait in a small buffer.
	{"goroutine-opaque", func(ln *net.TCPListener, h Handler, opts Options) (Driver, error) {
		return NewGoroutineDriver(opaqueListener{ln}, h, opts), nil
	}},
}

type opaqueListener struct{ *net.TCPListener }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return opaqueConn{c, c}, nil
}

// opaqueConn offers net.Conn and half-close, but not syscall.Conn.
type opaqueConn struct {
	net.Conn
	tcp *net.TCPConn
}

func (c opaqueConn) CloseWrite() error { return c.tcp.CloseWrite() }

func forEachDriver(t *testing.T, test func(t *testing.T, dk driverKind)) {
	for _, dk := range driverKinds {
		t.Run(dk.name, func(t *testing.T) { test(t, dk) })
	}
}

// testTimeout bounds every wait in these tests, so a bug fails instead of hanging.
const testTimeout = 20 * time.Second

type server struct {
	d      Driver
	addr   string
	served chan error
}

// startServer serves h on 127.0.0.1 with a fresh listener. Cleanup closes
// the driver and then checks that every endpoint saw Closed exactly once.
func startServer(t testing.TB, dk driverKind, h *testHandler, opts Options) *server {
	t.Helper()
	return startServerWith(t, dk, h, h, opts)
}

// startServerWith is startServer for a handler that wraps th.
func startServerWith(t testing.TB, dk driverKind, h Handler, th *testHandler, opts Options) *server {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dk.new(ln, h, opts)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	s := &server{d: d, addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { s.served <- d.Serve(context.Background()) }()
	t.Cleanup(th.verify) // runs last
	t.Cleanup(func() {
		closed := make(chan error, 1)
		go func() { closed <- d.Close() }()
		if err := receive(t, closed, "Driver.Close"); err != nil {
			t.Errorf("Driver.Close: %v", err)
		}
		if err := receive(t, s.served, "Serve to return"); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// receive waits for one value from ch, failing the test after testTimeout.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// testHandler opens testEndpoints and remembers them.
type testHandler struct {
	t      testing.TB
	onOpen func(e *testEndpoint)
	onData func(e *testEndpoint, b []byte)
	// onOutput, if set, runs at the start of every Output call.
	onOutput func(e *testEndpoint)
	opened   chan *testEndpoint

	mu  sync.Mutex
	all []*testEndpoint
}

func newTestHandler(t testing.TB) *testHandler {
	return &testHandler{t: t, opened: make(chan *testEndpoint, 1024)}
}

func (h *testHandler) Open(c Conn) Endpoint {
	e := &testEndpoint{h: h, conn: c, closed: make(chan error, 1)}
	h.mu.Lock()
	h.all = append(h.all, e)
	h.mu.Unlock()
	if h.onOpen != nil {
		h.onOpen(e)
	}
	select {
	case h.opened <- e:
	default:
	}
	return e
}

func (h *testHandler) endpoints() []*testEndpoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*testEndpoint(nil), h.all...)
}

// verify checks, once the driver is closed, that every endpoint was closed once.
func (h *testHandler) verify() {
	for i, e := range h.endpoints() {
		if n := e.closedCalls.Load(); n != 1 {
			h.t.Errorf("endpoint %d: Closed called %d times after Driver.Close, want 1", i, n)
		}
	}
}

// testEndpoint is an engine stand-in that checks the driver keeps the
// Endpoint contract: Data never concurrent and never after Closed, Closed once.
type testEndpoint struct {
	h    *testHandler
	conn Conn
	role byte // set and read only inside Data

	inData      atomic.Bool
	closedCalls atomic.Int32
	closed      chan error // the first Closed's error

	mu   sync.Mutex
	out  []byte
	gone bool
}

// write appends b to the outbound buffer and asks for a flush, as the
// engine does for every packet.
func (e *testEndpoint) write(b []byte) {
	e.mu.Lock()
	if e.out == nil {
		e.out = bufpool.Get(len(b))
	}
	e.out = append(e.out, b...)
	e.mu.Unlock()
	e.conn.Flush()
}

func (e *testEndpoint) Data(b []byte) {
	if !e.inData.CompareAndSwap(false, true) {
		e.h.t.Error("Data called concurrently for one connection")
	}
	defer e.inData.Store(false)
	if e.closedCalls.Load() != 0 {
		e.h.t.Error("Data called after Closed")
	}
	if e.h.onData != nil {
		e.h.onData(e, b)
	}
}

func (e *testEndpoint) Output() []byte {
	if e.h.onOutput != nil {
		e.h.onOutput(e)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone {
		e.h.t.Error("Output called after Closed")
	}
	out := e.out
	e.out = nil
	return out
}

func (e *testEndpoint) Closed(err error) {
	if e.closedCalls.Add(1) != 1 {
		e.h.t.Error("Closed called more than once")
		return
	}
	e.mu.Lock()
	e.gone = true
	if e.out != nil {
		bufpool.Put(e.out)
		e.out = nil
	}
	e.mu.Unlock()
	e.closed <- err
}

// pattern returns n reproducible pseudo-random bytes.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeChunks writes b in pieces of varying size, so the reads on the
// other side split it at many places.
func writeChunks(c net.Conn, b []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(64<<10))
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// sameBytes reports where got first differs from want.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: got %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
}

// logBuffer collects a driver's log lines for tests that look at them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
