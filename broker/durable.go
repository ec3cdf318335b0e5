package broker

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/petrelmq/petrel/store"
)

// A session whose expiry outlives its connection is durable: its state and
// every QoS 1/2 delivery waiting for its client are in the store, so a
// restart or a crash loses nothing the broker acknowledged. The contract:
// a publisher's PUBACK/PUBREC is sent only after the message is committed
// for every durable session it goes to (and as the retained message, if it
// is one); a durable session receives a message only once it is committed,
// so a crash cannot deliver what the publisher will send again.
//
// In memory a durable session keeps what is in flight and a bounded prefix
// of its queue; the rest stays in the store and is paged in as the client
// acknowledges, so memory stays flat however much is queued.

// durableState is the store side of a session.
type durableState struct {
	// uid names this incarnation's queues in the store, so a session that
	// replaces an ended one with the same client id never meets its entries.
	uid string
	// pending deliveries wait for their commit group, in sequence order.
	pending      []pendingDelivery
	pendingBytes int64
	// stored counts the committed deliveries that are only in the store,
	// all after the memory queue, starting at sequence number storedFrom.
	stored      int
	storedFrom  uint64
	storedBytes int64
	// resendBelow: deliveries with smaller sequence numbers may have been
	// sent before a restart, so they go out again with DUP=1.
	resendBelow uint64
	// releasing are QoS 2 deliveries whose PUBREC is being written: they
	// count as released once their commit group is on disk.
	releasing []releasing
}

type releasing struct {
	seq, group uint64
}

type pendingDelivery struct {
	delivery
	group uint64
	state pendingState
}

type pendingState uint8

const (
	pendingWaiting pendingState = iota
	pendingDone
	pendingFailed
)

// memQueueLimit bounds a durable session's in-memory queue; the rest waits
// in the store.
const memQueueLimit = 1024

func (ss *session) durable() bool { return ss.persisted }

func (ss *session) queueName() string   { return ss.clientID + "\x00q" + ss.uid }
func (ss *session) inboundName() string { return ss.clientID + "\x00i" + ss.uid }

func newSessionUID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// routeTx collects the store writes of routing one message (or of one
// acknowledgement that must be durable before it is answered).
type routeTx struct {
	g     *commitGroup
	b     store.Batch
	msgID uint64 // the stored body of msg, which refs entries share
	msg   *message
	refs  uint32
	// earlier are the stored bodies, and their entries, of the messages
	// staged before msg in this tx (a batch from another node, or what
	// an arriving session held).
	earlier []msgRefs
	sync    bool
	waiters []commitWaiter
	// backedUp are the online sessions whose backlog the routing filled:
	// the publisher waits for them (backpressure.go).
	backedUp []*session
	// outFull are the connections whose QoS 0 output the routing took
	// past its bound: the publisher waits for them too (outwait.go).
	outFull []*conn
	// sent counts the PUBLISHes the routing wrote, by QoS: the caller adds
	// them to the statistics once (stats.go).
	sent [3]uint32
	// remote is the cluster work the acknowledgement waits for, and
	// clusterFull says that the queue to another node is at its bound
	// (cluster.go).
	remote      []*Pending
	clusterFull bool
	// route is publishClustered's question to the cluster, kept with the
	// tx (made on first use).
	route *ClusterRoute
	// stamp and stampNode say where the message being routed comes from
	// on a cluster node: the node ("" for this one) and its count of
	// routings, so that a session moving between nodes takes each message
	// once (handover.go).
	stamp     uint64
	stampNode string
}

// batch pins the open commit group on first use and returns the writes.
func (tx *routeTx) batch(s *Server) *store.Batch {
	if tx.g == nil {
		tx.g = s.committer.begin()
	}
	return &tx.b
}

