package packet

// Variable Byte Integers (MQTT 5 §1.5.5, 3.1.1 §2.2.3): seven bits per byte,
// least significant group first, the high bit set on every byte but the last,
// at most four bytes.

// varIntLen returns the number of bytes appendVarInt writes for v: 1 to 4, or
// 5 for a v above MaxRemainingLength, which no four-byte integer holds.
func varIntLen(v uint32) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	case v < 1<<28:
		return 4
	}
	return 5
}

// appendVarInt appends v as a Variable Byte Integer in its shortest form.
// A v above MaxRemainingLength cannot be encoded in four bytes; the encoder
// checks lengths before calling it, so here such a v simply takes five bytes.
func appendVarInt(dst []byte, v uint32) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// Outcomes of uvarint besides a positive length.
const (
	varintIncomplete = 0  // b ends inside the integer
	varintMalformed  = -1 // five bytes or more, or not the shortest form
)

// uvarint decodes the Variable Byte Integer at the start of b and returns it
// with the number of bytes it took, or with n == varintIncomplete when b ends
// before the integer does, or n == varintMalformed when the integer is longer
// than four bytes or not in its shortest form ([MQTT-1.5.5-1] in MQTT 5; an
// overlong form is ambiguous in every version, so all are refused).
func uvarint(b []byte) (v uint32, n int) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, varintIncomplete
		}
		c := b[i]
		v |= uint32(c&0x7F) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				// A final zero group adds nothing: a shorter form exists.
				return 0, varintMalformed
			}
			return v, i + 1
		}
	}
	return 0, varintMalformed
}
