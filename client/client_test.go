package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

var versions = []struct {
	name string
	v    byte
}{{"3.1.1", packet.V311}, {"5", packet.V5}}

// TestPublishSubscribeEachQoS sends a message at each QoS to a subscriber at
// that QoS: the client's outbound flow on one side, its inbound flow (with
// automatic acknowledgements) on the other.
func TestPublishSubscribeEachQoS(t *testing.T) {
	for _, ver := range versions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("v%s/qos%d", ver.name, qos), func(t *testing.T) {
				addr := startBroker(t, broker.Options{})
				checkGoroutines(t)
				in := subscriber(t, addr, ver.v, "t/+", qos)
				pub := connect(t, Options{Addr: addr, Version: ver.v, CleanStart: true, ClientID: "pub"})
				for i := range 3 {
					code, err := pub.Publish(context.Background(), &packet.Publish{Topic: "t/" + strconv.Itoa(i),
						QoS: qos, Payload: []byte("hello " + strconv.Itoa(i))})
					if err != nil || code != packet.Success {
						t.Fatalf("publish %d: code %v, err %v", i, code, err)
					}
				}
				for i, m := range in.wait(t, 3) {
					if m.Topic != "t/"+strconv.Itoa(i) || string(m.Payload) != "hello "+strconv.Itoa(i) || m.QoS != qos {
						t.Errorf("message %d: topic %q payload %q QoS %d, want t/%d, hello %d, QoS %d",
							i, m.Topic, m.Payload, m.QoS, i, i, qos)
					}
				}
				if err := pub.Disconnect(packet.Success, nil); err != nil {
					t.Errorf("disconnect: %v", err)
				}
			})
		}
	}
}

// TestInboundQoSDowngrade: the subscription's QoS caps what is delivered.
func TestInboundQoSDowngrade(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	in := subscriber(t, addr, packet.V5, "d", 1)
	pub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true})
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "d", QoS: 2, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if m := in.wait(t, 1)[0]; m.QoS != 1 {
		t.Errorf("delivered at QoS %d, want 1", m.QoS)
	}
}

// TestPipelinedWindow publishes many QoS 1 and 2 messages asynchronously
// through a small window: every callback runs once, with success, and the
// subscriber gets everything in order.
func TestPipelinedWindow(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			addr := startBroker(t, broker.Options{})
			checkGoroutines(t)
			in := subscriber(t, addr, packet.V5, "w", qos)
			const n = 2000
			pub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, MaxInflight: 8})
			var acked, failures atomic.Int64
			all := make(chan struct{})
			done := func(code packet.ReasonCode, err error) {
				if err != nil || code != packet.Success {
					failures.Add(1)
				}
				if acked.Add(1) == n {
					close(all)
				}
			}
			for i := range n {
				m := &packet.Publish{Topic: "w", QoS: qos, Payload: []byte(strconv.Itoa(i))}
				if err := pub.PublishAsync(context.Background(), m, done); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of %d acknowledged", acked.Load(), n)
			}
			if failures.Load() != 0 {
				t.Errorf("%d publishes failed", failures.Load())
			}
			for i, m := range in.wait(t, n) {
				if string(m.Payload) != strconv.Itoa(i) {
					t.Fatalf("message %d has payload %q", i, m.Payload)
				}
			}
		})
	}
}

// TestWindowBound: a server that acknowledges only when the window is full
// (or the client has gone quiet) never sees more than the window
// unacknowledged.
func TestWindowBound(t *testing.T) {
	const window, n = 8, 500
	peak := make(chan int, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		var pending []uint16
		most := 0
		defer func() { peak <- most }()
		for {
			f.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			p, err := f.read()
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			if p, ok := p.(*packet.Publish); ok {
				pending = append(pending, p.PacketID)
				most = max(most, len(pending))
			}
			if _, ok := p.(*packet.Disconnect); ok {
				return
			}
			if len(pending) >= window || err != nil {
				for _, id := range pending {
					f.send(&packet.Ack{Kind: packet.PUBACK, PacketID: id})
				}
				pending = pending[:0]
			}
		}
	})
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "wb", MaxInflight: window})
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		if err := c.PublishAsync(context.Background(), &packet.Publish{Topic: "a", QoS: 1}, func(packet.ReasonCode, error) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	c.Disconnect(packet.Success, nil)
	if p := <-peak; p != window {
		t.Errorf("at most %d messages unacknowledged, want the window, %d", p, window)
	}
}

