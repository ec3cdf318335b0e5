package broker

import (
	"net"
	"net/netip"
	"strings"
	"sync"
)

// bucket is a token bucket: tokens accrue at rate per second up to burst.
// Its zero value starts full. Not safe for concurrent use.
type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last take; 0: never
}

// take spends n tokens at time now if there are enough.
func (b *bucket) take(now int64, rate, burst, n float64) bool {
	if b.last == 0 {
		b.tokens = burst
	} else if now > b.last {
		b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/1e9)
	}
	b.last = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// ipLimiter applies one token bucket per source address: the connection
// rate limit. Its memory is bounded: when it holds too many addresses it
// forgets those whose bucket has refilled (they would start full anyway).
type ipLimiter struct {
	mu           sync.Mutex
	rate, burst  float64
	buckets      map[netip.Addr]*bucket
	maxAddresses int
}

func newIPLimiter(rate float64, burst int) *ipLimiter {
	return &ipLimiter{rate: rate, burst: float64(burst), buckets: make(map[netip.Addr]*bucket), maxAddresses: 100000}
}

// allow reports whether addr may open a connection at now.
func (l *ipLimiter) allow(addr net.Addr, now int64) bool {
	ip := addrIP(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= l.maxAddresses {
			l.forgetFull(now)
		}
		if len(l.buckets) >= l.maxAddresses {
			return false // every tracked address is busy: refuse rather than grow
		}
		b = &bucket{}
		l.buckets[ip] = b
	}
	return b.take(now, l.rate, l.burst, 1)
}

// forgetFull drops the buckets that have refilled since their last use.
func (l *ipLimiter) forgetFull(now int64) {
	refill := int64(l.burst / l.rate * 1e9)
	for ip, b := range l.buckets {
		if now-b.last >= refill {
			delete(l.buckets, ip)
		}
	}
}

// addrIP is the IP of a TCP or UDP address (unmapped), or the zero Addr
// for others (unix sockets share one bucket).
func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// topicTooBig applies the topic length and level limits.
func (l *Limits) topicTooBig(t string) bool {
	if l.MaxTopicLength > 0 && len(t) > l.MaxTopicLength {
		return true
	}
	return l.MaxTopicLevels > 0 && strings.Count(t, "/")+1 > l.MaxTopicLevels
}