// reset empties tx for reuse.
func (tx *routeTx) reset() {
	tx.resetWrites()
	clear(tx.backedUp)
	tx.backedUp = tx.backedUp[:0]
	clear(tx.outFull)
	tx.outFull = tx.outFull[:0]
	clear(tx.remote)
	tx.remote = tx.remote[:0]
	tx.clusterFull = false
	tx.sent = [3]uint32{}
	tx.stamp, tx.stampNode = 0, ""
}

// resetWrites empties tx of its store writes, once they are handed over.
func (tx *routeTx) resetWrites() {
	tx.g, tx.msgID, tx.msg, tx.refs, tx.sync = nil, 0, nil, 0, false
	tx.earlier = tx.earlier[:0]
	tx.b.Reset()
	clear(tx.waiters)
	tx.waiters = tx.waiters[:0]
}

// group is the commit group the writes joined, 0 when there are none. A
// reply that must wait for them is registered under it before finish: the
// group cannot commit until finish unpins it.
func (tx *routeTx) group() uint64 {
	if tx.g == nil {
		return 0
	}
	return tx.g.id
}

// finish hands the writes to the committer; waiter (if any) hears when they
// are durable.
func (tx *routeTx) finish(s *Server, waiter commitWaiter) {
	if tx.g == nil {
		return
	}
	if waiter != nil {
		tx.waiters = append(tx.waiters, waiter)
	}
	s.committer.endTx(tx.g, tx)
	tx.resetWrites() // ready for more writes
}

// stageLocked writes a durable delivery to tx and holds it until its commit.
func (ss *session) stageLocked(d delivery, tx *routeTx) {
	s := ss.srv
	d.msg.pin() // held by the store's path (pending, paged in) as well as in memory
	b := tx.batch(s)
	if tx.msgID == 0 || tx.msg != d.msg {
		if tx.msgID != 0 {
			tx.earlier = append(tx.earlier, msgRefs{tx.msgID, tx.refs})
			tx.refs = 0
		}
		tx.msgID, tx.msg = s.nextMessageID(), d.msg
		b.PutMessage(tx.msgID, appendMessage(nil, d.msg))
	}
	tx.refs++
	tx.sync = tx.sync || d.qos > 0
	d.seq, d.msgID = ss.nextSeq, tx.msgID
	ss.nextSeq++
	if ss.x().move != nil && ss.x().move.leaving && !d.shared && tx.stamp != 0 {
		ss.x().move.stamps[d.seq] = stampRef{tx.stampNode, tx.stamp} // handover.go
	}
	b.PutQueue(ss.queueName(), d.seq, appendEntry(nil, entryOf(&d, false)))
	ss.pending = append(ss.pending, pendingDelivery{delivery: d, group: tx.g.id})
	ss.pendingBytes += int64(d.msg.size())
	ss.gaugeLocked(1, int64(d.msg.size()), 0)
	tx.waiters = append(tx.waiters, ss)
}

// msgRefs is a stored message body and how many entries refer to it.
type msgRefs struct {
	id   uint64
	refs uint32
}

func entryOf(d *delivery, released bool) *queueEntry {
	return &queueEntry{msgID: d.msgID, qos: d.qos, retain: d.retain, released: released,
		expiry: d.msg.Expiry, size: d.msg.size(), subIDs: d.subIDs}
}

// committed implements commitWaiter: deliveries of group g are on disk (or
// failed to get there and are dropped); the committed ones at the front go
// to the client in order.
func (ss *session) committed(g uint64, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.releasing) > 0 {
		ss.releasedLocked(g, err)
	}
	for i := range ss.pending {
		if p := &ss.pending[i]; p.group == g && p.state == pendingWaiting {
			if err != nil {
				p.state = pendingFailed
			} else {
				p.state = pendingDone
			}
		}
	}
	n := 0
	for n < len(ss.pending) && ss.pending[n].state != pendingWaiting {
		p := &ss.pending[n]
		ss.pendingBytes -= int64(p.msg.size())
		ss.gaugeLocked(-1, -int64(p.msg.size()), 0)
		switch {
		case p.state == pendingFailed:
			ss.srv.stats.droppedStoreFailed.Add(1)
			ss.gaveUp(&p.delivery, DropStoreFailed)
		case ss.ended:
			ss.forgetLocked(&p.delivery) // written after the session ended: take it out again
		default:
			ss.admitLocked(p.delivery)
		}
		n++
	}
	if n > 0 {
		clear(ss.pending[:n])
		ss.pending = ss.pending[n:]
		if len(ss.pending) == 0 {
			ss.pending = nil
		}
	}
	if ss.conn != nil && !ss.ended {
		ss.drainLocked(ss.conn)
	} else {
		ss.noteLoadLocked()
	}
}

