// Package wiretest is a minimal MQTT client for tests that need exact
// control of the packets: it sends what it is told and returns what
// arrives, decoded with package packet. It is not the product's client.
package wiretest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Timeout bounds every read and write.
const Timeout = 10 * time.Second

// Client is one raw MQTT connection.
type Client struct {
	t       testing.TB
	Conn    net.Conn
	Version byte
	dec     packet.Decoder
	buf     []byte
}

// Connect dials addr, sends c and returns the client with its CONNACK.
// It fails the test if the dial fails; the CONNACK is returned as it came.
func Connect(t testing.TB, addr string, c *packet.Connect) (*Client, *packet.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	if c.Version == 0 {
		c.Version = packet.V311
	}
	w := &Client{t: t, Conn: nc, Version: c.Version}
	w.dec.Version = c.Version
	w.Send(c)
	ack, ok := w.Next().(*packet.Connack)
	if !ok {
		t.Fatalf("%s: want CONNACK, got %+v", c.ClientID, ack)
	}
	return w, ack
}

// MustConnect is Connect that fails the test unless CONNACK accepts.
func MustConnect(t testing.TB, addr, clientID string, clean bool) (*Client, bool) {
	t.Helper()
	w, ack := Connect(t, addr, &packet.Connect{Version: packet.V311, CleanStart: clean, ClientID: clientID, KeepAlive: 60})
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK code 0x%02x", clientID, byte(ack.Code))
	}
	return w, ack.SessionPresent
}

// Send encodes and writes p.
func (w *Client) Send(p packet.Packet) {
	w.t.Helper()
	if err := w.TrySend(p); err != nil {
		w.t.Fatalf("send %s: %v", p.Type(), err)
	}
}

// TrySend is Send that returns the error instead of failing the test.
func (w *Client) TrySend(p packet.Packet) error {
	b, err := packet.Append(nil, p, w.Version)
	if err != nil {
		return err
	}
	w.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	_, err = w.Conn.Write(b)
	return err
}

// Next reads one packet; it fails the test on error or timeout.
func (w *Client) Next() packet.Packet {
	w.t.Helper()
	p, err := w.TryNext()
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return p
}

// TryNext reads one packet, a copy that stays valid after later reads.
func (w *Client) TryNext() (packet.Packet, error) {
	w.Conn.SetReadDeadline(time.Now().Add(Timeout))
	for {
		h, n, err := packet.ParseFixedHeader(w.buf, 0)
		if err == nil && len(w.buf) >= n+h.Remaining {
			p, err := w.dec.Decode(h, w.buf[n:n+h.Remaining])
			if err != nil {
				return nil, err
			}
			p = packet.Clone(p)
			w.buf = w.buf[n+h.Remaining:]
			return p, nil
		}
		if err != nil && err != packet.ErrIncomplete {
			return nil, err
		}
		tmp := make([]byte, 64<<10)
		k, err := w.Conn.Read(tmp)
		if err != nil {
			return nil, err
		}
		w.buf = append(w.buf, tmp[:k]...)
	}
}

// Publish sends a PUBLISH.
func (w *Client) Publish(topic, payload string, qos byte, pid uint16, retain bool) {
	w.t.Helper()
	w.Send(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
}

// ExpectAck reads the next packet and fails unless it is kind for pid.
func (w *Client) ExpectAck(kind packet.Type, pid uint16) {
	w.t.Helper()
	p := w.Next()
	if a, ok := p.(*packet.Ack); !ok || a.Kind != kind || a.PacketID != pid {
		w.t.Fatalf("want %s %d, got %s %+v", kind, pid, p.Type(), p)
	}
}

// Ping proves that nothing else is queued for the client: PINGRESP must be
// the next packet.
func (w *Client) Ping() {
	w.t.Helper()
	w.Send(&packet.Pingreq{})
	if p := w.Next(); p.Type() != packet.PINGRESP {
		w.t.Fatalf("want PINGRESP, got %s %+v", p.Type(), p)
	}
}

// Subscribe subscribes to one filter and checks the granted QoS.
func (w *Client) Subscribe(filter string, qos byte) {
	w.t.Helper()
	w.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: filter, QoS: qos}}})
	p := w.Next()
	if a, ok := p.(*packet.Suback); !ok || len(a.Codes) != 1 || a.Codes[0] != packet.ReasonCode(qos) {
		w.t.Fatalf("want SUBACK granting %d, got %s %+v", qos, p.Type(), p)
	}
}

// Disconnect sends DISCONNECT and waits for the broker to close.
func (w *Client) Disconnect() {
	w.Send(&packet.Disconnect{})
	w.Conn.SetReadDeadline(time.Now().Add(Timeout))
	io.Copy(io.Discard, w.Conn)
}

// Reply returns what a conforming subscriber answers to p: PUBACK or
// PUBREC for a PUBLISH at QoS 1 or 2, PUBCOMP for a PUBREL; nil for
// anything else.
func Reply(p packet.Packet) packet.Packet {
	switch p := p.(type) {
	case *packet.Publish:
		switch p.QoS {
		case 1:
			return &packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID}
		case 2:
			return &packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID}
		}
	case *packet.Ack:
		if p.Kind == packet.PUBREL {
			return &packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID}
		}
	}
	return nil
}

// DrainSession resumes clientID's persistent session (MQTT 3.1.1) and
// takes every queued message until a PINGREQ finds nothing more, calling
// each for every PUBLISH. It acknowledges as a conforming subscriber does:
// PUBACK at QoS 1, PUBREC at QoS 2 and PUBCOMP for the PUBREL.
func DrainSession(t testing.TB, addr, clientID string, each func(*packet.Publish)) {
	t.Helper()
	DrainSessionWith(t, addr, &packet.Connect{Version: packet.V311, ClientID: clientID, KeepAlive: 60}, each)
}

// DrainSessionWith is DrainSession with the CONNECT to resume with (which
// must not ask for a clean start): another protocol level, properties.
func DrainSessionWith(t testing.TB, addr string, c *packet.Connect, each func(*packet.Publish)) {
	t.Helper()
	clientID := c.ClientID
	w, ack := Connect(t, addr, c)
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK code 0x%02x", clientID, byte(ack.Code))
	}
	if !ack.SessionPresent {
		t.Fatalf("%s: session lost", clientID)
	}
	for {
		w.Send(&packet.Pingreq{})
		arrived := 0
		for done := false; !done; {
			switch p := w.Next().(type) {
			case *packet.Pingresp:
				done = true
			case *packet.Publish:
				arrived++
				each(p)
				if r := Reply(p); r != nil {
					w.Send(r)
				}
			case *packet.Ack:
				if p.Kind != packet.PUBREL {
					t.Fatalf("%s: unexpected %s", clientID, p.Kind)
				}
				arrived++
				w.Send(Reply(p))
			default:
				t.Fatalf("%s: unexpected %s", clientID, p.Type())
			}
		}
		if arrived == 0 {
			return
		}
	}
}
