package broker

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
)

// startServer runs a broker on a loopback port picked by the OS until the
// test ends.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.Listeners = []ListenerConfig{{Address: "127.0.0.1:0"}}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testLogger sends debug logs to the test's log, shown on failure or with
// -v, and drops lines that arrive after the test ended.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}
