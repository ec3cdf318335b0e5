package broker

import (
	"sync"
	"sync/atomic"

	"github.com/petrelmq/petrel/packet"
)

// session is the state MQTT keeps for a client id: its subscriptions, the
// QoS 1/2 messages in flight to it, the queue of messages waiting for it, and
// the QoS 2 packet ids it sent that await PUBREL. A session outlives its
// connections when the client asked for a persistent one; a connection only
// borrows it, and takeover hands it to the next connection under mu.
type session struct {
	id       uint64 // unique per session object; orders sessions when deduplicating matches
	clientID string
	srv      *Server

	mu sync.Mutex
	// conn is the connection that currently holds the session, nil while offline.
	conn *conn
	// persistent sessions survive their connection (3.1.1 CleanSession=0).
	persistent bool
	// ended is set once the session is discarded; a delivery racing with
	// that sees it and drops the message instead of queueing forever.
	ended bool

	// subs maps a topic filter to the subscription's options.
	subs map[string]subscriber
	// nsubs is len(subs), readable without mu: routing only deduplicates
	// the matches of sessions holding more than one subscription.
	nsubs atomic.Int32

	inflight inflightWindow
	queue    messageQueue
	// inboundQoS2 holds the packet ids of QoS 2 PUBLISHes received from the
	// client and not yet released by PUBREL: a re-sent PUBLISH with one of
	// these ids is acknowledged but not routed again. [MQTT-4.3.3-2]
	inboundQoS2 map[uint16]struct{}
}

// subscriber is what the topic index holds for one subscription: the
// session and the options it subscribed with.
type subscriber struct {
	sess *session
	qos  byte
}

// deliver hands a live message to the session at the QoS the subscription
// grants, with RETAIN=0. [MQTT-3.3.1-9]
func (ss *session) deliver(m *Message, qos byte) { ss.push(m, qos, false) }

// deliverRetained hands a retained message to a new subscription, with
// RETAIN=1. [MQTT-3.3.1-8]
func (ss *session) deliverRetained(m *Message, qos byte) { ss.push(m, qos, true) }

// push never blocks on the client: an online session with room in its
// window writes the message to the connection's outbound buffer; otherwise
// the message waits in the queue, bounded by the configured limits.
func (ss *session) push(m *Message, qos byte, retain bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	c := ss.conn
	if qos == 0 {
		if c != nil {
			c.writePublish(m, 0, 0, false, retain)
			return
		}
		if ss.persistent && ss.srv.opts.QueueQoS0 {
			ss.enqueueLocked(m, 0, retain)
			return
		}
		ss.srv.stats.droppedQoS0Offline.Add(1)
		return
	}
	if c != nil && ss.queue.len() == 0 && ss.inflight.hasRoom(ss.srv.opts.MaxInflight) {
		ss.sendLocked(c, m, qos, retain)
		return
	}
	ss.enqueueLocked(m, qos, retain)
}

// sendLocked assigns a packet id, records the message in flight and writes it.
func (ss *session) sendLocked(c *conn, m *Message, qos byte, retain bool) {
	pid := ss.inflight.push(m, qos, retain)
	c.writePublish(m, qos, pid, false, retain)
}

// enqueueLocked queues a message for later delivery, or drops it when the
// queue is full; drops are counted and logged.
func (ss *session) enqueueLocked(m *Message, qos byte, retain bool) {
	o := &ss.srv.opts
	if (o.MaxQueuedMessages > 0 && ss.queue.len() >= o.MaxQueuedMessages) ||
		(o.MaxQueuedBytes > 0 && ss.queue.bytes+int64(len(m.Payload)) > o.MaxQueuedBytes) {
		n := ss.srv.stats.droppedQueueFull.Add(1)
		ss.srv.log.Warn("session queue full: message dropped",
			"client", ss.clientID, "topic", m.Topic, "qos", qos, "queued", ss.queue.len(), "dropped_total", n)
		return
	}
	ss.queue.push(queued{m, qos, retain})
}

// drainLocked moves queued messages into the in-flight window (and QoS 0
// ones straight out) while the connection has room.
func (ss *session) drainLocked(c *conn) {
	max := ss.srv.opts.MaxInflight
	for ss.queue.len() > 0 {
		q := ss.queue.peek()
		if q.qos > 0 && !ss.inflight.hasRoom(max) {
			return
		}
		ss.queue.pop()
		if q.qos == 0 {
			c.writePublish(q.msg, 0, 0, false, q.retain)
			continue
		}
		ss.sendLocked(c, q.msg, q.qos, q.retain)
	}
}

