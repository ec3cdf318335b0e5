//go:build linux

package pipebuf

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fill returns n reproducible pseudo-random bytes.
func fill(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// get returns a pipe of p holding data.
func get(t *testing.T, p *Pool, data []byte) *Pipe {
	t.Helper()
	pp := p.Get()
	if pp == nil {
		t.Skip("no pipes here")
	}
	if n, err := pp.Write(data); err != nil || n != len(data) {
		t.Fatalf("write: %d of %d bytes, %v", n, len(data), err)
	}
	return pp
}

// holds checks that pp holds exactly want, taking it out.
func holds(t *testing.T, what string, pp *Pipe, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := pp.ReadFull(got); err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: the pipe held other bytes", what)
	}
	if err := pp.ReadFull(make([]byte, 1)); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("%s: reading past the bytes: %v, want EAGAIN (empty)", what, err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// Get hands out max pipes and then none; Release(-1) closes one, which
// makes room for another.
func TestPoolLimit(t *testing.T) {
	const max = 3
	p := NewPool(max)
	defer p.Close()
	var got []*Pipe
	for i := range max {
		pp := p.Get()
		if pp == nil {
			if i == 0 {
				t.Skip("no pipes here")
			}
			t.Fatalf("Get %d returned nil below the limit of %d", i, max)
		}
		for _, o := range got {
			if o == pp {
				t.Fatal("Get returned a pipe already handed out")
			}
		}
		got = append(got, pp)
	}
	if p.Live() != max {
		t.Fatalf("Live %d, want %d", p.Live(), max)
	}
	if pp := p.Get(); pp != nil {
		t.Fatalf("Get returned a pipe beyond the limit (live %d)", p.Live())
	}
	got[0].Release(-1)
	if p.Live() != max-1 {
		t.Fatalf("Live %d after Release(-1), want %d", p.Live(), max-1)
	}
	again := p.Get()
	if again == nil {
		t.Fatal("no pipe after one was closed")
	}
	if p.Get() != nil {
		t.Fatal("Get beyond the limit again")
	}
	again.Release(-1)
	for _, pp := range got[1:] {
		pp.Release(-1)
	}
	if p.Live() != 0 {
		t.Fatalf("Live %d after every pipe was closed", p.Live())
	}
	if NewPool(0).Get() != nil {
		t.Fatal("a pool of 0 gave a pipe")
	}
	var nilPool *Pool
	if nilPool.Get() != nil {
		t.Fatal("a nil pool gave a pipe")
	}
}

// Release with the pipe's bytes (hundreds of KiB, many pages) empties it
// and keeps it for reuse: Live does not change and the next Get returns
// it, empty. A held larger than what the pipe holds cannot be discarded
// in full: the pipe is closed, not reused.
func TestReleaseHeld(t *testing.T) {
	p := NewPool(4)
	defer p.Close()
	data := fill(300<<10+17, 1)
	pp := get(t, p, data)
	pp.Release(len(data))
	if p.Live() != 1 {
		t.Fatalf("Live %d after Release(n), want 1", p.Live())
	}
	again := p.Get()
	if again != pp {
		t.Fatal("the released pipe was not reused")
	}
	if p.Live() != 1 {
		t.Fatalf("Live %d after reuse, want 1", p.Live())
	}
	more := fill(5000, 2)
	if _, err := again.Write(more); err != nil {
		t.Fatal(err)
	}
	holds(t, "reused pipe", again, more)

	// Release(held) with fewer bytes in the pipe than held.
	if _, err := again.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	again.Release(4)
	if p.Live() != 0 {
		t.Fatalf("Live %d after releasing a pipe with fewer bytes than held, want 0 (closed)", p.Live())
	}
	if q := p.Get(); q == pp {
		t.Fatal("a pipe that could not be emptied was reused")
	} else if q != nil {
		q.Release(0)
	}
}

// CopyOut copies the first bytes of a pipe and leaves them there, also
// from many goroutines at once on the same pipe, whether the pool has a
// scratch pipe for each or not (then CopyOut makes its own).
func TestCopyOutConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
	}{{"pool with room", 16}, {"pool at its limit", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			base := countFDs(t)
			p := NewPool(tc.max)
			data := fill(256<<10+5, 3)
			pp := get(t, p, data)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 9))
					for range 40 {
						n := 1 + r.IntN(len(data))
						if g%2 == 0 {
							n = len(data)
						}
						b := make([]byte, n)
						if err := pp.CopyOut(b); err != nil {
							t.Errorf("goroutine %d: CopyOut(%d): %v", g, n, err)
							return
						}
						if !bytes.Equal(b, data[:n]) {
							t.Errorf("goroutine %d: CopyOut(%d) copied other bytes", g, n)
							return
						}
					}
				})
			}
			wg.Wait()
			if p.Live() > tc.max {
				t.Errorf("Live %d beyond the limit of %d", p.Live(), tc.max)
			}
			holds(t, "after the copies", pp, data)
			pp.Release(0)
			p.Close()
			if p.Live() != 0 {
				t.Errorf("Live %d after Close with every pipe released", p.Live())
			}
			if n := countFDs(t); n > base {
				t.Errorf("%d descriptors open, %d before", n, base)
			}
		})
	}
}