// releasedLocked completes the releases written in group g: the delivery
// is released and its message dropped; if the write was refused, it stays
// as it was (its client, which gets no PUBREL, is disconnected and the flow
// starts again when it returns).
func (ss *session) releasedLocked(g uint64, err error) {
	kept := ss.releasing[:0]
	for _, r := range ss.releasing {
		if r.group != g {
			kept = append(kept, r)
			continue
		}
		if err != nil {
			continue
		}
		items := ss.inflight.all()
		for i := range items {
			if f := &items[i]; f.seq == r.seq {
				f.released = true
				f.msg.unref()
				f.msg = releasedMessage
				break
			}
		}
	}
	clear(ss.releasing[len(kept):])
	ss.releasing = kept
}

// admitLocked queues a committed delivery: in memory while the memory
// queue has room and nothing waits in the store ahead of it, otherwise in
// the store alone.
func (ss *session) admitLocked(d delivery) {
	if ss.stored == 0 && ss.x().queue.len() < memQueueLimit && !ss.srv.overMemoryBudget(d.msg.size()) {
		ss.queueLocked().push(ss.acct(), d)
		return
	}
	if ss.stored == 0 {
		ss.storedFrom = d.seq
	}
	ss.setStoredLocked(ss.stored+1, ss.storedBytes+int64(d.msg.size()))
}

// setStoredLocked sets how many deliveries, of how many bytes, wait in the
// store alone, and counts the change (stats.go).
func (ss *session) setStoredLocked(n int, bytes int64) {
	ss.gaugeLocked(n-ss.stored, bytes-ss.storedBytes, 0)
	ss.stored, ss.storedBytes = n, bytes
}

// pageInLocked reads the next stored deliveries into the memory queue. It
// reports whether any arrived.
func (ss *session) pageInLocked() bool {
	s := ss.srv
	bodies := make(map[uint64]*message)
	now := time.Now()
	loaded := 0
	err := s.store.LoadQueue(ss.queueName(), ss.storedFrom, func(seq uint64, rec []byte) (bool, error) {
		e, err := decodeEntry(rec)
		if err != nil {
			return false, fmt.Errorf("session %q entry %d: %w", ss.clientID, seq, err)
		}
		ss.storedFrom = seq + 1
		ss.setStoredLocked(ss.stored-1, ss.storedBytes-int64(e.size))
		d := delivery{qos: e.qos, retain: e.retain, subIDs: e.subIDs, seq: seq, msgID: e.msgID, released: e.released}
		if e.released {
			d.msg = releasedMessage // the body is no longer needed: only PUBREL is left
		} else if !e.expiry.IsZero() && !now.Before(e.expiry) {
			s.stats.expired.Add(1)
			d.msg = &message{Expiry: e.expiry}
			if s.opts.Hooks.OnDropped != nil {
				// Read for OnDropped only: an expired body is not needed.
				if m, err := ss.loadBody(bodies, e.msgID); err == nil {
					d.msg = m
				}
				ss.droppedHook(&d, DropExpired)
			}
			ss.forgetLocked(&d)
			return ss.stored > 0, nil
		} else {
			m, err := ss.loadBody(bodies, e.msgID)
			if err != nil {
				return false, fmt.Errorf("session %q entry %d: %w", ss.clientID, seq, err)
			}
			d.msg = m
		}
		ss.queueLocked().push(ss.acct(), d)
		loaded++
		return ss.stored > 0 && loaded < memQueueLimit && !s.overMemoryBudget(0), nil
	})
	if err != nil {
		s.log.Error("reading a session's queue from the store", "client", ss.clientID, "err", err)
		ss.setStoredLocked(0, 0) // what could not be read is given up, loudly
	}
	if ss.stored < 0 || (loaded == 0 && ss.stored > 0) {
		ss.setStoredLocked(0, 0) // the count was off: the store is the truth
	}
	return loaded > 0
}

