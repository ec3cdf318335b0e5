package broker

import (
	"time"

	"github.com/petrelmq/petrel/packet"
)

// A session's life around its connections: opened or taken over at
// CONNECT (openSession), released when its connection ends (release),
// timed while offline (will delay and expiry, sessionTimer), and ended.

// openSession gives the connection its session: a fresh one, or the one the
// client id left behind unless the client asked for a clean start. A
// connection still holding the session is disconnected: the new one takes
// over [MQTT-3.1.4-2]. CONNACK is written under the session lock before
// anything is delivered, and the session is attached under the table lock,
// so two connections with one client id cannot both win it.
func (s *Server) openSession(c *conn, cp *connectParams, connack *packet.Connack) {
	s.mu.Lock()
	ss := s.sessions.get(cp.clientID)
	var previous *conn
	var endedWill *message
	if ss != nil {
		ss.mu.Lock()
		previous = s.detachLocked(ss)
		if cp.cleanStart || ss.expiry == 0 {
			// A clean start discards the old session; so does a new
			// connection to one that was ending with its connection.
			// [MQTT-3.1.2-6] [MQTT-3.1.2-4] (v5)
			endedWill = s.endLocked(ss)
			ss = nil
		}
	}
	present := ss != nil // [MQTT-3.2.2-2] [MQTT-3.2.2-3]
	if ss == nil {
		ss = s.newSession(cp.clientID, cp.expiry)
		ss.mu.Lock()
		s.sessions.set(ss)
		s.admin.dir.add(ss)
	}
	// A connection within the will delay cancels the pending will.
	// [MQTT-3.1.3-9] (v5)
	ss.gen++
	ss.stopAwayLocked()
	ss.expiry = cp.expiry
	ss.saveLazilyLocked()
	c.sess.Store(ss)
	ss.client.Store(c.client)
	if cp.will != nil {
		cp.will.origin = ss.id
		c.inRareMake().will.Store(&armedWill{msg: cp.will, delay: cp.willDelay}) // [MQTT-3.1.2-8]
	}
	connack.SessionPresent = present
	s.countConnack(packet.Success)
	c.appendPacket(connack)
	ss.conn = c
	ss.online.Store(true)
	s.online++
	s.maxOnline = max(s.maxOnline, s.online)
	s.mu.Unlock()
	ss.resumeLocked(c)
	ss.mu.Unlock()
	c.nc.Flush()

	if endedWill != nil {
		s.publishWill(endedWill)
	}
	if previous != nil {
		if s.debugging() {
			s.log.Debug("session taken over", "client", cp.clientID, "old_remote", previous.nc.RemoteAddr().String(),
				"new_remote", c.nc.RemoteAddr().String())
		}
		previous.disconnect(packet.SessionTakenOver, "another connection took the session over") // [MQTT-3.1.4-3] (v5)
	}
}

// detachLocked takes the session from the connection holding it, which it
// returns (nil if none) for the caller to disconnect once the locks are
// released. s.mu and ss.mu are held.
func (s *Server) detachLocked(ss *session) *conn {
	c := ss.conn
	ss.conn = nil
	ss.online.Store(false)
	if c != nil {
		s.online--
		s.stats.takenOver.Add(1)
	}
	return c
}

// newSession makes a session; one that outlives its connection is kept in
// the store from the start.
func (s *Server) newSession(clientID string, expiry uint32) *session {
	ss := &session{id: s.nextSessionID.Add(1), clientID: clientID, srv: s, nextSeq: 1}
	ss.aside.Store(s.asideFor(clientID))
	if expiry > 0 {
		ss.persisted, ss.durableState = true, &durableState{uid: newSessionUID()}
	}
	return ss
}

// endHereLocked is what ending a session and handing it over to another
// node share: it is over in this node's memory. Its share of the gauges
// goes (the memory queue's with the queue's reset), it leaves the expiry
// sweep's list, and what it held back is let go. ss.mu is held.
func (ss *session) endHereLocked() {
	ss.gaugeLocked(-ss.storeQueuedLocked(), -ss.storeQueuedBytesLocked(), -ss.inflight.len())
	ss.ended = true
	ss.srv.expiring.remove(ss)
	ss.letAllGoLocked()
	ss.x().queue.reset(ss.acct())
}