// resumeLocked re-sends, in order, everything in flight when a connection
// takes the session: PUBLISH with DUP=1 for messages not yet acknowledged,
// PUBREL for QoS 2 messages already received. [MQTT-4.4.0-1]
func (ss *session) resumeLocked(c *conn) {
	for i := range ss.inflight.items {
		f := &ss.inflight.items[i]
		if f.released {
			c.writeAck(packet.PUBREL, f.pid, packet.Success)
			continue
		}
		c.writePublish(f.msg, f.qos, f.pid, true, f.retain)
	}
	ss.drainLocked(c)
}

// acked handles PUBACK (kind PUBACK), PUBREC and PUBCOMP from the client for
// a message we sent. It reports whether the packet id was in flight.
func (ss *session) acked(kind packet.Type, pid uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	i := ss.inflight.find(pid)
	if i < 0 {
		return false
	}
	f := &ss.inflight.items[i]
	switch kind {
	case packet.PUBACK:
		if f.qos != 1 {
			return false
		}
		ss.inflight.remove(i)
	case packet.PUBREC:
		if f.qos != 2 {
			return false
		}
		// The receiver owns the message now; what is left is the release. [MQTT-4.3.3-1]
		f.released = true
		f.msg = nil
		if ss.conn != nil {
			ss.conn.writeAck(packet.PUBREL, pid, packet.Success)
		}
		return true
	case packet.PUBCOMP:
		if f.qos != 2 || !f.released {
			return false
		}
		ss.inflight.remove(i)
	}
	if ss.conn != nil {
		ss.drainLocked(ss.conn)
	}
	return true
}

// receivedQoS2 records an inbound QoS 2 packet id. It reports false when the
// id is already awaiting PUBREL: the PUBLISH is a re-send and must not be
// routed again.
func (ss *session) receivedQoS2(pid uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.inboundQoS2[pid]; dup {
		return false
	}
	if ss.inboundQoS2 == nil {
		ss.inboundQoS2 = make(map[uint16]struct{})
	}
	ss.inboundQoS2[pid] = struct{}{}
	return true
}

// released forgets an inbound QoS 2 packet id on PUBREL. It reports whether
// the id was known.
func (ss *session) released(pid uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.inboundQoS2[pid]
	delete(ss.inboundQoS2, pid)
	if len(ss.inboundQoS2) == 0 {
		ss.inboundQoS2 = nil
	}
	return ok
}

// inflightWindow holds the QoS 1 and 2 messages sent to the client and not
// yet fully acknowledged, in the order they were sent. Packet ids are handed
// out sequentially, so the ids in use always lie between the oldest entry's id
// and the last one handed out; the next id is free unless that range has
// wrapped all the way round.
type inflightWindow struct {
	items  []inflight
	lastID uint16
}

type inflight struct {
	msg      *Message // nil once PUBREC released it
	pid      uint16
	qos      byte
	retain   bool
	released bool // QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP
}

func (w *inflightWindow) len() int { return len(w.items) }

// hasRoom reports whether another message may be sent within max and
// whether a free packet id exists.
func (w *inflightWindow) hasRoom(max int) bool {
	if len(w.items) >= max {
		return false
	}
	if len(w.items) == 0 {
		return true
	}
	next := w.lastID + 1
	if next == 0 {
		next = 1
	}
	oldest := w.items[0].pid
	return next-oldest > w.lastID-oldest // next lies outside [oldest, lastID]
}

// push records m in flight and returns its packet id. Call hasRoom first.
func (w *inflightWindow) push(m *Message, qos byte, retain bool) uint16 {
	w.lastID++
	if w.lastID == 0 {
		w.lastID = 1
	}
	w.items = append(w.items, inflight{msg: m, pid: w.lastID, qos: qos, retain: retain})
	return w.lastID
}

// find returns the index of pid, or -1. Acknowledgements usually arrive in
// order, so the search from the front usually stops at once.
func (w *inflightWindow) find(pid uint16) int {
	for i := range w.items {
		if w.items[i].pid == pid {
			return i
		}
	}
	return -1
}

func (w *inflightWindow) remove(i int) {
	copy(w.items[i:], w.items[i+1:])
	w.items[len(w.items)-1] = inflight{}
	w.items = w.items[:len(w.items)-1]
	if len(w.items) == 0 && cap(w.items) > 64 {
		w.items = nil // give an idle session's memory back
	}
}

// messageQueue is a FIFO of messages waiting for the client.
type messageQueue struct {
	items []queued
	head  int
	bytes int64
}

type queued struct {
	msg    *Message
	qos    byte
	retain bool
}

func (q *messageQueue) len() int { return len(q.items) - q.head }

func (q *messageQueue) push(it queued) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, it)
	q.bytes += int64(len(it.msg.Payload))
}

func (q *messageQueue) peek() queued { return q.items[q.head] }

func (q *messageQueue) pop() {
	q.bytes -= int64(len(q.items[q.head].msg.Payload))
	q.items[q.head] = queued{}
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > 1024 {
			q.items = nil
		}
	case q.head > 1024 && q.head > len(q.items)/2:
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}
