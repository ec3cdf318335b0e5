//go:build !linux

package bench

import (
	"fmt"
	"runtime"
)

// PinCPUs would pin this process to cpus: only Linux lets a process set
// the affinity of its threads, so elsewhere it says so and pins nothing.
func PinCPUs(cpus []int) error {
	return fmt.Errorf("pinning threads to CPUs is available on Linux only, not on %s", runtime.GOOS)
}
