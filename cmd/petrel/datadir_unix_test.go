//go:build unix

package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestServeRefusesReadOnlyDataDir runs petrel serve as user nobody on a
// store, and on a new directory, that nobody may not write.
func TestServeRefusesReadOnlyDataDir(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as nobody")
	}
	const nobody = 65534
	// The binary and the directories must be reachable by nobody; the
	// test's own temporary directories are private.
	base, err := os.MkdirTemp("", "petrel-readonly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(base, "petrel.test")
	copyExecutable(t, exe)
	existing := filepath.Join(base, "existing")
	makeStore(t, existing)
	if err := os.Chmod(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{existing, filepath.Join(base, "new")} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			before := snapshot(t, base)
			cmd := exec.Command(exe, serveArgs(dir)...)
			cmd.Env = append(os.Environ(), "PETREL_TEST_MAIN=1", "HOME="+base)
			cmd.Dir = base
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			code, stderr := refusedServe(t, cmd)
			wantRefusal(t, code, stderr, dir, "not writable", "permission")
			checkUntouched(t, base, before)
		})
	}
}

// copyExecutable copies the test binary to path, executable by everyone.
func copyExecutable(t *testing.T, path string) {
	t.Helper()
	in, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
