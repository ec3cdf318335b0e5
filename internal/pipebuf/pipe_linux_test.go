//go:build linux

package pipebuf

import (
	"bytes"
	"testing"
)

// TestReleaseDiscardsAndReuses: a pipe released with bytes in it is
// emptied and handed out again, not closed and made anew.
func TestReleaseDiscardsAndReuses(t *testing.T) {
	p := NewPool(4)
	defer p.Close()
	pp := p.Get()
	if pp == nil {
		t.Skip("no pipes here")
	}
	data := bytes.Repeat([]byte("petrel"), 10000)
	if n, err := pp.Write(data); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	pp.Release(len(data))
	again := p.Get()
	if again != pp {
		t.Fatalf("released pipe not reused (live %d)", p.Live())
	}
	// It is empty: a write and read give back exactly what went in.
	if _, err := again.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if err := again.ReadFull(b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b, err)
	}
	again.Release(0)
}
