// Package bufpool recycles byte buffers by size class, so connections hold
// buffers only while they have bytes to move and idle connections hold none.
package bufpool

import "sync"

// Size classes, smallest first. Buffers larger than the last class are not
// pooled: they are rare (big payloads) and holding them would pin memory.
var classes = [...]int{512, 4 << 10, 32 << 10, 256 << 10, 1 << 20}

var pools [len(classes)]sync.Pool

// Get returns an empty buffer with capacity at least n.
func Get(n int) []byte {
	for i, size := range classes {
		if n <= size {
			if p, ok := pools[i].Get().(*[]byte); ok {
				return (*p)[:0]
			}
			return make([]byte, 0, size)
		}
	}
	return make([]byte, 0, n)
}

// Put returns b to its pool. b must not be used afterwards. Buffers whose
// capacity is not exactly a class size come from append growth; they go to
// the largest class they fill, or are dropped.
func Put(b []byte) {
	c := cap(b)
	for i := len(classes) - 1; i >= 0; i-- {
		if c >= classes[i] {
			if c > 2*classes[i] && i == len(classes)-1 {
				return // oversized: let the GC have it
			}
			b = b[:0]
			pools[i].Put(&b)
			return
		}
	}
}
