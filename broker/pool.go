package broker

import "sync"

// Messages are recycled: at the rates a broker routes, allocating one per
// PUBLISH keeps the garbage collector running, and it then costs more than
// routing, and more still with several cores (each one's allocations make
// work for all).
//
// Recycling needs to know when nobody refers to a message any more, so a
// message made for a client's PUBLISH (makeMessage) counts its holders: the
// publish that made it, each session that keeps a delivery of it in memory
// (in flight, or queued without being packed), and output that refers to
// its payload (lent, for big payloads); one made again from a delivery
// packed in a queue (queue.go) has that delivery as its holder. The
// retained index keeps a copy (retained.go). What else keeps a message for
// longer (a durable session's store writes) pins it instead, and a pinned
// message is left to the garbage collector like the ones that are not
// counted at all (wills, messages read from the store, refs 0). A holder
// dropped without unref (a session that ends with deliveries queued) only
// costs the recycling of that message.
//
// The last unref puts the message, and the pooled buffer of a big payload,
// back in their pools: nothing may read a message after letting go of it.

// messagePools hold recycled messages by inlineSizes class, zeroed.
var messagePools [len(inlineSizes)]sync.Pool

// pinnedRefs is what pin adds, once: no count of unrefs brings it back to 0.
const pinnedRefs = 1 << 30

// ref adds a holder. Only a holder may call it, so a counted message's
// count is not 0 then; for one that is not counted it does nothing.
func (m *message) ref() {
	if m.refs.Load() != 0 {
		m.refs.Add(1)
	}
}

// unref drops a holder; the last one recycles the message.
func (m *message) unref() {
	if m.refs.Load() != 0 && m.refs.Add(-1) == 0 {
		m.recycle()
	}
}

// pin keeps a counted message from ever being recycled.
func (m *message) pin() {
	// Once: refs is 32 bits, and a second pinnedRefs would take it past
	// them. Four pins (a message queued to four durable sessions) brought
	// it back to its count, and the message was recycled while they held it.
	for {
		n := m.refs.Load()
		if n == 0 || n >= pinnedRefs {
			return
		}
		if m.refs.CompareAndSwap(n, n+pinnedRefs) {
			return
		}
	}
}

// recycle gives a counted message that nobody holds back to the pools.
func (m *message) recycle() {
	n := len(m.Topic)
	if m.big != nil {
		putBigBuf(m.big)
	} else {
		n += len(m.Payload)
	}
	class := inlineClass(n) // makeMessage allocated n bytes with the message
	*m = message{}
	if class >= 0 {
		messagePools[class].Put(m)
	}
}
