package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

// TestKeepAlivePings: an idle client pings; one that is busy does not need
// to; the connection outlives several keep alive periods.
func TestKeepAlivePings(t *testing.T) {
	checkGoroutines(t)
	var pings atomic.Int32
	var keepAlive atomic.Int32
	addr := fakeServer(t, func(f *fakeConn) {
		c, err := f.accept(packet.Properties{})
		if err != nil {
			return
		}
		keepAlive.Store(int32(c.KeepAlive))
		for {
			p, err := f.read()
			if err != nil {
				return
			}
			if _, ok := p.(*packet.Pingreq); ok {
				pings.Add(1)
				f.send(&packet.Pingresp{})
			}
		}
	})
	c := connect(t, Options{Addr: addr, KeepAlive: time.Second, CleanStart: true, ClientID: "ka"})
	time.Sleep(2600 * time.Millisecond)
	if keepAlive.Load() != 1 {
		t.Errorf("CONNECT keep alive %d, want 1", keepAlive.Load())
	}
	// Pings at about 0.75s, 1.5s, 2.25s.
	if n := pings.Load(); n < 2 || n > 4 {
		t.Errorf("%d PINGREQ in 2.6s with a 1s keep alive, want about 3", n)
	}
	if err := c.Err(); err != nil {
		t.Errorf("connection ended: %v", err)
	}
	c.Close()
}

// TestKeepAliveWithBroker: the real broker keeps an idle client that pings.
func TestKeepAliveWithBroker(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	c := connect(t, Options{Addr: addr, KeepAlive: time.Second, CleanStart: true, ClientID: "idle"})
	time.Sleep(2500 * time.Millisecond)
	if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1}); err != nil {
		t.Fatalf("publish after 2.5 idle seconds with a 1s keep alive: %v", err)
	}
}

// TestKeepAliveTimeout: a server that stops answering is given up on.
func TestKeepAliveTimeout(t *testing.T) {
	checkGoroutines(t)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		for {
			if _, err := f.read(); err != nil {
				return
			}
		}
	})
	lost := make(chan error, 1)
	start := time.Now()
	connect(t, Options{Addr: addr, KeepAlive: time.Second, CleanStart: true, ClientID: "ka",
		OnDisconnect: func(err error) { lost <- err }})
	select {
	case err := <-lost:
		if !errors.Is(err, ErrKeepAliveTimeout) {
			t.Errorf("OnDisconnect(%v), want ErrKeepAliveTimeout", err)
		}
		if d := time.Since(start); d < 1500*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("given up after %v, want about 1.75s (ping at 0.75s, a keep alive to answer)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a server that never answers PINGREQ was not given up on")
	}
}

// TestServerKeepAlive: an MQTT 5 server's Server Keep Alive replaces the
// client's.
func TestServerKeepAlive(t *testing.T) {
	pinged := make(chan time.Duration, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		var p packet.Properties
		p.ServerKeepAlive = 1
		p.Mark(packet.PropServerKeepAlive)
		f.accept(p)
		start := time.Now()
		for {
			pk, err := f.read()
			if err != nil {
				return
			}
			if _, ok := pk.(*packet.Pingreq); ok {
				pinged <- time.Since(start)
				return
			}
		}
	})
	connect(t, Options{Addr: addr, Version: packet.V5, KeepAlive: time.Hour, CleanStart: true})
	select {
	case d := <-pinged:
		if d > 1500*time.Millisecond {
			t.Errorf("first ping after %v", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no ping within 3s with a server keep alive of 1s")
	}
}

// TestPublishContextCancelled: Publish gives up when its context ends; the
// message stays in flight and its late acknowledgement is harmless.
func TestPublishContextCancelled(t *testing.T) {
	checkGoroutines(t)
	ack := make(chan struct{})
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		p, err := f.read()
		if err != nil {
			return
		}
		<-ack
		f.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.(*packet.Publish).PacketID})
		for {
			p, err := f.read()
			if err != nil {
				return
			}
			if p, ok := p.(*packet.Publish); ok {
				f.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			}
		}
	})
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "ctx", MaxInflight: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Publish(ctx, &packet.Publish{Topic: "a", QoS: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish without an ack: %v, want DeadlineExceeded", err)
	}
	// The window (1) is still held by the abandoned message.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := c.Publish(ctx2, &packet.Publish{Topic: "a", QoS: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with a full window: %v, want DeadlineExceeded", err)
	}
	close(ack)
	for i := range 3 {
		if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1}); err != nil {
			t.Fatalf("publish %d after the late ack: %v", i, err)
		}
	}
	c.Close()
}

