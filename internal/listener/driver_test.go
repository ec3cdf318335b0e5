package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func echo(e *testEndpoint, b []byte) { e.write(b) }

// Many clients at once, two of them moving 8 MiB each way: the server's
// writes outrun the client's reads, so the drivers must cope with full
// socket buffers (EAGAIN and EPOLLOUT for the event loop).
func TestEchoManyClientsLargeTransfers(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		h.onData = echo
		s := startServer(t, dk, h, Options{})
		sizes := []int{8 << 20, 8 << 20}
		for range 30 {
			sizes = append(sizes, 256<<10)
		}
		var wg sync.WaitGroup
		for i, size := range sizes {
			wg.Go(func() { echoClient(t, s.addr, size, uint64(i)) })
		}
		wg.Wait()
	})
}

func echoClient(t *testing.T, addr string, size int, seed uint64) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	want := pattern(size, seed)
	wrote := make(chan error, 1)
	go func() { wrote <- writeChunks(c, want, seed) }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Errorf("client %d: reading the echo: %v", seed, err)
		return
	}
	if err := <-wrote; err != nil {
		t.Errorf("client %d: writing: %v", seed, err)
	}
	sameBytes(t, fmt.Sprintf("client %d echo", seed), got, want)
}

// One connection's Data writes into 100 other connections, which belong
// to other goroutines or loops: every subscriber must get the publisher's
// bytes complete and in order.
func TestBroadcastFromAnotherConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		const nsubs = 100
		var subs atomic.Pointer[[]*testEndpoint]
		ready := make(chan *testEndpoint, nsubs)
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			if e.role == 0 {
				e.role, b = b[0], b[1:]
				if e.role == 'S' {
					ready <- e
				}
			}
			if e.role == 'P' && len(b) > 0 {
				for _, s := range *subs.Load() {
					s.write(b)
				}
			}
		}
		s := startServer(t, dk, h, Options{})

		const size = 256 << 10
		want := pattern(size, 7)
		var wg sync.WaitGroup
		for i := range nsubs {
			c := dial(t, s.addr)
			if _, err := c.Write([]byte{'S'}); err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				got := make([]byte, size)
				if _, err := io.ReadFull(c, got); err != nil {
					t.Errorf("subscriber %d: %v", i, err)
					return
				}
				sameBytes(t, fmt.Sprintf("subscriber %d", i), got, want)
			})
		}
		list := make([]*testEndpoint, 0, nsubs)
		for range nsubs {
			list = append(list, receive(t, ready, "subscribers to register"))
		}
		subs.Store(&list)

		pub := dial(t, s.addr)
		if _, err := pub.Write([]byte{'P'}); err != nil {
			t.Fatal(err)
		}
		if err := writeChunks(pub, want, 7); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	})
}

// Goroutines that are not the driver's write to connections: numbered
// records must arrive complete and in order.
func TestWritesFromForeignGoroutines(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		const nconns, records = 8, 5000
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{})
		var wg sync.WaitGroup
		for i := range nconns {
			c := dial(t, s.addr)
			e := receive(t, h.opened, "Open")
			wg.Go(func() {
				var rec []byte
				for n := range records {
					rec = strconv.AppendInt(rec[:0], int64(n), 10)
					e.write(append(rec, '\n'))
				}
			})
			wg.Go(func() {
				want := make([]byte, 0, records*5)
				for n := range records {
					want = strconv.AppendInt(want, int64(n), 10)
					want = append(want, '\n')
				}
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Errorf("conn %d: %v", i, err)
					return
				}
				sameBytes(t, fmt.Sprintf("conn %d", i), got, want)
			})
		}
		wg.Wait()
	})
}

// 10,000 appends, each followed by Flush, inside one Data call: all
// arrive, in a few writes. The first Output waits until the appends are
// done, so the goroutine driver's writer (which starts at the first Flush
// and would otherwise race the appends) must show that every Flush made
// while it was busy folds into its next write; the event loop writes
// after Data returns anyway.
func TestManyFlushesAreBatched(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		const records = 10000
		appended := make(chan struct{})
		h := newTestHandler(t)
		h.onOutput = func(*testEndpoint) { <-appended }
		h.onData = func(e *testEndpoint, b []byte) {
			var rec []byte
			for n := range records {
				rec = fmt.Appendf(rec[:0], "%05d\n", n)
				e.write(rec)
			}
			close(appended)
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		receive(t, h.opened, "Open")
		before := writeCalls(s.d)
		if _, err := c.Write([]byte("go")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, records*6)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for n := range records {
			fmt.Fprintf(&want, "%05d\n", n)
		}
		sameBytes(t, "batched records", got, []byte(want.String()))

		// One write, plus what a full socket buffer splits off (EAGAIN).
		if writes := writeCalls(s.d) - before; writes > 20 {
			t.Errorf("%d flushed appends took %d write calls, want at most 20", records, writes)
		} else {
			t.Logf("%d flushed appends took %d write calls", records, writes)
		}
	})
}

