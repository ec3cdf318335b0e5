package broker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Issue 15's outside check, scaled down: a stream of 8 KiB QoS 0 messages
// to a topic with one subscriber whose socket never reads (a 4 KiB receive
// buffer) and one that reads everything. What waits for the stalled client
// stays within twice Limits.MaxOutboundBytes (outboundCap: the publisher
// waits for it at the bound, until it is found not reading), counting what
// the event loop holds for it: the rest is dropped, counted and logged. The fast subscriber gets every message, in order, and other
// clients are served (PINGREQ, and a new client's CONNECT) within a second
// throughout. The publisher keeps within half the bound of the fast
// subscriber, so a correct broker never has reason to drop a message of
// the fast one's.
func TestLimitMaxOutboundBytesQoS0(t *testing.T) {
	const size, batch, ahead = 8 << 10, 32, 2 // ahead × batch × size = half the bound
	total := 50 << 20
	if testing.Short() {
		total = 12 << 20 // still 12 times the bound
	}
	n := total / size
	logger, logs := captureLogs(t)
	srv := secStart(t, Options{Logger: logger}, nil)
	bound := srv.opts.Limits.MaxOutboundBytes
	addr := srv.Addrs()[0].String()

	slowNC := dialSmallReceiveBuffer(t, addr, 4<<10)
	slow := secOn(t, slowNC, "never-reads", packet.V311)
	slow.connect(connectPacket(packet.V311, "never-reads"))
	slow.mustSubscribe(1, 0, "flood/#")
	fast := secMustConnect(t, addr, connectPacket(packet.V311, "fast"))
	fast.mustSubscribe(1, 0, "flood/#")
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	pub := secMustConnect(t, addr, connectPacket(packet.V311, "flood"))
	before := counters(srv)

	fr := &sequenceReader{progress: make(chan struct{}, 1), done: make(chan struct{})}
	go fr.read(fast, n)

	maxPending, probes := 0, 0
	var slowest time.Duration
	msg := &packet.Publish{Topic: "flood/x", Payload: make([]byte, size)}
	var buf []byte
	for sent := 0; sent < n; {
		buf, sent = appendNumbered(buf[:0], msg, sent, min(sent+batch, n))
		pub.sendRaw(buf)
		maxPending = max(maxPending, outboundOf(t, srv, "never-reads"))
		if sent/batch%16 == 0 {
			// Health checks while the broker has the batch just sent to route.
			slowest = max(slowest, healthCheck(t, addr, bystander, probes))
			probes++
		}
		fr.await(t, sent-ahead*batch)
	}
	pub.ping() // every PUBLISH has been routed
	fr.await(t, n)
	maxPending = max(maxPending, outboundOf(t, srv, "never-reads"))
	// Output the socket took is no longer counted: counted, it would cut
	// a client that keeps up off its QoS 0 messages.
	wiretest.Eventually(t, "nothing counted as waiting for the fast subscriber", func() bool { return outboundOf(t, srv, "fast") == 0 })
	after := counters(srv)
	dropped := after["droppedQoS0Slow"] - before["droppedQoS0Slow"]
	pkt := packet.Len(msg, packet.V311)
	t.Logf("%d MiB in %d messages: %d dropped for the stalled client, %d waiting for it at most (bound %d); %d health checks, slowest %v",
		total>>20, n, dropped, maxPending, bound, probes, slowest)

	if limit := outboundCap(bound) + pkt; maxPending > limit {
		t.Errorf("%d bytes waited for the stalled client; want at most %d (twice the bound %d, plus one message)", maxPending, limit, bound)
	}
	if n := after["notReading"] - before["notReading"]; n != 1 {
		t.Errorf("notReading rose by %d; want 1, the stalled client found not reading once", n)
	}
	if dropped == 0 || dropped >= int64(n) {
		t.Errorf("droppedQoS0Slow rose by %d of %d messages; want some dropped, not all", dropped, n)
	}
	if !strings.Contains(logs.String(), "client not reading: QoS 0 message dropped") {
		t.Error("no warning about the dropped messages was logged")
	}
	// The broker's own account is checked against the kernel's: what it
	// accepted for the stalled client and is not in either socket is still
	// in the broker's memory, however it is accounted.
	inKernel := tcpQueued(t, slowNC.RemoteAddr(), slowNC.LocalAddr()).tx + tcpQueued(t, slowNC.LocalAddr(), slowNC.RemoteAddr()).rx
	held := (int64(n)-dropped)*int64(pkt) - int64(inKernel)
	t.Logf("the sockets hold %d bytes for the stalled client, the broker %d", inKernel, held)
	if limit := int64(outboundCap(bound) + pkt); held > limit {
		t.Errorf("the broker holds %d bytes for the stalled client (accepted %d messages, the sockets hold %d bytes); want at most %d",
			held, int64(n)-dropped, inKernel, limit)
	}

	// Once it reads, it gets what was kept for it: every message is either
	// delivered or counted as dropped.
	delivered := int64(len(slow.untilPong()))
	if delivered+dropped != int64(n) {
		t.Errorf("%d delivered + %d dropped = %d, want the %d published", delivered, dropped, delivered+dropped, n)
	}
}

