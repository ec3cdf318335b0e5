package broker

import (
	"slices"
	"sync/atomic"
)

// shareGroup is one shared subscription, $share/{name}/{filter}: each
// message matching filter goes to one member. [MQTT-4.8.2]
type shareGroup struct {
	name, filter string
	// members is replaced, never changed in place, so routing reads it
	// without a lock while subscribers come and go under Server.sharesMu.
	members atomic.Pointer[[]subscriber]
	// next is where the turn starts for the next message.
	next atomic.Uint32
}

// deliver hands m to one member: the online member with the most room
// (choose), else the next in turn that is online and takes it, else the
// next that takes it at all (an offline persistent session queues it). A
// member whose session is gone or whose queue is full is passed over. It
// reports whether a member took the message.
func (g *shareGroup) deliver(m *message, sc *matches, tx *routeTx) bool {
	mp := g.members.Load()
	if mp == nil || len(*mp) == 0 {
		return false
	}
	members := *mp
	start := int(g.next.Add(1) % uint32(len(members)))
	chosen := g.choose(members, start, m)
	if chosen >= 0 && offer(&members[chosen], m, sc, tx) {
		return true
	}
	for pass := 0; pass < 2; pass++ {
		for i := range members {
			j := (start + i) % len(members)
			sub := &members[j]
			if j == chosen || (pass == 0) != sub.sess.online.Load() {
				continue
			}
			if sub.checkRead && !sub.sess.srv.mayRead(sub.sess, m.Topic) {
				continue
			}
			if offer(sub, m, sc, tx) {
				return true
			}
		}
	}
	return false
}

// choose returns the online member that may read m and is least behind,
// or -1: one whose in-flight window has room before one whose window is
// full, then the one with the shortest backlog (session.load orders them
// so). Among equals the first from start wins, and the turn moves past it,
// so that equals take turns. A member that is not behind ends the search
// at once: that is the common case, and it reads two atomics.
func (g *shareGroup) choose(members []subscriber, start int, m *message) int {
	best, bestLoad := -1, uint32(0)
	for i := range members {
		j := start + i
		if j >= len(members) {
			j -= len(members)
		}
		sub := &members[j]
		ss := sub.sess
		if !ss.online.Load() {
			continue
		}
		load := ss.load.Load()
		if best >= 0 && load >= bestLoad {
			continue
		}
		if sub.checkRead && !ss.srv.mayRead(ss, m.Topic) {
			continue
		}
		best, bestLoad = j, load
		if load == 0 {
			break
		}
	}
	if best >= 0 && best != start {
		g.next.Store(uint32(best))
	}
	return best
}

// hasRoom reports whether an online member is fewer than limit deliveries
// behind (session.load: its window's overflow, or its backlog once the
// window is full).
func (g *shareGroup) hasRoom(limit uint32) bool {
	mp := g.members.Load()
	if mp == nil {
		return false
	}
	for i := range *mp {
		ss := (*mp)[i].sess
		if ss.online.Load() && ss.load.Load()&^loadFull < limit {
			return true
		}
	}
	return false
}

// offer pushes m to one member at the QoS it subscribed with.
// [MQTT-4.8.2-3] (v5)
func offer(sub *subscriber, m *message, sc *matches, tx *routeTx) bool {
	d := delivery{msg: m, qos: min(sub.qos, m.QoS), retain: sub.retainAsPublished && m.Retain, shared: true}
	if sub.subID != 0 {
		sc.ids = append(sc.ids[:0], sub.subID)
		d.subIDs = sc.ids
	}
	return sub.sess.push(&d, tx)
}

// joinShare adds or replaces the session's membership of the group for
// name and filter, creating the group on first use.
func (s *Server) joinShare(name, filter string, sub subscriber) (*shareGroup, *Pending) {
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
	var wait *Pending
	if i := slices.IndexFunc(members, func(m subscriber) bool { return m.sess == sub.sess }); i >= 0 {
		members[i] = sub
	} else {
		members = append(members, sub)
		s.sharedSubs.Add(1)
		wait = s.interest(filter, name, true)
	}
	g.members.Store(&members)
	return g, wait
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
	if len(members) < len(*mp) {
		s.interest(g.filter, g.name, false)
	}
	g.members.Store(&members)
	s.sharedSubs.Add(int64(len(members) - len(*mp)))
	if len(members) == 0 {
		delete(s.shares, g.name+"\x00"+g.filter)
		s.shared.Remove(g.filter, g)
	}
}
