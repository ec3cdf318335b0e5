package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// session is the state MQTT keeps for a client id: its subscriptions, the
// QoS 1/2 messages in flight to it, the queue of messages waiting for it, and
// the QoS 2 packet ids it sent that await PUBREL. A session outlives its
// connections when its expiry interval says so; a connection only borrows
// it, and takeover hands it to the next connection under mu.
type session struct {
	id       uint64 // unique per session object; orders sessions when deduplicating matches
	clientID string
	srv      *Server

	mu sync.Mutex
	// conn is the connection that currently holds the session, nil while
	// offline; online mirrors conn != nil for readers without mu.
	conn *conn
	// client is who last connected to the session: what it may read.
	client atomic.Pointer[auth.Client]

	// The small fields sit together: a session is part of every idle
	// connection's cost.
	online atomic.Bool
	// nsubs is len(subs), readable without mu: routing only deduplicates
	// the matches of sessions holding more than one subscription.
	nsubs atomic.Int32
	// load mirrors, for readers without mu, how far behind the client is:
	// 0 while its in-flight window has room, loadFull or'ed with the
	// backlog once the window is full, so that a lower value is a member
	// with more room (shared.go). acks counts acknowledgements that arrived
	// while the window was full (stall.go). Both are kept under mu
	// (noteLoadLocked, noteAckLocked).
	load atomic.Uint32
	acks atomic.Uint32
	// expiry is the Session Expiry Interval in seconds: 0 ends the session
	// with its connection, expiryNever keeps it until a clean start.
	expiry uint32
	// ended is set once the session is discarded; a delivery racing with
	// that sees it and drops the message instead of queueing forever.
	ended bool
	// persisted is set for a session that is in the store; it stays set
	// until the session ends, even if its expiry drops to 0. Only such a
	// session has a durableState (clean sessions, most connections, spare
	// the memory).
	persisted bool
	// backedUp: publishers are held back until the backlog drains
	// (backpressure.go).
	backedUp bool

	// subs maps a topic filter (with its $share/ prefix) to the subscription.
	subs map[string]subscriber

	// nextSeq numbers the session's deliveries in order.
	nextSeq uint64
	// inflight is made at the first delivery with QoS 1 or 2: a pointer,
	// so that a session that never has one (most idle ones) spares the
	// slice. Nil answers len, hasRoom and find.
	inflight *inflightWindow
	*durableState
	// aside holds what few sessions need, made on first use under mu
	// (asideLocked) and kept; read it through x. The pointer is atomic for
	// the sweep's queueExpiry, read without mu.
	aside atomic.Pointer[sessionAside]
	// gen changes whenever a connection takes the session, so a timer armed
	// for an earlier absence does nothing.
	gen uint64
}

// sessionAside is the state most sessions never need: apart, so that a
// session, part of every connection's cost, stays in a smaller size class.
type sessionAside struct {
	// limits are the queue bounds of this session when they are its own
	// (Options.SessionQueueLimits), nil for the Options' (most sessions).
	limits *queueLimits
	// queue is made when the first delivery has to wait (queueLocked).
	queue *messageQueue
	// inboundQoS2 holds the packet ids of QoS 2 PUBLISHes received from the
	// client and not yet released by PUBREL: a re-sent PUBLISH with one of
	// these ids is acknowledged but not routed again. [MQTT-4.3.3-2]
	inboundQoS2 map[uint16]struct{}
	// away is what an offline session waits for; nil while connected.
	away *awayState
	// move is the session's part in a move between cluster nodes, nil
	// unless it is moving (handover.go).
	move *sessionMove
	// queueExpiry is the earliest expiry (unix ns) of a queued delivery, 0
	// for none: the background sweep purges the session once it passes.
	// Read without mu.
	queueExpiry atomic.Int64
	// since (unix ns) is when the session went offline, or moved to
	// another node, for the admin API; a connected session's is its
	// connection's connectedAt.
	since int64
}

// x returns a copy of the session's aside state, zero when it has none: a
// copy, so that writing through it does not compile (asideLocked is for
// that). mu is held, or the session is not shared yet.
func (ss *session) x() *sessionAside {
	if a := ss.aside.Load(); a != nil {
		return a
	}
	return &noAside
}

// noAside stands for the aside state of a session that has none: x returns
// it, and nothing writes to it.
var noAside sessionAside

// asideLocked returns the session's aside state, made if need be.
func (ss *session) asideLocked() *sessionAside {
	a := ss.aside.Load()
	if a == nil {
		a = new(sessionAside)
		ss.aside.Store(a)
	}
	return a
}

