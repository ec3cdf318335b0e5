package broker

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
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
	s := New(Options{Listeners: []ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: testlog.New(r.t), Store: r.st,
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

func wireConnect(t *testing.T, addr, id string, clean bool) (*wiretest.Client, bool) {
	t.Helper()
	return wiretest.MustConnect(t, addr, id, clean)
}

// [MQTT-3.1.2-4] v3.1.1
// [MQTT-3.1.2-5] v3.1.1
// [MQTT-4.1.0-1] v3.1.1
func TestRestartKeepsSessionsQueuesAndRetained(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "durable", false)
	sub.Subscribe("q/#", 2)
	sub.Disconnect()

	pub, _ := wireConnect(t, r.addr(), "pub", true)
	const n = 3000 // more than a session keeps in memory: the rest is paged in from the store
	for i := range n {
		qos := byte(1 + i%2)
		pid := uint16(i%60000 + 1)
		pub.Publish("q/x", fmt.Sprint(i), qos, pid, false)
		pub.ExpectAck(map[byte]packet.Type{1: packet.PUBACK, 2: packet.PUBREC}[qos], pid)
		if qos == 2 {
			pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
			pub.ExpectAck(packet.PUBCOMP, pid)
		}
	}
	pub.Publish("q/retained", "kept", 1, 1, true)
	pub.ExpectAck(packet.PUBACK, 1)

	r.restart()

	sub, present := wireConnect(t, r.addr(), "durable", false)
	if !present {
		t.Fatal("session present = 0 after a restart")
	}
	got, awaitingRel := 0, 0
	for got < n+1 || awaitingRel > 0 {
		switch p := sub.Next().(type) {
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
				sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			} else {
				sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				awaitingRel++
			}
		case *packet.Ack:
			if p.Kind != packet.PUBREL {
				t.Fatalf("unexpected %s", p.Kind)
			}
			sub.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			awaitingRel--
		default:
			t.Fatalf("unexpected %s", p.Type())
		}
	}
	sub.Ping()

	// The retained message survived too.
	other, _ := wireConnect(t, r.addr(), "other", true)
	other.Subscribe("q/retained", 1)
	if p, ok := other.Next().(*packet.Publish); !ok || string(p.Payload) != "kept" || !p.Retain {
		t.Fatalf("retained after restart: %+v", p)
	}
	other.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: 1})
	other.Ping()

	// Everything acknowledged is gone from the store but the session and the retained message.
	sub.Disconnect()
	other.Disconnect()
	r.restart()
	var messages int
	r.st.LoadMessages(func(uint64, []byte) error { messages++; return nil })
	if messages != 0 {
		t.Errorf("%d message bodies left in the store after every delivery was acknowledged", messages)
	}
	if q, in := r.storedQueues("durable"); q != 0 || in != 0 {
		t.Errorf("after every delivery was acknowledged the store holds %d queue entries and %d inbound ids; want none", q, in)
	}
}

// storedQueues counts the entries the store holds in the queue and the
// inbound QoS 2 ids of clientID's session.
func (r *restartable) storedQueues(clientID string) (queued, inbound int) {
	r.t.Helper()
	r.srv.mu.Lock()
	ss := r.srv.sessions.get(clientID)
	r.srv.mu.Unlock()
	if ss == nil {
		r.t.Fatalf("no session %q", clientID)
	}
	return r.countQueue(ss.queueName()), r.countQueue(ss.inboundName())
}

