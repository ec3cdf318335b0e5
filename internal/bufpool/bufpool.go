// Package bufpool recycles byte buffers by size class, so connections hold
// buffers only while they have bytes to move and idle connections hold none.
package bufpool

import (
	"sync"
	"unsafe"
)

// Size classes, smallest first. Buffers larger than twice the last class are
// not pooled: they are rare (big payloads) and holding them would pin memory.
var classes = [...]int{512, 4 << 10, 32 << 10, 256 << 10, 1 << 20, 4 << 20}

// The pools hold a pointer to the first byte of each buffer rather than a
// slice: a pointer fits in an interface without allocating, so Put is free.
// Get rebuilds the slice with its class's size, which the array is at least.
var pools [len(classes)]sync.Pool

// Get returns an empty buffer with capacity at least n.
func Get(n int) []byte {
	for i := range len(classes) { // indexed: ranging would copy the array
		if size := classes[i]; n <= size {
			if p, ok := pools[i].Get().(*byte); ok {
				return unsafe.Slice(p, size)[:0]
			}
			return make([]byte, 0, size)
		}
	}
	return make([]byte, 0, n)
}

// Put returns b to the pool. b must not be used afterwards. A buffer goes to
// the largest class it fills; one smaller than the first class is dropped.
func Put(b []byte) {
	c := cap(b)
	last := len(classes) - 1
	if c > 2*classes[last] {
		return // oversized: let the GC have it
	}
	for i := last; i >= 0; i-- {
		if c >= classes[i] {
			pools[i].Put(unsafe.SliceData(b[:1]))
			return
		}
	}
}

// Grow returns b with room for n more bytes: b itself if it has the room,
// otherwise b's bytes in a pooled buffer at least twice as large, and b
// goes back to the pool. An output buffer that grows through a busy round
// so costs no garbage, where append would leave every smaller array
// behind.
func Grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := append(Get(max(2*cap(b), len(b)+n)), b...)
	Put(b)
	return nb
}
