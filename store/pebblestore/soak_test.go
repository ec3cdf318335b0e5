package pebblestore

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/petrelmq/petrel/store"
)

var soakCycles = flag.Int("soak", 20_000, "put+delete cycles of TestSoakPutDeleteStaysSmall (200000 for the full soak)")

// TestSoakPutDeleteStaysSmall puts and deletes 1 KiB messages and their queue
// entries, a window of 1,000 live at a time, as a broker does for messages
// that are delivered, while short-lived sessions come and go (each deleted
// with its queue, a range deletion): the directory must not grow with the
// data that passed through it, only with what is live.
func TestSoakPutDeleteStaysSmall(t *testing.T) {
	const window, bound = 1000, 64 << 20
	dir := t.TempDir()
	s := openT(t, dir, Options{Logger: quiet}) // the defaults a broker runs with
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	body := make([]byte, 1024)
	var b store.Batch
	var peak int64
	for i := range uint64(*soakCycles) {
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		b.Reset()
		b.PutMessage(i, body)
		b.PutQueue("client", i, []byte("message ref"))
		visitor := fmt.Sprint("visitor", i/100)
		b.PutSession(visitor, body[:100])
		b.PutQueue(visitor, i, body[:200])
		if i%100 == 99 {
			b.DeleteSession(visitor)
			b.DeleteQueueAll(visitor)
		}
		if err := s.Commit(&b, false); err != nil {
			t.Fatal(err)
		}
		if i >= window {
			b.Reset()
			b.DeleteMessage(i - window)
			b.DeleteQueue("client", i-window)
			if err := s.Commit(&b, false); err != nil {
				t.Fatal(err)
			}
		}
		if i%10_000 == 0 {
			n, err := s.Usage()
			if err != nil {
				t.Fatal(err)
			}
			peak = max(peak, n)
		}
	}
	n, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	peak = max(peak, n)
	passed := int64(*soakCycles) * int64(len(body))
	t.Logf("%d cycles (%d MiB passed through, %d KiB live): directory %d KiB at the end, %d KiB at its peak",
		*soakCycles, passed>>20, window, n>>10, peak>>10)
	if n > bound {
		t.Errorf("after %d put+delete cycles the directory holds %d MiB; want under %d MiB", *soakCycles, n>>20, bound>>20)
	}
	if testing.Verbose() {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			fi, _ := e.Info()
			t.Logf("%s %d", e.Name(), fi.Size())
		}
	}
	var live int
	if err := s.LoadMessages(func(uint64, []byte) error { live++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := min(window, *soakCycles); live != want {
		t.Errorf("%d messages live after the soak; want %d", live, want)
	}
}
