package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

// [MQTT-4.7.1-2] v3.1.1
// [MQTT-4.7.1-3] v3.1.1
// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.3-4] v3.1.1
// [MQTT-4.7.1-1] v5
// [MQTT-4.7.1-2] v5
// [MQTT-4.7.2-1] v5
// [MQTT-4.7.3-4] v5
func TestIndexMatchesEachFilterAlone(t *testing.T) {
	for _, c := range matchCases {
		ix := NewIndex[int, string]()
		ix.Add(c.filter, 1, c.filter)
		got := ix.Match(c.name, nil)
		if want := c.want; (len(got) == 1) != want || len(got) > 1 {
			t.Errorf("index {%q}: Match(%q) = %q, want match %v", c.filter, c.name, got, want)
		}
	}
}

// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.2-1] v5
func TestIndexMatchesAllFiltersTogether(t *testing.T) {
	ix := NewIndex[string, string]()
	var filters, names []string
	for _, c := range matchCases {
		if !slices.Contains(filters, c.filter) {
			filters = append(filters, c.filter)
			ix.Add(c.filter, c.filter, c.filter)
		}
		names = append(names, c.name)
	}
	for _, name := range append(names, "a/b/c/d", "x", "$SYS/a/b", "//", "a//") {
		var want []string
		for _, f := range filters {
			if Match(f, name) {
				want = append(want, f)
			}
		}
		if got := ix.Match(name, nil); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("Match(%q) = %q, want %q", name, sorted(got), sorted(want))
		}
	}
}

func TestIndexReturnsOneValuePerMatchingSubscription(t *testing.T) {
	ix := NewIndex[string, string]()
	ix.Add("a/+", "s1", "s1 a/+")
	ix.Add("a/#", "s1", "s1 a/#")
	ix.Add("#", "s1", "s1 #")
	ix.Add("a/b", "s2", "s2 a/b")
	ix.Add("a/c", "s3", "s3 a/c")
	got := sorted(ix.Match("a/b", nil))
	want := []string{"s1 #", "s1 a/#", "s1 a/+", "s2 a/b"}
	if !slices.Equal(got, want) {
		t.Errorf("Match(a/b) = %q, want %q", got, want)
	}
}

func TestIndexMatchAppendsToDst(t *testing.T) {
	ix := NewIndex[int, int]()
	ix.Add("a", 1, 10)
	got := ix.Match("a", []int{7})
	if !slices.Equal(got, []int{7, 10}) {
		t.Errorf("Match(a, [7]) = %v, want [7 10]", got)
	}
}

func TestIndexAddReplacesValueOfSameKeyAndFilter(t *testing.T) {
	ix := NewIndex[string, int]()
	if ix.Add("a/+", "s1", 1) {
		t.Error("first Add(a/+, s1) reported replaced")
	}
	if !ix.Add("a/+", "s1", 2) {
		t.Error("second Add(a/+, s1) did not report replaced")
	}
	if ix.Add("a/+", "s2", 3) {
		t.Error("Add(a/+, s2) reported replaced; s2 had no subscription")
	}
	if ix.Add("a/#", "s1", 4) {
		t.Error("Add(a/#, s1) reported replaced; s1 had no subscription to a/#")
	}
	if got := sorted(ix.Match("a/b", nil)); !slices.Equal(got, []int{2, 3, 4}) {
		t.Errorf("Match(a/b) = %v, want [2 3 4]", got)
	}
	if ix.Len() != 3 {
		t.Errorf("Len = %d, want 3", ix.Len())
	}
}

func TestIndexRemove(t *testing.T) {
	ix := NewIndex[string, int]()
	ix.Add("a/+", "s1", 1)
	ix.Add("a/+", "s2", 2)
	ix.Add("a/b", "s1", 3)
	for _, tc := range []struct {
		filter, key string
		want        bool
	}{
		{"a/+", "s3", false}, // no such key on the filter
		{"a/c", "s1", false}, // no such filter
		{"a", "s1", false},   // an interior node, no subscription
		{"a/b/c", "s1", false},
		{"a/+", "s1", true},
		{"a/+", "s1", false}, // already gone
	} {
		if got := ix.Remove(tc.filter, tc.key); got != tc.want {
			t.Errorf("Remove(%q, %q) = %v, want %v", tc.filter, tc.key, got, tc.want)
		}
	}
	if got := sorted(ix.Match("a/b", nil)); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("Match(a/b) = %v, want [2 3]", got)
	}
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}
}

