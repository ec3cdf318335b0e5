package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/tlsconf"
)

func TestDefaultIsValid(t *testing.T) {
	f := Default()
	if err := f.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := Listener{Name: "tcp:127.0.0.1:1883", Kind: "tcp", Address: "127.0.0.1:1883", TLS: defaultTLS,
		WebSocket: ListenerWebSocket{Path: "/mqtt"}}
	if got := f.Listeners; len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("default listeners = %+v, want one on 127.0.0.1:1883", got)
	}
}

func TestDefaults(t *testing.T) {
	m, a, l := Default().MQTT, Default().Auth, Default().Limits
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"log.level", Default().Log.Level, "info"},
		{"log.format", Default().Log.Format, "text"},
		{"shutdown_timeout", Default().ShutdownTimeout.String(), "10s"},
		{"mqtt.max_packet_size", m.MaxPacketSize, 1 * MiB},
		{"mqtt.connect_timeout", m.ConnectTimeout.String(), "10s"},
		{"mqtt.max_inflight", m.MaxInflight, 100},
		{"mqtt.max_queued_messages", m.MaxQueuedMessages, 100000},
		{"mqtt.max_queued_bytes", m.MaxQueuedBytes, 64 * MiB},
		{"mqtt.queue_qos0", m.QueueQoS0, false},
		{"mqtt.retain_available", m.RetainAvailable, true},
		{"mqtt.max_client_id_length", m.MaxClientIDLength, 65535},

		{"auth.password_file", a.PasswordFile, ""},
		{"auth.acl_file", a.ACLFile, ""},
		{"auth.http.auth_url", a.HTTP.AuthURL, ""},
		{"auth.http.acl_url", a.HTTP.ACLURL, ""},
		{"auth.http.timeout", a.HTTP.Timeout.String(), "2s"},
		{"auth.http.cache_ttl", a.HTTP.CacheTTL.String(), "1m0s"},
		{"auth.http.negative_ttl", a.HTTP.NegativeTTL.String(), "5s"},
		{"auth.timeout", a.Timeout.String(), "10s"},

		{"limits.max_connections", l.MaxConnections, 0},
		{"limits.connection_rate", l.ConnectionRate, 0.0},
		{"limits.connection_burst", l.ConnectionBurst, 10},
		{"limits.max_topic_length", l.MaxTopicLength, 65535},
		{"limits.max_topic_levels", l.MaxTopicLevels, 128},
		{"limits.max_subscriptions", l.MaxSubscriptions, 1000},
		{"limits.publish_rate", l.PublishRate, 0.0},
		{"limits.publish_bytes_rate", l.PublishBytesRate, Size(0)},
		{"limits.control_rate", l.ControlRate, 100.0},
		{"limits.queued_memory", l.QueuedMemory, 256 * MiB},
		{"limits.incomplete_packet_timeout", l.IncompletePacketTimeout.String(), "30s"},
		{"limits.max_outbound_bytes", l.MaxOutboundBytes, 1 * MiB},

		{"http.listen", Default().HTTP.Listen, ""},
		{"http.token_file", Default().HTTP.TokenFile, ""},
		{"http.metrics_auth", Default().HTTP.MetricsAuth, true},
		{"http.tls.client_auth", Default().HTTP.TLS.ClientAuth, "none"},
		{"http.tls.min_version", Default().HTTP.TLS.MinVersion, "1.2"},
	} {
		if tc.got != tc.want {
			t.Errorf("default %s = %v, want %v", tc.key, tc.got, tc.want)
		}
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Default()
	a.Listeners[0].Address = "changed"
	if b := Default(); b.Listeners[0].Address != DefaultListenAddress {
		t.Errorf("changing one Default() changed the next: %q", b.Listeners[0].Address)
	}
}

