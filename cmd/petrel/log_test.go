package main

import (
	"bufio"
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
	cmd := petrel("--listen", "127.0.0.1:0", "--log-format", "json", "--store", "memory")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan map[string]any, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"not JSON": sc.Text()}
			}
			lines <- m
		}
	}()
	var seen []string
	next := func(msg string) map[string]any {
		t.Helper()
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("the log ended before a %q line; it had %q", msg, seen)
				}
				if text, bad := m["not JSON"]; bad {
					t.Fatalf("a log line is not JSON: %s", text)
				}
				seen = append(seen, m["msg"].(string))
				if m["msg"] == msg {
					return m
				}
			case <-time.After(wiretest.Timeout):
				t.Fatalf("no %q line within %v; the log had %q", msg, wiretest.Timeout, seen)
			}
		}
	}
	addr := next("listening")["addr"].(string)
	c, _ := wiretest.MustConnect(t, addr, "json-client", true)
	if m := next("client connected"); m["client"] != "json-client" || m["protocol"] != "3.1.1" {
		t.Errorf("connect line %v", m)
	}
	c.Disconnect()
	if m := next("client disconnected"); m["client"] != "json-client" || m["reason"] != "client_disconnect" {
		t.Errorf("disconnect line %v", m)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for m := range lines {
		if text, bad := m["not JSON"]; bad {
			t.Errorf("a log line is not JSON: %s", text)
		}
		seen = append(seen, m["msg"].(string))
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(strings.Join(seen, "\n"), "shutting down") {
		t.Errorf("no shutdown line in %q", seen)
	}
}
