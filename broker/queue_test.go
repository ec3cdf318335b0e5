package broker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// The queue against a plain slice of deliveries: whatever it packs, what
// comes out is what went in, in order, with the byte counts kept.
func TestMessageQueueMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shared := &message{Topic: "shared/t", Payload: []byte("shared by many"), QoS: 1}
	seq := uint64(0)
	newDelivery := func() delivery {
		seq++
		var m *message
		switch r.IntN(6) {
		case 0:
			m = shared
		case 1:
			m = &message{Topic: "with/props", Payload: []byte("p"), QoS: 2,
				Props: &packet.Properties{Present: forwarded, PayloadFormat: 1, ContentType: "text/plain",
					ResponseTopic: "reply/here", CorrelationData: []byte{byte(seq)},
					User: []packet.UserProperty{{Key: "k", Value: fmt.Sprint(seq)}, {Key: "k", Value: ""}}}}
			if r.IntN(3) == 0 {
				m.Props.User = append(m.Props.User, packet.UserProperty{Key: "big", Value: string(make([]byte, maxPackedProps))})
			}
		case 2:
			m = &message{Topic: "big", Payload: make([]byte, maxPacked+1), QoS: 1}
		default:
			m = &message{Topic: fmt.Sprint("dev/", r.IntN(1000), "/temp"), Payload: fmt.Appendf(nil, "reading %d", seq),
				QoS: byte(r.IntN(3)), Retain: r.IntN(2) == 0}
			if r.IntN(3) == 0 {
				m.Expiry = time.Unix(0, time.Now().UnixNano()+r.Int64N(1e12))
			}
			if r.IntN(10) == 0 {
				m.Topic, m.Payload = "", nil // an alias-only topic never reaches here, but empty must work
			}
		}
		d := delivery{msg: m, qos: min(m.QoS, byte(r.IntN(3))), retain: r.IntN(2) == 0, dup: r.IntN(5) == 0,
			seq: seq, sole: m != shared}
		if r.IntN(4) == 0 {
			d.subIDs = []uint32{uint32(r.IntN(1 << 20)), 1}
		}
		return d
	}
	var mem, n atomic.Int64
	acct := queueAcct{&mem, &n}
	q := new(messageQueue)
	var model []delivery
	for step := range 20000 {
		switch op := r.IntN(10); {
		case op < 5:
			d := newDelivery()
			q.push(acct, d)
			model = append(model, d)
		case op < 9 && len(model) > 0:
			qos, s := q.front()
			if qos != model[0].qos || s != model[0].seq {
				t.Fatalf("step %d: front (%d, %d), want (%d, %d)", step, qos, s, model[0].qos, model[0].seq)
			}
			got := q.pop(acct)
			sameDelivery(t, step, got, model[0])
			model = model[1:]
		case op == 9 && len(model) > 0 && r.IntN(10) == 0:
			// A reconnect with a smaller window puts deliveries back in front.
			var back []inflight
			for range r.IntN(3) + 1 {
				back = append(back, inflight{delivery: newDelivery()})
			}
			q.pushFront(acct, back)
			var front []delivery
			for _, f := range back {
				front = append(front, f.delivery)
			}
			model = append(front, model...)
		}
		if q.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, q.len(), len(model))
		}
		var want int64
		for _, d := range model {
			want += int64(len(d.msg.Payload))
		}
		if q.queuedBytes() != want || mem.Load() != want {
			t.Fatalf("step %d: %d bytes queued (budget %d), want %d", step, q.queuedBytes(), mem.Load(), want)
		}
		if n.Load() != int64(q.len()) {
			t.Fatalf("step %d: %d deliveries counted, %d queued", step, n.Load(), q.len())
		}
	}
	q.reset(acct)
	if q.len() != 0 || mem.Load() != 0 || n.Load() != 0 {
		t.Fatalf("after reset: len %d, budget %d, counted %d", q.len(), mem.Load(), n.Load())
	}
}

func sameDelivery(t *testing.T, step int, got, want delivery) {
	t.Helper()
	g, w := got.msg, want.msg
	switch {
	case got.qos != want.qos || got.retain != want.retain || got.dup != want.dup || got.seq != want.seq:
		t.Fatalf("step %d: delivery %+v, want %+v", step, got, want)
	case !slices.Equal(got.subIDs, want.subIDs):
		t.Fatalf("step %d: subscription ids %v, want %v", step, got.subIDs, want.subIDs)
	case g.Topic != w.Topic || !bytes.Equal(g.Payload, w.Payload) || g.QoS != w.QoS || g.Retain != w.Retain:
		t.Fatalf("step %d: message %q %q qos %d retain %v, want %q %q qos %d retain %v",
			step, g.Topic, g.Payload, g.QoS, g.Retain, w.Topic, w.Payload, w.QoS, w.Retain)
	case !g.Expiry.Equal(w.Expiry):
		t.Fatalf("step %d: expiry %v, want %v", step, g.Expiry, w.Expiry)
	case !sameProps(g.Props, w.Props):
		t.Fatalf("step %d: properties %+v, want %+v", step, g.Props, w.Props)
	case !packable(&want) && g != w:
		t.Fatalf("step %d: a delivery that cannot be packed came back with another message", step)
	}
}

// A queued message that only its queue holds costs little more than its
// topic and payload; the message is made again when it leaves.
func TestMessageQueuePacksSoleDeliveries(t *testing.T) {
	var mem, count atomic.Int64
	acct := queueAcct{&mem, &count}
	q := new(messageQueue)
	m := &message{Topic: "building/3/floor/2/temp", Payload: make([]byte, 64), QoS: 1}
	const n = 1000
	for i := range n {
		q.push(acct, delivery{msg: m, qos: 1, seq: uint64(i + 1), sole: true})
	}
	if len(q.refs) != 0 {
		t.Fatalf("%d sole deliveries kept by reference, want all packed", len(q.refs))
	}
	used := 0
	for _, c := range q.chunks {
		used += cap(c)
	}
	if per := float64(used) / n; per > 1.2*float64(len(m.Topic)+len(m.Payload)) {
		t.Fatalf("%.0f bytes per packed delivery of %d bytes", per, len(m.Topic)+len(m.Payload))
	}
	d := q.pop(acct)
	if d.msg == m {
		t.Fatal("a packed delivery came back with the message it was packed from")
	}
	// The message made again is counted, held by the delivery, so that it
	// goes back to the pool when the delivery is done with (pool.go).
	if r := d.msg.refs.Load(); r != 1 {
		t.Fatalf("the message a packed delivery came back with has %d holders, want 1", r)
	}
	// MQTT 5 properties are packed with the message.
	m5 := &message{Topic: m.Topic, Payload: m.Payload, QoS: 1, Props: &packet.Properties{
		Present: 1 << packet.PropContentType, ContentType: "application/json",
		User: []packet.UserProperty{{Key: "site", Value: "north"}}}}
	q.push(acct, delivery{msg: m5, qos: 1, seq: n + 1, sole: true})
	if len(q.refs) != 0 {
		t.Fatal("a sole delivery with properties kept by reference, want it packed")
	}
}

// sameProps compares the properties a queue keeps: the forwarded ones.
func sameProps(a, b *packet.Properties) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Present&forwarded == b.Present&forwarded && a.PayloadFormat == b.PayloadFormat &&
		a.ContentType == b.ContentType && a.ResponseTopic == b.ResponseTopic &&
		bytes.Equal(a.CorrelationData, b.CorrelationData) && slices.Equal(a.User, b.User)
}
