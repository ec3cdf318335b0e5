package broker

import (
	"fmt"
	"strings"
	"time"

	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/store"
)

// recover loads what the store holds before the broker serves anyone:
// retained messages, and durable sessions with their subscriptions, the
// QoS 2 ids their clients sent, pending wills and the size of their queues
// (the queued deliveries themselves stay in the store until their client is
// back). Sessions and messages that expired while the broker was down are
// dropped; wills whose time came are published.
func (s *Server) recover() error {
	start := time.Now()
	var expired store.Batch
	retained := 0
	err := s.store.LoadRetained(func(name string, rec []byte) error {
		r, topic, expiry, err := retainedRecOf(rec)
		if err != nil {
			return fmt.Errorf("retained message %q: %w", name, err)
		}
		if !expiry.IsZero() && !start.Before(expiry) {
			expired.DeleteRetained(name)
			return nil
		}
		if s.opts.Cluster != nil {
			// A cluster keeps its retained messages in its own replicated
			// store: these go there once this node has joined.
			s.localRetained = append(s.localRetained, localRetained{store: name, topic: topic, body: r.body()})
			retained++
			return nil
		}
		s.retained.Set(topic, r)
		s.retainedExpiry.set(topic, expiry)
		retained++
		return nil
	})
	if err != nil {
		return fmt.Errorf("load retained messages: %w", err)
	}
	var wills []*message
	sessions, queued := 0, 0
	err = s.store.LoadSessions(func(clientID string, rec []byte) error {
		r, err := decodeSession(rec)
		if err != nil {
			return fmt.Errorf("session %q: %w", clientID, err)
		}
		ss, will, err := s.recoverSession(clientID, r, start)
		if err != nil {
			return err
		}
		if will != nil {
			wills = append(wills, will)
		}
		if ss != nil {
			sessions++
			queued += ss.stored
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	if expired.Len() > 0 {
		s.committer.write(&expired)
	}
	for _, w := range wills {
		s.publishWill(w)
	}
	s.log.Info("recovered from the store", "retained", retained, "sessions", sessions, "queued", queued,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// recoverSession rebuilds one durable session. It returns nil for a session
// that expired while the broker was down, and a will to publish now.
func (s *Server) recoverSession(clientID string, r *sessionRecord, now time.Time) (*session, *message, error) {
	ss := &session{id: s.nextSessionID.Add(1), clientID: clientID, srv: s, nextSeq: 1, expiry: r.expiry}
	ss.aside.Store(s.asideFor(clientID))
	ss.persisted, ss.durableState = true, &durableState{uid: r.uid}
	if r.user != nil {
		r.user.ClientID = clientID
		ss.client.Store(r.user)
	}
	offline := r.offlineSince
	if offline.IsZero() || offline.After(now) {
		offline = now // it was connected when the broker stopped
	}
	ss.asideLocked().since = offline.UnixNano()
	if ss.expiry != expiryNever {
		ss.awayLocked().expireAt = offline.Add(time.Duration(ss.expiry) * time.Second)
	}
	if a := ss.x().away; a != nil && !now.Before(a.expireAt) {
		// Expired while the broker was down: it ends, and its will goes.
		s.stats.sessionExpired.Add(1)
		s.committer.dropSession(clientID, ss.queueName(), ss.inboundName())
		return nil, r.will, nil
	}
	var will *message
	if r.will != nil {
		if !now.Before(r.willAt) {
			will = r.will
		} else {
			a := ss.awayLocked()
			a.pendingWill, a.willAt = r.will, r.willAt
		}
	}
	// The queue: its length and bytes, where it starts and ends.
	if err := s.loadQueuesLocked(ss); err != nil { // not shared yet: no lock needed
		return nil, nil, err
	}
	for _, st := range r.subs {
		sub := subscriber{sess: ss, qos: st.qos, noLocal: st.opts&subNoLocal != 0,
			retainAsPublished: st.opts&subRAP != 0, checkRead: st.opts&subCheckRead != 0, subID: st.subID}
		if ss.subs == nil {
			ss.subs = make(map[string]subscriber)
		}
		if strings.HasPrefix(st.key, topic.SharePrefix) {
			name, filter, err := topic.ParseShare(st.key)
			if err != nil {
				return nil, nil, fmt.Errorf("session %q subscription %q: %w", clientID, st.key, err)
			}
			sub.group, _ = s.joinShare(name, filter, sub)
		} else {
			s.indexAdd(st.key, ss, sub)
		}
		ss.subs[st.key] = sub
	}
	ss.nsubs.Store(int32(len(ss.subs)))
	s.mu.Lock()
	s.sessions.set(ss)
	s.admin.dir.add(ss)
	s.mu.Unlock()
	ss.mu.Lock()
	ss.armLocked(now)
	ss.mu.Unlock()
	return ss, will, nil
}
