package bufpool

import "testing"

func TestGetCapacity(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 100000, 1 << 20, 3 << 20} {
		b := Get(n)
		if len(b) != 0 || cap(b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(b), cap(b))
		}
		Put(b)
	}
}

func TestReuseKeepsContentsSafe(t *testing.T) {
	// A grown buffer comes back with its class's capacity, never more than it has.
	b := Get(512)
	b = append(b, make([]byte, 700)...) // grows past the class
	Put(b)
	for range 100 {
		c := Get(512)
		if cap(c) < 512 {
			t.Fatalf("cap %d < 512", cap(c))
		}
		c = append(c, make([]byte, cap(c))...)
		Put(c)
	}
}

func TestPutDoesNotAllocate(t *testing.T) {
	b := Get(4096)
	allocs := testing.AllocsPerRun(1000, func() {
		Put(b)
		b = Get(4096)
	})
	if allocs != 0 {
		t.Fatalf("Get/Put allocate %.1f times per round", allocs)
	}
}

func TestGrowKeepsBytesAndMakesRoom(t *testing.T) {
	b := append(Get(10), "hello"...)
	if g := Grow(b, 3); &g[0] != &b[0] {
		t.Error("Grow moved a buffer that had room")
	}
	g := Grow(b, 10<<10)
	if string(g) != "hello" || cap(g)-len(g) < 10<<10 {
		t.Errorf("Grow: %q with room %d, want hello with room for 10 KiB", g, cap(g)-len(g))
	}
	if cap(g) != 32<<10 {
		t.Errorf("Grow: capacity %d, want the pooled class 32 KiB", cap(g))
	}
}
