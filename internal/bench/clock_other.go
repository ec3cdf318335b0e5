//go:build !linux

package bench

import "time"

// sharedClock reads the wall clock in nanoseconds: the processes of a run
// read it once each, at their start, and so agree to within what the
// system adjusted it by in between.
func sharedClock() int64 { return time.Now().UnixNano() }
