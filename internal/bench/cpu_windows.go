package bench

import "golang.org/x/sys/windows"

// readCPU is this process's CPU time so far (GetProcessTimes).
func readCPU() cpuTime {
	var creation, exit, kernel, user windows.Filetime
	if windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user) != nil {
		return cpuTime{}
	}
	return cpuTime{user: filetimeSeconds(user), sys: filetimeSeconds(kernel)}
}

// filetimeSeconds reads a FILETIME that holds a duration, in 100 ns units
// (its Nanoseconds method counts from 1601, for times).
func filetimeSeconds(t windows.Filetime) float64 {
	return float64(uint64(t.HighDateTime)<<32|uint64(t.LowDateTime)) / 1e7
}
