package bench

import "golang.org/x/sys/unix"

// sharedClock reads CLOCK_MONOTONIC in nanoseconds, which every process
// of a run shares.
func sharedClock() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