func (r *restartable) countQueue(name string) int {
	r.t.Helper()
	n := 0
	if err := r.st.LoadQueue(name, 0, func(uint64, []byte) (bool, error) { n++; return true, nil }); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// TestEndedSessionLeavesNothingInTheStore: a durable session that a clean
// start ends takes its record, its queue, its inbound QoS 2 ids and the
// message bodies only it referred to out of the store.
// [MQTT-3.1.2-6] v3.1.1
func TestEndedSessionLeavesNothingInTheStore(t *testing.T) {
	r := newRestartable(t)
	gone, _ := wireConnect(t, r.addr(), "gone", false)
	gone.Subscribe("gone/#", 1)
	gone.Publish("elsewhere", "awaiting PUBREL", 2, 5, false)
	gone.ExpectAck(packet.PUBREC, 5)
	hangUp(gone)
	pub, _ := wireConnect(t, r.addr(), "gone-pub", true)
	for i := range 3 {
		pub.Publish("gone/x", fmt.Sprint(i), 1, uint16(i+1), false)
		pub.ExpectAck(packet.PUBACK, uint16(i+1))
	}
	watcher := connectV5(t, r.addr(), "gone-watcher", false, 3600)
	commitBarrier(t, watcher, "gone-watch")

	r.srv.mu.Lock()
	ss := r.srv.sessions.get("gone")
	r.srv.mu.Unlock()
	queue, inbound := ss.queueName(), ss.inboundName()
	if q, in := r.countQueue(queue), r.countQueue(inbound); q != 3 || in != 1 {
		t.Fatalf("before the clean start the store holds %d queue entries and %d inbound ids; want 3 and 1", q, in)
	}

	gone, present := wireConnect(t, r.addr(), "gone", true)
	if present {
		t.Fatal("session present after a clean start")
	}
	hangUp(gone)
	commitBarrier(t, watcher, "gone-watch") // the old session's removal is committed

	if q, in := r.countQueue(queue), r.countQueue(inbound); q != 0 || in != 0 {
		t.Errorf("after the clean start the store holds %d queue entries and %d inbound ids of the ended session; want none", q, in)
	}
	var messages int
	r.st.LoadMessages(func(uint64, []byte) error { messages++; return nil })
	if messages != 0 {
		t.Errorf("%d message bodies left in the store that only the ended session referred to", messages)
	}
	r.st.LoadSessions(func(id string, _ []byte) error {
		if id == "gone" {
			t.Errorf("the ended session's record is still in the store")
		}
		return nil
	})
	hangUp(watcher)
	hangUp(pub)
}

// [MQTT-4.3.3-2] v3.1.1
func TestRestartKeepsInboundQoS2Ids(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "watcher", false)
	sub.Subscribe("once", 1)

	pub, _ := wireConnect(t, r.addr(), "pub", false)
	pub.Publish("once", "exactly", 2, 7, false)
	pub.ExpectAck(packet.PUBREC, 7)
	if p, ok := sub.Next().(*packet.Publish); !ok || string(p.Payload) != "exactly" {
		t.Fatalf("first delivery: %+v", p)
	} else {
		sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		sub.Ping() // the PUBACK is handled before the restart
	}

	r.restart()

	// The publisher did not get to send PUBREL: it re-sends the PUBLISH.
	pub, present := wireConnect(t, r.addr(), "pub", false)
	if !present {
		t.Fatal("publisher's session lost")
	}
	pub.Send(&packet.Publish{Topic: "once", Payload: []byte("exactly"), QoS: 2, PacketID: 7, Dup: true})
	pub.ExpectAck(packet.PUBREC, 7)
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	pub.ExpectAck(packet.PUBCOMP, 7)

	sub, _ = wireConnect(t, r.addr(), "watcher", false)
	// Nothing may arrive: the re-sent PUBLISH was a duplicate.
	sub.Ping()
	// And the id is free again.
	pub.Publish("once", "again", 2, 7, false)
	pub.ExpectAck(packet.PUBREC, 7)
	if p, ok := sub.Next().(*packet.Publish); !ok || string(p.Payload) != "again" {
		t.Fatalf("second message: %+v", p)
	}
}

