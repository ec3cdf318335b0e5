package broker

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/record"
	"github.com/petrelmq/petrel/packet"
)

// messageQueue is a session's FIFO of deliveries waiting for the client.
//
// A client that is behind can have a great many small messages waiting, so
// the queue keeps them packed where it can: a delivery whose message
// nobody else holds (delivery.sole) is copied into the queue's buffer,
// topic and payload included, about ten bytes over their length, and its
// message is made again when it leaves the queue. Every other delivery (a
// message shared with other sessions, a big one, one with MQTT 5
// properties beyond maxPackedProps, a durable session's) is kept as it
// is, behind a one-byte record that holds its place in the order.
//
// Its payload bytes count towards the server's queued-memory budget, and
// its deliveries towards the queued-message gauge (queueAcct). The
// methods that change it take a queueAcct rather than each queue keeping a
// pointer to it.
type messageQueue struct {
	// chunks hold the records, the first from head on. Each is a bufpool
	// buffer, given back once read: records are never moved, so a queue
	// millions long costs one copy of each message in and one out.
	chunks [][]byte
	head   int
	// refs are the deliveries of the ref records, in order, from refHead.
	refs    []delivery
	refHead int
	n       int
	bytes   int64
}

// maxPacked is the largest topic and payload a delivery is packed with:
// beyond it the message's own overhead is small beside its bytes.
// maxPackedProps bounds the MQTT 5 properties packed with them.
const (
	maxPacked      = 1 << 10
	maxPackedProps = 512
)

// Record flags (the first byte of each record).
const (
	recPacked    = 1 << 0
	recQoSShift  = 1 // 2 bits: the delivery's QoS
	recRetain    = 1 << 3
	recDup       = 1 << 4
	recExpiry    = 1 << 5
	recMsgRetain = 1 << 6
	recProps     = 1 << 7
	// The message's own QoS is in the second byte of a packed record.
)

// queueAcct is where a queue's changes are counted: its payload bytes in
// the server's queued-memory total (Server.queuedMem, for the budget), its
// deliveries in the session's statistics shard (stats.go).
type queueAcct struct {
	mem, n *atomic.Int64
}

// account counts n bytes and k deliveries more (fewer, when negative).
func (q *messageQueue) account(a queueAcct, n int64, k int) {
	q.bytes += n
	a.mem.Add(n)
	a.n.Add(int64(k))
}

// len returns the number of deliveries queued; a nil queue is empty.
func (q *messageQueue) len() int {
	if q == nil {
		return 0
	}
	return q.n
}

// queuedBytes returns the payload bytes queued.
func (q *messageQueue) queuedBytes() int64 {
	if q == nil {
		return 0
	}
	return q.bytes
}

// reset empties the queue, giving its memory back to the budget. Messages
// it held are let go without unref: their pooled buffers, if any, are left
// to the garbage collector.
func (q *messageQueue) reset(a queueAcct) {
	if q == nil {
		return
	}
	q.account(a, -q.bytes, -q.n)
	for _, c := range q.chunks {
		bufpool.Put(c)
	}
	*q = messageQueue{}
}

// packable reports whether d may be copied into the queue.
func packable(d *delivery) bool {
	m := d.msg
	return d.sole && d.msgID == 0 && !d.released &&
		len(m.Topic)+m.size() <= maxPacked && (m.Props == nil || propsSize(m.Props) <= maxPackedProps)
}

// push adds d at the end. The queue takes over the caller's reference to
// d.msg (pool.go), and lets go of it at once if it packs d.
func (q *messageQueue) push(a queueAcct, d delivery) {
	if packable(&d) {
		c := q.room(packedSize(&d))
		*c = appendPacked(*c, &d)
		d.msg.unref()
	} else {
		c := q.room(1)
		*c = append(*c, 0)
		q.refs = append(q.refs, d)
	}
	q.n++
	q.account(a, int64(d.msg.size()), 1)
}

// room returns the last chunk, with at least size bytes free.
func (q *messageQueue) room(size int) *[]byte {
	if k := len(q.chunks); k > 0 && cap(q.chunks[k-1])-len(q.chunks[k-1]) >= size {
		return &q.chunks[k-1]
	}
	// Chunks grow with the queue: a session a few messages behind holds
	// 512 bytes, a long queue 32 KiB chunks.
	next := 512
	if k := len(q.chunks); k > 0 {
		next = min(2*cap(q.chunks[k-1]), 32<<10)
	}
	q.chunks = append(q.chunks, bufpool.Get(max(size, next)))
	return &q.chunks[len(q.chunks)-1]
}

// packedSize is the length of d's packed record (appendPacked).
func packedSize(d *delivery) int {
	m := d.msg
	n := 2 + uvarintLen(d.seq) + uvarintLen(uint64(len(d.subIDs))) +
		uvarintLen(uint64(len(m.Topic))) + uvarintLen(uint64(m.size())) + len(m.Topic) + m.size()
	if !m.Expiry.IsZero() {
		n += 8
	}
	for _, id := range d.subIDs {
		n += uvarintLen(uint64(id))
	}
	if m.Props != nil {
		n += propsSize(m.Props)
	}
	return n
}