// subscriber is what the topic index holds for one subscription: the
// session and the options it subscribed with.
type subscriber struct {
	sess              *session
	qos               byte
	noLocal           bool
	retainAsPublished bool
	// checkRead: the authorizer must approve each message (it could not
	// vouch for every topic the filter matches).
	checkRead bool
	subID     uint32 // MQTT 5 Subscription Identifier, 0 when none
	group     *shareGroup
}

// delivery is one message on its way to one session, with what is
// particular to that delivery.
type delivery struct {
	msg    *message
	qos    byte
	retain bool
	subIDs []uint32 // the matching subscriptions' identifiers [MQTT-3.3.4-3]
	// seq orders the session's deliveries; the packet id derives from it.
	// A durable session's entry is stored under it, with the message body
	// under msgID.
	seq   uint64
	msgID uint64
	// released: QoS 2, PUBREC received, PUBREL sent, awaiting PUBCOMP.
	released bool
	// dup: sent before, on an earlier connection; goes out again with DUP=1.
	dup bool
	// sole: nothing else holds msg (it matched this subscription alone and
	// is not retained), so a queue may keep a copy instead (messageQueue).
	sole bool
	// shared: a shared group chose this session (only one node has the
	// message, which matters to a session moving between nodes).
	shared bool
}

// pidOf derives a packet id from a sequence number, so that a delivery
// re-sent after a restart keeps the packet id it was first sent with.
func pidOf(seq uint64) uint16 { return uint16((seq-1)%65535) + 1 } // seq 1 is packet id 1

// push hands a delivery to the session. It never blocks on the client: an
// online session with room in its window writes the message to the
// connection's outbound buffer; otherwise the message waits in the queue,
// bounded by the configured limits. A durable session's QoS 1 and 2
// deliveries are written to the store first (tx collects the writes) and
// go out once committed. push reports false when the session could not take
// the message (ended, or queue full), so a shared subscription can try
// another member. It may change *d.
func (ss *session) push(d *delivery, tx *routeTx) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.pushLocked(d, tx)
}

// pushLocked is push under ss.mu.
func (ss *session) pushLocked(d *delivery, tx *routeTx) bool {
	if ss.ended {
		return false
	}
	if mv := ss.x().move; mv != nil { // moving, or moved, between nodes (handover.go)
		if mv.done != nil {
			ss.holdLocked(*d, tx)
			return true
		}
		if mv.passedOn(ss.srv, d, tx) {
			return true
		}
	}
	if !d.msg.Expiry.IsZero() && d.msg.expired(time.Now()) {
		ss.srv.stats.expired.Add(1)
		ss.gaveUp(d, DropExpired)
		return true
	}
	c := ss.conn
	if d.qos == 0 && c != nil {
		r := c.writePublish(d, 0, false)
		if r == written || r == writtenOver {
			tx.sent[0]++
		}
		if r != written || ss.srv.opts.Hooks.OnDelivered != nil {
			if r == writtenOver {
				tx.outFull = append(tx.outFull, c) // the publisher waits (outwait.go)
			}
			ss.wroteQoS0(d, r)
		}
		return true
	}
	if d.qos == 0 && !(ss.durable() && ss.srv.opts.QueueQoS0) {
		ss.srv.stats.droppedQoS0Offline.Add(1)
		ss.gaveUp(d, DropOffline)
		return true
	}
	waiting, size := ss.backlogLocked(), d.msg.size()
	if !ss.hasQueueRoom(waiting, size) {
		ss.srv.dropped(&ss.srv.stats.droppedQueueFull, "session queue full: message dropped", ss, d.msg, d.qos)
		ss.gaveUp(d, DropQueueFull)
		return false
	}
	if c != nil && ss.backlogFullLocked(waiting, size) {
		// Queued all the same: the publisher waits instead (backpressure.go).
		tx.backedUp = append(tx.backedUp, ss)
	}
	if d.subIDs != nil {
		d.subIDs = slices.Clone(d.subIDs)
	}
	ss.noteExpiry(d.msg.Expiry)
	if ss.durable() {
		ss.stageLocked(*d, tx)
		ss.noteLoadLocked()
		return true
	}
	d.seq = ss.nextSeq
	ss.nextSeq++
	// Not durable, so the backlog counted above is the memory queue alone.
	if c != nil && waiting.n == 0 && ss.inflight.hasRoom(int(c.window), d.seq) {
		d.msg.ref() // until forgetLocked
		if ss.sendLocked(c, d) {
			tx.sent[d.qos]++
		}
		ss.noteLoadLocked()
		return true
	}
	if ss.srv.overMemoryBudget(size) {
		if c != nil {
			tx.backedUp = append(tx.backedUp, ss) // queued, and the publisher waits
		} else {
			ss.srv.dropped(&ss.srv.stats.droppedMemory, "queued-message memory budget spent: message dropped", ss, d.msg, d.qos)
			ss.gaveUp(d, DropMemory)
			return false
		}
	}
	d.msg.ref() // the queue's, until forgetLocked
	ss.queueLocked().push(ss.acct(), *d)
	ss.noteLoadLocked()
	return true
}

