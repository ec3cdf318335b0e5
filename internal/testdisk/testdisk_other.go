//go:build !linux

package testdisk

import (
	"errors"
	"runtime"
)

var errNotLinux = errors.New("tmpfs is Linux's; this is " + runtime.GOOS)

func mount(string, string) error { return errNotLinux }

func unmount(string) error { return errNotLinux }

func avail(string) (int64, error) { return 0, errNotLinux }