func writeCalls(d Driver) uint64 {
	switch d := d.(type) {
	case *goroutineDriver:
		return d.writes.Load()
	case interface{ writeCalls() uint64 }:
		return d.writeCalls()
	}
	panic(fmt.Sprintf("no write counter on %T", d))
}

// readAll reads until EOF and fails on anything else, such as a reset.
func readAll(t *testing.T, c net.Conn, what string) []byte {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("%s: reading until EOF: %v (after %d bytes)", what, err, len(b))
	}
	return b
}

func closedWith(t *testing.T, e *testEndpoint) error {
	t.Helper()
	return receive(t, e.closed, "Closed")
}

func TestCloseFromInsideData(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			e.write([]byte("goodbye"))
			e.conn.Close()
			e.write([]byte(" and more")) // appended after Close: may go or not, must not break
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		c.Write([]byte("bye"))
		if got := readAll(t, c, "client"); !strings.HasPrefix(string(got), "goodbye") {
			t.Errorf("client got %q, want goodbye first", got)
		}
		c.Close()
		if err := closedWith(t, e); err != nil {
			t.Errorf("Closed(%v) after Conn.Close, want nil", err)
		}
	})
}

func TestCloseFromAnotherGoroutine(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		go func() {
			e.write([]byte("final words"))
			e.conn.Close()
		}()
		if got := readAll(t, c, "client"); string(got) != "final words" {
			t.Errorf("client got %q, want %q", got, "final words")
		}
		c.Close()
		if err := closedWith(t, e); err != nil {
			t.Errorf("Closed(%v) after Conn.Close, want nil", err)
		}
	})
}

// Close from several places at once, and again after Closed: Closed runs
// once (the handler's cleanup counts) and nothing panics.
func TestCloseTwiceAndAfterClosed(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			e.conn.Close()
			e.conn.Close()
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(e.conn.Close)
		}
		c.Write([]byte("x"))
		readAll(t, c, "client")
		c.Close()
		wg.Wait()
		closedWith(t, e)
		e.conn.Close()
		e.conn.Flush()
		if e.conn.RemoteAddr() == nil || e.conn.LocalAddr() == nil {
			t.Error("addresses are gone after Closed")
		}
	})
}

// The endpoint closes right after a large final write while the client
// keeps sending bytes the server will never use. Closing a socket with
// unread input sends a reset, which would destroy the final bytes in the
// client's receive queue; the drain after the half-close prevents it.
func TestFinalBytesReachPeerDespiteUnreadInput(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		final := pattern(1<<20, 3)
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			if e.role == 0 {
				e.role = 1
				e.write(final)
				e.conn.Close()
			}
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		c.Write([]byte("x"))
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			junk := make([]byte, 64<<10)
			for range 64 {
				if _, err := c.Write(junk); err != nil {
					return // the server closed; expected eventually
				}
			}
		}()
		got := readAll(t, c, "client")
		sameBytes(t, "final bytes", got, final)
		c.Close()
		<-sent
		if err := closedWith(t, e); err != nil {
			t.Errorf("Closed(%v) after Conn.Close, want nil", err)
		}
	})
}

func TestPeerCloseEndsConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		got := make(chan []byte, 1)
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) { got <- append([]byte(nil), b...) }
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		c.Write([]byte("hi"))
		if b := receive(t, got, "Data"); string(b) != "hi" {
			t.Errorf("Data(%q), want hi", b)
		}
		c.Close()
		if err := closedWith(t, e); !errors.Is(err, io.EOF) {
			t.Errorf("Closed(%v) after the peer closed, want io.EOF", err)
		}
	})
}

// Driver.Close closes every connection gracefully (pending output still
// goes out) and returns only after each got Closed.
func TestDriverCloseClosesEveryConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		const nconns = 20
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{})
		var wg sync.WaitGroup
		for i := range nconns {
			c := dial(t, s.addr)
			e := receive(t, h.opened, "Open")
			e.write([]byte("last"))
			wg.Go(func() {
				got, err := io.ReadAll(c)
				if err != nil || string(got) != "last" {
					t.Errorf("client %d: got %q, %v; want the pending output, then EOF", i, got, err)
				}
				c.Close()
			})
		}
		if err := s.d.Close(); err != nil {
			t.Errorf("Driver.Close: %v", err)
		}
		for i, e := range h.endpoints() {
			if n := e.closedCalls.Load(); n != 1 {
				t.Errorf("endpoint %d: Closed called %d times when Driver.Close returned, want 1", i, n)
			}
		}
		wg.Wait()
		if err := receive(t, s.served, "Serve to return"); err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
		s.served <- nil // for the cleanup
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			t.Error("the listener still accepts after Driver.Close")
		}
	})
}

