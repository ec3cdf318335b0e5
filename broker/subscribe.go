package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// handleSubscribe adds or replaces the client's subscriptions, answers
// SUBACK with one granted QoS or reason code per filter in order, and then
// sends the retained messages that the subscriptions' Retain Handling asks
// for. [MQTT-3.8.4-1] [MQTT-3.8.4-5] [MQTT-3.9.3-1]
func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	o := &c.ln.srv.opts
	if !c.rechecking {
		if err := c.controlRate(); err != nil {
			return err
		}
		if c.ln.srv.opts.Authorizer != nil {
			// A remote authorizer may need asking first: then the whole
			// packet waits, so its filters are answered together, in order.
			var ask []string
			for _, s := range p.Subs {
				f := s.Filter
				if topic.IsShared(f) {
					if _, rest, err := topic.ParseShare(f); err == nil {
						f = rest
					}
				}
				if !c.ln.srv.opts.Authorizer.Allow(c.client, auth.Subscribe, f) {
					ask = append(ask, f)
				}
			}
			if len(ask) > 0 && c.waitFor(auth.Subscribe, ask, p) {
				return nil
			}
		}
	}
	var subID uint32
	if len(p.Props.SubscriptionIDs) > 0 {
		if o.DisableSubscriptionIdentifiers {
			// CONNACK said Subscription Identifiers Available 0, which makes
			// one in SUBSCRIBE a Protocol Error answered with DISCONNECT 0xA1
			// (MQTT 5 §3.2.2.3.12; no numbered statement).
			return violation(packet.SubscriptionIdentifiersNotSupported, "subscription identifiers are not available")
		}
		subID = p.Props.SubscriptionIDs[0]
	}
	codes := make([]packet.ReasonCode, len(p.Subs))
	var retained []grantedSub
	for i, s := range p.Subs {
		code, send, checkRead, err := c.subscribeOne(&s, subID)
		if err != nil {
			return err
		}
		if c.isClosing() {
			return nil // a hook panicked: the connection is closing
		}
		codes[i] = code
		if send {
			retained = append(retained, grantedSub{strings.Clone(s.Filter), byte(code), s.RetainAsPublished, subID, checkRead})
		}
	}
	if c.version != packet.V5 {
		for i, code := range codes {
			if code.IsError() {
				codes[i] = packet.SubackFailure // 3.1.1 knows one failure code [MQTT-3.9.3-2]
			}
		}
	}
	ss := c.sess.Load()
	// A durable session's subscriptions are on disk before SUBACK says so.
	tx := txPool.Get().(*routeTx)
	defer putTx(tx)
	ss.save(tx)
	// In a cluster, every node has the new filters before SUBACK says so.
	var waits []*Pending
	if r := c.inR.Load(); r != nil {
		waits = r.subWaits
		r.subWaits = nil
	}
	c.replyAfter(&packet.Suback{PacketID: p.PacketID, Codes: codes}, tx.group(), waits)
	tx.finish(c.ln.srv, c)
	defer tx.finish(c.ln.srv, nil)
	var recs []*retainedRec
	now := time.Now()
	for _, g := range retained {
		// Retained messages of a new (or, with Retain Handling 0, replaced)
		// subscription go out flagged RETAIN=1. [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.8.4-3]
		// They are collected first: the retained index is not held while
		// sessions are locked.
		recs = recs[:0]
		c.ln.srv.retained.Match(g.filter, func(rec *retainedRec) bool {
			recs = append(recs, rec)
			return true
		})
		if g.checkRead {
			// The authorizer vouches message by message. [ACL on retained]
			recs = slices.DeleteFunc(recs, func(rec *retainedRec) bool { return !c.ln.srv.mayRead(ss, rec.topic()) })
		}
		var ids []uint32
		if g.subID != 0 {
			ids = []uint32{g.subID}
		}
		for _, rec := range recs {
			// The record is read once, here: its expiry too.
			m := rec.deliverable()
			if !m.expired(now) {
				ss.push(&delivery{msg: m, qos: min(m.QoS, g.qos), retain: true, subIDs: ids}, tx)
			}
			m.unref()
		}
	}
	c.statShard().addSent(&tx.sent)
	return nil
}

