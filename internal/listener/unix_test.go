//go:build unix

package listener

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The goroutine driver serves a unix socket end to end: an idle
// connection parks without a buffer (unix sockets expose their
// descriptor), echo, and final bytes after Close through half-close while
// the client keeps sending.
func TestGoroutineDriverOverUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "petrel.sock")
	ln, err := ListenUnix(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode %v, want a socket with permissions 0660", fi.Mode())
	}

	final := pattern(1<<20, 21)
	h := newTestHandler(t)
	h.onData = func(e *testEndpoint, b []byte) {
		// A prefix: the junk the client sends next may arrive in the same read.
		if strings.HasPrefix(string(b), "bye") {
			e.write(final)
			e.conn.Close()
			return
		}
		e.write(b)
	}
	d := NewGoroutineDriver(ln, h, Options{})
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	t.Cleanup(h.verify)

	c, err := net.DialTimeout("unix", path, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	e := receive(t, h.opened, "Open")
	if gc, ok := e.conn.(*gconn); !ok || gc.raw == nil {
		t.Errorf("a unix connection should park without a buffer (raw connection %v)", ok && gc.raw != nil)
	}

	want := pattern(1<<20, 22)
	wrote := make(chan error, 1)
	go func() { wrote <- writeChunks(c, want, 22) }()
	got := make([]byte, len(want))
	if _, err := readFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := receive(t, wrote, "the writes"); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "unix socket echo", got, want)

	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	go func() {
		junk := make([]byte, 16<<10)
		for range 64 {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	got = readAll(t, c, "unix client")
	sameBytes(t, "final bytes over the unix socket", got, final)
	c.Close()
	if err := closedWith(t, e); err != nil {
		t.Errorf("Closed(%v) after Conn.Close, want nil", err)
	}

	if err := d.Close(); err != nil {
		t.Errorf("Driver.Close: %v", err)
	}
	if err := receive(t, served, "Serve to return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("after Driver.Close the socket file is still there (%v)", err)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// A socket file left behind by a process that died is replaced.
func TestListenUnixReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "petrel.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // the file stays, as after a crash
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the stale socket file should exist: %v", err)
	}
	ln, err := ListenUnix(path, 0)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing the new socket: %v", err)
	}
	c.Close()
}

// What is not provably a stale socket stays where it is.
func TestListenUnixLeavesOtherFilesAlone(t *testing.T) {
	dir := t.TempDir()

	live := filepath.Join(dir, "live.sock")
	other, err := ListenUnix(live, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := ListenUnix(live, 0); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("ListenUnix on a live socket: %v, want an in-use error", err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the live socket no longer answers: %v", err)
	} else {
		c.Close()
	}

	regular := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(regular, 0); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenUnix on a regular file: %v, want a not-a-socket error", err)
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}

	sub := filepath.Join(dir, "subdir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(sub, 0); err == nil {
		t.Error("ListenUnix on a directory succeeded")
	}
	if _, err := os.Stat(sub); err != nil {
		t.Errorf("the directory is gone: %v", err)
	}
}
