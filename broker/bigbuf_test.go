package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// bigPayload is a payload whose every byte depends on seq, so that a
// payload overwritten by another message's (a buffer recycled too early)
// cannot pass for it.
func bigPayload(seq uint32, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint32(b, seq)
	for i := 4; i < n; i++ {
		b[i] = byte(seq*7 + uint32(i)%253)
	}
	return b
}

// routeBig routes a message whose payload is in a pooled buffer, as a big
// PUBLISH read from a client is, and returns it with one more holder, the
// caller, so that it can watch the count without the message being
// recycled under it.
func routeBig(srv *Server, topic string, qos byte, retain bool, payload []byte) *message {
	bb := getBigBuf(len(payload))
	copy(bb.b, payload)
	m := makeMessage(&packet.Publish{Topic: topic, Payload: bb.b[:len(payload)], QoS: qos, Retain: retain}, 0, true, bb)
	tx := txPool.Get().(*routeTx)
	srv.publish(m, tx)
	tx.finish(srv, nil)
	putTx(tx)
	m.ref()   // the caller's
	m.unref() // the router is done with it
	return m
}

// A message with a pooled buffer goes back to its pool only when no
// delivery can still be written from it: output that refers to it holds it
// until written, a QoS 1 delivery until PUBACK, QoS 2 until PUBREC;
// retaining it keeps a copy (retained.go), and not the message.
func TestBigBufferHolders(t *testing.T) {
	srv := startServer(t, Options{})
	addr := srv.Addrs()[0].String()
	subs := map[byte]*wiretest.Client{}
	for qos := range byte(3) {
		c, _ := wiretest.MustConnect(t, addr, fmt.Sprint("sub", qos), true)
		c.Subscribe("big/t", qos)
		subs[qos] = c
	}
	want := bigPayload(1, 100<<10)
	m := routeBig(srv, "big/t", 2, false, want)
	if n := m.refs.Load(); n < 3 {
		t.Fatalf("after routing: %d holders, want at least 3 (the QoS 1 and QoS 2 deliveries, the test)", n)
	}
	// Each PUBLISH is read, and a PINGRESP after it: the output that
	// referred to the payload is written.
	pubs := map[byte]*packet.Publish{}
	for qos, c := range subs {
		p, ok := c.Next().(*packet.Publish)
		if !ok || !bytes.Equal(p.Payload, want) {
			t.Fatalf("QoS %d: want the big PUBLISH intact, got %+v", qos, p)
		}
		c.Ping()
		pubs[qos] = p
	}
	if n := m.refs.Load(); n != 3 {
		t.Fatalf("once written: %d holders, want 3 (the QoS 1 and QoS 2 deliveries, the test)", n)
	}

	p := pubs[1]
	subs[1].Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	subs[1].Ping() // the PUBACK was handled
	if n := m.refs.Load(); n != 2 {
		t.Fatalf("after PUBACK: %d holders, want 2", n)
	}

	p = pubs[2]
	subs[2].Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	subs[2].ExpectAck(packet.PUBREL, p.PacketID)
	if n := m.refs.Load(); n != 1 {
		t.Fatalf("after PUBREC: %d holders, want 1 (the test)", n)
	}
	subs[2].Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	subs[2].Ping()
	if n := m.refs.Load(); n != 1 {
		t.Fatalf("after PUBCOMP: %d holders, want still 1", n)
	}
	m.unref()

	want = bigPayload(2, 80<<10)
	m = routeBig(srv, "big/retained", 1, true, want)
	if n := m.refs.Load(); n != 1 {
		t.Fatalf("retained: %d holders, want 1 (the test)", n)
	}
	m.unref()
	if r, ok := srv.Retained("big/retained"); !ok || !bytes.Equal(r.Payload, want) {
		t.Fatalf("the retained copy of a recycled message: %v, %d bytes; want its payload", ok, len(r.Payload))
	}
}

