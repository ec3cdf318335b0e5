// Package pebblestore is the durable store.Store, kept in a Pebble database
// (github.com/cockroachdb/pebble/v2) in one directory.
//
// # Key layout
//
// Every key starts with one byte naming its namespace; the rest is:
//
//	's' client id                                   session record
//	'q' uvarint(len(queue name)) queue name seq(8)  queue entry
//	'm' id(8)                                       message body
//	'r' topic                                       retained message
//	"\x00format"                                    store.FormatVersion, decimal
//
// Numbers are 8-byte big-endian, so key order is numeric order. The length in
// front of a queue's name keeps each queue's entries one contiguous range
// that holds no other queue's ("a" and "ab" and "a\x00" differ in length),
// ordered by sequence number: LoadQueue is one bounded scan and
// DeleteQueueAll is one range deletion.
//
// # Opening
//
// Open creates the directory (0700) when it is missing and takes pebble's
// LOCK file, so one process at a time uses a store (store.ErrLocked). A
// directory that holds files but no store, a store pebble cannot read, and one
// with records but no format version are store.ErrCorrupt: Open then
// writes, deletes and rewrites nothing (it checks before pebble runs, and
// pebble stops before changing anything when its MANIFEST or a table is
// damaged). A store with a FormatVersion above this build's is
// store.ErrNewerFormat. A directory this process may not write is
// store.ErrReadOnly.
//
// A MANIFEST cut short after a whole record reads, to pebble, like one whose
// last edit a crash tore before it was synced (an edit counts only once
// synced); pebble then opens the version before it, as RocksDB does. Damage
// inside a record, or a table the MANIFEST names missing, is ErrCorrupt.
//
// # Writes, and a full disk
//
// Commit turns the ops into one pebble batch (an AllQueue delete becomes a
// DeleteRange over the queue) and commits it with pebble.Sync or
// pebble.NoSync. Pebble groups concurrent synced commits into one fsync.
//
// Pebble treats a failed write of its log (WAL) as fatal: the failing commit
// calls Fatalf (by default: exit the process), and the next one panics inside
// pebble with its commit lock held, so the database cannot go on (pebble
// v2.1.7, db.go applyInternal and commitWrite). A failed MANIFEST write
// after a flush or compaction is fatal too. This store therefore keeps pebble
// from meeting a full disk (see space.go): commits are refused with
// store.ErrFull while free space is below Options.MinFreeBytes, and resume by
// themselves when it is back; a ballast file absorbs a write of pebble's own
// that meets ENOSPC anyway. Should a write still fail on a commit's goroutine
// (the ballast already spent, a disk gone read-only, EIO), Commit recovers,
// returns the cause as store.ErrFull or store.ErrReadOnly, logs it, and the
// store refuses every later commit with store.ErrReadOnly until the process
// restarts; reads go on working. The failed commit is then not durable, though
// it may be visible to reads until the restart. A commit without sync returns
// before its log write, so a failure of that write surfaces on a later
// commit. A fatal error on one of pebble's background goroutines (a MANIFEST
// write that fails even after the ballast was spent) still ends the process,
// with a stack trace.
//
// # Hygiene
//
// Deleted records are dropped by pebble's own compactions, which also pick
// tables dense with tombstones; no background job of the store's is needed.
// What the directory holds beyond the live data is bounded by the write
// buffer: up to four log files of about Options.MemTableSize (the live one
// and three kept for reuse), plus the ballast. TestSoakPutDeleteStaysSmall
// puts and deletes 200,000 messages of 1 KiB (with -soak=200000; 20,000 by
// default) and the directory ends near 32 MiB with the default options, of
// which 1 MiB is live data.
package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrelmq/petrel/store"
)

// Options tune a store. The zero value is a good default.
type Options struct {
	// Logger receives pebble's log (its chatter at debug) and the store's
	// warnings. Nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is the block cache in bytes. Zero means 32 MiB.
	CacheSize int64
	// MemTableSize is the size of pebble's write buffer in bytes; a log
	// file is preallocated at 110% of it, and up to four log files of about
	// this size stay in the directory (the live one and three kept for
	// reuse). Zero means 8 MiB.
	MemTableSize uint64
	// MinFreeBytes is the free space the store keeps on its filesystem:
	// commits are refused with store.ErrFull below it. A quarter of it is
	// held by a ballast file in the directory. Zero means 64 MiB.
	MinFreeBytes int64

	fs vfs.FS // the filesystem; tests replace it
}

