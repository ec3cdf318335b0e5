package topic

import (
	"hash/maphash"
	"strings"
	"sync"
)

// Retained holds the retained message of each topic name and finds those a
// subscription's filter matches. Names are stored in a trie of levels, so an
// exact filter is a walk down one path and a wildcard visits only the
// subtrees it can match.
//
// A broker may hold millions of retained messages, most of them on names
// that share all but their last levels with no other (dev/<id>/state), so
// the trie is built to cost little per name, beyond the message itself:
//   - A chain of levels that does not branch is one node, whose label holds
//     all of them ("<id>/state"): a node without a message has at least two
//     children. Matching still goes level by level (vnode).
//   - A node is 32 bytes, one of Go's size classes: its label, a pointer to
//     its children, nil when it has none (most nodes: names end there), and
//     a pointer to its message, nil when it has none.
//   - Children are a slice of pointers, found by the first level of their
//     labels: scanned while there are few, a hash table past that (kids.go),
//     with no per-entry key as a Go map would have.
//
// A Retained is safe for concurrent use. Get and Match take a read lock, Set
// and Delete the write lock. The zero value is not ready: use NewRetained.
type Retained[T any] struct {
	mu   sync.RWMutex
	root rnode[T] // its label is empty: it stands for no level
	n    int
	seed maphash.Seed // for the tables of wide nodes
}

// rnode is a node of Retained's trie: one or more levels.
type rnode[T any] struct {
	// label is the levels the node stands for, joined by '/': the first is
	// its parent's key for it, the others lead to no other node. It is the
	// node's own copy, never a slice of a name given to Set, which may be
	// part of a larger buffer.
	label string
	kids  *kids[T]
	// v is the message of the name that ends at the node's last level.
	v *T
}

// NewRetained returns an empty Retained.
func NewRetained[T any]() *Retained[T] {
	return &Retained[T]{seed: maphash.MakeSeed()}
}

// Set stores v, which must not be nil, as the retained message for the
// topic name, replacing any.
func (r *Retained[T]) Set(name string, v *T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, rest := &r.root, name
	for {
		first := rest[:nextLevel(rest, 0)]
		i := n.kids.find(r.seed, first)
		if i < 0 {
			n.add(r.seed, &rnode[T]{label: strings.Clone(rest), v: v})
			r.n++
			return
		}
		c := n.kids.at(i)
		k := commonLevels(c.label, rest)
		if k == len(c.label) {
			if k == len(rest) {
				if c.v == nil {
					r.n++
				}
				c.v = v
				return
			}
			n, rest = c, rest[k+1:]
			continue
		}
		// rest leaves c's label after its k-th byte: c is split there. The
		// upper half keeps c's first level, and so c's place in n.
		mid := &rnode[T]{label: strings.Clone(c.label[:k])}
		c.label = strings.Clone(c.label[k+1:])
		mid.add(r.seed, c)
		n.kids.set(i, mid)
		if k == len(rest) {
			mid.v = v
		} else {
			mid.add(r.seed, &rnode[T]{label: strings.Clone(rest[k+1:]), v: v})
		}
		r.n++
		return
	}
}

// commonLevels returns the length of the longest run of whole levels that
// a and b start with. Both start with the same first level.
func commonLevels(a, b string) int {
	j := 0
	for j < len(a) && j < len(b) && a[j] == b[j] {
		j++
	}
	if (j == len(a) || a[j] == '/') && (j == len(b) || b[j] == '/') {
		return j
	}
	return strings.LastIndexByte(a[:j], '/')
}

// Delete removes the retained message for name and reports whether there
// was one. Nodes left without a message and with fewer than two children
// are freed or merged with their child.
func (r *Retained[T]) Delete(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, rest := &r.root, name
	for {
		c := n.kids.get(r.seed, rest[:nextLevel(rest, 0)])
		if c == nil || !strings.HasPrefix(rest, c.label) {
			return false
		}
		if len(rest) == len(c.label) {
			if c.v == nil {
				return false
			}
			c.v = nil
			r.n--
			switch c.kids.len() {
			case 0:
				n.remove(r.seed, c.label[:nextLevel(c.label, 0)])
				if n != &r.root && n.v == nil && n.kids.len() == 1 {
					merge(n)
				}
			case 1:
				merge(c)
			}
			return true
		}
		if rest[len(c.label)] != '/' {
			return false
		}
		n, rest = c, rest[len(c.label)+1:]
	}
}

// add adds the child c, whose first level no child of n has.
func (n *rnode[T]) add(seed maphash.Seed, c *rnode[T]) {
	if n.kids == nil {
		n.kids = &kids[T]{}
	}
	n.kids.add(seed, c)
}

// remove drops the child whose first level is level, if any.
func (n *rnode[T]) remove(seed maphash.Seed, level string) {
	n.kids.remove(seed, level)
	if n.kids.len() == 0 {
		n.kids = nil
	}
}

