package bench

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// PinCPUs pins every thread of this process to cpus and sets GOMAXPROCS to
// their number. The Go runtime makes new threads from existing ones, which
// pass their affinity on; threads listed twice close the race with one
// made meanwhile.
func PinCPUs(cpus []int) error {
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	runtime.GOMAXPROCS(len(cpus))
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return unix.SchedSetaffinity(0, &set)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return err
			}
		}
	}
	return nil
}
