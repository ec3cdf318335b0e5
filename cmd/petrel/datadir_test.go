package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// These tests start petrel serve on data directories it must refuse: it
// exits with code 1 and a message that says which directory and what is
// wrong, and changes nothing in it. The store is never wiped silently.
// They run in parallel: each mostly waits for a child process.

// refusedServe runs cmd, which must exit by itself within 20s, and returns
// its exit code and stderr.
func refusedServe(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err), stderr.String()
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("petrel serve still running after 20s; stderr:\n%s", stderr.String())
		return 0, ""
	}
}

// serveArgs are the flags of a broker on a free port with dir as its store.
func serveArgs(dir string) []string {
	return []string{"serve", "--listen", "127.0.0.1:0", "--log-level", "info", "--data-dir", dir}
}

// wantRefusal checks the exit code and that stderr says each of want.
func wantRefusal(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	if code != 1 {
		t.Errorf("exit code %d; want 1", code)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(stderr), strings.ToLower(w)) {
			t.Errorf("the message does not say %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "msg=listening") {
		t.Errorf("the broker started listening:\n%s", stderr)
	}
	t.Logf("%s", strings.TrimSpace(stderr))
}

// snapshot returns every file under dir with its bytes and mode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files[path] = fi.Mode().String() + "\x00" + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func checkUntouched(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := snapshot(t, dir)
	if !maps.Equal(before, after) {
		t.Errorf("the data directory changed:\n before %q\n after  %q",
			slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
}

// makeStore creates a petrel store with a record in dir.
func makeStore(t *testing.T, dir string) {
	t.Helper()
	st, err := pebblestore.Open(dir, pebblestore.Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var b store.Batch
	b.PutRetained("a/topic", []byte("a record"))
	if err := st.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startBroker(t, dir)
	code, stderr := refusedServe(t, petrel(serveArgs(dir)...))
	wantRefusal(t, code, stderr, dir, "in use")
}

func TestServeRefusesDataDirWithoutStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"notes.txt":  "my notes",
		"000002.log": "not a write-ahead log",
		"CURRENT":    "MANIFEST-000001\n",
		"sub/x.sst":  "\x00\x01garbage",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, dir)
	code, stderr := refusedServe(t, petrel(serveArgs(dir)...))
	wantRefusal(t, code, stderr, dir, "corrupt", "no petrel store")
	checkUntouched(t, dir, before)
}

func TestServeRefusesCorruptStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	makeStore(t, dir)
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST in a new store")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte("this is not a manifest\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, dir)
	code, stderr := refusedServe(t, petrel(serveArgs(dir)...))
	wantRefusal(t, code, stderr, dir, "corrupt", "nothing was changed")
	checkUntouched(t, dir, before)
}

// A store whose format version key says a newer petrel wrote it. The key is
// written with pebble itself, as a newer petrel would. Opening the store to
// read the key lets pebble replay its log into a table, so the files may
// change: what must not change is what the store holds.
func TestServeRefusesNewerStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	makeStore(t, dir)
	newer := strconv.Itoa(store.FormatVersion + 1)
	withPebble(t, dir, false, func(db *pebble.DB) {
		if err := db.Set([]byte("\x00format"), []byte(newer), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	code, stderr := refusedServe(t, petrel(serveArgs(dir)...))
	wantRefusal(t, code, stderr, dir, "newer", "format version "+newer, "up to "+strconv.Itoa(store.FormatVersion))
	withPebble(t, dir, true, func(db *pebble.DB) {
		for key, want := range map[string]string{"\x00format": newer, "ra/topic": "a record"} {
			v, closer, err := db.Get([]byte(key))
			if err != nil {
				t.Fatalf("%q after the refusal: %v", key, err)
			}
			if string(v) != want {
				t.Errorf("%q after the refusal: %q; want %q", key, v, want)
			}
			closer.Close()
		}
	})
}

// withPebble opens the store in dir with pebble itself for fn.
func withPebble(t *testing.T, dir string, readOnly bool, fn func(*pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: readOnly, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	fn(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// quietPebble drops pebble's log lines.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
