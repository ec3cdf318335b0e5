package packet

import (
	"bytes"
	"strings"
	"testing"
)

func TestVarInt(t *testing.T) {
	// The boundaries of each length, from the table of 3.1.1 §2.2.3 / 5.0 §1.5.5.
	cases := []struct {
		v    uint32
		wire []byte
	}{
		{0, hx("00")},
		{127, hx("7f")},
		{128, hx("80 01")},
		{16383, hx("ff 7f")},
		{16384, hx("80 80 01")},
		{2097151, hx("ff ff 7f")},
		{2097152, hx("80 80 80 01")},
		{268435455, hx("ff ff ff 7f")},
	}
	for _, c := range cases {
		if got := appendVarInt(nil, c.v); !bytes.Equal(got, c.wire) {
			t.Errorf("appendVarInt(%d) = % x, want % x", c.v, got, c.wire)
		}
		if n := varIntLen(c.v); n != len(c.wire) {
			t.Errorf("varIntLen(%d) = %d, want %d", c.v, n, len(c.wire))
		}
		v, n := uvarint(c.wire)
		if v != c.v || n != len(c.wire) {
			t.Errorf("uvarint(% x) = %d, %d; want %d, %d", c.wire, v, n, c.v, len(c.wire))
		}
	}
	if n := varIntLen(MaxRemainingLength + 1); n != 5 {
		t.Errorf("varIntLen beyond the maximum = %d, want 5", n)
	}
}

// [MQTT-1.5.5-1] v5
func TestVarIntRefusesNonMinimalAndLongForms(t *testing.T) {
	for _, b := range [][]byte{
		hx("80 00"),          // 0 in two bytes
		hx("ff 00"),          // 127 in two bytes
		hx("80 80 00"),       // 0 in three bytes
		hx("80 80 80 00"),    // 0 in four bytes
		hx("ff ff ff ff 7f"), // five bytes
		hx("80 80 80 80"),    // a fifth byte announced
	} {
		if _, n := uvarint(b); n != varintMalformed {
			t.Errorf("uvarint(% x) n = %d, want malformed", b, n)
		}
	}
	for _, b := range [][]byte{nil, hx("80"), hx("ff ff"), hx("80 80 80")} {
		if _, n := uvarint(b); n != varintIncomplete {
			t.Errorf("uvarint(% x) n = %d, want incomplete", b, n)
		}
	}
}

func TestParseFixedHeader(t *testing.T) {
	cases := []struct {
		b    []byte
		want FixedHeader
		n    int
	}{
		{hx("10 0f"), FixedHeader{CONNECT, 0, 15}, 2},
		{hx("3d 80 01"), FixedHeader{PUBLISH, 0x0D, 128}, 3},
		{hx("62 02 00 01"), FixedHeader{PUBREL, 2, 2}, 2},
		{hx("c0 00"), FixedHeader{PINGREQ, 0, 0}, 2},
		{hx("f0 ff ff ff 7f"), FixedHeader{AUTH, 0, MaxRemainingLength}, 5},
	}
	for _, c := range cases {
		h, n, err := ParseFixedHeader(c.b, 0)
		if err != nil || h != c.want || n != c.n {
			t.Errorf("ParseFixedHeader(% x) = %+v, %d, %v; want %+v, %d", c.b, h, n, err, c.want, c.n)
		}
	}
}

