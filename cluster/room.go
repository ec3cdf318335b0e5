package cluster

import (
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrelmq/petrel/internal/record"
)

// Room for shared groups across nodes. The publishing node picks, in turn,
// a node with members of a group; that node picks its member with the most
// room. When none of a node's members has room (broker's Crowded), the
// node says so to the nodes sending it the group's messages, and says so
// again once one has: meanwhile they prefer other nodes' members. Without
// this, a slow member took its turn of the messages and each held its
// publisher's acknowledgement until it drained.

const (
	// roomCheckEvery is how often a node looks whether the groups it said
	// were crowded have room again.
	roomCheckEvery = 20 * time.Millisecond
	// roomResay is how often a node says again which groups are still
	// crowded, and crowdedHolds how long a notice holds without that: a
	// notice lost between nodes (NATS delivers at most once) costs at most
	// that long.
	roomResay    = 500 * time.Millisecond
	crowdedHolds = 3 * roomResay
)

// crowdedFor reports whether p said, recently enough, that its members of
// group key have no room.
func (p *peer) crowdedFor(key string) bool {
	m := p.crowded.Load()
	if m == nil {
		return false
	}
	until, ok := (*m)[key]
	return ok && time.Now().UnixNano() < until
}

// setCrowded records p's notice about its members of the groups in keys.
func (p *peer) setCrowded(keys []string, crowded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now().UnixNano()
	next := make(map[string]int64)
	if m := p.crowded.Load(); m != nil {
		for k, until := range *m {
			if until > now {
				next[k] = until
			}
		}
	}
	for _, k := range keys {
		if crowded {
			next[k] = now + int64(crowdedHolds)
		} else {
			delete(next, k)
		}
	}
	p.crowded.Store(&next)
}

// noteRoom follows a batch from node from that had messages for the shared
// groups in keys: those this node's members have no room for are said to be
// crowded, once.
func (c *Cluster) noteRoom(from string, keys []string) {
	if len(keys) == 0 {
		return
	}
	crowded := c.node.Crowded(keys, nil)
	if len(crowded) == 0 {
		return
	}
	c.roomMu.Lock()
	said := c.saidCrowded[from]
	if said == nil {
		said = make(map[string]bool)
		c.saidCrowded[from] = said
	}
	var news []string
	for _, k := range crowded {
		if !said[k] {
			said[k] = true
			news = append(news, k)
		}
	}
	c.roomMu.Unlock()
	c.sayRoom(from, news, true)
}

// checkRoom, every roomCheckEvery, tells each node the groups said to be
// crowded that have room again, and every roomResay those that still
// have none.
func (c *Cluster) checkRoom() {
	t := time.NewTicker(roomCheckEvery)
	defer t.Stop()
	lastResay := time.Now()
	for {
		var now time.Time
		select {
		case <-c.ctx.Done():
			return
		case now = <-t.C:
		}
		resay := now.Sub(lastResay) >= roomResay
		if resay {
			lastResay = now
		}
		c.roomMu.Lock()
		type notice struct {
			to      string
			keys    []string
			crowded bool
		}
		var notices []notice
		for to, said := range c.saidCrowded {
			if c.peers.get(to) == nil {
				delete(c.saidCrowded, to) // gone: a new run starts afresh
				continue
			}
			still := c.node.Crowded(slices.Collect(maps.Keys(said)), nil)
			var room []string
			for k := range said {
				if !slices.Contains(still, k) {
					room = append(room, k)
					delete(said, k)
				}
			}
			if len(room) > 0 {
				notices = append(notices, notice{to, room, false})
			}
			if resay && len(still) > 0 {
				notices = append(notices, notice{to, still, true})
			}
		}
		c.roomMu.Unlock()
		for _, n := range notices {
			c.sayRoom(n.to, n.keys, n.crowded)
		}
	}
}

// sayRoom sends node to whether this node's members of the groups in keys
// are crowded.
func (c *Cluster) sayRoom(to string, keys []string, crowded bool) {
	if len(keys) == 0 {
		return
	}
	b := record.AppendString(nil, c.cfg.Node)
	var flag byte
	if crowded {
		flag = 1
	}
	b = append(b, flag)
	b = record.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = record.AppendString(b, k)
	}
	_ = c.nc.Publish(c.pfx+"room."+to, b)
}

func (c *Cluster) onRoom(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	from, crowded, n := r.Str(), r.Byte() == 1, r.Uvarint()
	if n > uint64(len(r.B)) {
		return
	}
	keys := make([]string, 0, n)
	for i := uint64(0); i < n && r.Err == nil; i++ {
		keys = append(keys, r.Str())
	}
	if r.Err != nil {
		return
	}
	if p := c.peers.get(from); p != nil {
		p.setCrowded(keys, crowded)
	}
}
