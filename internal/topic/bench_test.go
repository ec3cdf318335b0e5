package topic

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// The benchmark workload: per tenant, 1,000 subscriptions of mixed shape,
//
//	800  tenant/<t>/device/<d>/temp    one device's own topic (d < 800)
//	150  tenant/<t>/device/<d>/#       everything of one device
//	 25  tenant/<t>/device/+/temp      a dashboard over one tenant
//	 15  tenant/<t>/#                  an archiver of one tenant
//	 10  +/<t>/device/<d>/+            a leading wildcard
//
// each from its own session, so the 80/20 mix of exact and wildcard filters
// holds at every size and a name matches about 41 subscriptions whatever the
// size: a flat Match time means the index scales.
const (
	subsPerTenant  = 1000
	devicesInUse   = 800  // exact subscriptions use devices below this
	devicesPerTent = 1000 // wildcard subscriptions pick among these
)

// benchSub is what a broker might keep per subscription: its session and
// options. With a uint64 key, an index entry is 24 bytes.
type benchSub struct {
	session uint64
	qos     uint8
	//lint:ignore U1000 never read: the field gives the entry a real subscription's size.
	noLocal bool
	//lint:ignore U1000 never read: the field gives the entry a real subscription's size.
	subID uint32
}

// shapedFilter returns the i-th filter of tenant t's mix; rng picks devices.
func shapedFilter(buf []byte, t, i int, firstDevice int, rng *rand.Rand) []byte {
	buf = buf[:0]
	dev := firstDevice + i
	switch {
	case i < 800:
	case i < 950:
		dev = rng.IntN(devicesPerTent)
	case i < 975:
		return fmt.Appendf(buf, "tenant/%d/device/+/temp", t)
	case i < 990:
		return fmt.Appendf(buf, "tenant/%d/#", t)
	default:
		return fmt.Appendf(buf, "+/%d/device/%d/+", t, rng.IntN(devicesPerTent))
	}
	buf = append(buf, "tenant/"...)
	buf = strconv.AppendInt(buf, int64(t), 10)
	buf = append(buf, "/device/"...)
	buf = strconv.AppendInt(buf, int64(dev), 10)
	if i < 800 {
		return append(buf, "/temp"...)
	}
	return append(buf, "/#"...)
}

// buildIndex returns an index of n subscriptions of the benchmark mix.
func buildIndex(n int) *Index[uint64, benchSub] {
	ix := NewIndex[uint64, benchSub]()
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	var buf []byte
	for s := range n {
		t, i := s/subsPerTenant, s%subsPerTenant
		buf = shapedFilter(buf, t, i, 0, rng)
		ix.Add(string(buf), uint64(s), benchSub{session: uint64(s), qos: 1})
	}
	return ix
}

// benchNames returns names that exact subscriptions of an n-subscription
// index hold, in random order.
func benchNames(n int) []string {
	rng := rand.New(rand.NewPCG(uint64(n), 2))
	tenants := max(n/subsPerTenant, 1)
	names := make([]string, 1<<14)
	for i := range names {
		names[i] = fmt.Sprintf("tenant/%d/device/%d/temp", rng.IntN(tenants), rng.IntN(devicesInUse))
	}
	return names
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[int]*Index[uint64, benchSub]{}
)

// fixture returns the n-subscription index, built once per test binary.
// Benchmarks that change it put it back as they found it.
func fixture(b *testing.B, n int) *Index[uint64, benchSub] {
	b.Helper()
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if ix, ok := fixtures[n]; ok {
		return ix
	}
	b.StopTimer()
	defer b.StartTimer()
	ix := buildIndex(n)
	fixtures[n] = ix
	return ix
}

var benchSizes = []int{1_000, 10_000, 100_000, 1_000_000}

// BenchmarkIndexMatch matches names that exact subscriptions hold: "random"
// draws from 16,384 of them, so a large index is read from main memory as a
// broker's would be; "hot" repeats one name, so the index's part of the cost
// shows without the cache misses.
func BenchmarkIndexMatch(b *testing.B) {
	for _, n := range benchSizes {
		for _, order := range []string{"random", "hot"} {
			b.Run(fmt.Sprintf("subs=%d/%s", n, order), func(b *testing.B) {
				ix := fixture(b, n)
				names := benchNames(n)
				mask := len(names) - 1
				if order == "hot" {
					mask = 0
				}
				dst := make([]benchSub, 0, 1024)
				matched := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					dst = ix.Match(names[i&mask], dst[:0])
					matched += len(dst)
				}
				b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
			})
		}
	}
}

// BenchmarkIndexMatchParallel runs BenchmarkIndexMatch's 1,000,000 case on
// every core at once; against the serial figure it shows what readers cost
// each other (the read lock's shared counter, memory bandwidth).
func BenchmarkIndexMatchParallel(b *testing.B) {
	for _, order := range []string{"random", "hot"} {
		b.Run(order, func(b *testing.B) {
			ix := fixture(b, 1_000_000)
			names := benchNames(1_000_000)
			mask := len(names) - 1
			if order == "hot" {
				mask = 0
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]benchSub, 0, 1024)
				i := rand.IntN(len(names))
				for pb.Next() {
					dst = ix.Match(names[i&mask], dst[:0])
					i++
				}
			})
		})
	}
}

