package pebblestore

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/storetest"
)

// quiet is a logger for tests that expect errors.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testOptions are small: tests make many stores.
func testOptions() Options {
	return Options{Logger: quiet, CacheSize: 1 << 20, MemTableSize: 1 << 20, MinFreeBytes: 1 << 20}
}

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openT(t, t.TempDir(), testOptions()) })
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions())
	var b store.Batch
	b.PutSession("c", []byte("session"))
	b.PutQueue("c", 1, []byte("entry"))
	b.PutMessage(1, []byte("body"))
	b.PutRetained("t", []byte("retained"))
	if err := s.Commit(&b, false); err != nil { // not synced: Close must flush it
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, testOptions())
	defer s.Close()
	var got []string
	_ = s.LoadSessions(func(id string, rec []byte) error { got = append(got, id+"="+string(rec)); return nil })
	_ = s.LoadRetained(func(tp string, rec []byte) error { got = append(got, tp+"="+string(rec)); return nil })
	_ = s.LoadQueue("c", 0, func(seq uint64, e []byte) (bool, error) { got = append(got, string(e)); return true, nil })
	body, err := s.Message(1)
	if err != nil {
		t.Fatalf("Message(1) after reopen: %v", err)
	}
	got = append(got, string(body))
	want := []string{"c=session", "t=retained", "entry", "body"}
	if len(got) != len(want) {
		t.Fatalf("after reopen: %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after reopen: %q; want %q", got, want)
		}
	}
}

func TestSecondOpenInProcessIsLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions())
	defer s.Close()
	_, err := Open(dir, testOptions())
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v; want ErrLocked", err)
	}
	t.Log(err)
}
