// Package testlog gives tests a logger that writes to the test's own log:
// shown on failure or with -v, next to the test's output, and silent for
// lines that arrive after the test ended (a server's goroutines may still
// log while it stops).
package testlog

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// New returns a logger, at debug level, that writes text lines to t's log
// until t ends.
func New(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Writer returns a writer to t's log, a line per Write, that drops what
// comes after t ended.
func Writer(t testing.TB) io.Writer {
	w := &writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}
