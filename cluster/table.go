package cluster

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/record"
	"github.com/petrelmq/petrel/internal/topic"
)

// table is the cluster's route table: this node's own interests, counted,
// and which other node holds which filters.
type table struct {
	self *peer

	// mu orders this node's changes (seq) with their announcements.
	mu         sync.Mutex
	local      map[string]int // key (broker.GroupKey) → subscriptions here
	announcing map[string]*broker.Pending
	seq        uint64

	// plain maps other nodes' plain filters to the nodes; shared maps
	// every group's filter (this node's too) to the group's state.
	plain  *topic.Index[*peer, *peer]
	shared *topic.Index[string, *shareState]
	// sharesMu guards shares (a leaf).
	sharesMu sync.Mutex
	shares   map[string]*shareState
}

// shareState is one shared group across the cluster: the nodes with
// members, replaced not changed so routing reads it without a lock.
type shareState struct {
	key   string
	nodes atomic.Pointer[[]*peer]
	next  atomic.Uint32
}

func (t *table) init(self string) {
	t.self = &peer{name: self, self: true}
	t.self.alive.Store(true)
	t.local = make(map[string]int)
	t.announcing = make(map[string]*broker.Pending)
	t.plain = topic.NewIndex[*peer, *peer]()
	t.shared = topic.NewIndex[string, *shareState]()
	t.shares = make(map[string]*shareState)
}

func splitKey(key string) (group, filter string) {
	group, filter, _ = strings.Cut(key, "\x00")
	return group, filter
}

// addNode records that p has key's filter (or a member of its group).
func (t *table) addNode(key string, p *peer) {
	group, filter := splitKey(key)
	if group == "" {
		t.plain.Add(filter, p, p)
		return
	}
	t.sharesMu.Lock()
	defer t.sharesMu.Unlock()
	st := t.shares[key]
	if st == nil {
		st = &shareState{key: key}
		empty := []*peer{}
		st.nodes.Store(&empty)
		t.shares[key] = st
		t.shared.Add(filter, key, st)
	}
	old := *st.nodes.Load()
	for _, q := range old {
		if q == p {
			return
		}
	}
	nodes := append(append([]*peer(nil), old...), p)
	st.nodes.Store(&nodes)
}

// removeNode records that p no longer has key's filter.
func (t *table) removeNode(key string, p *peer) {
	group, filter := splitKey(key)
	if group == "" {
		t.plain.Remove(filter, p)
		return
	}
	t.sharesMu.Lock()
	defer t.sharesMu.Unlock()
	st := t.shares[key]
	if st == nil {
		return
	}
	var nodes []*peer
	for _, q := range *st.nodes.Load() {
		if q != p {
			nodes = append(nodes, q)
		}
	}
	if len(nodes) == 0 {
		delete(t.shares, key)
		t.shared.Remove(filter, key)
		nodes = []*peer{}
	}
	st.nodes.Store(&nodes)
}

