package bufpool

import (
	"math"
	"unsafe"
)

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

// Bytes returns the slice, with its capacity.
func (s *Slim) Bytes() []byte {
	if s.p == nil {
		return nil
	}
	return unsafe.Slice(s.p, s.cap)[:s.n]
}

// Len is len(s.Bytes()).
func (s *Slim) Len() int { return int(s.n) }

// IsNil reports whether s holds no slice (a nil one).
func (s *Slim) IsNil() bool { return s.p == nil }

// Set makes s hold b.
func (s *Slim) Set(b []byte) {
	if b == nil {
		*s = Slim{}
		return
	}
	s.p, s.n, s.cap = unsafe.SliceData(b), int32(len(b)), int32(min(cap(b), math.MaxInt32))
}