func TestIndexRemovePrunesEveryNode(t *testing.T) {
	ix := NewIndex[int, int]()
	type sub struct {
		filter string
		key    int
	}
	var all []sub
	r := newRandomLevels(1, 30) // many siblings: nodes move to maps and back
	for i := range 5000 {
		s := sub{r.filter(), i % 50}
		if !ix.Add(s.filter, s.key, i) {
			all = append(all, s)
		}
	}
	for i := range 200 { // one filter with many subscribers
		s := sub{"fan/out", 1000 + i}
		ix.Add(s.filter, s.key, i)
		all = append(all, s)
	}
	if ix.Len() != len(all) {
		t.Fatalf("Len = %d after adding %d subscriptions", ix.Len(), len(all))
	}
	checkTrie(t, &ix.root)
	r.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for i, s := range all {
		if !ix.Remove(s.filter, s.key) {
			t.Fatalf("Remove(%q, %d) = false", s.filter, s.key)
		}
		if i%500 == 0 {
			checkTrie(t, &ix.root)
		}
	}
	if n := countNodes(&ix.root); ix.Len() != 0 || n != 0 || ix.root.kids != nil || ix.root.wide != nil {
		t.Errorf("after removing everything: Len = %d, nodes = %d, root kids %v wide %v; want all empty",
			ix.Len(), n, ix.root.kids, ix.root.wide)
	}
}

// A filter with many subscribers adds and removes each through the key map;
// the map must follow every entry that moves.
func TestIndexFanout(t *testing.T) {
	ix := NewIndex[int, int]()
	const n = 10000
	for k := range n {
		ix.Add("fan/out", k, k)
	}
	if got := ix.Match("fan/out", nil); len(got) != n {
		t.Fatalf("Match returned %d values, want %d", len(got), n)
	}
	rng := rand.New(rand.NewPCG(2, 3))
	order := rng.Perm(n)
	for _, k := range order[:n-3] {
		if !ix.Remove("fan/out", k) {
			t.Fatalf("Remove(fan/out, %d) = false", k)
		}
		if ix.Add("fan/out", k, k) != false || !ix.Remove("fan/out", k) {
			t.Fatalf("re-adding and removing %d failed", k)
		}
	}
	want := sorted(order[n-3:])
	if got := sorted(ix.Match("fan/out", nil)); !slices.Equal(got, want) {
		t.Errorf("Match after removals = %v, want %v", got, want)
	}
	s := &ix.root.child("fan").child("out").p
	if s.pos != nil || cap(s.ents) >= subsShrinkMin {
		t.Errorf("3 subscribers left: key map %v, capacity %d; memory was not given back", s.pos != nil, cap(s.ents))
	}
	checkTrie(t, &ix.root)
}

// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.2-1] v5
func TestIndexAgainstReferenceRandomized(t *testing.T) {
	for _, literals := range []int{3, 20} {
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("literals=%d/seed=%d", literals, seed), func(t *testing.T) {
				checkIndexAgainstReference(t, newRandomLevels(seed, literals))
			})
		}
	}
}

func checkIndexAgainstReference(t *testing.T, r *randomLevels) {
	ix := NewIndex[int, int]()
	model := map[string]map[int]int{} // filter → key → value
	next := 0
	for round := range 10 {
		for range 100 {
			f, key := r.filter(), r.rng.IntN(4)
			if r.rng.IntN(3) == 0 {
				_, had := model[f][key]
				if got := ix.Remove(f, key); got != had {
					t.Fatalf("Remove(%q, %d) = %v, want %v", f, key, got, had)
				}
				delete(model[f], key)
				continue
			}
			next++
			_, had := model[f][key]
			if got := ix.Add(f, key, next); got != had {
				t.Fatalf("Add(%q, %d) = %v, want %v", f, key, got, had)
			}
			if model[f] == nil {
				model[f] = map[int]int{}
			}
			model[f][key] = next
		}
		want := 0
		for _, keys := range model {
			want += len(keys)
		}
		if ix.Len() != want {
			t.Fatalf("round %d: Len = %d, want %d", round, ix.Len(), want)
		}
		checkTrie(t, &ix.root)
		for range 100 {
			name := r.name()
			var want []int
			for f, keys := range model {
				if Match(f, name) {
					for _, v := range keys {
						want = append(want, v)
					}
				}
			}
			if got := ix.Match(name, nil); !slices.Equal(sorted(got), sorted(want)) {
				t.Fatalf("round %d: Match(%q) = %v, want %v", round, name, sorted(got), sorted(want))
			}
		}
	}
}

