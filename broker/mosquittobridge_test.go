package broker

import (
	"testing"

	"github.com/petrelmq/petrel/packet"
)

// A client that connects as Mosquitto's bridges do by default is let in:
// protocol level 0x84 (try_private) and a will on its state topic under
// $SYS (notifications), where it then publishes "1". What it publishes does
// not come back to it, and a retained message reaches it retained. The
// state topic is its own: a plain client may not use one, nor a bridge
// another's.
func TestMosquittoBridgeClient(t *testing.T) {
	srv := secStart(t, Options{}, nil)
	addr := srv.Addrs()[0].String()
	watcher := secMustConnect(t, addr, connectPacket(packet.V311, "watcher"))
	watcher.send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{
		{Filter: "$SYS/broker/connection/#"}, {Filter: "a/#"}}})
	if a, ok := watcher.next().(*packet.Suback); !ok || a.Codes[0] != 0 || a.Codes[1] != 0 {
		t.Fatalf("watcher's SUBACK: %+v", a)
	}

	bridgeConnect := func(id, stateOf string) *packet.Connect {
		p := connectPacket(packet.V311, id)
		p.Bridge = true
		p.WillFlag, p.WillQoS, p.WillRetain = true, 1, true
		p.WillTopic, p.WillPayload = "$SYS/broker/connection/"+stateOf+"/state", []byte("0")
		return p
	}
	br := secMustConnect(t, addr, bridgeConnect("edge", "edge"))
	br.send(&packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: "$SYS/broker/connection/edge/state", Payload: []byte("1")})
	br.nextAck(packet.PUBACK, 1)
	if m := watcher.nextPublish(); m.Topic != "$SYS/broker/connection/edge/state" || string(m.Payload) != "1" {
		t.Fatalf("watcher got %s=%q, want the bridge's state 1", m.Topic, m.Payload)
	}

	br.send(&packet.Subscribe{PacketID: 2, Subs: []packet.Subscription{{Filter: "#", QoS: 1}}})
	if a, ok := br.next().(*packet.Suback); !ok || a.Codes[0] != 1 {
		t.Fatalf("bridge's SUBACK: %+v", a)
	}
	br.send(&packet.Publish{QoS: 1, PacketID: 3, Topic: "a/from-edge", Payload: []byte("x")})
	br.nextAck(packet.PUBACK, 3)
	if m := watcher.nextPublish(); m.Topic != "a/from-edge" {
		t.Fatalf("watcher got %s, want a/from-edge", m.Topic)
	}
	other := secMustConnect(t, addr, connectPacket(packet.V311, "other"))
	other.send(&packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: "a/retained", Payload: []byte("r")})
	other.nextAck(packet.PUBACK, 1)
	if m := watcher.nextPublish(); m.Topic != "a/retained" {
		t.Fatalf("watcher got %s, want a/retained", m.Topic)
	}
	// The bridge's own a/from-edge, had it come back, would be first.
	if m := br.nextPublish(); m.Topic != "a/retained" || !m.Retain {
		t.Fatalf("bridge got %s (retain %v), want a/retained, retained", m.Topic, m.Retain)
	}

	for _, p := range []*packet.Connect{bridgeConnect("edge2", "edge"), func() *packet.Connect {
		p := bridgeConnect("plain", "plain")
		p.Bridge = false
		return p
	}()} {
		if _, ack := secConnect(t, addr, p); ack.Code == packet.Success {
			t.Errorf("%s (bridge %v): will on %s accepted, want refused", p.ClientID, p.Bridge, p.WillTopic)
		}
	}

	// Its will says it is gone.
	br.nc.Close()
	if m := watcher.nextPublish(); m.Topic != "$SYS/broker/connection/edge/state" || string(m.Payload) != "0" {
		t.Fatalf("watcher got %s=%q, want the bridge's will 0", m.Topic, m.Payload)
	}
}
