package broker

import (
	"cmp"
	"slices"
	"sync"

	"github.com/petrelmq/petrel/packet"
)

// handlePublish routes an application message from the client and
// acknowledges it as its QoS requires. The codec has already refused
// wildcards in the topic name. [MQTT-3.3.2-2]
func (c *conn) handlePublish(p *packet.Publish) error {
	if p.Retain && c.srv.opts.DisableRetain {
		return violation(packet.RetainNotSupported, "retained PUBLISH while retain is not available")
	}
	switch p.QoS {
	case 0:
		c.srv.publish(newMessage(p, c.sess.Load().id))
	case 1:
		c.srv.publish(newMessage(p, c.sess.Load().id))
		c.writeAck(packet.PUBACK, p.PacketID, packet.Success) // [MQTT-4.3.2-2]
	case 2:
		// Delivered on receipt; the id is remembered until PUBREL so a
		// re-sent PUBLISH is acknowledged without being routed twice.
		// [MQTT-4.3.3-2]
		if c.sess.Load().receivedQoS2(p.PacketID) {
			c.srv.publish(newMessage(p, c.sess.Load().id))
		}
		c.writeAck(packet.PUBREC, p.PacketID, packet.Success)
	}
	return nil
}

// handleAck completes the QoS 1 and 2 flows.
func (c *conn) handleAck(a *packet.Ack) error {
	switch a.Kind {
	case packet.PUBACK, packet.PUBCOMP:
		if !c.sess.Load().acked(a.Kind, a.PacketID) {
			c.srv.log.Debug("acknowledgement for a packet id not in flight", "client", c.clientID(),
				"type", a.Kind.String(), "packet_id", a.PacketID)
		}
	case packet.PUBREC:
		if !c.sess.Load().acked(a.Kind, a.PacketID) {
			// Let the client finish its side of the flow anyway.
			c.writeAck(packet.PUBREL, a.PacketID, packet.PacketIdentifierNotFound)
		}
	case packet.PUBREL:
		code := packet.Success
		if !c.sess.Load().released(a.PacketID) {
			code = packet.PacketIdentifierNotFound
		}
		c.writeAck(packet.PUBCOMP, a.PacketID, code) // [MQTT-4.3.3-2]
	}
	return nil
}

// matches is the scratch space of one routing: the subscriptions matched
// and those needing deduplication. Pooled so routing does not allocate.
type matches struct {
	all, multi []subscriber
}

var matchPool = sync.Pool{New: func() any { return new(matches) }}

// publish routes m to every session with a matching subscription and keeps
// it as the topic's retained message if it asks to be. A session whose
// subscriptions overlap receives one copy at the highest QoS granted.
func (s *Server) publish(m *Message) {
	if m.Retain {
		s.retain(m)
	}
	sc := matchPool.Get().(*matches)
	sc.all = s.index.Match(m.Topic, sc.all[:0])
	sc.multi = sc.multi[:0]
	for _, sub := range sc.all {
		// Only a session with several subscriptions can be matched twice.
		if sub.sess.nsubs.Load() > 1 {
			sc.multi = append(sc.multi, sub)
			continue
		}
		sub.sess.deliver(m, min(sub.qos, m.QoS))
	}
	if len(sc.multi) > 0 {
		s.deliverOverlapping(m, sc.multi)
	}
	clear(sc.all)
	clear(sc.multi)
	matchPool.Put(sc)
}

// deliverOverlapping delivers one copy per session at the highest QoS of its
// matching subscriptions. [MQTT-3.3.5-1]
func (s *Server) deliverOverlapping(m *Message, subs []subscriber) {
	slices.SortFunc(subs, func(a, b subscriber) int { return cmp.Compare(a.sess.id, b.sess.id) })
	for i := 0; i < len(subs); {
		qos := subs[i].qos
		j := i + 1
		for ; j < len(subs) && subs[j].sess == subs[i].sess; j++ {
			qos = max(qos, subs[j].qos)
		}
		subs[i].sess.deliver(m, min(qos, m.QoS))
		i = j
	}
}

// retain stores m as its topic's retained message, or deletes the retained
// message when the payload is empty. [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
func (s *Server) retain(m *Message) {
	if len(m.Payload) == 0 {
		s.retained.Delete(m.Topic)
		return
	}
	s.retained.Set(m.Topic, m)
}