// propsSize is the length of appendProps(nil, p).
func propsSize(p *packet.Properties) int {
	str := func(n int) int { return uvarintLen(uint64(n)) + n }
	n := uvarintLen(uint64(p.Present&forwarded)) + 1 + str(len(p.ContentType)) + str(len(p.ResponseTopic)) +
		str(len(p.CorrelationData)) + uvarintLen(uint64(len(p.User)))
	for _, u := range p.User {
		n += str(len(u.Key)) + str(len(u.Value))
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// appendPacked appends d's packed record: flags, the message's QoS, seq,
// the expiry (unix ns) if any, the subscription identifiers, the topic and
// payload lengths, then the topic and payload.
func appendPacked(b []byte, d *delivery) []byte {
	m := d.msg
	flags := byte(recPacked) | d.qos<<recQoSShift
	if d.retain {
		flags |= recRetain
	}
	if d.dup {
		flags |= recDup
	}
	if !m.Expiry.IsZero() {
		flags |= recExpiry
	}
	if m.Retain {
		flags |= recMsgRetain
	}
	if m.Props != nil {
		flags |= recProps
	}
	b = append(b, flags, m.QoS)
	b = binary.AppendUvarint(b, d.seq)
	if !m.Expiry.IsZero() {
		b = binary.BigEndian.AppendUint64(b, uint64(m.Expiry.UnixNano()))
	}
	b = binary.AppendUvarint(b, uint64(len(d.subIDs)))
	for _, id := range d.subIDs {
		b = binary.AppendUvarint(b, uint64(id))
	}
	if m.Props != nil {
		b = appendProps(b, m.Props) // the forwarded ones, as a message record has them
	}
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	body := m.body()
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, m.Topic...)
	return append(b, body...)
}

// front returns the QoS and sequence number of the delivery at the head,
// which must exist, without taking it.
func (q *messageQueue) front() (qos byte, seq uint64) {
	b := q.chunks[0]
	flags := b[q.head]
	if flags&recPacked == 0 {
		d := &q.refs[q.refHead]
		return d.qos, d.seq
	}
	seq, _ = binary.Uvarint(b[q.head+2:])
	return (flags >> recQoSShift) & 3, seq
}

// pop takes the delivery at the head, which must exist. A packed one gets
// a message of its own again, of which the caller is the holder.
func (q *messageQueue) pop(a queueAcct) delivery {
	var d delivery
	b := q.chunks[0]
	if b[q.head]&recPacked == 0 {
		q.head++
		d = q.refs[q.refHead]
		q.refs[q.refHead] = delivery{}
		q.refHead++
	} else {
		d, q.head = unpack(b, q.head)
	}
	q.n--
	q.account(a, -int64(d.msg.size()), -1)
	switch {
	case q.n == 0:
		for _, c := range q.chunks {
			bufpool.Put(c)
		}
		clear(q.chunks)
		q.chunks, q.head = q.chunks[:0], 0
		q.refs, q.refHead = q.refs[:0], 0
		if cap(q.refs) > 1024 {
			q.refs = nil // give a drained queue's memory back
		}
	case q.head == len(b):
		bufpool.Put(b)
		q.chunks[0] = nil
		q.chunks, q.head = q.chunks[1:], 0
	}
	if q.refHead > 1024 && q.refHead > len(q.refs)/2 {
		n := copy(q.refs, q.refs[q.refHead:])
		clear(q.refs[n:])
		q.refs, q.refHead = q.refs[:n], 0
	}
	return d
}

// unpack decodes the packed record at b[at:] (appendPacked's, so well
// formed) and returns it with the offset after it.
func unpack(b []byte, at int) (delivery, int) {
	flags, msgQoS := b[at], b[at+1]
	at += 2
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b[at:])
		at += n
		return v
	}
	d := delivery{
		qos:    (flags >> recQoSShift) & 3,
		retain: flags&recRetain != 0,
		dup:    flags&recDup != 0,
		sole:   true,
	}
	d.seq = uvarint()
	var expiry time.Time
	if flags&recExpiry != 0 {
		expiry = time.Unix(0, int64(binary.BigEndian.Uint64(b[at:])))
		at += 8
	}
	if n := uvarint(); n > 0 {
		d.subIDs = make([]uint32, n)
		for i := range d.subIDs {
			d.subIDs[i] = uint32(uvarint())
		}
	}
	var props *packet.Properties
	if flags&recProps != 0 {
		r := reader{record.Reader{B: b[at:]}}
		props = r.props()
		at = len(b) - len(r.B)
	}
	topicLen, payloadLen := int(uvarint()), int(uvarint())
	m, data := allocMessage(topicLen + payloadLen)
	copy(data, b[at:at+topicLen+payloadLen])
	at += topicLen + payloadLen
	m.Payload = data[topicLen:len(data):len(data)]
	if topicLen > 0 {
		m.Topic = unsafe.String(&data[0], topicLen)
	}
	m.QoS, m.Retain, m.Expiry, m.Props = msgQoS, flags&recMsgRetain != 0, expiry, props
	// Counted, with the delivery as its one holder (pool.go): uncounted, it
	// was left to the collector, and a subscriber that is behind had every
	// message it took from its queue allocated anew.
	m.refs.Store(1)
	d.msg = m
	return d, at
}

// pushFront puts ds, in order, ahead of everything queued; they stay as
// they are (a delivery in flight may be shared).
func (q *messageQueue) pushFront(a queueAcct, ds []inflight) {
	var rest []byte
	if len(q.chunks) > 0 {
		rest = q.chunks[0][q.head:]
	}
	first := bufpool.Get(len(ds) + len(rest))[:len(ds)]
	clear(first) // ref records
	first = append(first, rest...)
	if len(q.chunks) > 0 {
		bufpool.Put(q.chunks[0])
		q.chunks[0] = first
	} else {
		q.chunks = append(q.chunks, first)
	}
	q.head = 0
	refs := make([]delivery, 0, len(ds)+len(q.refs)-q.refHead)
	for _, f := range ds {
		d := f.delivery
		d.sole = false
		refs = append(refs, d)
		q.account(a, int64(f.msg.size()), 1)
	}
	q.refs = append(refs, q.refs[q.refHead:]...)
	q.refHead = 0
	q.n += len(ds)
}
