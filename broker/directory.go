package broker

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// directory lists the sessions by client id, for the pages of the admin
// API (admin.go). The session table (Server.sessions) is one hash table
// under Server.mu, which every CONNECT takes: walking it for a page would
// hold up every client connecting meanwhile, and a walk of it cannot
// resume where the last page ended (its entries move as others come and
// go). The directory is the same sessions, sharded by a hash of the
// client id, each shard sorted by client id when a page reaches it after
// a change: a page locks one shard at a time, for as long as it takes to
// copy that shard's pointers, and never the table.
//
// It costs nothing until the first page asks for it (enableDirectory): a
// broker nobody lists spares the memory (some 25 bytes a session). From
// then on, keeping it costs one map write per session opened or ended,
// under Server.mu, with a lock nobody else is likely to hold.
type directory struct {
	// on is set, under Server.mu, once the directory is kept: add and
	// remove do nothing before.
	on     atomic.Bool
	fill   sync.Once
	seed   maphash.Seed
	shards [dirShards]dirShard
}

// dirShards spreads a million sessions to about 4,000 a shard: a page
// that finds its shard changed copies and sorts that many.
const dirShards = 256

// dirShard is one shard of the directory.
type dirShard struct {
	mu  sync.Mutex
	set map[*session]struct{}
	// gen counts changes; sorted is the set sorted by client id, kept
	// from one page to the next until a change drops it.
	gen    uint64
	sorted []*session
}

// shardOf returns the index of the shard that holds clientID.
func (d *directory) shardOf(clientID string) int {
	return int(maphash.String(d.seed, clientID) % dirShards)
}

// enableDirectory starts keeping the directory, once in the Server's life,
// and returns when it holds every session. The session table's lock is
// held only to copy its pointers (some milliseconds for a million): the
// sessions go into the directory after, each under its own lock, so that
// one ending meanwhile is either added before it is removed or not added.
func (s *Server) enableDirectory() {
	s.admin.dir.fill.Do(func() { s.fillDirectory() })
}

// fillDirectory does enableDirectory's work, and returns how long it held
// the session table's lock.
func (s *Server) fillDirectory() (held time.Duration) {
	d := &s.admin.dir
	d.seed = maphash.MakeSeed()
	start := time.Now()
	s.mu.Lock()
	all := slices.AppendSeq(make([]*session, 0, s.sessions.len()), s.sessions.all())
	d.on.Store(true) // sessions opened from now on add themselves
	s.mu.Unlock()
	held = time.Since(start)
	for _, ss := range all {
		ss.mu.Lock()
		if !ss.ended {
			d.add(ss)
		}
		ss.mu.Unlock()
	}
	return held
}

// add lists a session that joined the session table: under Server.mu, or
// the session's lock while enableDirectory fills the directory.
func (d *directory) add(ss *session) {
	if !d.on.Load() {
		return
	}
	sh := &d.shards[d.shardOf(ss.clientID)]
	sh.mu.Lock()
	if sh.set == nil {
		sh.set = make(map[*session]struct{})
	}
	sh.set[ss] = struct{}{}
	sh.changedLocked()
	sh.mu.Unlock()
}

// remove forgets a session that ended. Under Server.mu.
func (d *directory) remove(ss *session) {
	if !d.on.Load() {
		return
	}
	sh := &d.shards[d.shardOf(ss.clientID)]
	sh.mu.Lock()
	delete(sh.set, ss)
	sh.changedLocked()
	sh.mu.Unlock()
}

// changedLocked lets the sorted copy go: the next page sorts afresh, and
// until then the copy keeps no ended session alive.
func (sh *dirShard) changedLocked() {
	sh.gen++
	sh.sorted = nil
}

// snapshot returns the shard's sessions sorted by client id. The slice is
// shared and must not be changed. The shard is locked only to copy its
// pointers; sorting happens outside, and the result is kept for the next
// page unless the shard changed meanwhile.
func (sh *dirShard) snapshot() []*session {
	sh.mu.Lock()
	if sh.sorted != nil || len(sh.set) == 0 {
		s := sh.sorted
		sh.mu.Unlock()
		return s
	}
	gen := sh.gen
	all := make([]*session, 0, len(sh.set))
	for ss := range sh.set {
		all = append(all, ss)
	}
	sh.mu.Unlock()
	slices.SortFunc(all, func(a, b *session) int { return strings.Compare(a.clientID, b.clientID) })
	sh.mu.Lock()
	if sh.gen == gen {
		sh.sorted = all
	}
	sh.mu.Unlock()
	return all
}

// dirPosition is where a walk of the directory stands: the shard, and the
// last client id visited in it (none yet unless started).
type dirPosition struct {
	shard   int
	after   string
	started bool
}

// walk calls fn for the sessions after pos, in order of shard and then
// client id, skipping those whose client id lacks prefix, until fn
// returns false or budget sessions were visited. fn is given the position
// of its session, to resume after it. walk returns the position of the
// last session visited and whether the walk reached the end.
func (d *directory) walk(pos dirPosition, prefix string, budget int, fn func(*session, dirPosition) bool) (dirPosition, bool) {
	for ; pos.shard < dirShards; pos.shard, pos.after, pos.started = pos.shard+1, "", false {
		all := d.shards[pos.shard].snapshot()
		from := prefix
		if pos.started && pos.after >= prefix {
			from = pos.after
		}
		i, _ := slices.BinarySearchFunc(all, from, func(ss *session, id string) int { return strings.Compare(ss.clientID, id) })
		for ; i < len(all); i++ {
			ss := all[i]
			if pos.started && ss.clientID <= pos.after {
				continue
			}
			if !strings.HasPrefix(ss.clientID, prefix) {
				break
			}
			pos.after, pos.started = ss.clientID, true
			budget--
			if !fn(ss, pos) || budget <= 0 {
				return pos, false
			}
		}
	}
	return pos, true
}
