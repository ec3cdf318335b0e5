package broker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
)

// These tests restart the broker on the same store, in process: the second
// server must find what the first one acknowledged. (The crash tests with
// the Pebble store and kill -9 are in cmd/petrel.)

// restartable runs brokers one after another on one store.
type restartable struct {
	t   *testing.T
	st  store.Store
	srv *Server
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{t: t, st: memory.New()}
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.Close()
		}
		r.st.Close()
	})
	r.start()
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	s := New(Options{Listeners: []ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: testLogger(r.t), Store: r.st,
		MaxQueuedMessages: 100000})
	if err := s.Start(); err != nil {
		r.t.Fatalf("start: %v", err)
	}
	r.srv = s
}

func (r *restartable) restart() {
	r.t.Helper()
	if err := r.srv.Close(); err != nil {
		r.t.Fatalf("close: %v", err)
	}
	r.srv = nil
	r.start()
}

func (r *restartable) addr() string { return r.srv.Addrs()[0].String() }

// wireClient speaks raw MQTT 3.1.1 with packet's codec.
type wireClient struct {
	t   *testing.T
	c   net.Conn
	dec packet.Decoder
	buf []byte
}

func wireConnect(t *testing.T, addr, id string, clean bool) (*wireClient, bool) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wireTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	w := &wireClient{t: t, c: nc}
	w.dec.Version = packet.V311
	w.send(&packet.Connect{Version: packet.V311, CleanStart: clean, ClientID: id, KeepAlive: 60})
	ack, ok := w.next().(*packet.Connack)
	if !ok || ack.Code != 0 {
		t.Fatalf("%s: CONNACK %+v", id, ack)
	}
	return w, ack.SessionPresent
}

func (w *wireClient) send(p packet.Packet) {
	w.t.Helper()
	b, err := packet.Append(nil, p, packet.V311)
	if err != nil {
		w.t.Fatal(err)
	}
	w.c.SetWriteDeadline(time.Now().Add(wireTimeout))
	if _, err := w.c.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next reads one packet. It is decoded into a copy, valid after later reads.
func (w *wireClient) next() packet.Packet {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(wireTimeout))
	for {
		h, n, err := packet.ParseFixedHeader(w.buf, 0)
		if err == nil && len(w.buf) >= n+h.Remaining {
			p, err := w.dec.Decode(h, w.buf[n:n+h.Remaining])
			if err != nil {
				w.t.Fatalf("decode: %v", err)
			}
			p = packet.Clone(p)
			w.buf = w.buf[n+h.Remaining:]
			return p
		}
		if err != nil && err != packet.ErrIncomplete {
			w.t.Fatalf("header: %v", err)
		}
		tmp := make([]byte, 64<<10)
		k, err := w.c.Read(tmp)
		if err != nil {
			w.t.Fatalf("read: %v (buffered % x)", err, w.buf)
		}
		w.buf = append(w.buf, tmp[:k]...)
	}
}

func (w *wireClient) publish(topic, payload string, qos byte, pid uint16, retain bool) {
	w.send(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
}

// expectAck reads the acknowledgement of a PUBLISH.
func (w *wireClient) expectAck(kind packet.Type, pid uint16) {
	w.t.Helper()
	a, ok := w.next().(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != pid {
		w.t.Fatalf("want %s %d, got %+v", kind, pid, a)
	}
}

func (w *wireClient) ping() {
	w.t.Helper()
	w.send(&packet.Pingreq{})
	if p := w.next(); p.Type() != packet.PINGRESP {
		w.t.Fatalf("want PINGRESP, got %s %+v", p.Type(), p)
	}
}

func (w *wireClient) subscribe(filter string, qos byte) {
	w.t.Helper()
	w.send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: filter, QoS: qos}}})
	if a, ok := w.next().(*packet.Suback); !ok || len(a.Codes) != 1 || a.Codes[0] != packet.ReasonCode(qos) {
		w.t.Fatalf("SUBACK %+v", a)
	}
}

func (w *wireClient) disconnect() {
	w.send(&packet.Disconnect{})
	w.c.SetReadDeadline(time.Now().Add(wireTimeout))
	io.Copy(io.Discard, w.c)
}

