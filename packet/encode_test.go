package packet

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendRefuses(t *testing.T) {
	long := strings.Repeat("x", 65536)
	cases := []struct {
		name string
		v    byte
		p    Packet
		code ReasonCode
	}{
		{"unknown protocol level", 6, &Pingreq{}, MalformedPacket},
		{"level 0", 0, &Pingreq{}, MalformedPacket},
		{"nil packet", V311, nil, MalformedPacket},
		{"AUTH before MQTT 5", V311, &Auth{}, MalformedPacket},
		{"AUTH in 3.1", V31, &Auth{Code: ContinueAuthentication}, MalformedPacket},
		{"topic longer than 65535", V311, &Publish{Topic: long}, MalformedPacket},
		{"client id longer than 65535", V5, &Connect{ClientID: long}, MalformedPacket},
		{"will payload longer than 65535", V311, &Connect{WillFlag: true, WillTopic: "t",
			WillPayload: []byte(long)}, MalformedPacket},
		{"password longer than 65535", V311, &Connect{UsernameFlag: true, PasswordFlag: true,
			Password: []byte(long)}, MalformedPacket},
		{"user property longer than 65535", V5, &Publish{Topic: "t",
			Props: Properties{User: []UserProperty{{"k", long}}}}, MalformedPacket},
		{"reason string longer than 65535", V5, &Ack{Kind: PUBACK, PacketID: 1,
			Props: withProps(Properties{ReasonString: long}, PropReasonString)}, MalformedPacket},
		{"filter longer than 65535", V311, &Subscribe{PacketID: 1, Subs: []Subscription{{Filter: long}}},
			MalformedPacket},
		{"packet larger than the maximum", V5, &Publish{Topic: "t", Props: Properties{User: tooManyUserProps()}},
			PacketTooLarge},
		{"PUBLISH QoS 3", V311, &Publish{Topic: "t", QoS: 3, PacketID: 1}, MalformedPacket},
		{"PUBLISH QoS 0 with DUP", V311, &Publish{Topic: "t", Dup: true}, MalformedPacket},
		{"PUBLISH QoS 1 without packet id", V5, &Publish{Topic: "t", QoS: 1}, MalformedPacket},
		{"PUBACK without packet id", V311, &Ack{Kind: PUBACK}, MalformedPacket},
		{"Ack of kind PUBLISH", V311, &Ack{Kind: PUBLISH, PacketID: 1}, MalformedPacket},
		{"SUBSCRIBE without packet id", V311, &Subscribe{Subs: []Subscription{{Filter: "a"}}}, MalformedPacket},
		{"SUBSCRIBE without subscriptions", V311, &Subscribe{PacketID: 1}, MalformedPacket},
		{"SUBSCRIBE QoS 3", V311, &Subscribe{PacketID: 1, Subs: []Subscription{{Filter: "a", QoS: 3}}},
			MalformedPacket},
		{"SUBSCRIBE Retain Handling 3", V5, &Subscribe{PacketID: 1,
			Subs: []Subscription{{Filter: "a", RetainHandling: 3}}}, MalformedPacket},
		{"SUBSCRIBE two Subscription Identifiers", V5, &Subscribe{PacketID: 1,
			Props: Properties{SubscriptionIDs: []uint32{1, 2}}, Subs: []Subscription{{Filter: "a"}}},
			MalformedPacket},
		{"Subscription Identifier 0", V5, &Publish{Topic: "t", Props: Properties{SubscriptionIDs: []uint32{0}}},
			MalformedPacket},
		{"Subscription Identifier too large", V5, &Publish{Topic: "t",
			Props: Properties{SubscriptionIDs: []uint32{MaxRemainingLength + 1}}}, MalformedPacket},
		{"SUBACK without packet id", V5, &Suback{Codes: []ReasonCode{0}}, MalformedPacket},
		{"SUBACK without codes", V5, &Suback{PacketID: 1}, MalformedPacket},
		{"UNSUBSCRIBE without packet id", V311, &Unsubscribe{Filters: []string{"a"}}, MalformedPacket},
		{"UNSUBSCRIBE without filters", V311, &Unsubscribe{PacketID: 1}, MalformedPacket},
		{"UNSUBACK without packet id", V311, &Unsuback{}, MalformedPacket},
		{"UNSUBACK v5 without codes", V5, &Unsuback{PacketID: 1}, MalformedPacket},
		{"will QoS 3", V311, &Connect{WillFlag: true, WillQoS: 3, WillTopic: "t"}, MalformedPacket},
		// [MQTT-3.1.2-22] v3.1.1
		{"password without user name", V311, &Connect{PasswordFlag: true}, MalformedPacket},
		{"CONNECT Version differs from the level", V5, &Connect{Version: V311}, MalformedPacket},
	}
	for _, c := range cases {
		dst := []byte("keep")
		out, err := Append(dst, c.p, c.v)
		if err == nil {
			t.Errorf("%s: encoded as % x", c.name, out)
			continue
		}
		if got := codeOf(t, err); got != c.code {
			t.Errorf("%s: code %v (%v), want %v", c.name, got, err, c.code)
		}
		if !bytes.Equal(out, []byte("keep")) {
			t.Errorf("%s: dst changed to %q on error", c.name, out)
		}
		if n := Len(c.p, c.v); n != -1 {
			t.Errorf("%s: Len = %d, want -1", c.name, n)
		}
	}
}

