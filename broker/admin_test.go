package broker

import (
	"os"
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

// The node's name (Options.NodeName) is what NodeName, Stats and each
// client's ClientInfo say, connected or offline; without one, the host
// name.
func TestAdminNodeName(t *testing.T) {
	s := startServer(t, Options{NodeName: "node-7"})
	if got := s.NodeName(); got != "node-7" {
		t.Errorf("NodeName %q, want node-7", got)
	}
	if got := s.Stats().Node; got != "node-7" {
		t.Errorf("Stats().Node %q, want node-7", got)
	}
	addr := s.Addrs()[0].String()
	wiretest.MustConnect(t, addr, "on", true)
	off, _ := wiretest.MustConnect(t, addr, "off", false)
	off.Disconnect()
	wiretest.Eventually(t, "off offline", func() bool {
		in, ok := s.Client("off")
		return ok && !in.Connected
	})
	page, err := s.Clients(ClientQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Clients) != 2 {
		t.Fatalf("%d clients, want 2", len(page.Clients))
	}
	for _, in := range page.Clients {
		if in.Node != "node-7" {
			t.Errorf("client %s (connected %v): node %q, want node-7", in.ClientID, in.Connected, in.Node)
		}
	}
	if in, _ := s.Client("on"); in.Node != "node-7" {
		t.Errorf("Client(on): node %q, want node-7", in.Node)
	}

	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name (%v): the default node name is unknown", err)
	}
	if got := startServer(t, Options{}).NodeName(); got != host {
		t.Errorf("NodeName without Options.NodeName: %q, want the host name %q", got, host)
	}
}