// [MQTT-3.1.2-4] v3.1.1
// [MQTT-3.1.2-5] v3.1.1
// [MQTT-4.1.0-1] v3.1.1
func TestRestartKeepsSessionsQueuesAndRetained(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "durable", false)
	sub.subscribe("q/#", 2)
	sub.disconnect()

	pub, _ := wireConnect(t, r.addr(), "pub", true)
	const n = 3000 // more than a session keeps in memory: the rest is paged in from the store
	for i := range n {
		qos := byte(1 + i%2)
		pid := uint16(i%60000 + 1)
		pub.publish("q/x", fmt.Sprint(i), qos, pid, false)
		pub.expectAck(map[byte]packet.Type{1: packet.PUBACK, 2: packet.PUBREC}[qos], pid)
		if qos == 2 {
			pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
			pub.expectAck(packet.PUBCOMP, pid)
		}
	}
	pub.publish("q/retained", "kept", 1, 1, true)
	pub.expectAck(packet.PUBACK, 1)

	r.restart()

	sub, present := wireConnect(t, r.addr(), "durable", false)
	if !present {
		t.Fatal("session present = 0 after a restart")
	}
	got, awaitingRel := 0, 0
	for got < n+1 || awaitingRel > 0 {
		switch p := sub.next().(type) {
		case *packet.Publish:
			want := fmt.Sprint(got)
			if got == n {
				want = "kept"
			}
			if string(p.Payload) != want {
				t.Fatalf("message %d: payload %q, want %q (order must be kept)", got, p.Payload, want)
			}
			got++
			if p.QoS == 1 {
				sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			} else {
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				awaitingRel++
			}
		case *packet.Ack:
			if p.Kind != packet.PUBREL {
				t.Fatalf("unexpected %s", p.Kind)
			}
			sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			awaitingRel--
		default:
			t.Fatalf("unexpected %s", p.Type())
		}
	}
	sub.ping()

	// The retained message survived too.
	other, _ := wireConnect(t, r.addr(), "other", true)
	other.subscribe("q/retained", 1)
	if p, ok := other.next().(*packet.Publish); !ok || string(p.Payload) != "kept" || !p.Retain {
		t.Fatalf("retained after restart: %+v", p)
	}
	other.send(&packet.Ack{Kind: packet.PUBACK, PacketID: 1})
	other.ping()

	// Everything acknowledged is gone from the store but the session and the retained message.
	sub.disconnect()
	other.disconnect()
	r.restart()
	var queues, messages int
	r.st.LoadMessages(func(uint64, []byte) error { messages++; return nil })
	r.st.LoadSessions(func(id string, _ []byte) error {
		r.st.LoadQueue(id, 0, func(uint64, []byte) (bool, error) { queues++; return true, nil })
		return nil
	})
	if messages != 0 {
		t.Errorf("%d message bodies left in the store after every delivery was acknowledged", messages)
	}
}

// [MQTT-4.3.3-2] v3.1.1
func TestRestartKeepsInboundQoS2Ids(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "watcher", false)
	sub.subscribe("once", 1)

	pub, _ := wireConnect(t, r.addr(), "pub", false)
	pub.publish("once", "exactly", 2, 7, false)
	pub.expectAck(packet.PUBREC, 7)
	if p, ok := sub.next().(*packet.Publish); !ok || string(p.Payload) != "exactly" {
		t.Fatalf("first delivery: %+v", p)
	} else {
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		sub.ping() // the PUBACK is handled before the restart
	}

	r.restart()

	// The publisher did not get to send PUBREL: it re-sends the PUBLISH.
	pub, present := wireConnect(t, r.addr(), "pub", false)
	if !present {
		t.Fatal("publisher's session lost")
	}
	pub.send(&packet.Publish{Topic: "once", Payload: []byte("exactly"), QoS: 2, PacketID: 7, Dup: true})
	pub.expectAck(packet.PUBREC, 7)
	pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	pub.expectAck(packet.PUBCOMP, 7)

	sub, _ = wireConnect(t, r.addr(), "watcher", false)
	// Nothing may arrive: the re-sent PUBLISH was a duplicate.
	sub.ping()
	// And the id is free again.
	pub.publish("once", "again", 2, 7, false)
	pub.expectAck(packet.PUBREC, 7)
	if p, ok := sub.next().(*packet.Publish); !ok || string(p.Payload) != "again" {
		t.Fatalf("second message: %+v", p)
	}
}