// backlog is what queuedLocked and queuedBytesLocked count, together:
// pushLocked checks two limits against it.
type backlog struct {
	n     int
	bytes int64
}

func (ss *session) backlogLocked() backlog {
	return backlog{n: ss.queuedLocked(), bytes: ss.queuedBytesLocked()}
}

// queuedBytesLocked is the payload bytes of the deliveries queuedLocked
// counts.
func (ss *session) queuedBytesLocked() int64 {
	return ss.x().queue.queuedBytes() + ss.storeQueuedBytesLocked()
}

// queuedLocked counts the deliveries waiting for their turn: not yet in
// flight to the client. The queue limits apply to these.
func (ss *session) queuedLocked() int {
	return ss.x().queue.len() + ss.storeQueuedLocked()
}

// storeQueuedLocked counts the queued deliveries outside the memory queue:
// a durable session's, waiting for their commit or in the store alone.
func (ss *session) storeQueuedLocked() int {
	if !ss.persisted {
		return 0
	}
	return len(ss.pending) + ss.stored
}

// storeQueuedBytesLocked is the payload bytes of those deliveries.
func (ss *session) storeQueuedBytesLocked() int64 {
	if !ss.persisted {
		return 0
	}
	return ss.storedBytes + ss.pendingBytes
}

// queueLimits are a session's own queue bounds.
type queueLimits struct {
	messages int
	bytes    int64
}

// asideFor returns a new session's aside state: only a session with queue
// bounds of its own needs one from the start.
func (s *Server) asideFor(clientID string) *sessionAside {
	if l := s.limitsFor(clientID); l != nil {
		return &sessionAside{limits: l}
	}
	return nil
}

// limitsFor returns clientID's own queue bounds, nil when they are the
// Options'.
func (s *Server) limitsFor(clientID string) *queueLimits {
	f := s.opts.SessionQueueLimits
	if f == nil {
		return nil
	}
	msgs, bytes := f(clientID)
	if msgs <= 0 && bytes <= 0 {
		return nil
	}
	l := &queueLimits{messages: s.opts.MaxQueuedMessages, bytes: s.opts.MaxQueuedBytes}
	if msgs > 0 {
		l.messages = msgs
	}
	if bytes > 0 {
		l.bytes = bytes
	}
	return l
}

// hasQueueRoom applies the queue limits to one more delivery of size
// bytes, behind the session's backlog b.
func (ss *session) hasQueueRoom(b backlog, size int) bool {
	maxMsgs, maxBytes := ss.srv.opts.MaxQueuedMessages, ss.srv.opts.MaxQueuedBytes
	if l := ss.x().limits; l != nil {
		maxMsgs, maxBytes = l.messages, l.bytes
	}
	if maxMsgs > 0 && b.n >= maxMsgs {
		return false
	}
	return maxBytes <= 0 || b.bytes+int64(size) <= maxBytes
}

// sendLocked records the delivery in flight and writes it, and reports
// whether it wrote a PUBLISH. A message larger than the client accepts is
// not sent: it is dropped as though delivered. [MQTT-3.1.2-25]
func (ss *session) sendLocked(c *conn, d *delivery) bool {
	ss.pushInflightLocked(d)
	if c.flags.Load()&flagHeldBack != 0 {
		// Its acknowledgements must be read (backpressure.go).
		ss.srv.endHold(c)
		c.letGo()
	}
	if d.released {
		c.writeAck(packet.PUBREL, pidOf(d.seq), packet.Success) // recovered after its PUBREC
		return false
	}
	switch c.writePublish(d, pidOf(d.seq), d.dup || (ss.persisted && d.seq < ss.resendBelow)) {
	case tooLarge:
		ss.removeInflightLocked(ss.inflight.len() - 1)
		ss.gaveUp(d, DropTooLarge)
		ss.forgetLocked(d)
		return false
	case notWritten:
		return false // in flight still, for the next connection
	}
	return true
}

