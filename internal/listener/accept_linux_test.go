//go:build linux

package listener

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Out of descriptors, the hub stops accepting, Serve logs and backs off,
// and once descriptors are free again the waiting connection is accepted:
// nothing spins meanwhile (a level-triggered listening socket that is not
// accepted from would wake the hub in a loop) and nothing is lost.
func TestEventLoopRetriesAcceptOutOfDescriptors(t *testing.T) {
	var logs logBuffer
	h := newTestHandler(t)
	got := make(chan []byte, 1)
	h.onData = func(e *testEndpoint, b []byte) { got <- append([]byte(nil), b...) }
	s := startServer(t, driverKind{"eventloop", NewEventLoopDriver}, h, Options{Logger: logs.logger()})

	// The client's socket is made now: once the limit is lowered, no
	// descriptor can be, on either side.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// The lowest free descriptor number: with the limit there, no
	// descriptor can be made at all.
	free, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	low := old
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()

	ap := netip.MustParseAddrPort(s.addr)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		restore()
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(logs.String(), "too many open files") {
		if time.Now().After(deadline) {
			restore()
			t.Fatalf("no accept failure logged; log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Backing off: 5ms, 10ms, 20ms, ... so a few failures in 300ms, not
	// one per wakeup.
	time.Sleep(300 * time.Millisecond)
	failures := strings.Count(logs.String(), "accept failed")
	restore()
	if failures < 2 || failures > 10 {
		t.Errorf("%d accept failures logged in 300ms; want a few, retried with backoff:\n%s", failures, logs.String())
	}
	receive(t, h.opened, "Open once descriptors are free")
	if _, err := unix.Write(fd, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if b := receive(t, got, "Data"); string(b) != "hi" {
		t.Errorf("Data(%q), want hi", b)
	}
	t.Logf("%d accept failures logged before descriptors were free", failures)
}
