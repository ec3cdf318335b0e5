// Package throttle slows password guessing: the broker answers a failed
// login later with each recent failure from the same address.
package throttle

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Logins. Zero values mean the defaults.
type Config struct {
	// Base is the delay after one recent failure (default 500ms); each
	// further failure doubles it.
	Base time.Duration
	// Max caps the delay (default 10s).
	Max time.Duration
	// Quiet is how long without a failure makes an address forget one of
	// its failures (default 1 minute): the delay decays by half for each
	// Quiet period the address stays quiet.
	Quiet time.Duration
	// MaxAddresses bounds the addresses tracked (default 65,536, a few
	// MiB at most). When it is reached, a new address replaces one of a
	// few tracked ones picked at random, the one with the fewest failures:
	// an attacker with many addresses cannot grow the table, and would
	// have to fail often to push a persistent offender out.
	MaxAddresses int
}

// Logins slows password guessing by the address it comes from. The broker
// records each failed login with Failed and answers it after Delay:
//
//	if err != nil {
//		t.Failed(ip)
//		time.AfterFunc(t.Delay(ip), refuse)
//	}
//
// A successful login does not clear its address's failures: an attacker
// holding one account of its own could otherwise clear them between guesses.
//
// Addresses are IPv4 addresses or IPv6 /64 networks (one host usually has a
// whole /64, so counting its addresses apart would not slow it); a port,
// as in "192.0.2.1:5000" or "[2001:db8::1]:5000", is ignored. Addresses that
// do not parse (a unix socket) share one entry. Safe for concurrent use.
type Logins struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex
	addrs     map[netip.Addr]*loginFailures
	lastSweep time.Time

	failures, throttled, evicted atomic.Uint64
}

type loginFailures struct {
	n    int       // failures, as of last
	last time.Time // the latest failure
}

// stats counts what a Logins did.
type stats struct {
	Tracked   int    // addresses with recent failures tracked now
	Failures  uint64 // failed logins recorded
	Throttled uint64 // Delay calls that returned a delay
	Evicted   uint64 // addresses forgotten early to stay within MaxAddresses
}

// New returns a Logins.
func New(cfg Config) *Logins {
	setDefault(&cfg.Base, 500*time.Millisecond)
	setDefault(&cfg.Max, 10*time.Second)
	setDefault(&cfg.Quiet, time.Minute)
	setDefault(&cfg.MaxAddresses, 65536)
	return &Logins{cfg: cfg, now: time.Now, addrs: make(map[netip.Addr]*loginFailures)}
}

// throttleKey returns the table key for an address string.
func throttleKey(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		host, _, err2 := net.SplitHostPort(ip)
		if err2 != nil {
			return netip.Addr{}
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}
		}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// recent returns f's failure count at now, less one per quiet period.
func (t *Logins) recent(f *loginFailures, now time.Time) int {
	forgotten := now.Sub(f.last) / t.cfg.Quiet
	if forgotten >= time.Duration(f.n) {
		return 0
	}
	return f.n - int(forgotten)
}

// Failed records a failed login from ip.
func (t *Logins) Failed(ip string) {
	key := throttleKey(ip)
	now := t.now()
	t.failures.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[key]
	if f == nil {
		t.makeRoom(now)
		f = &loginFailures{}
		t.addrs[key] = f
	}
	f.n = t.recent(f, now) + 1
	f.last = now
}

// Delay returns how long to wait before answering a failed login from ip:
// Base for the first recent failure, doubling with each further one up to
// Max; zero when ip has no recent failures.
func (t *Logins) Delay(ip string) time.Duration {
	key := throttleKey(ip)
	now := t.now()
	t.mu.Lock()
	n := 0
	if f := t.addrs[key]; f != nil {
		n = t.recent(f, now)
	}
	t.mu.Unlock()
	if n == 0 {
		return 0
	}
	t.throttled.Add(1)
	d := t.cfg.Base
	for i := 1; i < n && d < t.cfg.Max; i++ {
		d *= 2
	}
	return min(d, t.cfg.Max)
}

// stats returns the throttle's counters.
func (t *Logins) stats() stats {
	t.mu.Lock()
	n := len(t.addrs)
	t.mu.Unlock()
	return stats{Tracked: n, Failures: t.failures.Load(),
		Throttled: t.throttled.Load(), Evicted: t.evicted.Load()}
}

// evictionSample is how many tracked addresses are looked at to pick one
// to forget.
const evictionSample = 8

// makeRoom makes room for one more address. The caller holds t.mu.
func (t *Logins) makeRoom(now time.Time) {
	if len(t.addrs) < t.cfg.MaxAddresses {
		return
	}
	// Forget the addresses that have gone quiet, at most once per Quiet
	// period so that a flood of new addresses does not sweep each time.
	if now.Sub(t.lastSweep) >= t.cfg.Quiet {
		t.lastSweep = now
		for k, f := range t.addrs {
			if t.recent(f, now) == 0 {
				delete(t.addrs, k)
			}
		}
	}
	for len(t.addrs) >= t.cfg.MaxAddresses {
		var victim netip.Addr
		var vf *loginFailures
		seen := 0
		for k, f := range t.addrs { // map order is random
			if vf == nil || t.recent(f, now) < t.recent(vf, now) ||
				t.recent(f, now) == t.recent(vf, now) && f.last.Before(vf.last) {
				victim, vf = k, f
			}
			if seen++; seen == evictionSample {
				break
			}
		}
		delete(t.addrs, victim)
		t.evicted.Add(1)
	}
}

func setDefault[T time.Duration | int](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
