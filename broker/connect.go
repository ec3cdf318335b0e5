package broker

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// handleConnect accepts or refuses the client. A refusal is answered with
// CONNACK carrying the reason and then the connection is closed.
// [MQTT-3.2.2-4] [MQTT-3.2.2-5]
func (c *conn) handleConnect(p *packet.Connect) error {
	c.version = p.Version
	clientID := p.ClientID
	if code := c.checkClientID(p); code != packet.ConnAccepted {
		c.refuse(code)
		return nil
	}
	if clientID == "" {
		clientID = c.srv.assignClientID() // [MQTT-3.1.3-6]
	} else {
		clientID = strings.Clone(clientID)
	}
	var will *Message
	if p.WillFlag {
		will = newMessage(&packet.Publish{Topic: p.WillTopic, Payload: p.WillPayload, QoS: p.WillQoS, Retain: p.WillRetain}, 0)
	}
	c.keepAlive = time.Duration(p.KeepAlive) * time.Second
	c.state = stateConnected
	if c.keepAlive > 0 {
		// The server allows one and a half keep alive periods of silence. [MQTT-3.1.2-24]
		c.deadline.Store(time.Now().Add(c.keepAlive * 3 / 2).UnixNano())
	} else {
		c.deadline.Store(0)
	}
	ss := c.srv.openSession(c, clientID, !p.CleanStart)
	if will != nil {
		will.origin = ss.id
		c.will.Store(will) // [MQTT-3.1.2-8]
	}
	c.srv.log.Debug("client connected", "client", clientID, "remote", c.nc.RemoteAddr().String(),
		"version", c.version, "clean", p.CleanStart, "keepalive", p.KeepAlive)
	return nil
}

// checkClientID applies the client identifier rules of the client's protocol level.
func (c *conn) checkClientID(p *packet.Connect) packet.ReasonCode {
	id := p.ClientID
	switch {
	case id == "" && p.Version == packet.V31:
		// MQTT 3.1 requires 1 to 23 characters.
		return packet.ConnRefusedIdentifierRejected
	case id == "" && !p.CleanStart:
		// An empty id cannot name a session to resume. [MQTT-3.1.3-8]
		return packet.ConnRefusedIdentifierRejected
	case p.Version == packet.V31 && len(id) > 23:
		return packet.ConnRefusedIdentifierRejected
	case len(id) > c.srv.opts.MaxClientIDLength:
		return packet.ConnRefusedIdentifierRejected
	}
	return packet.ConnAccepted
}

// refuse answers CONNECT with a failure code and closes. [MQTT-3.2.2-5]
func (c *conn) refuse(code packet.ReasonCode) {
	c.srv.log.Debug("connection refused", "remote", c.nc.RemoteAddr().String(), "code", byte(code))
	c.writePacket(&packet.Connack{Code: code})
	c.shutdown()
}

// assignClientID makes a unique identifier for a client that sent none.
func (s *Server) assignClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "petrel-" + hex.EncodeToString(b[:])
}

// openSession gives the connection its session: a fresh one, or the one the
// client id left behind if the client asked to resume it. A connection
// still holding the session is closed: the new one takes over. [MQTT-3.1.4-2]
// CONNACK is written under the session lock before the connection is
// attached, so it precedes every message delivered to the session.
func (s *Server) openSession(c *conn, clientID string, persistent bool) *session {
	s.mu.Lock()
	old := s.sessions[clientID]
	var previous *conn
	present := false
	if old != nil {
		old.mu.Lock()
		previous = old.conn
		old.conn = nil
		keep := persistent && old.persistent
		if !keep {
			// A clean start discards the old session; so does ending a
			// non-persistent one's connection. [MQTT-3.1.2-6]
			s.endLocked(old)
			old = nil
		}
		if old != nil {
			old.mu.Unlock()
		}
	}
	ss := old
	if ss == nil {
		ss = &session{id: s.nextSessionID.Add(1), clientID: clientID, srv: s, persistent: persistent}
		s.sessions[clientID] = ss
	} else {
		present = true // [MQTT-3.2.2-2]
	}
	s.mu.Unlock()

	if previous != nil {
		s.log.Debug("session taken over", "client", clientID, "old_remote", previous.nc.RemoteAddr().String(),
			"new_remote", c.nc.RemoteAddr().String())
		previous.shutdown()
	}

	ss.mu.Lock()
	c.sess.Store(ss)
	c.id.Store(&ss.clientID)
	ss.persistent = persistent
	c.appendPacket(&packet.Connack{SessionPresent: present, Code: packet.ConnAccepted})
	ss.conn = c
	ss.resumeLocked(c)
	ss.mu.Unlock()
	c.nc.Flush()
	return ss
}

// endLocked discards a session: its subscriptions leave the index and
// pending deliveries are dropped. s.mu and ss.mu are held; ss.mu is released.
func (s *Server) endLocked(ss *session) {
	ss.ended = true
	subs := ss.subs
	ss.subs = nil
	ss.nsubs.Store(0)
	ss.mu.Unlock()
	if s.sessions[ss.clientID] == ss {
		delete(s.sessions, ss.clientID)
	}
	for filter := range subs {
		s.index.Remove(filter, ss)
	}
}

// detach releases the session of a connection that ended. A persistent
// session stays for the client's return; any other is discarded.
func (s *Server) detach(c *conn) {
	ss := c.sess.Load()
	if ss == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.mu.Lock()
	if ss.conn != c {
		ss.mu.Unlock() // taken over already
		return
	}
	ss.conn = nil
	if ss.persistent {
		ss.mu.Unlock()
		return
	}
	s.endLocked(ss)
}