// A QoS 2 delivery whose PUBREC arrived before the restart is finished with
// PUBREL after it, never sent again.
// [MQTT-4.4.0-1] v3.1.1
func TestRestartResumesQoS2Release(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "rx", false)
	sub.Subscribe("two", 2)
	pub, _ := wireConnect(t, r.addr(), "tx", true)
	pub.Publish("two", "x", 2, 1, false)
	pub.ExpectAck(packet.PUBREC, 1)
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	pub.ExpectAck(packet.PUBCOMP, 1)
	p, ok := sub.Next().(*packet.Publish)
	if !ok {
		t.Fatalf("got %+v", p)
	}
	sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	if rel, ok := sub.Next().(*packet.Ack); !ok || rel.Kind != packet.PUBREL {
		t.Fatalf("want PUBREL, got %+v", rel)
	}
	sub.Ping() // the PUBREC was handled before the restart

	r.restart()

	sub, _ = wireConnect(t, r.addr(), "rx", false)
	if rel, ok := sub.Next().(*packet.Ack); !ok || rel.Kind != packet.PUBREL || rel.PacketID != p.PacketID {
		t.Fatalf("after restart: want PUBREL %d, got %+v", p.PacketID, rel)
	}
	sub.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	sub.Ping()
}

func TestRecordsRoundTrip(t *testing.T) {
	m := &message{Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true, Expiry: time.UnixMilli(1700000000123)}
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
	w := &message{Topic: "w", Payload: []byte("bye")}
	setWillExpiry(w, 30)
	s := sessionRecord{uid: "u1", expiry: 3600, offlineSince: time.UnixMilli(1700000000000),
		subs: []storedSub{{key: "$share/g/x", qos: 1, opts: subNoLocal, subID: 9}}, will: w, willAt: time.UnixMilli(1700000001000)}
	gs, err := decodeSession(appendSession(nil, &s))
	if err != nil || gs.uid != "u1" || gs.expiry != 3600 || len(gs.subs) != 1 || gs.subs[0].key != "$share/g/x" ||
		gs.subs[0].opts != subNoLocal || gs.subs[0].subID != 9 || gs.will == nil || willExpiry(gs.will) != 30 ||
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

// Expired messages leave the store in the background: a retained message
// and the queue of an offline session, without anyone reconnecting.
// [MQTT-3.3.2-5] v5
func TestExpiredMessagesLeaveTheStore(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "offline", false)
	sub.Subscribe("exp/#", 1)
	sub.Disconnect()

	pub, ack := wiretest.Connect(t, r.addr(), &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "pub", KeepAlive: 60})
	if ack.Code != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	props := packet.Properties{MessageExpiry: 1}
	props.Mark(packet.PropMessageExpiry)
	pub.Send(&packet.Publish{Topic: "exp/q", Payload: []byte("short-lived"), QoS: 1, PacketID: 1, Props: props})
	pub.ExpectAck(packet.PUBACK, 1)
	pub.Send(&packet.Publish{Topic: "exp/r", Payload: []byte("retained, short-lived"), QoS: 1, PacketID: 2, Retain: true, Props: props})
	pub.ExpectAck(packet.PUBACK, 2)

	count := func() (queued, retained, bodies int) {
		r.st.LoadRetained(func(string, []byte) error { retained++; return nil })
		r.st.LoadMessages(func(uint64, []byte) error { bodies++; return nil })
		r.srv.mu.Lock()
		ss := r.srv.sessions.get("offline")
		r.srv.mu.Unlock()
		r.st.LoadQueue(ss.queueName(), 0, func(uint64, []byte) (bool, error) { queued++; return true, nil })
		return
	}
	if q, ret, b := count(); q != 2 || ret != 1 || b == 0 {
		t.Fatalf("before expiry: %d queued, %d retained, %d bodies; want 2, 1, some", q, ret, b)
	}
	// Nothing signals the passing of a second: poll, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, ret, b := count()
		if q == 0 && ret == 0 && b == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after expiry: %d queued, %d retained, %d bodies still in the store", q, ret, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sub, _ = wireConnect(t, r.addr(), "offline", false)
	sub.Ping() // nothing is delivered
}
