package broker

import (
	"math/bits"
	"sync"
)

// Payloads that do not fit in a message's own allocation live in pooled
// buffers, recycled with their message (pool.go). A big PUBLISH is read
// straight into one (bigBuffer) and its message keeps it; a smaller one's
// payload is copied into one (makeMessage). Fresh buffers cost more than
// the broker's own work on them: zeroing, page faults after the scavenger
// gave the pages back, a garbage collection every few megabytes, and the
// heap's slack above what is live, which is what a stream of 8 KiB
// messages otherwise adds to the broker's memory.
type bigBuf struct {
	b []byte // the whole buffer, its size class long
	// tail is the end of the payload, when it stayed in a pipe (piped.go):
	// b then holds the packet's start.
	tail *pipedTail
}

const (
	// minPooledBig is the smallest class: a message holds smaller payloads
	// itself (inlineSizes).
	minPooledBig = 512
	// finePooledBig is the size up to which classes are eight to a
	// doubling, so a payload never takes more than an eighth more than its
	// size, as Go's own size classes do.
	finePooledBig = 64 << 10
	// bigClassStep is the granularity of the pooled sizes above
	// finePooledBig: Go gives a large object whole 8 KiB pages anyway.
	bigClassStep = 8 << 10
	// maxPooledBig bounds the sizes recycled: bigger packets are rare, and
	// a pool of them would hold a lot of memory.
	maxPooledBig = 4 << 20

	fineClasses = 8 * 7 // 512 B to 64 KiB: seven doublings
	bigClasses  = (maxPooledBig - finePooledBig) / bigClassStep
)

// bigPools holds free buffers by size class (bigClass). A sync.Pool gives
// its contents to the garbage collector over two cycles, so a burst of big
// messages does not pin memory for good.
var bigPools [1 + fineClasses + bigClasses]sync.Pool

// bigClass returns the pool and the buffer size for size bytes, at most
// maxPooledBig. A buffer's own length maps back to its pool.
func bigClass(size int) (class, capacity int) {
	switch {
	case size <= minPooledBig:
		return 0, minPooledBig
	case size <= finePooledBig:
		// size is in (2^k, 2^(k+1)]: eight steps of 2^(k-3).
		k := bits.Len(uint(size-1)) - 1
		step := 1 << (k - 3)
		sub := (size - 1<<k + step - 1) / step
		return 1 + (k-9)*8 + sub - 1, 1<<k + sub*step
	default:
		n := (size + bigClassStep - 1) / bigClassStep
		return 1 + fineClasses + n - finePooledBig/bigClassStep - 1, n * bigClassStep
	}
}

// getBigBuf returns a buffer of at least size bytes, not zeroed: its
// previous contents stay until overwritten, so a caller only hands out the
// part it has filled.
func getBigBuf(size int) *bigBuf {
	if size > maxPooledBig {
		return &bigBuf{b: make([]byte, size)}
	}
	class, capacity := bigClass(size)
	if bb, ok := bigPools[class].Get().(*bigBuf); ok {
		return bb
	}
	return &bigBuf{b: make([]byte, capacity)}
}

// putBigBuf returns a buffer nobody reads any more to its pool.
func putBigBuf(bb *bigBuf) {
	if bb.tail != nil {
		bb.tail.release()
		bb.tail = nil
	}
	if len(bb.b) > maxPooledBig {
		return // not from a pool (getBigBuf)
	}
	class, _ := bigClass(len(bb.b))
	bigPools[class].Put(bb)
}