// Every prefix shorter than the header is incomplete; every longer prefix
// yields the same header, as ParseFixedHeader never looks at the body.
func TestParseFixedHeaderIncremental(t *testing.T) {
	for _, tc := range roundTrips {
		b, err := Append(nil, tc.p, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		want, wantN, err := ParseFixedHeader(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i := 0; i <= len(b); i++ {
			h, n, err := ParseFixedHeader(b[:i], 0)
			if i < wantN {
				if err != ErrIncomplete {
					t.Errorf("%s: prefix of %d bytes: err %v, want ErrIncomplete", tc.name, i, err)
				}
				continue
			}
			if err != nil || h != want || n != wantN {
				t.Errorf("%s: prefix of %d bytes: %+v, %d, %v", tc.name, i, h, n, err)
			}
		}
	}
}

// A declared length beyond the limit is refused from the header alone,
// before any of the body exists, so nothing of that size is ever buffered.
func TestParseFixedHeaderRefusesHugePacketBeforeBody(t *testing.T) {
	huge := hx("30 ff ff ff 7f") // PUBLISH declaring 256 MiB, and nothing else
	_, _, err := ParseFixedHeader(huge, 1<<20)
	if err == nil || codeOf(t, err) != PacketTooLarge {
		t.Fatalf("err %v, want PacketTooLarge", err)
	}
	// The limit counts the whole packet, header included.
	b := pk(0x30, s("t"), "12345") // 2 + 8 bytes
	if _, _, err := ParseFixedHeader(b, len(b)); err != nil {
		t.Errorf("a packet of exactly the limit: %v", err)
	}
	if _, _, err := ParseFixedHeader(b, len(b)-1); err == nil || codeOf(t, err) != PacketTooLarge {
		t.Errorf("a packet one byte over the limit: %v, want PacketTooLarge", err)
	}
	// Zero means no limit beyond the protocol's.
	if _, _, err := ParseFixedHeader(huge, 0); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

type headerCase struct {
	name string
	b    []byte
	code ReasonCode
}

var headerCases = []headerCase{
	{"reserved type 0", hx("00 00"), MalformedPacket},
	{"reserved type 0 with flags", hx("0f 00"), MalformedPacket},

	// [MQTT-2.2.2-1] v3.1.1
	// [MQTT-2.2.2-2] v3.1.1
	// [MQTT-2.1.3-1] v5
	{"CONNECT flags 0001", hx("11 00"), MalformedPacket},
	{"CONNACK flags 1000", hx("28 02 00 00"), MalformedPacket},
	{"PUBACK flags 0010", hx("42 02 00 01"), MalformedPacket},
	{"PUBREC flags 0010", hx("52 02 00 01"), MalformedPacket},
	{"PUBCOMP flags 0001", hx("71 02 00 01"), MalformedPacket},
	{"SUBACK flags 0010", hx("92 03 00 01 00"), MalformedPacket},
	{"UNSUBACK flags 0100", hx("b4 02 00 01"), MalformedPacket},
	{"PINGREQ flags 1000", hx("c8 00"), MalformedPacket},
	{"PINGRESP flags 0001", hx("d1 00"), MalformedPacket},

	// [MQTT-3.6.1-1] v3.1.1
	// [MQTT-3.6.1-1] v5
	{"PUBREL flags 0000", hx("60 02 00 01"), MalformedPacket},
	{"PUBREL flags 1010 (3.1 DUP)", hx("6a 02 00 01"), MalformedPacket},

	// [MQTT-3.8.1-1] v3.1.1
	// [MQTT-3.8.1-1] v5
	{"SUBSCRIBE flags 0000", hx("80 06 00 01 00 01 61 00"), MalformedPacket},
	{"SUBSCRIBE flags 0011", hx("83 06 00 01 00 01 61 00"), MalformedPacket},

	// [MQTT-3.10.1-1] v3.1.1
	// [MQTT-3.10.1-1] v5
	{"UNSUBSCRIBE flags 0000", hx("a0 05 00 01 00 01 61"), MalformedPacket},

	// [MQTT-3.14.1-1] v3.1.1
	// [MQTT-3.14.1-1] v5
	{"DISCONNECT flags 0001", hx("e1 00"), MalformedPacket},

	// [MQTT-3.15.1-1] v5
	{"AUTH flags 0001", hx("f1 00"), MalformedPacket},

	// [MQTT-3.3.1-4] v3.1.1
	// [MQTT-3.3.1-4] v5
	{"PUBLISH QoS 3", hx("36 05 00 01 61 00 01"), MalformedPacket},
	{"PUBLISH QoS 3 with DUP and RETAIN", hx("3f 05 00 01 61 00 01"), MalformedPacket},

	// [MQTT-3.3.1-2] v3.1.1
	// [MQTT-3.3.1-2] v5
	{"PUBLISH QoS 0 with DUP", hx("38 03 00 01 61"), MalformedPacket},

	// [MQTT-1.5.5-1] v5
	{"remaining length 0 in two bytes", hx("c0 80 00"), MalformedPacket},
	{"remaining length in five bytes", hx("30 ff ff ff ff 01"), MalformedPacket},
	{"remaining length announcing a fifth byte", hx("30 80 80 80 80"), MalformedPacket},
}

func TestParseFixedHeaderErrors(t *testing.T) {
	for _, c := range headerCases {
		_, _, err := ParseFixedHeader(c.b, 0)
		if err == nil || err == ErrIncomplete {
			t.Errorf("%s: err %v, want %v", c.name, err, c.code)
			continue
		}
		if got := codeOf(t, err); got != c.code {
			t.Errorf("%s: code %v (%v), want %v", c.name, got, err, c.code)
		}
		// A bad first byte is refused at once, before the length arrives.
		if !strings.HasPrefix(c.name, "remaining") {
			if _, _, err := ParseFixedHeader(c.b[:1], 0); err == nil || err == ErrIncomplete {
				t.Errorf("%s: first byte alone: %v, want an error", c.name, err)
			}
		}
	}
}

// Decode checks the header too, since a FixedHeader can be built by hand.
func TestDecodeRechecksHeader(t *testing.T) {
	d := Decoder{Version: V311}
	if _, err := d.Decode(FixedHeader{Type: PUBREL, Flags: 0, Remaining: 2}, []byte{0, 1}); err == nil {
		t.Error("PUBREL with flags 0000 decoded")
	}
	if _, err := d.Decode(FixedHeader{Type: 16, Remaining: 0}, nil); err == nil {
		t.Error("packet type 16 decoded")
	}
	if _, err := d.Decode(FixedHeader{Type: PUBACK, Remaining: 2}, []byte{0, 1, 2}); err == nil ||
		codeOf(t, err) != MalformedPacket {
		t.Errorf("body longer than the remaining length: %v", err)
	}
}
