package packet

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Test helpers: readable packet bytes.

// hx parses hex digits, ignoring spaces and newlines.
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Parts of a packet body for pk.
type (
	s   string // a UTF-8 string field: two-byte length, then the bytes
	u16 uint16 // a Two Byte Integer
	u32 uint32 // a Four Byte Integer
	vi  uint32 // a Variable Byte Integer
)

// body concatenates parts: an int is one byte, a string or []byte is raw
// bytes, and s, u16, u32, vi are encoded as their names say.
func body(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			if p < 0 || p > 255 {
				panic("byte out of range")
			}
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		case s:
			b = append(b, byte(len(p)>>8), byte(len(p)))
			b = append(b, p...)
		case u16:
			b = append(b, byte(p>>8), byte(p))
		case u32:
			b = append(b, byte(p>>24), byte(p>>16), byte(p>>8), byte(p))
		case vi:
			b = appendVarInt(b, uint32(p))
		default:
			panic("unknown part")
		}
	}
	return b
}

// pk builds a whole packet: the first byte, the remaining length computed
// from the body, then the body.
func pk(first byte, parts ...any) []byte {
	bd := body(parts...)
	return append(appendVarInt([]byte{first}, uint32(len(bd))), bd...)
}

// props builds a property block: its length, then the properties.
func props(parts ...any) []byte {
	bd := body(parts...)
	return append(appendVarInt(nil, uint32(len(bd))), bd...)
}

// decodeAll parses and decodes one whole packet with a Decoder at version.
func decodeAll(t testing.TB, d *Decoder, b []byte) (Packet, error) {
	t.Helper()
	h, n, err := ParseFixedHeader(b, 0)
	if err != nil {
		return nil, err
	}
	if n+h.Remaining != len(b) {
		t.Fatalf("test bytes hold %d bytes for a packet of %d", len(b), n+h.Remaining)
	}
	return d.Decode(h, b[n:])
}

// codeOf returns the reason code of a packet error, or fails the test.
func codeOf(t testing.TB, err error) ReasonCode {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Code
}

func versionName(v byte) string {
	switch v {
	case V31:
		return "v3.1"
	case V311:
		return "v3.1.1"
	case V5:
		return "v5"
	}
	return "v?"
}
