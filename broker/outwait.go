package broker

import "time"

// QoS 0 to a client that reads, but more slowly than its publishers
// publish: the publishers wait for it, as they do for a QoS 1 backlog
// (backpressure.go), rather than the client losing messages. Once a
// delivery takes what waits to be written to it past
// Limits.MaxOutboundBytes, the connection that published the message is
// read no further until the client has taken its output down to half the
// bound. What a publisher had already sent still goes out, up to twice the
// bound (outboundCap); past that, QoS 0 to the client is dropped.
//
// A client that does not read must not hold its publishers back for good,
// nor for long: one whose socket has taken nothing for readGrace while
// publishers wait for it is marked as not reading (flagNotReading). They
// are let go, and its QoS 0 messages past the bound are dropped and
// counted until it has caught up (its output down to half the bound).
//
// The socket's progress is seen by the driver's writer (Written); it does
// this bookkeeping only while the connection is waited for
// (flagOutWaited), so a client that keeps up pays one atomic load per
// write. The waits are kept by the Server under heldBackMu, beside the
// backlog holds: few connections are ever waited for.

// readGrace is how long a client waited for may go without its socket
// taking a byte before it counts as not reading. A client that reads is
// seldom kept off the processor this long; one that stopped costs its
// publishers this pause once.
const readGrace = 250 * time.Millisecond

// readGrace is the grace in force: readGrace unless a test set another.
func (s *Server) readGrace() time.Duration {
	if s.opts.readGrace > 0 {
		return s.opts.readGrace
	}
	return readGrace
}

// outWait is what waits for one client's output to drain: the held-back
// publishers, each with its hold, and the driver's progress in writing to
// the client (counted by Written, looked at by the grace timer).
type outWait struct {
	conns    map[*conn]*hold
	progress uint64
	seen     uint64 // progress when the timer last looked
	timer    *time.Timer
}

// outboundCap is what may wait for a client that reads, past which QoS 0
// to it is dropped all the same: the bound, plus what the publishers it
// holds back had sent before they were held.
func outboundCap(bound int) int { return 2 * bound }

// mayGoOverLocked reports whether a QoS 0 delivery of about size bytes
// may take c's output past the bound (outboundFullLocked): c reads, and
// what waits for it stays within outboundCap. outMu is held.
func (c *conn) mayGoOverLocked(size int) bool {
	return c.flags.Load()&flagNotReading == 0 &&
		c.pendingLocked()+size <= outboundCap(c.ln.srv.opts.Limits.MaxOutboundBytes)
}

// outDrainedLocked reports whether c's output is down to half the bound:
// the publishers waiting for it may go, and a client that was not reading
// has caught up. outMu is held.
func (c *conn) outDrainedLocked() bool {
	return c.pendingLocked() <= c.ln.srv.opts.Limits.MaxOutboundBytes/2
}

// outDrained is outDrainedLocked for a caller without outMu.
func (c *conn) outDrained() bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.outDrainedLocked()
}

// addOutWait counts o, a client whose output went past the bound, in h,
// publisher c's hold, until o's output drains (or o turns out not to
// read, or ends).
func (o *conn) addOutWait(c *conn, h *hold) {
	s := o.ln.srv
	s.heldBackMu.Lock()
	if s.outWaits == nil {
		s.outWaits = make(map[*conn]*outWait)
	}
	w := s.outWaits[o]
	if w == nil {
		w = &outWait{conns: make(map[*conn]*hold)}
		s.outWaits[o] = w
		o.flags.Or(flagOutWaited)
		w.timer = time.AfterFunc(s.readGrace(), func() { s.checkReading(o, w) })
	}
	if w.conns[c] == h {
		s.heldBackMu.Unlock()
		return // counted already
	}
	w.conns[c] = h
	h.waiting++
	s.heldBackMu.Unlock()
	// The driver may have drained o before flagOutWaited was set, and then
	// nothing would let c go: look once more (Written does the rest).
	if o.outDrained() {
		s.endOutWait(o, false)
	}
}

// wroteOutput is Written's part while the client is waited for or not
// reading: it counts the progress, and ends the wait (or the not-reading
// mark) once the output has drained.
func (o *conn) wroteOutput() {
	s := o.ln.srv
	if o.outDrained() {
		o.flags.And(^uint32(flagNotReading))
		s.endOutWait(o, false)
		return
	}
	s.heldBackMu.Lock()
	if w := s.outWaits[o]; w != nil {
		w.progress++
	}
	s.heldBackMu.Unlock()
}

// checkReading runs readGrace after a wait on o began, and every readGrace
// while it lasts: a client whose socket took nothing since the last look
// is not reading, and its publishers go on without it.
func (s *Server) checkReading(o *conn, w *outWait) {
	s.heldBackMu.Lock()
	if s.outWaits[o] != w {
		s.heldBackMu.Unlock()
		return // ended meanwhile
	}
	if w.progress != w.seen {
		w.seen = w.progress
		w.timer.Reset(s.readGrace())
		s.heldBackMu.Unlock()
		return
	}
	s.heldBackMu.Unlock()
	s.endOutWait(o, true)
}

// endOutWait ends the wait on o's output: o drained, ended, or (notReading)
// took nothing for readGrace. Each publisher that waited for nothing else
// is read again.
func (s *Server) endOutWait(o *conn, notReading bool) {
	if notReading {
		s.stats.notReading.Add(1)
		// Marked before the publishers go on, so what they send next is
		// dropped for o rather than held for it again.
		o.flags.Or(flagNotReading)
	}
	var free []*conn
	s.heldBackMu.Lock()
	w := s.outWaits[o]
	delete(s.outWaits, o)
	o.flags.And(^uint32(flagOutWaited))
	if w != nil {
		w.timer.Stop()
		free = s.countOffLocked(w.conns)
	}
	s.heldBackMu.Unlock()
	if notReading && w != nil && o.ln.srv.debugging() {
		s.log.Debug("client not reading: its publishers go on, QoS 0 to it past the bound is dropped",
			"client", o.clientID(), "publishers", len(w.conns))
	}
	for _, c := range free {
		c.letGo()
	}
}
