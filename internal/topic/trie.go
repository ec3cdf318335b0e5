package topic

import "strings"

// node is one level of a trie over topic levels, carrying a payload P: the
// subscribers of a filter in Index, the retained message of a name in
// Retained. The root stands for no level; its children are first levels.
//
// Children live in a small slice while there are few, because most nodes of a
// large tree have one child and a Go map costs about 250 bytes even with
// one entry. Past narrowMax literal children they move to a map. The wildcard
// children "+" and "#" always stay in the slice, so finding what a name's
// level leads to costs one short scan and at most one map probe.
type node[P any] struct {
	kids []edge[P]
	wide *wideKids[P]
	p    P
}

// edge is a child and the level that leads to it.
type edge[P any] struct {
	level string
	n     *node[P]
}

// wideKids holds the literal children of a node that has many.
type wideKids[P any] struct {
	m map[string]*node[P]
	// peak is the largest len(m) since m was built. Go maps never give memory
	// back, so m is rebuilt once it has fallen well below its peak.
	peak int
}

const (
	narrowMax  = 8  // literal children a node keeps in its slice before moving them to a map
	narrowBack = 4  // a map that falls to this many children goes back to the slice
	rebuildMin = 64 // maps below this peak are not worth rebuilding to save memory
)

// child returns the child reached by level, or nil.
func (n *node[P]) child(level string) *node[P] {
	for i := range n.kids {
		if n.kids[i].level == level {
			return n.kids[i].n
		}
	}
	if n.wide != nil {
		return n.wide.m[level]
	}
	return nil
}

// add creates and returns the child for level, which must not exist yet. The
// node keeps level as given: the caller decides whether it must be copied so
// as not to pin a larger string.
func (n *node[P]) add(level string) *node[P] {
	c := &node[P]{}
	if isWildcardLevel(level) || (n.wide == nil && n.literalKids() < narrowMax) {
		n.kids = append(n.kids, edge[P]{level, c})
		return c
	}
	if n.wide == nil {
		n.widen()
	}
	n.wide.m[level] = c
	n.wide.peak = max(n.wide.peak, len(n.wide.m))
	return c
}

// remove drops the child for level, if any.
func (n *node[P]) remove(level string) {
	for i := range n.kids {
		if n.kids[i].level == level {
			last := len(n.kids) - 1
			n.kids[i] = n.kids[last]
			n.kids[last] = edge[P]{}
			n.kids = n.kids[:last]
			if last == 0 {
				n.kids = nil
			}
			return
		}
	}
	if n.wide == nil {
		return
	}
	delete(n.wide.m, level)
	switch {
	case len(n.wide.m) <= narrowBack:
		n.narrow()
	case n.wide.peak >= rebuildMin && len(n.wide.m) <= n.wide.peak/4:
		n.wide = &wideKids[P]{m: cloneMap(n.wide.m), peak: len(n.wide.m)}
	}
}

// leaf reports whether n has no children.
func (n *node[P]) leaf() bool { return len(n.kids) == 0 && n.wide == nil }

// each calls fn for every child until fn returns false, and reports whether
// it went through all of them.
func (n *node[P]) each(fn func(level string, c *node[P]) bool) bool {
	for _, e := range n.kids {
		if !fn(e.level, e.n) {
			return false
		}
	}
	if n.wide != nil {
		for level, c := range n.wide.m {
			if !fn(level, c) {
				return false
			}
		}
	}
	return true
}

func (n *node[P]) literalKids() int {
	k := 0
	for _, e := range n.kids {
		if !isWildcardLevel(e.level) {
			k++
		}
	}
	return k
}

// widen moves the literal children from the slice to a map.
func (n *node[P]) widen() {
	w := &wideKids[P]{m: make(map[string]*node[P], narrowMax*2)}
	kept := n.kids[:0]
	for _, e := range n.kids {
		if isWildcardLevel(e.level) {
			kept = append(kept, e)
		} else {
			w.m[e.level] = e.n
		}
	}
	clear(n.kids[len(kept):])
	n.kids = shrinkEdges(kept)
	n.wide = w
	w.peak = len(w.m)
}

// narrow moves the literal children from the map back to the slice.
func (n *node[P]) narrow() {
	kids := make([]edge[P], 0, len(n.kids)+len(n.wide.m))
	kids = append(kids, n.kids...)
	for level, c := range n.wide.m {
		kids = append(kids, edge[P]{level, c})
	}
	n.kids, n.wide = kids, nil
}

func shrinkEdges[P any](s []edge[P]) []edge[P] {
	if len(s) == 0 {
		return nil
	}
	return append([]edge[P](nil), s...)
}

// cloneMap copies m into a map sized for its entries. (maps.Clone would copy
// the table at its old size, keeping the memory this is meant to free.)
func cloneMap[P any](m map[string]*node[P]) map[string]*node[P] {
	c := make(map[string]*node[P], len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func isWildcardLevel(level string) bool { return level == "+" || level == "#" }

// nextLevel returns the end of the level of s that starts at start: the
// index of the next '/' or len(s). The level after it starts at end+1; once
// that is past len(s) there are no more levels. An empty s is one empty level.
func nextLevel(s string, start int) (end int) {
	if i := strings.IndexByte(s[start:], '/'); i >= 0 {
		return start + i
	}
	return len(s)
}
