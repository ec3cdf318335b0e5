package throttle

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestThrottle(cfg Config) (*Logins, *fakeClock) {
	t := New(cfg)
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	t.now = clock.now
	return t, clock
}

func TestLoginThrottleGrowsAndCaps(t *testing.T) {
	th, _ := newTestThrottle(Config{})
	if d := th.Delay("192.0.2.1"); d != 0 {
		t.Fatalf("delay %v before any failure", d)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		th.Failed("192.0.2.1:5000")
		if d := th.Delay("192.0.2.1"); d != w {
			t.Fatalf("after %d failures: delay %v, want %v", i+1, d, w)
		}
	}
	for range 100 {
		th.Failed("192.0.2.1")
	}
	if d := th.Delay("192.0.2.1"); d != 10*time.Second {
		t.Fatalf("after many failures: delay %v, want the 10s cap", d)
	}
	if d := th.Delay("192.0.2.2"); d != 0 {
		t.Fatalf("another address is delayed %v", d)
	}
}

func TestLoginThrottleDecays(t *testing.T) {
	th, clock := newTestThrottle(Config{Quiet: time.Minute})
	for range 4 {
		th.Failed("192.0.2.1")
	}
	steps := []struct {
		wait time.Duration
		want time.Duration
	}{
		{59 * time.Second, 4 * time.Second},
		{time.Second, 2 * time.Second}, // one quiet minute: one failure forgotten
		{time.Minute, time.Second},
		{time.Minute, 500 * time.Millisecond},
		{time.Minute, 0},
	}
	for _, s := range steps {
		clock.advance(s.wait)
		if d := th.Delay("192.0.2.1"); d != s.want {
			t.Fatalf("after %v more: delay %v, want %v", s.wait, d, s.want)
		}
	}
	// A failure after a partial decay counts from what is left.
	for range 3 {
		th.Failed("192.0.2.1")
	}
	clock.advance(time.Minute)
	th.Failed("192.0.2.1")
	if d := th.Delay("192.0.2.1"); d != 2*time.Second {
		t.Fatalf("delay %v, want 2s (3 failures, 1 forgotten, 1 more)", d)
	}
}

func TestLoginThrottleKeys(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1:1234", true},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"[2001:db8:1:2::1]:5000", "2001:db8:1:2:ffff::9", true}, // same /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"fe80::1%eth0", "fe80::2", true},
		{"@", "/run/petrel.sock", true}, // unparsable: shared
		{"not an address", "192.0.2.1", false},
	}
	for _, tt := range tests {
		if got := throttleKey(tt.a) == throttleKey(tt.b); got != tt.same {
			t.Errorf("%q and %q share an entry: %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
	th, _ := newTestThrottle(Config{})
	addr := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 999}
	th.Failed(addr.String())
	if th.Delay("2001:db8::8") == 0 {
		t.Error("a net.Addr's String is not accepted")
	}
}

func TestLoginThrottleBoundedMemory(t *testing.T) {
	th, clock := newTestThrottle(Config{MaxAddresses: 100})
	// A persistent offender...
	for range 6 {
		th.Failed("198.51.100.1")
	}
	// ...and an attacker with 100,000 addresses failing once each.
	for i := range 100_000 {
		th.Failed(fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255))
		if i%1000 == 0 {
			clock.advance(time.Second)
		}
	}
	st := th.stats()
	if st.Tracked > 100 {
		t.Fatalf("tracking %d addresses with a limit of 100", st.Tracked)
	}
	if st.Evicted < 99_000 || st.Failures != 100_006 {
		t.Errorf("stats %+v", st)
	}
	if d := th.Delay("198.51.100.1"); d == 0 {
		t.Error("the offender with the most failures was evicted by one-time failures")
	}
	// Once everyone is quiet, new addresses sweep the old out.
	clock.advance(time.Hour)
	th.Failed("203.0.113.1")
	if st := th.stats(); st.Tracked != 1 {
		t.Errorf("after an hour's quiet: tracking %d addresses, want 1", st.Tracked)
	}
}

func TestLoginThrottleConcurrent(t *testing.T) {
	th := New(Config{MaxAddresses: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ip := fmt.Sprintf("192.0.%d.%d", g, i%200)
				th.Failed(ip)
				th.Delay(ip)
			}
		}()
	}
	wg.Wait()
	if st := th.stats(); st.Tracked > 50 || st.Failures != 16000 {
		t.Fatalf("stats %+v", st)
	}
}
