//go:build !unix

package bench

import (
	"fmt"
	"os"
	"runtime"
)

// mapShared would map f for the processes of a run to share: they share
// it through mmap, which is not implemented here, so --procs is refused.
func mapShared(*os.File, int) ([]byte, error) {
	return nil, fmt.Errorf("the processes of --procs share their counters through mmap, not available on %s", runtime.GOOS)
}

func unmapBoard([]byte) {}
