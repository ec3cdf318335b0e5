package broker

import (
	"sync"
	"time"
)

// connSet holds every open connection, for the sweep (server.go: CONNECT
// and keep-alive deadlines, incomplete packets, stalled windows) and for
// shutdown.
//
// The sweep runs every sweepInterval. It used to look at every connection
// each time, which was nearly all the CPU an idle broker spent: 12 ms a
// second for 20,000 idle clients, against Mosquitto's 1 (docs/BENCHMARKS.md,
// "Idle CPU"). So the connections sit on a wheel of sweeps instead, each
// in the slot of the sweep that should next look at it: at its deadline,
// or ahead sweeps from now if that is sooner. A sweep looks only at its
// own slots, and files each connection it does not close in the slot of
// its next look.
//
// The deadlines move without the set's knowledge (every packet read pushes
// the keep-alive one later), so a connection may be looked at before its
// deadline, and is then filed again; a deadline that moves earlier, or a
// window that fills, is seen at the next look, no more than ahead sweeps
// away. The one deadline that moves earlier by design, the keep alive
// that replaces the CONNECT timeout, files the connection again (refile).
//
// A slot is a slice, each connection knowing its place in it
// (conn.wheelPos): a map entry cost an idle connection about 31 bytes, the
// slice 8.
type connSet struct {
	shards [16]connShard
	// ahead is how many sweeps at most a connection goes unseen: set by
	// New (wheelAhead), read-only after.
	ahead int64
}

type connShard struct {
	mu    sync.Mutex
	wheel [wheelSlots][]*conn
	// done is the last sweep (sweepTick) that looked at this shard's
	// slots: a connection is filed after it.
	done int64
}

// wheelSlots is how many sweeps ahead a connection can be filed: 16 s.
const wheelSlots = 64

// wheelAhead is connSet.ahead: a quarter of the incomplete-packet and
// stall timeouts (those deadlines are set or reached without telling the
// set), at most 15 s, at least one sweep.
func wheelAhead(incomplete, stall time.Duration) int64 {
	ahead := time.Duration(wheelSlots-4) * sweepInterval
	if incomplete > 0 {
		ahead = min(ahead, incomplete/4)
	}
	if stall > 0 {
		ahead = min(ahead, stall/4)
	}
	return max(1, int64(ahead/sweepInterval))
}

// noSlot is conn.wheelPos's slot for a connection in none.
const noSlot = 0xff

func (c *conn) wheelAt() (slot, idx int) { return int(c.wheelPos >> 24), int(c.wheelPos & (1<<24 - 1)) }

func (c *conn) setWheel(slot, idx int) { c.wheelPos = uint32(slot)<<24 | uint32(idx) }

// sweepTick numbers the sweep interval that contains t (Unix nanoseconds).
func sweepTick(t int64) int64 { return t / int64(sweepInterval) }

func (cs *connSet) shard(c *conn) *connShard {
	// Pointer bits are as good a spread as any for a set of live objects.
	return &cs.shards[(uintptrOf(c)>>6)%uintptr(len(cs.shards))]
}

// add files a new connection, whose CONNECT deadline is set.
func (cs *connSet) add(c *conn) {
	now := time.Now().UnixNano()
	sh := cs.shard(c)
	sh.mu.Lock()
	cs.fileLocked(sh, c, cs.nextLook(c, now))
	sh.mu.Unlock()
}

// refile files c again after its deadline moved earlier, unless its look
// comes before the new deadline anyway: one filed ahead sweeps from at
// most now does, when the deadline is further.
func (cs *connSet) refile(c *conn) {
	now := time.Now().UnixNano()
	if d := c.deadline.Load(); d == 0 || sweepTick(d) >= sweepTick(now)+cs.ahead {
		return
	}
	sh := cs.shard(c)
	sh.mu.Lock()
	if sh.unfileLocked(c) {
		cs.fileLocked(sh, c, cs.nextLook(c, now))
	}
	sh.mu.Unlock()
}

// remove takes c out of the set, once. A connection not in it is left
// alone.
func (cs *connSet) remove(c *conn) {
	sh := cs.shard(c)
	sh.mu.Lock()
	sh.unfileLocked(c)
	sh.mu.Unlock()
}

// nextLook is the sweep that should next look at c: the one at its
// earliest deadline, or ahead sweeps from now.
func (cs *connSet) nextLook(c *conn, now int64) int64 {
	at := sweepTick(now) + cs.ahead
	if d := c.deadline.Load(); d != 0 {
		at = min(at, sweepTick(d))
	}
	if p := c.partial.Load(); p != 0 {
		at = min(at, sweepTick(p))
	}
	return at
}

// fileLocked puts c in the slot of sweep tick, or of the first sweep
// this shard has yet to run if that is later.
func (cs *connSet) fileLocked(sh *connShard, c *conn, tick int64) {
	s := int(max(tick, sh.done+1) % wheelSlots)
	c.setWheel(s, len(sh.wheel[s]))
	sh.wheel[s] = append(sh.wheel[s], c)
}

