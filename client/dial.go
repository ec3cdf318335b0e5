package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"
)

// target is a parsed Options.Addr.
type target struct {
	scheme string // tcp, tls, ws, wss or unix
	addr   string // host:port, or the socket path for unix
	url    string // the WebSocket URL for ws and wss
}

// parseAddr reads Options.Addr; see there for the forms.
func parseAddr(s string) (target, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return target{scheme: "tcp", addr: withPort(s, "1883")}, nil
	}
	if scheme == "unix" {
		if rest == "" {
			return target{}, fmt.Errorf("client: address %q: no socket path", s)
		}
		return target{scheme: "unix", addr: rest}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return target{}, fmt.Errorf("client: address %q: %w", s, err)
	}
	if u.Host == "" {
		return target{}, fmt.Errorf("client: address %q: no host", s)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		return target{scheme: "tcp", addr: withPort(u.Host, "1883")}, nil
	case "tls", "ssl", "mqtts":
		return target{scheme: "tls", addr: withPort(u.Host, "8883")}, nil
	case "ws", "wss":
		t := target{scheme: strings.ToLower(u.Scheme)}
		port := "80"
		if t.scheme == "wss" {
			port = "443"
		}
		t.addr = withPort(u.Host, port)
		if u.Path == "" {
			u.Path = "/mqtt"
		}
		u.Scheme = t.scheme
		t.url = u.String()
		return t, nil
	}
	return target{}, fmt.Errorf("client: address %q: unknown scheme %q (want tcp, tls, ws, wss or unix)", s, u.Scheme)
}

// withPort adds port to a host that has none.
func withPort(host, port string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// dial opens the transport of t: a net.Conn that carries MQTT's bytes.
func dial(ctx context.Context, t target, o *Options) (net.Conn, error) {
	switch t.scheme {
	case "tcp":
		return o.Dialer.DialContext(ctx, "tcp", t.addr)
	case "unix":
		return o.Dialer.DialContext(ctx, "unix", t.addr)
	case "tls":
		d := tls.Dialer{NetDialer: o.Dialer, Config: o.TLS}
		return d.DialContext(ctx, "tcp", t.addr)
	case "ws", "wss":
		return dialWebSocket(ctx, t, o)
	}
	return nil, fmt.Errorf("client: unknown scheme %q", t.scheme)
}

// dialWebSocket performs the WebSocket handshake, offering the "mqtt"
// subprotocol [MQTT-6.0.0-3], and returns a net.Conn whose writes are binary
// messages [MQTT-6.0.0-1] and whose reads are the byte stream of the
// messages received.
func dialWebSocket(ctx context.Context, t target, o *Options) (net.Conn, error) {
	tr := &http.Transport{
		DialContext:     o.Dialer.DialContext,
		TLSClientConfig: o.TLS,
		// MQTT is not proxied through HTTP proxies; a WebSocket needs HTTP/1.1.
		Proxy:             nil,
		ForceAttemptHTTP2: false,
	}
	defer tr.CloseIdleConnections()
	// websocket.Dial checks that the server chose a subprotocol offered.
	ws, _, err := websocket.Dial(ctx, t.url, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{"mqtt"},
	})
	if err != nil {
		return nil, fmt.Errorf("client: websocket %s: %w", t.url, err)
	}
	// The connection outlives ctx, which bounds only the handshake.
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}