// Interest implements broker.Cluster.
func (c *Cluster) Interest(filter, group string, add bool) *broker.Pending {
	t := &c.table
	key := broker.GroupKey(group, filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.local[key]
	if add {
		n++
	} else {
		n--
	}
	if n > 0 {
		t.local[key] = n
	} else {
		delete(t.local, key)
	}
	switch {
	case add && n == 1:
		if group != "" {
			t.addNode(key, t.self)
		}
		t.seq++
		p := c.announce(t.seq, true, key)
		if p != nil {
			t.announcing[key] = p
		} else {
			delete(t.announcing, key)
		}
		return p
	case add:
		if p := t.announcing[key]; p != nil {
			if !p.IsDone() {
				return p // still on its way: this SUBACK waits for it too
			}
			delete(t.announcing, key)
		}
		return nil
	case n == 0:
		if group != "" {
			t.removeNode(key, t.self)
		}
		delete(t.announcing, key)
		t.seq++
		c.announce(t.seq, false, key)
	}
	return nil
}

// announce tells the other nodes of a change of this node's interests,
// and returns what completes once every live node applied it (nil: none
// to wait for, or not started). t.mu is held: announcements go out in seq
// order.
func (c *Cluster) announce(seq uint64, add bool, key string) *broker.Pending {
	if c.nc == nil {
		return nil // before Start: the snapshot each node asks for has it
	}
	var op byte
	if add {
		op = 1
	}
	id, p := uint64(0), (*broker.Pending)(nil)
	if add {
		id, p = c.expectAcks()
	}
	b := make([]byte, 0, 32+len(key))
	b = record.AppendString(b, c.cfg.Node)
	b = record.AppendString(b, c.boot)
	b = record.AppendUvarint(b, seq)
	b = record.AppendUvarint(b, id)
	b = append(b, op)
	b = record.AppendString(b, key)
	msg := &nats.Msg{Subject: c.pfx + "i", Data: b}
	if id != 0 {
		msg.Reply = c.pfx + "back." + c.cfg.Node
	}
	if err := c.nc.PublishMsg(msg); err != nil {
		c.log.Warn("cluster: announce a subscription", "err", err)
	}
	return p
}

// snapshot encodes this node's interests with the seq they are at.
func (c *Cluster) snapshot() []byte {
	t := &c.table
	t.mu.Lock()
	defer t.mu.Unlock()
	b := record.AppendString(nil, c.cfg.Node)
	b = record.AppendString(b, c.boot)
	b = record.AppendUvarint(b, t.seq)
	b = record.AppendUvarint(b, uint64(len(t.local)))
	for key := range t.local {
		b = record.AppendString(b, key)
	}
	return b
}

// routeScratch is Route's working space, kept in the route's Scratch.
type routeScratch struct {
	peers  []*peer
	shares []*shareState
	to     []target
}

type target struct {
	p      *peer
	groups []string
}

// Route implements broker.Cluster.
func (c *Cluster) Route(r *broker.ClusterRoute) {
	t := &c.table
	sc, _ := r.Scratch.(*routeScratch)
	if sc == nil {
		sc = new(routeScratch)
		r.Scratch = sc
	}
	if t.plain.Len() > 0 {
		sc.peers = t.plain.Match(r.Topic, sc.peers[:0])
		for _, p := range sc.peers {
			sc.add(p, "")
		}
	}
	if t.shared.Len() > 0 {
		sc.shares = t.shared.Match(r.Topic, sc.shares[:0])
		for _, st := range sc.shares {
			nodes := *st.nodes.Load()
			if len(nodes) == 0 {
				continue
			}
			// In turn over the nodes with members, passing a dead one and,
			// while another has room, one whose members have none (room.go).
			start := int(st.next.Add(1))
			var pick *peer
			for i := range nodes {
				p := nodes[(start+i)%len(nodes)]
				if !p.alive.Load() {
					continue
				}
				crowded := !p.self && p.crowdedFor(st.key)
				if pick == nil || !crowded {
					pick = p
				}
				if !crowded {
					break
				}
			}
			switch {
			case pick == nil:
			case pick.self:
				r.Local = append(r.Local, st.key)
			default:
				sc.add(pick, st.key)
			}
		}
	}
	for i := range sc.to {
		tg := &sc.to[i]
		if !tg.p.alive.Load() {
			if tg.p.ghost.Load() {
				r.Pending = append(r.Pending, tg.p.failed)
			}
			continue
		}
		pend, full := tg.p.enqueue(c, r, tg.groups)
		if pend != nil {
			r.Pending = append(r.Pending, pend)
		}
		r.Full = r.Full || full
		r.Nodes++
	}
	if r.Nodes > 0 { // no shared write for a message that stays here
		c.stats.Forwarded.Add(uint64(r.Nodes))
	}
	for i := range sc.to {
		sc.to[i].groups = sc.to[i].groups[:0]
		sc.to[i].p = nil
	}
	sc.to = sc.to[:0]
	clear(sc.peers)
	clear(sc.shares)
}

// add counts p as a destination once, with group when not "".
func (sc *routeScratch) add(p *peer, group string) {
	if p.self {
		return
	}
	for i := range sc.to {
		if sc.to[i].p == p {
			if group != "" {
				sc.to[i].groups = append(sc.to[i].groups, group)
			}
			return
		}
	}
	if len(sc.to) < cap(sc.to) {
		sc.to = sc.to[:len(sc.to)+1]
		sc.to[len(sc.to)-1].p = p
	} else {
		sc.to = append(sc.to, target{p: p})
	}
	if group != "" {
		tg := &sc.to[len(sc.to)-1]
		tg.groups = append(tg.groups, group)
	}
}

// ackWait is a broadcast waiting for the nodes that were live when it went.
type ackWait struct {
	waiting  map[*peer]bool
	p        *broker.Pending
	deadline time.Time
}

// expectAcks registers a broadcast that every live node answers, and
// returns its id and what completes with the last answer; 0 and nil
// when no other node is live.
func (c *Cluster) expectAcks() (uint64, *broker.Pending) {
	live := c.peers.live()
	if len(live) == 0 {
		return 0, nil
	}
	w := &ackWait{waiting: make(map[*peer]bool, len(live)), p: broker.NewPending(),
		deadline: time.Now().Add(c.cfg.NodeTimeout)}
	for _, p := range live {
		w.waiting[p] = true
	}
	id := c.ackSeq.Add(1)
	c.acksMu.Lock()
	c.acks[id] = w
	c.acksMu.Unlock()
	return id, w.p
}

// acked counts one node's answer to broadcast id.
func (c *Cluster) acked(id uint64, from *peer) {
	c.acksMu.Lock()
	w := c.acks[id]
	if w == nil {
		c.acksMu.Unlock()
		return
	}
	delete(w.waiting, from)
	done := len(w.waiting) == 0
	if done {
		delete(c.acks, id)
	}
	c.acksMu.Unlock()
	if done {
		w.p.Done()
	}
}

// forgetAcks stops waiting for p (dead), and, with p nil, ends the waits
// past their deadline.
func (c *Cluster) forgetAcks(p *peer, now time.Time) {
	var done []*ackWait
	c.acksMu.Lock()
	for id, w := range c.acks {
		if p != nil {
			delete(w.waiting, p)
		} else if now.After(w.deadline) {
			names := make([]string, 0, len(w.waiting))
			for q := range w.waiting {
				names = append(names, q.name)
			}
			c.log.Warn("cluster: nodes did not answer in time; going on without them", "nodes", strings.Join(names, ","))
			clear(w.waiting)
		}
		if len(w.waiting) == 0 {
			delete(c.acks, id)
			done = append(done, w)
		}
	}
	c.acksMu.Unlock()
	for _, w := range done {
		w.p.Done()
	}
}

// failAcks ends every wait (shutdown).
func (c *Cluster) failAcks() {
	c.acksMu.Lock()
	acks := c.acks
	c.acks = make(map[uint64]*ackWait)
	c.acksMu.Unlock()
	for _, w := range acks {
		w.p.Done()
	}
}
