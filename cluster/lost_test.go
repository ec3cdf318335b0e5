package cluster

import (
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A node that is lost (cut off, or dead: unheard of for the node timeout)
// before it took a message sent to it does not make the publisher's
// acknowledgement say delivered: an MQTT 5 publisher gets PUBACK 0x80,
// an MQTT 3.1.1 publisher is disconnected without one (and publishes again
// when it reconnects). The lost node's persistent session is then taken
// over by the others, and messages for it are acknowledged again.
func TestClusterLostNodeFailsTheAcknowledgement(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2 := nodes[0].addr, nodes[1].addr

	sub, _ := connect5(t, n2, "lost-sub", true, nil)
	sub.Subscribe("lost/#", 1)
	p5, _ := connect5(t, n1, "lost-pub5", true, nil)
	p3, _ := wiretest.MustConnect(t, n1, "lost-pub3", true)
	if code := p5.SendPublish(&packet.Publish{Topic: "lost/before", Payload: []byte("x"), QoS: 1, PacketID: 1}); code != 0 {
		t.Fatalf("PUBACK 0x%02x while node 2 is up", byte(code))
	}

	// Node 2 drops off the cluster without a word: its NATS server stops,
	// its broker goes on.
	nodes[1].cl.ns.Shutdown()
	p5.Send(&packet.Publish{Topic: "lost/after", Payload: []byte("y"), QoS: 1, PacketID: 2})
	p3.Send(&packet.Publish{Topic: "lost/after", Payload: []byte("z"), QoS: 1, PacketID: 3})
	if a := p5.ExpectAck(packet.PUBACK, 2); a.Code != packet.UnspecifiedError {
		t.Fatalf("PUBACK 0x%02x for a message the lost node never took, want 0x80", byte(a.Code))
	}
	p3.ExpectClosed()
	// The subscriber's session was persistent: the nodes that are left
	// take it over from the replica (replica.go). Until then a message
	// for it is refused; after, it is delivered and acknowledged.
	// Both wait for JetStream's elections when node 2 led a stream (4 to
	// 9 s after the loss), and the replica's writes up to 15 s more.
	deadline := time.Now().Add(3 * claimTimeout)
	for {
		p5.Send(&packet.Publish{Topic: "lost/later", Payload: []byte("w"), QoS: 1, PacketID: 4})
		r, err := p5.Read(time.Until(deadline))
		if err != nil {
			t.Fatalf("no PUBACK for a message to the lost node's session: %v", err)
		}
		a, ok := r.(*packet.Ack)
		if !ok || a.Kind != packet.PUBACK {
			t.Fatalf("got %+v, want PUBACK", r)
		}
		if a.Code == packet.Success {
			break
		}
		if a.Code != packet.UnspecifiedError || time.Now().After(deadline) {
			t.Fatalf("PUBACK 0x%02x for a message to the lost node's session, want 0x80 then 0", byte(a.Code))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
