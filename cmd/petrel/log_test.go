package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// TestLogFormatJSON: with --log-format json every line the broker writes is
// one JSON object, from the first (the memory limit) to the last (the
// shutdown), and a client's connect and disconnect are among them.
func TestLogFormatJSON(t *testing.T) {
	b := startLoggedBroker(t, "--store", "memory") // with --log-format json
	c, _ := wiretest.MustConnect(t, b.addr, "json-client", true)
	c.Disconnect()
	c.Conn.Close()
	if b.stop(t, syscall.SIGTERM, 10*time.Second); b.err != nil {
		t.Fatalf("exit after SIGTERM: %v", b.err)
	}
	for line := range strings.Lines(b.log()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("a log line is not JSON (%v): %s", err, line)
		}
	}
	if m := b.find(t, "client connected"); len(m) != 1 || m[0]["client"] != "json-client" || m[0]["protocol"] != "3.1.1" {
		t.Errorf("connect lines %v", m)
	}
	if m := b.find(t, "client disconnected"); len(m) != 1 || m[0]["client"] != "json-client" || m[0]["reason"] != "client_disconnect" {
		t.Errorf("disconnect lines %v", m)
	}
	if len(b.find(t, "shutdown complete")) != 1 {
		t.Errorf("no shutdown line; the log ends:\n%s", tail(b.log(), 5))
	}
}
