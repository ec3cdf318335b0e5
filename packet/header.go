package packet

import "strconv"

// ParseFixedHeader parses the fixed header at the start of b: the packet type
// and flags byte, then the Remaining Length. It returns the header and the
// number of bytes it took (2 to 5). It needs only the header, never the body,
// so a caller can refuse a packet before buffering any of it.
//
// It returns ErrIncomplete when b ends inside the header. Other failures are
// an *Error: MalformedPacket for a reserved type, invalid flags or a bad
// Remaining Length, and PacketTooLarge when maxPacketSize > 0 and the whole
// packet (header included) would be larger than maxPacketSize.
//
// AUTH (type 15) is accepted here whatever the protocol level, as the header
// does not know it; Decoder refuses AUTH before MQTT 5.
func ParseFixedHeader(b []byte, maxPacketSize int) (FixedHeader, int, error) {
	if len(b) == 0 {
		return FixedHeader{}, 0, ErrIncomplete
	}
	t, flags := Type(b[0]>>4), b[0]&0x0F
	if err := checkFlags(t, flags); err != nil {
		return FixedHeader{}, 0, err
	}
	rem, n := uvarint(b[1:])
	switch n {
	case varintIncomplete:
		return FixedHeader{}, 0, ErrIncomplete
	case varintMalformed:
		return FixedHeader{}, 0, errMalformed("remaining length is longer than four bytes or not in its shortest form [MQTT-1.5.5-1]")
	}
	size := 1 + n + int(rem)
	if maxPacketSize > 0 && size > maxPacketSize {
		return FixedHeader{}, 0, &Error{Code: PacketTooLarge,
			Reason: t.String() + " of " + strconv.Itoa(size) + " bytes exceeds the maximum packet size of " +
				strconv.Itoa(maxPacketSize)}
	}
	return FixedHeader{Type: t, Flags: flags, Remaining: int(rem)}, 1 + n, nil
}

// checkFlags validates the low nibble of the first byte against the packet
// type. [MQTT-2.2.2-1] [MQTT-2.2.2-2] in 3.1.1, [MQTT-2.1.3-1] in MQTT 5.
func checkFlags(t Type, flags byte) error {
	switch t {
	case 0:
		return errMalformed("packet type 0 is reserved")
	case PUBLISH:
		qos := flags >> 1 & 3
		if qos == 3 {
			return errMalformed("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
		}
		if qos == 0 && flags&0x08 != 0 {
			return errMalformed("PUBLISH with QoS 0 and DUP 1 [MQTT-3.3.1-2]")
		}
		return nil
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if flags != 0x02 {
			return errMalformed(t.String() + " fixed header flags must be 0010, got " + flagBits(flags) +
				flagsRule)
		}
		return nil
	}
	if flags != 0 {
		return errMalformed(t.String() + " fixed header flags must be 0000, got " + flagBits(flags) +
			flagsRule)
	}
	return nil
}

// flagsRule names the rule broken by wrong flags in both protocol versions.
const flagsRule = " (3.1.1 [MQTT-2.2.2-1], 5.0 [MQTT-2.1.3-1])"

// flagBits renders a nibble as four binary digits.
func flagBits(f byte) string {
	b := [4]byte{'0', '0', '0', '0'}
	for i := 0; i < 4; i++ {
		if f&(8>>i) != 0 {
			b[i] = '1'
		}
	}
	return string(b[:])
}

// appendFixedHeader appends the first byte and the Remaining Length.
func appendFixedHeader(dst []byte, first byte, remaining int) []byte {
	return appendVarInt(append(dst, first), uint32(remaining))
}

// firstByte returns the fixed flags of every type except PUBLISH.
func firstByte(t Type) byte {
	switch t {
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		return byte(t)<<4 | 0x02
	}
	return byte(t) << 4
}

// PublishHeadLen returns the length of the fixed and variable headers of
// the PUBLISH that b starts (everything before its payload), and whether b
// holds them whole; b's fixed header must have parsed (ParseFixedHeader,
// n its length). The broker uses it to decide, from the first bytes of a
// big PUBLISH, whether it can decode the packet without the rest.
func PublishHeadLen(b []byte, n int, h FixedHeader, version byte) (int, bool) {
	at := n + 2
	if len(b) < at {
		return 0, false
	}
	at += int(b[n])<<8 | int(b[n+1])
	if (h.Flags>>1)&3 > 0 {
		at += 2 // packet id
	}
	if version == V5 {
		if at >= len(b) {
			return 0, false
		}
		size, k := uvarint(b[at:])
		if k <= 0 {
			return 0, false
		}
		at += k + int(size)
	}
	return at, at <= len(b) && at <= n+h.Remaining
}
