package broker

import (
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// FuzzRecordDecoders gives arbitrary bytes to each decoder of the records
// the broker keeps in the store (decodeMessage, decodeEntry,
// decodeSession), as a damaged or hostile store would. Each must return an
// error or a value, never panic, and never allocate more than a small
// multiple of the record's size, whatever a length field in it claims. A
// value that decodes must be one the broker could have written (QoS 0 to
// 2), and must survive its encoder: encoding it and decoding that gives an
// equal value.
func FuzzRecordDecoders(f *testing.F) {
	for _, rec := range seedRecords() {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		// Every decoded byte comes from a byte of rec, but two or three
		// bytes can make a whole struct (a user property, a subscription)
		// of 24 or 32: 64 per byte is generous for that, and far below
		// what a hostile length would ask.
		limit := uint64(64*len(rec) + 64<<10)
		before := allocatedBytes()
		m, merr := decodeMessage(rec)
		e, eerr := decodeEntry(rec)
		s, serr := decodeSession(rec)
		if got := allocatedBytes() - before; got > limit {
			t.Fatalf("decoding a %d-byte record allocated %d bytes (limit %d)", len(rec), got, limit)
		}
		if merr == nil {
			checkMessage(t, m)
		}
		if eerr == nil {
			if e.qos > 2 {
				t.Fatalf("decodeEntry accepted QoS %d", e.qos)
			}
			e2, err := decodeEntry(appendEntry(nil, &e))
			if err != nil || !reflect.DeepEqual(e, e2) {
				t.Fatalf("queue entry round trip:\n got %+v (%v)\nwant %+v", e2, err, e)
			}
		}
		if serr == nil {
			for _, sub := range s.subs {
				if sub.qos > 2 {
					t.Fatalf("decodeSession accepted a subscription at QoS %d", sub.qos)
				}
			}
			// The will's expiry is kept in the session record, not in its
			// body: it round-trips with the session.
			if s.will != nil && s.will.QoS > 2 {
				t.Fatalf("decodeSession accepted a will at QoS %d", s.will.QoS)
			}
			s2, err := decodeSession(appendSession(nil, s))
			if err != nil || !reflect.DeepEqual(s, s2) {
				t.Fatalf("session round trip:\n got %+v (%v)\nwant %+v", s2, err, s)
			}
		}
	})
}

// checkMessage fails unless m is a message the broker could have stored
// and it survives appendMessage and decodeMessage unchanged.
func checkMessage(t *testing.T, m *message) {
	t.Helper()
	if m.QoS > 2 {
		t.Fatalf("decodeMessage accepted QoS %d", m.QoS)
	}
	m2, err := decodeMessage(appendMessage(nil, m))
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("message round trip:\n got %+v %+v (%v)\nwant %+v %+v", m2, propsOf(m2), err, m, m.Props)
	}
}

func propsOf(m *message) *packet.Properties {
	if m == nil {
		return nil
	}
	return m.Props
}

// allocatedBytes is the heap the process has allocated so far.
func allocatedBytes() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// seedRecords are records as the broker writes them: message bodies with
// and without properties, queue entries, and session records with
// subscriptions, an identity and a pending will.
func seedRecords() [][]byte {
	at := time.UnixMilli(1700000000123)
	plain := &message{Topic: "sensors/1/temp", Payload: []byte("21.5"), QoS: 1}
	rich := &message{Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true, Expiry: at}
	rich.Props = &packet.Properties{PayloadFormat: 1, ContentType: "text/plain", ResponseTopic: "replies/a",
		CorrelationData: []byte{1, 2}, User: []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	for _, p := range []packet.PropID{packet.PropPayloadFormat, packet.PropContentType, packet.PropResponseTopic, packet.PropCorrelationData} {
		rich.Props.Mark(p)
	}
	will := &message{Topic: "status/dev1", Payload: []byte("offline"), QoS: 1, Retain: true}
	setWillExpiry(will, 30)
	recs := [][]byte{
		appendMessage(nil, plain),
		appendMessage(nil, rich),
		appendMessage(nil, &message{Topic: "t"}),
		appendEntry(nil, &queueEntry{msgID: 42, qos: 1, size: 4}),
		appendEntry(nil, &queueEntry{msgID: 1 << 40, qos: 2, retain: true, released: true, expiry: at, size: 5,
			subIDs: []uint32{1, 300000}}),
		appendSession(nil, &sessionRecord{uid: "0123456789abcdef", expiry: 3600}),
		appendSession(nil, &sessionRecord{uid: "fedcba9876543210", expiry: 0xffffffff, offlineSince: at,
			user: &auth.Client{Username: "ann", HasUsername: true, Listener: "tls"},
			subs: []storedSub{
				{key: "sensors/#", qos: 1},
				{key: "$share/g/x", qos: 2, opts: subNoLocal | subRAP | subCheckRead, subID: 9},
			},
			will: will, willAt: at.Add(time.Minute)}),
	}
	return recs
}