// pebbleFormat is the pebble on-disk format the store writes. It is pinned,
// not pebble.FormatNewest, so that upgrading the pebble module never changes
// the files by surprise: raising it is a one-way step for every store it
// opens, to be taken on purpose (and noted in the release notes).
const pebbleFormat = pebble.FormatValueSeparation

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 32 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 8 << 20
	}
	if o.MinFreeBytes <= 0 {
		o.MinFreeBytes = 64 << 20
	}
	if o.fs == nil {
		o.fs = vfs.Default
	}
}

// Store is a durable store.Store. Its methods are safe for concurrent use;
// Close must not overlap with any other call.
type Store struct {
	db    *pebble.DB
	lock  *pebble.Lock
	dir   string
	fs    vfs.FS // unwrapped
	log   *slog.Logger
	space *space

	mu     sync.RWMutex // Close holds it to write; the rest to read
	closed atomic.Bool
	failed atomic.Pointer[error] // set once a write failed inside pebble
}

// Open opens the store in dir, creating it when dir is missing or empty.
// Its errors wrap store.ErrLocked, store.ErrNewerFormat, store.ErrCorrupt,
// store.ErrReadOnly or store.ErrFull, with the directory named.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	fs := opts.fs
	if err := prepareDir(fs, dir); err != nil {
		return nil, err
	}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, lockError(dir, err)
	}
	s := &Store{lock: lock, dir: dir, fs: fs, log: opts.Logger}
	s.space = &space{
		fs:      fs,
		dir:     dir,
		minFree: opts.MinFreeBytes,
		ballast: opts.MinFreeBytes / 4,
		log:     logger{opts.Logger},
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the database holds its own reference
	popts := &pebble.Options{
		FS:                 vfs.OnDiskFull(fs, s.space.onDiskFull),
		Lock:               lock,
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebbleFormat,
		Logger:             logger{opts.Logger},
		EventListener:      eventListener(opts.Logger),
	}
	s.db, err = openDB(dir, popts)
	if err != nil {
		_ = lock.Close()
		return nil, openError(dir, err)
	}
	if err := s.checkFormat(); err != nil {
		_ = s.closeDB()
		return nil, err
	}
	// Make the ballast; a disk already full is not an error here: the
	// store opens, reads work, and commits are refused until space is freed.
	_ = s.space.check()
	return s, nil
}

// openDB is pebble.Open with its Fatalf (see logger) turned into an error.
func openDB(dir string, popts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, panicError(r)
		}
	}()
	return pebble.Open(dir, popts)
}

// prepareDir creates dir when it is missing, and refuses one that holds
// files but no store. It runs before pebble, which would otherwise create a
// new store among foreign files (and, with no MANIFEST to say what is live,
// delete any table or log it found there as obsolete).
func prepareDir(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := fs.MkdirAll(dir, 0o700); err != nil {
			return dirError(dir, "cannot create the data directory", err)
		}
		return nil
	}
	if err != nil {
		return dirError(dir, "cannot read the data directory", err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, "marker.manifest.") {
			return nil // a pebble store: pebble checks the rest
		}
	}
	for _, name := range names {
		if !creationLeftover(name) {
			return fmt.Errorf("%w: data directory %s holds files but no petrel store (found %q); "+
				"nothing was changed: move them away or choose another directory", store.ErrCorrupt, dir, name)
		}
	}
	return nil
}

// creationLeftover reports whether name is a file a store's first Open may
// leave when it is interrupted before the store exists (before pebble's
// manifest marker is written). Such files hold no records, so pebble may
// start afresh among them.
func creationLeftover(name string) bool {
	switch {
	case name == "LOCK", name == ballastName,
		strings.HasPrefix(name, "OPTIONS-"),
		strings.HasPrefix(name, "marker.format-version."),
		strings.HasPrefix(name, "MANIFEST-"),
		strings.HasSuffix(name, ".dbtmp"):
		return true
	}
	return false
}

func dirError(dir, what string, err error) error {
	if kind := ioKind(err); kind != nil {
		return fmt.Errorf("%w: %s %s: %w", kind, what, dir, err)
	}
	return fmt.Errorf("pebble store: %s %s: %w", what, dir, err)
}

