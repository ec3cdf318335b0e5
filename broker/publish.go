package broker

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// handlePublish checks an application message from the client against what
// the broker advertised, routes it and acknowledges it as its QoS requires.
// The codec has already refused wildcards in the topic name. [MQTT-3.3.2-2]
// owned says that p's bytes are in a buffer nobody reuses, which the
// message may keep. The PUBLISHes its routing writes to subscribers are
// counted in t, the read's tally (nil: straight into the statistics).
func (c *conn) handlePublish(p *packet.Publish, owned bool, big *bigBuf, t *tally) error {
	o := &c.ln.srv.opts
	ss := c.sess.Load()
	if p.QoS > o.maxQoS() {
		return violation(packet.QoSNotSupported, "PUBLISH at QoS %d above the maximum %d", p.QoS, o.maxQoS()) // [MQTT-3.2.2-11] (v5)
	}
	if p.Retain && o.DisableRetain {
		return violation(packet.RetainNotSupported, "retained PUBLISH while retain is not available") // [MQTT-3.2.2-14] (v5)
	}
	if c.version == packet.V5 {
		if err := c.resolveAlias(p); err != nil {
			return err
		}
		if len(p.Props.SubscriptionIDs) > 0 {
			return violation(packet.ProtocolError, "PUBLISH from a client carries a subscription identifier") // [MQTT-3.3.4-6]
		}
		if p.Props.Has(packet.PropPayloadFormat) && p.Props.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
			// The format indicator promises UTF-8. [MQTT-3.3.2-13]
			if p.QoS == 0 {
				return violation(packet.PayloadFormatInvalid, "payload is not UTF-8 as its format indicator says")
			}
			c.ack(ackKind(p.QoS), p.PacketID, packet.PayloadFormatInvalid, 0)
			return nil
		}
	}
	lim := &c.ln.srv.opts.Limits
	if lim.topicTooBig(p.Topic) {
		return violation(packet.TopicNameInvalid, "topic longer than %d bytes or %d levels", lim.MaxTopicLength, lim.MaxTopicLevels)
	}
	if (lim.PublishRate > 0 || lim.PublishBytesRate > 0) && !c.rechecking {
		now := time.Now().UnixNano()
		r := c.rateBuckets()
		if (lim.PublishRate > 0 && !r.pub.take(now, lim.PublishRate, max(lim.PublishRate, 1), 1)) ||
			(lim.PublishBytesRate > 0 && !r.pubBytes.take(now, lim.PublishBytesRate, max(lim.PublishBytesRate, float64(len(p.Payload))), float64(len(p.Payload)))) {
			c.ln.srv.stats.rateLimited.Add(1)
			return violation(packet.MessageRateTooHigh, "publishing faster than allowed")
		}
	}
	if !c.mayWrite(ss.clientID, p.Topic) {
		if p.Topic[0] != '$' && c.waitFor(auth.Write, []string{p.Topic}, p) {
			return nil // handled again once the authorizer has answered
		}
		c.denyPublish(p)
		return nil
	}
	if c.ln.srv.opts.Authorizer != nil && c.ln.srv.opts.Hooks.OnACLCheck == nil {
		c.statShard().allowed.Add(1) // with OnACLCheck, refusedByHooks counts it
	}
	if c.ln.srv.publishHooks && c.refusedByHooks(p, ss) {
		return nil
	}
	tx := txPool.Get().(*routeTx)
	defer putTx(tx)
	switch p.QoS {
	case 0:
		m := makeMessage(p, ss.id, owned, big)
		c.ln.srv.publish(m, tx)
		m.unref()
		tx.finish(c.ln.srv, nil)
	case 1:
		m := makeMessage(p, ss.id, owned, big)
		n := c.ln.srv.publish(m, tx)
		m.unref()
		// Acknowledged once the message is in the store for every durable
		// session it goes to. [MQTT-4.3.2-2]
		c.ackAfter(packet.PUBACK, p.PacketID, c.routedCode(n), tx.group(), tx.remote)
		tx.finish(c.ln.srv, c)
	case 2:
		// Delivered on receipt; the id is remembered until PUBREL so a
		// re-sent PUBLISH is acknowledged without being routed twice.
		// [MQTT-4.3.3-2]
		dup, full := ss.receivedQoS2(p.PacketID, o.ReceiveMaximum, tx)
		if full {
			return violation(packet.ReceiveMaximumExceeded, "more than %d QoS 2 PUBLISHes awaiting PUBREL", o.ReceiveMaximum) // [MQTT-3.3.4-8]
		}
		code := packet.Success
		if !dup {
			m := makeMessage(p, ss.id, owned, big)
			code = c.routedCode(c.ln.srv.publish(m, tx))
			m.unref()
		}
		c.ackAfter(packet.PUBREC, p.PacketID, code, tx.group(), tx.remote)
		tx.finish(c.ln.srv, c)
	}
	if t != nil {
		t.addSent(&tx.sent)
	} else {
		c.statShard().addSent(&tx.sent)
	}
	if len(tx.backedUp) > 0 || len(tx.outFull) > 0 || tx.clusterFull {
		c.holdBack(tx.backedUp, tx.outFull, tx.clusterFull)
	}
	return nil
}