// TestPublishAsyncReportsFullWindow: with a context already done,
// PublishAsync does not wait for a full window.
func TestPublishAsyncReportsFullWindow(t *testing.T) {
	checkGoroutines(t)
	release := make(chan struct{})
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		p, _ := f.read() // the first PUBLISH, held until released
		<-release
		f.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.(*packet.Publish).PacketID})
		f.read()
	})
	c := connect(t, Options{Addr: addr, MaxInflight: 1, ClientID: "w", CleanStart: true})
	acked := make(chan error, 1)
	m := &packet.Publish{Topic: "a", QoS: 1}
	if err := c.PublishAsync(context.Background(), m, func(_ packet.ReasonCode, err error) { acked <- err }); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.PublishAsync(done, m, nil); !errors.Is(err, ErrInflightFull) {
		t.Fatalf("PublishAsync with a full window: %v, want ErrInflightFull", err)
	}
	close(release)
	if err := <-acked; err != nil {
		t.Fatalf("first publish: %v", err)
	}
	if err := c.PublishAsync(done, m, nil); err != nil {
		t.Fatalf("PublishAsync once the window has room: %v", err)
	}
	c.Close()
}

// TestReceiveMaximumLowersWindow: an MQTT 5 server's Receive Maximum bounds
// the window below MaxInflight.
func TestReceiveMaximumLowersWindow(t *testing.T) {
	got := make(chan int, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		var p packet.Properties
		p.ReceiveMaximum = 2
		p.Mark(packet.PropReceiveMaximum)
		f.accept(p)
		n := 0
		f.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			if _, err := f.read(); err != nil {
				break
			}
			n++
		}
		got <- n
	})
	c := connect(t, Options{Addr: addr, Version: packet.V5, MaxInflight: 10, CleanStart: true})
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		c.PublishAsync(ctx, &packet.Publish{Topic: "a", QoS: 1}, nil)
		cancel()
	}
	if n := <-got; n != 2 {
		t.Errorf("the server received %d PUBLISH, want 2 (its Receive Maximum)", n)
	}
}

// TestWill: Close leaves the will to the server; Disconnect does not.
func TestWill(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			addr := startBroker(t, broker.Options{})
			checkGoroutines(t)
			in := subscriber(t, addr, ver.v, "will/#", 1)
			will := &packet.Publish{Topic: "will/a", QoS: 1, Payload: []byte("gone")}
			if ver.v == packet.V5 {
				will.Props.ContentType = "text/plain"
				will.Props.Mark(packet.PropContentType)
			}
			a, _, err := Connect(context.Background(), Options{Addr: addr, Version: ver.v, ClientID: "a",
				CleanStart: true, Will: will})
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := Connect(context.Background(), Options{Addr: addr, Version: ver.v, ClientID: "b",
				CleanStart: true, Will: &packet.Publish{Topic: "will/b", Payload: []byte("not sent")}})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Disconnect(packet.Success, nil); err != nil {
				t.Fatalf("disconnect: %v", err)
			}
			a.Close()
			m := in.wait(t, 1)[0]
			if m.Topic != "will/a" || string(m.Payload) != "gone" {
				t.Errorf("got %q %q, want the will of a", m.Topic, m.Payload)
			}
			if ver.v == packet.V5 && m.Props.ContentType != "text/plain" {
				t.Errorf("will content type %q", m.Props.ContentType)
			}
			time.Sleep(100 * time.Millisecond)
			if n := in.len(); n != 1 {
				t.Errorf("%d messages, want only a's will", n)
			}
		})
	}
}

// TestPersistentSession: a session resumed with CleanStart false gets what
// was published while it was away.
func TestPersistentSession(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			addr := startBroker(t, broker.Options{})
			checkGoroutines(t)
			o := Options{Addr: addr, Version: ver.v, ClientID: "durable", SessionExpiry: 3600}
			c, ack, err := Connect(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if ack.SessionPresent {
				t.Error("session present on the first connection")
			}
			if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "q", QoS: 1}}, packet.Properties{}); err != nil {
				t.Fatal(err)
			}
			c.Disconnect(packet.Success, nil)

			pub := connect(t, Options{Addr: addr, Version: ver.v, CleanStart: true, ClientID: "p"})
			if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "q", QoS: 1, Payload: []byte("kept")}); err != nil {
				t.Fatal(err)
			}
			in := newInbox()
			o.OnMessage = in.add
			c, ack, err = Connect(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !ack.SessionPresent {
				t.Error("session not present on reconnection")
			}
			if m := in.wait(t, 1)[0]; string(m.Payload) != "kept" {
				t.Errorf("payload %q", m.Payload)
			}
		})
	}
}

