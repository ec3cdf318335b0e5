package broker

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/petrelmq/petrel/auth"
)

// mayWrite reports whether a client may publish to topic. No client may
// publish to a topic starting with '$': those are the broker's ($SYS).
func (s *Server) mayWrite(c *auth.Client, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' {
		return false
	}
	return s.opts.Authorizer == nil || s.opts.Authorizer.Allow(c, auth.Write, topic)
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
	return true
}

// loginThrottle slows password guessing: a failed login is answered after
// a delay that doubles with each recent failure from the same address, up to
// a cap, and decays when the address goes quiet.
type loginThrottle struct {
	mu    sync.Mutex
	fails map[netip.Addr]*failures
}

type failures struct {
	n    int
	last time.Time
}

const (
	loginDelayBase  = 500 * time.Millisecond
	loginDelayMax   = 10 * time.Second
	loginQuiet      = 5 * time.Minute
	loginAddrsLimit = 100000
)

func (s *Server) loginFailed(addr net.Addr) time.Duration {
	t := &s.logins
	ip := addrIP(addr)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = make(map[netip.Addr]*failures)
	}
	f := t.fails[ip]
	if f == nil || now.Sub(f.last) > loginQuiet {
		if len(t.fails) >= loginAddrsLimit {
			for a, g := range t.fails {
				if now.Sub(g.last) > loginQuiet {
					delete(t.fails, a)
				}
			}
		}
		f = &failures{}
		if len(t.fails) < loginAddrsLimit {
			t.fails[ip] = f
		}
	}
	f.n++
	f.last = now
	d := loginDelayBase << min(f.n-1, 5)
	return min(d, loginDelayMax)
}

func (s *Server) loginSucceeded(addr net.Addr) {
	t := &s.logins
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, addrIP(addr))
}

// overMemoryBudget reports whether queueing size more bytes in memory would
// exceed the budget for queued messages.
func (s *Server) overMemoryBudget(size int) bool {
	b := s.opts.Limits.QueuedMemory
	return b > 0 && s.queuedMem.Load()+int64(size) > b
}
