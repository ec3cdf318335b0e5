package config

import (
	"reflect"
	"testing"
)

// assertSettings fails t unless got holds the same settings as want; where
// the settings came from (the file name, the key positions) is ignored.
func assertSettings(t *testing.T, got, want *File) {
	t.Helper()
	g, w := *got, *want
	g.name, g.pos, g.parsed = "", nil, nil
	w.name, w.pos, w.parsed = "", nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("settings differ\n got: %+v\nwant: %+v", g, w)
	}
}

// tcpListener is a tcp listener as the file's defaults make it.
func tcpListener(name, address string) Listener {
	return Listener{Name: name, Kind: "tcp", Address: address, TLS: defaultTLS, WebSocket: ListenerWebSocket{Path: "/mqtt"}}
}
