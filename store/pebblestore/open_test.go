package pebblestore

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrelmq/petrel/store"
)

// snapshotDir returns every file of dir with its bytes.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string]string)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

// checkUntouched fails if dir differs from before.
func checkUntouched(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := snapshotDir(t, dir)
	if !maps.Equal(before, after) {
		t.Errorf("Open changed the directory:\n before %q\n after  %q",
			slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
		for name, b := range before {
			if after[name] != b {
				t.Errorf("%s changed (%d bytes before, %d after)", name, len(b), len(after[name]))
			}
		}
	}
}

// makeStore creates a store in dir with some records in tables and in the
// log, and closes it.
func makeStore(t *testing.T, dir string) {
	t.Helper()
	s := openT(t, dir, testOptions())
	var b store.Batch
	for i := range uint64(100) {
		b.PutMessage(i, bytes.Repeat([]byte{'m'}, 100))
	}
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil { // into a table
		t.Fatal(err)
	}
	b.Reset()
	b.PutSession("c", []byte("in the log"))
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// fileLike returns the one file of dir whose name has the prefix or suffix.
func fileLike(t *testing.T, dir, prefix, suffix string) string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && strings.HasSuffix(e.Name(), suffix) {
			return filepath.Join(dir, e.Name())
		}
	}
	t.Fatalf("no file %s*%s in %s", prefix, suffix, dir)
	return ""
}

func TestOpenCorruptLeavesFilesAlone(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		// Truncated inside its first record. Pebble reads a MANIFEST cut
		// after a whole record as one whose last edit was torn by a crash
		// (an edit counts only once synced), and opens the version before.
		{"truncated MANIFEST", func(t *testing.T, dir string) {
			if err := os.Truncate(fileLike(t, dir, "MANIFEST-", ""), 16); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbled MANIFEST", func(t *testing.T, dir string) {
			m := fileLike(t, dir, "MANIFEST-", "")
			b, _ := os.ReadFile(m)
			for i := 8; i < len(b); i += 3 {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(m, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"MANIFEST replaced by garbage", func(t *testing.T, dir string) {
			m := fileLike(t, dir, "MANIFEST-", "")
			if err := os.WriteFile(m, []byte("this is not a manifest\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing table", func(t *testing.T, dir string) {
			sst := fileLike(t, dir, "", ".sst")
			if err := os.Rename(sst, filepath.Join(dir, "moved-away")); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest marker removed, CURRENT-style garbage added", func(t *testing.T, dir string) {
			if err := os.Remove(fileLike(t, dir, "marker.manifest.", "")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("MANIFEST-00\x00garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			makeStore(t, dir)
			tc.damage(t, dir)
			before := snapshotDir(t, dir)
			s, err := Open(dir, testOptions())
			if err == nil {
				_ = s.Close()
				t.Fatal("Open of a damaged store succeeded")
			}
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Open: %v; want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("the error does not name the directory: %v", err)
			}
			checkUntouched(t, dir, before)
			t.Log(err)
		})
	}
}

func TestOpenForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"notes.txt": "mine", "000001.log": "not pebble's", "CURRENT": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotDir(t, dir)
	_, err := Open(dir, testOptions())
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open of a directory of other files: %v; want ErrCorrupt", err)
	}
	checkUntouched(t, dir, before)
	t.Log(err)
}

func TestOpenRecordsWithoutFormatVersion(t *testing.T) {
	dir := t.TempDir()
	makeStore(t, dir)
	s := openT(t, dir, testOptions())
	if err := s.db.Delete(formatKey, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := Open(dir, testOptions()); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open of a store with records and no format version: %v; want ErrCorrupt", err)
	}
}

func TestOpenInterruptedCreation(t *testing.T) {
	// What a first Open may leave when killed before the store exists.
	dir := t.TempDir()
	for _, name := range []string{"LOCK", "OPTIONS-000003", "MANIFEST-000001"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := openT(t, dir, testOptions())
	defer s.Close()
	var b store.Batch
	b.PutSession("c", nil)
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNewerFormat(t *testing.T) {
	t.Run("petrel format", func(t *testing.T) {
		dir := t.TempDir()
		makeStore(t, dir)
		s := openT(t, dir, testOptions())
		newer := strconv.AppendUint(nil, store.FormatVersion+1, 10)
		if err := s.db.Set(formatKey, newer, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		_, err := Open(dir, testOptions())
		if !errors.Is(err, store.ErrNewerFormat) {
			t.Fatalf("Open: %v; want ErrNewerFormat", err)
		}
		for _, v := range []string{strconv.Itoa(store.FormatVersion), strconv.Itoa(store.FormatVersion + 1)} {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("the error does not name version %s: %v", v, err)
			}
		}
		t.Log(err)
	})
	t.Run("pebble format", func(t *testing.T) {
		dir := t.TempDir()
		makeStore(t, dir)
		marker := fileLike(t, dir, "marker.format-version.", "")
		if err := os.Rename(marker, filepath.Join(dir, "marker.format-version.000099.999")); err != nil {
			t.Fatal(err)
		}
		before := snapshotDir(t, dir)
		_, err := Open(dir, testOptions())
		if !errors.Is(err, store.ErrNewerFormat) {
			t.Fatalf("Open: %v; want ErrNewerFormat", err)
		}
		checkUntouched(t, dir, before)
		t.Log(err)
	})
}

func TestOpenNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, testOptions()); err == nil {
		t.Fatal("Open of a file succeeded")
	} else {
		t.Log(err)
	}
}

func TestOpenCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openT(t, dir, testOptions())
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("new data directory has mode %v; want 0700", perm)
	}
}
