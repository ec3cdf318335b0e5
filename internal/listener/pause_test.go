package listener

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// pausingHandler opens endpoints that pause reading after their first
// Data, as the broker does when a publisher's messages have nowhere to go.
type pausingHandler struct {
	*testHandler
	opened chan *pausingEndpoint
}

type pausingEndpoint struct {
	*testEndpoint
	paused   atomic.Bool
	received atomic.Int64
	first    chan struct{}
	arrived  chan struct{} // a token after each Data
}

func (e *pausingEndpoint) ReadPaused() bool { return e.paused.Load() }

func (e *pausingEndpoint) Data(b []byte) {
	e.testEndpoint.Data(b)
	if e.received.Add(int64(len(b))) == int64(len(b)) {
		e.paused.Store(true)
		close(e.first)
	}
	select {
	case e.arrived <- struct{}{}:
	default:
	}
}

func (h *pausingHandler) Open(c Conn) Endpoint {
	e := &pausingEndpoint{testEndpoint: h.testHandler.Open(c).(*testEndpoint), first: make(chan struct{}), arrived: make(chan struct{}, 1)}
	h.opened <- e
	return e
}

// fillUntilBlocked writes until the peer stops taking bytes (a write times
// out: the socket buffers on both sides are full), and returns how many
// bytes went.
func fillUntilBlocked(t *testing.T, c interface {
	Write([]byte) (int, error)
	SetWriteDeadline(time.Time) error
}) int64 {
	t.Helper()
	chunk := make([]byte, 64<<10)
	var sent int64
	for sent < 256<<20 {
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Write(chunk)
		sent += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetWriteDeadline(time.Now().Add(testTimeout))
			return sent
		}
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	t.Fatalf("the driver kept reading %d bytes from a paused connection", sent)
	return 0
}

// pausedConn connects to a server of pausing endpoints and sends one byte,
// after which its endpoint pauses; then it fills the socket buffers, and
// returns how much that took.
func pausedConn(t *testing.T, dk driverKind) (*net.TCPConn, *pausingEndpoint, int64) {
	t.Helper()
	h := &pausingHandler{testHandler: newTestHandler(t), opened: make(chan *pausingEndpoint, 1)}
	s := startServerWith(t, dk, h, h.testHandler, Options{})
	c := dial(t, s.addr)
	e := receive(t, h.opened, "Open")
	c.Write([]byte("x"))
	receive(t, e.first, "the first Data")
	return c, e, fillUntilBlocked(t, c)
}

// A paused connection is not read until Resume; then everything sent
// meanwhile arrives.
func TestPauseStopsReadingUntilResume(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		_, e, sent := pausedConn(t, dk)
		resumeAfterPause(t, e, sent)
	})
}

// resumeAfterPause checks that e, paused after its first byte, read nothing
// of the sent bytes that followed; then resumes it and waits for them all.
func resumeAfterPause(t *testing.T, e *pausingEndpoint, sent int64) {
	t.Helper()
	if got := e.received.Load(); got != 1 {
		t.Fatalf("Data got %d bytes while paused, want none after the first", got-1)
	}
	e.paused.Store(false)
	e.conn.Resume()
	for e.received.Load() < 1+sent {
		receive(t, e.arrived, "the bytes sent while paused")
	}
	if got := e.received.Load(); got != 1+sent {
		t.Errorf("after Resume, Data got %d bytes, want %d", got-1, sent)
	}
}

// Closing a paused connection still ends it properly.
func TestCloseWhilePaused(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		c, e, _ := pausedConn(t, dk)
		e.write([]byte("bye"))
		e.conn.Close()
		c.CloseWrite()
		if got := readAll(t, c, "client"); string(got) != "bye" {
			t.Errorf("client got %q, want bye", got)
		}
		if err := closedWith(t, e.testEndpoint); err != nil {
			t.Errorf("Closed(%v) after Conn.Close, want nil", err)
		}
	})
}
