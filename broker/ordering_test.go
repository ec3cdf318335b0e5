package broker

import (
	"fmt"
	"net"
	"testing"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A SUBSCRIBE that reached the broker before another client's PUBLISH takes
// effect first, on a broker that is not busy: what a single-threaded broker
// gives, and what test suites (Paho's interoperability suite among them)
// count on when one client subscribes and another publishes at once,
// without waiting for SUBACK. The two connections land on different event
// loops (GOMAXPROCS at its default); with loops that each parked on Go's
// poller, most rounds missed the message.
//
// "Reached" is when the kernel announces the bytes, which is later than
// their arrival if the broker is then in a system call on that socket
// (writing the CONNACK or PINGRESP the client just read, reading its
// earlier bytes): the socket's owner holds its lock, so they wait in its
// backlog until the call returns, and another client's PUBLISH sent
// meanwhile is announced first. Traced, that was every miss left (about
// one round in 30,000); Mosquitto's single epoll set gets the kernel's
// order just the same. So each round starts once the broker is provably
// done with sub's socket: a ping on sub, after which nothing is due on
// it, then one on pub, which the hub serves only after the turn that
// answered sub's had ended.
func TestSubscribeTakesEffectBeforeALaterPublish(t *testing.T) {
	s := startServer(t, Options{Limits: Limits{ControlRate: -1}})
	addr := s.Addrs()[0].String()
	pub, _ := wiretest.MustConnect(t, addr, "pub", true)
	sub, _ := wiretest.MustConnect(t, addr, "sub", true)
	const rounds = 500
	missed := 0
	for i := range rounds {
		topic := fmt.Sprintf("order/%d", i)
		sub.Ping()
		pub.Ping()
		// Both writes leave this goroutine back to back, the SUBSCRIBE first.
		sub.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: topic, QoS: 1}}})
		pub.Publish(topic, "m", 1, 1, false)
		pub.ExpectAck(packet.PUBACK, 1)
		if p := sub.Next(); p.Type() != packet.SUBACK {
			t.Fatalf("round %d: want SUBACK, got %s", i, p.Type())
		}
		// The PUBACK came after routing: the message is on its way to sub
		// by now or was never going to be. PINGRESP follows it.
		sub.Send(&packet.Pingreq{})
		got := false
		for {
			p := sub.Next()
			if p.Type() == packet.PINGRESP {
				break
			}
			m, ok := p.(*packet.Publish)
			if !ok || m.Topic != topic {
				t.Fatalf("round %d: want PUBLISH on %s or PINGRESP, got %s %+v", i, topic, p.Type(), p)
			}
			got = true
			sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
		}
		if !got {
			missed++
		}
	}
	if missed > 0 {
		t.Fatalf("%d of %d messages published after a SUBSCRIBE reached the broker missed it", missed, rounds)
	}
}

// A connection's will is published when its close is read, before a
// client that connects afterwards can subscribe: the will, retained, then
// reaches that client as a retained message, not a live one.
// [MQTT-3.1.2-8] [MQTT-3.1.2-17]
func TestWillPublishedBeforeTheNextClientSubscribes(t *testing.T) {
	s := startServer(t, Options{Limits: Limits{ControlRate: -1}})
	addr := s.Addrs()[0].String()
	const rounds = 100
	for i := range rounds {
		topic := fmt.Sprintf("will/%d", i)
		w, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V311, CleanStart: true, ClientID: "w", KeepAlive: 60,
			WillFlag: true, WillTopic: topic, WillPayload: []byte("gone"), WillQoS: 1, WillRetain: true})
		w.Conn.(*net.TCPConn).Close() // no DISCONNECT: the will goes out
		sub, _ := wiretest.MustConnect(t, addr, "s", true)
		sub.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: topic, QoS: 1}}})
		if p := sub.Next(); p.Type() != packet.SUBACK {
			t.Fatalf("round %d: want SUBACK, got %s", i, p.Type())
		}
		p, ok := sub.Next().(*packet.Publish)
		if !ok || p.Topic != topic || string(p.Payload) != "gone" {
			t.Fatalf("round %d: want the will, got %+v", i, p)
		}
		if !p.Retain {
			t.Fatalf("round %d: the will arrived live, after the SUBSCRIBE that followed the close", i)
		}
		sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		sub.Disconnect()
	}
}
