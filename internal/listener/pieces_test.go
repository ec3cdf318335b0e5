//go:build linux

package listener

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/petrelmq/petrel/internal/bufpool"
)

// pieceHandler opens pieceEndpoints: on the first input they send a few
// small parts from their buffer with two big lent ones between them, and
// close if asked.
type pieceHandler struct {
	lent   [][]byte
	closes bool
	opened chan *pieceEndpoint
}

func (h *pieceHandler) Open(c Conn) Endpoint {
	e := &pieceEndpoint{h: h, conn: c, done: make(chan struct{}), closed: make(chan error, 1)}
	h.opened <- e
	return e
}

// The parts sent, in order: small ones from the buffer, the lent ones
// between them.
var smallParts = [][]byte{[]byte("head"), []byte("middle"), []byte("tail")}

func (h *pieceHandler) want() []byte {
	var b []byte
	for i, s := range smallParts {
		b = append(b, s...)
		if i < len(h.lent) {
			b = append(b, h.lent[i]...)
		}
	}
	return b
}

type pieceEndpoint struct {
	h    *pieceHandler
	conn Conn

	mu      sync.Mutex
	started bool
	taken   bool

	doneCalls atomic.Int32
	done      chan struct{} // closed by the first done call
	closed    chan error
}

func (e *pieceEndpoint) Data(b []byte) {
	e.mu.Lock()
	first := !e.started
	e.started = true
	e.mu.Unlock()
	if first {
		e.conn.Flush()
		if e.h.closes {
			e.conn.Close()
		}
	}
}

// Output must not be called: the event-loop driver asks for pieces.
func (e *pieceEndpoint) Output() []byte { panic("Output called on a PieceWriter") }

func (e *pieceEndpoint) OutputPieces() (buf []byte, pieces []Piece, done func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started || e.taken {
		return nil, nil, nil
	}
	e.taken = true
	buf = bufpool.Get(64)
	var at []int
	for _, s := range smallParts {
		buf = append(buf, s...)
		at = append(at, len(buf))
	}
	prev := 0
	for i, end := range at {
		pieces = append(pieces, Piece{Bytes: buf[prev:end]})
		if i < len(e.h.lent) {
			pieces = append(pieces, Piece{Bytes: e.h.lent[i]})
		}
		prev = end
	}
	return buf, pieces, func() {
		if e.doneCalls.Add(1) == 1 {
			close(e.done)
		}
	}
}

func (e *pieceEndpoint) Closed(err error) { e.closed <- err }

// Output in pieces reaches the peer whole and in order, across writes the
// socket only takes in part (megabytes of lent memory), and its done runs
// once, after the last byte was written.
func TestPiecesWrittenInOrder(t *testing.T) {
	h := &pieceHandler{lent: [][]byte{pattern(3<<20, 1), pattern(1<<20+7, 2)}, closes: true, opened: make(chan *pieceEndpoint, 1)}
	addr := startPieceServer(t, h)
	c := dial(t, addr)
	c.Write([]byte("go"))
	e := receive(t, h.opened, "Open")
	got := readAll(t, c, "client")
	if !bytes.Equal(got, h.want()) {
		t.Fatalf("got %d bytes, want %d (equal: false)", len(got), len(h.want()))
	}
	receive(t, e.done, "done")
	receive(t, e.closed, "Closed")
	if n := e.doneCalls.Load(); n != 1 {
		t.Fatalf("done called %d times, want 1", n)
	}
}

// A connection that ends with pieces unwritten (the peer stopped reading
// and went away) gives the lent memory back all the same.
func TestPiecesGivenBackWhenConnectionEnds(t *testing.T) {
	h := &pieceHandler{lent: [][]byte{pattern(16<<20, 3)}, opened: make(chan *pieceEndpoint, 1)}
	addr := startPieceServer(t, h)
	c := dial(t, addr)
	c.Write([]byte("go"))
	e := receive(t, h.opened, "Open")
	var one [1]byte
	if _, err := c.Read(one[:]); err != nil { // output has started
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close() // a reset: the rest cannot be written
	receive(t, e.closed, "Closed")
	receive(t, e.done, "done")
	if n := e.doneCalls.Load(); n != 1 {
		t.Fatalf("done called %d times, want 1", n)
	}
}

func startPieceServer(t *testing.T, h *pieceHandler) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewEventLoopDriver(ln, h, Options{})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	t.Cleanup(func() {
		d.Close()
		receive(t, served, "Serve to return")
	})
	return ln.Addr().String()
}