// drainLocked moves queued deliveries into the in-flight window (and QoS 0
// ones straight out) while the connection has room, paging a durable
// session's stored backlog in as the memory queue empties. Messages that
// expired while queued are dropped. [MQTT-3.3.2-5]
func (ss *session) drainLocked(c *conn) {
	var now time.Time
	var sent [3]uint32 // PUBLISHes written, by QoS, counted once (stats.go)
	for {
		if ss.x().queue.len() == 0 {
			if !ss.persisted || ss.stored == 0 || !ss.pageInLocked() {
				break
			}
		}
		if qos, seq := ss.x().queue.front(); qos > 0 && !ss.inflight.hasRoom(int(c.window), seq) {
			break
		}
		d := ss.x().queue.pop(ss.acct())
		if !d.msg.Expiry.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if d.msg.expired(now) {
				ss.srv.stats.expired.Add(1)
				ss.gaveUp(&d, DropExpired)
				ss.forgetLocked(&d)
				continue
			}
		}
		if d.qos == 0 {
			r := c.writePublish(&d, 0, false)
			if r == written || r == writtenOver {
				sent[0]++
			}
			if r != written || ss.srv.opts.Hooks.OnDelivered != nil {
				ss.wroteQoS0(&d, r)
			}
			ss.forgetLocked(&d)
			continue
		}
		if ss.sendLocked(c, &d) {
			sent[d.qos]++
		}
	}
	ss.statShard().addSent(&sent)
	ss.relieveLocked()
	ss.noteLoadLocked()
}

// resumeLocked re-sends, in order, everything in flight when a connection
// takes the session: PUBLISH with DUP=1 for messages not yet acknowledged,
// PUBREL for QoS 2 messages already received. Then the queue drains.
// [MQTT-4.4.0-1]
func (ss *session) resumeLocked(c *conn) {
	// The new connection may allow fewer messages in flight than the last
	// one had: what does not fit goes back to the head of the queue, to be
	// re-sent (still with DUP=1) as acknowledgements free the window.
	// [MQTT-3.3.4-9] (v5)
	if over := ss.inflight.len() - int(c.window); over > 0 {
		back := ss.inflight.items[int(c.window):]
		for i := range back {
			back[i].dup = true
		}
		ss.queueLocked().pushFront(ss.acct(), back)
		clear(back)
		ss.inflight.items = ss.inflight.items[:int(c.window)]
		ss.gaugeLocked(0, 0, -over)
	}
	var sent [3]uint32
	for i := 0; i < ss.inflight.len(); {
		f := &ss.inflight.items[i]
		if f.released {
			c.writeAck(packet.PUBREL, pidOf(f.seq), packet.Success)
			i++
			continue
		}
		switch c.writePublish(&f.delivery, pidOf(f.seq), true) {
		case tooLarge:
			// Too large for this connection: dropped as though delivered. [MQTT-3.1.2-25]
			ss.gaveUp(&f.delivery, DropTooLarge)
			ss.forgetLocked(&f.delivery)
			ss.removeInflightLocked(i)
			continue
		case written:
			sent[f.qos]++
		}
		i++
	}
	ss.statShard().addSent(&sent)
	ss.drainLocked(c)
}

// acked handles PUBACK, PUBREC and PUBCOMP from the client for a message
// we sent. It reports whether the packet id was in flight at that stage.
// A PUBREC with a failure code ends the QoS 2 flow without PUBREL.
// [MQTT-4.3.3-4] (v5)
func (ss *session) acked(kind packet.Type, pid uint16, code packet.ReasonCode) bool {
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
		ss.noteAckLocked()
		ss.acknowledged(&f.delivery, code)
		ss.forgetLocked(&f.delivery)
		ss.removeInflightLocked(i)
	case packet.PUBREC:
		if f.qos != 2 {
			return false
		}
		if !f.released {
			ss.noteAckLocked() // a repeated PUBREC moves nothing on
			ss.acknowledged(&f.delivery, code)
		}
		if code.IsError() {
			ss.forgetLocked(&f.delivery)
			ss.removeInflightLocked(i)
			break
		}
		// The receiver owns the message now; what is left is the release.
		// A repeated PUBREC gets its PUBREL again. [MQTT-4.3.3-1]
		tx := txPool.Get().(*routeTx)
		defer putTx(tx)
		switch {
		case f.released:
		case ss.persisted && f.msgID != 0:
			// Released once the store has it (see committed); until then
			// a crash must find the PUBLISH still to be sent.
			ss.markReleasedLocked(f, tx)
			ss.releasing = append(ss.releasing, releasing{seq: f.seq, group: tx.group()})
			tx.waiters = append(tx.waiters, ss)
		default:
			f.released = true
			f.msg.unref()
			f.msg = releasedMessage // the message itself is no longer needed
		}
		if c := ss.conn; c != nil {
			// For a durable session the release is on disk first: were the
			// broker to crash before, it would send the PUBLISH again, which
			// the receiver can only tell from a new one until PUBREL.
			c.ack(packet.PUBREL, pid, packet.Success, tx.group())
			tx.finish(ss.srv, c)
		} else {
			tx.finish(ss.srv, nil)
		}
		return true
	case packet.PUBCOMP:
		if f.qos != 2 || !f.released {
			return false
		}
		ss.noteAckLocked()
		ss.forgetLocked(&f.delivery)
		ss.removeInflightLocked(i)
	}
	if ss.conn != nil {
		ss.drainLocked(ss.conn)
	}
	return true
}