// loadBody reads a message body from the store, or from bodies, where it
// keeps those it read.
func (ss *session) loadBody(bodies map[uint64]*message, msgID uint64) (*message, error) {
	if m := bodies[msgID]; m != nil {
		return m, nil
	}
	rec, err := ss.srv.store.Message(msgID)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", msgID, err)
	}
	m, err := decodeMessage(rec)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", msgID, err)
	}
	bodies[msgID] = m
	return m, nil
}

// forgetLocked lets go of a delivery that is done with (acknowledged, sent
// at QoS 0, expired or undeliverable): its message, and its entry in the
// store.
func (ss *session) forgetLocked(d *delivery) {
	d.msg.unref()
	if !ss.persisted || d.msgID == 0 {
		return
	}
	ss.srv.committer.dropEntry(ss.queueName(), d.seq, d.msgID)
}

// markReleasedLocked records that a QoS 2 delivery got its PUBREC.
func (ss *session) markReleasedLocked(f *inflight, tx *routeTx) {
	if !ss.persisted || f.msgID == 0 {
		return
	}
	tx.batch(ss.srv).PutQueue(ss.queueName(), f.seq, appendEntry(nil, entryOf(&f.delivery, true)))
	tx.sync = true
}

// recordLocked encodes the session for the store.
func (ss *session) recordLocked(now time.Time) []byte {
	rec := sessionRecord{uid: ss.uid, expiry: ss.expiry, user: ss.client.Load()}
	if a := ss.x().away; a != nil {
		rec.will, rec.willAt = a.pendingWill, a.willAt
	}
	if ss.conn == nil {
		rec.offlineSince = now
	}
	for key, sub := range ss.subs {
		st := storedSub{key: key, qos: sub.qos, subID: sub.subID}
		if sub.noLocal {
			st.opts |= subNoLocal
		}
		if sub.retainAsPublished {
			st.opts |= subRAP
		}
		if sub.checkRead {
			st.opts |= subCheckRead
		}
		rec.subs = append(rec.subs, st)
	}
	return appendSession(nil, &rec)
}

// save writes the session record to tx, to be durable before the client is
// told of the change (subscriptions).
func (ss *session) save(tx *routeTx) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.persisted || ss.ended {
		return
	}
	tx.batch(ss.srv).PutSession(ss.clientID, ss.recordLocked(time.Now()))
	tx.sync = true
}

// saveLazilyLocked writes the session record without waiting for the disk:
// bookkeeping whose loss in a crash costs nothing the client was promised
// (the time it went offline, a changed expiry, a pending will).
func (ss *session) saveLazilyLocked() {
	if !ss.persisted || ss.ended {
		return
	}
	var b store.Batch
	b.PutSession(ss.clientID, ss.recordLocked(time.Now()))
	ss.srv.committer.write(&b)
}

// nextMessageID hands out store keys for message bodies. It starts at a
// random point so ids never meet those of an earlier run.
func (s *Server) nextMessageID() uint64 {
	return s.msgIDs.Add(1) &^ refKeyBit
}

func randomMessageBase() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 2
}

// commitError is what a client is told when its write could not be stored.
func commitError(err error) error {
	if errors.Is(err, store.ErrFull) {
		return fmt.Errorf("store full: %w", err)
	}
	return err
}