// CopyOut of more bytes than the pipe holds fails, and leaves them.
func TestCopyOutShort(t *testing.T) {
	p := NewPool(4)
	defer p.Close()
	data := fill(1000, 4)
	pp := get(t, p, data)
	defer pp.Release(-1)
	if err := pp.CopyOut(make([]byte, len(data)+1)); !errors.Is(err, ErrShort) {
		t.Fatalf("CopyOut beyond the bytes: %v, want ErrShort", err)
	}
	holds(t, "after a failed CopyOut", pp, data)
}

// TeeTo an empty pipe copies all; to one that lacks room it reports an
// error (ErrShort when some buffers fitted, EAGAIN when none did), and the
// source keeps its bytes either way. The destination does get the buffers
// that fitted: TeeTo asks for an empty one, and a caller that got an error
// must not use it as it is (the event loop closes it).
func TestTeeTo(t *testing.T) {
	p := NewPool(8)
	defer p.Close()
	data := fill(300<<10, 5)
	src := get(t, p, data)
	defer src.Release(-1)

	dst := get(t, p, nil)
	if err := src.TeeTo(dst, len(data)-7); err != nil {
		t.Fatalf("TeeTo an empty pipe: %v", err)
	}
	holds(t, "the tee's destination", dst, data[:len(data)-7])
	dst.Release(0)

	for _, tc := range []struct {
		name    string
		prefill int
		want    error
	}{
		{"one page free", Size - 4096, ErrShort},
		{"full", Size, unix.EAGAIN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefill := fill(tc.prefill, 6)
			dst := get(t, p, prefill)
			defer dst.Release(-1)
			err := src.TeeTo(dst, len(data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("TeeTo a pipe without room: %v, want %v", err, tc.want)
			}
			got := make([]byte, len(data))
			if err := src.CopyOut(got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the source lost bytes in a failed tee: %v", err)
			}
			// What reached the destination: its bytes, then a prefix of the
			// source's.
			all := make([]byte, 0, Size+len(data))
			buf := make([]byte, 64<<10)
			for {
				n, err := unix.Read(int(dst.r), buf)
				if n <= 0 || err != nil {
					break
				}
				all = append(all, buf[:n]...)
			}
			if !bytes.HasPrefix(all, prefill) || !bytes.Equal(all[len(prefill):], data[:len(all)-len(prefill)]) {
				t.Fatalf("the destination holds other bytes than its own and a prefix of the source")
			}
			t.Logf("TeeTo: %v; %d bytes of %d reached the destination", err, len(all)-len(prefill), len(data))
		})
	}
}

// Close closes the free pipes and gives no more; pipes in use are closed
// when released, whatever they hold, and Live ends at 0 with every
// descriptor closed.
func TestCloseThenRelease(t *testing.T) {
	base := countFDs(t)
	p := NewPool(4)
	a := get(t, p, fill(10<<10, 7))
	b := get(t, p, nil)
	c := get(t, p, nil)
	c.Release(0) // free
	if p.Live() != 3 {
		t.Fatalf("Live %d, want 3", p.Live())
	}
	p.Close()
	if p.Live() != 2 {
		t.Fatalf("Live %d after Close, want 2 (the pipes in use)", p.Live())
	}
	if p.Get() != nil {
		t.Fatal("Get after Close returned a pipe")
	}
	a.Release(10 << 10)
	b.Release(0)
	if p.Live() != 0 {
		t.Fatalf("Live %d after the last Release, want 0", p.Live())
	}
	p.Close() // again: nothing to do
	// /dev/null, opened once for good by the first discard, is the only
	// descriptor left.
	if n := countFDs(t); n > base+1 {
		t.Errorf("%d descriptors open, %d before", n, base)
	}
}

// Limit is max, or an eighth of RLIMIT_NOFILE in pipes (two descriptors
// each) when that is fewer.
func TestLimit(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	for _, max := range []int{0, 1, 512, 1 << 30} {
		if got, want := Limit(max), int(min(uint64(max), rl.Cur/16)); got != want {
			t.Errorf("Limit(%d) = %d with RLIMIT_NOFILE %d, want %d", max, got, rl.Cur, want)
		}
	}
}
