package topic

import (
	"strings"
	"sync"
)

// Retained holds the retained message of each topic name and finds those a
// subscription's filter matches. Names are stored in a trie of levels, so an
// exact filter is a walk down one path and a wildcard visits only the
// subtrees it can match.
//
// A Retained is safe for concurrent use. Get and Match take a read lock, Set
// and Delete the write lock. The zero value is not ready: use NewRetained.
type Retained[V any] struct {
	mu   sync.RWMutex
	root node[retainedSlot[V]]
	n    int
}

// retainedSlot is what a trie node holds for the name ending at it.
type retainedSlot[V any] struct {
	// name is the whole topic name, kept to hand to Match's callback without
	// building it. The levels of the nodes created with it are cut from it,
	// so a name is stored once, however many new levels it brings.
	name string
	val  V
	ok   bool
}

// NewRetained returns an empty Retained.
func NewRetained[V any]() *Retained[V] {
	return &Retained[V]{}
}

// Set stores v as the retained message for the topic name, replacing any.
func (r *Retained[V]) Set(name string, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.find(name); n != nil && n.p.ok {
		n.p.val = v
		return
	}
	stored := strings.Clone(name)
	n := &r.root
	for start := 0; start <= len(stored); {
		end := nextLevel(stored, start)
		c := n.child(stored[start:end])
		if c == nil {
			c = n.add(stored[start:end])
		}
		n, start = c, end+1
	}
	n.p = retainedSlot[V]{name: stored, val: v, ok: true}
	r.n++
}

// Delete removes the retained message for name and reports whether there
// was one. Nodes left empty are freed.
func (r *Retained[V]) Delete(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !deleteRetained(&r.root, name, 0) {
		return false
	}
	r.n--
	return true
}

func deleteRetained[V any](n *node[retainedSlot[V]], name string, start int) bool {
	if start > len(name) {
		if !n.p.ok {
			return false
		}
		n.p = retainedSlot[V]{}
		return true
	}
	end := nextLevel(name, start)
	level := name[start:end]
	c := n.child(level)
	if c == nil || !deleteRetained(c, name, end+1) {
		return false
	}
	if c.leaf() && !c.p.ok {
		n.remove(level)
	}
	return true
}

// Get returns the retained message for name.
func (r *Retained[V]) Get(name string) (V, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.find(name); n != nil && n.p.ok {
		return n.p.val, true
	}
	var zero V
	return zero, false
}

// Len returns the number of retained messages.
func (r *Retained[V]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// find returns the node for name, or nil. The caller holds the lock.
func (r *Retained[V]) find(name string) *node[retainedSlot[V]] {
	n := &r.root
	for start := 0; start <= len(name) && n != nil; {
		end := nextLevel(name, start)
		n, start = n.child(name[start:end]), end+1
	}
	return n
}

// Match calls fn with every retained name the filter matches and its
// message, in no particular order, until fn returns false. Matching follows
// Index.Match: '+' is one level, '#' is any number including none, and a
// filter starting with a wildcard skips names starting with '$'.
// [MQTT-4.7.2-1] The literal levels of a filter are looked up, not scanned,
// so an exact filter costs one walk down its path.
//
// fn runs under the read lock: it must not call Set or Delete on r, and
// holding it up delays writers.
func (r *Retained[V]) Match(filter string, fn func(name string, v V) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	matchFilter(&r.root, filter, 0, true, fn)
}

// matchFilter visits the names below n that match filter from the level
// starting at start, and reports false once fn has asked to stop. atRoot is
// true while n is the root, where wildcards skip '$' names.
func matchFilter[V any](n *node[retainedSlot[V]], filter string, start int, atRoot bool, fn func(string, V) bool) bool {
	for {
		if start > len(filter) {
			return !n.p.ok || fn(n.p.name, n.p.val)
		}
		end := nextLevel(filter, start)
		switch level := filter[start:end]; level {
		case "#":
			return visitAll(n, atRoot, fn)
		case "+":
			return n.each(func(l string, c *node[retainedSlot[V]]) bool {
				return (atRoot && strings.HasPrefix(l, "$")) || matchFilter(c, filter, end+1, false, fn)
			})
		default:
			if n = n.child(level); n == nil {
				return true
			}
		}
		start, atRoot = end+1, false
	}
}

// visitAll visits n and every name below it: what '#' matches, including its
// parent level. skipDollar leaves out children whose level starts with '$'.
func visitAll[V any](n *node[retainedSlot[V]], skipDollar bool, fn func(string, V) bool) bool {
	if n.p.ok && !fn(n.p.name, n.p.val) {
		return false
	}
	return n.each(func(l string, c *node[retainedSlot[V]]) bool {
		return (skipDollar && strings.HasPrefix(l, "$")) || visitAll(c, false, fn)
	})
}