// TestV5Properties: properties of PUBLISH and SUBSCRIBE reach the other
// side, and reason codes come back.
func TestV5Properties(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	in := newInbox()
	sub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, OnMessage: in.add})
	var sp packet.Properties
	sp.SubscriptionIDs = []uint32{42}
	sp.User = []packet.UserProperty{{Key: "sub", Value: "yes"}}
	codes, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: "p/#", QoS: 2}, {Filter: "p/+/x", QoS: 1}}, sp)
	if err != nil || len(codes) != 2 || codes[0] != packet.GrantedQoS2 || codes[1] != packet.GrantedQoS1 {
		t.Fatalf("subscribe: %v %v", codes, err)
	}

	pub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true})
	m := &packet.Publish{Topic: "p/q", QoS: 1, Payload: []byte("{}")}
	m.Props.User = []packet.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: ""}}
	m.Props.ContentType, m.Props.ResponseTopic, m.Props.CorrelationData = "application/json", "r/t", []byte{0, 1}
	m.Props.MessageExpiry = 60
	m.Props.Mark(packet.PropContentType)
	m.Props.Mark(packet.PropResponseTopic)
	m.Props.Mark(packet.PropCorrelationData)
	m.Props.Mark(packet.PropMessageExpiry)
	if code, err := pub.Publish(context.Background(), m); err != nil || code != packet.Success {
		t.Fatalf("publish: %v %v", code, err)
	}
	got := in.wait(t, 1)[0]
	p := got.Props
	if fmt.Sprint(p.User) != fmt.Sprint(m.Props.User) || p.ContentType != "application/json" ||
		p.ResponseTopic != "r/t" || !bytes.Equal(p.CorrelationData, []byte{0, 1}) ||
		!p.Has(packet.PropMessageExpiry) || fmt.Sprint(p.SubscriptionIDs) != "[42]" {
		t.Errorf("properties received: %+v", p)
	}

	// No subscriber: 0x10 at QoS 1, which is not an error.
	code, err := pub.Publish(context.Background(), &packet.Publish{Topic: "nobody", QoS: 1})
	if err != nil || code != packet.NoMatchingSubscribers {
		t.Errorf("publish to nobody: %v %v, want 0x10", code, err)
	}
	codes, err = sub.Unsubscribe(context.Background(), []string{"p/#", "never"}, packet.Properties{})
	if err != nil || len(codes) != 2 || codes[0] != packet.Success || codes[1] != packet.NoSubscriptionExisted {
		t.Errorf("unsubscribe: %v %v", codes, err)
	}
}

// TestUnsubscribeV311 has no codes on the wire: all are Success.
func TestUnsubscribeV311(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "u"})
	codes, err := c.Unsubscribe(context.Background(), []string{"a", "b"}, packet.Properties{})
	if err != nil || len(codes) != 2 || codes[0] != packet.Success || codes[1] != packet.Success {
		t.Errorf("unsubscribe: %v %v", codes, err)
	}
}

// TestSubscribeRefused: a refused filter is a code, not an error.
func TestSubscribeRefused(t *testing.T) {
	addr := startBroker(t, broker.Options{DisableWildcardSubscriptions: true})
	for _, ver := range versions {
		c := connect(t, Options{Addr: addr, Version: ver.v, CleanStart: true, ClientID: "s" + ver.name})
		codes, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "a/#"}, {Filter: "a/b", QoS: 1}}, packet.Properties{})
		if err != nil || len(codes) != 2 || !codes[0].IsError() || codes[1] != packet.GrantedQoS1 {
			t.Errorf("v%s: codes %v, err %v", ver.name, codes, err)
		}
	}
}

// TestConnectRefused: CONNACK's refusal is a *ConnectError with the code.
func TestConnectRefused(t *testing.T) {
	no := false
	addr := startBroker(t, broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0", AllowAnonymous: &no}}})
	checkGoroutines(t)
	for _, tc := range []struct {
		v    byte
		code packet.ReasonCode
		text string
	}{{packet.V311, packet.ConnRefusedNotAuthorized, "not authorized"}, {packet.V5, packet.NotAuthorized, "not authorized"}} {
		c, ack, err := Connect(context.Background(), Options{Addr: addr, Version: tc.v, CleanStart: true, ClientID: "x"})
		var ce *ConnectError
		if c != nil || !errors.As(err, &ce) || ce.Code != tc.code || ack == nil || ack.Code != tc.code {
			t.Fatalf("v%d: client %v, connack %+v, err %v; want refusal %#x", tc.v, c, ack, err, tc.code)
		}
		if ce.Text() != tc.text {
			t.Errorf("v%d: text %q, want %q", tc.v, ce.Text(), tc.text)
		}
	}
}

// TestSessionTakenOver: a server's DISCONNECT reaches OnDisconnect as a
// *DisconnectError, and pending requests fail.
func TestSessionTakenOver(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	checkGoroutines(t)
	lost := make(chan error, 1)
	first, _, err := Connect(context.Background(), Options{Addr: addr, Version: packet.V5, ClientID: "same",
		CleanStart: true, OnDisconnect: func(err error) { lost <- err }})
	if err != nil {
		t.Fatal(err)
	}
	second := connect(t, Options{Addr: addr, Version: packet.V5, ClientID: "same", CleanStart: true})
	var de *DisconnectError
	select {
	case err := <-lost:
		if !errors.As(err, &de) || de.Code != packet.SessionTakenOver {
			t.Fatalf("OnDisconnect(%v), want a DisconnectError 0x8e", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnDisconnect not called")
	}
	<-first.Done()
	if !errors.As(first.Err(), &de) {
		t.Errorf("Err() = %v", first.Err())
	}
	if _, err := first.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1}); !errors.As(err, &de) {
		t.Errorf("publish after the end: %v", err)
	}
	if err := first.Close(); !errors.As(err, &de) {
		t.Errorf("Close after the end: %v", err)
	}
	if _, err := second.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1}); err != nil {
		t.Errorf("the new connection: %v", err)
	}
}