// receivedQoS2 records an inbound QoS 2 packet id (in the store too, for a
// durable session, as part of tx). It reports dup when the id is already
// awaiting PUBREL (the PUBLISH is a re-send and must not be routed again),
// and full when accepting it would exceed max unacknowledged PUBLISHes.
func (ss *session) receivedQoS2(pid uint16, max int, tx *routeTx) (dup, full bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.x().inboundQoS2[pid]; ok {
		return true, false
	}
	if len(ss.x().inboundQoS2) >= max {
		return false, true
	}
	if ss.x().inboundQoS2 == nil {
		ss.asideLocked().inboundQoS2 = make(map[uint16]struct{})
	}
	ss.x().inboundQoS2[pid] = struct{}{}
	if ss.durable() {
		tx.batch(ss.srv).PutQueue(ss.inboundName(), uint64(pid), nil)
	}
	return false, false
}

// awaitingRelease reports whether the client's QoS 2 packet id pid was
// received and awaits PUBREL.
func (ss *session) awaitingRelease(pid uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.x().inboundQoS2[pid]
	return ok
}

// released forgets an inbound QoS 2 packet id on PUBREL, reporting whether
// it was known. A durable session's id leaves the store through tx, and
// PUBCOMP waits for it: once PUBCOMP is sent the client may reuse the id.
func (ss *session) released(pid uint16, tx *routeTx) (known bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, known = ss.x().inboundQoS2[pid]
	if known {
		delete(ss.aside.Load().inboundQoS2, pid)
		if len(ss.aside.Load().inboundQoS2) == 0 {
			ss.aside.Load().inboundQoS2 = nil
		}
	}
	if known && ss.durable() {
		tx.batch(ss.srv).DeleteQueue(ss.inboundName(), uint64(pid))
		tx.sync = true
	}
	return known
}

// awayState is what an offline session waits for: a will's delay, its own
// expiry, and the one timer that wakes for the earlier of the two.
type awayState struct {
	pendingWill *message
	willAt      time.Time
	expireAt    time.Time
	timer       *time.Timer
}

// awayLocked returns the session's away state, made on first use.
func (ss *session) awayLocked() *awayState {
	if ss.x().away == nil {
		ss.asideLocked().away = new(awayState)
	}
	return ss.x().away
}

// stopAwayLocked forgets the away state: a connection took the session
// (which cancels a will waiting for its delay) or the session ended. It
// returns the will that was waiting.
func (ss *session) stopAwayLocked() *message {
	a := ss.x().away
	if a == nil {
		return nil
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	ss.aside.Load().away = nil
	return a.pendingWill
}

// armLocked sets the timer for the earlier of the pending will's delay and
// the session's expiry, or stops it when neither is due.
func (ss *session) armLocked(now time.Time) {
	a := ss.x().away
	if a == nil {
		return
	}
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	var next time.Time
	if a.pendingWill != nil {
		next = a.willAt
	}
	if !a.expireAt.IsZero() && (next.IsZero() || a.expireAt.Before(next)) {
		next = a.expireAt
	}
	if next.IsZero() {
		ss.aside.Load().away = nil
		return
	}
	gen := ss.gen
	a.timer = time.AfterFunc(next.Sub(now), func() { ss.srv.sessionTimer(ss, gen) })
}

// pushInflightLocked records d in flight, and counts it (stats.go).
func (ss *session) pushInflightLocked(d *delivery) {
	if ss.inflight == nil {
		ss.inflight = new(inflightWindow)
	}
	ss.inflight.push(d)
	ss.gaugeLocked(0, 0, 1)
}

// removeInflightLocked forgets the delivery in flight at i.
func (ss *session) removeInflightLocked(i int) {
	ss.inflight.remove(i)
	ss.gaugeLocked(0, 0, -1)
}

// queueLocked returns the session's queue, making it if needed.
func (ss *session) queueLocked() *messageQueue {
	if ss.x().queue == nil {
		ss.asideLocked().queue = new(messageQueue)
	}
	return ss.x().queue
}
