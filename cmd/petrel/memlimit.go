package main

import (
	"log/slog"
	"os"
	"runtime/debug"

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
// returns a function that puts back the limit in force before.
func setMemoryLimit(l config.Limits, log *slog.Logger) (restore func()) {
	if v, set := os.LookupEnv("GOMEMLIMIT"); set {
		log.Info("memory: GOMEMLIMIT is set; no limit derived from the configuration", "GOMEMLIMIT", v,
			"limit", config.Size(debug.SetMemoryLimit(-1)).String())
		return func() {}
	}
	limit := memoryLimit(l)
	if limit == 0 {
		log.Info("memory: no soft limit (limits.queued_memory is unlimited); set GOMEMLIMIT to have one")
		return func() {}
	}
	prev := debug.SetMemoryLimit(limit)
	log.Info("memory: soft limit set (GOMEMLIMIT overrides it)", "limit", config.Size(debug.SetMemoryLimit(-1)).String(),
		"from", "limits.queued_memory + limits.max_connections × limits.max_outbound_bytes + "+config.Size(memoryHeadroom).String())
	return func() { debug.SetMemoryLimit(prev) }
}
