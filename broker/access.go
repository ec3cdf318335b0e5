package broker

import (
	"context"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// needsIdentity reports whether anything will ask who a client is.
func (s *Server) needsIdentity() bool {
	o := &s.opts
	return o.Authenticator != nil || o.Authorizer != nil || o.AuthMethods != nil || o.Hooks.needsIdentity()
}

// mayWrite reports whether the client, whose client id is id, may
// publish to topic. No client may publish to a topic starting with '$':
// those are the broker's ($SYS), except a bridge on its own state topic
// (ownBridgeState). Then the Authorizer decides.
func (c *conn) mayWrite(id, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && !c.ownBridgeState(id, topic) {
		return false
	}
	a := c.ln.srv.opts.Authorizer
	return a == nil || a.Allow(c.client, auth.Write, topic)
}

// mayPublish reports whether the client may publish to topic: mayWrite
// and the OnACLCheck hook must both allow.
func (c *conn) mayPublish(id, topic string) bool {
	if !c.mayWrite(id, topic) {
		return false
	}
	return c.ln.srv.opts.Hooks.OnACLCheck == nil || c.aclHook(auth.Write, topic)
}

// bridgeStatePrefix and bridgeStateSuffix frame the topic on which a
// Mosquitto bridge announces whether it is connected ("1") and, as its will,
// that it is not ("0"): $SYS/broker/connection/<its client id>/state, its
// default notification topic, the one Petrel's own bridges use too.
const (
	bridgeStatePrefix = sysPrefix + "connection/"
	bridgeStateSuffix = "/state"
)

// ownBridgeState reports whether topic is the state topic of a bridge
// (packet.Connect.Bridge) whose client id is id. Mosquitto's bridges
// announce their state there by default, and would be refused without it.
func (c *conn) ownBridgeState(id, topic string) bool {
	return c.flags.Load()&flagBridge != 0 &&
		len(topic) == len(bridgeStatePrefix)+len(id)+len(bridgeStateSuffix) &&
		strings.HasPrefix(topic, bridgeStatePrefix) && strings.HasSuffix(topic, bridgeStateSuffix) &&
		topic[len(bridgeStatePrefix):len(topic)-len(bridgeStateSuffix)] == id
}

// maySubscribe reports whether a client may subscribe to filter, and
// whether the messages that subscription brings must be checked one by one
// (the authorizer cannot vouch for every topic it matches).
func (s *Server) maySubscribe(c *auth.Client, filter string) (ok, checkEach bool) {
	a := s.opts.Authorizer
	if a == nil {
		return true, false
	}
	if !a.Allow(c, auth.Subscribe, filter) {
		return false, false
	}
	if cov, ok := a.(auth.Covering); ok && cov.Covers(c, filter) {
		return true, false
	}
	return true, true
}

// mayRead reports whether the session's client may receive a message on
// topic. It is asked only for subscriptions marked to check each message.
func (s *Server) mayRead(ss *session, topic string) bool {
	a := s.opts.Authorizer
	if a == nil {
		return true
	}
	c := ss.client.Load()
	if c == nil || !a.Allow(c, auth.Read, topic) {
		s.stats.withheld.Add(1)
		return false
	}
	ss.statShard().allowed.Add(1)
	return true
}

// loginFailed records a failed login from addr and returns how long to wait
// before answering it: password guessing gets slower with every failure
// from the same address (internal/throttle).
func (s *Server) loginFailed(addr net.Addr) time.Duration {
	ip := addrIP(addr).String()
	s.logins.Failed(ip)
	return s.logins.Delay(ip)
}

// overMemoryBudget reports whether queueing size more bytes in memory would
// exceed the budget for queued messages.
func (s *Server) overMemoryBudget(size int) bool {
	b := s.opts.Limits.QueuedMemory
	return b > 0 && s.queuedMem.Load()+int64(size) > b
}

// waitFor asks a remote authorizer what its cache could not answer: the
// packet is kept (a copy), input is held, and once the answer is in the
// packet is handled again, the answer now cached. It reports false when
// the authorizer cannot be asked again (it has answered already, or does
// not wait), so the caller takes the refusal as final.
func (c *conn) waitFor(a auth.Access, topics []string, p packet.Packet) bool {
	w, ok := c.ln.srv.opts.Authorizer.(auth.WaitingAuthorizer)
	if !ok || c.rechecking {
		return false
	}
	kept := packet.Clone(p)
	cl := c.client
	// The topics alias the read buffer, which is reused as soon as this
	// returns: the goroutine gets its own copies.
	topics = slices.Clone(topics)
	for i, t := range topics {
		topics[i] = strings.Clone(t)
	}
	c.paused = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.ln.srv.opts.AuthTimeout)
		for _, t := range topics {
			w.AllowWait(ctx, cl, a, t)
		}
		cancel()
		c.resume(kept)
	}()
	return true
}

// resume handles a packet kept by waitFor, then what arrived meanwhile.
func (c *conn) resume(p packet.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosing() || c.state == stateClosed {
		return
	}
	c.paused = false
	c.rechecking = true
	err := c.handle(p, nil)
	c.rechecking = false
	if err != nil {
		c.fail(err)
		return
	}
	if len(c.in.Bytes()) > 0 && !c.paused && !c.isClosing() {
		c.consume(nil, 0)
	}
}

// AuthorizationChanged re-evaluates every subscription after the
// authorizer's rules changed (an ACL file reloaded): a subscription the
// rules no longer cover gets its messages checked one by one from now on,
// one they cover again stops being checked. Subscriptions are not removed;
// what their client may no longer read is withheld.
func (s *Server) AuthorizationChanged() {
	s.mu.Lock()
	all := slices.AppendSeq(make([]*session, 0, s.sessions.len()), s.sessions.all())
	s.mu.Unlock()
	for _, ss := range all {
		ss.reauthorize()
	}
	s.log.Info("authorization rules changed: subscriptions re-evaluated", "sessions", len(all))
}

// reauthorize recomputes which of the session's subscriptions need each
// message checked.
func (ss *session) reauthorize() {
	s := ss.srv
	ss.mu.Lock()
	defer ss.mu.Unlock()
	c := ss.client.Load()
	if ss.ended || c == nil {
		return
	}
	for key, sub := range ss.subs {
		filter := key
		if sub.group != nil {
			filter = sub.group.filter
		}
		ok, checkEach := s.maySubscribe(c, filter)
		check := !ok || checkEach
		if check == sub.checkRead {
			continue
		}
		sub.checkRead = check
		ss.subs[key] = sub
		if sub.group != nil {
			s.joinShare(sub.group.name, sub.group.filter, sub) // replaces: no news for the cluster
		} else {
			s.index.Add(key, ss, sub)
		}
	}
}
