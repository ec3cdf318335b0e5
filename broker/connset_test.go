package broker

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The set of open connections stays exact through adds and removes in any
// order, removing twice or what was never added does nothing, and a shard
// that held a storm gives most of its slots back once it empties.
func TestConnSet(t *testing.T) {
	var cs connSet
	const n = 20000
	all := make([]*conn, n)
	in := map[*conn]bool{}
	for i := range all {
		all[i] = new(conn)
		cs.add(all[i])
		in[all[i]] = true
	}
	check := func(when string) {
		t.Helper()
		got := map[*conn]bool{}
		cs.each(func(c *conn) {
			if got[c] {
				t.Fatalf("%s: a connection listed twice", when)
			}
			got[c] = true
		})
		if len(got) != len(in) {
			t.Fatalf("%s: %d connections in the set, want %d", when, len(got), len(in))
		}
		for c := range in {
			if !got[c] {
				t.Fatalf("%s: a connection is missing", when)
			}
		}
	}
	check("after adding")
	cs.remove(new(conn)) // never added
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(n)[:n-100] {
		cs.remove(all[i])
		cs.remove(all[i]) // twice
		delete(in, all[i])
	}
	check("after removing most")
	for i := range cs.shards {
		for s, slot := range cs.shards[i].wheel {
			if c := cap(slot); c > 1024 && len(slot) < c/4 {
				t.Errorf("shard %d slot %d keeps room for %d connections, holding %d", i, s, c, len(slot))
			}
		}
	}
	for c := range in {
		cs.remove(c)
		delete(in, c)
	}
	check("after removing all")
}

// The sweep reports a connection at the first sweep after its deadline and
// at every sweep after that while it is open, never before; one whose
// deadline moved earlier without a refile (an incomplete packet's) within
// ahead sweeps of it; one refiled at its new deadline; a held-back one
// never; a full window at every sweep from its first look on.
func TestConnSetSweep(t *testing.T) {
	cs := connSet{ahead: wheelAhead(30*time.Second, 30*time.Second)}
	if cs.ahead != 30 {
		t.Fatalf("ahead %d sweeps, want 30 (7.5 s)", cs.ahead)
	}
	base := time.Now().UnixNano()
	at := func(d time.Duration) int64 { return base + int64(d) }
	mk := func(deadline int64) *conn {
		c := new(conn)
		c.deadline.Store(deadline)
		cs.add(c)
		return c
	}
	keepAlive := mk(at(2100 * time.Millisecond))
	none := mk(0)
	later := mk(at(100 * time.Second))
	partial := mk(0)
	partial.partial.Store(at(time.Second)) // no refile, as conn_in.go does
	refiled := mk(at(100 * time.Second))
	refiled.deadline.Store(at(time.Second))
	cs.refile(refiled)
	held := mk(at(time.Second))
	held.flags.Or(flagHeldBack)
	full := mk(0)
	ss := new(session)
	ss.load.Store(loadFull)
	full.sess.Store(ss)

	firstDue := map[*conn]time.Duration{}
	firstFull := time.Duration(0)
	for k := 1; k <= 200; k++ {
		now := time.Duration(k) * sweepInterval
		due, fulls := cs.sweep(at(now), true)
		seen := map[*conn]bool{}
		for _, c := range due {
			seen[c] = true
			if _, ok := firstDue[c]; !ok {
				firstDue[c] = now
			}
		}
		for c, first := range firstDue {
			if !seen[c] {
				t.Fatalf("at %v: a connection due since %v was not reported again", now, first)
			}
		}
		switch {
		case len(fulls) == 1 && fulls[0] == full:
			if firstFull == 0 {
				firstFull = now
			}
		case len(fulls) > 0:
			t.Fatalf("at %v: %d full windows reported", now, len(fulls))
		case firstFull != 0:
			t.Fatalf("at %v: the full window, seen from %v, was not reported", now, firstFull)
		}
	}
	want := func(name string, c *conn, from, to time.Duration) {
		t.Helper()
		got, ok := firstDue[c]
		if !ok || got < from || got > to {
			t.Errorf("%s: first reported due at %v (reported: %v), want between %v and %v", name, got, ok, from, to)
		}
	}
	want("keep alive", keepAlive, 2250*time.Millisecond, 2250*time.Millisecond)
	want("refiled", refiled, 1250*time.Millisecond, 1250*time.Millisecond)
	want("incomplete packet", partial, 1250*time.Millisecond, 7750*time.Millisecond)
	for name, c := range map[string]*conn{"no deadline": none, "100 s": later, "held back": held, "full": full} {
		if got, ok := firstDue[c]; ok {
			t.Errorf("%s: reported due at %v", name, got)
		}
	}
	if firstFull == 0 || firstFull > 7750*time.Millisecond {
		t.Errorf("the full window was first reported at %v, want by 7.75 s", firstFull)
	}
}

// Whatever the order of adds, refiles, removes and sweeps, and however the
// sweeps move slots (whole, merged with a slot already holding some, or
// one by one), every connection is in exactly one slot, at the place it
// knows, until it is removed.
func TestConnSetWheelPlaces(t *testing.T) {
	cs := connSet{ahead: 30}
	r := rand.New(rand.NewPCG(3, 4))
	base := time.Now().UnixNano()
	in := map[*conn]bool{}
	check := func(step int) {
		t.Helper()
		n := 0
		for i := range cs.shards {
			sh := &cs.shards[i]
			for s, slot := range sh.wheel {
				for j, c := range slot {
					if gs, gi := c.wheelAt(); gs != s || gi != j {
						t.Fatalf("step %d: a connection at slot %d place %d thinks it is at %d, %d", step, s, j, gs, gi)
					}
					if !in[c] {
						t.Fatalf("step %d: a removed connection is still on the wheel", step)
					}
					n++
				}
			}
		}
		if n != len(in) {
			t.Fatalf("step %d: %d connections on the wheel, want %d", step, n, len(in))
		}
	}
	now := base
	for step := range 3000 {
		switch op := r.IntN(10); {
		case op < 4: // a few connections, some with deadlines soon, some far, some none
			for range r.IntN(50) {
				c := new(conn)
				switch r.IntN(3) {
				case 0:
					c.deadline.Store(now + int64(r.IntN(20))*int64(sweepInterval))
				case 1:
					c.deadline.Store(now + int64(time.Hour))
				}
				cs.add(c)
				in[c] = true
			}
		case op < 6: // some removed
			for c := range in {
				if r.IntN(4) == 0 {
					cs.remove(c)
					delete(in, c)
				}
			}
		case op < 7: // some deadlines brought forward and refiled
			for c := range in {
				if r.IntN(8) == 0 {
					c.deadline.Store(now + int64(sweepInterval))
					cs.refile(c)
				}
			}
		default: // time passes, by one sweep or by many
			now += int64(sweepInterval) * int64(1+r.IntN(40))
			due, _ := cs.sweep(now, false)
			for _, c := range due {
				if r.IntN(2) == 0 { // some of those due close
					cs.remove(c)
					delete(in, c)
				}
			}
		}
		check(step)
	}
}
