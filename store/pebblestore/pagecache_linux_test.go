package pebblestore

import (
	"os"
	"syscall"
)

// dropPageCache writes out and drops the kernel's page cache (needs root).
func dropPageCache() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}