// denyPublish answers a PUBLISH the client may not send.
func (c *conn) denyPublish(p *packet.Publish) {
	c.ln.srv.stats.deniedPublish.Add(1)
	c.ln.srv.log.Debug("publish denied", "client", c.clientID(), "topic", p.Topic)
	c.refusePublish(p, packet.NotAuthorized)
}

// refusePublish answers a PUBLISH that is not routed. MQTT 5 answers with
// code at QoS 1 and 2; 3.1.1 has no way to say no: the message is
// acknowledged and dropped [MQTT-3.3.5-2].
func (c *conn) refusePublish(p *packet.Publish, code packet.ReasonCode) {
	if p.QoS == 0 || c.isClosing() {
		return // nothing to say, or nobody to say it to (a hook panicked)
	}
	if c.version == packet.V5 {
		c.ack(ackKind(p.QoS), p.PacketID, code, 0)
		return
	}
	if p.QoS == 1 {
		c.ack(packet.PUBACK, p.PacketID, packet.Success, 0)
		return
	}
	// The PUBREL that follows needs its PUBCOMP.
	tx := txPool.Get().(*routeTx)
	c.sess.Load().receivedQoS2(p.PacketID, c.ln.srv.opts.ReceiveMaximum, tx)
	c.ack(packet.PUBREC, p.PacketID, packet.Success, tx.group())
	tx.finish(c.ln.srv, c)
	putTx(tx)
}

var txPool = sync.Pool{New: func() any { return new(routeTx) }}

func putTx(tx *routeTx) {
	tx.reset()
	txPool.Put(tx)
}

func ackKind(qos byte) packet.Type {
	if qos == 1 {
		return packet.PUBACK
	}
	return packet.PUBREC
}

// routedCode tells an MQTT 5 publisher that nobody subscribes. [MQTT-3.4.2.1]
func (c *conn) routedCode(matched int) packet.ReasonCode {
	if matched == 0 && c.version == packet.V5 {
		return packet.NoMatchingSubscribers
	}
	return packet.Success
}

// resolveAlias applies an inbound Topic Alias: with a topic it sets the
// alias, without one it stands for the topic set earlier on this connection.
// [MQTT-3.3.2-7..12]
func (c *conn) resolveAlias(p *packet.Publish) error {
	if !p.Props.Has(packet.PropTopicAlias) {
		if p.Topic == "" {
			return violation(packet.ProtocolError, "PUBLISH without a topic or a topic alias")
		}
		return nil
	}
	a := p.Props.TopicAlias
	if a == 0 || int(a) > c.ln.srv.opts.TopicAliasMaximum {
		return violation(packet.TopicAliasInvalid, "topic alias %d outside 1..%d", a, c.ln.srv.opts.TopicAliasMaximum)
	}
	if p.Topic == "" {
		var t string
		ok := false
		if r := c.inR.Load(); r != nil {
			t, ok = r.aliases[a]
		}
		if !ok {
			return violation(packet.ProtocolError, "topic alias %d was never set", a)
		}
		p.Topic = t
		return nil
	}
	r := c.inRareMake()
	if r.aliases == nil {
		r.aliases = make(map[uint16]string)
	}
	r.aliases[a] = strings.Clone(p.Topic)
	return nil
}

// handleAck completes the QoS 1 and 2 flows.
func (c *conn) handleAck(a *packet.Ack) error {
	ss := c.sess.Load()
	switch a.Kind {
	case packet.PUBACK, packet.PUBCOMP:
		if !ss.acked(a.Kind, a.PacketID, a.Code) {
			c.ln.srv.log.Debug("acknowledgement for a packet id not in flight", "client", c.clientID(),
				"type", a.Kind.String(), "packet_id", a.PacketID)
		}
	case packet.PUBREC:
		if !ss.acked(a.Kind, a.PacketID, a.Code) && !a.Code.IsError() {
			// Let the client finish its side of the flow anyway.
			c.ack(packet.PUBREL, a.PacketID, packet.PacketIdentifierNotFound, 0)
		}
	case packet.PUBREL:
		tx := txPool.Get().(*routeTx)
		code := packet.Success
		if !ss.released(a.PacketID, tx) {
			code = packet.PacketIdentifierNotFound
		}
		c.ack(packet.PUBCOMP, a.PacketID, code, tx.group()) // [MQTT-4.3.3-2]
		tx.finish(c.ln.srv, c)
		putTx(tx)
	}
	return nil
}

// matches is the scratch space of one routing: the subscriptions matched,
// those needing deduplication, shared groups and subscription identifiers.
// Pooled so routing does not allocate.
type matches struct {
	all, multi []subscriber
	groups     []*shareGroup
	ids        []uint32
}

var matchPool = sync.Pool{New: func() any { return new(matches) }}

