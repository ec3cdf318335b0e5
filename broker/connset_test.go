package broker

import (
	"math/rand/v2"
	"testing"
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
		if c := cap(cs.shards[i].conns); c > 1024 && len(cs.shards[i].conns) < c/4 {
			t.Errorf("shard %d keeps %d slots for %d connections", i, c, len(cs.shards[i].conns))
		}
	}
	for c := range in {
		cs.remove(c)
		delete(in, c)
	}
	check("after removing all")
}
