package topic

import (
	"hash/maphash"
	"math/bits"
)

// kids are the children of a Retained node, keyed by the first level of
// their labels. Few are scanned; many are an open-addressing hash table
// (linear probing) of the children themselves, which a probe compares by
// label: 8 bytes a slot, where a Go map has a string key and a value per
// entry, and a per-node header (about 250 bytes even with one entry).
//
// A node points to its kids, so that the many that have none take no room
// for them; one slice does both, so that kids is 24 bytes: len(s) is always the
// number of children, and cap(s) tells the two apart. While cap(s) is at
// most narrowMax, s holds the children; past it, s[:cap(s)] is the table,
// and its empty slots are nil. Iteration (slots) goes over s[:cap(s)] in
// both cases and skips nil. The methods that read take a nil *kids as no
// children.
type kids[T any] struct {
	s []*rnode[T]
}

const (
	tableMin = 2 * narrowMax // the smallest table
)

func (k *kids[T]) len() int {
	if k == nil {
		return 0
	}
	return len(k.s)
}

// wide reports whether the children are in a table.
func (k *kids[T]) wide() bool { return k != nil && cap(k.s) > narrowMax }

// slots returns every slot, with nil for the empty ones.
func (k *kids[T]) slots() []*rnode[T] {
	if k == nil {
		return nil
	}
	return k.s[:cap(k.s)]
}

// at and set read and write the slot find returned.
func (k *kids[T]) at(i int) *rnode[T]     { return k.s[:cap(k.s)][i] }
func (k *kids[T]) set(i int, c *rnode[T]) { k.s[:cap(k.s)][i] = c }

// only returns the one child of a node that has one.
func (k *kids[T]) only() *rnode[T] {
	for _, c := range k.slots() {
		if c != nil {
			return c
		}
	}
	return nil
}

// firstLevel returns the first level of a label.
func firstLevel(label string) string { return label[:nextLevel(label, 0)] }

// find returns the slot of the child whose first level is level, or -1.
func (k *kids[T]) find(seed maphash.Seed, level string) int {
	if k == nil {
		return -1
	}
	if !k.wide() {
		for i, c := range k.s {
			if firstLevel(c.label) == level {
				return i
			}
		}
		return -1
	}
	t := k.slots()
	mask := len(t) - 1
	for i := int(maphash.String(seed, level)) & mask; ; i = (i + 1) & mask {
		c := t[i]
		if c == nil {
			return -1
		}
		if firstLevel(c.label) == level {
			return i
		}
	}
}

// get returns the child whose first level is level, or nil.
func (k *kids[T]) get(seed maphash.Seed, level string) *rnode[T] {
	if i := k.find(seed, level); i >= 0 {
		return k.at(i)
	}
	return nil
}

// add adds c, whose first level no child has.
func (k *kids[T]) add(seed maphash.Seed, c *rnode[T]) {
	switch {
	case !k.wide() && len(k.s) < cap(k.s):
		k.s = append(k.s, c)
		return
	case !k.wide() && len(k.s) < narrowMax:
		s := make([]*rnode[T], len(k.s), min(max(2*cap(k.s), 1), narrowMax))
		copy(s, k.s)
		k.s = append(s, c)
		return
	case !k.wide() || (len(k.s)+1)*4 > cap(k.s)*3:
		k.rebuild(seed, len(k.s)+1)
	}
	k.s = k.s[:len(k.s)+1]
	k.insert(seed, c)
}

// insert puts c in the table's first free slot from its hash on. The
// caller has counted it in len(k.s).
func (k *kids[T]) insert(seed maphash.Seed, c *rnode[T]) {
	t := k.slots()
	mask := len(t) - 1
	i := int(maphash.String(seed, firstLevel(c.label))) & mask
	for t[i] != nil {
		i = (i + 1) & mask
	}
	t[i] = c
}

// rebuild moves the children to a table sized for n of them, or back to a
// slice when n is few.
func (k *kids[T]) rebuild(seed maphash.Seed, n int) {
	old := k.slots()
	count := len(k.s)
	if n <= narrowMax/2 {
		s := make([]*rnode[T], 0, n)
		for _, c := range old {
			if c != nil {
				s = append(s, c)
			}
		}
		k.s = s
		return
	}
	// At most half full once built: growing waits for three quarters,
	// shrinking for an eighth, so neither follows the other at once.
	size := max(tableMin, 1<<bits.Len(uint(2*n-1)))
	k.s = make([]*rnode[T], count, size)
	for _, c := range old {
		if c != nil {
			k.insert(seed, c)
		}
	}
}

// remove drops the child whose first level is level, if any.
func (k *kids[T]) remove(seed maphash.Seed, level string) {
	i := k.find(seed, level)
	if i < 0 {
		return
	}
	if !k.wide() {
		last := len(k.s) - 1
		k.s[i] = k.s[last]
		k.s[last] = nil
		k.s = k.s[:last]
		if last == 0 {
			k.s = nil
		}
		return
	}
	// Backward shift: the children after i in its run that would be
	// found from i or before move up into the hole, so that no probe
	// meets an empty slot before its child.
	t := k.slots()
	mask := len(t) - 1
	for j := (i + 1) & mask; t[j] != nil; j = (j + 1) & mask {
		home := int(maphash.String(seed, firstLevel(t[j].label))) & mask
		if (j-home)&mask >= (j-i)&mask {
			t[i], i = t[j], j
		}
	}
	t[i] = nil
	k.s = k.s[:len(k.s)-1]
	if n := len(k.s); n <= narrowMax/2 || (len(t) > tableMin && n*8 < len(t)) {
		k.rebuild(seed, n)
	}
}