// appendNumbered appends msg as PUBLISHes numbered from up to end (in the first 8
// bytes of its payload), and returns end.
func appendNumbered(buf []byte, msg *packet.Publish, from, end int) ([]byte, int) {
	for ; from < end; from++ {
		binary.BigEndian.PutUint64(msg.Payload, uint64(from))
		buf, _ = packet.Append(buf, msg, packet.V311)
	}
	return buf, end
}

// dialSmallReceiveBuffer connects with a receive buffer of rcvbuf bytes,
// set before the handshake so that the window the broker sees is small.
func dialSmallReceiveBuffer(t *testing.T, addr string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wiretest.Timeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		return err
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// sequenceReader reads PUBLISHes numbered from 0 by their first 8 bytes
// on its own goroutine, and stops at a gap or anything else.
type sequenceReader struct {
	received atomic.Int64
	progress chan struct{} // a token after each message
	done     chan struct{} // closed when read returns, err set
	err      error
}

func (r *sequenceReader) read(c *secClient, n int) {
	defer close(r.done)
	for i := range n {
		p, err := c.read(wiretest.Timeout)
		if err != nil {
			r.err = err
			return
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			r.err = fmt.Errorf("got %s, want PUBLISH", p.Type())
			return
		}
		if got := binary.BigEndian.Uint64(pub.Payload); got != uint64(i) {
			r.err = fmt.Errorf("got message %d, want %d: the ones between were lost", got, i)
			return
		}
		r.received.Store(int64(i + 1))
		select {
		case r.progress <- struct{}{}:
		default:
		}
	}
}

// await returns once k messages arrived, and fails the test if reading
// stopped short of them.
func (r *sequenceReader) await(t *testing.T, k int) {
	t.Helper()
	for r.received.Load() < int64(k) {
		select {
		case <-r.progress:
		case <-r.done:
			if r.received.Load() < int64(k) {
				t.Fatalf("the fast subscriber stopped after %d messages, waiting for %d: %v", r.received.Load(), k, r.err)
			}
		}
	}
}

// outboundOf is what waits to be written to the client id's connection,
// by the broker's account.
func outboundOf(t *testing.T, srv *Server, id string) int {
	t.Helper()
	srv.mu.Lock()
	ss := srv.sessions.get(id)
	srv.mu.Unlock()
	if ss == nil {
		t.Fatalf("no session %q", id)
	}
	ss.mu.Lock()
	c := ss.conn
	ss.mu.Unlock()
	if c == nil {
		t.Fatalf("session %q has no connection", id)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.pendingLocked()
}

// healthCheck times a PINGREQ round trip of a connected client and a new
// client's CONNECT→CONNACK, failing the test beyond a second, and returns
// the slower.
func healthCheck(t *testing.T, addr string, connected *secClient, i int) time.Duration {
	t.Helper()
	const limit = time.Second
	start := time.Now()
	connected.send(&packet.Pingreq{})
	if p, err := connected.read(limit); err != nil || p.Type() != packet.PINGRESP {
		t.Fatalf("no PINGRESP within %v (%v, %v)", limit, p, err)
	}
	ping := time.Since(start)
	start = time.Now()
	probe := secDial(t, "tcp", addr, "probe", packet.V311)
	probe.send(connectPacket(packet.V311, fmt.Sprintf("probe-%d", i)))
	if p, err := probe.read(limit); err != nil || p.Type() != packet.CONNACK {
		t.Fatalf("no CONNACK within %v (%v, %v)", limit, p, err)
	}
	probe.nc.Close()
	return max(ping, time.Since(start))
}

// tcpQueue is a TCP socket's queues as /proc/net/tcp gives them: bytes
// written and not yet acknowledged by the peer, and bytes received and not
// yet read.
type tcpQueue struct{ tx, rx int }

// tcpQueued returns the queues of the IPv4 socket from local to remote.
func tcpQueued(t *testing.T, local, remote net.Addr) tcpQueue {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := procAddr(t, local) + " " + procAddr(t, remote)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 || fields[1]+" "+fields[2] != want {
			continue
		}
		tx, rx, _ := strings.Cut(fields[4], ":")
		txn, err1 := strconv.ParseInt(tx, 16, 64)
		rxn, err2 := strconv.ParseInt(rx, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/net/tcp: queues %q", fields[4])
		}
		return tcpQueue{tx: int(txn), rx: int(rxn)}
	}
	t.Fatalf("/proc/net/tcp has no socket %s", want)
	return tcpQueue{}
}

// procAddr writes an IPv4 address as /proc/net/tcp does: the address as
// the host stores it, in hex, then the port.
func procAddr(t *testing.T, a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || !ap.Addr().Unmap().Is4() {
		t.Fatalf("%v is not an IPv4 address", a)
	}
	ip := ap.Addr().Unmap().As4()
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), ap.Port())
}

