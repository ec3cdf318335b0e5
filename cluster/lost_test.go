package cluster

import (
	"testing"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A node that is lost (cut off, or dead: unheard of for the node timeout)
// before it took a message sent to it does not make the publisher's
// acknowledgement say delivered: an MQTT 5 publisher gets PUBACK 0x80,
// an MQTT 3.1.1 publisher is disconnected without one (and publishes again
// when it reconnects).
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
	// The publishers' messages to the nodes that are left are delivered
	// and acknowledged as before.
	if code := p5.SendPublish(&packet.Publish{Topic: "lost/later", Payload: []byte("w"), QoS: 1, PacketID: 4}); code != packet.NoMatchingSubscribers {
		t.Fatalf("PUBACK 0x%02x once node 2 is gone, want 0x10 (no subscriber left)", byte(code))
	}
}
