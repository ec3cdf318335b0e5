package broker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestSessionTableAgainstMap runs random sets, replacements, deletes and
// gets on a table and on a map, and checks that they agree. The small key
// pools fill a table of 8 slots to 7/8 and wrap its runs around the end;
// the large one grows it and, once most keys are deleted, shrinks it.
func TestSessionTableAgainstMap(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, keys := range []int{3, 10, 100, 5000} {
		ids := make([]string, keys)
		for i := range ids {
			ids[i] = fmt.Sprintf("client-%d", i)
		}
		var tab sessionTable
		ref := make(map[string]*session)
		check := func(op string) {
			t.Helper()
			checkSessionTable(t, &tab, ref, fmt.Sprintf("%d keys, seed %d, after %s", keys, seed, op))
		}
		for round := range 3 {
			// Fill mostly, then empty mostly: growth, then shrinking.
			for _, pSet := range []float64{0.8, 0.1} {
				for i := range 10 * keys {
					id := ids[rng.IntN(keys)]
					op := "get " + id
					switch r := rng.Float64(); {
					case r < pSet:
						ss := &session{clientID: id}
						tab.set(ss)
						ref[id] = ss
						op = "set " + id
					case r < 0.9:
						tab.delete(id)
						delete(ref, id)
						op = "delete " + id
					}
					if got, want := tab.get(id), ref[id]; got != want {
						t.Fatalf("%d keys, seed %d, round %d: get(%q) after %s = %p; want %p", keys, seed, round, id, op, got, want)
					}
					if i%max(97, keys/8) == 0 {
						check(op)
					}
				}
				check(fmt.Sprintf("round %d, pSet %v", round, pSet))
			}
		}
	}
}

// checkSessionTable compares tab with ref in full, and checks its size.
func checkSessionTable(t *testing.T, tab *sessionTable, ref map[string]*session, when string) {
	t.Helper()
	if tab.len() != len(ref) {
		t.Fatalf("%s: len %d; want %d", when, tab.len(), len(ref))
	}
	for id, ss := range ref {
		if got := tab.get(id); got != ss {
			t.Fatalf("%s: get(%q) = %p; want %p", when, id, got, ss)
		}
	}
	seen := make(map[*session]bool, len(ref))
	for ss := range tab.all() {
		if seen[ss] {
			t.Fatalf("%s: all yields %q twice", when, ss.clientID)
		}
		seen[ss] = true
		if ref[ss.clientID] != ss {
			t.Fatalf("%s: all yields %q (%p), which the map does not hold", when, ss.clientID, ss)
		}
	}
	if len(seen) != len(ref) {
		t.Fatalf("%s: all yields %d sessions; want %d", when, len(seen), len(ref))
	}
	size := len(tab.slots)
	if len(tab.dist) != size {
		t.Fatalf("%s: %d distances for %d slots", when, len(tab.dist), size)
	}
	for i, ss := range tab.slots {
		if ss == nil {
			continue
		}
		d := (i - tab.home(ss.clientID, size-1)) & (size - 1)
		if want := min(d, sessionTableFar); int(tab.dist[i]) != want {
			t.Fatalf("%s: slot %d (%q) has distance %d; want %d", when, i, ss.clientID, tab.dist[i], want)
		}
	}
	switch {
	case size == 0 && tab.n == 0:
	case size < sessionTableMin || size&(size-1) != 0:
		t.Fatalf("%s: %d slots: not a power of two from %d", when, size, sessionTableMin)
	case tab.n*sessionTableGrowDen > size*sessionTableGrowNum:
		t.Fatalf("%s: %d sessions in %d slots: fuller than 7/8", when, tab.n, size)
	case size > sessionTableMin && tab.n*sessionTableShrinkDen < size:
		t.Fatalf("%s: %d sessions in %d slots: emptier than 1/8", when, tab.n, size)
	}
}