// QoS 0 to a subscriber that reads, but more slowly than an unpaced
// publisher publishes: the publisher is held back at the bound
// (outwait.go) and the subscriber gets every message, in order, where it
// used to lose whatever went past the bound. Nothing is dropped and the
// subscriber is never taken for one that does not read.
func TestQoS0ReaderPacesItsPublisher(t *testing.T) {
	const size, batch = 8 << 10, 64
	total := 24 << 20
	if testing.Short() {
		total = 8 << 20
	}
	n := total / size
	// A reader kept off the processor for readGrace by a busy machine
	// would be taken for one that stopped: this one reads.
	srv := secStart(t, Options{readGrace: 5 * time.Second}, nil)
	addr := srv.Addrs()[0].String()
	slow := secMustConnect(t, addr, connectPacket(packet.V311, "slow-reader"))
	slow.mustSubscribe(1, 0, "pace/#")
	pub := secMustConnect(t, addr, connectPacket(packet.V311, "pacer"))
	before := counters(srv)

	// The reader stops after its first message until the publisher has
	// been held back, so that it is outrun however fast the machine runs
	// (a reader paced by the clock alone was not, under -race on a busy
	// CI machine); then it takes a break after every 16 messages.
	got := make(chan error, 1)
	go func() {
		for i := range n {
			if i == 1 {
				for deadline := time.Now().Add(wiretest.Timeout); counters(srv)["heldBack"] == before["heldBack"]; {
					if time.Now().After(deadline) {
						got <- fmt.Errorf("the publisher was not held back within %v of the reader stopping", wiretest.Timeout)
						return
					}
					time.Sleep(time.Millisecond) // polling a counter: no event to wait on
				}
			}
			p, err := slow.read(wiretest.Timeout)
			if err != nil {
				got <- fmt.Errorf("after %d messages: %w", i, err)
				return
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				got <- fmt.Errorf("got %s, want PUBLISH", p.Type())
				return
			}
			if seq := binary.BigEndian.Uint64(pub.Payload); seq != uint64(i) {
				got <- fmt.Errorf("got message %d, want %d: the ones between were lost", seq, i)
				return
			}
			if i%16 == 15 {
				time.Sleep(time.Millisecond) // load shaping: a reader slower than the publisher
			}
		}
		got <- nil
	}()
	msg := &packet.Publish{Topic: "pace/x", Payload: make([]byte, size)}
	var buf []byte
	for sent := 0; sent < n; {
		buf, sent = appendNumbered(buf[:0], msg, sent, min(sent+batch, n))
		pub.sendRaw(buf)
	}
	pub.ping()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not get every message within 30s")
	}
	after := counters(srv)
	t.Logf("%d MiB in %d messages: %s", total>>20, n, countersMoved(before, after))
	if d := after["droppedQoS0Slow"] - before["droppedQoS0Slow"]; d != 0 {
		t.Errorf("%d QoS 0 messages dropped for a subscriber that reads", d)
	}
	if d := after["notReading"] - before["notReading"]; d != 0 {
		t.Errorf("the reader was taken for one that does not read %d times", d)
	}
	if after["heldBack"] == before["heldBack"] {
		t.Error("the publisher was never held back: the test did not outrun its reader")
	}
}
