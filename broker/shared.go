package broker

import (
	"slices"
	"sync/atomic"
)

// shareGroup is one shared subscription, $share/{name}/{filter}: each
// message matching filter goes to one member, in turn. [MQTT-4.8.2]
type shareGroup struct {
	name, filter string
	// members is replaced, never changed in place, so routing reads it
	// without a lock while subscribers come and go under Server.sharesMu.
	members atomic.Pointer[[]subscriber]
	next    atomic.Uint32
}

// deliver hands m to one member: the next in turn that is online and takes
// it, else the next that takes it at all (an offline persistent session
// queues it). A member whose session is gone or whose queue is full is
// passed over. It reports whether a member took the message.
func (g *shareGroup) deliver(m *message, sc *matches, tx *routeTx) bool {
	mp := g.members.Load()
	if mp == nil || len(*mp) == 0 {
		return false
	}
	members := *mp
	start := int(g.next.Add(1))
	for pass := 0; pass < 2; pass++ {
		for i := range members {
			sub := &members[(start+i)%len(members)]
			if pass == 0 && !sub.sess.online.Load() {
				continue
			}
			if sub.checkRead && !sub.sess.srv.mayRead(sub.sess, m.Topic) {
				continue
			}
			d := delivery{msg: m, qos: min(sub.qos, m.QoS), retain: sub.retainAsPublished && m.Retain}
			if sub.subID != 0 {
				sc.ids = append(sc.ids[:0], sub.subID)
				d.subIDs = sc.ids
			}
			if sub.sess.push(d, tx) {
				return true
			}
		}
	}
	return false
}

// joinShare adds or replaces the session's membership of the group for
// name and filter, creating the group on first use.
func (s *Server) joinShare(name, filter string, sub subscriber) *shareGroup {
	key := name + "\x00" + filter
	s.sharesMu.Lock()
	defer s.sharesMu.Unlock()
	g := s.shares[key]
	if g == nil {
		g = &shareGroup{name: name, filter: filter}
		s.shares[key] = g
		s.shared.Add(filter, g, g)
	}
	var members []subscriber
	if mp := g.members.Load(); mp != nil {
		members = slices.Clone(*mp)
	}
	sub.group = g
	if i := slices.IndexFunc(members, func(m subscriber) bool { return m.sess == sub.sess }); i >= 0 {
		members[i] = sub
	} else {
		members = append(members, sub)
	}
	g.members.Store(&members)
	return g
}

// leaveShare removes the session from the group, and the group once empty.
func (s *Server) leaveShare(g *shareGroup, ss *session) {
	s.sharesMu.Lock()
	defer s.sharesMu.Unlock()
	mp := g.members.Load()
	if mp == nil {
		return
	}
	members := slices.DeleteFunc(slices.Clone(*mp), func(m subscriber) bool { return m.sess == ss })
	g.members.Store(&members)
	if len(members) == 0 {
		delete(s.shares, g.name+"\x00"+g.filter)
		s.shared.Remove(g.filter, g)
	}
}