// endLocked discards a session: its subscriptions leave the indexes and
// pending deliveries are dropped, in memory and in the store. s.mu and
// ss.mu are held; ss.mu is released. It returns the will that was waiting
// for its delay: the end of the session publishes it. [MQTT-3.1.3-9] (v5)
func (s *Server) endLocked(ss *session) *message {
	ss.endHereLocked()
	if ss.persisted {
		s.committer.dropSession(ss.clientID, ss.queueName(), ss.inboundName())
	}
	subs := ss.subs
	ss.subs = nil
	ss.nsubs.Store(0)
	will := ss.stopAwayLocked()
	ss.mu.Unlock()
	s.sessions.deleteIf(ss)
	s.admin.dir.remove(ss)
	for filter, sub := range subs {
		s.unindex(filter, ss, sub)
	}
	return will
}

// release is called when a connection ends. If it still held its session,
// the session goes offline: it ends now if its expiry is 0, otherwise it
// waits for the client, and the will is published now or parked until its
// delay passes. If another connection took the session over first, the will
// is published unless the session lives on and the will had a delay.
func (s *Server) release(c *conn, will *message, willDelay uint32) {
	ss := c.sess.Load()
	if ss == nil {
		return
	}
	now := time.Now()
	// publish[0] is the will of a session that ends, publish[1] the
	// connection's; delayed: the connection's waits for its delay.
	var publish [2]*message
	delayed := false
	s.mu.Lock()
	ss.mu.Lock()
	switch {
	case ss.conn == c:
		ss.conn = nil
		ss.online.Store(false)
		s.online--
		ss.letAllGoLocked() // offline, its queue limits apply instead
		ss.noteLoadLocked()
		if ss.expiry == 0 {
			publish[0] = s.endLocked(ss)
			publish[1] = will
			break
		}
		ss.asideLocked().since = now.UnixNano() // offline from now
		if will != nil {
			if willDelay == 0 {
				publish[1] = will
			} else {
				a := ss.awayLocked()
				a.pendingWill, a.willAt = will, now.Add(time.Duration(willDelay)*time.Second)
				delayed = true
			}
		}
		if ss.expiry != expiryNever {
			ss.awayLocked().expireAt = now.Add(time.Duration(ss.expiry) * time.Second)
		}
		ss.armLocked(now)
		ss.saveLazilyLocked() // when it went offline, and its pending will
		ss.mu.Unlock()
	default:
		if will != nil && (willDelay == 0 || ss.ended) {
			publish[1] = will
		}
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	if publish[0] != nil {
		s.publishWill(publish[0])
	}
	published := publish[1] != nil && s.publishWill(publish[1])
	if s.opts.Hooks.OnDisconnect != nil {
		c.ended(published, delayed)
	}
}

// sessionTimer runs when an offline session's will delay or expiry is due.
func (s *Server) sessionTimer(ss *session, gen uint64) {
	now := time.Now()
	var publish [2]*message
	s.mu.Lock()
	ss.mu.Lock()
	if ss.gen != gen || ss.conn != nil || ss.ended {
		ss.mu.Unlock()
		s.mu.Unlock()
		return
	}
	a := ss.awayLocked()
	if a.pendingWill != nil && !now.Before(a.willAt) {
		publish[0], a.pendingWill = a.pendingWill, nil
		ss.saveLazilyLocked()
	}
	if !a.expireAt.IsZero() && !now.Before(a.expireAt) {
		s.log.Debug("session expired", "client", ss.clientID)
		s.stats.sessionExpired.Add(1)
		publish[1] = s.endLocked(ss)
	} else {
		ss.armLocked(now)
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	for _, w := range publish {
		if w != nil {
			s.publishWill(w)
		}
	}
}

// publishWill routes a will, except while the server shuts down, and
// reports whether it did. Its expiry, if it has one, counts from now.
func (s *Server) publishWill(w *message) bool {
	if s.shuttingDown.Load() {
		return false
	}
	if secs := willExpiry(w); secs > 0 {
		w.Expiry = time.Now().Add(time.Duration(secs) * time.Second)
	}
	tx := txPool.Get().(*routeTx)
	s.publish(w, tx)
	s.messageShard(w).addSent(&tx.sent)
	tx.finish(s, nil)
	putTx(tx)
	return true
}

// setExpiry changes the session expiry from DISCONNECT. It reports false
// for the one change the protocol forbids: from 0 to anything else.
func (ss *session) setExpiry(expiry uint32) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.expiry == 0 && expiry != 0 {
		return false
	}
	ss.expiry = expiry
	ss.saveLazilyLocked()
	return true
}