type grantedSub struct {
	filter            string
	qos               byte
	retainAsPublished bool
	subID             uint32
	checkRead         bool
}

// subscribeOne applies one filter of a SUBSCRIBE. It returns the SUBACK code,
// whether retained messages are to be sent, whether each message needs the
// authorizer's approval, and an error for what closes the connection.
func (c *conn) subscribeOne(s *packet.Subscription, subID uint32) (code packet.ReasonCode, send, checkRead bool, err error) {
	o := &c.ln.srv.opts
	filter := s.Filter
	sub := subscriber{
		qos:               min(s.QoS, o.maxQoS()),
		noLocal:           s.NoLocal,
		retainAsPublished: s.RetainAsPublished,
		subID:             subID,
	}
	if c.flags.Load()&flagBridge != 0 && !topic.IsShared(filter) {
		// A Mosquitto bridge relays both ways: what it published must not
		// come back to it (a loop), and a retained message must reach the
		// other broker retained. MQTT 5 asks for both per subscription;
		// a 3.1.1 bridge asks with the protocol level's top bit.
		sub.noLocal, sub.retainAsPublished = true, true
	}
	shareName := ""
	if topic.IsShared(filter) {
		if o.DisableSharedSubscriptions {
			if c.version == packet.V5 {
				// CONNACK said Shared Subscription Available 0, which makes a
				// shared filter a Protocol Error answered with DISCONNECT 0x9E
				// (MQTT 5 §3.2.2.3.13; no numbered statement).
				return 0, false, false, violation(packet.SharedSubscriptionsNotSupported, "shared subscriptions are not available")
			}
			// 3.1.1 has no $share: the filter is refused in the SUBACK.
			return packet.SharedSubscriptionsNotSupported, false, false, nil
		}
		name, f, err := topic.ParseShare(filter)
		if err != nil { // the codec refuses these; kept for safety
			return packet.TopicFilterInvalid, false, false, nil
		}
		shareName, filter = name, f
	}
	if o.DisableWildcardSubscriptions && topic.HasWildcard(filter) {
		// CONNACK said Wildcard Subscription Available 0 (MQTT 5
		// §3.2.2.3.11); the filter is refused with SUBACK reason 0xA2
		// (§3.9.3), 0x80 before MQTT 5, and the connection stays up.
		return packet.WildcardSubscriptionsNotSupported, false, false, nil
	}
	if o.Limits.topicTooBig(filter) {
		c.ln.srv.stats.refusedFilters.Add(1)
		return packet.TopicFilterInvalid, false, false, nil
	}
	ok, checkEach := c.ln.srv.maySubscribe(c.client, filter)
	if ok && o.Hooks.OnACLCheck != nil {
		ok = c.aclHook(auth.Subscribe, filter)
	}
	if !ok {
		c.ln.srv.stats.deniedSubscribe.Add(1)
		c.ln.srv.log.Debug("subscribe denied", "client", c.clientID(), "filter", s.Filter)
		return packet.NotAuthorized, false, false, nil
	}
	if c.ln.srv.authorizing() {
		c.statShard().allowed.Add(1)
	}
	sub.checkRead = checkEach
	ss := c.sess.Load()
	if max := o.Limits.MaxSubscriptions; max > 0 && int(ss.nsubs.Load()) >= max && !ss.hasSubscription(s.Filter) {
		c.ln.srv.stats.refusedFilters.Add(1)
		return packet.QuotaExceeded, false, false, nil
	}
	existed, ok, wait := ss.subscribe(strings.Clone(s.Filter), shareName, strings.Clone(filter), sub)
	if !ok {
		return packet.UnspecifiedError, false, false, nil
	}
	if wait != nil {
		r := c.inRareMake()
		r.subWaits = append(r.subWaits, wait)
	}
	// Retain Handling: 0 sends retained messages on every subscribe, 1 only
	// for a new subscription, 2 never; a shared subscription never gets
	// them. [MQTT-3.3.1-9..11] (v5)
	send = shareName == "" && (s.RetainHandling == 0 || (s.RetainHandling == 1 && !existed))
	return packet.ReasonCode(sub.qos), send, checkEach, nil
}

