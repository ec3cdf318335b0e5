package main

import (
	"runtime/metrics"
	"testing"
)

// The trim waits for trimQuietChecks quiet looks, then collects only when
// the heap grew enough since the last collection; a busy look starts the
// wait again, and a trim is not repeated until the heap grows again.
func TestTrimWaitsForQuietAfterGrowth(t *testing.T) {
	const mib = 1 << 20
	var st trimState
	look := func(allocs, live, objects, free uint64) bool {
		return st.next(heapSample{allocs: allocs, live: live, objects: objects, free: free})
	}
	const kib = 1 << 10
	steps := []struct {
		name                        string
		allocs, live, objects, free uint64
		want                        bool
	}{
		{"a burst", 200 * mib, 40 * mib, 70 * mib, 0, false},
		{"one quiet look is not enough", 200*mib + 10*kib, 40 * mib, 70 * mib, 0, false},
		{"two: 30 MiB grown, above an eighth of 40", 200*mib + 20*kib, 40 * mib, 70 * mib, 0, true},
		{"quiet after the trim", 200*mib + 30*kib, 70 * mib, 70 * mib, 0, false},
		{"quiet twice, but nothing grew since the trim", 200*mib + 40*kib, 70 * mib, 70 * mib, 0, false},
		{"a slow storm: a MiB a second is not quiet", 201 * mib, 70 * mib, 80 * mib, 0, false},
		{"quiet once", 201*mib + 1, 70 * mib, 80 * mib, 0, false},
		{"busy again: the wait starts over", 202 * mib, 70 * mib, 81 * mib, 0, false},
		{"quiet once more", 202*mib + 1, 70 * mib, 81 * mib, 0, false},
		{"quiet twice, 11 MiB grown, above 70/8", 202*mib + 2, 70 * mib, 81 * mib, 0, true},
		{"quiet after the trim, 5 MiB grown", 202*mib + 3, 80 * mib, 85 * mib, 0, false},
		{"quiet twice, 5 MiB grown: below an eighth of 80", 202*mib + 4, 80 * mib, 85 * mib, 0, false},
		{"quiet, and free pages count too", 202*mib + 5, 80 * mib, 85 * mib, 6 * mib, true},
		{"a small heap, quiet once", 202*mib + 6, 1 * mib, 1*mib + mib/2, 0, false},
		{"quiet twice, grown below trimMin", 202*mib + 7, 1 * mib, 1*mib + mib/2, 0, false},
		{"quiet, grown above trimMin", 202*mib + 8, 1 * mib, 3 * mib, 0, true},
	}
	for _, s := range steps {
		if got := look(s.allocs, s.live, s.objects, s.free); got != s.want {
			t.Errorf("%s: trim %v, want %v", s.name, got, s.want)
		}
	}
}

// The metrics the trim reads exist in this runtime: without them it would
// quietly never run.
func TestTrimMetricsExist(t *testing.T) {
	s := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		s[i].Name = name
	}
	h, ok := readHeap(s)
	if !ok {
		t.Fatalf("runtime/metrics lacks one of %v", trimMetrics)
	}
	if h.allocs == 0 || h.objects == 0 {
		t.Errorf("heap sample %+v: allocations and objects should not be 0", h)
	}
}

// readHeap runs every second for the life of the process: it must not add
// garbage of its own.
func TestReadHeapDoesNotAllocate(t *testing.T) {
	s := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		s[i].Name = name
	}
	if _, ok := readHeap(s); !ok {
		t.Fatal("readHeap: a metric is missing")
	}
	if n := testing.AllocsPerRun(100, func() { readHeap(s) }); n != 0 {
		t.Fatalf("readHeap allocates %v times a call", n)
	}
}
