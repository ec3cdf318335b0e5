package broker

import (
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Stalled clients: backpressure (backpressure.go) holds publishers back
// while a subscriber's backlog is full, so a subscriber that stays
// connected but never acknowledges would hold them back for ever. A client
// whose in-flight window has been full for Options.StallTimeout with no
// acknowledgement is therefore disconnected: its session goes offline,
// where its queue limits apply instead, and the publishers it held back
// are read again at once.
//
// The hot path reads no clock for this. A session mirrors whether its
// window is full (session.load) and counts the acknowledgements that
// arrive while it is (session.acks); the keep-alive sweep, four times a
// second, notes since when it has seen each full window with an unchanged
// count. It looks at a connection at least every quarter of StallTimeout
// (connset.go), and at every sweep while its window is full. A client is
// thus disconnected between StallTimeout and StallTimeout plus a quarter
// of it (and two sweeps) after its window filled.

// loadFull is the bit of session.load set while the in-flight window is
// full; the bits below hold the backlog behind it.
const loadFull = 1 << 31

// noteLoadLocked updates session.load after the in-flight window or the
// backlog changed: 0 while the window has room for one more delivery;
// loadFull or'ed with the backlog once it is full; in between, for a
// durable session whose deliveries waiting for their commit (pending) will
// fill the window once committed, how many it has beyond the window, plus
// one. Those wait for the broker, not the client: they do not count for
// the stall sweep, which sees only loadFull. Offline sessions have load 0.
// mu is held.
func (ss *session) noteLoadLocked() {
	var v uint32
	if c := ss.conn; c != nil {
		n, w, queued := ss.inflight.len(), int(c.window), ss.queuedLocked()
		switch {
		case n >= w:
			v = loadFull | uint32(min(queued, loadFull-1))
		case n+queued >= w:
			v = uint32(min(n+queued-w+1, loadFull-1))
		}
	}
	if ss.load.Load() != v {
		ss.load.Store(v)
	}
}

// noteAckLocked counts an acknowledgement that moved a delivery on. Only
// those arriving while the window is full are counted: they are the only
// ones the sweep looks for, and the others cost no atomic write. mu is
// held.
func (ss *session) noteAckLocked() {
	if ss.load.Load()&loadFull != 0 {
		ss.acks.Add(1)
	}
}

// stallWatch is what the sweep remembers of the connections it found with
// a full in-flight window. Only the sweep goroutine uses it.
type stallWatch map[*conn]stallMark

type stallMark struct {
	since int64  // unix ns: the first sweep that saw the window full with this count
	acks  uint32 // the session's acks then
	seen  bool   // found full by the current sweep
}

// sweepStalled disconnects the connections in full (those found with a
// full window at now) that have acknowledged nothing for StallTimeout, and
// forgets those whose window is no longer full.
func (s *Server) sweepStalled(w stallWatch, now int64, full []*conn) {
	timeout := int64(s.opts.StallTimeout)
	for _, c := range full {
		if c.isClosing() {
			continue // closed meanwhile, by this sweep's keep-alive check perhaps
		}
		acks := c.sess.Load().acks.Load()
		m, ok := w[c]
		if !ok || m.acks != acks {
			m = stallMark{since: now, acks: acks}
		}
		if now-m.since >= timeout {
			delete(w, c)
			s.disconnectStalled(c, time.Duration(now-m.since))
			continue
		}
		m.seen = true
		w[c] = m
	}
	for c, m := range w {
		if !m.seen {
			delete(w, c)
			continue
		}
		m.seen = false
		w[c] = m
	}
}

// disconnectStalled ends a connection that holds a full window without
// acknowledging. MQTT 5 clients hear 0x97 Quota exceeded: the client went
// past a limit the server imposes, as with the broker's other limits; 0x89
// Server busy would blame the broker, and invite the client straight back.
func (s *Server) disconnectStalled(c *conn, stalled time.Duration) {
	s.stats.stalled.Add(1)
	s.log.Warn("disconnecting a client that does not acknowledge: its in-flight window is full",
		"client", c.clientID(), "remote", c.nc.RemoteAddr().String(), "window", c.window,
		"stalled_for", stalled.Round(time.Millisecond).String(), "stall_timeout", s.opts.StallTimeout.String())
	c.disconnectAs(closeStalled, packet.QuotaExceeded, "in-flight window full with no acknowledgement for the stall timeout")
}