// TestSessionTableOneHome fills a table with client ids of one home
// slot: a run longer than a slot's distance can say, whose far end a probe
// must compare in full and a delete must hash.
func TestSessionTableOneHome(t *testing.T) {
	var tab sessionTable
	tab.resize(400)
	size := len(tab.slots)
	var ids []string
	for i := 0; len(ids) < 400; i++ {
		if id := fmt.Sprint(i); tab.home(id, size-1) == 0 {
			ids = append(ids, id)
		}
	}
	ref := make(map[string]*session)
	for _, id := range ids {
		ss := &session{clientID: id}
		tab.set(ss)
		ref[id] = ss
	}
	if len(tab.slots) != size {
		t.Fatalf("the table grew to %d slots; the test wants %d", len(tab.slots), size)
	}
	checkSessionTable(t, &tab, ref, "the sets")
	if far := bytes.Count(tab.dist, []byte{sessionTableFar}); far != 400-sessionTableFar {
		t.Fatalf("%d slots are far from home; want %d", far, 400-sessionTableFar)
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	for _, i := range rng.Perm(len(ids)) {
		id := ids[i]
		if rng.IntN(4) == 0 {
			ss := &session{clientID: id}
			tab.set(ss)
			ref[id] = ss
		}
		tab.delete(id)
		delete(ref, id)
		if tab.get(id) != nil {
			t.Fatalf("get(%q) after its delete found it", id)
		}
		checkSessionTable(t, &tab, ref, "delete "+id)
	}
}

func TestSessionTableZeroValue(t *testing.T) {
	var tab sessionTable
	if tab.get("a") != nil || tab.len() != 0 {
		t.Fatal("an empty table holds something")
	}
	tab.delete("a")
	tab.deleteIf(&session{clientID: "a"})
	for ss := range tab.all() {
		t.Fatalf("an empty table yields %q", ss.clientID)
	}
}

func TestSessionTableDeleteIf(t *testing.T) {
	var tab sessionTable
	old, cur := &session{clientID: "a"}, &session{clientID: "a"}
	tab.set(old)
	tab.set(cur)
	tab.deleteIf(old)
	if tab.get("a") != cur {
		t.Fatal("deleteIf of a replaced session removed its successor")
	}
	tab.deleteIf(cur)
	if tab.get("a") != nil || tab.len() != 0 {
		t.Fatal("deleteIf left the session in the table")
	}
}

// TestSessionTableGivesMemoryBack: a storm of clients that went leaves
// the table as small as the sessions that stayed need.
func TestSessionTableGivesMemoryBack(t *testing.T) {
	var tab sessionTable
	for i := range 100_000 {
		tab.set(&session{clientID: fmt.Sprint(i)})
	}
	if size := len(tab.slots); size != 1<<17 {
		t.Fatalf("100,000 sessions in %d slots; want %d", size, 1<<17)
	}
	for i := 3; i < 100_000; i++ {
		tab.delete(fmt.Sprint(i))
	}
	if size := len(tab.slots); size != sessionTableMin {
		t.Fatalf("3 sessions left in %d slots; want %d", size, sessionTableMin)
	}
}

func TestSessionTableChangedWhileIterated(t *testing.T) {
	var tab sessionTable
	tab.set(&session{clientID: "a"})
	tab.set(&session{clientID: "b"})
	defer func() {
		if recover() == nil {
			t.Fatal("deleting while iterating did not panic")
		}
		if tab.walking != 0 {
			t.Fatalf("walking is %d after the loop; want 0", tab.walking)
		}
		tab.delete("a") // allowed again
	}()
	for ss := range tab.all() {
		tab.delete(ss.clientID)
	}
}

// FuzzSessionTable reads ops from the input, two bytes each: the op, and
// the client id among 64.
func FuzzSessionTable(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 1, 2, 2})
	f.Add([]byte{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 1, 1, 1, 5, 0, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var tab sessionTable
		ref := make(map[string]*session)
		for i := 0; i+1 < len(ops); i += 2 {
			id := fmt.Sprintf("c%d", ops[i+1]%64)
			switch ops[i] % 3 {
			case 0:
				ss := &session{clientID: id}
				tab.set(ss)
				ref[id] = ss
			case 1:
				tab.delete(id)
				delete(ref, id)
			}
			if got, want := tab.get(id), ref[id]; got != want {
				t.Fatalf("op %d: get(%q) = %p; want %p", i/2, id, got, want)
			}
		}
		checkSessionTable(t, &tab, ref, "the ops")
	})
}

