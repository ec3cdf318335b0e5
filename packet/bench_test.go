package packet

import "testing"

// benchDecode decodes one packet over and over with a warmed-up Decoder.
func benchDecode(b *testing.B, v byte, pkt []byte) {
	d := Decoder{Version: v}
	h, n, err := ParseFixedHeader(pkt, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.Decode(h, pkt[n:]); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, n, err := ParseFixedHeader(pkt, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Decode(h, pkt[n:]); err != nil {
			b.Fatal(err)
		}
	}
}

var (
	benchPayload = []byte(`{"temperature":21.5,"humidity":40,"ts":1700000000}`)

	benchPublish4 = &Publish{QoS: 1, PacketID: 42, Topic: "building/3/floor/2/room/17/temperature",
		Payload: benchPayload}
	benchPublish5 = &Publish{QoS: 1, PacketID: 42, Topic: "building/3/floor/2/room/17/temperature",
		Payload: benchPayload, Props: withProps(Properties{PayloadFormat: 1, MessageExpiry: 3600,
			ContentType: "application/json", ResponseTopic: "replies/17", CorrelationData: []byte("req-0001"),
			SubscriptionIDs: []uint32{7},
			User:            []UserProperty{{"source", "sensor-17"}, {"unit", "celsius"}}},
			PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData)}
	benchSubscribe = &Subscribe{PacketID: 7, Subs: []Subscription{
		{Filter: "building/+/floor/+/room/+/temperature", QoS: 1},
		{Filter: "building/3/#", QoS: 2},
		{Filter: "$share/workers/jobs/+", QoS: 1},
		{Filter: "alerts", QoS: 0},
	}}
)

func mustAppend(b *testing.B, p Packet, v byte) []byte {
	out, err := Append(nil, p, v)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func BenchmarkDecodePublish(b *testing.B) {
	b.Run("v4", func(b *testing.B) { benchDecode(b, V311, mustAppend(b, benchPublish4, V311)) })
	b.Run("v5-props", func(b *testing.B) { benchDecode(b, V5, mustAppend(b, benchPublish5, V5)) })
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	b.Run("v4", func(b *testing.B) { benchDecode(b, V311, mustAppend(b, benchSubscribe, V311)) })
	b.Run("v5", func(b *testing.B) { benchDecode(b, V5, mustAppend(b, benchSubscribe, V5)) })
}

func BenchmarkDecodePuback(b *testing.B) {
	b.Run("v4", func(b *testing.B) { benchDecode(b, V311, mustAppend(b, &Ack{Kind: PUBACK, PacketID: 42}, V311)) })
	b.Run("v5-reason", func(b *testing.B) {
		benchDecode(b, V5, mustAppend(b, &Ack{Kind: PUBACK, PacketID: 42, Code: NoMatchingSubscribers}, V5))
	})
}

// BenchmarkAppendPublishHeader is the broker's encoding for a subscriber
// of a message without properties (every MQTT 3 delivery).
func BenchmarkAppendPublishHeader(b *testing.B) {
	h := PublishHeader{Topic: benchPublish4.Topic, Payload: benchPublish4.Payload, QoS: 1, PacketID: 42}
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(Len(benchPublish4, V311)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendPublishHeader(buf[:0], &h, V311); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	for _, c := range []struct {
		name string
		v    byte
		p    *Publish
	}{{"v4", V311, benchPublish4}, {"v5-props", V5, benchPublish5}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.SetBytes(int64(Len(c.p, c.v)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var err error
				if buf, err = Append(buf[:0], c.p, c.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