// What a protocol level cannot carry is left out rather than refused, so
// one message can go to subscribers of every level.
func TestAppendDropsWhatTheLevelCannotCarry(t *testing.T) {
	pub := &Publish{Topic: "t", Payload: []byte("x"), Props: withProps(Properties{MessageExpiry: 9,
		SessionExpiry: 5, User: []UserProperty{{"k", "v"}}}, PropMessageExpiry, PropSessionExpiry)}
	got, err := Append(nil, pub, V311)
	if err != nil || !bytes.Equal(got, hx("30 04 0001 74 78")) {
		t.Errorf("3.1.1: % x, %v", got, err)
	}
	// In MQTT 5, Session Expiry is not a PUBLISH property and is left out.
	got, err = Append(nil, pub, V5)
	if err != nil || !bytes.Equal(got, hx("30 11 0001 74 0c 02 00000009 26 0001 6b 0001 76 78")) {
		t.Errorf("v5: % x, %v", got, err)
	}
	sub := &Subscribe{PacketID: 1, Subs: []Subscription{{Filter: "a", QoS: 1, NoLocal: true,
		RetainAsPublished: true, RetainHandling: 2}}}
	got, err = Append(nil, sub, V311)
	if err != nil || !bytes.Equal(got, hx("82 06 0001 0001 61 01")) {
		t.Errorf("SUBSCRIBE 3.1.1: % x, %v", got, err)
	}
	ack := &Ack{Kind: PUBACK, PacketID: 1, Code: NotAuthorized}
	if got, _ = Append(nil, ack, V311); !bytes.Equal(got, hx("40 02 0001")) {
		t.Errorf("PUBACK 3.1.1 with a code: % x", got)
	}
	unsuback := &Unsuback{PacketID: 2, Codes: []ReasonCode{NoSubscriptionExisted}}
	if got, _ = Append(nil, unsuback, V311); !bytes.Equal(got, hx("b0 02 0002")) {
		t.Errorf("UNSUBACK 3.1.1: % x", got)
	}
	disc := &Disconnect{Code: ServerShuttingDown}
	if got, _ = Append(nil, disc, V311); !bytes.Equal(got, hx("e0 00")) {
		t.Errorf("DISCONNECT 3.1.1: % x", got)
	}
	connack := &Connack{Code: ConnRefusedServerUnavailable, Props: withProps(Properties{}, PropMaximumQoS)}
	if got, _ = Append(nil, connack, V311); !bytes.Equal(got, hx("20 02 00 03")) {
		t.Errorf("CONNACK 3.1.1: % x", got)
	}
}

