package testdisk

import (
	"errors"
	"os"
	"syscall"
)

func mount(dir, size string) error {
	if os.Getuid() != 0 {
		return errors.New("needs root")
	}
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size)
}

func unmount(dir string) error { return syscall.Unmount(dir, 0) }

func avail(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}
