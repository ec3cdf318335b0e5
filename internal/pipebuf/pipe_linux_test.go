//go:build linux

package pipebuf

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
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

// TestCopyOutWithoutDescriptors: with the pool spent and the process out
// of descriptors, CopyOut still reads a pipe, through the pool's spare.
func TestCopyOutWithoutDescriptors(t *testing.T) {
	p := NewPool(1)
	defer p.Close()
	src := p.Get()
	if src == nil {
		t.Skip("no pipes here")
	}
	defer src.Release(-1)
	data := bytes.Repeat([]byte("out of descriptors "), 5000)
	if n, err := src.Write(data); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	// The lowest free descriptor number becomes the limit: none can be
	// made until it is restored.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	low := rl
	low.Cur = uint64(fd)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower the descriptor limit: %v", err)
	}
	got := make([]byte, len(data))
	_, errNew := newPipe()
	errCopy := src.CopyOut(got)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("restoring the descriptor limit: %v", err)
	}
	if errNew == nil {
		t.Skip("a pipe was made past the limit: cannot test")
	}
	if errCopy != nil || !bytes.Equal(got, data) {
		t.Fatalf("CopyOut without descriptors: %v (bytes equal: %v)", errCopy, bytes.Equal(got, data))
	}
	// The bytes are still in src, and the spare is empty for the next.
	again := make([]byte, len(data))
	if err := src.CopyOut(again); err != nil || !bytes.Equal(again, data) {
		t.Fatalf("second CopyOut: %v", err)
	}
}
