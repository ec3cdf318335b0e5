package main

import (
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/petrelmq/petrel/internal/config"
)

// A burst (a reconnect storm, a backlog drained) leaves the heap with its
// garbage and with free pages the runtime keeps for the next burst. Go
// gives memory back to the system as the heap shrinks below its goal, which
// a broker that went quiet never comes near: it allocates too little to
// reach the next collection, so after a storm of 20,000 connections about
// a fifth of what the process held was no connection's. `petrel serve`
// watches for the quiet after a burst and then collects once and returns
// the free pages (debug.FreeOSMemory).
//
// Like the memory limit (memlimit.go), this is the process's business, not
// one Server's: a program that embeds the broker decides for itself.

const (
	// trimCheckEvery is how often the allocation rate is looked at.
	trimCheckEvery = time.Second
	// trimQuietRate: a process that allocated less than this in each of
	// the last trimQuietChecks looks is quiet. A storm of connections
	// allocates more than a MiB a second; 20,000 idle clients pinging
	// every minute allocate next to nothing.
	trimQuietRate   = 64 << 10
	trimQuietChecks = 2
	// trimMin is the least the heap must have grown by since the last
	// collection for one to be worth it; past it, an eighth of the live
	// heap, so that a process that stays quiet collects for this at most
	// once per live/8 ÷ trimQuietRate seconds.
	trimMin = 1 << 20
)

// trimState is what trimWhenIdle remembers between looks.
type trimState struct {
	allocs uint64 // bytes allocated in all, at the last look
	quiet  int    // consecutive quiet looks
}

// heapSample is one look at the runtime's heap.
type heapSample struct {
	allocs  uint64 // bytes allocated in all
	live    uint64 // live heap at the last collection
	objects uint64 // heap objects now, live or not yet collected
	free    uint64 // free heap pages not given back to the system
}

// next takes one look and reports whether to collect and give memory back
// now: the process has been quiet for trimQuietChecks looks, and the heap
// grew enough since the last collection (what it would free is at most
// that growth, plus the pages already free) to be worth one.
func (t *trimState) next(h heapSample) bool {
	if h.allocs-t.allocs < trimQuietRate {
		t.quiet++
	} else {
		t.quiet = 0
	}
	t.allocs = h.allocs
	if t.quiet < trimQuietChecks {
		return false
	}
	var grown uint64
	if h.objects > h.live {
		grown = h.objects - h.live
	}
	if grown+h.free < max(trimMin, h.live/8) {
		return false
	}
	t.quiet = 0
	return true
}

var trimMetrics = []string{"/gc/heap/allocs:bytes", "/gc/heap/live:bytes", "/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes"}

// readHeap takes a heapSample, without allocating (it runs every second);
// ok is false where the runtime lacks a metric.
func readHeap(s []metrics.Sample) (h heapSample, ok bool) {
	metrics.Read(s)
	for i, dst := range [...]*uint64{&h.allocs, &h.live, &h.objects, &h.free} {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return heapSample{}, false
		}
		*dst = s[i].Value.Uint64()
	}
	return h, true
}

// trimWhenIdle gives memory back after each burst until done is closed.
func trimWhenIdle(log *slog.Logger, done <-chan struct{}) {
	s := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		s[i].Name = name
	}
	var st trimState
	if h, ok := readHeap(s); ok {
		st.allocs = h.allocs
	} else {
		return
	}
	t := time.NewTicker(trimCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		h, _ := readHeap(s)
		if !st.next(h) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		after, _ := readHeap(s)
		st.allocs = after.allocs
		log.Debug("memory: quiet after a burst; collected and gave free memory back",
			"heap_before", config.Size(int64(h.objects)).String(), "live_heap", config.Size(int64(after.live)).String(),
			"took", time.Since(start).Round(time.Microsecond))
	}
}
