//go:build !linux

package bench

// procCPU and procRSS read another process's CPU time and memory from
// Linux's /proc: elsewhere there is none, and the reports leave them out.
func procCPU(int) (float64, bool) { return 0, false }

func procRSS(int) (rss, anon int64) { return 0, 0 }
