package topic

import (
	"strings"
	"sync/atomic"
	"unsafe"
)

// Index is the subscription index: it maps topic filters to subscribers and
// finds every subscriber whose filter matches a topic name.
//
// A subscriber is identified by a key K (for example a session) and carries a
// value V (for example the session and its subscription options). A key holds
// at most one value per filter; the same key on two overlapping filters is
// two subscriptions, and Match returns both.
//
// Filters are stored as given: the caller validates them (ValidateFilter) and
// strips a $share/{group}/ prefix before adding.
//
// An Index is safe for concurrent use. Match takes a read lock, so matches run
// in parallel with each other; Add and Remove take the write lock. The lock
// is sharded for readers (see readLock), and Match finds its shard from dst:
// a caller that reuses its dst slice across calls, as it should to avoid
// allocating, also keeps to one shard. The zero value is not ready: use
// NewIndex.
type Index[K comparable, V any] struct {
	mu   readLock
	root node[subs[K, V]]
	// n counts (filter, key) subscriptions. It changes under the write lock
	// but is read without a lock, so that a Len on every publish costs no
	// shared write.
	n atomic.Int64
}

// NewIndex returns an empty Index.
func NewIndex[K comparable, V any]() *Index[K, V] {
	return &Index[K, V]{mu: newReadLock()}
}

// Add sets the value of key's subscription to filter. If key was already
// subscribed to exactly this filter its value is replaced and Add reports
// true.
func (ix *Index[K, V]) Add(filter string, key K, v V) (replaced bool) {
	ix.mu.lock()
	defer ix.mu.unlock()
	n := &ix.root
	for start := 0; start <= len(filter); {
		end := nextLevel(filter, start)
		level := filter[start:end]
		c := n.child(level)
		if c == nil {
			// Copied so the tree does not pin the caller's string, which may
			// be a slice of a larger buffer.
			c = n.add(strings.Clone(level))
		}
		n, start = c, end+1
	}
	replaced = n.p.set(key, v)
	if !replaced {
		ix.n.Add(1)
	}
	return replaced
}

// Remove deletes key's subscription to filter and reports whether there was
// one. Nodes left with no subscribers and no children are freed.
func (ix *Index[K, V]) Remove(filter string, key K) (removed bool) {
	ix.mu.lock()
	defer ix.mu.unlock()
	removed = removeSub(&ix.root, filter, 0, key)
	if removed {
		ix.n.Add(-1)
	}
	return removed
}

// removeSub removes key from the filter whose levels from start on lead down
// from n, and prunes the children it leaves empty on the way back up.
func removeSub[K comparable, V any](n *node[subs[K, V]], filter string, start int, key K) bool {
	if start > len(filter) {
		return n.p.remove(key)
	}
	end := nextLevel(filter, start)
	level := filter[start:end]
	c := n.child(level)
	if c == nil || !removeSub(c, filter, end+1, key) {
		return false
	}
	if c.leaf() && len(c.p.ents) == 0 {
		n.remove(level)
	}
	return true
}

// Len returns the number of (filter, key) subscriptions.
func (ix *Index[K, V]) Len() int {
	return int(ix.n.Load())
}

// Match appends to dst the value of every subscription whose filter matches
// the topic name, in no particular order, and returns the extended slice. A
// key subscribed through several matching filters appears once for each; the
// caller deduplicates. Match allocates nothing beyond growing dst, so a
// caller that reuses dst allocates nothing at all.
//
// '+' matches exactly one level, which may be empty; '#' matches any number
// of levels, including none, so "a/#" matches "a"; empty levels are levels
// ("a//b" has three). [MQTT-4.7.1-2] [MQTT-4.7.1-3] (v3.1.1 numbering)
// A filter starting with '+' or '#' never matches a name starting with '$'.
// [MQTT-4.7.2-1]
func (ix *Index[K, V]) Match(name string, dst []V) []V {
	shard := ix.mu.rlock(uintptr(unsafe.Pointer(unsafe.SliceData(dst))))
	dst = matchName(&ix.root, name, 0, strings.HasPrefix(name, "$"), dst)
	shard.RUnlock()
	return dst
}

// matchName appends the subscribers of every filter below n that matches
// name from the level starting at start. Literal levels are followed in a
// loop; only a '+' branch recurses. noWild hides wildcard children, for the
// root when the name starts with '$'.
func matchName[K comparable, V any](n *node[subs[K, V]], name string, start int, noWild bool, dst []V) []V {
	for {
		if start > len(name) {
			// Every level is consumed: the filters ending here match, and so
			// does "…/#", as '#' also matches its parent level.
			dst = n.p.appendTo(dst)
			if h := n.child("#"); h != nil {
				dst = h.p.appendTo(dst)
			}
			return dst
		}
		end := nextLevel(name, start)
		level := name[start:end]
		var next *node[subs[K, V]]
		for i := range n.kids {
			e := &n.kids[i]
			switch {
			case e.level == level:
				next = e.n
			case noWild:
			case e.level == "#":
				dst = e.n.p.appendTo(dst)
			case e.level == "+":
				dst = matchName(e.n, name, end+1, false, dst)
			}
		}
		if next == nil && n.wide != nil {
			next = n.wide.m[level]
		}
		if next == nil {
			return dst
		}
		n, start, noWild = next, end+1, false
	}
}
