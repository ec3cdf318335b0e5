package broker

import (
	"hash/maphash"
	"iter"
)

// sessionTable maps a client id to its session. It is an open-addressing
// hash table (linear probing) of the sessions themselves, which a probe
// compares by ss.clientID, and a byte a slot for how far each lies from
// its home slot: 9 bytes a slot, 10 to 21 an entry, where a Go map holds
// a 16-byte string key and an 8-byte value per slot, about 56 bytes an
// idle connection. A Go map also never shrinks: after a storm of clients
// has gone its slots stay; this table gives them back.
//
// Robin Hood placement (an entry takes the slot of one nearer its home,
// so a miss stops early) was tried and lost: it halved the miss of a
// CONNECT's lookup in a table of 917,404 at 7/8 full, but its insert and
// delete move every entry to the end of the run, cache lines of slots
// written where linear probing writes one, and a new client's get, set and
// delete together took 1.2 µs to linear probing's 0.9 (a map's: 0.4).
// BenchmarkSessionTable's connect case measures that path.
//
// Deleting shifts the entries after the hole back into it (no tombstones),
// so entries move: the table must not change while all iterates (it
// panics if it does). all writes too (its count of walks), so even a walk
// takes the lock exclusively: Server.mu guards the Server's. The zero
// value is an empty table.
type sessionTable struct {
	slots []*session // a power of two of them, nil where empty; nil before the first set
	// dist[i] is how far slots[i] lies from its home slot, or
	// sessionTableFar when that far or farther. Reading a session in a
	// slot and its client id is a cache miss or two in a large table; a
	// probe does it only in a slot whose distance says it has the same
	// home, and deleting moves entries without hashing their client ids.
	// Without it, a miss in a million sessions took ten times a map's.
	dist    []uint8
	n       int
	seed    maphash.Seed
	walking int // the iterations under way, which a change would derail
}

const (
	sessionTableMin = 8
	sessionTableFar = 255
	// The table grows past 7/8 full and shrinks below 1/8, to half full
	// or less each time, so that neither follows the other at once. Each
	// empty slot costs an idle connection 9 bytes.
	sessionTableGrowNum, sessionTableGrowDen = 7, 8
	sessionTableShrinkDen                    = 8
)

func (t *sessionTable) len() int { return t.n }

// get returns the session of clientID, or nil.
func (t *sessionTable) get(clientID string) *session {
	if t.n == 0 {
		return nil
	}
	i, _ := t.probe(clientID)
	return t.slots[i]
}

// probe returns the slot of clientID's session, or else the empty slot
// where it would go, and that slot's distance from clientID's home. The
// table has slots.
func (t *sessionTable) probe(clientID string) (i, d int) {
	mask := len(t.slots) - 1
	for i = t.home(clientID, mask); ; i = (i + 1) & mask {
		ss := t.slots[i]
		if ss == nil || int(t.dist[i]) == min(d, sessionTableFar) && ss.clientID == clientID {
			return i, d
		}
		d++
	}
}

func (t *sessionTable) home(clientID string, mask int) int {
	return int(maphash.String(t.seed, clientID)) & mask
}

// set makes ss the session of ss.clientID, in place of any other.
func (t *sessionTable) set(ss *session) {
	t.mustNotWalk()
	if t.slots == nil {
		t.resize(0)
	}
	i, d := t.probe(ss.clientID)
	if t.slots[i] != nil {
		t.slots[i] = ss
		return
	}
	t.n++
	if t.n*sessionTableGrowDen > len(t.slots)*sessionTableGrowNum {
		t.resize(t.n)
		t.insert(ss)
		return
	}
	t.put(i, d, ss)
}

func (t *sessionTable) put(i, d int, ss *session) {
	t.slots[i], t.dist[i] = ss, uint8(min(d, sessionTableFar))
}

// insert puts ss, whose client id is not in the table, in the first free
// slot from its home on.
func (t *sessionTable) insert(ss *session) {
	mask := len(t.slots) - 1
	i, d := t.home(ss.clientID, mask), 0
	for t.slots[i] != nil {
		i, d = (i+1)&mask, d+1
	}
	t.put(i, d, ss)
}

// delete removes the session of clientID, if any.
func (t *sessionTable) delete(clientID string) {
	t.mustNotWalk()
	if t.n == 0 {
		return
	}
	if i, _ := t.probe(clientID); t.slots[i] != nil {
		t.removeAt(i)
	}
}

// deleteIf removes ss if it is the session of its client id: a session
// that another took the place of leaves that one be.
func (t *sessionTable) deleteIf(ss *session) {
	t.mustNotWalk()
	if t.n == 0 {
		return
	}
	if i, _ := t.probe(ss.clientID); t.slots[i] == ss {
		t.removeAt(i)
	}
}

func (t *sessionTable) removeAt(i int) {
	// Backward shift: the entries after i in its run that would be found
	// from i or before move up into the hole, so that no probe meets an
	// empty slot before its entry.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		d := int(t.dist[j])
		if d == sessionTableFar {
			d = (j - t.home(t.slots[j].clientID, mask)) & mask
		}
		if gap := (j - i) & mask; d >= gap {
			t.put(i, d-gap, t.slots[j])
			i = j
		}
	}
	t.slots[i], t.dist[i] = nil, 0
	t.n--
	if len(t.slots) > sessionTableMin && t.n*sessionTableShrinkDen < len(t.slots) {
		t.resize(t.n)
	}
}

// resize moves the entries to a table at most half full with n of them.
func (t *sessionTable) resize(n int) {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
	}
	size := sessionTableMin
	for size < 2*n {
		size *= 2
	}
	old := t.slots
	t.slots, t.dist = make([]*session, size), make([]uint8, size)
	for _, ss := range old {
		if ss != nil {
			t.insert(ss)
		}
	}
}

// all yields every session once, in no order. The loop's body must not
// change the table: collect what to change, and change it after.
func (t *sessionTable) all() iter.Seq[*session] {
	return func(yield func(*session) bool) {
		t.walking++
		defer func() { t.walking-- }()
		for _, ss := range t.slots {
			if ss != nil && !yield(ss) {
				return
			}
		}
	}
}

func (t *sessionTable) mustNotWalk() {
	if t.walking > 0 {
		panic("broker: session table changed while iterated")
	}
}
