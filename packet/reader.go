package packet

import (
	"strconv"
	"unicode/utf8"
	"unsafe"
)

func errMalformed(reason string) error { return &Error{Code: MalformedPacket, Reason: reason} }
func errProtocol(reason string) error  { return &Error{Code: ProtocolError, Reason: reason} }

// hex2 renders a byte as 0xNN for error reasons.
func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[b>>4], digits[b&15]})
}

// reader walks a packet body. Every value it returns aliases the body: it
// never copies and never allocates from a length field, and any length that
// runs past the end of what it reads is a Malformed Packet.
type reader struct {
	b   []byte
	off int
	v   byte // protocol level, to cite the right normative ids

	// nonCanonical records that the input used a form the encoder would not
	// write: properties out of ascending identifier order, or an explicit
	// reason code or property length where the short form says the same.
	// Only the fuzz test reads it (see FuzzDecode).
	nonCanonical bool
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// short builds the error for a field that runs past the end.
func (r *reader) short(what string) error {
	return errMalformed(what + " runs past the end of the packet")
}

func (r *reader) u8(what string) (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.short(what)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) u16(what string) (uint16, error) {
	if len(r.b)-r.off < 2 {
		return 0, r.short(what)
	}
	v := uint16(r.b[r.off])<<8 | uint16(r.b[r.off+1])
	r.off += 2
	return v, nil
}

func (r *reader) u32(what string) (uint32, error) {
	if len(r.b)-r.off < 4 {
		return 0, r.short(what)
	}
	b := r.b[r.off : r.off+4]
	r.off += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (r *reader) varint(what string) (uint32, error) {
	v, n := uvarint(r.b[r.off:])
	switch n {
	case varintIncomplete:
		return 0, r.short(what)
	case varintMalformed:
		return 0, errMalformed(what + " is longer than four bytes or not in its shortest form [MQTT-1.5.5-1]")
	}
	r.off += n
	return v, nil
}

// binary reads Binary Data: a two-byte length, then that many bytes.
func (r *reader) binary(what string) ([]byte, error) {
	if r.remaining() < 2 {
		return nil, r.short(what + " length")
	}
	n := int(r.b[r.off])<<8 | int(r.b[r.off+1])
	r.off += 2
	if r.remaining() < n {
		return nil, r.short(what)
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

// str reads a UTF-8 Encoded String and checks it: well-formed UTF-8 with no
// surrogates and no U+0000. A U+FEFF is kept like any other character.
// The string aliases the body.
func (r *reader) str(what string) (string, error) {
	b, err := r.binary(what)
	if err != nil {
		return "", err
	}
	switch checkUTF8(b) {
	case utf8Null:
		if r.v == V5 {
			return "", errMalformed(what + " contains U+0000 [MQTT-1.5.4-2]")
		}
		return "", errMalformed(what + " contains U+0000 [MQTT-1.5.3-2]")
	case utf8Invalid:
		if r.v == V5 {
			return "", errMalformed(what + " is not well-formed UTF-8 [MQTT-1.5.4-1]")
		}
		return "", errMalformed(what + " is not well-formed UTF-8 [MQTT-1.5.3-1]")
	}
	if len(b) == 0 {
		return "", nil
	}
	return unsafe.String(&b[0], len(b)), nil
}

// rest returns the unread bytes, which become read.
func (r *reader) rest() []byte {
	b := r.b[r.off:len(r.b):len(r.b)]
	r.off = len(r.b)
	return b
}

// done reports bytes left over after the last field of t.
func (r *reader) done(t Type) error {
	if n := r.remaining(); n != 0 {
		return errMalformed(t.String() + " has " + strconv.Itoa(n) + " unexpected bytes after its last field")
	}
	return nil
}

// Results of checkUTF8.
const (
	utf8OK = iota
	utf8Invalid
	utf8Null
)

// checkUTF8 checks MQTT's string rules: well-formed UTF-8 (which in Go's
// definition excludes surrogates and overlong forms) and no U+0000.
func checkUTF8(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return utf8Null
		}
		if c >= utf8.RuneSelf {
			// Leave the ASCII fast path: multi-byte UTF-8 never contains a
			// zero byte, so a zero anywhere after here is a U+0000.
			for _, c := range b[i:] {
				if c == 0 {
					return utf8Null
				}
			}
			if !utf8.Valid(b[i:]) {
				return utf8Invalid
			}
			return utf8OK
		}
	}
	return utf8OK
}
