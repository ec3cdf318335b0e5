//go:build unix

package bench

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mapShared maps size bytes of f, shared with the other processes that map
// it.
func mapShared(f *os.File, size int) ([]byte, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return mem, nil
}

func unmapBoard(mem []byte) { unix.Munmap(mem) }
