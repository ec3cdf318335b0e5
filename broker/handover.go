package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/record"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
)

// A session moving between the nodes of a cluster. A client that connects
// to node X while node Y holds its session (Cluster.Claim says which)
// takes the session from Y, with every delivery Y acknowledged to its
// publishers, and without a delivery twice:
//
//  1. prepare: Y disconnects the client's connection there (taken over,
//     0x8E), cancels a will waiting for its delay (the client is back),
//     and answers with the session's record. It keeps the session's
//     subscriptions, and notes where each delivery it takes from now on
//     came from: the node that routed it and that node's count of
//     routings (its stamp).
//  2. X makes the session with those subscriptions, in effect on every
//     node before it goes on (as a SUBACK's are). From then on every
//     message for the session reaches both X, which holds it, and Y.
//  3. Cut: every node says how many messages it had routed when it
//     learned of X's subscriptions, once Y has taken each of those that
//     went to Y. A message numbered up to that count reached Y only or
//     both; one after it reached X.
//  4. handover: Y lets the session go. It answers with the session's
//     record, the QoS 2 ids its client has not released, and its queue
//     (in order, with the packet ids' sequence numbers), less the
//     deliveries numbered after the cut, which X holds; in parts, as
//     large queues do not fit one answer.
//  5. X writes what Y sent to its store, then the deliveries it held that
//     came after the cut (the rest Y had), and lets their publishers'
//     acknowledgements go. It tells Y (done), which drops its copy. Then
//     the client's CONNACK, with the session present.
//
// The client then meets its session as after a restart: what was in
// flight is sent again with DUP=1 and the same packet id, and PUBREL for
// the QoS 2 messages it had received, so a QoS 2 message is not delivered
// twice. A node that does not answer (dead, or cut off) loses the move:
// the client gets a new session (docs/CLUSTER.md).

// Requests between nodes about a session (ClusterNode.Answer).
const (
	movePrepare byte = iota + 1
	moveHandover
	moveMore
	moveDone
	moveAdopt
)

// Answers' first byte.
const (
	moveNothing byte = iota // no session to hand over
	moveFollows             // the session follows
	moveFailed              // the node could not read it
)

// claimWait bounds a CONNECT's claim on a cluster node, the session's
// coming included, before the connection is given up.
const claimWait = 6 * moveTimeout

// moveTimeout bounds each step of a move.
const moveTimeout = 10 * time.Second

// movePart is about how many bytes of queue one answer carries.
const movePart = 256 << 10

// sessionMove is a session's part in a move, nil when it is not moving.
type sessionMove struct {
	// leaving (the old owner): where the plain deliveries taken since
	// prepare came from, by sequence number.
	leaving bool
	stamps  map[uint64]stampRef
	// skip are the sequence numbers the handover leaves out (after the
	// cut), once it has begun.
	skip map[uint64]bool

	// arriving (the new owner): the deliveries held until the old owner's
	// part is in, and what their publishers' acknowledgements wait for.
	held []heldDelivery
	done *Pending

	// cut is, once the session came here, each node's stamp at the cut:
	// a plain delivery routed there before it reached the node the
	// session came from too, which passed it on, however late it arrives
	// here. Kept while the session lives (and moves on: its deliveries
	// are still late ones).
	cut map[string]uint64
}

// passedOn reports whether d, being routed (tx), is one the node the
// session came from had and passed on: it is dropped here.
func (mv *sessionMove) passedOn(s *Server, d *delivery, tx *routeTx) bool {
	if mv.cut == nil || d.shared || tx.stamp == 0 {
		return false
	}
	node := tx.stampNode
	if node == "" {
		node = s.opts.NodeName
	}
	return tx.stamp <= mv.cut[node]
}

// stampRef is where a message was routed: the node ("" for this one) and
// its count of routings then.
type stampRef struct {
	node  string
	stamp uint64
}

type heldDelivery struct {
	d    delivery
	from stampRef
}

