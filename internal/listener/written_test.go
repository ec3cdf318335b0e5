//go:build unix

package listener

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// watchingEndpoint is a testEndpoint that is a WriteWatcher: it checks
// that Written reports each byte taken once, no sooner than the socket
// could take it, and all of a batch before the next Output.
type watchingEndpoint struct {
	*testEndpoint
	// clientRead is how many bytes the test's client has read so far.
	clientRead *atomic.Int64

	taken, written atomic.Int64
	// lead is the most Written ever reported beyond what the client had
	// read: what the sockets' buffers held, if the driver tells the truth.
	lead         atomic.Int64
	outputCalled chan struct{} // a token at each Output that took bytes
	allWritten   chan struct{} // a token each time Written caught up with Output
}

func (e *watchingEndpoint) Output() []byte {
	if n, w := e.taken.Load(), e.written.Load(); n != w {
		e.h.t.Errorf("Output called with %d bytes taken and %d written", n, w)
	}
	out := e.testEndpoint.Output()
	if len(out) > 0 {
		e.taken.Add(int64(len(out)))
		select {
		case e.outputCalled <- struct{}{}:
		default:
		}
	}
	return out
}

func (e *watchingEndpoint) Written(n int) {
	w := e.written.Add(int64(n))
	if n <= 0 || w > e.taken.Load() {
		e.h.t.Errorf("Written(%d): %d bytes reported written of %d taken", n, w, e.taken.Load())
	}
	if lead := w - e.clientRead.Load(); lead > e.lead.Load() {
		e.lead.Store(lead)
	}
	if w == e.taken.Load() {
		select {
		case e.allWritten <- struct{}{}:
		default:
		}
	}
}

type watchingHandler struct {
	*testHandler
	clientRead *atomic.Int64
	opened     chan *watchingEndpoint
}

func (h *watchingHandler) Open(c Conn) Endpoint {
	e := &watchingEndpoint{testEndpoint: h.testHandler.Open(c).(*testEndpoint), clientRead: h.clientRead,
		outputCalled: make(chan struct{}, 1), allWritten: make(chan struct{}, 1)}
	h.opened <- e
	return e
}

// A WriteWatcher hears of its output only as the socket takes it: for a
// peer that does not read, the driver keeps holding the rest. Output is
// 16 MiB at once, to a client with a small receive buffer that starts
// reading only once the driver took it: whenever Written reports bytes,
// the client must have read all of them but what the two sockets' buffers
// hold (the server's send buffer grows to 4 MiB at most by default).
func TestWrittenCountsWhatWentOut(t *testing.T) {
	const size, buffered = 16 << 20, 8 << 20
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		var clientRead atomic.Int64
		h := &watchingHandler{testHandler: newTestHandler(t), clientRead: &clientRead, opened: make(chan *watchingEndpoint, 1)}
		want := pattern(size, 5)
		h.onData = func(e *testEndpoint, b []byte) { e.write(want) }
		s := startServerWith(t, dk, h, h.testHandler, Options{})
		d := net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
			return err
		}}
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		c.Write([]byte("go"))
		e := receive(t, h.opened, "Open")
		receive(t, e.outputCalled, "Output")
		got := make([]byte, size)
		for n := 0; n < size; {
			m, err := c.Read(got[n:])
			n += m
			clientRead.Store(int64(n))
			if err != nil {
				t.Fatalf("reading after %d bytes: %v", n, err)
			}
		}
		sameBytes(t, "output", got, want)
		receive(t, e.allWritten, "Written for all of the output")
		if lead := e.lead.Load(); lead > buffered {
			t.Errorf("Written reported %d bytes more than the client had read: the driver still held them", lead)
		}
		if n, w := e.taken.Load(), e.written.Load(); n != size || w != size {
			t.Errorf("%d bytes of output taken, %d reported written; want %d", n, w, size)
		}
	})
}
