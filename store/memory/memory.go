// Package memory is a store.Store kept in memory: for tests, and for brokers
// that promise no durability. Nothing survives Close.
//
// Sessions, retained messages and message bodies live in maps and are sorted
// when they are loaded (loading happens once, at startup). Each queue is its
// own slice ordered by sequence number, so LoadQueue finds its start with a
// binary search and never looks at another queue's entries.
package memory

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/petrelmq/petrel/store"
)

// Store is an in-memory store.Store. The zero value is not ready; use New.
type Store struct {
	mu       sync.RWMutex
	closed   bool
	sessions map[string][]byte
	retained map[string][]byte
	messages map[uint64][]byte
	queues   map[string]*queue
	bytes    int64 // keys and values held, for Usage
}

// queue is one queue's entries, ordered by seq. Entries are mostly appended
// at the tail and deleted from the head.
type queue struct {
	entries []entry
}

type entry struct {
	seq uint64
	val []byte
}

// New returns an empty store.
func New() *Store {
	return &Store{
		sessions: make(map[string][]byte),
		retained: make(map[string][]byte),
		messages: make(map[uint64][]byte),
		queues:   make(map[string]*queue),
	}
}

// Commit applies b under one lock, so no reader sees half of it. Values are
// copied.
func (s *Store) Commit(b *store.Batch, sync bool) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("memory store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	for i := range b.Ops {
		s.apply(&b.Ops[i])
	}
	return nil
}

func (s *Store) apply(op *store.Op) {
	switch op.NS {
	case store.Sessions:
		s.bytes += putOrDelete(s.sessions, op.Name, op.Delete, op.Value, int64(len(op.Name)))
	case store.Retained:
		s.bytes += putOrDelete(s.retained, op.Name, op.Delete, op.Value, int64(len(op.Name)))
	case store.Messages:
		s.bytes += putOrDelete(s.messages, op.Num, op.Delete, op.Value, 8)
	case store.Queues:
		s.applyQueue(op)
	}
}

// putOrDelete writes one map record and returns the change in bytes held.
func putOrDelete[K comparable](m map[K][]byte, k K, del bool, v []byte, keyLen int64) int64 {
	var delta int64
	if old, ok := m[k]; ok {
		delta -= keyLen + int64(len(old))
		delete(m, k)
	}
	if !del {
		m[k] = clone(v)
		delta += keyLen + int64(len(v))
	}
	return delta
}

func (s *Store) applyQueue(op *store.Op) {
	q := s.queues[op.Name]
	keyLen := int64(len(op.Name)) + 8
	switch {
	case op.AllQueue:
		if q == nil {
			return
		}
		for _, e := range q.entries {
			s.bytes -= keyLen + int64(len(e.val))
		}
		delete(s.queues, op.Name)
	case op.Delete:
		if q == nil {
			return
		}
		if old, ok := q.remove(op.Num); ok {
			s.bytes -= keyLen + int64(len(old))
		}
		if len(q.entries) == 0 {
			delete(s.queues, op.Name)
		}
	default:
		if q == nil {
			q = &queue{}
			s.queues[op.Name] = q
		}
		old, replaced := q.put(op.Num, clone(op.Value))
		if replaced {
			s.bytes -= keyLen + int64(len(old))
		}
		s.bytes += keyLen + int64(len(op.Value))
	}
}

// search returns the index of the first entry with a seq at least seq.
func (q *queue) search(seq uint64) int {
	return sort.Search(len(q.entries), func(i int) bool { return q.entries[i].seq >= seq })
}

// put stores val under seq and returns the value it replaced, if any.
func (q *queue) put(seq uint64, val []byte) ([]byte, bool) {
	n := len(q.entries)
	if n == 0 || q.entries[n-1].seq < seq { // the common case: a new tail
		q.entries = append(q.entries, entry{seq, val})
		return nil, false
	}
	i := q.search(seq)
	if q.entries[i].seq == seq {
		old := q.entries[i].val
		q.entries[i].val = val
		return old, true
	}
	q.entries = slices.Insert(q.entries, i, entry{seq, val})
	return nil, false
}

