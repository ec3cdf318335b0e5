package cluster

import (
	"fmt"
	"testing"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// connect5 connects an MQTT 5 client with a session that outlives its
// connection; it returns the client and whether its session was present.
func connect5(t *testing.T, addr, id string, clean bool, adjust func(*packet.Connect)) (*wiretest.Client, bool) {
	t.Helper()
	c := &packet.Connect{Version: packet.V5, CleanStart: clean, ClientID: id, KeepAlive: 60}
	c.Props.SessionExpiry = 300
	c.Props.Mark(packet.PropSessionExpiry)
	if adjust != nil {
		adjust(c)
	}
	w, ack := wiretest.Connect(t, addr, c)
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK 0x%02x", id, byte(ack.Code))
	}
	return w, ack.SessionPresent
}

// A client that connects to another node takes its session from the node
// that held it: the connection there is told that its session was taken
// over, and the new one finds the session present with its subscriptions,
// its queue in order, what was in flight again with the same packet ids
// (DUP set), PUBREL for the QoS 2 message it had received, and the QoS 2
// packet id it had sent and not released. Messages published afterwards
// go to the new node only. [MQTT-3.1.2-4] [MQTT-3.1.4-3] [MQTT-4.4.0-1]
// [MQTT-3.2.2-3]
func TestClusterSessionMovesWithItsClient(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	sub, present := connect5(t, n1, "mover", true, nil)
	if present {
		t.Fatal("a new session is present")
	}
	sub.SendSubscribe(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{
		{Filter: "q1/#", QoS: 1}, {Filter: "q2/#", QoS: 2}}})
	pub, _ := connect5(t, n3, "pub", true, nil)

	// In flight on n1: a QoS 1 message unacknowledged, a QoS 2 message
	// received (PUBREC sent) but not completed.
	if code := pub.SendPublish(&packet.Publish{Topic: "q1/a", Payload: []byte("one"), QoS: 1, PacketID: 1}); code != 0 {
		t.Fatalf("PUBACK 0x%02x", byte(code))
	}
	p1 := sub.NextPublish()
	if pub.SendPublish(&packet.Publish{Topic: "q2/a", Payload: []byte("two"), QoS: 2, PacketID: 2}) != 0 {
		t.Fatal("PUBREC refused")
	}
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
	pub.ExpectAck(packet.PUBCOMP, 2)
	p2 := sub.NextPublish()
	sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p2.PacketID})
	sub.ExpectAck(packet.PUBREL, p2.PacketID)
	// A QoS 2 message from the client, not yet released.
	if sub.SendPublish(&packet.Publish{Topic: "elsewhere", Payload: []byte("x"), QoS: 2, PacketID: 7}) >= 0x80 {
		t.Fatal("PUBREC refused")
	}
	sub.Ping() // everything above is taken

	// The client comes back on n2 while its connection to n1 is open.
	sub2, present := connect5(t, n2, "mover", false, nil)
	if !present {
		t.Fatal("the session did not follow the client to another node")
	}
	if d := sub.WaitClose(wiretest.Timeout); d == nil || d.Code != packet.SessionTakenOver {
		t.Fatalf("the old connection got %+v, want DISCONNECT 0x8E", d)
	}
	got := sub2.NextPublish()
	if got.Topic != "q1/a" || !got.Dup || got.PacketID != p1.PacketID {
		t.Fatalf("resent: %s dup=%v pid=%d, want q1/a dup=true pid=%d", got.Topic, got.Dup, got.PacketID, p1.PacketID)
	}
	sub2.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID})
	sub2.ExpectAck(packet.PUBREL, p2.PacketID) // not the PUBLISH again: it was received
	sub2.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p2.PacketID})
	// The client's own QoS 2 id is still awaiting release.
	sub2.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	if a := sub2.ExpectAck(packet.PUBCOMP, 7); a.Code != packet.Success {
		t.Fatalf("PUBCOMP for the client's own QoS 2 id: 0x%02x, want success (the id moved)", byte(a.Code))
	}

	// From now on messages go to n2.
	for i := range 5 {
		pub.SendPublish(&packet.Publish{Topic: "q1/b", Payload: fmt.Appendf(nil, "after %d", i), QoS: 1, PacketID: uint16(10 + i)})
	}
	for i := range 5 {
		p := sub2.NextPublish()
		if want := fmt.Sprintf("after %d", i); string(p.Payload) != want || p.Dup {
			t.Fatalf("got %q dup=%v, want %q", p.Payload, p.Dup, want)
		}
		sub2.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	sub2.Ping()
}

// A session whose client is away keeps what comes for it on its node;
// the client, back on another node, gets all of it, in order, once.
// [MQTT-3.1.2-5] (v5) [MQTT-4.6.0-6]
func TestClusterOfflineSessionMovesWithItsQueue(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	sub, _ := connect5(t, n1, "away", true, nil)
	sub.SendSubscribe(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "q/#", QoS: 2}}})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()

	pub, _ := connect5(t, n3, "pub", true, nil)
	const n = 3000
	for i := range n {
		qos := byte(1 + i%2)
		pid := uint16(i%60000 + 1)
		pub.Send(&packet.Publish{Topic: "q/x", Payload: fmt.Appendf(nil, "%d", i), QoS: qos, PacketID: pid})
		a := pub.Next().(*packet.Ack)
		if qos == 2 {
			pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: a.PacketID})
			pub.ExpectAck(packet.PUBCOMP, a.PacketID)
		}
	}
	next := 0
	wiretest.DrainSessionWith(t, n2, &packet.Connect{Version: packet.V5, ClientID: "away", KeepAlive: 60,
		Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 300}}, func(p *packet.Publish) {
		if want := fmt.Sprint(next); string(p.Payload) != want {
			t.Fatalf("message %d: got %q", next, p.Payload)
		}
		next++
	})
	if next != n {
		t.Fatalf("%d of %d messages arrived", next, n)
	}
}