// handleUnsubscribe removes subscriptions and always answers UNSUBACK, even
// when nothing matched. [MQTT-3.10.4-4] [MQTT-3.10.4-5]
func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) error {
	if err := c.controlRate(); err != nil {
		return err
	}
	codes := make([]packet.ReasonCode, len(p.Filters))
	ss := c.sess.Load()
	for i, f := range p.Filters {
		if ss.unsubscribe(f) {
			codes[i] = packet.Success
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	tx := txPool.Get().(*routeTx)
	ss.save(tx)
	c.reply(&packet.Unsuback{PacketID: p.PacketID, Codes: codes}, tx.group())
	tx.finish(c.ln.srv, c)
	putTx(tx)
	return nil
}

// subscribe adds or replaces the subscription to key (the filter as the
// client wrote it, $share/ prefix included). For a shared subscription,
// shareName is the group and filter the part after it. It reports whether
// the subscription existed, and false when the session has ended (the
// connection lost a takeover race).
func (ss *session) subscribe(key, shareName, filter string, sub subscriber) (existed, ok bool, wait *Pending) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return false, false, nil
	}
	sub.sess = ss
	if ss.subs == nil {
		ss.subs = make(map[string]subscriber)
	}
	_, existed = ss.subs[key]
	if !existed {
		ss.nsubs.Add(1)
	}
	// Replaces any existing subscription of this session to the same
	// filter. [MQTT-3.8.4-3]
	if shareName != "" {
		sub.group, wait = ss.srv.joinShare(shareName, filter, sub)
	} else {
		wait = ss.srv.indexAdd(filter, ss, sub)
	}
	ss.subs[key] = sub
	return existed, true, wait
}

// indexAdd adds a plain subscription to the index and, when it is new,
// tells the cluster (cluster.go), returning what a SUBACK waits for.
func (s *Server) indexAdd(filter string, ss *session, sub subscriber) *Pending {
	if s.index.Add(filter, ss, sub) {
		return nil // replaced: the cluster knows the filter already
	}
	return s.interest(filter, "", true)
}

// hasSubscription reports whether the session subscribes to key.
func (ss *session) hasSubscription(key string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.subs[key]
	return ok
}

// controlRate bounds SUBSCRIBE and UNSUBSCRIBE floods.
func (c *conn) controlRate() error {
	r := c.ln.srv.opts.Limits.ControlRate
	if r <= 0 || c.rateBuckets().control.take(time.Now().UnixNano(), r, max(10, r), 1) {
		return nil
	}
	c.ln.srv.stats.rateLimited.Add(1)
	return violation(packet.MessageRateTooHigh, "more than %g SUBSCRIBE/UNSUBSCRIBE packets per second", r)
}

// unsubscribe removes the subscription to key, reporting whether it existed.
func (ss *session) unsubscribe(key string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sub, ok := ss.subs[key]
	if !ok || ss.ended {
		return false
	}
	delete(ss.subs, key)
	ss.nsubs.Add(-1)
	ss.srv.unindex(key, ss, sub)
	return true
}

// unindex takes one subscription out of the index it is in.
func (s *Server) unindex(key string, ss *session, sub subscriber) {
	if sub.group != nil {
		s.leaveShare(sub.group, ss)
		return
	}
	if s.index.Remove(key, ss) {
		s.interest(key, "", false)
	}
}