// unfileLocked takes c out of its slot, the last one of the slot taking
// its place, and reports whether it was in one.
func (sh *connShard) unfileLocked(c *conn) bool {
	s, i := c.wheelAt()
	if s >= wheelSlots || i >= len(sh.wheel[s]) || sh.wheel[s][i] != c {
		return false
	}
	slot := sh.wheel[s]
	last := len(slot) - 1
	slot[i] = slot[last]
	slot[i].setWheel(s, i)
	slot[last] = nil
	slot = slot[:last]
	c.setWheel(noSlot, 0)
	// A storm's worth of room is given back once most of it is empty.
	if cap(slot) > 1024 && len(slot) < cap(slot)/4 {
		slot = append(make([]*conn, 0, 2*len(slot)), slot...)
	}
	sh.wheel[s] = slot
	return true
}

// sweep looks at the connections filed for the sweeps up to now's, and
// returns those whose deadline is before now and, if withFull, those whose
// session's in-flight window is full (stall.go). Each is filed again for
// its next look: one that is due or full, at the next sweep, so that it is
// seen again while it stays open or full.
func (cs *connSet) sweep(now int64, withFull bool) (due, full []*conn) {
	tick := sweepTick(now)
	var dests []uint8 // each connection's next slot, for the slot at hand
	for i := range cs.shards {
		sh := &cs.shards[i]
		sh.mu.Lock()
		// After a pause longer than the wheel, every slot once.
		from := max(sh.done+1, tick-wheelSlots+1)
		sh.done = max(sh.done, tick) // a clock set back waits for it
		for t := from; t <= tick; t++ {
			s := int(t % wheelSlots)
			slot := sh.wheel[s]
			sh.wheel[s] = nil // filing may come back to this slot
			dests = dests[:0]
			together := true
			for _, c := range slot {
				d := int(max(cs.look(c, now, tick, withFull, &due, &full), sh.done+1) % wheelSlots)
				together = together && (len(dests) == 0 || d == int(dests[0]))
				dests = append(dests, uint8(d))
			}
			spare := slot // the array to keep for slot s, emptied
			switch {
			case len(slot) == 0:
			case together:
				// Idle connections filed together go on together, ahead
				// sweeps on: the smaller of the two arrays is copied onto
				// the end of the larger, and the wheel's slots hold little
				// more room than the connections need. (Appended one by
				// one, the arrays of a storm's slots grew and were kept,
				// measured as up to 30 bytes more per idle connection.)
				spare = sh.merge(int(dests[0]), slot)
			default:
				for i, c := range slot {
					c.setWheel(int(dests[i]), len(sh.wheel[dests[i]]))
					sh.wheel[dests[i]] = append(sh.wheel[dests[i]], c)
				}
			}
			if sh.wheel[s] == nil && spare != nil && cap(spare) <= 4096 {
				clear(spare)
				sh.wheel[s] = spare[:0]
			}
		}
		sh.mu.Unlock()
	}
	return due, full
}

// look reports c to due or full as the sweep at tick (time now) finds
// it, and returns the tick of its next look: the next sweep for one due
// or full, so that it is seen again while it stays so.
func (cs *connSet) look(c *conn, now, tick int64, withFull bool, due, full *[]*conn) int64 {
	next := cs.nextLook(c, now)
	if c.isClosing() {
		return next
	}
	if withFull && c.sessFull() {
		*full = append(*full, c)
		next = tick + 1
	}
	if c.flags.Load()&flagHeldBack == 0 && c.overdue(now) {
		*due = append(*due, c)
		next = tick + 1
	}
	return next
}

// merge moves every connection of slot to slot d, the smaller of the two
// arrays copied onto the end of the larger, and returns the array left
// over (nil for none).
func (sh *connShard) merge(d int, slot []*conn) (spare []*conn) {
	dst := sh.wheel[d]
	if len(dst) > len(slot) {
		for i, c := range slot {
			c.setWheel(d, len(dst)+i)
		}
		sh.wheel[d] = append(dst, slot...)
		return slot
	}
	for i, c := range slot {
		c.setWheel(d, i)
	}
	for i, c := range dst {
		c.setWheel(d, len(slot)+i)
	}
	sh.wheel[d] = append(slot, dst...)
	return dst
}

// sessFull reports whether c's session has a full in-flight window.
func (c *conn) sessFull() bool {
	ss := c.sess.Load()
	return ss != nil && ss.load.Load()&loadFull != 0
}

// overdue reports whether c's CONNECT or keep-alive deadline, or its
// incomplete packet's, is before now. A held-back client's packets wait
// unread: that is not its fault, and the caller does not ask.
func (c *conn) overdue(now int64) bool {
	if d := c.deadline.Load(); d != 0 && d < now {
		return true
	}
	p := c.partial.Load()
	return p != 0 && p < now
}

// each calls fn, outside the shard locks, for every open connection.
func (cs *connSet) each(fn func(*conn)) {
	var all []*conn
	for i := range cs.shards {
		sh := &cs.shards[i]
		sh.mu.Lock()
		for _, slot := range sh.wheel {
			all = append(all, slot...)
		}
		sh.mu.Unlock()
	}
	for _, c := range all {
		fn(c)
	}
}