// BenchmarkIndexMatchWhileWriting matches in parallel while another
// goroutine subscribes and unsubscribes without pause: the worst case for a
// read-write lock, as every write stops every reader.
func BenchmarkIndexMatchWhileWriting(b *testing.B) {
	ix := fixture(b, 1_000_000)
	names := benchNames(1_000_000)
	filters, keys := newSubscriptions(1_000_000)
	stop := make(chan struct{})
	writes := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for j := 0; ; j = (j + 1) % len(filters) {
			select {
			case <-stop:
				return
			default:
			}
			ix.Add(filters[j], keys[j], benchSub{session: keys[j]})
			ix.Remove(filters[j], keys[j])
			writes += 2
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]benchSub, 0, 1024)
		i := rand.IntN(len(names))
		for pb.Next() {
			dst = ix.Match(names[i&(len(names)-1)], dst[:0])
			i++
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(writes)/b.Elapsed().Seconds(), "writes/s")
}

// newSubscriptions returns subscriptions of the benchmark mix that an
// n-subscription index does not hold: new sessions, and new devices for the
// exact ones, so they add nodes as a real subscribe would.
func newSubscriptions(n int) (filters []string, keys []uint64) {
	count := max(n/10, 100)
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	tenants := max(n/subsPerTenant, 1)
	var buf []byte
	for j := range count {
		buf = shapedFilter(buf, rng.IntN(tenants), rng.IntN(subsPerTenant), devicesPerTent, rng)
		filters = append(filters, string(buf))
		keys = append(keys, uint64(n+j))
	}
	return filters, keys
}

// BenchmarkIndexAdd subscribes n/10 new sessions to an n-subscription index,
// timing only the Adds; it unsubscribes them, untimed, between batches.
func BenchmarkIndexAdd(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix := fixture(b, n)
			filters, keys := newSubscriptions(n)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				batch := min(len(filters), b.N-done)
				for j := range batch {
					ix.Add(filters[j], keys[j], benchSub{session: keys[j]})
				}
				b.StopTimer()
				for j := range batch {
					ix.Remove(filters[j], keys[j])
				}
				b.StartTimer()
				done += batch
			}
		})
	}
}

// BenchmarkIndexRemove unsubscribes what BenchmarkIndexAdd subscribes, timing
// only the Removes.
func BenchmarkIndexRemove(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix := fixture(b, n)
			filters, keys := newSubscriptions(n)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				batch := min(len(filters), b.N-done)
				b.StopTimer()
				for j := range batch {
					ix.Add(filters[j], keys[j], benchSub{session: keys[j]})
				}
				b.StartTimer()
				for j := range batch {
					ix.Remove(filters[j], keys[j])
				}
				done += batch
			}
		})
	}
}

// BenchmarkIndexFanout has 10,000 sessions on one filter: Match appends them
// all, and one more session subscribing and unsubscribing costs O(1).
func BenchmarkIndexFanout(b *testing.B) {
	const fans = 10_000
	ix := NewIndex[uint64, benchSub]()
	for k := range uint64(fans) {
		ix.Add("alerts/all", k, benchSub{session: k})
	}
	b.Run("match", func(b *testing.B) {
		dst := make([]benchSub, 0, fans)
		b.ReportAllocs()
		for b.Loop() {
			dst = ix.Match("alerts/all", dst[:0])
		}
		if len(dst) != fans {
			b.Fatalf("Match returned %d values, want %d", len(dst), fans)
		}
	})
	b.Run("add+remove", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := uint64(fans + i%fans)
			ix.Add("alerts/all", k, benchSub{session: k})
			ix.Remove("alerts/all", k)
		}
	})
}

// BenchmarkIndexMemory builds a 1,000,000-subscription index per op and
// reports the heap it holds per subscription and the build time.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	var bytesPerSub float64
	for b.Loop() {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		ix := buildIndex(n)
		b.StopTimer()
		bytesPerSub = float64(heapInUse()-before) / n
		runtime.KeepAlive(ix)
		b.StartTimer()
	}
	b.ReportMetric(bytesPerSub, "B/sub")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/sub")
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// benchMessage stands for a retained message; Retained holds a pointer to it.
type benchMessage struct{ payload []byte }

var (
	retainedOnce sync.Once
	retained1M   *Retained[benchMessage]
	retainedMem  float64
)

// retainedFixture returns 1,000,000 retained names, tenant/<t>/device/<d>/temp
// for 1,000 tenants of 1,000 devices, and the heap they hold per name.
func retainedFixture(b *testing.B) (*Retained[benchMessage], float64) {
	retainedOnce.Do(func() {
		b.StopTimer()
		defer b.StartTimer()
		msg := &benchMessage{payload: []byte("21.5")}
		before := heapInUse()
		r := NewRetained[benchMessage]()
		var buf []byte
		for t := range 1000 {
			for d := range 1000 {
				buf = fmt.Appendf(buf[:0], "tenant/%d/device/%d/temp", t, d)
				r.Set(string(buf), msg)
			}
		}
		retainedMem = float64(heapInUse()-before) / float64(r.Len())
		retained1M = r
	})
	return retained1M, retainedMem
}

func BenchmarkRetainedMatch(b *testing.B) {
	for _, bc := range []struct{ name, filter string }{
		{"exact", "tenant/421/device/7/temp"},
		{"plus", "tenant/421/device/+/temp"},
		{"hash", "tenant/421/#"},
		{"plus-first", "+/421/device/7/temp"},
		{"plus-plus", "tenant/+/device/7/+"},
		{"all", "#"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, perName := retainedFixture(b)
			found := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.Match(bc.filter, func(*benchMessage) bool { found++; return true })
			}
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
			b.ReportMetric(perName, "B/name")
		})
	}
}
