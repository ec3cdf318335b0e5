//go:build !unix && !windows

package bench

// readCPU would be this process's CPU time: there is no way to read it
// here, so the reports show none.
func readCPU() cpuTime { return cpuTime{} }