// A panic in one endpoint closes its connection only, with a PanicError,
// and is logged with its stack.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		var logs logBuffer
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			if b[0] == '!' {
				panic("boom")
			}
			e.write(b)
		}
		s := startServer(t, dk, h, Options{Logger: logs.logger()})
		good := dial(t, s.addr)
		goodEP := receive(t, h.opened, "Open")
		bad := dial(t, s.addr)
		badEP := receive(t, h.opened, "Open")

		bad.Write([]byte("!"))
		err := closedWith(t, badEP)
		var pe *PanicError
		if !errors.As(err, &pe) || pe.Value != "boom" || pe.Method != "Data" {
			t.Errorf("Closed(%v) after a panic in Data, want a *PanicError with boom", err)
		}
		io.ReadAll(bad) // ends: the connection is closed

		good.Write([]byte("still here"))
		got := make([]byte, len("still here"))
		if _, err := io.ReadFull(good, got); err != nil || string(got) != "still here" {
			t.Errorf("the other connection: got %q, %v", got, err)
		}
		if n := goodEP.closedCalls.Load(); n != 0 {
			t.Error("the other connection was closed too")
		}
		if l := logs.String(); !strings.Contains(l, "boom") || !strings.Contains(l, "goroutine") {
			t.Errorf("the panic was not logged with its stack; log:\n%s", l)
		}
	})
}

// An endpoint may write and close from inside Handler.Open (a refusal).
func TestWriteAndCloseFromOpen(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		h.onOpen = func(e *testEndpoint) {
			e.write([]byte("go away"))
			e.conn.Close()
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		if got := readAll(t, c, "client"); string(got) != "go away" {
			t.Errorf("client got %q, want %q", got, "go away")
		}
		c.Close()
		if err := closedWith(t, receive(t, h.opened, "Open")); err != nil {
			t.Errorf("Closed(%v), want nil", err)
		}
	})
}

// A peer that never reads cannot hold Close beyond CloseTimeout.
func TestCloseTimeoutBoundsAStuckPeer(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{CloseTimeout: 200 * time.Millisecond, DrainTimeout: 100 * time.Millisecond})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		e.mu.Lock()
		e.out = make([]byte, 32<<20) // far more than the socket buffers hold
		e.mu.Unlock()
		e.conn.Flush()
		start := time.Now()
		e.conn.Close()
		closedWith(t, e)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Close took %v with CloseTimeout 200ms", took)
		}
		c.Close()
	})
}

// An endpoint that has more output at every Output call cannot hold Close
// beyond CloseTimeout either, with a peer that reads it all; nor is it cut
// off before.
func TestCloseTimeoutBoundsEndlessOutput(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		h.onOutput = func(e *testEndpoint) {
			e.mu.Lock()
			if e.out == nil {
				e.out = make([]byte, 1024)
			}
			e.mu.Unlock()
		}
		const timeout = 100 * time.Millisecond
		s := startServer(t, dk, h, Options{CloseTimeout: timeout, DrainTimeout: timeout})
		c := dial(t, s.addr)
		go io.Copy(io.Discard, c)
		e := receive(t, h.opened, "Open")
		start := time.Now()
		e.conn.Close()
		if err := closedWith(t, e); err != nil {
			t.Errorf("Closed(%v), want nil", err)
		}
		if took := time.Since(start); took < timeout || took > timeout+time.Second {
			t.Errorf("Close took %v with CloseTimeout %v and output without end", took, timeout)
		}
	})
}

// Cancelling Serve's context stops accepting; accepted connections go on.
func TestServeStopsWhenContextIsDone(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		h := newTestHandler(t)
		h.onData = echo
		d, err := dk.new(ln, h, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.verify)
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- d.Serve(ctx) }()
		c := dial(t, ln.Addr().String())
		receive(t, h.opened, "Open")
		cancel()
		if err := receive(t, served, "Serve to return"); err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
		c.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Errorf("accepted connection after cancel: got %q, %v", got, err)
		}
		c.Close()
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func TestAddresses(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		h := newTestHandler(t)
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		if got, want := e.conn.RemoteAddr().String(), c.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr %s, want %s", got, want)
		}
		if got, want := e.conn.LocalAddr().String(), c.RemoteAddr().String(); got != want {
			t.Errorf("LocalAddr %s, want %s", got, want)
		}
		if got, want := s.d.Addr().String(), s.addr; got != want {
			t.Errorf("Driver.Addr %s, want %s", got, want)
		}
	})
}

// The peer half-closes while the server is still flushing its final
// output after Close: the output must still arrive whole, then EOF.
func TestCloseWhilePeerHalfCloses(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dk driverKind) {
		final := pattern(4<<20, 5)
		h := newTestHandler(t)
		h.onData = func(e *testEndpoint, b []byte) {
			if e.role == 0 {
				e.role = 1
				e.write(final)
				e.conn.Close()
			}
		}
		s := startServer(t, dk, h, Options{})
		c := dial(t, s.addr)
		e := receive(t, h.opened, "Open")
		c.Write([]byte("x"))
		c.CloseWrite()
		got := readAll(t, c, "client")
		sameBytes(t, "final bytes", got, final)
		c.Close()
		if err := closedWith(t, e); err != nil {
			t.Errorf("Closed(%v) after Conn.Close, want nil", err)
		}
	})
}
