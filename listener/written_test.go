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
// that Written comes once per batch of output, after the batch went out
// and before the next Output.
type watchingEndpoint struct {
	*testEndpoint
	// clientRead is how many bytes the test's client has read so far.
	clientRead *atomic.Int64

	taken, written atomic.Int32
	readAtWritten  atomic.Int64
	outputCalled   chan struct{} // a token at each Output that took bytes
	wasWritten     chan struct{} // a token at each Written
}

func (e *watchingEndpoint) Output() []byte {
	if n, w := e.taken.Load(), e.written.Load(); n != w {
		e.h.t.Errorf("Output called with %d batches taken and %d written", n, w)
	}
	out := e.testEndpoint.Output()
	if len(out) > 0 {
		e.taken.Add(1)
		select {
		case e.outputCalled <- struct{}{}:
		default:
		}
	}
	return out
}

func (e *watchingEndpoint) Written() {
	if e.written.Add(1) > e.taken.Load() {
		e.h.t.Error("Written called without output taken")
	}
	e.readAtWritten.Store(e.clientRead.Load())
	select {
	case e.wasWritten <- struct{}{}:
	default:
	}
}

type watchingHandler struct {
	*testHandler
	clientRead *atomic.Int64
	opened     chan *watchingEndpoint
}

func (h *watchingHandler) Open(c Conn) Endpoint {
	e := &watchingEndpoint{testEndpoint: h.testHandler.Open(c).(*testEndpoint), clientRead: h.clientRead,
		outputCalled: make(chan struct{}, 1), wasWritten: make(chan struct{}, 1)}
	h.opened <- e
	return e
}

// A WriteWatcher hears Written only once its output is in the socket: for
// a peer that does not read, the driver keeps holding it. Output is 16 MiB
// at once, to a client with a small receive buffer that starts reading
// only once the driver took it: when Written comes, the client must have
// read all of it but what the two sockets' buffers hold (the server's send
// buffer grows to 4 MiB at most by default).
func TestWrittenOnceOutputWentOut(t *testing.T) {
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
		receive(t, e.wasWritten, "Written")
		if at := e.readAtWritten.Load(); at < size-buffered {
			t.Errorf("Written came when the client had read %d of %d bytes: the driver still held output", at, size)
		}
		if n, w := e.taken.Load(), e.written.Load(); n != w {
			t.Errorf("%d batches of output taken, %d written", n, w)
		}
	})
}