// TestConcurrentPublishers share one client.
func TestConcurrentPublishers(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	checkGoroutines(t)
	in := subscriber(t, addr, packet.V5, "c/#", 2)
	pub := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, MaxInflight: 16})
	var wg sync.WaitGroup
	const workers, each = 8, 100
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := &packet.Publish{Topic: "c/" + strconv.Itoa(w), QoS: byte(i % 3), Payload: []byte(strconv.Itoa(i))}
				if _, err := pub.Publish(context.Background(), m); err != nil {
					t.Errorf("worker %d publish %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// MQTT orders the messages of one publisher per QoS [MQTT-4.6.0-6].
	msgs := in.wait(t, workers*each)
	last := map[string]int{}
	for _, m := range msgs {
		key := fmt.Sprintf("%s QoS %d", m.Topic, m.QoS)
		i, _ := strconv.Atoi(string(m.Payload))
		if prev, ok := last[key]; ok && i <= prev {
			t.Fatalf("%s: message %d after %d", key, i, prev)
		}
		last[key] = i
	}
}

// TestLargeMessages go through read buffer growth and shrinking.
func TestLargeMessages(t *testing.T) {
	addr := startBroker(t, broker.Options{MaxPacketSize: 4 << 20})
	in := subscriber(t, addr, packet.V311, "big", 1)
	pub := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "bigpub"})
	sizes := []int{0, 1, 4095, 4096, 70000, 3 << 20, 10}
	for _, n := range sizes {
		payload := bytes.Repeat([]byte{byte(n)}, n)
		if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "big", QoS: 1, Payload: payload}); err != nil {
			t.Fatalf("publish %d bytes: %v", n, err)
		}
	}
	for i, m := range in.wait(t, len(sizes)) {
		if !bytes.Equal(m.Payload, bytes.Repeat([]byte{byte(sizes[i])}, sizes[i])) {
			t.Errorf("message %d: %d bytes, want %d", i, len(m.Payload), sizes[i])
		}
	}
	// Above the server's maximum packet size: refused before sending.
	_, err := pub.Publish(context.Background(), &packet.Publish{Topic: "big", QoS: 1, Payload: make([]byte, 5<<20)})
	if err == nil {
		t.Error("5 MiB publish to a server with a 4 MiB limit succeeded")
	}
}

// TestServerMaximumPacketSize (MQTT 5) refuses locally, and the connection
// stays usable.
func TestServerMaximumPacketSize(t *testing.T) {
	addr := startBroker(t, broker.Options{MaxPacketSize: 1024})
	c := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true})
	_, err := c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1, Payload: make([]byte, 2000)})
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("publish of 2000 bytes: %v, want ErrPacketTooLarge", err)
	}
	if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 1, Payload: make([]byte, 100)}); err != nil {
		t.Fatalf("publish after the refusal: %v", err)
	}
}

// TestTrace sees the packets both ways.
func TestTrace(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	var mu sync.Mutex
	var seen []string
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "tr", Trace: func(sent bool, p packet.Packet) {
		dir := "<"
		if sent {
			dir = ">"
		}
		mu.Lock()
		seen = append(seen, dir+p.Type().String())
		mu.Unlock()
	}})
	c.Publish(context.Background(), &packet.Publish{Topic: "a", QoS: 2})
	c.Disconnect(packet.Success, nil)
	want := ">CONNECT <CONNACK >PUBLISH <PUBREC >PUBREL <PUBCOMP >DISCONNECT"
	if got := fmt.Sprint(seen); got != "["+want+"]" {
		t.Errorf("trace %s, want [%s]", got, want)
	}
}
