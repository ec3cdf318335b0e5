// Package echotest runs the goroutine driver with an echo endpoint, for the
// tests of the transports it serves (TLS, WebSocket, unix sockets) that
// live outside package listener.
package echotest

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
)

// Timeout bounds every wait, so a bug fails a test instead of hanging it.
const Timeout = 20 * time.Second

// Bye is the input that makes an endpoint write Handler.Final and close.
const Bye = "bye"

// Handler opens an Endpoint per connection. Each echoes what it reads,
// except a read that starts with Bye, which writes Final and closes the
// connection from the server side (what follows Bye may arrive in the
// same read, and is discarded).
type Handler struct {
	// Final is written before a server-side close.
	Final []byte
	// OnOpen, if set, runs inside Open.
	OnOpen func(e *Endpoint)

	opened chan *Endpoint
	mu     sync.Mutex
	all    []*Endpoint
}

// NewHandler returns a handler whose final bytes are final.
func NewHandler(final []byte) *Handler {
	return &Handler{Final: final, opened: make(chan *Endpoint, 256)}
}

// Open implements listener.Handler.
func (h *Handler) Open(c listener.Conn) listener.Endpoint {
	e := &Endpoint{Conn: c, h: h, closed: make(chan error, 1)}
	h.mu.Lock()
	h.all = append(h.all, e)
	h.mu.Unlock()
	if h.OnOpen != nil {
		h.OnOpen(e)
	}
	select {
	case h.opened <- e:
	default: // nobody waits for this many
	}
	return e
}

// Next waits for the next connection to open.
func (h *Handler) Next(t testing.TB) *Endpoint {
	t.Helper()
	return Receive(t, h.opened, "an endpoint to open")
}

// Endpoint echoes; Closed's error is kept for WaitClosed.
type Endpoint struct {
	Conn listener.Conn
	h    *Handler

	closed chan error
	mu     sync.Mutex
	out    []byte
	gone   bool
	calls  int
}

// Write queues b and asks the driver to flush, as the broker's engine does.
func (e *Endpoint) Write(b []byte) {
	e.mu.Lock()
	if e.gone {
		e.mu.Unlock()
		return
	}
	if e.out == nil {
		e.out = bufpool.Get(len(b))
	}
	e.out = append(e.out, b...)
	e.mu.Unlock()
	e.Conn.Flush()
}

// Data implements listener.Endpoint.
func (e *Endpoint) Data(b []byte) {
	if bytes.HasPrefix(b, []byte(Bye)) {
		e.Write(e.h.Final)
		e.Conn.Close()
		return
	}
	e.Write(b)
}

// Output implements listener.Endpoint.
func (e *Endpoint) Output() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.out
	e.out = nil
	return out
}

// Closed implements listener.Endpoint.
func (e *Endpoint) Closed(err error) {
	e.mu.Lock()
	e.gone = true
	e.calls++
	calls := e.calls
	if e.out != nil {
		bufpool.Put(e.out)
		e.out = nil
	}
	e.mu.Unlock()
	if calls == 1 {
		e.closed <- err
	}
}

// WaitClosed waits for Closed and returns its error.
func (e *Endpoint) WaitClosed(t testing.TB) error {
	t.Helper()
	return Receive(t, e.closed, "Closed")
}

// Serve runs the goroutine driver on ln. Cleanup closes the driver, checks
// Serve returned nil, and that every endpoint was closed exactly once.
func Serve(t testing.TB, ln net.Listener, h *Handler, opts listener.Options) listener.Driver {
	t.Helper()
	d := listener.NewGoroutineDriver(ln, h, opts)
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	t.Cleanup(func() {
		closed := make(chan error, 1)
		go func() { closed <- d.Close() }()
		if err := Receive(t, closed, "Driver.Close"); err != nil {
			t.Errorf("Driver.Close: %v", err)
		}
		if err := Receive(t, served, "Serve to return"); err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, e := range h.all {
			e.mu.Lock()
			if e.calls != 1 {
				t.Errorf("endpoint %d: Closed called %d times, want 1", i, e.calls)
			}
			e.mu.Unlock()
		}
	})
	return d
}

// Receive waits for one value from ch, failing the test after Timeout.
func Receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Timeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Pattern returns n reproducible pseudo-random bytes.
func Pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Echo writes want to c in pieces of varying size while reading the echo,
// and reports how the echo differs from want.
func Echo(t *testing.T, c net.Conn, want []byte, seed uint64) {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(seed, 1))
		b := want
		for len(b) > 0 {
			n := min(len(b), 1+r.IntN(32<<10))
			if _, err := c.Write(b[:n]); err != nil {
				wrote <- err
				return
			}
			b = b[n:]
		}
		wrote <- nil
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := Receive(t, wrote, "the writes"); err != nil {
		t.Fatalf("writing: %v", err)
	}
	SameBytes(t, "echo", got, want)
}

// SameBytes reports where got first differs from want.
func SameBytes(t testing.TB, what string, got, want []byte) {
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