// claimOnCluster continues a CONNECT on a cluster node, on its own
// goroutine while the connection holds its input: the session's owner is
// this node from now on, and a session another node held comes here
// first. Then the CONNECT is accepted as on one node.
func (c *conn) claimOnCluster(cp *connectParams, authData []byte) {
	s := c.ln.srv
	cl := s.claimLock(cp.clientID)
	// The claim lasts until the session is this connection's: a request
	// from a node claiming after it must find it there.
	defer s.endClaim(cp.clientID, cl)
	prev, err := s.opts.Cluster.Claim(cp.clientID, "", cl.claimed)
	cl.claimed(0) // if it failed: no number
	if err == nil && prev != "" {
		s.takeSession(prev, cp, cl.rev.Load())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosing() || c.state == stateClosed {
		s.armIfOffline(cp.clientID)
		return
	}
	c.paused = false
	if err != nil {
		// The directory is out of reach (this node is cut off from most
		// of the cluster): no session is served here that another node
		// may be serving.
		s.log.Warn("cluster: a client's session cannot be claimed", "client", cp.clientID, "err", err)
		c.refuse(packet.ServerUnavailable, "the cluster's session directory is out of reach")
		return
	}
	c.accept(cp, authData)
	if len(c.in.Bytes()) > 0 && !c.isClosing() {
		c.consume(nil, 0) // what the client sent meanwhile
	}
}

// claim is a CONNECT claiming a client id on this node. Claims of one
// client id here go one at a time (claimLock). rev is its number in the
// directory's order, set once known (0 if the claim failed), which
// numbered closes; done closes when the claim, and the session's coming
// here, are over.
type claim struct {
	rev      atomic.Uint64
	once     sync.Once
	numbered chan struct{}
	done     chan struct{}
}

func (cl *claim) claimed(rev uint64) {
	cl.once.Do(func() {
		cl.rev.Store(rev)
		close(cl.numbered)
	})
}

// claimLock returns once no other claim of clientID is under way here,
// with this one registered.
func (s *Server) claimLock(clientID string) *claim {
	for {
		s.movesMu.Lock()
		if s.claims == nil {
			s.claims = make(map[string]*claim)
		}
		cl, busy := s.claims[clientID]
		if !busy {
			cl = &claim{numbered: make(chan struct{}), done: make(chan struct{})}
			s.claims[clientID] = cl
			s.movesMu.Unlock()
			return cl
		}
		s.movesMu.Unlock()
		<-cl.done
	}
}

// endClaim ends a claim registered by claimLock.
func (s *Server) endClaim(clientID string, cl *claim) {
	s.movesMu.Lock()
	delete(s.claims, clientID)
	s.movesMu.Unlock()
	close(cl.done)
}

// afterEarlierClaims returns once no claim of clientID numbered before rev
// is under way here: a request from the node whose claim is numbered rev
// comes after those, and before any later one (which waits for it in its
// turn), so that no two nodes wait for each other.
func (s *Server) afterEarlierClaims(clientID string, rev uint64) {
	deadline := time.After(moveTimeout)
	for {
		s.movesMu.Lock()
		cl := s.claims[clientID]
		s.movesMu.Unlock()
		if cl == nil {
			return
		}
		select {
		case <-cl.numbered: // soon: the directory's answer is on its way
		case <-deadline:
			s.log.Warn("cluster: a session's move went on after waiting its whole step for an earlier claim to be numbered",
				"client", clientID, "rev", rev, "waited", moveTimeout)
			return
		}
		if r := cl.rev.Load(); r == 0 || r > rev {
			return // it failed, or comes after
		}
		select {
		case <-cl.done:
		case <-deadline:
			s.log.Warn("cluster: a session's move went on after waiting its whole step for an earlier claim to end",
				"client", clientID, "rev", rev, "earlier", cl.rev.Load(), "waited", moveTimeout)
			return
		}
	}
}

// armIfOffline starts the expiry of a session that came here for a
// connection that closed meanwhile.
func (s *Server) armIfOffline(clientID string) {
	s.mu.Lock()
	ss := s.sessions.get(clientID)
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn != nil || ss.ended || ss.expiry == expiryNever || (ss.x().away != nil && !ss.x().away.expireAt.IsZero()) {
		return
	}
	now := time.Now()
	ss.asideLocked().since = now.UnixNano()
	ss.awayLocked().expireAt = now.Add(time.Duration(ss.expiry) * time.Second)
	ss.armLocked(now)
}

// takeSession brings clientID's session from node prev, which held it.
// Whatever goes wrong leaves the client a new session (logged).
func (s *Server) takeSession(prev string, cp *connectParams, rev uint64) {
	cl := s.opts.Cluster
	start := time.Now()
	if !slices.Contains(cl.Peers(), prev) {
		s.takeReplica(prev, cp) // its node is lost, its session is not
		return
	}
	ans, err := cl.Ask(prev, record.AppendUvarint(appendMoveRequest(movePrepare, cp.clientID, cp.cleanStart), rev))
	if err != nil {
		// A node that died is not yet known to be lost here: once it
		// is, its session comes from the replica.
		settled(50*time.Millisecond, func() bool { return !slices.Contains(cl.Peers(), prev) })
		if !slices.Contains(cl.Peers(), prev) {
			s.takeReplica(prev, cp)
			return
		}
		s.log.Warn("cluster: the node holding a session did not hand it over; the client gets a new one",
			"client", cp.clientID, "node", prev, "err", err)
		return
	}
	if len(ans) == 0 || ans[0] != moveFollows {
		return // none there (or a clean start ended it)
	}
	rec, err := decodeSession(ans[1:])
	if err != nil {
		s.log.Warn("cluster: a session from another node does not decode", "client", cp.clientID, "node", prev, "err", err)
		return
	}
	ss, pendings := s.arriving(cp.clientID, rec)
	for _, p := range pendings {
		if !p.Wait(moveTimeout) {
			// Said, so that a slow move can be told from one that missed
			// a signal and waited out a step.
			s.log.Warn("cluster: a session's move went on after waiting its whole step for the cluster's work on it",
				"client", cp.clientID, "node", prev, "waited", moveTimeout)
		}
	}
	cuts, err := cl.Cut(prev)
	if err != nil {
		s.log.Warn("cluster: a session's move could not agree where it cuts", "client", cp.clientID, "err", err)
	}
	var req []byte
	req = appendMoveRequest(moveHandover, cp.clientID, false)
	req = record.AppendUvarint(req, uint64(len(cuts)))
	for node, k := range cuts {
		req = record.AppendString(req, node)
		req = record.AppendUvarint(req, k)
	}
	var b store.Batch
	entries, err := s.fetchSession(prev, cp.clientID, req, ss, &b)
	if err != nil {
		s.log.Warn("cluster: a session's handover failed; its queue there is lost to this client",
			"client", cp.clientID, "node", prev, "err", err)
	}
	s.arrived(ss, &b, cuts)
	if err == nil {
		if _, err := cl.Ask(prev, appendMoveRequest(moveDone, cp.clientID, false)); err != nil {
			s.log.Warn("cluster: the node that held a session did not hear that it moved", "client", cp.clientID,
				"node", prev, "err", err)
		}
	}
	s.stats.movedIn.Add(1)
	s.log.Debug("cluster: session taken from another node", "client", cp.clientID, "node", prev,
		"queued", entries, "took", time.Since(start).Round(time.Millisecond))
}

func appendMoveRequest(op byte, clientID string, clean bool) []byte {
	b := append([]byte{op}, boolByte(clean))
	return record.AppendString(b, clientID)
}

// arriving makes the session that comes from another node, with rec's
// subscriptions, holding what it is given until the rest arrives; it
// returns what the other nodes' learning of its subscriptions completes.
func (s *Server) arriving(clientID string, rec *sessionRecord) (*session, []*Pending) {
	s.mu.Lock()
	if old := s.sessions.get(clientID); old != nil {
		// A copy from when this node held it last: the other node's is
		// newer.
		old.mu.Lock()
		if c := s.detachLocked(old); c != nil {
			defer c.disconnect(packet.SessionTakenOver, "another connection took the session over")
		}
		old.stopAwayLocked()
		s.endLocked(old)
	}
	ss := s.newSession(clientID, rec.expiry)
	ss.expiry = rec.expiry
	ss.persisted = true
	if ss.durableState == nil {
		ss.durableState = &durableState{uid: newSessionUID()}
	}
	if rec.user != nil {
		rec.user.ClientID = clientID
		ss.client.Store(rec.user)
	}
	ss.asideLocked().move = &sessionMove{done: NewPending()}
	ss.asideLocked().since = time.Now().UnixNano()
	s.sessions.set(ss)
	s.admin.dir.add(ss)
	s.mu.Unlock()

	ss.mu.Lock()
	defer ss.mu.Unlock()
	var pendings []*Pending
	for _, st := range rec.subs {
		sub := subscriber{sess: ss, qos: st.qos, noLocal: st.opts&subNoLocal != 0,
			retainAsPublished: st.opts&subRAP != 0, checkRead: st.opts&subCheckRead != 0, subID: st.subID}
		if ss.subs == nil {
			ss.subs = make(map[string]subscriber)
		}
		var p *Pending
		if strings.HasPrefix(st.key, topic.SharePrefix) {
			name, filter, err := topic.ParseShare(st.key)
			if err != nil {
				continue
			}
			sub.group, p = s.joinShare(name, filter, sub)
		} else {
			p = s.indexAdd(st.key, ss, sub)
		}
		if p != nil {
			pendings = append(pendings, p)
		}
		ss.subs[st.key] = sub
	}
	ss.nsubs.Store(int32(len(ss.subs)))
	return ss, pendings
}

// fetchSession asks prev for the session (req: the handover) and its
// queue's parts, and adds them to b under ss's queues. It returns how
// many queued deliveries came.
func (s *Server) fetchSession(prev, clientID string, req []byte, ss *session, b *store.Batch) (int, error) {
	ans, err := s.opts.Cluster.Ask(prev, req)
	if err != nil {
		return 0, err
	}
	if len(ans) == 0 || ans[0] != moveFollows {
		return 0, fmt.Errorf("the session is no longer there")
	}
	r := reader{record.Reader{B: ans[1:]}}
	recBytes := r.Bytes()
	rec, err := decodeSession(recBytes)
	if err != nil {
		return 0, fmt.Errorf("record: %w", err)
	}
	ss.mu.Lock()
	ss.expiry = rec.expiry
	ss.mu.Unlock()
	for n := r.Uvarint(); n > 0 && r.Err == nil; n-- {
		b.PutQueue(ss.inboundName(), r.Uvarint(), nil)
	}
	next := r.Uvarint()
	ss.mu.Lock()
	ss.nextSeq = max(ss.nextSeq, next)
	ss.mu.Unlock()
	count := 0
	for {
		more, next := s.readPart(&r, ss, b, &count)
		if r.Err != nil {
			return count, fmt.Errorf("queue: %w", r.Err)
		}
		if !more {
			return count, nil
		}
		q := appendMoveRequest(moveMore, clientID, false)
		q = record.AppendUvarint(q, next)
		ans, err := s.opts.Cluster.Ask(prev, q)
		if err != nil {
			return count, err
		}
		if len(ans) == 0 || ans[0] != moveFollows {
			return count, fmt.Errorf("the session's queue could not be read there")
		}
		r = reader{record.Reader{B: ans[1:]}}
	}
}

// readPart reads one part of a queue: its entries, each with its body,
// then whether more follow, from which sequence number.
func (s *Server) readPart(r *reader, ss *session, b *store.Batch, count *int) (bool, uint64) {
	for n := r.Uvarint(); n > 0 && r.Err == nil; n-- {
		seq := r.Uvarint()
		e, err := decodeEntry(r.Bytes())
		body := r.Bytes()
		if err != nil || r.Err != nil {
			r.Fail()
			break
		}
		id := s.nextMessageID()
		e.msgID = id
		b.PutMessage(id, append([]byte(nil), body...))
		b.PutMessage(id|refKeyBit, []byte{0, 0, 0, 1})
		b.PutQueue(ss.queueName(), seq, appendEntry(nil, &e))
		*count++
	}
	more := r.Byte() == 1
	return more, r.Uvarint()
}

// arrived ends a session's arrival: what the other node sent (b) goes to
// the store, then the deliveries held here that came after the cut, and
// the session is as it would be after a restart.
func (s *Server) arrived(ss *session, b *store.Batch, cuts map[string]uint64) {
	ss.mu.Lock()
	b.PutSession(ss.clientID, ss.recordLocked(time.Now()))
	ss.mu.Unlock()
	// Through the committer, after whatever it has (the removal of an
	// older copy of the session here), and with no lock held: a routing
	// holding the open group may be waiting for the session's.
	if err := s.commitNow(b); err != nil {
		s.log.Error("cluster: a session from another node could not be stored", "client", ss.clientID, "err", err)
	}
	ss.mu.Lock()
	if err := s.loadQueuesLocked(ss); err != nil {
		s.log.Error("cluster: a session from another node could not be read back", "client", ss.clientID, "err", err)
	}
	mv := ss.x().move
	ss.asideLocked().move = nil
	if len(cuts) > 0 {
		ss.asideLocked().move = &sessionMove{cut: cuts}
	}
	if s.debugging() {
		s.log.Debug("cluster: session arrived", "client", ss.clientID, "held", len(mv.held), "stored", ss.stored, "next", ss.nextSeq)
	}
	tx := txPool.Get().(*routeTx)
	for _, h := range mv.held {
		// Plain deliveries up to the cut reached the other node too,
		// which sent them (passedOn); a shared group's came here only.
		tx.stamp, tx.stampNode = h.from.stamp, h.from.node
		d := h.d
		ss.pushLocked(&d, tx)
		h.d.msg.unref()
	}
	tx.stamp, tx.stampNode = 0, ""
	ss.mu.Unlock()
	done := mv.done
	if tx.group() != 0 {
		tx.finish(s, commitFunc(func() { done.Done() }))
	} else {
		done.Done()
	}
	putTx(tx)
}

// commitFunc is a commitWaiter that calls itself.
type commitFunc func()

func (f commitFunc) committed(uint64, error) { f() }

// holdLocked keeps a delivery for an arriving session until its move
// ends; the routing's acknowledgement waits for that.
func (ss *session) holdLocked(d delivery, tx *routeTx) {
	d.msg.ref()
	d.subIDs = slices.Clone(d.subIDs)
	ss.x().move.held = append(ss.x().move.held, heldDelivery{d: d, from: stampRef{tx.stampNode, tx.stamp}})
	tx.addRemote(ss.x().move.done)
}

// loadQueuesLocked reads a durable session's queue and inbound QoS 2 ids
// from the store: how long the queue is, where it starts and ends. Every
// delivery in it may have been sent before, so each goes with DUP=1.
func (s *Server) loadQueuesLocked(ss *session) error {
	ss.nextSeq = max(ss.nextSeq, 1)
	err := s.store.LoadQueue(ss.queueName(), 0, func(seq uint64, rec []byte) (bool, error) {
		e, err := decodeEntry(rec)
		if err != nil {
			return false, fmt.Errorf("session %q queue entry %d: %w", ss.clientID, seq, err)
		}
		if ss.stored == 0 {
			ss.storedFrom = seq
		}
		ss.noteExpiry(e.expiry)
		ss.setStoredLocked(ss.stored+1, ss.storedBytes+int64(e.size))
		ss.nextSeq = max(ss.nextSeq, seq+1)
		return true, nil
	})
	if err != nil {
		return err
	}
	ss.resendBelow = ss.nextSeq
	err = s.store.LoadQueue(ss.inboundName(), 0, func(pid uint64, _ []byte) (bool, error) {
		if ss.x().inboundQoS2 == nil {
			ss.asideLocked().inboundQoS2 = make(map[uint16]struct{})
		}
		ss.x().inboundQoS2[uint16(pid)] = struct{}{}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("session %q inbound QoS 2 ids: %w", ss.clientID, err)
	}
	return nil
}

// Stamp returns how many messages this node has routed, once none is
// being routed: every message routed afterwards matches the
// subscriptions this node knows of now (handover.go).
func (n *ClusterNode) Stamp() uint64 {
	s := n.s
	s.cutMu.Lock()
	k := s.stamps.Load()
	s.cutMu.Unlock()
	return k
}

// Answer answers another node's request about a session it is taking
// from this one (handover.go).
func (n *ClusterNode) Answer(req []byte) []byte {
	s := n.s
	r := reader{record.Reader{B: req}}
	op, clean, clientID := r.Byte(), r.Byte() == 1, r.Str()
	if r.Err != nil {
		return []byte{moveFailed}
	}
	switch op {
	case movePrepare:
		rev := r.Uvarint()
		if r.Err != nil {
			return []byte{moveFailed}
		}
		s.afterEarlierClaims(clientID, rev)
		return s.prepareMove(clientID, clean)
	case moveHandover:
		cuts := make(map[string]uint64)
		for k := r.Uvarint(); k > 0 && r.Err == nil; k-- {
			cuts[r.Str()] = r.Uvarint()
		}
		if r.Err != nil {
			return []byte{moveFailed}
		}
		return s.handOver(clientID, cuts)
	case moveAdopt:
		from := r.Str()
		if r.Err != nil {
			return []byte{moveFailed}
		}
		return s.adopt(clientID, from)
	case moveMore:
		from := r.Uvarint()
		ss := s.leavingSession(clientID, false)
		if ss == nil || r.Err != nil {
			return []byte{moveFailed}
		}
		return s.queuePart([]byte{moveFollows}, ss, from)
	case moveDone:
		if ss := s.leavingSession(clientID, true); ss != nil {
			// Its record goes too, unless a session of the same client id
			// began here since (under s.mu: its record is written after).
			s.mu.Lock()
			if s.sessions.get(clientID) == nil {
				s.committer.dropSession(clientID, ss.queueName(), ss.inboundName())
			} else {
				s.committer.dropQueues(ss.queueName(), ss.inboundName())
			}
			s.mu.Unlock()
			s.stats.movedOut.Add(1)
		}
		return []byte{moveNothing}
	}
	return []byte{moveFailed}
}

// prepareMove disconnects the client's connection here and readies its
// session to go (handover.go, step 1).
func (s *Server) prepareMove(clientID string, clean bool) []byte {
	ss := s.lockSession(clientID)
	if ss == nil {
		return []byte{moveNothing}
	}
	previous := s.detachLocked(ss)
	if previous != nil {
		ss.letAllGoLocked()
		ss.noteLoadLocked()
	}
	var ans []byte
	var will *message
	if clean || ss.expiry == 0 || !ss.persisted {
		// The session ends with the move: a clean start, or one that was
		// to end with its connection. [MQTT-3.1.2-4] (v5)
		will = s.endLocked(ss)
		ans = []byte{moveNothing}
	} else {
		ss.gen++
		ss.stopAwayLocked() // the client is back: a will waiting for its delay is cancelled
		ss.asideLocked().since = time.Now().UnixNano()
		var cut map[string]uint64
		if ss.x().move != nil {
			cut = ss.x().move.cut // late deliveries from its last move are still dropped
		}
		ss.asideLocked().move = &sessionMove{leaving: true, stamps: make(map[uint64]stampRef), cut: cut}
		ans = append([]byte{moveFollows}, ss.recordLocked(time.Now())...)
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	if will != nil {
		s.publishWill(will)
	}
	if previous != nil {
		previous.disconnect(packet.SessionTakenOver, "the client connected to another node") // [MQTT-3.1.4-3] (v5)
	}
	return ans
}

// handOver lets a session go to the node taking it (step 4): its
// subscriptions leave, what it was given settles in the store, and the
// answer carries its record, its inbound QoS 2 ids and the first part of
// its queue, less what came after the cut.
func (s *Server) handOver(clientID string, cuts map[string]uint64) []byte {
	ss := s.lockSession(clientID)
	if ss == nil {
		return []byte{moveNothing}
	}
	if ss.x().move == nil || !ss.x().move.leaving || ss.conn != nil {
		ss.mu.Unlock()
		s.mu.Unlock()
		return []byte{moveNothing} // a client connected here again meanwhile
	}
	subs := ss.subs
	ss.subs = nil
	ss.nsubs.Store(0)
	s.sessions.delete(clientID)
	s.admin.dir.remove(ss)
	ss.mu.Unlock()
	for filter, sub := range subs {
		s.unindex(filter, ss, sub)
	}
	s.mu.Unlock()

	// What was routed to it before the subscriptions left settles: its
	// deliveries committed, and its acknowledged ones gone from the store.
	settled(time.Millisecond, func() bool {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return len(ss.pending) == 0 && len(ss.releasing) == 0
	})
	s.flushStore()

	ss.mu.Lock()
	skip := make(map[uint64]bool)
	for seq, st := range ss.x().move.stamps {
		node := st.node
		if node == "" {
			node = s.opts.NodeName
		}
		if st.stamp > cuts[node] {
			skip[seq] = true // the node taking it has it too
		}
	}
	ss.x().move.skip = skip
	// It is over here: what is in memory goes, the store keeps it until
	// the other node says it has it (done).
	ss.endHereLocked()
	ss.stopAwayLocked()
	rec := ss.recordLocked(time.Now())
	inbound := make([]uint16, 0, len(ss.x().inboundQoS2))
	for pid := range ss.x().inboundQoS2 {
		inbound = append(inbound, pid)
	}
	next := ss.nextSeq
	ss.mu.Unlock()

	s.movesMu.Lock()
	if s.leavingSessions == nil {
		s.leavingSessions = make(map[string]*session)
	}
	s.leavingSessions[clientID] = ss
	s.movesMu.Unlock()
	// A node that took it and never said so (it died meanwhile) leaves
	// the copy in this node's store, for this node's next start, but not
	// in its memory.
	time.AfterFunc(3*moveTimeout, func() {
		s.movesMu.Lock()
		if s.leavingSessions[clientID] == ss {
			delete(s.leavingSessions, clientID)
		}
		s.movesMu.Unlock()
	})

	if s.debugging() {
		s.log.Debug("cluster: session handed over", "client", clientID, "left_out", len(skip), "inbound", len(inbound))
	}
	ans := []byte{moveFollows}
	ans = record.AppendBytes(ans, rec)
	ans = record.AppendUvarint(ans, uint64(len(inbound)))
	for _, pid := range inbound {
		ans = record.AppendUvarint(ans, uint64(pid))
	}
	// Its numbering goes on there: a packet id used again too soon could
	// meet the client's state for the last one (a QoS 2 PUBLISH with an
	// id awaiting PUBREL is taken for a repeat).
	ans = record.AppendUvarint(ans, next)
	return s.queuePart(ans, ss, 0)
}

// queuePart appends to ans a part of a leaving session's queue from
// sequence number from: entries with their bodies, then whether more
// follow, from where.
func (s *Server) queuePart(ans []byte, ss *session, from uint64) []byte {
	type item struct {
		seq         uint64
		entry, body []byte
	}
	var items []item
	size := 0
	next, more := uint64(0), false
	err := s.store.LoadQueue(ss.queueName(), from, func(seq uint64, rec []byte) (bool, error) {
		if size >= movePart {
			next, more = seq, true
			return false, nil
		}
		if ss.x().move.skip[seq] {
			return true, nil
		}
		e, err := decodeEntry(rec)
		if err != nil {
			return false, err
		}
		body, err := s.store.Message(e.msgID)
		if err != nil {
			return false, fmt.Errorf("entry %d: %w", seq, err)
		}
		items = append(items, item{seq, append([]byte(nil), rec...), body})
		size += len(rec) + len(body)
		return true, nil
	})
	if err != nil {
		s.log.Error("cluster: a session's queue could not be read for its move", "client", ss.clientID, "err", err)
		return []byte{moveFailed}
	}
	ans = record.AppendUvarint(ans, uint64(len(items)))
	for _, it := range items {
		ans = record.AppendUvarint(ans, it.seq)
		ans = record.AppendBytes(ans, it.entry)
		ans = record.AppendBytes(ans, it.body)
	}
	ans = append(ans, boolByte(more))
	return record.AppendUvarint(ans, next)
}

// evacuate hands the durable sessions on this node to the other nodes,
// in turn, before it leaves the cluster: its clients, disconnected, find
// their sessions on any other node, and messages for those who do not
// come back wait there. A session its client took elsewhere meanwhile
// stays where the client is.
func (s *Server) evacuate() {
	peers := s.opts.Cluster.Peers()
	if len(peers) == 0 {
		return
	}
	start := time.Now()
	// A CONNECT claiming a session here when the node began to stop goes
	// through first (its connection is closed, the session stays here):
	// a session half arrived cannot be handed on.
	s.awaitClaims()
	// The ids first: a session handed on leaves the table (handOver),
	// which must not change while iterated.
	s.mu.Lock()
	ids := make([]string, 0, s.sessions.len())
	for ss := range s.sessions.all() {
		if ss.persisted {
			ids = append(ids, ss.clientID)
		}
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	var moved, failed atomic.Int64
	inParallel(len(ids), func(i int) {
		req := record.AppendString(appendMoveRequest(moveAdopt, ids[i], false), s.opts.NodeName)
		if ans, err := s.opts.Cluster.Ask(peers[i%len(peers)], req); err != nil || len(ans) == 0 || ans[0] == moveFailed {
			failed.Add(1)
		} else {
			moved.Add(1)
		}
	})
	s.awaitMovesOut()
	s.log.Info("shutdown: sessions handed to other nodes", "sessions", moved.Load(), "failed", failed.Load(),
		"nodes", len(peers), "elapsed", time.Since(start).Round(time.Millisecond))
}

// inParallel calls fn for 0..n-1 from up to 16 goroutines, and returns
// once every call has: the cluster's round trips for many sessions, which
// one after another would take n times as long.
func inParallel(n int, fn func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(16, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				fn(i)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// awaitClaims returns once no claim is under way on this node, or after
// moveTimeout.
func (s *Server) awaitClaims() {
	settled(5*time.Millisecond, func() bool {
		s.movesMu.Lock()
		defer s.movesMu.Unlock()
		return len(s.claims) == 0
	})
}

// awaitMovesOut returns once no other node is taking a session from this
// one (a client that reconnected elsewhere first, for one): the node
// stays in the cluster, answering, until they are done, or moveTimeout.
func (s *Server) awaitMovesOut() {
	settled(5*time.Millisecond, func() bool {
		s.mu.Lock()
		for ss := range s.sessions.all() {
			ss.mu.Lock()
			leaving := ss.x().move != nil && ss.x().move.leaving
			ss.mu.Unlock()
			if leaving {
				s.mu.Unlock()
				return false
			}
		}
		s.mu.Unlock()
		s.movesMu.Lock()
		defer s.movesMu.Unlock()
		return len(s.leavingSessions) == 0
	})
}

// settled polls done every interval until it reports true or moveTimeout
// passes. The moves' waits are on other nodes' progress, which no local
// event announces; they run only while a session moves or a node stops.
func settled(interval time.Duration, done func() bool) {
	deadline := time.Now().Add(moveTimeout)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(interval)
	}
}

// adopt takes, with no client connected, a session that the leaving node
// from hands out (evacuate).
func (s *Server) adopt(clientID, from string) []byte {
	cl := s.claimLock(clientID)
	defer s.endClaim(clientID, cl)
	prev, err := s.opts.Cluster.Claim(clientID, from, cl.claimed)
	cl.claimed(0)
	if err != nil {
		if errors.Is(err, ErrNotOwner) {
			return []byte{moveNothing} // its client went to another node
		}
		return []byte{moveFailed}
	}
	if prev == "" {
		return []byte{moveNothing}
	}
	s.takeSession(prev, &connectParams{clientID: clientID}, cl.rev.Load())
	s.armIfOffline(clientID)
	return []byte{moveFollows}
}

// leavingSession returns the session handed over for clientID (handOver),
// nil if none, forgetting it when forget is set.
func (s *Server) leavingSession(clientID string, forget bool) *session {
	s.movesMu.Lock()
	defer s.movesMu.Unlock()
	ss := s.leavingSessions[clientID]
	if forget {
		delete(s.leavingSessions, clientID)
	}
	return ss
}

// lockSession returns clientID's session with s.mu and its own lock
// held, or nil with neither.
func (s *Server) lockSession(clientID string) *session {
	s.mu.Lock()
	ss := s.sessions.get(clientID)
	if ss == nil {
		s.mu.Unlock()
		return nil
	}
	ss.mu.Lock()
	return ss
}

// flushStore returns once everything written so far is committed.
func (s *Server) flushStore() { _ = s.commitNow(nil) }

// commitNow commits b (nil: nothing) after everything written so far, and
// returns once it is on disk. No broker lock may be held.
func (s *Server) commitNow(b *store.Batch) error {
	ch := make(chan error, 1)
	tx := txPool.Get().(*routeTx)
	w := tx.batch(s)
	if b != nil {
		w.Append(b)
	}
	tx.sync = true
	tx.finish(s, commitErr(ch))
	putTx(tx)
	select {
	case err := <-ch:
		return err
	case <-time.After(moveTimeout):
		return errors.New("the store did not commit in time")
	}
}

// commitErr is a commitWaiter that hands the outcome on.
type commitErr chan error

func (ch commitErr) committed(_ uint64, err error) { ch <- err }
