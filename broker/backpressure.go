package broker

import "time"

// Backpressure: an online session never drops a QoS 1 or 2 message because
// its client is slow. When its backlog (deliveries waiting behind the
// in-flight window) reaches Options.BacklogMessages or BacklogBytes, or
// the memory all queues may use (Limits.QueuedMemory) is spent, the
// connections whose PUBLISHes go to it stop being read (listener.Pauser):
// TCP's window then slows their clients. A connection is read again once
// every session it waits for has its backlog down to half (so the slowest
// subscriber sets the pace, and no backlog grows past its bound), or has
// gone offline (its queue limits apply then) or ended.
//
// A connection with deliveries in flight to it is never held back, and one
// that is held back is let go as soon as a delivery goes in flight to it:
// its acknowledgements must be read for its own session to drain. So every
// backed-up session waits only on its own client, never on a held-back one,
// and holding back cannot form a cycle (A waits for B's session while B
// waits for A's). What such a connection publishes still queues, up to
// MaxQueuedMessages and MaxQueuedBytes, past which it is dropped and
// counted.
//
// Who waits for what is kept by the Server (heldBack, holds), not in every
// session and connection: few are ever backed up. A session lists the hold
// it counts for, so one that drains after its connection was let go early
// (and maybe held again since) does not count for the new hold.

// ReadPaused implements listener.Pauser.
func (c *conn) ReadPaused() bool { return c.flags.Load()&flagHeldBack != 0 }

// hold is what one held-back connection waits for: the number of
// sessions that have yet to drain.
type hold struct {
	waiting int
}

// heldBackOn is what waits for one backed-up session: the connections (and
// the hold each counts it in), and the backlog at which they may go again.
type heldBackOn struct {
	conns             map[*conn]*hold
	wakeAt, wakeBytes int64
}

// holdBack stops reading from the client after the packet being handled,
// until the backed-up sessions its message went to have drained, and the
// clients whose QoS 0 output it took past the bound have taken it
// (outwait.go). c.mu is held.
func (c *conn) holdBack(sessions []*session, outs []*conn, cluster bool) {
	if c.flags.Load()&flagHeldBack != 0 {
		return // held already (it was let go meanwhile, then read on)
	}
	own := c.sess.Load()
	if own != nil && own.hasInflight() {
		return // its acknowledgements must be read: see above
	}
	s := c.ln.srv
	// The hold counts one more session while it registers, so a session
	// that drains meanwhile cannot let the connection go half-registered.
	s.heldBackMu.Lock()
	h := &hold{waiting: 1}
	if s.holds == nil {
		s.holds = make(map[*conn]*hold)
	}
	s.holds[c] = h
	s.heldBackMu.Unlock()
	c.flags.Or(flagHeldBack)
	for _, ss := range sessions {
		ss.addHeldBack(c, h)
	}
	for _, o := range outs {
		if o != c { // a client that reads its own messages is read on: it may be waiting to write
			o.addOutWait(c, h)
		}
	}
	if cluster {
		s.addClusterWait(c, h)
	}
	s.heldBackMu.Lock()
	h.waiting--
	done := h.waiting == 0 && s.holds[c] == h
	if done {
		delete(s.holds, c)
	}
	s.heldBackMu.Unlock()
	if done {
		c.letGo() // no session had a backlog left to wait for
		return
	}
	s.stats.heldBack.Add(1)
}

// letGo reads from a held-back client again. The keep-alive and
// incomplete-packet clocks start afresh: the broker, not the client, kept
// its packets unread. Any goroutine, any lock.
func (c *conn) letGo() {
	if c.flags.Load()&flagHeldBack == 0 {
		return
	}
	c.flags.And(^uint32(flagHeldBack))
	now := time.Now()
	if c.keepAliveMs > 0 && c.deadline.Load() != 0 {
		c.deadline.Store(c.keepAliveDeadline(now))
	}
	if c.partial.Load() != 0 {
		c.partial.Store(c.partialDeadline(now))
	}
	c.nc.Resume()
}

// hasInflight reports whether deliveries are in flight to the client.
func (ss *session) hasInflight() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.inflight.len() > 0
}

