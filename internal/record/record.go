// Package record writes and reads the small binary records Petrel keeps
// in its store and sends between the nodes of a cluster: unsigned varints
// and length-prefixed strings, in the order each reader expects. A record
// that ends early, or claims more than it holds, is refused whole: the
// Reader remembers the first error and reads nothing more, so a decoder
// reads every field and checks once, at the end.
package record

import (
	"encoding/binary"
	"errors"
)

// ErrMalformed is the error of a record that ends early or claims more
// than it holds.
var ErrMalformed = errors.New("malformed record")

// AppendUvarint appends v as an unsigned varint.
func AppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendString appends s after its length.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends s after its length.
func AppendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Reader reads a record from B, which it consumes; Err is the first
// error (ErrMalformed, or what Fail was given).
type Reader struct {
	B   []byte
	Err error
}

// Fail marks the record malformed (keeping an earlier error) and stops
// the reading.
func (r *Reader) Fail() {
	if r.Err == nil {
		r.Err = ErrMalformed
	}
	r.B = nil
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.B) < 1 {
		r.Fail()
		return 0
	}
	v := r.B[0]
	r.B = r.B[1:]
	return v
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Bytes reads a length-prefixed field; the result shares B's memory (and
// has no room to grow into it).
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		r.Fail()
		return nil
	}
	v := r.B[:n:n]
	r.B = r.B[n:]
	return v
}

// Str reads a length-prefixed field as a new string.
func (r *Reader) Str() string { return string(r.Bytes()) }
