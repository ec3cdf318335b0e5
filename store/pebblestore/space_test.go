package pebblestore

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrelmq/petrel/internal/testdisk"
	"github.com/petrelmq/petrel/store"
)

// faultFS is a filesystem whose writes fail with err while it is set, and
// that reports avail bytes free. Removing the ballast clears err when
// ballastFrees is set: the ballast's space was what the disk lacked.
type faultFS struct {
	vfs.FS
	mu           sync.Mutex
	err          error
	avail        uint64
	ballastFrees bool
}

func newFaultFS() *faultFS { return &faultFS{FS: vfs.Default, avail: 1 << 40} }

func (fs *faultFS) set(err error, avail uint64, ballastFrees bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.err, fs.avail, fs.ballastFrees = err, avail, ballastFrees
}

func (fs *faultFS) fault() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.err
}

func (fs *faultFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return vfs.DiskUsage{AvailBytes: fs.avail, TotalBytes: 1 << 40}, nil
}

func (fs *faultFS) Remove(name string) error {
	err := fs.FS.Remove(name)
	if err == nil && filepath.Base(name) == ballastName {
		fs.mu.Lock()
		if fs.ballastFrees {
			fs.err = nil
		}
		fs.mu.Unlock()
	}
	return err
}

func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault(); err != nil {
		return nil, &os.PathError{Op: "create", Path: name, Err: err}
	}
	f, err := fs.FS.Create(name, c)
	return fs.wrap(f, err)
}

func (fs *faultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(f, err)
}

func (fs *faultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(f, err)
}

func (fs *faultFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs}, nil
}