// tooManyUserProps returns user properties that together exceed the largest
// packet while sharing one string, so the test costs little memory.
func tooManyUserProps() []UserProperty {
	kv := UserProperty{Key: strings.Repeat("k", 65535)}
	n := MaxRemainingLength/(5+len(kv.Key)) + 1
	u := make([]UserProperty, n)
	for i := range u {
		u[i] = kv
	}
	return u
}

// Remaining lengths take four bytes from 2097152 on, up to the largest packet.
func TestAppendFourByteRemainingLength(t *testing.T) {
	pub := &Publish{Topic: "t", Payload: make([]byte, 2097152-3)}
	out, err := Append(nil, pub, V311)
	if err != nil || len(out) != 1+4+2097152 || !bytes.Equal(out[:5], hx("30 80 80 80 01")) {
		t.Fatalf("%v, % x", err, out[:5])
	}
	// The payload of the largest packet is never touched by Len, so the OS
	// never has to back it with memory.
	pub.Payload = make([]byte, MaxRemainingLength-3, MaxRemainingLength)
	if n := Len(pub, V311); n != 1+4+MaxRemainingLength {
		t.Fatalf("Len of the largest packet = %d", n)
	}
	pub.Payload = pub.Payload[:len(pub.Payload)+1]
	if n := Len(pub, V311); n != -1 {
		t.Fatalf("Len of a packet one byte too large = %d", n)
	}
}

func TestAppendDoesNotAllocateWithCapacity(t *testing.T) {
	pub := &Publish{QoS: 1, PacketID: 7, Topic: "sensors/a/temperature", Payload: []byte("21.5"),
		Props: withProps(Properties{MessageExpiry: 60, User: []UserProperty{{"k", "v"}}}, PropMessageExpiry)}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if _, err = Append(buf[:0], pub, V5); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Append allocated %.1f times per run", allocs)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		name string
		v    byte
		b    []byte
	}{
		{"PUBLISH v4", V311, pk(0x32, s("sensors/a/temperature"), u16(7), "21.5")},
		{"PUBLISH v5 properties", V5, pk(0x32, s("sensors/a/temperature"), u16(7),
			props(0x02, u32(60), 0x0B, 3, 0x26, s("k"), s("v"), 0x26, s("k2"), s("v2")), "21.5")},
		{"PUBACK v5", V5, pk(0x40, u16(7), 0x10, props(0x1F, s("none")))},
		{"PUBREL v4", V311, pk(0x62, u16(7))},
		{"SUBSCRIBE v5", V5, pk(0x82, u16(1), props(0x0B, 5), s("a/+"), 1, s("b/#"), 2)},
		{"CONNECT v5", 0, connect5(0xC2, props(0x11, u32(10), 0x26, s("a"), s("b")), s("client"), s("u"), s("p"))},
		{"DISCONNECT v5", V5, pk(0xE0, 0x04, props(0x1F, s("bye")))},
	} {
		d := Decoder{Version: c.v}
		h, n, err := ParseFixedHeader(c.b, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(h, c.b[n:]); err != nil { // warm-up
			t.Fatalf("%s: %v", c.name, err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := d.Decode(h, c.b[n:]); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Decode allocated %.1f times per run", c.name, allocs)
		}
	}
}

// AppendPublishHeader writes the same bytes as Append for a PUBLISH without
// properties, at every level, QoS and flag.
func TestAppendPublishHeaderMatchesAppend(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		for _, qos := range []byte{0, 1, 2} {
			for _, flags := range []struct{ dup, retain bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
				if qos == 0 && flags.dup {
					continue
				}
				h := PublishHeader{Topic: "a/b", Payload: []byte("payload"), QoS: qos, Dup: flags.dup, Retain: flags.retain}
				if qos > 0 {
					h.PacketID = 42
				}
				p := Publish{Topic: h.Topic, Payload: h.Payload, QoS: qos, PacketID: h.PacketID, Dup: h.Dup, Retain: h.Retain}
				want, err := Append(nil, &p, v)
				if err != nil {
					t.Fatal(err)
				}
				got, err := AppendPublishHeader(nil, &h, v)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("v%d qos%d %+v: got % x (%v), want % x", v, qos, flags, got, err, want)
				}
				// With the payload left to the caller, header then payload
				// make the same packet.
				h.PayloadFollows = true
				got, err = AppendPublishHeader(nil, &h, v)
				if err != nil || !bytes.Equal(append(got, h.Payload...), want) {
					t.Fatalf("v%d qos%d %+v, payload follows: got % x (%v), want % x", v, qos, flags, got, err, want)
				}
				// With only the payload's start given and Rest counting the
				// rest (a piped payload), the header is the same.
				start := h
				start.Payload, start.Rest = h.Payload[:3], len(h.Payload)-3
				got, err = AppendPublishHeader(nil, &start, v)
				if err != nil || !bytes.Equal(append(got, h.Payload...), want) {
					t.Fatalf("v%d qos%d %+v, payload follows with Rest: got % x (%v), want % x", v, qos, flags, got, err, want)
				}
			}
		}
	}
	if _, err := AppendPublishHeader(nil, &PublishHeader{Topic: "a", QoS: 1}, V311); err == nil {
		t.Error("QoS 1 without a packet id encoded")
	}
	// Rest counts towards the packet's size limit.
	big := PublishHeader{Topic: "a", PayloadFollows: true, Rest: MaxRemainingLength}
	if _, err := AppendPublishHeader(nil, &big, V311); err == nil {
		t.Error("a PUBLISH past the largest remaining length encoded")
	}
}

