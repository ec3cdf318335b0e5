//go:build unix

package pebblestore

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenWithoutWritePermission runs Open as user nobody in another
// process, on a store and on a new directory that nobody may not write.
func TestOpenWithoutWritePermission(t *testing.T) {
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
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(base, "store.test")
	copyFile(t, mustExecutable(t), exe)

	existing := filepath.Join(base, "existing")
	makeStore(t, existing)
	if err := os.Chmod(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{existing, filepath.Join(base, "new")} {
		cmd := exec.Command(exe, "-test.run=^TestOpenHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=open", "PETREL_STORE_DIR="+dir, "HOME="+base)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as nobody: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("result: ErrReadOnly")) {
			t.Errorf("Open(%s) as a user without write permission:\n%s\nwant ErrReadOnly", dir, out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	}
}

func mustExecutable(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
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
