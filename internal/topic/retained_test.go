package topic

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

// matchRetained collects the names r.Match(filter) visits: the tests store
// each name as its own message.
func matchRetained(t *testing.T, r *Retained[string], filter string) []string {
	t.Helper()
	var got []string
	r.Match(filter, func(v *string) bool {
		got = append(got, *v)
		return true
	})
	return sorted(got)
}

// ptr returns a pointer to a copy of v: a message to store.
func ptr[T any](v T) *T { return &v }

// [MQTT-4.7.1-2] v3.1.1
// [MQTT-4.7.1-3] v3.1.1
// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.3-4] v3.1.1
// [MQTT-4.7.1-1] v5
// [MQTT-4.7.1-2] v5
// [MQTT-4.7.2-1] v5
// [MQTT-4.7.3-4] v5
func TestRetainedMatchesTable(t *testing.T) {
	r := NewRetained[string]()
	var names []string
	for _, c := range matchCases {
		if !slices.Contains(names, c.name) {
			names = append(names, c.name)
			r.Set(c.name, ptr(c.name))
		}
	}
	for _, c := range matchCases {
		got := matchRetained(t, r, c.filter)
		if slices.Contains(got, c.name) != c.want {
			t.Errorf("Match(%q) = %q: has %q = %v, want %v", c.filter, got, c.name, !c.want, c.want)
		}
		var want []string
		for _, name := range names {
			if Match(c.filter, name) {
				want = append(want, name)
			}
		}
		if want = sorted(want); !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %q, want %q", c.filter, got, want)
		}
	}
}

func TestRetainedSetGetDelete(t *testing.T) {
	r := NewRetained[int]()
	r.Set("a/b", ptr(1))
	r.Set("a", ptr(2))
	r.Set("a/b", ptr(3)) // replaces
	if r.Len() != 2 {
		t.Errorf("Len = %d, want 2", r.Len())
	}
	for _, tc := range []struct {
		name string
		v    int
		ok   bool
	}{{"a/b", 3, true}, {"a", 2, true}, {"a/b/c", 0, false}, {"b", 0, false}, {"a/", 0, false}} {
		if v, ok := r.Get(tc.name); ok != tc.ok || (ok && *v != tc.v) || (!ok && v != nil) {
			t.Errorf("Get(%q) = %v, %v; want %d, %v", tc.name, v, ok, tc.v, tc.ok)
		}
	}
	if r.Delete("a/c") || r.Delete("a/b/c") {
		t.Error("Delete of a name never set reported true")
	}
	if !r.Delete("a") || r.Delete("a") {
		t.Error("Delete(a) twice: want true then false")
	}
	if v, ok := r.Get("a/b"); !ok || *v != 3 {
		t.Errorf("after Delete(a), Get(a/b) = %v, %v; want 3, true", v, ok)
	}
	if !r.Delete("a/b") || r.Len() != 0 || countRNodes(&r.root) != 0 {
		t.Errorf("after deleting everything: Len = %d, nodes = %d; want 0, 0", r.Len(), countRNodes(&r.root))
	}
}

func TestRetainedMatchStopsWhenAsked(t *testing.T) {
	r := NewRetained[int]()
	for i := range 100 {
		r.Set(fmt.Sprintf("a/%d", i), ptr(i))
	}
	for _, filter := range []string{"#", "a/#", "a/+", "+/+"} {
		calls := 0
		r.Match(filter, func(*int) bool { calls++; return calls < 3 })
		if calls != 3 {
			t.Errorf("Match(%q) called fn %d times after it returned false on the 3rd", filter, calls)
		}
	}
}

// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.2-1] v5
func TestRetainedAgainstReferenceRandomized(t *testing.T) {
	for _, literals := range []int{3, 20} {
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("literals=%d/seed=%d", literals, seed), func(t *testing.T) {
				r := newRandomLevels(seed, literals)
				ret := NewRetained[string]()
				model := map[string]bool{}
				for round := range 10 {
					for range 60 {
						name := r.name()
						if r.rng.IntN(3) == 0 {
							if got := ret.Delete(name); got != model[name] {
								t.Fatalf("Delete(%q) = %v, want %v", name, got, model[name])
							}
							delete(model, name)
							continue
						}
						ret.Set(name, ptr(name))
						model[name] = true
					}
					if ret.Len() != len(model) {
						t.Fatalf("round %d: Len = %d, want %d", round, ret.Len(), len(model))
					}
					checkRetained(t, ret)
					for range 60 {
						filter := r.filter()
						var want []string
						for name := range model {
							if Match(filter, name) {
								want = append(want, name)
							}
						}
						if got, want := matchRetained(t, ret, filter), sorted(want); !slices.Equal(got, want) {
							t.Fatalf("round %d: Match(%q) = %q, want %q", round, filter, got, want)
						}
					}
				}
				for name := range model {
					ret.Delete(name)
				}
				if n := countRNodes(&ret.root); ret.Len() != 0 || n != 0 {
					t.Errorf("after deleting everything: Len = %d, nodes = %d; want 0, 0", ret.Len(), n)
				}
			})
		}
	}
}

// A name handed to Set may be a slice of a large buffer; keeping it would pin
// the whole buffer for as long as the message stays retained.
func TestRetainedCopiesTheName(t *testing.T) {
	r := NewRetained[int]()
	packet := string([]byte("a/b/c/d and the rest of a large packet"))
	r.Set(packet[:7], ptr(1))
	r.Set(packet[:3], ptr(2)) // splits a/b/c/d
	r.Set(packet[:5]+"/x", ptr(3))
	start := uintptr(unsafe.Pointer(unsafe.StringData(packet)))
	var check func(n *rnode[int])
	check = func(n *rnode[int]) {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(n.label))); len(n.label) > 0 && p >= start && p < start+uintptr(len(packet)) {
			t.Errorf("the label %q is a slice of the caller's string", n.label)
		}
		for _, c := range n.kids.slots() {
			if c != nil {
				check(c)
			}
		}
	}
	check(&r.root)
}

// Readers and writers in parallel; run with -race.
func TestRetainedConcurrentReadersAndWriters(t *testing.T) {
	ret := NewRetained[int]()
	ret.Set("s/stable", ptr(-1))
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := newRandomLevels(uint64(w), 5)
			for i := range 2000 {
				name := "s/" + r.name()
				ret.Set(name, ptr(i))
				if i%2 == 0 {
					ret.Delete(name)
				}
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			r := newRandomLevels(uint64(100+g), 5)
			for range 1000 {
				ret.Match("s/"+r.filter(), func(*int) bool { return true })
				if v, ok := ret.Get("s/stable"); !ok || *v != -1 {
					t.Errorf("Get(s/stable) = %v, %v; want -1, true", v, ok)
					return
				}
			}
		})
	}
	wg.Wait()
}