// backlogFullLocked reports whether one more delivery of size bytes puts
// an online session's backlog b at its limit: its publishers wait.
func (ss *session) backlogFullLocked(b backlog, size int) bool {
	o := &ss.srv.opts
	return b.n >= o.BacklogMessages || b.bytes+int64(size) > o.BacklogBytes
}

// addHeldBack counts the session in h, c's hold, until the session's
// backlog is down to half what it is now, and at most half its limits. It
// counts nothing if there is no backlog to wait for, or the session is
// offline or ended (nothing would count it off again).
func (ss *session) addHeldBack(c *conn, h *hold) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended || ss.conn == nil {
		return
	}
	o := &ss.srv.opts
	n, bytes := int64(ss.queuedLocked()), ss.queuedBytesLocked()
	wakeAt, wakeBytes := min(n, int64(o.BacklogMessages))/2, min(bytes, o.BacklogBytes)/2
	if n <= wakeAt && bytes <= wakeBytes {
		return
	}
	ss.backedUp = true
	s := ss.srv
	s.heldBackMu.Lock()
	defer s.heldBackMu.Unlock()
	if s.heldBack == nil {
		s.heldBack = make(map[*session]*heldBackOn)
	}
	on := s.heldBack[ss]
	if on == nil {
		on = &heldBackOn{conns: make(map[*conn]*hold), wakeAt: wakeAt, wakeBytes: wakeBytes}
		s.heldBack[ss] = on
	}
	if on.conns[c] == h {
		return // counted already (the message was over two limits)
	}
	on.conns[c] = h
	h.waiting++
}

// relieveLocked counts the session off for the connections waiting for it
// once its backlog has drained. Called whenever deliveries leave the queue.
func (ss *session) relieveLocked() {
	if ss.backedUp { // inline: most sessions hold nobody back
		ss.relieveBackedUpLocked()
	}
}

func (ss *session) relieveBackedUpLocked() {
	s := ss.srv
	s.heldBackMu.Lock()
	on := s.heldBack[ss]
	drained := on == nil || int64(ss.queuedLocked()) <= on.wakeAt && ss.queuedBytesLocked() <= on.wakeBytes
	s.heldBackMu.Unlock()
	if drained {
		ss.letAllGoLocked()
	}
}

// letAllGoLocked counts the session off for every connection waiting for
// it (it drained, went offline or ended), and lets go those that waited
// for nothing else.
func (ss *session) letAllGoLocked() {
	if !ss.backedUp {
		return
	}
	ss.backedUp = false
	s := ss.srv
	var free []*conn
	s.heldBackMu.Lock()
	on := s.heldBack[ss]
	delete(s.heldBack, ss)
	if on != nil {
		free = s.countOffLocked(on.conns)
	}
	s.heldBackMu.Unlock()
	for _, c := range free {
		c.letGo()
	}
}

// countOffLocked counts one thing waited for off the holds of conns, and
// returns the connections that now wait for nothing: the caller lets them
// go once heldBackMu is released. heldBackMu is held.
func (s *Server) countOffLocked(conns map[*conn]*hold) (free []*conn) {
	for c, h := range conns {
		if s.holds[c] != h {
			continue // that hold ended already
		}
		if h.waiting--; h.waiting == 0 {
			delete(s.holds, c)
			free = append(free, c)
		}
	}
	return free
}

// endHold forgets c's hold: it was let go early (a delivery went in flight
// to it) or it closed. Sessions still listing it no longer count for it.
func (s *Server) endHold(c *conn) {
	s.heldBackMu.Lock()
	delete(s.holds, c)
	s.heldBackMu.Unlock()
}

// forgetHeldBack drops a closed connection from the lists it waits in, so
// a session that never drains does not keep it.
func (s *Server) forgetHeldBack(c *conn) {
	s.heldBackMu.Lock()
	defer s.heldBackMu.Unlock()
	delete(s.holds, c)
	for _, on := range s.heldBack {
		delete(on.conns, c)
	}
	for _, w := range s.outWaits {
		delete(w.conns, c)
	}
	delete(s.clusterWaits, c)
}
