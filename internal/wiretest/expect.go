package wiretest

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Exchanges and expectations: each sends what a test means, reads the
// answer and fails the test, with the client's name, unless it is the one
// the test wants.

// SendConnect sends p and returns the CONNACK, whatever its code.
func (w *Client) SendConnect(p *packet.Connect) *packet.Connack {
	w.t.Helper()
	w.Send(p)
	got := w.Next()
	ack, ok := got.(*packet.Connack)
	if !ok {
		w.fatalf("got %s %+v, want CONNACK", got.Type(), got)
	}
	return ack
}

// NextPublish reads the next packet, which must be a PUBLISH.
func (w *Client) NextPublish() *packet.Publish {
	w.t.Helper()
	got := w.Next()
	pub, ok := got.(*packet.Publish)
	if !ok {
		w.fatalf("got %s %+v, want PUBLISH", got.Type(), got)
	}
	return pub
}

// ExpectAck reads the next packet, which must be kind (PUBACK, PUBREC,
// PUBREL, PUBCOMP) for packet id pid, and returns it.
func (w *Client) ExpectAck(kind packet.Type, pid uint16) *packet.Ack {
	w.t.Helper()
	got := w.Next()
	a, ok := got.(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != pid {
		w.fatalf("got %s %+v, want %s for packet id %d", got.Type(), got, kind, pid)
	}
	return a
}

// Ping makes a PINGREQ round trip: anything the broker sends before the
// PINGRESP fails the test. It proves the connection is served and that
// nothing was pending for it.
func (w *Client) Ping() {
	w.t.Helper()
	w.Send(&packet.Pingreq{})
	if got := w.Next(); got.Type() != packet.PINGRESP {
		w.fatalf("got %s %+v before PINGRESP, want nothing", got.Type(), got)
	}
}

// UntilPong sends PINGREQ and returns the PUBLISHes that arrive before the
// PINGRESP; any other packet fails the test. With ack, each QoS 1 PUBLISH
// is answered with PUBACK as it arrives; without, they stay unacknowledged.
func (w *Client) UntilPong(ack bool) []*packet.Publish {
	w.t.Helper()
	w.Send(&packet.Pingreq{})
	var pubs []*packet.Publish
	for {
		switch p := w.Next().(type) {
		case *packet.Pingresp:
			return pubs
		case *packet.Publish:
			pubs = append(pubs, p)
			w.ackQoS1(p, ack)
		default:
			w.fatalf("got %s %+v, want PUBLISH or PINGRESP", p.Type(), p)
		}
	}
}

// UntilTopic reads PUBLISHes until one on topic sentinel and returns those
// before it. With ack, each QoS 1 PUBLISH, the sentinel included, is
// answered with PUBACK as it arrives.
func (w *Client) UntilTopic(sentinel string, ack bool) []*packet.Publish {
	w.t.Helper()
	var pubs []*packet.Publish
	for {
		p := w.NextPublish()
		w.ackQoS1(p, ack)
		if p.Topic == sentinel {
			return pubs
		}
		pubs = append(pubs, p)
	}
}

func (w *Client) ackQoS1(p *packet.Publish, ack bool) {
	w.t.Helper()
	if ack && p.QoS == 1 {
		w.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
}

// Subscribe subscribes to one filter with packet id 1 and fails the test
// unless qos is granted.
func (w *Client) Subscribe(filter string, qos byte) {
	w.t.Helper()
	codes := w.SendSubscribe(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: filter, QoS: qos}}})
	if codes[0] != packet.ReasonCode(qos) {
		w.fatalf("SUBACK for %q: 0x%02x, want QoS %d granted", filter, byte(codes[0]), qos)
	}
}

// SendSubscribe sends s and returns the SUBACK's codes, one a
// subscription.
func (w *Client) SendSubscribe(s *packet.Subscribe) []packet.ReasonCode {
	w.t.Helper()
	w.Send(s)
	got := w.Next()
	sa, ok := got.(*packet.Suback)
	if !ok || sa.PacketID != s.PacketID || len(sa.Codes) != len(s.Subs) {
		w.fatalf("got %s %+v, want SUBACK for packet id %d with %d codes", got.Type(), got, s.PacketID, len(s.Subs))
	}
	return sa.Codes
}

// Publish sends a PUBLISH and does not wait for its acknowledgement.
func (w *Client) Publish(topic, payload string, qos byte, pid uint16, retain bool) {
	w.t.Helper()
	w.Send(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
}

// SendPublish sends p and returns the code of its acknowledgement: the
// PUBACK at QoS 1, the PUBREC at QoS 2 (the exchange goes no further),
// Success at QoS 0, which has none.
func (w *Client) SendPublish(p *packet.Publish) packet.ReasonCode {
	w.t.Helper()
	w.Send(p)
	switch p.QoS {
	case 1:
		return w.ExpectAck(packet.PUBACK, p.PacketID).Code
	case 2:
		return w.ExpectAck(packet.PUBREC, p.PacketID).Code
	}
	return packet.Success
}

// WaitClose waits for the broker to close the connection and returns what
// arrived first: nil, or the DISCONNECT it sent. Other packets fail the
// test, and so does a connection still open after timeout.
func (w *Client) WaitClose(timeout time.Duration) *packet.Disconnect {
	w.t.Helper()
	var disc *packet.Disconnect
	for {
		p, err := w.Read(timeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.fatalf("connection still open after %v", timeout)
			}
			w.Conn.Close()
			return disc
		}
		d, ok := p.(*packet.Disconnect)
		if !ok || disc != nil {
			w.fatalf("got %s %+v, want the connection closed", p.Type(), p)
		}
		disc = d
	}
}

// ExpectClosed requires the broker to close the connection without
// sending anything: what a 3.1.1 client sees of a refusal after CONNACK.
func (w *Client) ExpectClosed() {
	w.t.Helper()
	if d := w.WaitClose(Timeout); d != nil {
		w.fatalf("got DISCONNECT 0x%02x before the close; a %d client gets none", byte(d.Code), w.Version)
	}
}

// ExpectDisconnect requires a DISCONNECT with code, then the close, and
// returns the DISCONNECT.
func (w *Client) ExpectDisconnect(code packet.ReasonCode) *packet.Disconnect {
	w.t.Helper()
	d := w.WaitClose(Timeout)
	switch {
	case d == nil:
		w.fatalf("the connection closed without DISCONNECT; want DISCONNECT 0x%02x (%s)", byte(code), code)
	case d.Code != code:
		w.fatalf("DISCONNECT 0x%02x (%q), want 0x%02x (%s)", byte(d.Code), d.Props.ReasonString, byte(code), code)
	}
	return d
}

// Disconnect sends DISCONNECT and waits for the broker to close,
// discarding whatever arrives meanwhile.
func (w *Client) Disconnect() {
	w.t.Helper()
	w.Send(&packet.Disconnect{})
	w.Conn.SetReadDeadline(time.Now().Add(Timeout))
	io.Copy(io.Discard, w.Conn)
}