// A File built or changed in Go has no file positions; its errors name the
// key alone.
func TestValidateInGo(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*File)
		want string
	}{
		{"no listeners", func(f *File) { f.Listeners = nil },
			`listeners: at least one listener is required`},
		{"negative queue bytes", func(f *File) { f.MQTT.MaxQueuedBytes = -1 },
			`mqtt.max_queued_bytes: -1 is negative (0 means unlimited)`},
		{"several problems", func(f *File) {
			f.Log.Format = "xml"
			f.MQTT.MaxInflight = 0
			f.Listeners = append(f.Listeners, Listener{Address: "bad"})
		}, `log.format: "xml" is not one of text, json` + "\n" +
			`listeners[1].address: "bad" is not host:port (missing port in address)` + "\n" +
			`mqtt.max_inflight: 0 is out of range 1..65535`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Default()
			tc.edit(f)
			err := f.Validate()
			if err == nil || err.Error() != tc.want {
				t.Errorf("Validate() =\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}

// A file's listener gets its defaults from setDefaults; one built in Go
// (petrel --listen) gets the same from Validate.
func TestListenerDefaults(t *testing.T) {
	f, err := Parse("petrel.yaml", []byte("listeners:\n  - address: :1883\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := Default()
	g.Listeners = []Listener{{Address: ":1883"}}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Listener{Name: "tcp::1883", Kind: "tcp", Address: ":1883", AllowAnonymous: Auto,
		TLS: ListenerTLS{ClientAuth: "none", MinVersion: "1.2"}, WebSocket: ListenerWebSocket{Path: "/mqtt"}}
	if !reflect.DeepEqual(f.Listeners[0], want) {
		t.Errorf("file's listener = %+v\nwant %+v", f.Listeners[0], want)
	}
	if !reflect.DeepEqual(g.Listeners[0], want) {
		t.Errorf("Go-built listener = %+v\nwant %+v", g.Listeners[0], want)
	}
}

// The choices the schema offers for TLS are the ones package tlsconf takes.
func TestTLSChoicesMatchTLSConf(t *testing.T) {
	for _, s := range identitySources {
		if err := tlsconf.CheckIdentitySource(s); err != nil {
			t.Errorf("username_from %q: %v", s, err)
		}
	}
	for _, v := range tlsVersions {
		if _, err := tlsconf.ParseVersion(v); err != nil {
			t.Errorf("min_version %q: %v", v, err)
		}
	}
	for _, a := range clientAuths {
		c := tlsconf.Config{CertFile: "c", KeyFile: "k", ClientAuth: tlsconf.ClientAuth(a)}
		if a != "none" {
			c.ClientCAFile = "ca"
		}
		if err := c.Validate(); err != nil {
			t.Errorf("client_auth %q: %v", a, err)
		}
	}
}

// A listener replaced by petrel --listen is a tcp listener, whatever the
// file's listener in its place was.
func TestFlagListenerReplacesATLSListener(t *testing.T) {
	f, err := Parse("petrel.yaml", []byte("listeners:\n  - kind: wss\n    address: :443\n    tls: {cert_file: c.pem, key_file: k.pem}\n    websocket: {path: /ws}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.Listeners = append(f.Listeners[:0], Listener{Address: "127.0.0.1:1884"})
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if l := f.Listeners[0]; l.Kind != "tcp" || l.Name != "tcp:127.0.0.1:1884" || l.TLS != defaultTLS || l.WebSocket.Path != "/mqtt" {
		t.Errorf("listener = %+v, want a tcp listener with defaults", l)
	}
}

func TestValidateFillsListenerNames(t *testing.T) {
	f := Default()
	f.Listeners = []Listener{{Address: ":1883"}, {Name: "local", Address: "127.0.0.1:1884"}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if f.Listeners[0].Name != "tcp::1883" || f.Listeners[1].Name != "local" {
		t.Errorf("listener names = %q, %q; want tcp::1883, local", f.Listeners[0].Name, f.Listeners[1].Name)
	}
}

// After Parse, the command line may replace values (petrel --listen ADDR
// --log-level LEVEL). A bad replacement must not be blamed on the file's
// line that held the old value.
func TestValidateAfterFlags(t *testing.T) {
	f, err := Parse("petrel.yaml", []byte("log:\n  level: debug\nlisteners:\n  - address: :1883\n  - address: :1884\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.Log.Level = "verbose"
	f.Listeners = f.Listeners[:0] // as cmd/petrel replaces them: same array
	f.Listeners = append(f.Listeners, Listener{Address: ":1883"}, Listener{Address: ":99999"}, Listener{Address: ":1883"})
	f.MQTT.MaxInflight = -1
	want := `log.level: "verbose" is not one of debug, info, warn, error` + "\n" +
		`listeners[1].address: ":99999": port 99999 is out of range 0..65535` + "\n" +
		`listeners[2].address: ":1883" is already the address of listeners[0]` + "\n" +
		`mqtt.max_inflight: -1 is out of range 1..65535`
	err = f.Validate()
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Key != "log.level" {
		t.Errorf("errors.As found %+v, want the log.level error", e)
	}
}

// place names the file's line for a key only while the key holds what the
// file gave it; for a key the file left out of a list entry, it names the
// entry.
func TestPlace(t *testing.T) {
	f, err := Parse("petrel.yaml", []byte("log:\n  level: debug\nlisteners:\n  - address: :1883\n"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(key string, wantLine int) {
		t.Helper()
		got := 0 // no place
		if p, ok := f.place(key); ok {
			got = p.line
		}
		if got != wantLine {
			t.Errorf("place(%q) = line %d, want line %d (0: none)", key, got, wantLine)
		}
	}
	check("log.level", 2)
	check("log.format", 0) // the file does not set it
	check("listeners[0].address", 4)
	check("listeners[0].name", 4) // left out: the entry's line
	check("mqtt.max_inflight", 0)

	f.MQTT.MaxInflight = 5 // unrelated changes keep the file's positions
	f.Listeners = append(f.Listeners, Listener{Address: ":1884"})
	check("log.level", 2)
	check("listeners[0].address", 4)
	check("listeners[1].address", 0)

	f.Log.Level = "warn"
	f.Listeners[0].Address = ":1885"
	check("log.level", 0)
	check("listeners[0].address", 0)
	check("listeners[0].name", 0)
}

func TestValidateManyListeners(t *testing.T) {
	f := Default()
	f.Listeners = nil
	for range 100 {
		f.Listeners = append(f.Listeners, Listener{Address: "127.0.0.1:1883"})
	}
	lines := strings.Split(f.Validate().Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "too many errors; fix these first" {
		t.Errorf("got %d lines ending %q; want %d errors and a note", len(lines), lines[len(lines)-1], maxErrors)
	}
}