// Messages big and small through every kind of holder at once, recycled
// all the while: each subscriber must get every payload exactly as it was
// published. Subscribers read slowly, with two messages in
// flight, so most deliveries wait in a queue while later messages reuse
// the buffers of acknowledged ones.
func TestRecycledMessagesIntact(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "goroutine"}[goroutines], func(t *testing.T) {
			srv := New(Options{Logger: testlog.New(t), MaxInflight: 2,
				Listeners: []ListenerConfig{{Address: "127.0.0.1:0", goroutineDriver: goroutines}}})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			addr := srv.Addrs()[0].String()

			const count = 60
			// Big payloads of two sizes in one class and one in another, so
			// that buffers are shared between messages of different lengths,
			// and small ones that live in their message.
			sizes := []int{100 << 10, 100<<10 + 100, 70 << 10, 20, 300, 21}
			payload := func(i int) []byte { return bigPayload(uint32(i), sizes[i%len(sizes)]) }

			// A persistent session (its deliveries go through the store, which
			// pins their buffers) takes every fifth message, and is away while
			// they arrive. One message in the middle is retained (copied).
			topic := func(i int) string { return map[bool]string{true: "big/durable", false: "big/x"}[i%5 == 0] }
			const retained = count/2 + 1
			away, _ := wiretest.MustConnect(t, addr, "away", false)
			away.Subscribe("big/durable", 1)
			away.Disconnect()

			// accepted[i] closes once the broker acknowledged message i.
			// A subscriber acknowledges message i only after message i+8 was
			// accepted: deliveries queue up behind its window meanwhile.
			accepted := make([]chan struct{}, count)
			for i := range accepted {
				accepted[i] = make(chan struct{})
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for qos := range byte(3) {
				c, _ := wiretest.MustConnect(t, addr, fmt.Sprint("sub", qos), true)
				c.Subscribe("big/#", qos)
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- receiveInOrder(c, qos, count, payload, func(i int) { <-accepted[min(i+8, count-1)] })
				}()
			}

			pub, _ := wiretest.MustConnect(t, addr, "pub", true)
			for i := range count {
				pid := uint16(i + 1)
				qos := byte(1 + i%2) // QoS 2 deliveries let go of the message at PUBREC
				pub.Send(&packet.Publish{Topic: topic(i), Payload: payload(i), QoS: qos, PacketID: pid, Retain: i == retained})
				if qos == 1 {
					pub.ExpectAck(packet.PUBACK, pid)
				} else {
					pub.ExpectAck(packet.PUBREC, pid)
					pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
					pub.ExpectAck(packet.PUBCOMP, pid)
				}
				close(accepted[i])
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}

			i := 0
			wiretest.DrainSession(t, addr, "away", func(p *packet.Publish) {
				if i < count && !bytes.Equal(p.Payload, payload(i)) {
					t.Errorf("persistent session, message %d: payload not as published", i)
				}
				i += 5
			})
			if i != count {
				t.Errorf("persistent session got %d messages, want %d", i/5, count/5)
			}
			late, _ := wiretest.MustConnect(t, addr, "late", true)
			late.Subscribe("big/x", 0)
			if p, ok := late.Next().(*packet.Publish); !ok || !p.Retain || !bytes.Equal(p.Payload, payload(retained)) {
				t.Fatalf("retained message not as published: %+v", p)
			}
		})
	}
}

// Messages that one subscriber alone takes are packed into its queue while
// it is behind, and the messages they were routed as are recycled: each
// must still come out as it was published.
func TestSoleMessagesRecycledIntact(t *testing.T) {
	srv := startServer(t, Options{MaxInflight: 2})
	addr := srv.Addrs()[0].String()
	const count = 200
	payload := func(i int) []byte { return bigPayload(uint32(i), 8+i%300) }
	accepted := make([]chan struct{}, count)
	for i := range accepted {
		accepted[i] = make(chan struct{})
	}
	errs := make(chan error, 1)
	solo, _ := wiretest.MustConnect(t, addr, "solo", true)
	solo.Subscribe("solo/t", 1)
	go func() {
		errs <- receiveInOrder(solo, 1, count, payload, func(i int) { <-accepted[min(i+50, count-1)] })
	}()
	pub, _ := wiretest.MustConnect(t, addr, "pub", true)
	for i := range count {
		pid := uint16(i + 1)
		pub.Send(&packet.Publish{Topic: "solo/t", Payload: payload(i), QoS: 1, PacketID: pid})
		pub.ExpectAck(packet.PUBACK, pid)
		close(accepted[i])
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("the subscriber did not get every message")
	}
}

