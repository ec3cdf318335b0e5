package broker

import (
	"math/rand/v2"
	"testing"
)

// The in-flight window keeps its deliveries in order through pushes and
// removals anywhere, as a plain slice would, while it reuses its array.
func TestInflightWindowMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w inflightWindow
	var model []uint64
	seq := uint64(0)
	for step := range 200000 {
		switch op := rng.IntN(10); {
		case op < 5 && len(model) < 300:
			seq++
			w.push(&delivery{seq: seq})
			model = append(model, seq)
		case op < 9 && len(model) > 0: // mostly the oldest, as acknowledgements come
			i := 0
			if rng.IntN(4) == 0 {
				i = rng.IntN(len(model))
			}
			if got := w.find(pidOf(model[i])); got != i {
				t.Fatalf("step %d: find(%d) = %d, want %d", step, pidOf(model[i]), got, i)
			}
			w.remove(i)
			model = append(model[:i], model[i+1:]...)
		case len(model) > 0: // a reconnect with a smaller window keeps the first k
			k := rng.IntN(len(model))
			w.items = w.items[:k]
			model = model[:k]
		}
		if w.len() != len(model) {
			t.Fatalf("step %d: %d in flight, want %d", step, w.len(), len(model))
		}
		for i, f := range w.all() {
			if f.seq != model[i] {
				t.Fatalf("step %d: position %d holds seq %d, want %d", step, i, f.seq, model[i])
			}
		}
	}
}

// A subscriber that acknowledges in order, with a steady number in flight,
// costs its window no allocation: the array's front is reused.
func TestInflightWindowSteadyFlowDoesNotAllocate(t *testing.T) {
	var w inflightWindow
	seq := uint64(0)
	for range 64 {
		seq++
		w.push(&delivery{seq: seq})
	}
	// AllocsPerRun rounds down, so each run moves a thousand deliveries.
	allocs := testing.AllocsPerRun(100, func() {
		for range 1000 {
			seq++
			w.push(&delivery{seq: seq})
			w.remove(0)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.0f allocations a thousand deliveries, want 0", allocs)
	}
}

// A window that fills past what an empty one keeps, then empties, at each
// burst, takes its array from the pool again instead of growing anew.
func TestInflightWindowBurstsReuseArrays(t *testing.T) {
	var w inflightWindow
	seq := uint64(0)
	burst := func() {
		for range 300 {
			seq++
			w.push(&delivery{seq: seq})
		}
		for w.len() > 0 {
			w.remove(0)
		}
	}
	burst()
	if w.buf != nil {
		t.Fatalf("an empty window kept an array of %d", len(w.buf))
	}
	// AllocsPerRun rounds down: a pool emptied by a collection now and
	// then costs less than one allocation a burst. The race detector has
	// sync.Pool drop a quarter of what it is given: about two of a burst's
	// eight arrays (4 to 512) are then made again.
	most := 0.0
	if raceEnabled {
		most = 3
	}
	if allocs := testing.AllocsPerRun(100, burst); allocs > most {
		t.Fatalf("%.0f allocations a burst of 300, want at most %.0f", allocs, most)
	}
}

func TestWindowClass(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{1, 0}, {4, 0}, {5, 1}, {8, 1}, {9, 2}, {128, 5}, {129, 6}, {65536, 14}, {65537, -1},
	} {
		if got := windowClass(c.n); got != c.class {
			t.Errorf("windowClass(%d) = %d, want %d", c.n, got, c.class)
		}
	}
	for n := 1; n <= 70000; n++ {
		if c := windowClass(n); c >= 0 && minWindowArray<<c < n {
			t.Fatalf("windowClass(%d) = %d, whose arrays hold %d", n, c, minWindowArray<<c)
		}
	}
}
