package broker

import (
	"testing"

	"github.com/petrelmq/petrel/internal/testlog"
)

// startServer runs a broker on a loopback port picked by the OS until the
// test ends.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.Listeners = []ListenerConfig{{Address: "127.0.0.1:0"}}
	if opts.Logger == nil {
		opts.Logger = testlog.New(t)
	}
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
