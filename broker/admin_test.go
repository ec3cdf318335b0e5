package broker

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
)

// Listeners names each listener with its kind and the address it took
// (the port the OS picked), in configuration order, and counts its open
// connections; before Start it has nothing to say.
func TestListenersDescribesEachListener(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	s := New(Options{Logger: testlog.New(t), Listeners: []ListenerConfig{
		{Address: "127.0.0.1:0"},
		{Name: "web", Kind: "ws", Address: "127.0.0.1:0", WebSocketPath: "/ws"},
		{Kind: "unix", Address: sock},
	}})
	if got := s.Listeners(); got != nil {
		t.Errorf("Listeners before Start: %+v, want nil", got)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addrs := s.Addrs()
	want := []ListenerInfo{
		{Name: "tcp:127.0.0.1:0", Kind: "tcp", Address: addrs[0].String()},
		{Name: "web", Kind: "ws", Address: addrs[1].String(), WebSocketPath: "/ws"},
		{Name: "unix:" + sock, Kind: "unix", Address: sock},
	}
	got := s.Listeners()
	if len(got) != len(want) {
		t.Fatalf("Listeners: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("listener %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// A connection counts from the moment the listener hands it over,
	// before its CONNECT, until it closes.
	c := wiretest.Dial(t, "tcp", addrs[0].String(), "probe", 4)
	waitListenerConns(t, s, 0, 1)
	c.Conn.Close()
	waitListenerConns(t, s, 0, 0)
}

// waitListenerConns waits until listener i has n open connections.
func waitListenerConns(t *testing.T, s *Server, i int, n int64) {
	t.Helper()
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		got := s.Listeners()[i].Connections
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener %d: %d connections after %v, want %d", i, got, wiretest.Timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
