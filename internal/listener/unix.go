package listener

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// ListenUnix listens on a unix stream socket at path, for the goroutine
// driver. A socket file left at path by a process that died is removed
// first; anything else there (a live socket, a regular file, a directory)
// is an error and is left alone. mode, when not zero, becomes the socket's
// permissions: connecting needs write permission, so 0660 lets the owner
// and the group in. Until the chmod, right after the bind, the permissions
// are those the umask gives; the directory's permissions are what guard
// the socket throughout. Closing the listener removes the file.
func ListenUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	if mode != 0 {
		if err := os.Chmod(path, mode.Perm()); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listener: setting the socket's permissions: %w", err)
		}
	}
	return ln, nil
}

// removeStaleSocket removes path if it is a socket nobody listens on.
// Between the check and the removal another process could bind it; two
// brokers started at the same instant on one path are not guarded against.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listener: %s exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("listener: %s is in use: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Permission denied, a full backlog of a live listener...: not
		// provably stale, so it stays.
		return fmt.Errorf("listener: %s: cannot tell whether the socket is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listener: removing the stale socket: %w", err)
	}
	return nil
}