type faultFile struct {
	vfs.File
	fs *faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.fault(); err != nil {
		return 0, &os.PathError{Op: "write", Path: "faultfs", Err: err}
	}
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.fault(); err != nil {
		return 0, &os.PathError{Op: "write", Path: "faultfs", Err: err}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Preallocate(off, n int64) error {
	if err := f.fs.fault(); err != nil {
		return err
	}
	return f.File.Preallocate(off, n)
}

func (f *faultFile) Sync() error {
	if err := f.fs.fault(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) SyncData() error {
	if err := f.fs.fault(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *faultFile) SyncTo(n int64) (bool, error) {
	if err := f.fs.fault(); err != nil {
		return false, err
	}
	return f.File.SyncTo(n)
}

func putMessage(s *Store, id uint64, body []byte, sync bool) error {
	var b store.Batch
	b.PutMessage(id, body)
	b.PutQueue("c", id, []byte("ref"))
	return s.Commit(&b, sync)
}

// checkMessages fails unless s holds exactly the messages in ids.
func checkMessages(t *testing.T, s *Store, ids map[uint64]bool) {
	t.Helper()
	n := 0
	err := s.LoadMessages(func(id uint64, _ []byte) error {
		if !ids[id] {
			t.Errorf("message %d is in the store but its commit was refused", id)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ids) {
		t.Errorf("the store holds %d messages; %d were committed", n, len(ids))
	}
}

// TestGuardRefusesBelowReserveAndResumes: with less free space than the
// reserve the store refuses commits with ErrFull, before pebble writes
// anything, and takes them again once space is back.
func TestGuardRefusesBelowReserveAndResumes(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	opts := testOptions()
	opts.fs = fs
	s := openT(t, dir, opts)
	if !s.space.hasBallast() {
		t.Fatal("no ballast after Open with space to spare")
	}
	committed := map[uint64]bool{}
	if err := putMessage(s, 1, []byte("before"), true); err != nil {
		t.Fatal(err)
	}
	committed[1] = true

	fs.set(nil, uint64(opts.MinFreeBytes)-1, false)
	s.space.lastCheck.Store(0) // the next commit looks at the disk
	for id := uint64(2); id < 5; id++ {
		err := putMessage(s, id, []byte("refused"), true)
		if !errors.Is(err, store.ErrFull) {
			t.Fatalf("commit with less free space than the reserve: %v; want ErrFull", err)
		}
		if id == 2 {
			t.Log(err)
		}
	}
	fs.set(nil, 1<<40, false)
	if err := putMessage(s, 5, []byte("after"), true); err != nil {
		t.Fatalf("commit once space is back: %v", err)
	}
	committed[5] = true
	checkMessages(t, s, committed)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, opts)
	defer s.Close()
	checkMessages(t, s, committed)
}

// TestBallastAbsorbsPebblesENOSPC: the disk fills between two looks of the
// guard, so pebble's own write of the log meets ENOSPC. Deleting the
// ballast frees the space for pebble's retry, the commit succeeds, the store
// refuses further commits with ErrFull instead of failing, and takes them
// again (and makes a new ballast) once space is back.
func TestBallastAbsorbsPebblesENOSPC(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	opts := testOptions()
	opts.fs = fs
	s := openT(t, dir, opts)
	committed := map[uint64]bool{}

	fs.set(syscall.ENOSPC, 0, true)
	if err := putMessage(s, 1, []byte("written into the ballast's space"), true); err != nil {
		t.Fatalf("commit whose log write met ENOSPC with a ballast to spend: %v", err)
	}
	committed[1] = true
	if s.space.hasBallast() {
		t.Error("the ballast is still there after pebble met ENOSPC")
	}
	err := putMessage(s, 2, []byte("refused"), true)
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("commit after the disk filled: %v; want ErrFull", err)
	}
	if err := s.failure(); err != nil {
		t.Fatalf("the store stopped: %v", err)
	}

	fs.set(nil, 1<<40, false)
	if err := putMessage(s, 3, []byte("after"), true); err != nil {
		t.Fatalf("commit once space is back: %v", err)
	}
	committed[3] = true
	if !s.space.hasBallast() {
		t.Error("no new ballast once space is back")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, opts)
	defer s.Close()
	checkMessages(t, s, committed)
}

// TestFailedWriteStopsTheStoreNotTheProcess: a write pebble cannot recover
// from (the disk turned read-only; the disk full with the ballast spent)
// fails the commit with the cause's kind, and every later commit with
// ErrReadOnly; reads go on working and the process stays up.
func TestFailedWriteStopsTheStoreNotTheProcess(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno syscall.Errno
		first error
	}{
		{"EROFS", syscall.EROFS, store.ErrReadOnly},
		{"EIO", syscall.EIO, store.ErrReadOnly},
		{"ENOSPC the ballast does not cure", syscall.ENOSPC, store.ErrFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			opts := testOptions()
			opts.fs = fs
			s := openT(t, t.TempDir(), opts)
			if err := putMessage(s, 1, []byte("kept"), true); err != nil {
				t.Fatal(err)
			}
			fs.set(tc.errno, 1<<40, false)
			err := putMessage(s, 2, []byte("lost"), true)
			if !errors.Is(err, tc.first) || !errors.Is(err, tc.errno) {
				t.Fatalf("commit whose log write failed with %v: %v; want %v wrapping the cause", tc.errno, err, tc.first)
			}
			t.Log(err)
			fs.set(nil, 1<<40, false)
			for range 3 {
				err := putMessage(s, 3, []byte("refused"), false)
				if !errors.Is(err, store.ErrReadOnly) {
					t.Fatalf("commit after the store stopped: %v; want ErrReadOnly", err)
				}
			}
			if body, err := s.Message(1); err != nil || string(body) != "kept" {
				t.Errorf("read after the store stopped: %q, %v", body, err)
			}
			if err := s.Close(); !errors.Is(err, store.ErrReadOnly) {
				t.Errorf("Close after the store stopped: %v; want the failure", err)
			}
		})
	}
}

// TestFullDiskOnTmpfs fills a real, small filesystem: the store refuses
// commits with ErrFull once free space falls to its reserve, never fails or
// crashes, accepts commits again when space is freed, and keeps every
// commit it accepted.
func TestFullDiskOnTmpfs(t *testing.T) {
	mnt := testdisk.Small(t, "24m")
	dir := filepath.Join(mnt, "store")
	opts := testOptions()
	opts.MinFreeBytes = 4 << 20
	s := openT(t, dir, opts)
	defer func() {
		if s != nil {
			_ = s.Close()
		}
	}()

	// Another program takes all but 8 MiB.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, testdisk.Avail(t, mnt)-8<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	body := make([]byte, 32<<10)
	committed := map[uint64]bool{}
	var refused error
	id := uint64(0)
	for ; id < 2000 && refused == nil; id++ {
		_, _ = rand.Read(body) // incompressible
		if err := putMessage(s, id, body, id%4 == 0); err != nil {
			refused = err
			break
		}
		committed[id] = true
	}
	if !errors.Is(refused, store.ErrFull) {
		t.Fatalf("after %d commits of 32 KiB on a filesystem with 8 MiB free: %v; want ErrFull", len(committed), refused)
	}
	if err := s.failure(); err != nil {
		t.Fatalf("the store stopped instead of refusing: %v", err)
	}
	t.Logf("refused after %d commits: %v", len(committed), refused)
	if err := putMessage(s, id, body, true); !errors.Is(err, store.ErrFull) {
		t.Fatalf("commit while still full: %v; want ErrFull", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		id++
		if err := putMessage(s, id, body, true); err != nil {
			t.Fatalf("commit after space was freed: %v", err)
		}
		committed[id] = true
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, opts)
	checkMessages(t, s, committed)
}
