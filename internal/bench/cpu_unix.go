//go:build unix

package bench

import "golang.org/x/sys/unix"

// readCPU is this process's CPU time so far (getrusage).
func readCPU() cpuTime {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return cpuTime{}
	}
	return cpuTime{
		user: float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6,
		sys:  float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6,
	}
}
