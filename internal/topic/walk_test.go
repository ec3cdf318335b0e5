package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// levelOrder is the order Walk promises: level by level, a name before
// the names below it.
func levelOrder(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// walkPages pages through r with Walk, taking at most per names a page
// and visiting at most budget nodes, and returns every name given.
func walkPages(t *testing.T, r *Retained[string], filter string, per, budget int) []string {
	t.Helper()
	var got []string
	var after []string
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("Walk(%q) does not end", filter)
		}
		n := 0
		resume, complete := r.Walk(filter, after, budget, func(v *string) bool {
			got = append(got, *v)
			n++
			return n < per
		})
		switch {
		case complete:
			return got
		case resume != nil:
			after = resume
		default:
			after = strings.Split(got[len(got)-1], "/")
		}
	}
}

// Every name the filter matches comes exactly once, in level order,
// whatever the page size and the budget.
func TestRetainedWalkPagesInOrder(t *testing.T) {
	r := NewRetained[string]()
	rng := rand.New(rand.NewPCG(1, 2))
	var names []string
	levels := []string{"a", "b", "", "$SYS", "x", "wide"}
	for range 400 {
		depth := 1 + rng.IntN(4)
		parts := make([]string, depth)
		for i := range parts {
			parts[i] = levels[rng.IntN(len(levels))]
			if parts[i] == "wide" {
				parts[i] = fmt.Sprintf("w%03d", rng.IntN(60)) // a node with a map of children
			}
		}
		name := strings.Join(parts, "/")
		if !slices.Contains(names, name) {
			names = append(names, name)
			r.Set(name, ptr(name))
		}
	}
	filters := []string{"", "#", "+", "a/#", "+/+", "a/+/b", "$SYS/#", "+/a/#", "a", "/#", "b/a/", "w001/#", "nothing/#"}
	for _, filter := range filters {
		var want []string
		for _, name := range names {
			if filter == "" || Match(filter, name) {
				want = append(want, name)
			}
		}
		slices.SortFunc(want, levelOrder)
		for _, per := range []int{1, 3, 50, 1000} {
			for _, budget := range []int{1, 2, 7, 100000} {
				got := walkPages(t, r, filter, per, budget)
				if !slices.Equal(got, want) {
					t.Fatalf("Walk(%q) in pages of %d with budget %d gave\n%q\nwant\n%q", filter, per, budget, got, want)
				}
			}
		}
	}
}

// Names set and deleted between pages do not disturb the others: each
// name there throughout comes exactly once.
func TestRetainedWalkWhileChanging(t *testing.T) {
	r := NewRetained[string]()
	var stable []string
	for i := range 300 {
		name := fmt.Sprintf("s/%03d", i)
		stable = append(stable, name)
		r.Set(name, ptr(name))
	}
	var got []string
	var after []string
	for i := 0; ; i++ {
		r.Set(fmt.Sprintf("s/%03d/x", i%300), ptr(fmt.Sprintf("s/%03d/x", i%300)))
		r.Set(fmt.Sprintf("s/%03da", 299-i%300), ptr(fmt.Sprintf("s/%03da", 299-i%300)))
		r.Delete(fmt.Sprintf("s/%03d/x", (i+150)%300))
		n := 0
		_, complete := r.Walk("s/+", after, 1000, func(v *string) bool {
			got = append(got, *v)
			n++
			return n < 7
		})
		if complete {
			break
		}
		after = strings.Split(got[len(got)-1], "/")
	}
	var kept []string
	for _, name := range got {
		if !strings.HasSuffix(name, "a") {
			kept = append(kept, name)
		}
	}
	if !slices.Equal(kept, stable) {
		t.Fatalf("walking while names change gave %d stable names, want each of %d once: %q", len(kept), len(stable), kept)
	}
}

// A resumed walk does not start again below a cursor that is gone.
func TestRetainedWalkAfterDeletedCursor(t *testing.T) {
	r := NewRetained[string]()
	for _, name := range []string{"a", "a/b", "a/b/c", "a/d", "b"} {
		r.Set(name, ptr(name))
	}
	var got []string
	r.Walk("", []string{"a", "b"}, 100, func(v *string) bool {
		got = append(got, *v)
		return true
	})
	if want := []string{"a/b/c", "a/d", "b"}; !slices.Equal(got, want) {
		t.Fatalf("Walk after a/b = %q, want %q", got, want)
	}
	r.Delete("a/b/c")
	r.Delete("a/b")
	got = got[:0]
	r.Walk("", []string{"a", "b", "c"}, 100, func(v *string) bool {
		got = append(got, *v)
		return true
	})
	if want := []string{"a/d", "b"}; !slices.Equal(got, want) {
		t.Fatalf("Walk after the deleted a/b/c = %q, want %q", got, want)
	}
}
