package broker

import (
	"sync"
	"sync/atomic"
)

// A big PUBLISH is read into a buffer of its own (bigBuffer), and its
// message keeps that buffer rather than copying the payload. Those buffers
// are recycled: a fresh 256 KiB buffer per message costs more than the
// broker's own work on it (zeroing, page faults after the scavenger gave
// the pages back, and a garbage collection every few messages).
//
// Recycling needs to know when nobody reads the payload any more, so a
// message with a pooled buffer counts its holders: the publish that made
// it, and each session that keeps a delivery of it in memory (in flight or
// queued). Everything else that keeps a message for longer (the retained
// index, a durable session's store writes) pins it instead, and a pinned
// buffer is left to the garbage collector like any other. A holder that is
// dropped without a release (a session that ends with deliveries queued)
// only costs the recycling of that buffer.
type bigBuf struct {
	b    []byte // the whole buffer, its size class long
	refs atomic.Int32
}

const (
	// bigClassStep is the granularity of the pooled sizes: Go gives a
	// large object whole 8 KiB pages anyway.
	bigClassStep = 8 << 10
	// maxPooledBig bounds the sizes recycled: bigger packets are rare, and
	// a pool of them would hold a lot of memory.
	maxPooledBig = 4 << 20
	// pinnedRefs is added by pin: no count of releases brings it back to 0.
	pinnedRefs = 1 << 30
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

// unref drops one holder; the last one returns the buffer to its pool.
func (bb *bigBuf) unref() {
	if bb.refs.Add(-1) != 0 || len(bb.b) > maxPooledBig || len(bb.b)%bigClassStep != 0 {
		return
	}
	bigPools[len(bb.b)/bigClassStep].Put(bb)
}

// ref, unref and pin count the holders of a message with a pooled buffer
// (see bigBuf); for any other message they do nothing.
func (m *Message) ref() {
	if m.big != nil {
		m.big.refs.Add(1)
	}
}

func (m *Message) unref() {
	if m.big != nil {
		m.big.unref()
	}
}

func (m *Message) pin() {
	if m.big != nil {
		m.big.refs.Add(pinnedRefs)
	}
}
