package topic

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"testing"
)

// countRNodes returns the number of nodes below n.
func countRNodes[T any](n *rnode[T]) int {
	c := 0
	for _, k := range n.kids.slots() {
		if k != nil {
			c += 1 + countRNodes(k)
		}
	}
	return c
}

// checkRetained checks the invariants of a Retained's trie: every node but
// the root has a message or at least two children (chains are one node);
// children have distinct first levels, each found where find looks for it;
// len counts them; and the messages number r.Len().
func checkRetained[T any](t *testing.T, r *Retained[T]) {
	t.Helper()
	msgs := 0
	var check func(n *rnode[T], path string)
	check = func(n *rnode[T], path string) {
		if n.v != nil {
			msgs++
		}
		count := 0
		for _, c := range n.kids.slots() {
			if c == nil {
				continue
			}
			count++
			first := firstLevel(c.label)
			if i := n.kids.find(r.seed, first); i < 0 || n.kids.at(i) != c {
				t.Errorf("%q: the child %q is not where find looks for it", path, c.label)
			}
			check(c, path+"/"+c.label)
		}
		if count != n.kids.len() {
			t.Errorf("%q: %d children, len says %d", path, count, n.kids.len())
		}
		if n.kids.wide() && n.kids.len() <= narrowMax/2 {
			t.Errorf("%q: a table for %d children", path, n.kids.len())
		}
		if n != &r.root && n.v == nil && count < 2 {
			t.Errorf("%q: a node with no message and %d children", path, count)
		}
	}
	check(&r.root, "")
	if msgs != r.Len() {
		t.Errorf("%d messages in the trie, Len says %d", msgs, r.Len())
	}
}

// A node's children go from the slice to a table and back as they come and
// go, and each is found all along, whatever the order.
func TestRetainedKidsGrowAndShrink(t *testing.T) {
	seed := maphash.MakeSeed()
	rng := rand.New(rand.NewPCG(3, 4))
	var k kids[int]
	have := map[string]*rnode[int]{}
	check := func(when string) {
		t.Helper()
		if k.len() != len(have) {
			t.Fatalf("%s: len = %d, want %d", when, k.len(), len(have))
		}
		for level, c := range have {
			if got := k.get(seed, level); got != c {
				t.Fatalf("%s: get(%q) = %v, want its child", when, level, got)
			}
		}
		if k.get(seed, "absent") != nil {
			t.Fatalf("%s: get(absent) found a child", when)
		}
		if k.wide() && cap(k.s)&(cap(k.s)-1) != 0 {
			t.Fatalf("%s: a table of %d slots, not a power of 2", when, cap(k.s))
		}
	}
	for _, peak := range []int{3, 9, 100, 5000} {
		for i := range peak {
			level := fmt.Sprintf("%d/rest", i)
			c := &rnode[int]{label: level}
			k.add(seed, c)
			have[firstLevel(level)] = c
		}
		check(fmt.Sprintf("%d added", peak))
		levels := make([]string, 0, len(have))
		for level := range have {
			levels = append(levels, level)
		}
		slices.Sort(levels)
		rng.Shuffle(len(levels), func(i, j int) { levels[i], levels[j] = levels[j], levels[i] })
		for i, level := range levels {
			k.remove(seed, level)
			delete(have, level)
			if i%7 == 0 || len(have) < 20 {
				check(fmt.Sprintf("peak %d, %d left", peak, len(have)))
			}
		}
		if k.len() != 0 || k.wide() {
			t.Fatalf("peak %d: all removed, but len = %d, wide = %v", peak, k.len(), k.wide())
		}
	}
}

// Names that share levels and then part split a node; deleting them merges
// it again, and nothing is left once all are gone.
func TestRetainedSplitAndMerge(t *testing.T) {
	r := NewRetained[string]()
	names := []string{"dev/1/7/state", "dev/1/8/state", "dev/1", "dev/1/7", "dev/1/7/state/x", "dev//a", "dev//b", "dev/", "$SYS/x", "/", ""}
	for i := range len(names) {
		r.Set(names[i], ptr(names[i]))
		checkRetained(t, r)
		for _, name := range names[:i+1] {
			if v, ok := r.Get(name); !ok || *v != name {
				t.Fatalf("after setting %q: Get(%q) = %v, %v", names[:i+1], name, v, ok)
			}
		}
		for _, name := range []string{"dev", "dev/1/7/stat", "dev/1/7/state/", "dev/1/", "de", "dev/1/9/state"} {
			if v, ok := r.Get(name); ok {
				t.Fatalf("after setting %q: Get(%q) = %q, never set", names[:i+1], name, *v)
			}
		}
	}
	if got := matchRetained(t, r, "dev/+/+/state"); !slices.Equal(got, []string{"dev/1/7/state", "dev/1/8/state"}) {
		t.Errorf("Match(dev/+/+/state) = %q", got)
	}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, {3, 0, 4, 2, 1, 6, 5, 7, 10, 8, 9}} {
		for _, name := range names {
			r.Set(name, ptr(name))
		}
		for i, j := range order {
			if !r.Delete(names[j]) {
				t.Fatalf("Delete(%q) = false", names[j])
			}
			checkRetained(t, r)
			for _, k := range order[i+1:] {
				if v, ok := r.Get(names[k]); !ok || *v != names[k] {
					t.Fatalf("after deleting %q: Get(%q) = %v, %v", names[j], names[k], v, ok)
				}
			}
		}
		if n := countRNodes(&r.root); n != 0 || r.Len() != 0 {
			t.Fatalf("all deleted: %d nodes, Len %d", n, r.Len())
		}
	}
}

// One node with many children: the table works under Match's wildcards.
func TestRetainedWideNode(t *testing.T) {
	r := NewRetained[string]()
	var want []string
	for i := range 3000 {
		name := fmt.Sprintf("w/%d/state", i)
		r.Set(name, ptr(name))
		if i%3 == 0 {
			want = append(want, name)
		}
	}
	for i := range 3000 {
		if i%3 != 0 {
			r.Delete(fmt.Sprintf("w/%d/state", i))
		}
	}
	checkRetained(t, r)
	if got := matchRetained(t, r, "w/+/state"); !slices.Equal(got, sorted(want)) {
		t.Errorf("Match(w/+/state) gave %d names, want %d", len(got), len(want))
	}
	if got := matchRetained(t, r, "w/#"); len(got) != len(want) {
		t.Errorf("Match(w/#) gave %d names, want %d", len(got), len(want))
	}
	if got := matchRetained(t, r, "w/27/state"); !slices.Equal(got, []string{"w/27/state"}) {
		t.Errorf("Match(w/27/state) = %q", got)
	}
	if got := matchRetained(t, r, "w/28/state"); len(got) != 0 {
		t.Errorf("Match(w/28/state) = %q, deleted", got)
	}
}
