// Package store is the broker's persistence: a few namespaces of opaque
// records (sessions, queue entries, message bodies, retained messages) that
// the broker encodes and decodes itself. Engines live in subpackages:
// store/pebblestore (durable, the default) and store/memory.
//
// Writes are grouped in a Batch and committed atomically. A commit with sync
// set returns only once the batch is on stable storage; the broker commits
// from one goroutine and merges concurrent writers' batches into one commit,
// so they share the fsync.
package store

import (
	"errors"
	"fmt"
)

// Store is one storage engine. Its methods are safe for concurrent use,
// except that Commit calls must not overlap with Close.
type Store interface {
	// Commit applies b atomically. With sync, it returns only once the
	// writes are durable. An error means none of b was applied; it wraps
	// ErrFull when the disk is full and ErrReadOnly when the store cannot
	// be written, so the broker can refuse the client's write with a reason.
	Commit(b *Batch, sync bool) error

	// LoadSessions, LoadRetained and LoadMessages call fn for every record of
	// their namespace, in key order, at startup. The slices passed to fn are
	// valid only during the call. An error from fn stops the walk and is
	// returned.
	LoadSessions(fn func(clientID string, rec []byte) error) error
	LoadRetained(fn func(topic string, rec []byte) error) error
	LoadMessages(fn func(id uint64, rec []byte) error) error

	// LoadQueue calls fn for the entries of the named queue with sequence
	// numbers from from on, in order, until fn returns false or an error.
	LoadQueue(queue string, from uint64, fn func(seq uint64, entry []byte) (bool, error)) error

	// Message returns the body stored under id, or ErrNotFound.
	Message(id uint64) ([]byte, error)

	// Sync makes every earlier commit durable, those made without sync
	// included (the broker's periodic sync mode).
	Sync() error

	// Usage reports the bytes the store occupies (for metrics and hygiene checks).
	Usage() (int64, error)

	// Close flushes and releases the store (and its directory lock).
	Close() error
}

// Errors an engine reports. Test with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrFull: the disk is full; the write was refused and nothing is lost.
	ErrFull = errors.New("store: disk full")
	// ErrReadOnly: the store cannot be written (permissions, a failed disk).
	ErrReadOnly = errors.New("store: not writable")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("store: in use by another process")
	// ErrNewerFormat: the store was written by a newer Petrel.
	ErrNewerFormat = errors.New("store: written by a newer format version")
	// ErrCorrupt: the store's data is damaged. It is never wiped silently.
	ErrCorrupt = errors.New("store: corrupt")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store: closed")
)

// FormatVersion is the version of the record layout the broker writes. An
// engine records it when creating a store and refuses to open a store with
// a higher one (ErrNewerFormat).
const FormatVersion = 1

// Namespace is one kind of record.
type Namespace byte

// The namespaces.
const (
	Sessions Namespace = 's' // client id → session record
	Queues   Namespace = 'q' // (queue name, sequence number) → queue entry
	Messages Namespace = 'm' // message id → message body
	Retained Namespace = 'r' // topic → retained message
)

// Op is one write of a Batch.
type Op struct {
	Delete bool
	NS     Namespace
	Name   string // client id (Sessions), queue name, or topic; empty for Messages
	Num    uint64 // sequence number (Queues) or message id (Messages)
	Value  []byte // nil for deletes
	// AllQueue removes every entry of Name's queue (with Delete set,
	// NS Queues).
	AllQueue bool
}

// Batch is a list of writes applied together. The zero value is empty and
// ready. The batch references values, it does not copy them: do not change
// them until Commit returns. Engines copy values at Commit; the caller may
// reuse them once Commit returns.
type Batch struct {
	Ops []Op
}

func (b *Batch) PutSession(clientID string, rec []byte) {
	b.Ops = append(b.Ops, Op{NS: Sessions, Name: clientID, Value: rec})
}

// DeleteSession removes a session record, and nothing else: a session's
// queues have names of their own (the broker's add a per-session id to the
// client id), and go with DeleteQueueAll.
func (b *Batch) DeleteSession(clientID string) {
	b.Ops = append(b.Ops, Op{Delete: true, NS: Sessions, Name: clientID})
}

// DeleteQueueAll removes every entry of the named queue.
func (b *Batch) DeleteQueueAll(queue string) {
	b.Ops = append(b.Ops, Op{Delete: true, NS: Queues, Name: queue, AllQueue: true})
}

// PutQueue writes the entry at seq of the named queue.
func (b *Batch) PutQueue(queue string, seq uint64, entry []byte) {
	b.Ops = append(b.Ops, Op{NS: Queues, Name: queue, Num: seq, Value: entry})
}

// DeleteQueue removes the entry at seq of the named queue.
func (b *Batch) DeleteQueue(queue string, seq uint64) {
	b.Ops = append(b.Ops, Op{Delete: true, NS: Queues, Name: queue, Num: seq})
}

func (b *Batch) PutMessage(id uint64, body []byte) {
	b.Ops = append(b.Ops, Op{NS: Messages, Num: id, Value: body})
}

func (b *Batch) DeleteMessage(id uint64) {
	b.Ops = append(b.Ops, Op{Delete: true, NS: Messages, Num: id})
}

func (b *Batch) PutRetained(topic string, rec []byte) {
	b.Ops = append(b.Ops, Op{NS: Retained, Name: topic, Value: rec})
}

func (b *Batch) DeleteRetained(topic string) {
	b.Ops = append(b.Ops, Op{Delete: true, NS: Retained, Name: topic})
}

// Append adds other's writes after b's, for merging concurrent batches into
// one commit.
func (b *Batch) Append(other *Batch) { b.Ops = append(b.Ops, other.Ops...) }

// Len is the number of writes.
func (b *Batch) Len() int { return len(b.Ops) }

// Validate reports the first op an engine cannot apply (an unknown
// namespace, or AllQueue without Delete in the queues namespace), so that a
// Commit can refuse the whole batch before applying any of it.
func (b *Batch) Validate() error {
	for i, op := range b.Ops {
		switch op.NS {
		case Sessions, Queues, Messages, Retained:
		default:
			return fmt.Errorf("op %d: unknown %v", i, op.NS)
		}
		if op.AllQueue && (!op.Delete || op.NS != Queues) {
			return fmt.Errorf("op %d: AllQueue needs Delete and the queues namespace", i)
		}
	}
	return nil
}

// Reset empties b for reuse.
func (b *Batch) Reset() {
	clear(b.Ops)
	b.Ops = b.Ops[:0]
}

func (ns Namespace) String() string {
	switch ns {
	case Sessions:
		return "sessions"
	case Queues:
		return "queues"
	case Messages:
		return "messages"
	case Retained:
		return "retained"
	}
	return fmt.Sprintf("namespace(%q)", byte(ns))
}
