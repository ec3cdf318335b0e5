package broker

import (
	"math"
	"unsafe"
)

// slimBuf holds a byte slice in 16 bytes where a slice header takes 24:
// a conn holds two (its input and output buffers), and a conn is most of
// an idle connection's cost. Lengths and capacities stay below 2 GiB
// (packets are at most 256 MiB, output is bounded far below). It keeps
// nil and empty apart, as the slice does.
type slimBuf struct {
	p      *byte
	n, cap int32
}

// b returns the slice, with its capacity.
func (s *slimBuf) b() []byte {
	if s.p == nil {
		return nil
	}
	return unsafe.Slice(s.p, s.cap)[:s.n]
}

// set makes s hold b.
func (s *slimBuf) set(b []byte) {
	if b == nil {
		*s = slimBuf{}
		return
	}
	s.p, s.n, s.cap = unsafe.SliceData(b), int32(len(b)), int32(min(cap(b), math.MaxInt32))
}
