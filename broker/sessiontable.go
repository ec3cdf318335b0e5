package broker

import (
	"hash/maphash"
	"iter"
)

// sessionTable maps a client id to its session. It is an open-addressing
// hash table (linear probing) of the sessions themselves, which a probe
// compares by ss.clientID: 8 bytes a slot, 9 to 18 an entry, where a Go map
// holds a 16-byte string key and an 8-byte value per slot, about 56 bytes an
// idle connection. A Go map also never shrinks: after a storm of clients
// has gone its slots stay; this table gives them back.
//
// Deleting shifts the entries after the hole back into it (no tombstones),
// so entries move: the table must not change while all iterates (it
// panics if it does). all writes too (its count of walks), so even a walk
// takes the lock exclusively: Server.mu guards the Server's. The zero
// value is an empty table.
type sessionTable struct {
	slots []*session // a power of two of them, nil where empty; nil before the first set
	n     int
	seed  maphash.Seed
	// walking counts the iterations under way, which a change would
	// derail.
	walking int
}

const (
	sessionTableMin = 8
	// The table grows past 7/8 full and shrinks below 1/8, to half full
	// or less each time, so that neither follows the other at once. Each
	// empty slot costs an idle connection 8 bytes; each probe reads the
	// session it passes and its client id, so near 7/8 full a miss in a
	// million sessions takes about ten times a map's
	// (BenchmarkSessionTable).
	sessionTableGrowNum, sessionTableGrowDen = 7, 8
	sessionTableShrinkDen                    = 8
)

func (t *sessionTable) len() int { return t.n }

// get returns the session of clientID, or nil.
func (t *sessionTable) get(clientID string) *session {
	if i := t.find(clientID); i >= 0 {
		return t.slots[i]
	}
	return nil
}

// find returns the slot of clientID's session, or -1.
func (t *sessionTable) find(clientID string) int {
	if t.n == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	for i := t.home(clientID, mask); ; i = (i + 1) & mask {
		ss := t.slots[i]
		if ss == nil {
			return -1
		}
		if ss.clientID == clientID {
			return i
		}
	}
}

func (t *sessionTable) home(clientID string, mask int) int {
	return int(maphash.String(t.seed, clientID)) & mask
}

// set makes ss the session of ss.clientID, in place of any other.
func (t *sessionTable) set(ss *session) {
	t.mustNotWalk()
	if i := t.find(ss.clientID); i >= 0 {
		t.slots[i] = ss
		return
	}
	if (t.n+1)*sessionTableGrowDen > len(t.slots)*sessionTableGrowNum {
		t.resize(t.n + 1)
	}
	t.insert(ss)
	t.n++
}

// insert puts ss, whose client id is not in the table, in the first free
// slot from its home on.
func (t *sessionTable) insert(ss *session) {
	mask := len(t.slots) - 1
	i := t.home(ss.clientID, mask)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = ss
}

// delete removes the session of clientID, if any.
func (t *sessionTable) delete(clientID string) {
	t.mustNotWalk()
	i := t.find(clientID)
	if i < 0 {
		return
	}
	// Backward shift: the entries after i in its run that would be found
	// from i or before move up into the hole, so that no probe meets an
	// empty slot before its entry.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		if home := t.home(t.slots[j].clientID, mask); (j-home)&mask >= (j-i)&mask {
			t.slots[i], i = t.slots[j], j
		}
	}
	t.slots[i] = nil
	t.n--
	if len(t.slots) > sessionTableMin && t.n*sessionTableShrinkDen < len(t.slots) {
		t.resize(t.n)
	}
}

// deleteIf removes ss if it is the session of its client id: a session
// that another took the place of leaves that one be.
func (t *sessionTable) deleteIf(ss *session) {
	if t.get(ss.clientID) == ss {
		t.delete(ss.clientID)
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
	t.slots = make([]*session, size)
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