// remove deletes seq's entry and returns its value, if there was one.
func (q *queue) remove(seq uint64) ([]byte, bool) {
	i := q.search(seq)
	if i == len(q.entries) || q.entries[i].seq != seq {
		return nil, false
	}
	old := q.entries[i].val
	if i == 0 {
		// The common case: the head was delivered. Reslicing drops it
		// without moving the rest; append reallocates once the front of the
		// array is used up, which frees it.
		q.entries[0] = entry{}
		q.entries = q.entries[1:]
		return old, true
	}
	q.entries = slices.Delete(q.entries, i, i+1)
	return old, true
}

// LoadSessions calls fn for every session record in client id order.
func (s *Store) LoadSessions(fn func(clientID string, rec []byte) error) error {
	return loadSorted(s, func() map[string][]byte { return s.sessions }, fn)
}

// LoadRetained calls fn for every retained message in topic order.
func (s *Store) LoadRetained(fn func(topic string, rec []byte) error) error {
	return loadSorted(s, func() map[string][]byte { return s.retained }, fn)
}

// LoadMessages calls fn for every message body in id order.
func (s *Store) LoadMessages(fn func(id uint64, rec []byte) error) error {
	return loadSorted(s, func() map[uint64][]byte { return s.messages }, fn)
}

// loadSorted snapshots a namespace under the read lock and calls fn without
// it, so fn may use the store. Stored values are never changed in place
// (Commit replaces them), so the snapshot shares them safely.
func loadSorted[K cmp.Ordered](s *Store, ns func() map[K][]byte, fn func(K, []byte) error) error {
	type kv struct {
		k K
		v []byte
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	m := ns()
	recs := make([]kv, 0, len(m))
	for k, v := range m {
		recs = append(recs, kv{k, v})
	}
	s.mu.RUnlock()
	slices.SortFunc(recs, func(a, b kv) int { return cmp.Compare(a.k, b.k) })
	for _, r := range recs {
		if err := fn(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

// loadChunk is how many queue entries LoadQueue copies per lock hold.
const loadChunk = 64

// LoadQueue calls fn for the named queue's entries from seq from on, in
// order. It copies a few entries at a time under the read lock and calls fn
// without it.
func (s *Store) LoadQueue(queue string, from uint64, fn func(seq uint64, entry []byte) (bool, error)) error {
	var chunk []entry
	for {
		chunk = chunk[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return store.ErrClosed
		}
		if q := s.queues[queue]; q != nil {
			i := q.search(from)
			chunk = append(chunk, q.entries[i:min(i+loadChunk, len(q.entries))]...)
		}
		s.mu.RUnlock()
		for _, e := range chunk {
			more, err := fn(e.seq, e.val)
			if err != nil || !more {
				return err
			}
		}
		if len(chunk) < loadChunk {
			return nil
		}
		last := chunk[len(chunk)-1].seq
		if last == ^uint64(0) {
			return nil
		}
		from = last + 1
	}
}

// Message returns the body stored under id, or store.ErrNotFound.
func (s *Store) Message(id uint64) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	body, ok := s.messages[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return clone(body), nil
}

// Usage reports the bytes of keys and values held.
// Sync does nothing: there is no disk.
func (s *Store) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

func (s *Store) Usage() (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	return s.bytes, nil
}

// Close drops everything. Later calls return store.ErrClosed; closing again
// does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.sessions, s.retained, s.messages, s.queues = nil, nil, nil, nil
	s.bytes = 0
	return nil
}

// clone copies v; a nil or empty v stays non-nil and empty, so a stored empty
// record reads back as present.
func clone(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}

var _ store.Store = (*Store)(nil)