// receiveInOrder takes count PUBLISHes, acknowledging each as its QoS
// requires once before(i) returns, and checks each payload is the one
// published in its place.
func receiveInOrder(c *wiretest.Client, qos byte, count int, payload func(int) []byte, before func(i int)) error {
	for i := 0; i < count; {
		p, err := c.TryNext()
		if err != nil {
			return fmt.Errorf("QoS %d subscriber, message %d: %v", qos, i, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			if !bytes.Equal(p.Payload, payload(i)) {
				return fmt.Errorf("QoS %d subscriber, message %d: payload of %d bytes not as published (first bytes %x)",
					qos, i, len(p.Payload), p.Payload[:8])
			}
			before(i)
			i++
			if r := wiretest.Reply(p); r != nil {
				c.TrySend(r)
			}
		case *packet.Ack:
			if r := wiretest.Reply(p); r != nil {
				c.TrySend(r)
			}
		default:
			return fmt.Errorf("QoS %d subscriber: unexpected %s", qos, p.Type())
		}
	}
	return nil
}

// Every size up to maxPooledBig has a class that holds it without wasting
// more than an eighth (or a step, for big ones), and a buffer of a class's
// size goes back to that class.
func TestBigClasses(t *testing.T) {
	prev := -1
	for size := 1; size <= maxPooledBig; size++ {
		class, capacity := bigClass(size)
		if class < 0 || class >= len(bigPools) {
			t.Fatalf("size %d: class %d out of [0, %d)", size, class, len(bigPools))
		}
		if capacity < size {
			t.Fatalf("size %d: class %d holds only %d", size, class, capacity)
		}
		var most int
		switch {
		case size <= minPooledBig:
			most = minPooledBig
		case size <= finePooledBig:
			most = size + size/8
		default:
			most = size + bigClassStep - 1
		}
		if capacity > most {
			t.Fatalf("size %d: class %d is %d bytes, want at most %d", size, class, capacity, most)
		}
		if class < prev {
			t.Fatalf("size %d: class %d after class %d", size, class, prev)
		}
		prev = class
		if back, c := bigClass(capacity); back != class || c != capacity {
			t.Fatalf("size %d: class %d of %d bytes, but %d bytes map to class %d of %d", size, class, capacity, capacity, back, c)
		}
	}
}

// A payload too big to share its message's allocation is copied into a
// pooled buffer, which goes back to its pool with the message.
func TestMediumPayloadIsPooled(t *testing.T) {
	for _, n := range []int{417, 1000, 8 << 10, 60 << 10, 1 << 20} {
		want := bigPayload(uint32(n), n)
		m := makeMessage(&packet.Publish{Topic: "t/medium", Payload: want}, 0, false, nil)
		if m.big == nil {
			t.Fatalf("%d bytes: payload not in a pooled buffer", n)
		}
		if !bytes.Equal(m.Payload, want) || m.Topic != "t/medium" {
			t.Fatalf("%d bytes: message differs from its PUBLISH", n)
		}
		if cap(m.Payload) != n {
			t.Fatalf("%d bytes: payload capacity %d, want its length", n, cap(m.Payload))
		}
		m.unref()
	}
	small := makeMessage(&packet.Publish{Topic: "t", Payload: make([]byte, 416)}, 0, false, nil)
	if small.big != nil {
		t.Fatal("a 416-byte payload took a pooled buffer instead of sharing its message's allocation")
	}
}
