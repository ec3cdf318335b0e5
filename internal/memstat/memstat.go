// Package memstat samples a process's memory for the idle-connection
// measurements (tests and benchmarks only; the broker does not use it).
package memstat

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// Sample is the memory of this process at one moment, after a GC.
type Sample struct {
	Heap, Stack, RSS int64 // HeapInuse, StackInuse, VmRSS in bytes
	Goroutines       int
}

// HeapStack is what the Go runtime holds for live objects and stacks.
func (s Sample) HeapStack() int64 { return s.Heap + s.Stack }

// Take collects garbage, returns freed memory to the OS and samples.
func Take() Sample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Sample{Heap: int64(ms.HeapInuse), Stack: int64(ms.StackInuse), RSS: VmRSS(), Goroutines: runtime.NumGoroutine()}
}

// VmRSS is the resident set size in bytes, or 0 where /proc is missing.
func VmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}
