// Package testdisk gives a test a small filesystem of its own to fill: a
// tmpfs, which needs Linux and root; elsewhere the test is skipped. Tests
// only.
package testdisk

import "testing"

// Small mounts a tmpfs of size (as mount's size= option: "32m") in a
// temporary directory, unmounted when the test ends, and returns the
// directory; or skips the test where that is not possible.
func Small(t testing.TB, size string) string {
	t.Helper()
	mnt := t.TempDir()
	if err := mount(mnt, size); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unmount(mnt); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// Avail is the space available to unprivileged users on the filesystem
// that holds path, in bytes.
func Avail(t testing.TB, path string) int64 {
	t.Helper()
	n, err := avail(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