// publish routes m to every session with a matching subscription, and to
// one member of each matching shared subscription group, and keeps it as
// the topic's retained message if it asks to be. Store writes go to tx; the
// caller finishes it. It returns how many subscriptions took the message.
func (s *Server) publish(m *message, tx *routeTx) int {
	if s.opts.Cluster != nil && !m.ephemeral {
		return s.publishClustered(m, tx)
	}
	if m.Retain {
		s.retain(m, tx)
	}
	sc := matchPool.Get().(*matches)
	if s.shared.Len() > 0 {
		sc.groups = s.shared.Match(m.Topic, sc.groups[:0])
	}
	n := s.deliverLocal(m, sc, tx)
	s.countUnrouted(m, n)
	return n
}

// deliverLocal hands m to this node's sessions whose subscriptions match,
// and to one member of each group in sc.groups, and puts sc back in its
// pool. It returns how many subscriptions took the message.
func (s *Server) deliverLocal(m *message, sc *matches, tx *routeTx) int {
	sc.all = s.index.Match(m.Topic, sc.all[:0])
	sc.multi = sc.multi[:0]
	// A message that one subscription alone takes, and that is not kept as
	// retained, has no other holder: a queue may copy it.
	sole := len(sc.all) == 1 && len(sc.groups) == 0 && !m.Retain
	n := 0
	for _, sub := range sc.all {
		// Only a session with several subscriptions can be matched twice.
		if sub.sess.nsubs.Load() > 1 {
			sc.multi = append(sc.multi, sub)
			continue
		}
		if sub.noLocal && sub.sess.id == m.origin {
			continue // [MQTT-3.8.3-3] (v5)
		}
		if sub.checkRead && !s.mayRead(sub.sess, m.Topic) {
			continue
		}
		d := delivery{msg: m, qos: min(sub.qos, m.QoS), retain: sub.retainAsPublished && m.Retain, sole: sole}
		if sub.subID != 0 {
			sc.ids = append(sc.ids[:0], sub.subID)
			d.subIDs = sc.ids
		}
		sub.sess.push(&d, tx)
		n++
	}
	if len(sc.multi) > 0 {
		n += s.deliverOverlapping(m, sc, tx)
	}
	for _, g := range sc.groups {
		if g.deliver(m, sc, tx) {
			n++
		}
	}
	clear(sc.groups)
	sc.groups = sc.groups[:0]
	clear(sc.all)
	clear(sc.multi)
	matchPool.Put(sc)
	return n
}

// countUnrouted counts a message that no subscription took (and that is
// not kept as retained either).
func (s *Server) countUnrouted(m *message, n int) {
	if n == 0 && !m.Retain {
		s.messageShard(m).noSubscribers.Add(1)
	}
}

// deliverOverlapping delivers one copy per session for sessions matched by
// several subscriptions: at the highest QoS granted, retained if any
// subscription keeps the flag, with every matching subscription identifier.
// [MQTT-3.3.5-1] [MQTT-3.3.4-3] (v5)
func (s *Server) deliverOverlapping(m *message, sc *matches, tx *routeTx) int {
	subs := sc.multi
	slices.SortFunc(subs, func(a, b subscriber) int { return cmp.Compare(a.sess.id, b.sess.id) })
	n := 0
	for i := 0; i < len(subs); {
		ss := subs[i].sess
		d := delivery{msg: m}
		sc.ids = sc.ids[:0]
		any := false
		for ; i < len(subs) && subs[i].sess == ss; i++ {
			sub := &subs[i]
			if sub.noLocal && ss.id == m.origin {
				continue
			}
			if sub.checkRead && !s.mayRead(ss, m.Topic) {
				continue
			}
			any = true
			d.qos = max(d.qos, min(sub.qos, m.QoS))
			d.retain = d.retain || (sub.retainAsPublished && m.Retain)
			if sub.subID != 0 {
				sc.ids = append(sc.ids, sub.subID)
			}
		}
		if !any {
			continue
		}
		if len(sc.ids) > 0 {
			d.subIDs = sc.ids
		}
		ss.push(&d, tx)
		n++
	}
	return n
}

// retain stores m as its topic's retained message, or deletes the retained
// message when the payload is empty, in memory and in the store (before a
// QoS 1 or 2 publisher is acknowledged; an ephemeral message in memory
// only). [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
func (s *Server) retain(m *message, tx *routeTx) {
	if m.ephemeral {
		// In memory only; its payload is never empty.
		s.retained.Set(m.Topic, newRetainedRec(m))
		s.retainedExpiry.set(m.Topic, m.Expiry)
		return
	}
	b := tx.batch(s)
	tx.sync = tx.sync || m.QoS > 0
	if m.size() == 0 {
		s.retained.Delete(m.Topic)
		s.retainedExpiry.set(m.Topic, time.Time{})
		m.pin() // the batch keeps m.Topic until it is written
		b.DeleteRetained(m.Topic)
		return
	}
	// The batch takes the record's topic and body, which are never
	// written, rather than m's, which is recycled once delivered.
	rec := newRetainedRec(m)
	s.retained.Set(m.Topic, rec)
	s.retainedExpiry.set(m.Topic, m.Expiry)
	b.PutRetained(rec.topic(), rec.body())
}
