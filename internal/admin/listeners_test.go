package admin

import (
	"net/http"
	"testing"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
)

// GET /api/v1/listeners names each MQTT listener as a client's "listener"
// field does, with its kind, the address it took and its open
// connections; 503 until the broker has opened them.
func TestListeners(t *testing.T) {
	b := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: testlog.New(t)})
	t.Cleanup(func() { b.Close() })
	f := startHTTP(t, b)
	if r := f.expect(http.StatusServiceUnavailable, "GET", "/api/v1/listeners", nil, nil); r.errorText(t) == "" {
		t.Fatal("no error message")
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}

	wiretest.MustConnect(t, f.mqttAddr(), "probe", true)
	var client struct{ Listener string }
	f.expect(http.StatusOK, "GET", "/api/v1/clients/probe", nil, &client)
	var got struct {
		Listeners []map[string]any `json:"listeners"`
	}
	f.expect(http.StatusOK, "GET", "/api/v1/listeners", nil, &got)
	if len(got.Listeners) != 1 {
		t.Fatalf("listeners %v, want one", got.Listeners)
	}
	want := map[string]any{"name": client.Listener, "kind": "tcp", "address": f.mqttAddr(), "connections": 1.0}
	for k, v := range want {
		if got.Listeners[0][k] != v {
			t.Errorf("listener's %s: %v, want %v (all: %v)", k, got.Listeners[0][k], v, got.Listeners[0])
		}
	}
	if len(got.Listeners[0]) != len(want) {
		t.Errorf("listener %v has fields besides %v", got.Listeners[0], want)
	}
	f.expect(http.StatusBadRequest, "GET", "/api/v1/listeners?kind=tcp", nil, nil)
}

// GET /api/v1/bridges lists what Config.Bridges gives, and no bridge when
// there is none.
func TestBridges(t *testing.T) {
	f := start(t)
	var got struct {
		Bridges []map[string]any `json:"bridges"`
	}
	f.expect(http.StatusOK, "GET", "/api/v1/bridges", nil, &got)
	if got.Bridges == nil || len(got.Bridges) != 0 {
		t.Errorf("without bridges: %v, want an empty list", got.Bridges)
	}
	f = start(t, func(c *Config) {
		c.Bridges = func() []BridgeJSON {
			return []BridgeJSON{{Name: "cloud", URL: "mqtt://c:1883", Session: "bridge-cloud", Connected: true, Sent: 7, LinkFailures: 1}}
		}
	})
	f.expect(http.StatusOK, "GET", "/api/v1/bridges", nil, &got)
	want := map[string]any{"name": "cloud", "url": "mqtt://c:1883", "session": "bridge-cloud", "connected": true,
		"sent": 7.0, "received": 0.0, "dropped": 0.0, "link_failures": 1.0, "queued": 0.0, "queued_bytes": 0.0}
	if len(got.Bridges) != 1 || len(got.Bridges[0]) != len(want) {
		t.Fatalf("bridges %v, want one with %v", got.Bridges, want)
	}
	for k, v := range want {
		if got.Bridges[0][k] != v {
			t.Errorf("bridge's %s: %v, want %v", k, got.Bridges[0][k], v)
		}
	}
	f.expect(http.StatusBadRequest, "GET", "/api/v1/bridges?name=cloud", nil, nil)
}
