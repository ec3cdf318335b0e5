package topic

import (
	"hash/maphash"
	"slices"
	"strings"
)

// Walk visits the retained names that filter matches, in order, starting
// after the path `after`, and calls fn for each until fn returns false.
// It lets a caller list millions of retained messages a page at a time
// without holding the lock between pages: each call holds the read lock
// for at most budget trie nodes.
//
// The order is by levels: two names compare by their first level (as
// bytes), then their second, and so on, and a name comes before the names
// below it ("a" < "a/b" < "a/c" < "b"). after is a path of levels, nil for
// the start; the walk resumes strictly after it, whether or not a message
// is stored there now. An empty filter matches every name, '$' ones too;
// otherwise matching follows Match.
//
// Walk returns complete when it visited everything there was to visit.
// When it stops because budget nodes were visited, resume is the path of
// the last node it visited, for the next call's after; when fn stopped it,
// resume is nil (the caller knows the last name it took).
func (r *Retained[T]) Walk(filter string, after []string, budget int, fn func(v *T) bool) (resume []string, complete bool) {
	w := walker[T]{seed: r.seed, after: after, budget: max(budget, 1), fn: fn}
	if filter != "" {
		w.filter = strings.Split(filter, "/")
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	mode := walkAll
	if after != nil {
		mode = walkOnPath
	}
	switch w.children(vnode[T]{&r.root, 0}, mode, false) {
	case walkDone:
		return nil, true
	case walkBudget:
		return w.path, false
	}
	return nil, false
}

// walker is the state of one Walk.
type walker[T any] struct {
	seed   maphash.Seed
	filter []string // nil: every name
	after  []string
	budget int
	fn     func(*T) bool
	path   []string // the levels of the node being visited
}

// walkMode says where a node lies relative to the cursor.
type walkMode uint8

const (
	walkAll    walkMode = iota // after the cursor: visit it and all below
	walkOnPath                 // on the cursor's path, above it: visit only what follows the cursor
	walkCursor                 // the cursor itself: visited before, only what is below it follows
)

// walkResult says why a walk of a subtree ended.
type walkResult uint8

const (
	walkDone    walkResult = iota // the subtree is done
	walkStopped                   // fn returned false
	walkBudget                    // the budget ran out
)

// visit visits n, whose levels are w.path, then the nodes below it. hash
// is set once a '#' of the filter matched a level above.
func (w *walker[T]) visit(n vnode[T], mode walkMode, hash bool) walkResult {
	if mode == walkAll {
		w.budget--
		if msg := n.msg(); msg != nil && w.matches(hash) && !w.fn(msg) {
			return walkStopped
		}
		if w.budget <= 0 {
			return walkBudget
		}
	}
	return w.children(n, mode, hash)
}

// matches reports whether the name at w.path matches the filter, given
// that every level above passed descends.
func (w *walker[T]) matches(hash bool) bool {
	d := len(w.path)
	return w.filter == nil || hash || len(w.filter) == d || (len(w.filter) == d+1 && w.filter[d] == "#")
}

// descends reports whether a child of the node at w.path reached by level
// can lead to a match, and whether it is below a '#'.
func (w *walker[T]) descends(level string, hash bool) (ok, below bool) {
	if w.filter == nil || hash {
		return true, hash
	}
	d := len(w.path)
	if d >= len(w.filter) {
		return false, false
	}
	f := w.filter[d]
	if d == 0 && (f == "+" || f == "#") && strings.HasPrefix(level, "$") {
		return false, false // [MQTT-4.7.2-1]
	}
	return f == "#" || f == "+" || f == level, f == "#"
}

// children visits the children of n in order of their levels.
func (w *walker[T]) children(n vnode[T], mode walkMode, hash bool) walkResult {
	d := len(w.path)
	if w.filter != nil && !hash && d >= len(w.filter) {
		return walkDone // nothing below can match
	}
	onPath := mode == walkOnPath && d < len(w.after)
	// A literal level of the filter names the one child to visit.
	if w.filter != nil && !hash && d < len(w.filter) && !isWildcardLevel(w.filter[d]) {
		level := w.filter[d]
		c, ok := n.child(w.seed, level)
		if !ok || (onPath && level < w.after[d]) {
			return walkDone
		}
		return w.child(c, level, childMode(onPath, level, w.after, d), hash)
	}
	kids := sortedKids(n, onPath, w.after, d)
	for len(kids.items) > 0 {
		e := kids.pop()
		ok, below := w.descends(e.level, hash)
		if !ok {
			continue
		}
		if r := w.child(e.v, e.level, childMode(onPath, e.level, w.after, d), below); r != walkDone {
			return r
		}
	}
	return walkDone
}

// child visits c, reached from the node at w.path by level.
func (w *walker[T]) child(c vnode[T], level string, mode walkMode, hash bool) walkResult {
	w.path = append(w.path, level)
	r := w.visit(c, mode, hash)
	if r == walkDone {
		w.path = w.path[:len(w.path)-1]
	}
	return r
}

// childMode is the mode of the child reached by level from a node at depth
// d: on the cursor's path, the cursor, or past it.
func childMode(onPath bool, level string, after []string, d int) walkMode {
	switch {
	case !onPath || level != after[d]:
		return walkAll
	case d+1 == len(after):
		return walkCursor
	}
	return walkOnPath
}

// sortedKids returns n's children in order of their levels, from after[d]
// on when onPath. A node may have a million children: they are put in a
// heap and taken out as the walk goes, so a page that stops early does
// not pay for sorting them all.
func sortedKids[T any](n vnode[T], onPath bool, after []string, d int) *levelHeap[T] {
	h := &levelHeap[T]{}
	n.each(func(level string, c vnode[T]) bool {
		if !onPath || level >= after[d] {
			h.items = append(h.items, vedge[T]{level, c})
		}
		return true
	})
	if len(h.items) <= 16 {
		slices.SortFunc(h.items, func(a, b vedge[T]) int { return strings.Compare(b.level, a.level) })
		h.sorted = true
		return h
	}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return h
}

// levelHeap yields edges in order of their levels: a few, sorted in
// reverse and taken from the end, or many, in a min-heap.
type levelHeap[T any] struct {
	items  []vedge[T]
	sorted bool
}

// vedge is a child as matching sees it and the level that leads to it.
type vedge[T any] struct {
	level string
	v     vnode[T]
}

func (h *levelHeap[T]) pop() vedge[T] {
	last := len(h.items) - 1
	if h.sorted {
		e := h.items[last]
		h.items = h.items[:last]
		return e
	}
	e := h.items[0]
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	h.down(0)
	return e
}

func (h *levelHeap[T]) down(i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h.items) && h.items[l].level < h.items[least].level {
			least = l
		}
		if r < len(h.items) && h.items[r].level < h.items[least].level {
			least = r
		}
		if least == i {
			return
		}
		h.items[i], h.items[least] = h.items[least], h.items[i]
		i = least
	}
}
