package client

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

// TestTransports runs each flow over each of the broker's listener kinds:
// TLS requiring a client certificate, WebSocket (plain and over TLS) and a
// unix socket.
func TestTransports(t *testing.T) {
	p := newPKI(t)
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	cases := []struct {
		name   string
		config broker.ListenerConfig
		url    func(addr string) string
		tls    *tls.Config
	}{
		{"tls", broker.ListenerConfig{Kind: "tls", Address: "127.0.0.1:0", TLS: p.serverTLS()},
			func(a string) string { return "tls://" + a }, p.clientTLS()},
		{"mqtts-localhost", broker.ListenerConfig{Kind: "tls", Address: "127.0.0.1:0", TLS: p.serverTLS()},
			func(a string) string { _, port, _ := net.SplitHostPort(a); return "mqtts://localhost:" + port }, p.clientTLS()},
		{"ws", broker.ListenerConfig{Kind: "ws", Address: "127.0.0.1:0"},
			func(a string) string { return "ws://" + a + "/mqtt" }, nil},
		{"wss", broker.ListenerConfig{Kind: "wss", Address: "127.0.0.1:0", TLS: p.serverTLS()},
			func(a string) string { return "wss://" + a + "/mqtt" }, p.clientTLS()},
		{"unix", broker.ListenerConfig{Kind: "unix", Address: sock},
			func(a string) string { return "unix://" + a }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startBroker(t, broker.Options{Listeners: []broker.ListenerConfig{tc.config}})
			checkGoroutines(t)
			url := tc.url(addr)
			for _, ver := range versions {
				in := newInbox()
				c := connect(t, Options{Addr: url, TLS: tc.tls, Version: ver.v, CleanStart: true,
					ClientID: tc.name + ver.name, OnMessage: in.add})
				if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: "x", QoS: 2}}, packet.Properties{}); err != nil {
					t.Fatal(err)
				}
				payload := strings.Repeat("p", 100000) // several WebSocket frames and reads
				for qos := byte(0); qos <= 2; qos++ {
					if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "x", QoS: qos, Payload: []byte(payload)}); err != nil {
						t.Fatalf("v%s publish QoS %d: %v", ver.name, qos, err)
					}
				}
				for _, m := range in.wait(t, 3) {
					if string(m.Payload) != payload {
						t.Fatalf("v%s: payload of %d bytes", ver.name, len(m.Payload))
					}
				}
				if err := c.Disconnect(packet.Success, nil); err != nil {
					t.Errorf("v%s disconnect: %v", ver.name, err)
				}
			}
		})
	}
}

// TestTLSRefusesUnknownServer: without the CA the handshake fails.
func TestTLSRefusesUnknownServer(t *testing.T) {
	p := newPKI(t)
	addr := startBroker(t, broker.Options{Listeners: []broker.ListenerConfig{{Kind: "tls", Address: "127.0.0.1:0", TLS: p.serverTLS()}}})
	_, _, err := Connect(context.Background(), Options{Addr: "tls://" + addr, ClientID: "x", CleanStart: true})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("connect to an unknown server: %v, want a certificate error", err)
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, scheme, addr, url string }{
		{"localhost", "tcp", "localhost:1883", ""},
		{"h:1", "tcp", "h:1", ""},
		{"tcp://h", "tcp", "h:1883", ""},
		{"mqtt://h:2", "tcp", "h:2", ""},
		{"tls://h", "tls", "h:8883", ""},
		{"ssl://h:3", "tls", "h:3", ""},
		{"mqtts://[::1]", "tls", "[::1]:8883", ""},
		{"ws://h", "ws", "h:80", "ws://h/mqtt"},
		{"wss://h:9/x/y", "wss", "h:9", "wss://h:9/x/y"},
		{"unix:///run/p.sock", "unix", "/run/p.sock", ""},
	} {
		got, err := parseAddr(tc.in)
		if err != nil || got.scheme != tc.scheme || got.addr != tc.addr || got.url != tc.url {
			t.Errorf("parseAddr(%q) = %+v, %v; want %s %s %s", tc.in, got, err, tc.scheme, tc.addr, tc.url)
		}
	}
	for _, bad := range []string{"http://h", "unix://", "tcp://"} {
		if _, err := parseAddr(bad); err == nil {
			t.Errorf("parseAddr(%q) succeeded", bad)
		}
	}
}
