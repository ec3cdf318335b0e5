package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrelmq/petrel/store"
)

// Pebble cannot survive a failed write of its log or MANIFEST: it panics or
// calls Fatalf, and the database is unusable until the process restarts. So
// the store keeps pebble away from a full disk instead of reacting to one:
//
//   - The guard: a commit is refused with store.ErrFull while the filesystem
//     has less than Options.MinFreeBytes free. Free space is looked up at most
//     every spaceCheckBytes committed or spaceCheckEvery, and on every commit
//     while the disk is full, so commits resume by themselves once space is
//     freed.
//   - The ballast: a file of MinFreeBytes/4 kept in the directory. When one
//     of pebble's own writes still meets ENOSPC (another program filled the
//     disk between two looks, or a flush or compaction outgrew the reserve),
//     vfs.OnDiskFull calls onDiskFull, which deletes the ballast and marks
//     the disk full, and pebble's write is retried once into the space the
//     ballast held. The ballast is made again when the space is back.

const (
	ballastName     = "petrel.ballast"
	spaceCheckBytes = 1 << 20
	spaceCheckEvery = 250 * time.Millisecond
)

// space is the free-space guard and the ballast.
type space struct {
	fs      vfs.FS // the unwrapped filesystem: the ballast bypasses OnDiskFull
	dir     string
	minFree int64
	ballast int64 // the ballast's size
	log     logger

	full      atomic.Bool
	written   atomic.Int64 // bytes committed since the last look
	lastCheck atomic.Int64 // unix nanoseconds of the last look

	mu sync.Mutex // one look at a time; guards the ballast file
}

// admit refuses a commit of n bytes while the disk is full.
func (sp *space) admit(n int) error {
	if !sp.full.Load() &&
		sp.written.Add(int64(n)) < spaceCheckBytes &&
		time.Now().UnixNano()-sp.lastCheck.Load() < int64(spaceCheckEvery) {
		return nil
	}
	return sp.check()
}

// check looks at the free space, makes the ballast if it is missing and
// there is room, and updates full.
func (sp *space) check() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.written.Store(0)
	sp.lastCheck.Store(time.Now().UnixNano())
	usage, err := sp.fs.GetDiskUsage(sp.dir)
	if err != nil {
		// A filesystem that cannot say (an in-memory one in tests): no
		// guard; OnDiskFull still catches ENOSPC.
		return nil
	}
	avail := int64(min(usage.AvailBytes, 1<<62))
	if sp.ballast > 0 && avail >= sp.minFree+sp.ballast && !sp.hasBallast() {
		if err := sp.makeBallast(); err != nil {
			sp.log.l.Warn("store: cannot make the ballast file", "dir", sp.dir, "err", err)
		} else {
			avail -= sp.ballast
		}
	}
	full := avail < sp.minFree
	if was := sp.full.Swap(full); was != full {
		if full {
			sp.log.l.Error("store: disk full, refusing writes", "dir", sp.dir, "free", avail, "need", sp.minFree)
		} else {
			sp.log.l.Warn("store: disk space is back, accepting writes", "dir", sp.dir, "free", avail)
		}
	}
	if full {
		return fmt.Errorf("%w: %d bytes free on the filesystem of %s, the store keeps %d in reserve; commit refused",
			store.ErrFull, max(avail, 0), sp.dir, sp.minFree)
	}
	return nil
}

// onDiskFull runs when one of pebble's writes met ENOSPC. Pebble's writes
// wait while it runs, and the write that failed is retried once after it.
func (sp *space) onDiskFull() {
	sp.full.Store(true)
	removed := sp.removeBallast()
	sp.log.l.Error("store: a write met a full disk; refusing writes until space is freed",
		"dir", sp.dir, "ballast_released", removed)
}

func (sp *space) ballastPath() string { return sp.fs.PathJoin(sp.dir, ballastName) }

func (sp *space) hasBallast() bool {
	fi, err := sp.fs.Stat(sp.ballastPath())
	return err == nil && fi.Size() == sp.ballast
}

func (sp *space) removeBallast() bool {
	return sp.fs.Remove(sp.ballastPath()) == nil
}

// makeBallast writes the ballast with zeros (not fallocate, which not every
// filesystem backs with real blocks) and syncs it.
func (sp *space) makeBallast() (err error) {
	f, err := sp.fs.Create(sp.ballastPath(), vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = sp.fs.Remove(sp.ballastPath())
		}
	}()
	zeros := make([]byte, 1<<20)
	for left := sp.ballast; left > 0; left -= int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// usage is the apparent size of the files in dir, the ballast left out.
func usage(fs vfs.FS, dir string) (int64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, name := range names {
		if name == ballastName {
			continue
		}
		fi, err := fs.Stat(fs.PathJoin(dir, name))
		if errors.Is(err, os.ErrNotExist) { // deleted by a compaction meanwhile
			continue
		}
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}