// lockError names what kept pebble's LOCK file from being taken. Creating
// the file fails with a *PathError (a permission, a read-only disk); the
// lock itself with EAGAIN or EACCES from fcntl when another process holds
// it, and with a plain error when this process does.
func lockError(dir string, err error) error {
	var pe *iofs.PathError
	if errors.As(err, &pe) {
		return dirError(dir, "cannot create the lock file in", err)
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w: data directory %s is in use by another petrel process: %w", store.ErrLocked, dir, err)
	}
	return fmt.Errorf("%w: data directory %s is already open in this process: %w", store.ErrLocked, dir, err)
}

// openError gives pebble.Open's error its kind. Whatever is not an I/O
// permission or space problem means pebble cannot read what is there.
func openError(dir string, err error) error {
	if kind := ioKind(err); kind != nil {
		return fmt.Errorf("%w: cannot open the store in %s: %w", kind, dir, err)
	}
	if strings.Contains(err.Error(), "unknown format major version") {
		return fmt.Errorf("%w: the store in %s was written by a newer petrel (pebble format above %d): %w",
			store.ErrNewerFormat, dir, pebbleFormat, err)
	}
	return fmt.Errorf("%w: the store in %s cannot be read, and was left as it is: %w", store.ErrCorrupt, dir, err)
}

// checkFormat reads the store's format version, or records FormatVersion
// in a new store.
func (s *Store) checkFormat() error {
	v, closer, err := s.db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return s.initFormat()
	}
	if err != nil {
		return readErr("reading the format version in "+s.dir, err)
	}
	text := string(v)
	_ = closer.Close()
	n, err := strconv.ParseUint(text, 10, 64)
	switch {
	case err != nil || n == 0:
		return fmt.Errorf("%w: the store in %s has a malformed format version %q", store.ErrCorrupt, s.dir, text)
	case n > store.FormatVersion:
		return fmt.Errorf("%w: the store in %s has format version %d; this petrel reads versions up to %d",
			store.ErrNewerFormat, s.dir, n, store.FormatVersion)
	}
	return nil
}

// initFormat records FormatVersion in a store without one, which must be
// empty: a new one, or one whose first Open was interrupted.
func (s *Store) initFormat() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return readErr("reading "+s.dir, err)
	}
	hasRecords := it.First()
	if err := it.Close(); err != nil {
		return readErr("reading "+s.dir, err)
	}
	if hasRecords {
		return fmt.Errorf("%w: the store in %s holds records but no format version", store.ErrCorrupt, s.dir)
	}
	pb := s.db.NewBatch()
	if err := pb.Set(formatKey, strconv.AppendUint(nil, store.FormatVersion, 10), nil); err != nil {
		return err
	}
	return s.apply(pb, true)
}

// Commit applies b atomically: one pebble batch, synced when sync is set.
// Pebble copies keys and values into the batch.
func (s *Store) Commit(b *store.Batch, sync bool) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("pebble store: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.writable(); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	pb := s.db.NewBatch()
	if err := fill(pb, b); err != nil {
		_ = pb.Close()
		return err
	}
	if err := s.space.admit(len(pb.Repr())); err != nil {
		_ = pb.Close()
		return err
	}
	return s.apply(pb, sync)
}

// fill writes b's ops into pb.
func fill(pb *pebble.Batch, b *store.Batch) error {
	var buf [128]byte
	for i := range b.Ops {
		op := &b.Ops[i]
		key := appendKey(buf[:0], op)
		var err error
		switch {
		case op.AllQueue:
			err = pb.DeleteRange(key, prefixEnd(key), nil)
		case op.Delete:
			err = pb.Delete(key, nil)
		default:
			err = pb.Set(key, op.Value, nil)
		}
		if err != nil {
			return fmt.Errorf("pebble store: op %d: %w", i, err)
		}
	}
	return nil
}

// apply commits pb. A write that fails inside pebble reaches here as a
// panic (pebble's own, or Fatalf's, see logger); it stops the store.
func (s *Store) apply(pb *pebble.Batch, sync bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// pb is left alone: pebble may still hold it.
			err = s.fail(panicError(r))
		}
	}()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := pb.Commit(wo); err != nil {
		_ = pb.Close()
		if kind := ioKind(err); kind != nil {
			return fmt.Errorf("%w: commit to %s: %w", kind, s.dir, err)
		}
		return fmt.Errorf("pebble store: commit to %s: %w", s.dir, err)
	}
	return pb.Close()
}