// TestConnectContext: Connect gives up on a server that does not answer,
// through ctx or DialTimeout.
func TestConnectContext(t *testing.T) {
	checkGoroutines(t)
	addr := fakeServer(t, func(f *fakeConn) {
		f.read()
		time.Sleep(2 * time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := Connect(ctx, Options{Addr: addr, CleanStart: true, ClientID: "c"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connect: %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, _, err := Connect(ctx, Options{Addr: addr, CleanStart: true, ClientID: "c"}); !errors.Is(err, context.Canceled) {
		t.Errorf("connect: %v, want Canceled", err)
	}
	if _, _, err := Connect(context.Background(), Options{Addr: addr, CleanStart: true, ClientID: "c",
		DialTimeout: 100 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connect with DialTimeout: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("three 100ms connection attempts took %v", d)
	}
}

// TestServerClosesMidFlow: the server drops the connection while publishes
// wait for acknowledgements: they fail with the cause, OnDisconnect hears
// it, later calls fail at once, and no goroutine is left behind.
func TestServerClosesMidFlow(t *testing.T) {
	checkGoroutines(t)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		for range 5 {
			if _, err := f.read(); err != nil {
				return
			}
		}
		// Return: the connection closes with publishes unacknowledged.
	})
	lost := make(chan error, 1)
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "mid", OnDisconnect: func(err error) { lost <- err }})
	results := make(chan error, 20)
	for range 20 {
		err := c.PublishAsync(context.Background(), &packet.Publish{Topic: "a", QoS: 1, Payload: []byte("x")},
			func(_ packet.ReasonCode, err error) { results <- err })
		if err != nil {
			results <- err
		}
	}
	for i := range 20 {
		select {
		case err := <-results:
			if err == nil || errors.Is(err, ErrClosed) {
				t.Fatalf("publish %d ended with %v, want the connection's failure", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of 20 publishes still waiting after the server closed", 20-i)
		}
	}
	select {
	case err := <-lost:
		if err == nil {
			t.Error("OnDisconnect(nil)")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnDisconnect not called")
	}
	if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "a"}); err == nil {
		t.Error("QoS 0 publish after the connection ended succeeded")
	}
	if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "a"}}, packet.Properties{}); err == nil {
		t.Error("subscribe after the connection ended succeeded")
	}
}

// TestBrokerStopsMidFlow: the real broker shuts down under a stream of
// publishes and a waiting subscriber.
func TestBrokerStopsMidFlow(t *testing.T) {
	s := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addrs()[0].String()
	checkGoroutines(t)
	in := subscriber(t, addr, packet.V5, "s", 1)
	lost := make(chan error, 2)
	pub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, ClientID: "p",
		OnDisconnect: func(err error) { lost <- err }})
	errs := make(chan error, 1)
	go func() {
		for {
			if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "s", QoS: 1, Payload: []byte("x")}); err != nil {
				errs <- err
				return
			}
		}
	}()
	in.wait(t, 10)
	s.Close()
	select {
	case err := <-errs:
		if errors.Is(err, ErrClosed) {
			t.Errorf("publish failed with %v, want the connection's failure", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("publishing went on after the broker closed")
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("OnDisconnect not called")
	}
	<-pub.Done()
}

// TestCloseWhileWaiting: Close fails waiting requests with ErrClosed.
func TestCloseWhileWaiting(t *testing.T) {
	checkGoroutines(t)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		for {
			if _, err := f.read(); err != nil {
				return
			}
		}
	})
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "cw"})
	errs := make(chan error, 2)
	go func() {
		_, err := c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 2})
		errs <- err
	}()
	go func() {
		_, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "a"}}, packet.Properties{})
		errs <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("waiting request ended with %v, want ErrClosed", err)
		}
	}
	if err := c.Disconnect(packet.Success, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Disconnect after Close: %v, want ErrClosed", err)
	}
}

