package cluster

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/record"
)

const (
	// window is how many batches may be in flight to one node.
	window = 8
	// batchBytes is where a batch closes and the next begins.
	batchBytes = 256 << 10
	// lightWindow batches in flight are enough while batches are small
	// (under smallBatch): one more waits for an acknowledgement and grows.
	lightWindow = 2
	smallBatch  = 16 << 10
)

// peer is another node as this one knows it, and the queue of batches to it.
type peer struct {
	name  string
	boot  string
	self  bool
	alive atomic.Bool
	// ghost: lost, its keys kept until its sessions are taken over
	// (replica.go); a message routed to it fails.
	ghost  atomic.Bool
	failed *broker.Pending
	// crowded: the shared groups (GroupKey) whose members on this node
	// have no room, as it last said, and until when that holds (room.go);
	// replaced, never changed.
	crowded atomic.Pointer[map[string]int64] // key → until (unix ns)

	// mu guards what follows (a leaf, taken under the table's locks on
	// the routing path).
	mu       sync.Mutex
	lastSeen time.Time
	seq      uint64             // the last of its announcements applied
	keys     map[string]bool    // its interests, as applied here
	syncing  bool               // a snapshot was asked for
	held     []heldAnnouncement // announcements that came while syncing
	queue    []*batch           // closed batches waiting for the window, then the open one
	queued   int                // bytes in queue
	inflight map[uint64]*batch
	nextID   uint64
	full     bool
	wake     chan struct{}
	done     chan struct{}
}

type heldAnnouncement struct {
	seq   uint64
	id    uint64
	reply string
	add   bool
	key   string
}

// batchBufs recycles batches' buffers: growing one to batchBytes by
// appending cost a tenth of a publishing node's CPU in copies and garbage.
var batchBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, batchBytes+batchBytes/4)
	return &b
}}

// batch is many messages to one node in one NATS message.
type batch struct {
	id      uint64
	buf     []byte
	count   int
	bytes   int // of messages, as counted in peer.queued
	pending *broker.Pending
}

type peerSet struct {
	mu     sync.Mutex
	byName map[string]*peer
	// closed: the node is shutting down; no peer is made nor goroutine
	// started any more (spawn), so that shutdown's wait ends.
	closed bool
	full   atomic.Int32 // peers whose queue is at its bound
	// lost are the nodes this one found unheard of and has not heard
	// since: the others may have taken its sessions over meanwhile, if it
	// was this one that was cut off.
	lost map[string]bool
}

func (ps *peerSet) init() { ps.byName, ps.lost = make(map[string]*peer), make(map[string]bool) }

func (ps *peerSet) get(name string) *peer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.byName[name]
}

func (ps *peerSet) live() []*peer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*peer, 0, len(ps.byName))
	for _, p := range ps.byName {
		if p.alive.Load() {
			out = append(out, p)
		}
	}
	return out
}

