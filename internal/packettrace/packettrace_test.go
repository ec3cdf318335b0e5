package packettrace

import (
	"bytes"
	"testing"

	"github.com/petrelmq/petrel/packet"
)

// TestTraceLines: one line a packet, as mosquitto's -d prints them, naming
// the client "(null)" until its identifier is known.
func TestTraceLines(t *testing.T) {
	var b bytes.Buffer
	tr := New(&b, "")
	tr.Trace(true, &packet.Connect{})
	tr.Trace(false, &packet.Connack{Code: 0})
	tr.SetClientID("auto-1")
	tr.Trace(true, &packet.Publish{Topic: "a/b", Payload: []byte("hello"), QoS: 1, Retain: true, PacketID: 7})
	tr.Trace(false, &packet.Ack{Kind: packet.PUBACK, PacketID: 7})
	tr.Trace(true, &packet.Subscribe{PacketID: 8, Subs: []packet.Subscription{{Filter: "x/#", QoS: 2}, {Filter: "y"}}})
	tr.Trace(false, &packet.Suback{PacketID: 8, Codes: []packet.ReasonCode{2, 0}})
	tr.Trace(true, &packet.Unsubscribe{PacketID: 9, Filters: []string{"x/#", "y"}})
	tr.Trace(false, &packet.Unsuback{PacketID: 9})
	tr.Trace(true, &packet.Disconnect{})
	want := "Client (null) sending CONNECT\n" +
		"Client (null) received CONNACK (0)\n" +
		"Client auto-1 sending PUBLISH (d0, q1, r1, m7, 'a/b', ... (5 bytes))\n" +
		"Client auto-1 received PUBACK (Mid: 7, RC:0)\n" +
		"Client auto-1 sending SUBSCRIBE (Mid: 8, Topic: x/#, QoS: 2, Topic: y, QoS: 0)\n" +
		"Client auto-1 received SUBACK (Mid: 8, Codes: [granted QoS 2 success])\n" +
		"Client auto-1 sending UNSUBSCRIBE (Mid: 9, Topics: x/#, y)\n" +
		"Client auto-1 received UNSUBACK (Mid: 9)\n" +
		"Client auto-1 sending DISCONNECT\n"
	if got := b.String(); got != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
}
