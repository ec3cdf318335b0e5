package broker

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// FuzzPackedRecord keeps a queue's packed records honest: packedSize and
// propsSize, which size the chunk a record goes into, must equal what
// appendPacked and appendProps write (they are kept apart by hand, for
// speed), and unpack must give back the delivery that was packed.
func FuzzPackedRecord(f *testing.F) {
	f.Add("a/b", []byte("payload"), byte(1), uint64(1), int64(0), false, "", "", []byte(nil), uint8(0), []byte(nil))
	f.Add("t", []byte{}, byte(2), uint64(1)<<40, time.Now().UnixNano(), true, "text/plain", "reply/to", []byte("corr"), uint8(3), []byte{1, 0x7f, 0xff})
	f.Fuzz(func(t *testing.T, topic string, payload []byte, qos byte, seq uint64, expiry int64, withProps bool,
		contentType, responseTopic string, corr []byte, users uint8, ids []byte) {
		m := &message{Topic: topic, Payload: payload, QoS: qos & 3, Retain: seq&1 == 1}
		if expiry > 0 {
			m.Expiry = time.Unix(0, expiry)
		}
		if withProps {
			m.Props = &packet.Properties{ContentType: contentType, ResponseTopic: responseTopic, CorrelationData: corr, PayloadFormat: qos >> 2}
			m.Props.Mark(packet.PropContentType)
			for i := range int(users % 5) {
				m.Props.User = append(m.Props.User, packet.UserProperty{Key: contentType[:len(contentType)*i/5], Value: responseTopic})
			}
		}
		d := delivery{msg: m, qos: qos & 3, retain: seq&2 != 0, dup: seq&4 != 0, seq: seq, sole: true}
		for _, id := range ids {
			d.subIDs = append(d.subIDs, uint32(id)<<7|1)
		}
		if m.Props != nil {
			if got, want := len(appendProps(nil, m.Props)), propsSize(m.Props); got != want {
				t.Fatalf("propsSize says %d, appendProps wrote %d", want, got)
			}
		}
		rec := appendPacked([]byte{0xee}, &d) // at an offset, as in a chunk
		if got, want := len(rec)-1, packedSize(&d); got != want {
			t.Fatalf("packedSize says %d, appendPacked wrote %d", want, got)
		}
		back, end := unpack(rec, 1)
		if end != len(rec) {
			t.Fatalf("unpack stopped at %d of %d", end, len(rec))
		}
		bm := back.msg
		if back.qos != d.qos || back.retain != d.retain || back.dup != d.dup || back.seq != d.seq || !slices.Equal(back.subIDs, d.subIDs) ||
			bm.Topic != m.Topic || !bytes.Equal(bm.Payload, m.Payload) || bm.QoS != m.QoS || bm.Retain != m.Retain || !bm.Expiry.Equal(m.Expiry) {
			t.Fatalf("unpacked %+v (message %+v), packed %+v (message %+v)", back, bm, d, m)
		}
		if (bm.Props == nil) != (m.Props == nil) {
			t.Fatalf("properties: unpacked %v, packed %v", bm.Props, m.Props)
		}
		if m.Props != nil && (bm.Props.ContentType != m.Props.ContentType || bm.Props.ResponseTopic != m.Props.ResponseTopic ||
			!bytes.Equal(bm.Props.CorrelationData, m.Props.CorrelationData) || !slices.Equal(bm.Props.User, m.Props.User)) {
			t.Fatalf("properties: unpacked %+v, packed %+v", bm.Props, m.Props)
		}
	})
}