// TestDuplicateQoS2Delivery: a QoS 2 message resent before PUBREL is
// delivered once.
func TestDuplicateQoS2Delivery(t *testing.T) {
	comp := make(chan packet.Packet, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		m := &packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Payload: []byte("once")}
		f.send(m)
		f.read() // PUBREC
		m.Dup = true
		f.send(m)
		f.read() // PUBREC again
		f.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
		p, _ := f.read()
		comp <- p
		f.read()
	})
	in := newInbox()
	connect(t, Options{Addr: addr, CleanStart: true, ClientID: "d", OnMessage: in.add})
	select {
	case p := <-comp:
		if a, ok := p.(*packet.Ack); !ok || a.Kind != packet.PUBCOMP || a.PacketID != 7 {
			t.Fatalf("answer to PUBREL: %#v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no PUBCOMP")
	}
	if n := in.len(); n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
}

// TestTopicAliasInbound: with a Topic Alias Maximum in CONNECT, the client
// resolves the aliases the server sends.
func TestTopicAliasInbound(t *testing.T) {
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		m := &packet.Publish{Topic: "long/topic/name", Payload: []byte("1")}
		m.Props.TopicAlias = 3
		m.Props.Mark(packet.PropTopicAlias)
		f.send(m)
		m.Topic, m.Payload = "", []byte("2")
		f.send(m)
		f.read()
	})
	in := newInbox()
	var props packet.Properties
	props.TopicAliasMaximum = 5
	props.Mark(packet.PropTopicAliasMaximum)
	connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, ConnectProps: props, OnMessage: in.add})
	for i, m := range in.wait(t, 2) {
		if m.Topic != "long/topic/name" {
			t.Errorf("message %d topic %q", i, m.Topic)
		}
	}
}

// TestMaxPacketSize: an MQTT 5 CONNECT carries Options.MaxPacketSize as its
// Maximum Packet Size, and a larger packet from the server ends the
// connection, undelivered; a packet within it is delivered, its DUP flag
// with it.
func TestMaxPacketSize(t *testing.T) {
	asked := make(chan uint32, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		c, err := f.accept(packet.Properties{})
		if err != nil {
			return
		}
		asked <- c.Props.MaximumPacketSize
		f.send(&packet.Publish{Topic: "small", QoS: 1, PacketID: 1, Dup: true, Payload: make([]byte, 10)})
		f.read() // PUBACK
		f.send(&packet.Publish{Topic: "big", Payload: make([]byte, 100)})
		f.read()
	})
	in := newInbox()
	lost := make(chan error, 1)
	connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, MaxPacketSize: 64, OnMessage: in.add,
		OnDisconnect: func(err error) { lost <- err }})
	if got := <-asked; got != 64 {
		t.Errorf("CONNECT's Maximum Packet Size %d, want 64", got)
	}
	select {
	case err := <-lost:
		var perr *packet.Error
		if !errors.As(err, &perr) || perr.Code != packet.PacketTooLarge {
			t.Errorf("OnDisconnect(%v), want a PacketTooLarge *packet.Error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a packet above MaxPacketSize did not end the connection")
	}
	if msgs := in.wait(t, 1); in.len() != 1 || msgs[0].Topic != "small" || !msgs[0].Dup {
		t.Errorf("delivered %d messages, the first %+v; want only small, with Dup", in.len(), msgs[0])
	}
}
