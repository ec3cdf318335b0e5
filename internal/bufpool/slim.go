package bufpool

import "unsafe"

// Slim holds a byte slice in 16 bytes where a slice header takes 24. An
// idle connection's cost is mostly a few small structs, and a connection
// holds its buffers in them: the broker's conn its input and output, the
// event loop's econn the output it is writing. Lengths and capacities stay
// below 2 GiB (packets are at most 256 MiB, and output is bounded far
// below that). Like a slice, it keeps nil and empty apart.
type Slim struct {
	p      *byte
	n, cap int32
}

// sliceHeader is the layout of a []byte.
type sliceHeader struct {
	p    *byte
	n, c int
}

// Bytes returns the slice, with its capacity. It is put together field by
// field rather than with unsafe.Slice and a reslice, whose checks (and the
// branch for nil) would test on every packet in and out what Set already
// ensured; a nil p with 0 length and capacity is the nil slice.
func (s *Slim) Bytes() []byte {
	return *(*[]byte)(unsafe.Pointer(&sliceHeader{s.p, int(s.n), int(s.cap)}))
}

// Len is len(s.Bytes()).
func (s *Slim) Len() int { return int(s.n) }

// IsNil reports whether s holds no slice (a nil one).
func (s *Slim) IsNil() bool { return s.p == nil }

// Set makes s hold b, whose capacity is below 2 GiB. A nil b's data
// pointer is nil, so nil stays nil.
func (s *Slim) Set(b []byte) {
	s.p, s.n, s.cap = unsafe.SliceData(b), int32(len(b)), int32(cap(b))
}
