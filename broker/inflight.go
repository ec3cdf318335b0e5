package broker

import (
	"math/bits"
	"sync"
	"unsafe"
)

// inflightWindow holds the QoS 1 and 2 deliveries sent to the client and
// not yet fully acknowledged, in sequence order. Packet ids derive from
// sequence numbers, so a window spanning fewer than 65535 sequence numbers
// never reuses an id in flight.
type inflightWindow struct {
	items []inflight
	// buf is items' whole array. Acknowledged deliveries leave the front
	// of items (remove), so the room before it is reused when items
	// reaches the end of buf, rather than append moving the window to a
	// new array every so many messages, which was most of the garbage a
	// subscriber made in fanin-q1.
	buf []inflight
}

type inflight struct {
	delivery // msg is dropped once PUBREC released it
}

func (w *inflightWindow) len() int {
	if w == nil {
		return 0
	}
	return len(w.items)
}

// all returns the deliveries in flight, in order.
func (w *inflightWindow) all() []inflight {
	if w == nil {
		return nil
	}
	return w.items
}

// hasRoom reports whether the delivery with sequence number seq may be sent
// within max and without reusing a packet id still in flight.
func (w *inflightWindow) hasRoom(max int, seq uint64) bool {
	if w.len() >= max {
		return false
	}
	return w.len() == 0 || seq-w.items[0].seq < 65535
}

// push records d in flight.
func (w *inflightWindow) push(d *delivery) {
	if n := len(w.items); n == cap(w.items) { // at the end of buf
		if w.buf != nil && n <= len(w.buf)/2 {
			// At least half of buf free before items: moving items to
			// the front costs at most one delivery's copy for each push
			// since the last move.
			copy(w.buf, w.items)
			clear(w.buf[n:])
			w.items = w.buf[:n]
		} else {
			// Twice what is in flight, so that half is free the next time.
			buf := getWindowArray(max(2*n, minWindowArray))
			w.items = buf[:copy(buf, w.items)]
			putWindowArray(w.buf)
			w.buf = buf
		}
	}
	w.items = append(w.items, inflight{delivery: *d})
}

// find returns the index of the delivery with packet id pid, or -1.
// Acknowledgements usually arrive in order, so the search from the front
// usually stops at once.
func (w *inflightWindow) find(pid uint16) int {
	if w == nil {
		return -1
	}
	for i := range w.items {
		if pidOf(w.items[i].seq) == pid {
			return i
		}
	}
	return -1
}

func (w *inflightWindow) remove(i int) {
	if i == 0 && len(w.items) > 16 {
		// Acknowledgements mostly come in order: from a long window the
		// front goes without moving the rest (push moves it to the front
		// of the array once the room behind runs out). A short one is
		// moved at once.
		w.items[0] = inflight{}
		w.items = w.items[1:]
	} else {
		copy(w.items[i:], w.items[i+1:])
		w.items[len(w.items)-1] = inflight{}
		w.items = w.items[:len(w.items)-1]
	}
	if len(w.items) == 0 && len(w.buf) > maxKeptWindow {
		// Give an idle session's memory back, to the pool: a window
		// that empties at each burst takes it again at the next.
		putWindowArray(w.buf)
		w.items, w.buf = nil, nil
	}
}

// maxKeptWindow is the largest array an empty window keeps: past it the
// array goes back to windowPools. Windows grow by doubling from
// minWindowArray, and every array a window leaves goes to the pools by its
// capacity, so that a window that fills and empties at each burst takes
// its arrays from them again.
const (
	maxKeptWindow     = 64
	minWindowArray    = 4
	windowPoolClasses = 15 // 4 << 14 = 65,536, the most a window holds
)

// windowPools hold zeroed arrays by pointer to their first element, as
// bufpool does: a pointer fits in an interface without allocating.
var windowPools [windowPoolClasses]sync.Pool

// windowClass is the pool of arrays of capacity at least n, or -1.
func windowClass(n int) int {
	if n <= minWindowArray {
		return 0
	}
	c := bits.Len(uint(n-1)) - bits.Len(uint(minWindowArray-1))
	if c >= windowPoolClasses {
		return -1
	}
	return c
}

// getWindowArray returns an array of zero deliveries with room for n.
func getWindowArray(n int) []inflight {
	c := windowClass(n)
	if c < 0 {
		return make([]inflight, n)
	}
	size := minWindowArray << c
	if p, ok := windowPools[c].Get().(*inflight); ok {
		return unsafe.Slice(p, size)
	}
	return make([]inflight, size)
}

// putWindowArray zeroes buf and gives it to windowPools, if it is one of
// their sizes.
func putWindowArray(buf []inflight) {
	n := len(buf)
	if n < minWindowArray || n&(n-1) != 0 {
		return
	}
	if c := windowClass(n); c >= 0 {
		clear(buf)
		windowPools[c].Put(&buf[0])
	}
}