func (ps *peerSet) names() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []string
	for n, p := range ps.byName {
		if p.alive.Load() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (ps *peerSet) closeAll(c *Cluster) {
	ps.mu.Lock()
	ps.closed = true
	all := make([]*peer, 0, len(ps.byName))
	for _, p := range ps.byName {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		c.removePeer(p, "")
	}
}

// enqueue adds the message of r to the open batch towards p, and returns
// the batch's Pending and whether the queue is at its bound.
func (p *peer) enqueue(c *Cluster, r *broker.ClusterRoute, groups []string) (*broker.Pending, bool) {
	p.mu.Lock()
	if !p.alive.Load() {
		p.mu.Unlock()
		return nil, false
	}
	var b *batch
	if n := len(p.queue); n > 0 && len(p.queue[n-1].buf) < batchBytes {
		b = p.queue[n-1]
	} else {
		p.nextID++
		b = &batch{id: p.nextID, pending: broker.NewPending()}
		b.buf = binary.BigEndian.AppendUint64((*batchBufs.Get().(*[]byte))[:0], b.id)
		b.buf = record.AppendString(b.buf, c.cfg.Node)
		p.queue = append(p.queue, b)
	}
	before := len(b.buf)
	b.buf = record.AppendUvarint(b.buf, uint64(len(groups)))
	for _, g := range groups {
		b.buf = record.AppendString(b.buf, g)
	}
	b.buf = record.AppendUvarint(b.buf, r.Stamp)
	// The body's length is not known before it is written: it is written
	// after a 4-byte placeholder, then the length goes in front as a
	// fixed-size field.
	at := len(b.buf)
	b.buf = append(b.buf, 0, 0, 0, 0)
	b.buf = r.AppendBody(b.buf)
	binary.BigEndian.PutUint32(b.buf[at:], uint32(len(b.buf)-at-4))
	b.count++
	b.bytes += len(b.buf) - before
	p.queued += len(b.buf) - before
	full := false
	if p.queued > c.cfg.QueueBytes && !p.full {
		p.full = true
		c.peers.full.Add(1)
	}
	full = p.full
	pend := b.pending
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return pend, full
}

// send runs one peer's sender: batches go out as the window allows.
func (c *Cluster) send(p *peer) {
	subj := c.pfx + "m." + p.name
	reply := c.pfx + "mack." + c.cfg.Node
	for {
		select {
		case <-p.wake:
		case <-p.done:
			return
		}
		for {
			p.mu.Lock()
			if len(p.queue) == 0 || len(p.inflight) >= window || !p.alive.Load() ||
				(len(p.inflight) >= lightWindow && len(p.queue) == 1 && len(p.queue[0].buf) < smallBatch) {
				// A small batch waits while a couple are in flight: it
				// fills meanwhile, rather than each message going alone.
				p.mu.Unlock()
				break
			}
			b := p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
			p.queued -= b.bytes
			p.inflight[b.id] = b
			drained := p.relieveLocked(c)
			p.mu.Unlock()
			if drained {
				c.node.Drained()
			}
			c.stats.Batches.Add(1)
			if err := c.nc.PublishMsg(&nats.Msg{Subject: subj, Reply: reply, Data: b.buf}); err != nil {
				c.log.Warn("cluster: send a batch", "node", p.name, "err", err)
			}
			// NATS copied it into its own buffer: the next batch may use it.
			buf := b.buf[:0]
			b.buf = nil
			if cap(buf) <= 2*batchBytes {
				batchBufs.Put(&buf)
			}
		}
	}
}

// relieveLocked clears p's full mark once its queue is down to half the
// bound, reporting whether no peer is full any more. p.mu is held.
func (p *peer) relieveLocked(c *Cluster) bool {
	if p.full && p.queued <= c.cfg.QueueBytes/2 {
		p.full = false
		return c.peers.full.Add(-1) == 0
	}
	return false
}

// batchAcked completes batch id to p.
func (c *Cluster) batchAcked(p *peer, id uint64) {
	p.mu.Lock()
	b := p.inflight[id]
	delete(p.inflight, id)
	p.mu.Unlock()
	if b == nil {
		return
	}
	b.pending.Done()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// heard notes a message from node name (run boot), creating its peer
// when it is new: it is introduced, and asked for its table.
func (c *Cluster) heard(name, boot string) *peer {
	if name == c.cfg.Node {
		return nil
	}
	now := time.Now()
	c.peers.mu.Lock()
	if c.peers.closed {
		c.peers.mu.Unlock()
		return nil
	}
	p := c.peers.byName[name]
	if p != nil && p.boot == boot && p.alive.Load() {
		p.mu.Lock()
		p.lastSeen = now
		p.mu.Unlock()
		c.peers.mu.Unlock()
		return p
	}
	old := p
	p = &peer{name: name, boot: boot, lastSeen: now, keys: make(map[string]bool), inflight: make(map[uint64]*batch),
		wake: make(chan struct{}, 1), done: make(chan struct{}), syncing: true}
	p.alive.Store(true)
	c.peers.byName[name] = p
	c.wg.Add(2) // under peers.mu: closeAll cannot have begun
	back := c.peers.lost[name]
	delete(c.peers.lost, name)
	c.peers.mu.Unlock()
	if old != nil {
		c.removePeer(old, "restarted")
	}
	c.log.Info("cluster: node joined", "node", name, "back", back)
	if back {
		// A cut between this node and that one healed. Its lost copy
		// goes (its live table replaces it), and if the cut was this
		// node's, the sessions the others took over meanwhile leave it.
		c.dropGhost(name)
		c.spawn(c.node.Reconcile)
	}
	go func() {
		defer c.wg.Done()
		c.send(p)
	}()
	go func() {
		defer c.wg.Done()
		c.sync(p)
	}()
	// Introduce this node at once rather than at the next heartbeat.
	c.beat()
	return p
}

// spawn runs fn on a goroutine that shutdown waits for, unless the node
// is shutting down.
func (c *Cluster) spawn(fn func()) bool {
	c.peers.mu.Lock()
	defer c.peers.mu.Unlock()
	if c.peers.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// errCutOff is what a node cut off from most of the others answers a
// write that needs a majority, at once rather than after its timeout.
var errCutOff = errors.New("this node is cut off from most of the cluster")

// cutOff reports whether this node is on the minority side of a cut: it
// has found at least as many nodes unheard of (and not heard since) as it
// can reach, counting itself. Nodes that left, saying so, do not count.
func (c *Cluster) cutOff() bool {
	live := len(c.peers.live()) + 1
	c.peers.mu.Lock()
	lost := len(c.peers.lost)
	c.peers.mu.Unlock()
	return lost >= live
}

// leftWhy is removePeer's reason for a node that said goodbye, and
// unheardWhy begins its reason for one that went silent.
const (
	leftWhy    = "left the cluster"
	unheardWhy = "unheard of"
)

// removePeer forgets a dead (or departed, or restarted) node: its routes
// go, and what was on its way to it is given up. A node that said goodbye
// had handed its sessions on and taken what was sent to it; one that was
// lost (unheard of, or restarted) took none of it, so the publishers'
// acknowledgements that waited for it fail rather than say delivered.
func (c *Cluster) removePeer(p *peer, why string) {
	if !p.alive.Swap(false) {
		return
	}
	c.peers.mu.Lock()
	if c.peers.byName[p.name] == p {
		delete(c.peers.byName, p.name)
	}
	if strings.HasPrefix(why, unheardWhy) {
		c.peers.lost[p.name] = true
	}
	c.peers.mu.Unlock()
	if why != "" {
		c.log.Warn("cluster: node left", "node", p.name, "why", why)
	}
	p.mu.Lock()
	keys := p.keys
	p.keys = make(map[string]bool)
	var given []*batch
	given = append(given, p.queue...)
	for _, b := range p.inflight {
		given = append(given, b)
	}
	p.queue, p.inflight, p.queued = nil, map[uint64]*batch{}, 0
	drained := false
	if p.full {
		p.full = false
		drained = c.peers.full.Add(-1) == 0
	}
	p.mu.Unlock()
	close(p.done)
	if why != "" && why != leftWhy && c.rep.ready.Load() {
		// Its sessions live on in the replica: until they are taken
		// over, what is routed to them fails rather than match nobody.
		c.haunt(p, keys)
	} else {
		for key := range keys {
			c.table.removeNode(key, p)
		}
	}
	n := 0
	for _, b := range given {
		n += b.count
		if why == "" || why == leftWhy {
			b.pending.Done()
		} else {
			b.pending.Fail()
		}
	}
	if n > 0 {
		c.stats.GivenUp.Add(uint64(n))
		c.log.Warn("cluster: messages in flight to a departed node given up", "node", p.name, "messages", n)
	}
	c.forgetAcks(p, time.Time{})
	if drained && c.node != nil {
		c.node.Drained()
	}
}

// apply applies one of p's announcements. p.mu is held.
func (c *Cluster) applyLocked(p *peer, add bool, key string) {
	if add {
		if !p.keys[key] {
			p.keys[key] = true
			c.table.addNode(key, p)
		}
		return
	}
	if p.keys[key] {
		delete(p.keys, key)
		c.table.removeNode(key, p)
	}
}

// sync asks p for its table and applies it, then what came meanwhile.
func (c *Cluster) sync(p *peer) {
	for attempt := 0; p.alive.Load() && c.ctx.Err() == nil; attempt++ {
		ask := record.AppendString(record.AppendString(nil, c.cfg.Node), c.boot)
		msg, err := c.nc.Request(c.pfx+"sync."+p.name, ask, c.cfg.NodeTimeout)
		if err != nil {
			if attempt > 0 {
				c.log.Debug("cluster: ask a node for its subscriptions", "node", p.name, "err", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		r := record.Reader{B: msg.Data}
		name, boot, seq, n := r.Str(), r.Str(), r.Uvarint(), r.Uvarint()
		if r.Err != nil || name != p.name || boot != p.boot {
			return // a newer run answered: its own peer syncs
		}
		keys := make(map[string]bool, min(n, 1<<16))
		for i := uint64(0); i < n && r.Err == nil; i++ {
			keys[r.Str()] = true
		}
		if r.Err != nil {
			c.log.Warn("cluster: a node's subscriptions do not decode", "node", p.name)
			return
		}
		var acks []heldAnnouncement
		p.mu.Lock()
		for key := range p.keys {
			if !keys[key] {
				c.applyLocked(p, false, key)
			}
		}
		for key := range keys {
			c.applyLocked(p, true, key)
		}
		p.seq = seq
		for _, h := range p.held {
			if h.seq == p.seq+1 {
				c.applyLocked(p, h.add, h.key)
				p.seq = h.seq
			}
			if h.id != 0 {
				acks = append(acks, h)
			}
		}
		p.held = nil
		p.syncing = false
		p.mu.Unlock()
		for _, h := range acks {
			c.answer(h.reply, h.id)
		}
		return
	}
}

// answer acknowledges broadcast id to its sender.
func (c *Cluster) answer(reply string, id uint64) {
	if reply == "" || id == 0 {
		return
	}
	b := record.AppendString(nil, c.cfg.Node)
	b = record.AppendString(b, c.boot)
	b = record.AppendUvarint(b, id)
	_ = c.nc.Publish(reply, b)
}

// subscribe sets up what this node hears.
func (c *Cluster) subscribe() error {
	subs := []struct {
		subj string
		fn   nats.MsgHandler
	}{
		{c.pfx + "i", c.onAnnouncement},
		{c.pfx + "hb", c.onHeartbeat},
		{c.pfx + "bye", c.onBye},
		{c.pfx + "sync." + c.cfg.Node, c.onSync},
		{c.pfx + "back." + c.cfg.Node, c.onAck},
		{c.pfx + "m." + c.cfg.Node, c.onBatch},
		{c.pfx + "mack." + c.cfg.Node, c.onBatchAck},
		{c.pfx + "room." + c.cfg.Node, c.onRoom},
		{c.pfx + "ret", c.onRetained},
		{c.pfx + "sess." + c.cfg.Node, c.onSession},
		{c.pfx + "cut", c.onCut},
		{c.pfx + "adopted", c.onAdopted},
	}
	for _, s := range subs {
		sub, err := c.nc.Subscribe(s.subj, s.fn)
		if err != nil {
			return err
		}
		// Bounded by the senders' windows, not here: a batch dropped as
		// a slow consumer would never be acknowledged.
		_ = sub.SetPendingLimits(-1, -1)
	}
	return c.nc.Flush()
}

// onSync answers a node's request for this node's table. The asker is
// met first, so that every announcement after the snapshot waits for its
// answer: one that comes before is in the snapshot.
func (c *Cluster) onSync(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	name, boot := r.Str(), r.Str()
	if r.Err == nil {
		c.heard(name, boot)
	}
	_ = m.Respond(c.snapshot())
}

func (c *Cluster) onAnnouncement(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	name, boot, seq, id, op, key := r.Str(), r.Str(), r.Uvarint(), r.Uvarint(), r.Byte(), r.Str()
	if r.Err != nil || name == c.cfg.Node {
		return
	}
	p := c.heard(name, boot)
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.syncing {
		p.held = append(p.held, heldAnnouncement{seq: seq, id: id, reply: m.Reply, add: op == 1, key: key})
		p.mu.Unlock()
		return
	}
	if seq != p.seq+1 {
		// One was missed: the whole table again.
		if seq > p.seq {
			p.syncing = true
			p.held = append(p.held, heldAnnouncement{seq: seq, id: id, reply: m.Reply, add: op == 1, key: key})
			p.mu.Unlock()
			c.spawn(func() { c.sync(p) })
			return
		}
		p.mu.Unlock()
		c.answer(m.Reply, id) // old news
		return
	}
	c.applyLocked(p, op == 1, key)
	p.seq = seq
	p.mu.Unlock()
	c.answer(m.Reply, id)
}

func (c *Cluster) onAck(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	name, _, id := r.Str(), r.Str(), r.Uvarint()
	if r.Err != nil {
		return
	}
	if p := c.peers.get(name); p != nil {
		c.acked(id, p)
	}
}

func (c *Cluster) onBye(m *nats.Msg) {
	name, boot, _ := strings.Cut(string(m.Data), " ")
	if p := c.peers.get(name); p != nil && p.boot == boot {
		c.removePeer(p, leftWhy)
	}
}

// onBatch routes a batch from another node and acknowledges it once this
// node has taken it.
func (c *Cluster) onBatch(m *nats.Msg) {
	if len(m.Data) < 8 {
		return
	}
	id := binary.BigEndian.Uint64(m.Data)
	r := record.Reader{B: m.Data[8:]}
	from := r.Str()
	// NATS runs one subscription's callbacks one at a time, and Deliver
	// keeps nothing of msgs: one slice serves every batch (growing it for
	// each cost a receiving node 7% of its CPU, and more in the collector).
	msgs, groups := c.inbox[:0], c.inboxGroups[:0] // groups: the batch's, once each
	for r.Err == nil && len(r.B) > 0 {
		var f broker.Forwarded
		ng := r.Uvarint()
		if ng > uint64(len(r.B)) {
			r.Err = record.ErrMalformed
			break
		}
		for i := uint64(0); i < ng; i++ {
			g := r.Str()
			f.Groups = append(f.Groups, g)
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
		f.From, f.Stamp = from, r.Uvarint()
		if len(r.B) < 4 {
			r.Err = record.ErrMalformed
			break
		}
		n := binary.BigEndian.Uint32(r.B)
		if uint64(n) > uint64(len(r.B)-4) {
			r.Err = record.ErrMalformed
			break
		}
		f.Body = r.B[4 : 4+n]
		r.B = r.B[4+n:]
		msgs = append(msgs, f)
	}
	if r.Err != nil {
		c.log.Warn("cluster: a batch from another node does not decode", "node", from)
	}
	c.stats.ReceivedBatches.Add(1)
	c.stats.Received.Add(uint64(len(msgs)))
	reply := m.Reply
	c.node.Deliver(msgs, func() {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], id)
		ack := record.AppendString(b[:], c.cfg.Node)
		_ = c.nc.Publish(reply, ack)
	})
	c.noteRoom(from, groups)
	clear(groups)
	c.inboxGroups = groups[:0]
	clear(msgs) // the batch's memory goes with it
	c.inbox = msgs[:0]
}

func (c *Cluster) onBatchAck(m *nats.Msg) {
	if len(m.Data) < 8 {
		return
	}
	id := binary.BigEndian.Uint64(m.Data)
	r := record.Reader{B: m.Data[8:]}
	name := r.Str()
	if p := c.peers.get(name); p != nil {
		c.batchAcked(p, id)
	}
}

// heartbeat: name, boot, seq of the last announcement.
func (c *Cluster) beat() {
	c.table.mu.Lock()
	seq := c.table.seq
	c.table.mu.Unlock()
	b := record.AppendString(nil, c.cfg.Node)
	b = record.AppendString(b, c.boot)
	b = record.AppendUvarint(b, seq)
	_ = c.nc.Publish(c.pfx+"hb", b)
}

func (c *Cluster) onHeartbeat(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	name, boot, seq := r.Str(), r.Str(), r.Uvarint()
	if r.Err != nil || name == c.cfg.Node {
		return
	}
	p := c.heard(name, boot)
	if p == nil {
		return
	}
	p.mu.Lock()
	missed := !p.syncing && seq > p.seq
	if missed {
		p.syncing = true
	}
	p.mu.Unlock()
	if missed {
		c.spawn(func() { c.sync(p) })
	}
}

// heartbeats beats every third of NodeTimeout, and removes the nodes
// unheard of for NodeTimeout.
func (c *Cluster) heartbeats() {
	every := c.cfg.NodeTimeout / 3
	t := time.NewTicker(every)
	defer t.Stop()
	c.beat()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.beat()
			for _, p := range c.peers.live() {
				p.mu.Lock()
				late := now.Sub(p.lastSeen) > c.cfg.NodeTimeout
				p.mu.Unlock()
				if late {
					c.removePeer(p, unheardWhy+" for "+c.cfg.NodeTimeout.String())
				}
			}
			c.forgetAcks(nil, now)
			c.checkGhosts(now)
			// Off this goroutine: raising the replicas waits for them to
			// catch up, and heartbeats must not wait.
			for _, kb := range c.buckets() {
				if kb.scaling.CompareAndSwap(false, true) {
					if !c.spawn(func() {
						defer kb.scaling.Store(false)
						kb.scale(c)
					}) {
						kb.scaling.Store(false)
					}
				}
			}
		}
	}
}

// hello waits to meet the other nodes before this one serves: every
// node named in Peers (a node that serves before it has met another could
// take a PUBLISH without knowing of the other's subscriptions), or, when
// none is named or some stay silent, those heard within the wait; then
// every met node's table.
func (c *Cluster) hello() {
	want := len(c.others)
	start := time.Now()
	// A configured peer that is up is met within a route dial (NATS
	// redials every second) and a heartbeat; one that stays silent is
	// down, and this node serves without it.
	deadline := start.Add(max(c.cfg.NodeTimeout, 3*time.Second))
	settle := start.Add(min(c.cfg.NodeTimeout/3, 500*time.Millisecond))
	c.beat()
	for {
		now := time.Now()
		live := c.peers.live()
		busy := false
		for _, p := range live {
			p.mu.Lock()
			busy = busy || p.syncing
			p.mu.Unlock()
		}
		met := len(live) >= want && (want > 0 || !now.Before(settle))
		switch {
		case met && !busy:
			return
		case now.After(deadline) && !busy:
			c.log.Warn("cluster: serving before meeting every configured peer", "met", len(live), "configured", want)
			return
		case now.After(deadline.Add(c.cfg.NodeTimeout)):
			c.log.Warn("cluster: serving before every node's subscriptions arrived")
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
