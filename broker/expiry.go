package broker

import (
	"strings"
	"sync"
	"time"
)

// Expired messages are dropped when the broker comes across them (routing,
// paging a queue in, a subscription's retained messages), and also by a
// background sweep, so they do not hold memory or disk while nobody looks:
// retained messages with an expiry, and the queues of offline durable
// sessions that hold messages with one.

// expiryIndex remembers which retained topics carry a message with an
// expiry, so the sweep visits those alone.
type expiryIndex struct {
	mu     sync.Mutex
	topics map[string]time.Time
}

func (x *expiryIndex) set(topic string, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if at.IsZero() {
		delete(x.topics, topic)
		return
	}
	if x.topics == nil {
		x.topics = make(map[string]time.Time)
	}
	// A copy: the caller's topic may be part of a message that is
	// recycled, or of a retained record that a newer one replaces.
	x.topics[strings.Clone(topic)] = at
}

// due removes and returns the topics whose expiry has passed.
func (x *expiryIndex) due(now time.Time) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for t, at := range x.topics {
		if !now.Before(at) {
			out = append(out, t)
			delete(x.topics, t)
		}
	}
	return out
}

// expireSweepInterval is how often the background expiry runs.
const expireSweepInterval = time.Second

// sweepExpired drops expired retained messages and purges expired
// deliveries from offline durable sessions.
func (s *Server) sweepExpired(now time.Time) {
	if topics := s.retainedExpiry.due(now); len(topics) > 0 {
		tx := txPool.Get().(*routeTx)
		for _, t := range topics {
			if rec, ok := s.retained.Get(t); ok && rec.expired(now) {
				s.retained.Delete(t)
				tx.batch(s).DeleteRetained(t)
				s.stats.expired.Add(1)
			}
		}
		tx.finish(s, nil)
		putTx(tx)
	}
	for _, ss := range s.expiring.due(now) {
		ss.purgeExpired(now)
	}
}

// expiringSessions holds the sessions whose queueExpiry is set, so that
// the sweep visits those alone, not every session each second: few queue
// messages that expire. A session joins and leaves with ss.mu held, as its
// queueExpiry goes from 0 and back to it, or when it ends.
type expiringSessions struct {
	mu sync.Mutex
	m  map[*session]struct{}
}

func (x *expiringSessions) add(ss *session) {
	x.mu.Lock()
	if x.m == nil {
		x.m = make(map[*session]struct{})
	}
	x.m[ss] = struct{}{}
	x.mu.Unlock()
}

func (x *expiringSessions) remove(ss *session) {
	x.mu.Lock()
	delete(x.m, ss)
	x.mu.Unlock()
}

// due returns the sessions that may hold an expired delivery (expiryDue).
func (x *expiringSessions) due(now time.Time) []*session {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*session
	for ss := range x.m {
		if ss.expiryDue(now) {
			out = append(out, ss)
		}
	}
	return out
}

// expiryDue reports whether an offline session holds a delivery that may
// have expired. It reads without the lock: a stale answer only delays the
// purge to the next sweep.
func (ss *session) expiryDue(now time.Time) bool {
	at := ss.x().queueExpiry.Load()
	return at != 0 && at <= now.UnixNano() && !ss.online.Load()
}

// noteExpiry records that a delivery expiring at `at` was queued. Small
// enough to inline: most messages have no expiry, and it is called for
// every delivery.
func (ss *session) noteExpiry(at time.Time) {
	if !at.IsZero() {
		ss.noteExpiryAt(at)
	}
}

func (ss *session) noteExpiryAt(at time.Time) {
	n := at.UnixNano()
	a := ss.asideLocked()
	old := a.queueExpiry.Load()
	if old == 0 {
		ss.srv.expiring.add(ss)
	}
	if old == 0 || n < old {
		a.queueExpiry.Store(n)
	}
}

// purgeExpired drops the expired deliveries of an offline session, from
// memory and from the store, and records when the next one expires.
func (ss *session) purgeExpired(now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		ss.srv.expiring.remove(ss)
		return
	}
	if ss.conn != nil {
		return
	}
	var next time.Time
	// keep reports whether a delivery expiring at exp is kept.
	keep := func(exp time.Time) bool {
		if exp.IsZero() || now.Before(exp) {
			if !exp.IsZero() && (next.IsZero() || exp.Before(next)) {
				next = exp
			}
			return true
		}
		ss.srv.stats.expired.Add(1)
		return false
	}
	// The memory queue.
	var kept []delivery
	for ss.x().queue.len() > 0 {
		d := ss.x().queue.pop(ss.acct())
		if keep(d.msg.Expiry) {
			kept = append(kept, d)
		} else {
			ss.gaveUp(&d, DropExpired)
			ss.forgetLocked(&d)
		}
	}
	for _, d := range kept {
		ss.x().queue.push(ss.acct(), d) // the queue was not empty
	}
	// What waits in the store alone.
	if ss.persisted && ss.stored > 0 {
		first := true
		var bodies map[uint64]*message // read for OnDropped only
		stored, bytes := 0, int64(0)
		err := ss.srv.store.LoadQueue(ss.queueName(), ss.storedFrom, func(seq uint64, rec []byte) (bool, error) {
			e, err := decodeEntry(rec)
			if err != nil {
				return false, err
			}
			if e.released || keep(e.expiry) {
				if first {
					ss.storedFrom, first = seq, false
				}
				stored++
				bytes += int64(e.size)
				return true, nil
			}
			if ss.srv.opts.Hooks.OnDropped != nil {
				ss.expiredInStore(e, &bodies)
			}
			ss.srv.committer.dropEntry(ss.queueName(), seq, e.msgID)
			return true, nil
		})
		if err != nil {
			ss.srv.log.Error("purging expired messages from the store", "client", ss.clientID, "err", err)
		} else {
			ss.setStoredLocked(stored, bytes)
		}
	}
	ss.noteLoadLocked()
	if !next.IsZero() {
		ss.asideLocked().queueExpiry.Store(next.UnixNano())
	} else if a := ss.aside.Load(); a != nil {
		a.queueExpiry.Store(0)
		ss.srv.expiring.remove(ss)
	}
}

// expiredInStore reports to OnDropped a delivery that expired while it was
// in the store alone: its body is read for the hook. ss.mu is held.
func (ss *session) expiredInStore(e queueEntry, bodies *map[uint64]*message) {
	if *bodies == nil {
		*bodies = make(map[uint64]*message)
	}
	m, err := ss.loadBody(*bodies, e.msgID)
	if err != nil {
		ss.srv.log.Error("reading an expired message for OnDropped", "client", ss.clientID, "err", err)
		return
	}
	d := delivery{msg: m, qos: e.qos, retain: e.retain}
	ss.droppedHook(&d, DropExpired)
}
