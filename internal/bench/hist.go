package bench

import (
	"math/bits"
	"sync/atomic"
)

// A histogram of durations in nanoseconds, log-linear as HdrHistogram's:
// values below 2·histSub are counted exactly, and every power of two above
// is split into histSub buckets, so a bucket is never wider than 1/histSub
// (1.6%) of the values it holds. The array is fixed, recording is one
// atomic add (subscribers' read goroutines share a histogram) and nothing
// is allocated per sample.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// histMaxBits bounds the values kept apart: 2^40 ns is 18 minutes;
	// larger values land in the last bucket (max is still exact).
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Int64
}

// histBucket is the bucket of v (v ≥ 0).
func histBucket(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	i := (shift+1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// histLow is the smallest value of bucket i, and histWidth its width.
func histLow(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	return int64(i%histSub+histSub) << shift
}

func histWidth(i int) int64 {
	if i < 2*histSub {
		return 1
	}
	return 1 << (i/histSub - 1)
}

func (h *histogram) record(v int64) {
	v = max(v, 0)
	h.counts[histBucket(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantile is the value at or below which a fraction q of the samples lie:
// the middle of its bucket, never above the largest sample.
func (h *histogram) quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(histLow(i)+histWidth(i)/2, h.max.Load())
		}
	}
	return h.max.Load()
}

func (h *histogram) mean() int64 {
	if n := h.n.Load(); n > 0 {
		return int64(h.sum.Load() / n)
	}
	return 0
}

// histWire is a histogram on the wire between the processes of a run:
// its non-empty buckets only.
type histWire struct {
	Buckets [][2]uint64 `json:"buckets"` // bucket index, count
	N       uint64      `json:"n"`
	Sum     uint64      `json:"sum"`
	Max     int64       `json:"max"`
}

func (h *histogram) wire() histWire {
	w := histWire{N: h.n.Load(), Sum: h.sum.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			w.Buckets = append(w.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return w
}

func (h *histogram) mergeWire(w histWire) {
	for _, b := range w.Buckets {
		if b[0] < histBuckets {
			h.counts[b[0]].Add(b[1])
		}
	}
	h.n.Add(w.N)
	h.sum.Add(w.Sum)
	if w.Max > h.max.Load() {
		h.max.Store(w.Max)
	}
}
