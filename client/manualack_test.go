package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

// ackTrace records the acknowledgements a client sends, as Trace sees
// them: synchronously, so that what Ack sent is recorded when it returns.
type ackTrace struct {
	mu   sync.Mutex
	acks []string
}

func (at *ackTrace) trace(sent bool, p packet.Packet) {
	if a, ok := p.(*packet.Ack); ok && sent {
		at.mu.Lock()
		at.acks = append(at.acks, fmt.Sprintf("%s %d", a.Kind, a.PacketID))
		at.mu.Unlock()
	}
}

func (at *ackTrace) String() string {
	at.mu.Lock()
	defer at.mu.Unlock()
	return strings.Join(at.acks, ", ")
}

// With ManualAck a message is acknowledged only once the application says
// so, and the acknowledgements leave in the order the messages came
// whatever the order of the calls.
// [MQTT-4.6.0-2] [MQTT-4.6.0-3] v3.1.1
func TestManualAckInOrder(t *testing.T) {
	got := make(chan string, 1)
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		for id := uint16(1); id <= 3; id++ {
			f.send(&packet.Publish{Topic: "m", QoS: 1, PacketID: id, Payload: []byte{byte(id)}})
		}
		f.send(&packet.Publish{Topic: "m", QoS: 2, PacketID: 4, Payload: []byte{4}})
		var acks []string
		for range 4 {
			p, err := f.read()
			if err != nil {
				break
			}
			if a, ok := p.(*packet.Ack); ok {
				acks = append(acks, fmt.Sprintf("%s %d", a.Kind, a.PacketID))
			}
		}
		got <- strings.Join(acks, ", ")
		f.read()
	})
	in := newInbox()
	at := &ackTrace{}
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "m", ManualAck: true, OnMessage: in.add, Trace: at.trace})
	msgs := in.wait(t, 4)
	for _, step := range []struct {
		ack  int
		want string
	}{
		{2, ""}, // the third message: the first two are not acknowledged yet
		{3, ""},
		{0, "PUBACK 1"},
		{1, "PUBACK 1, PUBACK 2, PUBACK 3, PUBREC 4"},
		{1, "PUBACK 1, PUBACK 2, PUBACK 3, PUBREC 4"}, // twice: nothing more
	} {
		c.Ack(msgs[step.ack])
		if s := at.String(); s != step.want {
			t.Fatalf("after Ack(message %d): sent [%s], want [%s]", step.ack+1, s, step.want)
		}
	}
	if s := <-got; s != "PUBACK 1, PUBACK 2, PUBACK 3, PUBREC 4" {
		t.Errorf("the server got [%s]", s)
	}
}

// A QoS 2 message sent again before the application acknowledged it gets
// no PUBREC of its own: the one PUBREC goes when the application acks.
// Sent again after that, it gets its PUBREC again, and is not delivered
// twice.
func TestManualAckDuplicateQoS2(t *testing.T) {
	again := make(chan struct{})
	addr := fakeServer(t, func(f *fakeConn) {
		f.accept(packet.Properties{})
		m := &packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Payload: []byte("once")}
		f.send(m)
		m.Dup = true
		f.send(m)
		// Delivered after the duplicate: once it is, the duplicate was read.
		f.send(&packet.Publish{Topic: "marker"})
		f.read() // PUBREC, once the application acks
		<-again
		f.send(m)
		f.send(&packet.Publish{Topic: "marker"})
		f.read() // PUBREC again
		f.read()
	})
	in := newInbox()
	at := &ackTrace{}
	c := connect(t, Options{Addr: addr, CleanStart: true, ClientID: "d", ManualAck: true, OnMessage: in.add, Trace: at.trace})
	msgs := in.wait(t, 2)
	m := msgs[0]
	if msgs[1].Topic != "marker" {
		t.Fatalf("delivered %q after the first, want the marker (the duplicate is not delivered)", msgs[1].Topic)
	}
	if s := at.String(); s != "" {
		t.Fatalf("sent [%s] before the application acknowledged", s)
	}
	c.Ack(m)
	if s := at.String(); s != "PUBREC 7" {
		t.Fatalf("sent [%s], want [PUBREC 7]", s)
	}
	close(again)
	msgs = in.wait(t, 3)
	if msgs[2].Topic != "marker" {
		t.Fatalf("delivered %q third, want the marker (the duplicate is not delivered)", msgs[2].Topic)
	}
	if s := at.String(); s != "PUBREC 7, PUBREC 7" {
		t.Fatalf("sent [%s], want [PUBREC 7, PUBREC 7]", s)
	}
}

// A message the application never acknowledged is the server's still: the
// session's next connection gets it again.
func TestManualAckUnackedRedelivered(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			addr := startBroker(t, broker.Options{})
			in := newInbox()
			o := Options{Addr: addr, Version: ver.v, ClientID: "manual", SessionExpiry: 3600,
				ManualAck: true, OnMessage: in.add}
			c := connect(t, o)
			if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "q", QoS: 1}}, packet.Properties{}); err != nil {
				t.Fatal(err)
			}
			pub := connect(t, Options{Addr: addr, Version: ver.v, CleanStart: true, ClientID: "p"})
			for _, payload := range []string{"acked", "not acked"} {
				if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "q", QoS: 1, Payload: []byte(payload)}); err != nil {
					t.Fatal(err)
				}
			}
			msgs := in.wait(t, 2)
			c.Ack(msgs[0])
			// DISCONNECT follows the PUBACK: the broker has it first.
			if err := c.Disconnect(packet.Success, nil); err != nil {
				t.Fatal(err)
			}

			again := newInbox()
			o.OnMessage = again.add
			c = connect(t, o)
			m := again.wait(t, 1)[0]
			if string(m.Payload) != "not acked" || !m.Dup {
				t.Errorf("got %q (dup %v) again, want the message not acknowledged, with DUP", m.Payload, m.Dup)
			}
			c.Ack(m)
		})
	}
}

// Options.Dial makes the connection: here a broker's in-process one
// (broker.Server.DialInternal), which serves as a socket does.
func TestDialInternal(t *testing.T) {
	s := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	in := newInbox()
	c := connect(t, Options{Dial: s.DialInternal, Version: packet.V5, CleanStart: true, ClientID: "inside", OnMessage: in.add})
	if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "x/#", QoS: 1}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, Options{Addr: s.Addrs()[0].String(), CleanStart: true, ClientID: "outside"})
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "x/1", QoS: 1, Payload: []byte("in")}); err != nil {
		t.Fatal(err)
	}
	if m := in.wait(t, 1)[0]; string(m.Payload) != "in" || m.Topic != "x/1" {
		t.Errorf("got %q on %q", m.Payload, m.Topic)
	}
	s.Close()
	if _, err := s.DialInternal(context.Background()); err == nil {
		t.Error("DialInternal after Close: no error")
	}
}
