package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/config"
)

// Go's garbage collector lets the heap grow to twice what is live before
// it collects (GOGC=100): a broker whose queues hold their budget of
// limits.queued_memory would take twice that from the system. A soft
// memory limit (debug.SetMemoryLimit) makes the collector work harder
// as the heap nears the limit instead. The broker knows the budgets it
// was given, so `petrel serve` derives a limit from them unless the user
// set GOMEMLIMIT (which also accepts "off").
//
// It belongs here rather than in package broker: the limit is the whole
// process's, and a program that embeds the broker (or a test running many
// Servers in one process) knows its memory better than one Server does.

// memoryHeadroom is what the limit allows beyond the budgets: the runtime
// and the program, pebble's block cache (32 MiB) and write buffers, and
// the state of sessions, subscriptions and retained messages of a
// moderate broker. None of these has a configured bound.
const memoryHeadroom = 128 << 20

// memoryLimit is the soft limit the configuration implies: the headroom,
// the queued-message budget, and what connections may have waiting to be
// written when their number is bounded too. It is 0 (no limit) when the
// queued-message budget is unlimited, since then nothing bounds the heap.
func memoryLimit(l config.Limits) int64 {
	if l.QueuedMemory <= 0 {
		return 0
	}
	limit := memoryHeadroom + int64(l.QueuedMemory)
	if l.MaxConnections > 0 && l.MaxOutboundBytes > 0 {
		limit += int64(l.MaxConnections) * int64(l.MaxOutboundBytes)
	}
	return limit
}

// setMemoryLimit applies memoryLimit unless GOMEMLIMIT is set, and
// returns a function that puts back the limit in force before, and the
// limit it set (0 for none).
func setMemoryLimit(l config.Limits, log *slog.Logger) (restore func(), limit int64) {
	if v, set := os.LookupEnv("GOMEMLIMIT"); set {
		log.Info("memory: GOMEMLIMIT is set; no limit derived from the configuration", "GOMEMLIMIT", v,
			"limit", config.Size(debug.SetMemoryLimit(-1)).String())
		return func() {}, 0
	}
	limit = memoryLimit(l)
	if limit == 0 {
		log.Info("memory: no soft limit (limits.queued_memory is unlimited); set GOMEMLIMIT to have one")
		return func() {}, 0
	}
	prev := debug.SetMemoryLimit(limit)
	log.Info("memory: soft limit set (GOMEMLIMIT overrides it)", "limit", config.Size(debug.SetMemoryLimit(-1)).String(),
		"from", "limits.queued_memory + limits.max_connections × limits.max_outbound_bytes + "+config.Size(memoryHeadroom).String())
	return func() { debug.SetMemoryLimit(prev) }, limit
}

// The headroom's share for the broker's state (retained messages,
// sessions, subscriptions): past it, the limit grows with the state. A
// broker holding 1,000,000 retained messages has about 450 MB of it, and
// with the limit below what is live the collector ran all the time: 12%
// fewer deliveries per CPU-second on fanin-q0 (measured, issue 21).
const stateAllowance = memoryHeadroom / 2

// memoryCheckEvery is how often the limit follows the state, and
// memoryCheckStarting how often while the broker starts.
const (
	memoryCheckEvery    = 2 * time.Second
	memoryCheckStarting = 250 * time.Millisecond
)

// limitWithState is the derived limit base raised by the live heap that no
// budget accounts for, beyond stateAllowance, with a quarter more for it to
// grow into before the next check. queued is what the queues hold of their
// budget (with the store's bytes too: the limit errs low, as before).
func limitWithState(base, live, queued int64) int64 {
	state := live - queued
	if state <= stateAllowance {
		return base
	}
	const mib = 1 << 20
	return base + ((state-stateAllowance)*5/4+mib-1)/mib*mib // whole MiB, for the log
}

// followState keeps the derived limit above the broker's state until done
// is closed: while the broker starts (a cluster node loads every retained
// message from the cluster before it serves: 1,000,000 of them took 8 to
// 11 s with the collector running all the time under the base limit, 5 s
// with the limit following) every memoryCheckStarting, then every
// memoryCheckEvery. Until started is closed, nothing counts as queued:
// the limit errs high while the store's sessions are recovered. A change
// of more than a tenth is logged.
func followState(base int64, srv *broker.Server, log *slog.Logger, started, done <-chan struct{}) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := base
	t := time.NewTicker(memoryCheckStarting)
	defer t.Stop()
	starting := true
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live := int64(sample[0].Value.Uint64())
			var queued int64
			if !starting {
				queued = srv.Stats().QueuedBytes
			}
			limit := limitWithState(base, live, queued)
			if limit != current {
				debug.SetMemoryLimit(limit)
				if d := limit - current; d > current/10 || -d > current/10 {
					log.Info("memory: soft limit follows the broker's state", "limit", config.Size(limit).String(),
						"live_heap", config.Size(live).String(), "configured", config.Size(base).String())
				}
				current = limit
			}
		}
		select {
		case <-done:
			return
		case <-started:
			started = nil
			starting = false
			t.Reset(memoryCheckEvery)
		case <-t.C:
		}
	}
}