// merge makes n, which has no message and one child, that child: their
// labels joined, the child's children and message. n keeps its first level,
// and so its place in its parent.
func merge[T any](n *rnode[T]) {
	c := n.kids.only()
	n.label = n.label + "/" + c.label
	n.kids, n.v = c.kids, c.v
}

// Get returns the retained message for name, or nil and false.
func (r *Retained[T]) Get(name string) (*T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, rest := &r.root, name
	for {
		c := n.kids.get(r.seed, rest[:nextLevel(rest, 0)])
		if c == nil || !strings.HasPrefix(rest, c.label) {
			return nil, false
		}
		if len(rest) == len(c.label) {
			return c.v, c.v != nil
		}
		if rest[len(c.label)] != '/' {
			return nil, false
		}
		n, rest = c, rest[len(c.label)+1:]
	}
}

// Len returns the number of retained messages.
func (r *Retained[T]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// vnode is a level of the trie as matching sees it: the levels of n.label
// up to end. Only the last level of a label is n itself; the ones before
// it have one child, the next level, and no message.
type vnode[T any] struct {
	n   *rnode[T]
	end int
}

// msg returns the message of the name ending at v, or nil.
func (v vnode[T]) msg() *T {
	if v.end < len(v.n.label) {
		return nil
	}
	return v.n.v
}

// child returns the child reached by level, or false.
func (v vnode[T]) child(seed maphash.Seed, level string) (vnode[T], bool) {
	if v.end < len(v.n.label) {
		next := nextLevel(v.n.label, v.end+1)
		return vnode[T]{v.n, next}, v.n.label[v.end+1:next] == level
	}
	c := v.n.kids.get(seed, level)
	if c == nil {
		return vnode[T]{}, false
	}
	return vnode[T]{c, len(level)}, true
}

// each calls fn for every child until fn returns false, and reports
// whether it went through all of them.
func (v vnode[T]) each(fn func(level string, c vnode[T]) bool) bool {
	if v.end < len(v.n.label) {
		next := nextLevel(v.n.label, v.end+1)
		return fn(v.n.label[v.end+1:next], vnode[T]{v.n, next})
	}
	for _, c := range v.n.kids.slots() {
		if c != nil {
			first := nextLevel(c.label, 0)
			if !fn(c.label[:first], vnode[T]{c, first}) {
				return false
			}
		}
	}
	return true
}

// Match calls fn with every retained message whose name the filter matches,
// in no particular order, until fn returns false. Matching follows
// Index.Match: '+' is one level, '#' is any number including none, and a
// filter starting with a wildcard skips names starting with '$'.
// [MQTT-4.7.2-1] The literal levels of a filter are looked up, not scanned,
// so an exact filter costs one walk down its path.
//
// fn runs under the read lock: it must not call Set or Delete on r, and
// holding it up delays writers.
func (r *Retained[T]) Match(filter string, fn func(v *T) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := matcher[T]{seed: r.seed, filter: filter, fn: fn}
	m.match(vnode[T]{&r.root, 0}, 0, true)
}

// matcher is the state of one Match.
type matcher[T any] struct {
	seed   maphash.Seed
	filter string
	fn     func(*T) bool
}

// match visits the names below v that match the filter from the level
// starting at start, and reports false once fn has asked to stop. atRoot is
// true while v is the root, where wildcards skip '$' names.
func (m *matcher[T]) match(v vnode[T], start int, atRoot bool) bool {
	for {
		if start > len(m.filter) {
			msg := v.msg()
			return msg == nil || m.fn(msg)
		}
		end := nextLevel(m.filter, start)
		switch level := m.filter[start:end]; level {
		case "#":
			return m.all(v, atRoot)
		case "+":
			return v.each(func(l string, c vnode[T]) bool {
				return (atRoot && strings.HasPrefix(l, "$")) || m.match(c, end+1, false)
			})
		default:
			var ok bool
			if v, ok = v.child(m.seed, level); !ok {
				return true
			}
		}
		start, atRoot = end+1, false
	}
}

// all visits v and every name below it: what '#' matches, including its
// parent level. skipDollar leaves out children whose level starts with '$'.
func (m *matcher[T]) all(v vnode[T], skipDollar bool) bool {
	if msg := v.msg(); msg != nil && !m.fn(msg) {
		return false
	}
	if v.end < len(v.n.label) {
		// The rest of the label is one path: no '$' check applies below
		// the root, which has no label.
		return m.all(vnode[T]{v.n, len(v.n.label)}, false)
	}
	for _, c := range v.n.kids.slots() {
		if c != nil && !(skipDollar && strings.HasPrefix(c.label, "$")) && !m.all(vnode[T]{c, nextLevel(c.label, 0)}, false) {
			return false
		}
	}
	return true
}