// BenchmarkSessionTable compares the table with the map it replaced: a
// hit, a miss, a client that comes and goes (set, then delete) over and
// over, and a new client that connects (get, set) and goes, in a
// table of n sessions: each n fills the table nearly to where it grows,
// where it probes longest. B/entry is the live heap of the table or map per
// session.
//
//	go test -run=NONE -bench=SessionTable -benchmem ./broker
func BenchmarkSessionTable(b *testing.B) {
	for _, size := range []int{1 << 14, 1 << 20} {
		n := size*sessionTableGrowNum/sessionTableGrowDen - 100
		ids, misses := make([]string, n), make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("client-%07d", i)
			misses[i] = fmt.Sprintf("client+%07d", i) // as long as a hit: compared to the end
		}
		sessions := make([]*session, n)
		for i, id := range ids {
			sessions[i] = &session{clientID: id}
		}
		// A client id never seen, as in a storm of new clients: the
		// lookup at CONNECT misses, the session goes in, and it leaves at
		// the DISCONNECT of a clean session.
		fresh := make([]*session, n)
		for i := range fresh {
			fresh[i] = &session{clientID: misses[i]}
		}
		churn := make([]*session, 1024)
		for i := range churn {
			churn[i] = &session{clientID: fmt.Sprintf("churn-%04d", i)}
		}
		kinds := []struct {
			name   string
			build  func() any
			get    func(t any, id string) *session
			set    func(t any, ss *session)
			delete func(t any, id string)
		}{
			{"map", func() any {
				m := make(map[string]*session)
				for _, ss := range sessions {
					m[ss.clientID] = ss
				}
				return m
			},
				func(t any, id string) *session { return t.(map[string]*session)[id] },
				func(t any, ss *session) { t.(map[string]*session)[ss.clientID] = ss },
				func(t any, id string) { delete(t.(map[string]*session), id) }},
			{"table", func() any {
				tab := &sessionTable{}
				for _, ss := range sessions {
					tab.set(ss)
				}
				return tab
			},
				func(t any, id string) *session { return t.(*sessionTable).get(id) },
				func(t any, ss *session) { t.(*sessionTable).set(ss) },
				func(t any, id string) { t.(*sessionTable).delete(id) }},
		}
		for _, k := range kinds {
			// Copies to a million entries or more, for the heap's noise
			// to vanish in them.
			copies := make([]any, 1+1_000_000/n)
			before := liveHeap()
			for i := range copies {
				copies[i] = k.build()
			}
			perEntry := float64(liveHeap()-before) / float64(n*len(copies))
			t := copies[0]
			copies = nil
			b.Run(fmt.Sprintf("%s/n=%d/hit", k.name, n), func(b *testing.B) {
				for i := range b.N {
					if k.get(t, ids[i%n]) == nil {
						b.Fatal("miss")
					}
				}
				b.ReportMetric(perEntry, "B/entry")
			})
			b.Run(fmt.Sprintf("%s/n=%d/miss", k.name, n), func(b *testing.B) {
				for i := range b.N {
					if k.get(t, misses[i%n]) != nil {
						b.Fatal("hit")
					}
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/churn", k.name, n), func(b *testing.B) {
				for i := range b.N {
					ss := churn[i%len(churn)]
					k.set(t, ss)
					k.delete(t, ss.clientID)
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/connect", k.name, n), func(b *testing.B) {
				for i := range b.N {
					ss := fresh[i%n]
					if k.get(t, ss.clientID) != nil {
						b.Fatal("hit")
					}
					k.set(t, ss)
					k.delete(t, ss.clientID)
				}
			})
			runtime.KeepAlive(t)
		}
	}
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
