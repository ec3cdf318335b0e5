package broker

import "sync"

// A big PUBLISH is read into a buffer of its own (bigBuffer), and its
// message keeps that buffer rather than copying the payload. Those buffers
// are recycled with their message (pool.go): a fresh 256 KiB buffer per
// message costs more than the broker's own work on it (zeroing, page
// faults after the scavenger gave the pages back, and a garbage collection
// every few messages).
type bigBuf struct {
	b []byte // the whole buffer, its size class long
}

const (
	// bigClassStep is the granularity of the pooled sizes: Go gives a
	// large object whole 8 KiB pages anyway.
	bigClassStep = 8 << 10
	// maxPooledBig bounds the sizes recycled: bigger packets are rare, and
	// a pool of them would hold a lot of memory.
	maxPooledBig = 4 << 20
)

// bigPools holds free buffers by size class (index: size / bigClassStep).
// A sync.Pool gives its contents to the garbage collector over two cycles,
// so a burst of big messages does not pin memory for good.
var bigPools [maxPooledBig/bigClassStep + 1]sync.Pool

// getBigBuf returns a buffer of at least size bytes, not zeroed: its
// previous contents stay until overwritten, so a caller only hands out the
// part it has filled.
func getBigBuf(size int) *bigBuf {
	if size > maxPooledBig {
		return &bigBuf{b: make([]byte, size)}
	}
	class := (size + bigClassStep - 1) / bigClassStep
	if bb, ok := bigPools[class].Get().(*bigBuf); ok {
		return bb
	}
	return &bigBuf{b: make([]byte, class*bigClassStep)}
}

// putBigBuf returns a buffer nobody reads any more to its pool.
func putBigBuf(bb *bigBuf) {
	if len(bb.b) > maxPooledBig {
		return // not from a pool (getBigBuf)
	}
	bigPools[len(bb.b)/bigClassStep].Put(bb)
}
