// Package pipebuf keeps bytes in kernel pipes, so that a big payload can go
// from one socket to others as references to the kernel's pages (splice
// and tee) rather than be copied into the broker's memory and out again.
// Copying is most of what a broker spends on a payload of a few hundred
// KiB (docs/BENCHMARKS.md, "Large payloads").
//
// Pipes exist on Linux only: elsewhere a Pool never has one to give, and
// its callers keep the bytes in memory as they otherwise would.
package pipebuf

import (
	"errors"
	"sync"
)

const (
	// Size is the capacity every pipe is given (F_SETPIPE_SZ). It is the
	// kernel's default limit for an unprivileged process
	// (/proc/sys/fs/pipe-max-size); its pages are only allocated as bytes
	// come in.
	Size = 1 << 20
	// MaxBytes is the most a caller is to put in one pipe. A pipe's
	// capacity counts buffers, one a page, and a buffer spliced from a
	// socket holds what one segment brought, which can be less than a
	// page: the margin leaves room for segments of about 1,300 bytes. A
	// caller must still expect a pipe to fill early (a smaller MSS) and
	// then take the bytes into memory.
	MaxBytes = 320 << 10
	// maxFree is how many empty pipes a Pool keeps for reuse.
	maxFree = 64
)

// ErrShort is returned when a tee or read moved fewer bytes than asked.
var ErrShort = errors.New("pipebuf: pipe held fewer bytes than expected")

// Pool hands out pipes, at most max of them alive at once, and keeps a few
// empty ones for reuse (making one is three system calls). Its zero value
// is not usable: see NewPool.
type Pool struct {
	mu   sync.Mutex
	free []*Pipe
	live int
	max  int
	// off is set once the kernel refused a pipe the Size (a process over
	// its pipe-user-pages-soft without CAP_SYS_RESOURCE): the pool gives
	// no more.
	off bool
	// spare is a scratch pipe kept aside, made with the pool's first pipe,
	// for a CopyOut that finds no other (the pool spent and the process
	// out of descriptors): a piped payload can always be read. spareMu
	// lets one CopyOut use it at a time.
	spareMu sync.Mutex
	spare   *Pipe
}

// NewPool returns a pool that keeps at most max pipes alive.
func NewPool(max int) *Pool { return &Pool{max: max} }

// Get returns an empty pipe, or nil when none can be had (not Linux, the
// limit reached, the kernel refused).
func (p *Pool) Get() *Pipe {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		pp := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return pp
	}
	if p.off || p.live >= p.max || p.max == 0 {
		p.mu.Unlock()
		return nil
	}
	p.live++
	p.mu.Unlock()
	pp, err := newPipe()
	if err != nil {
		p.mu.Lock()
		p.live--
		if errors.Is(err, errRefused) {
			p.off = true
		}
		p.mu.Unlock()
		return nil
	}
	pp.pool = p
	p.spareMu.Lock()
	if p.spare == nil {
		p.spare, _ = newPipe()
	}
	p.spareMu.Unlock()
	return pp
}

// Live returns how many pipes of the pool are alive (in use or free).
func (p *Pool) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// Close closes the pipes the pool keeps for reuse. Pipes in use are still
// the holders' to Release; the pool then closes them.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	free := p.free
	p.free = nil
	p.max = 0
	p.live -= len(free)
	p.mu.Unlock()
	for _, pp := range free {
		pp.close()
	}
	p.spareMu.Lock()
	if p.spare != nil {
		p.spare.close()
		p.spare = nil
	}
	p.spareMu.Unlock()
}

// Release gives pp back to its pool. held is how many bytes the holder
// knows it still holds: they are thrown away (spliced to /dev/null, which
// moves no bytes); with a negative held, pp is closed instead.
func (pp *Pipe) Release(held int) {
	p := pp.pool
	empty := held == 0 || held > 0 && pp.discard(held)
	p.mu.Lock()
	if empty && len(p.free) < maxFree && p.live <= p.max {
		p.free = append(p.free, pp)
		p.mu.Unlock()
		return
	}
	p.live--
	p.mu.Unlock()
	pp.close()
}
