package broker

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// A retained record gives back the message it was made of: what the store
// is given, what is delivered, and its topic and expiry, for every size of
// length prefix and with or without properties and expiry.
func TestRetainedRecRoundTrip(t *testing.T) {
	expiry := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	props := &packet.Properties{Present: 1<<packet.PropContentType | 1<<packet.PropCorrelationData,
		ContentType: "application/json", CorrelationData: []byte{1, 2, 3},
		User: []packet.UserProperty{{Key: "k", Value: "v"}}}
	for _, tc := range []struct {
		name    string
		topic   string
		payload int
		qos     byte
		expiry  time.Time
		props   *packet.Properties
	}{
		{"small", "dev/1/2/state", 20, 1, time.Time{}, nil},
		{"empty topic level", "a//b/", 1, 0, time.Time{}, nil},
		{"two-byte length", "t", 200, 2, time.Time{}, nil},
		{"three-byte length", strings.Repeat("x/", 100), 70000, 1, expiry, nil},
		{"properties and expiry", "p/q", 5, 2, expiry, props},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := makeMessageParts(tc.topic, bytes.Repeat([]byte{'y'}, tc.payload), tc.qos, true, 7, false, nil)
			m.Expiry, m.Props = tc.expiry, tc.props
			rec := newRetainedRec(m)
			if want := appendMessage(nil, m); !bytes.Equal(rec.body(), want) {
				t.Fatalf("body = %x, want %x", rec.body(), want)
			}
			if rec.topic() != tc.topic {
				t.Errorf("topic = %q, want %q", rec.topic(), tc.topic)
			}
			if tc.expiry.IsZero() == rec.expired(time.Now().Add(1000*time.Hour)) || rec.expired(time.Now()) {
				t.Errorf("expired: wrong for expiry %v", tc.expiry)
			}
			for _, got := range []*message{rec.deliverable(), rec.message()} {
				if got.Topic != m.Topic || !bytes.Equal(got.Payload, m.Payload) || got.QoS != m.QoS || !got.Retain ||
					!got.Expiry.Equal(m.Expiry) || !reflect.DeepEqual(got.Props, m.Props) {
					t.Errorf("made %+v from the record of %+v", got, m)
				}
			}
			again, topic, exp, err := retainedRecOf(rec.body())
			if err != nil || topic != tc.topic || !exp.Equal(tc.expiry) || !bytes.Equal(again.body(), rec.body()) {
				t.Errorf("retainedRecOf(body) = %q, %v, %v; want the same record", topic, exp, err)
			}
			m.unref()
		})
	}
}

// A body that does not decode (from the store or another node) makes no
// record.
func TestRetainedRecOfRefusesGarbage(t *testing.T) {
	good := appendMessage(nil, makeMessageParts("a/b", []byte("x"), 1, true, 0, false, nil))
	for _, body := range [][]byte{nil, {recordV1}, {recordV1 + 1, 0, 0, 0}, good[:4], {recordV1, 3, 0, 0}} {
		if _, _, _, err := retainedRecOf(body); err == nil {
			t.Errorf("retainedRecOf(%x) made a record", body)
		}
	}
}