// PublishHeadLen finds the end of a PUBLISH's headers, and says when the
// bytes given stop short of it.
func TestPublishHeadLen(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		for _, qos := range []byte{0, 1} {
			p := Publish{Topic: "some/topic", Payload: bytes.Repeat([]byte{7}, 300), QoS: qos}
			if qos > 0 {
				p.PacketID = 9
			}
			if v == V5 {
				p.Props.ContentType = "text/plain"
				p.Props.Mark(PropContentType)
			}
			b, err := Append(nil, &p, v)
			if err != nil {
				t.Fatal(err)
			}
			h, n, err := ParseFixedHeader(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := len(b) - len(p.Payload)
			if got, whole := PublishHeadLen(b, n, h, v); got != want || !whole {
				t.Errorf("v%d qos%d: %d, %v; want %d, true", v, qos, got, whole, want)
			}
			for cut := n; cut < want; cut++ {
				if _, whole := PublishHeadLen(b[:cut], n, h, v); whole {
					t.Errorf("v%d qos%d: headers whole in the first %d of %d bytes", v, qos, cut, want)
				}
			}
		}
	}
}

// AppendBareAck writes what AppendAck writes for an ack without properties.
func TestAppendBareAckMatchesAppendAck(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		for _, kind := range []Type{PUBACK, PUBREC, PUBREL, PUBCOMP} {
			for _, code := range []ReasonCode{Success, NoMatchingSubscribers, UnspecifiedError, PacketIdentifierNotFound} {
				for _, pid := range []uint16{1, 0x1234, 65535} {
					want, err := AppendAck([]byte{0xAA}, &Ack{Kind: kind, PacketID: pid, Code: code}, v)
					if err != nil {
						t.Fatalf("AppendAck(%v %d %v, v%d): %v", kind, pid, code, v, err)
					}
					if got := AppendBareAck([]byte{0xAA}, kind, pid, code, v); !bytes.Equal(got, want) {
						t.Errorf("AppendBareAck(%v %d %v, v%d) = % x, AppendAck % x", kind, pid, code, v, got, want)
					}
				}
			}
		}
	}
}