func TestIndexMatchDoesNotAllocate(t *testing.T) {
	ix := NewIndex[int, int]()
	r := newRandomLevels(7, 20)
	for i := range 2000 {
		ix.Add(r.filter(), i%10, i)
	}
	for k := range 100 {
		ix.Add("l1/l2", k, k)
	}
	names := []string{"l1/l2", "l1/l2/l3", "$x/l1", "/", "l3//l4/l5"}
	dst := make([]int, 0, 4096)
	for _, name := range names {
		if n := testing.AllocsPerRun(50, func() { dst = ix.Match(name, dst[:0]) }); n != 0 {
			t.Errorf("Match(%q) allocates %v times per call, want 0", name, n)
		}
	}
}

// Readers and writers in parallel; run with -race. Subscriptions added before
// the writers start must be matched by every read, whatever the writers do.
func TestIndexConcurrentReadersAndWriters(t *testing.T) {
	ix := NewIndex[int, int]()
	ix.Add("s/+/x", -1, -1)
	ix.Add("s/#", -2, -2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := newRandomLevels(uint64(w), 5)
			for i := range 2000 {
				f := "s/" + r.filter()
				ix.Add(f, w, i)
				if i%2 == 0 {
					ix.Remove(f, w)
				}
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			r := newRandomLevels(uint64(100+g), 5)
			var dst []int
			for range 2000 {
				dst = ix.Match("s/"+r.name(), dst[:0])
				if !slices.Contains(dst, -2) {
					t.Errorf("Match lost the stable subscription s/#: %v", dst)
					return
				}
				_ = ix.Len()
			}
		})
	}
	wg.Wait()
	if got := ix.Match("s/a/x", nil); !slices.Contains(got, -1) || !slices.Contains(got, -2) {
		t.Errorf("Match(s/a/x) = %v, want it to hold -1 and -2", got)
	}
	checkTrie(t, &ix.root)
}

// countNodes counts the nodes below n.
func countNodes[P any](n *node[P]) int {
	c := 0
	n.each(func(_ string, k *node[P]) bool {
		c += 1 + countNodes(k)
		return true
	})
	return c
}

// checkTrie checks the invariants of an index's trie: no empty node is left
// behind, the slice and map hold what they should, and every key map points
// at its entry.
func checkTrie[K comparable, V any](t *testing.T, root *node[subs[K, V]]) {
	t.Helper()
	var walk func(path string, n *node[subs[K, V]])
	walk = func(path string, n *node[subs[K, V]]) {
		if n != root && n.leaf() && len(n.p.ents) == 0 {
			t.Errorf("node %q has no children and no subscribers: not pruned", path)
		}
		if n.wide != nil && (n.literalKids() != 0 || len(n.wide.m) <= narrowBack) {
			t.Errorf("node %q: %d literal children in slice and %d in map", path, n.literalKids(), len(n.wide.m))
		}
		if n.wide == nil && n.literalKids() > narrowMax {
			t.Errorf("node %q: %d literal children in slice, max %d", path, n.literalKids(), narrowMax)
		}
		s := &n.p
		if s.pos != nil {
			if len(s.pos.m) != len(s.ents) {
				t.Errorf("node %q: key map has %d keys for %d entries", path, len(s.pos.m), len(s.ents))
			}
			for i, e := range s.ents {
				if j, ok := s.pos.m[e.key]; !ok || int(j) != i {
					t.Errorf("node %q: key %v at %d, map says %d (%v)", path, e.key, i, j, ok)
				}
			}
		} else if len(s.ents) > subsIndexAt {
			t.Errorf("node %q: %d subscribers and no key map", path, len(s.ents))
		}
		n.each(func(level string, c *node[subs[K, V]]) bool {
			walk(path+"/"+level, c)
			return true
		})
	}
	walk("", root)
}

// A filter handed to Add may be a slice of a large buffer; the tree must not
// keep it alive.
func TestIndexCopiesLevels(t *testing.T) {
	ix := NewIndex[int, int]()
	packet := string([]byte("a and the rest of a large packet"))
	ix.Add(packet[:1], 1, 1)
	if e := ix.root.kids[0]; unsafe.StringData(e.level) == unsafe.StringData(packet) {
		t.Error("Index keeps a slice of the caller's filter")
	}
}