// A QoS 2 delivery whose PUBREC arrived before the restart is finished with
// PUBREL after it, never sent again.
// [MQTT-4.4.0-1] v3.1.1
func TestRestartResumesQoS2Release(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "rx", false)
	sub.subscribe("two", 2)
	pub, _ := wireConnect(t, r.addr(), "tx", true)
	pub.publish("two", "x", 2, 1, false)
	pub.expectAck(packet.PUBREC, 1)
	pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	pub.expectAck(packet.PUBCOMP, 1)
	p, ok := sub.next().(*packet.Publish)
	if !ok {
		t.Fatalf("got %+v", p)
	}
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	if rel, ok := sub.next().(*packet.Ack); !ok || rel.Kind != packet.PUBREL {
		t.Fatalf("want PUBREL, got %+v", rel)
	}
	sub.ping() // the PUBREC was handled before the restart

	r.restart()

	sub, _ = wireConnect(t, r.addr(), "rx", false)
	if rel, ok := sub.next().(*packet.Ack); !ok || rel.Kind != packet.PUBREL || rel.PacketID != p.PacketID {
		t.Fatalf("after restart: want PUBREL %d, got %+v", p.PacketID, rel)
	}
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	sub.ping()
}

func TestRecordsRoundTrip(t *testing.T) {
	m := &Message{Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true, Expiry: time.UnixMilli(1700000000123)}
	m.Props = &packet.Properties{ContentType: "text/plain", CorrelationData: []byte{1, 2},
		User: []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	m.Props.Mark(packet.PropContentType)
	m.Props.Mark(packet.PropCorrelationData)
	got, err := decodeMessage(appendMessage(nil, m))
	if err != nil || got.Topic != m.Topic || !bytes.Equal(got.Payload, m.Payload) || got.QoS != 2 || !got.Retain ||
		!got.Expiry.Equal(m.Expiry) || got.Props.ContentType != "text/plain" || len(got.Props.User) != 2 ||
		got.Props.User[1].Value != "w" || !bytes.Equal(got.Props.CorrelationData, []byte{1, 2}) {
		t.Fatalf("message round trip: %+v %+v (%v)", got, got.Props, err)
	}
	e := queueEntry{msgID: 42, qos: 1, retain: true, released: true, size: 5, subIDs: []uint32{1, 300000}}
	ge, err := decodeEntry(appendEntry(nil, &e))
	if err != nil || ge.msgID != 42 || ge.qos != 1 || !ge.retain || !ge.released || ge.size != 5 || len(ge.subIDs) != 2 || ge.subIDs[1] != 300000 {
		t.Fatalf("entry round trip: %+v (%v)", ge, err)
	}
	w := &Message{Topic: "w", Payload: []byte("bye"), willExpiry: 30}
	s := sessionRecord{uid: "u1", expiry: 3600, offlineSince: time.UnixMilli(1700000000000),
		subs: []storedSub{{key: "$share/g/x", qos: 1, opts: subNoLocal, subID: 9}}, will: w, willAt: time.UnixMilli(1700000001000)}
	gs, err := decodeSession(appendSession(nil, &s))
	if err != nil || gs.uid != "u1" || gs.expiry != 3600 || len(gs.subs) != 1 || gs.subs[0].key != "$share/g/x" ||
		gs.subs[0].opts != subNoLocal || gs.subs[0].subID != 9 || gs.will == nil || gs.will.willExpiry != 30 ||
		!gs.willAt.Equal(s.willAt) {
		t.Fatalf("session round trip: %+v (%v)", gs, err)
	}
	for _, bad := range [][]byte{nil, {9}, {1}, appendMessage(nil, m)[:3]} {
		if _, err := decodeMessage(bad); err == nil {
			t.Errorf("decodeMessage(% x) succeeded", bad)
		}
		if _, err := decodeSession(bad); err == nil {
			t.Errorf("decodeSession(% x) succeeded", bad)
		}
	}
}
