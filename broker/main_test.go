package broker

import (
	"fmt"
	"os"
	"testing"
)

// TestMain checks, after every test of the package, that nothing wrote to
// noAside: the empty aside state that session.x hands out to every session
// without one, in every Server of the process. A write through x would
// not fail where it happens; it would show here, or as another session's
// state.
func TestMain(m *testing.M) {
	code := m.Run()
	a := &noAside
	if a.limits != nil || a.queue != nil || a.inboundQoS2 != nil || a.away != nil || a.move != nil ||
		a.queueExpiry.Load() != 0 || a.since != 0 {
		fmt.Fprintf(os.Stderr, "broker: noAside was written to: %+v\n", a)
		code = 1
	}
	os.Exit(code)
}