// fail records that pebble cannot take writes any more and returns the
// failed commit's error.
func (s *Store) fail(cause error) error {
	stopped := fmt.Errorf("%w: the store in %s stopped after a failed write and takes no writes until petrel restarts: %w",
		store.ErrReadOnly, s.dir, cause)
	s.failed.CompareAndSwap(nil, &stopped)
	s.log.Error("store: a write failed inside pebble; refusing all writes until restart", "dir", s.dir, "err", cause)
	kind := ioKind(cause)
	if kind == nil {
		kind = store.ErrReadOnly
	}
	return fmt.Errorf("%w: commit to %s failed: %w", kind, s.dir, cause)
}

// writable returns why the store takes no writes (it is closed, or a
// write failed inside pebble), or nil. The caller holds s.mu.
func (s *Store) writable() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return s.failure()
}

func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// LoadSessions calls fn for every session record in client id order.
func (s *Store) LoadSessions(fn func(clientID string, rec []byte) error) error {
	return s.scanNamespace(store.Sessions, func(k, v []byte) error { return fn(string(k[1:]), v) })
}

// LoadRetained calls fn for every retained message in topic order.
func (s *Store) LoadRetained(fn func(topic string, rec []byte) error) error {
	return s.scanNamespace(store.Retained, func(k, v []byte) error { return fn(string(k[1:]), v) })
}

// LoadMessages calls fn for every message body in id order.
func (s *Store) LoadMessages(fn func(id uint64, rec []byte) error) error {
	return s.scanNamespace(store.Messages, func(k, v []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("%w: malformed message key %q in %s", store.ErrCorrupt, k, s.dir)
		}
		return fn(seqOf(k), v)
	})
}

func (s *Store) scanNamespace(ns store.Namespace, fn func(k, v []byte) error) error {
	lower, upper := namespaceBounds(ns)
	return s.scan(lower, upper, func(k, v []byte) (bool, error) { return true, fn(k, v) })
}

// LoadQueue calls fn for the named queue's entries from seq from on, in order.
func (s *Store) LoadQueue(queue string, from uint64, fn func(seq uint64, entry []byte) (bool, error)) error {
	prefix := appendQueuePrefix(nil, queue)
	lower := binary.BigEndian.AppendUint64(bytes.Clone(prefix), from)
	return s.scan(lower, prefixEnd(prefix), func(k, v []byte) (bool, error) {
		if len(k) != len(prefix)+8 {
			return false, fmt.Errorf("%w: malformed queue key %q in %s", store.ErrCorrupt, k, s.dir)
		}
		return fn(seqOf(k), v)
	})
}

// scan calls fn for the records in [lower, upper) until it returns false or
// an error.
func (s *Store) scan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return readErr("reading "+s.dir, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return readErr("reading "+s.dir, err)
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			_ = it.Close()
			return err
		}
	}
	return readErr("reading "+s.dir, it.Close())
}

// Message returns a copy of the body stored under id, or store.ErrNotFound.
func (s *Store) Message(id uint64) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	var buf [9]byte
	v, closer, err := s.db.Get(appendKey(buf[:0], &store.Op{NS: store.Messages, Num: id}))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, readErr(fmt.Sprintf("reading message %d", id), err)
	}
	body := bytes.Clone(v)
	if body == nil {
		body = []byte{}
	}
	return body, closer.Close()
}

// Sync makes every earlier commit durable: it writes an empty log record
// and syncs the log, which carries all that came before it.
func (s *Store) Sync() (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.writable(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(panicError(r))
		}
	}()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		if kind := ioKind(err); kind != nil {
			return fmt.Errorf("pebble store: sync: %w: %w", kind, err)
		}
		return fmt.Errorf("pebble store: sync: %w", err)
	}
	return nil
}

// Usage reports the bytes of the files in the store's directory, the ballast
// left out.
func (s *Store) Usage() (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	return usage(s.fs, s.dir)
}

// Close syncs the log, closes pebble and releases the directory. Closing
// again does nothing. After a failed write (see Commit) Close returns that
// failure without waiting for pebble, whose commit lock may be held for
// good; the directory stays locked until the process exits.
func (s *Store) Close() error {
	if err := s.failure(); err != nil {
		s.closed.Store(true)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	return s.closeDB()
}

func (s *Store) closeDB() error {
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("pebble store: closing %s: %w", s.dir, err)
	}
	return nil
}

var _ store.Store = (*Store)(nil)
