package broker

import (
	"strings"

	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/topic"
)

// maxQoS is the highest QoS the broker grants.
const maxQoS = 2

// handleSubscribe adds or replaces the client's subscriptions, answers
// SUBACK with one granted QoS per filter in order, and then sends the
// retained messages each filter matches. [MQTT-3.8.4-1] [MQTT-3.8.4-5] [MQTT-3.9.3-1]
func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	codes := make([]packet.ReasonCode, len(p.Subs))
	granted := make([]grantedSub, 0, len(p.Subs))
	for i, sub := range p.Subs {
		if topic.IsShared(sub.Filter) {
			codes[i] = packet.SubackFailure // shared subscriptions come with MQTT 5 support
			continue
		}
		qos := min(sub.QoS, maxQoS)
		filter := strings.Clone(sub.Filter)
		if !c.sess.Load().subscribe(filter, qos) {
			codes[i] = packet.SubackFailure
			continue
		}
		codes[i] = packet.ReasonCode(qos)
		granted = append(granted, grantedSub{filter, qos})
	}
	c.writePacket(&packet.Suback{PacketID: p.PacketID, Codes: codes})
	for _, g := range granted {
		// A new or replaced subscription gets the matching retained
		// messages, flagged RETAIN=1. [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.8.4-3]
		c.srv.retained.Match(g.filter, func(_ string, m *Message) bool {
			c.sess.Load().deliverRetained(m, min(m.QoS, g.qos))
			return true
		})
	}
	return nil
}

type grantedSub struct {
	filter string
	qos    byte
}

// handleUnsubscribe removes subscriptions and always answers UNSUBACK, even
// when nothing matched. [MQTT-3.10.4-4] [MQTT-3.10.4-5]
func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		if c.sess.Load().unsubscribe(f) {
			codes[i] = packet.Success
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	c.writePacket(&packet.Unsuback{PacketID: p.PacketID, Codes: codes})
	return nil
}

// subscribe adds or replaces the subscription to filter. It reports false
// when the session has ended (the connection lost a takeover race).
func (ss *session) subscribe(filter string, qos byte) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return false
	}
	sub := subscriber{sess: ss, qos: qos}
	if ss.subs == nil {
		ss.subs = make(map[string]subscriber)
	}
	if _, ok := ss.subs[filter]; !ok {
		ss.nsubs.Add(1)
	}
	ss.subs[filter] = sub
	// Replaces any existing subscription of this session to the same
	// filter. [MQTT-3.8.4-3]
	ss.srv.index.Add(filter, ss, sub)
	return true
}

// unsubscribe removes the subscription to filter, reporting whether it existed.
func (ss *session) unsubscribe(filter string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.subs[filter]; !ok || ss.ended {
		return false
	}
	delete(ss.subs, filter)
	ss.nsubs.Add(-1)
	ss.srv.index.Remove(filter, ss)
	return true
}
