package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

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
		{"mqtt.splice_payloads", m.SplicePayloads, true},
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

		{"cluster.node", Default().Cluster.Node, ""},
		{"cluster.name", Default().Cluster.Name, "petrel"},
		{"cluster.listen", Default().Cluster.Listen, ""},
		{"cluster.nats_url", Default().Cluster.NATSURL, ""},
		{"cluster.node_timeout", Default().Cluster.NodeTimeout.String(), "3s"},
		{"cluster.enabled", Default().Cluster.Enabled(), false},
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

// The cluster section: each value in its form and range, and the settings
// that need or exclude each other.
func TestValidateCluster(t *testing.T) {
	tls := ClusterTLS{CertFile: "node.crt", KeyFile: "node.key", CAFile: "ca.crt"}
	for _, tc := range []struct {
		name string
		edit func(*Cluster)
		want string // "" for valid
	}{
		{"off", func(c *Cluster) {}, ""},
		{"embedded", func(c *Cluster) {
			c.Node, c.Name, c.Listen = "node-1", "eu_west", "10.0.0.1:6222"
			c.Peers = []string{"10.0.0.2:6222", "node3.example.com:6222", "[fd00::4]:6222"}
			c.Username, c.PasswordFile, c.TLS = "petrel", "cluster-password", tls
		}, ""},
		{"first node, every interface", func(c *Cluster) { c.Listen = ":6222" }, ""},
		{"nats", func(c *Cluster) { c.NATSURL = "nats://a.example.com:4222, tls://user:pw@b.example.com:4222" }, ""},
		{"timeout bounds", func(c *Cluster) { c.Listen, c.NodeTimeout = ":6222", Duration{300 * time.Millisecond} }, ""},
		{"timeout upper bound", func(c *Cluster) { c.Listen, c.NodeTimeout = ":6222", Duration{time.Minute} }, ""},
		{"settings waiting for --cluster", func(c *Cluster) { c.Username, c.PasswordFile, c.TLS = "petrel", "pw", tls }, ""},

		{"bad node", func(c *Cluster) { c.Node = "node 1" },
			`cluster.node: "node 1" is not a node name: use 1 to 64 letters, digits, '-' or '_' (empty: the host name)`},
		{"long node", func(c *Cluster) { c.Node = strings.Repeat("n", 65) },
			`cluster.node: "` + strings.Repeat("n", 65) + `" is not a node name: use 1 to 64 letters, digits, '-' or '_' (empty: the host name)`},
		{"host name as node", func(c *Cluster) { c.Node = "node1.example.com" },
			`cluster.node: "node1.example.com" is not a node name: use 1 to 64 letters, digits, '-' or '_' (empty: the host name)`},
		{"empty name", func(c *Cluster) { c.Name = "" },
			`cluster.name: "" is not a cluster name: use 1 to 64 letters, digits, '-' or '_'`},
		{"short timeout", func(c *Cluster) { c.NodeTimeout = Duration{100 * time.Millisecond} },
			`cluster.node_timeout: 100ms is out of range 300ms..1m`},
		{"long timeout", func(c *Cluster) { c.NodeTimeout = Duration{2 * time.Minute} },
			`cluster.node_timeout: 2m0s is out of range 300ms..1m`},
		{"listen not host:port", func(c *Cluster) { c.Listen = "nonsense" },
			`cluster.listen: "nonsense" is not host:port (missing port in address), such as "10.0.0.1:6222"`},
		{"listen port 0", func(c *Cluster) { c.Listen = "10.0.0.1:0" },
			`cluster.listen: "10.0.0.1:0": port 0 is out of range 1..65535`},
		{"listen port not a number", func(c *Cluster) { c.Listen = "10.0.0.1:routes" },
			`cluster.listen: "10.0.0.1:routes": port "routes" is not a number`},
		{"listen on an MQTT listener", func(c *Cluster) { c.Listen = "127.0.0.1:1883" },
			`cluster.listen: "127.0.0.1:1883" is already the address of listeners[0]`},
		{"advertise without a host", func(c *Cluster) { c.Listen, c.Advertise = ":6222", ":7222" },
			`cluster.advertise: ":7222" has no host; name the other node, such as "10.0.0.1:6222"`},
		{"peers without listen", func(c *Cluster) { c.Peers = []string{"10.0.0.2:6222"} },
			`cluster.peers: set, but cluster.listen is not: set this node's route address (host:port) too`},
		{"bad peers", func(c *Cluster) { c.Listen, c.Peers = ":6222", []string{"10.0.0.2:6222", "10.0.0.3", ":6222", ""} },
			`cluster.peers[1]: "10.0.0.3" is not host:port (missing port in address), such as "10.0.0.1:6222"` + "\n" +
				`cluster.peers[2]: ":6222" has no host; name the other node, such as "10.0.0.1:6222"` + "\n" +
				`cluster.peers[3]: "" is not host:port (missing port in address), such as "10.0.0.1:6222"`},
		{"listen and nats_url", func(c *Cluster) { c.Listen, c.NATSURL = ":6222", "nats://nats:4222" },
			`cluster.nats_url: set together with cluster.listen; choose one: an embedded NATS server with routes on listen, or the existing NATS cluster at nats_url`},
		{"nats_url and peers", func(c *Cluster) { c.NATSURL, c.Peers = "nats://nats:4222", []string{"10.0.0.2:6222"} },
			`cluster.peers: unused with cluster.nats_url: the NATS cluster joins its own servers`},
		{"nats_url not a URL", func(c *Cluster) { c.NATSURL = "nats.example.com:4222" },
			`cluster.nats_url: "nats.example.com:4222" is not a NATS URL, such as "nats://nats.example.com:4222" (schemes nats, tls, ws, wss; several separated by commas)`},
		{"nats_url http", func(c *Cluster) { c.NATSURL = "nats://a:4222,http://user:secret@b:4222" },
			`cluster.nats_url: "http://user:xxxxx@b:4222" is not a NATS URL, such as "nats://nats.example.com:4222" (schemes nats, tls, ws, wss; several separated by commas)`},
		{"username alone", func(c *Cluster) { c.Listen, c.Username = ":6222", "petrel" },
			`cluster.username: set, but cluster.password_file (the file holding the routes' password) is not; set both or neither`},
		{"password alone", func(c *Cluster) { c.Listen, c.PasswordFile = ":6222", "pw" },
			`cluster.password_file: set, but cluster.username (the routes' user name) is not; set both or neither`},
		{"credentials with nats_url", func(c *Cluster) { c.NATSURL, c.Username, c.PasswordFile = "nats://nats:4222", "petrel", "pw" },
			`cluster.username: unused with cluster.nats_url, which has no routes of its own; write the credentials in the URL`},
		{"tls without a CA", func(c *Cluster) { c.Listen, c.TLS = ":6222", ClusterTLS{CertFile: "node.crt", KeyFile: "node.key"} },
			`cluster.tls: ca_file not set; routes use mutual TLS: set cert_file, key_file and ca_file, or none`},
		{"tls with a CA only", func(c *Cluster) { c.Listen, c.TLS = ":6222", ClusterTLS{CAFile: "ca.crt"} },
			`cluster.tls: cert_file and key_file not set; routes use mutual TLS: set cert_file, key_file and ca_file, or none`},
		{"tls with nats_url", func(c *Cluster) { c.NATSURL, c.TLS = "nats://nats:4222", tls },
			`cluster.tls: unused with cluster.nats_url, which has no routes of its own`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Default()
			tc.edit(&f.Cluster)
			err := f.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("Validate() =\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}

// The route address may not be the HTTP server's either.
func TestValidateClusterListenOnHTTP(t *testing.T) {
	f := Default()
	f.HTTP.Listen = "127.0.0.1:8080"
	f.Cluster.Listen = "127.0.0.1:8080"
	want := `cluster.listen: "127.0.0.1:8080" is already http.listen`
	if err := f.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

// A cluster section from a file names its lines; a value replaced since, as
// petrel --cluster and --peers replace them, does not.
func TestValidateClusterFromFile(t *testing.T) {
	yaml := "cluster:\n  node: node.1\n  listen: 10.0.0.1:6222\n  peers:\n    - 10.0.0.2\n  node_timeout: 10ms\n  tls:\n    cert_file: node.crt\n"
	_, err := Parse("petrel.yaml", []byte(yaml))
	want := `petrel.yaml:2: cluster.node: "node.1" is not a node name: use 1 to 64 letters, digits, '-' or '_' (empty: the host name)` + "\n" +
		`petrel.yaml:5: cluster.peers[0]: "10.0.0.2" is not host:port (missing port in address), such as "10.0.0.1:6222"` + "\n" +
		`petrel.yaml:6: cluster.node_timeout: 10ms is out of range 300ms..1m` + "\n" +
		`petrel.yaml:7: cluster.tls: key_file and ca_file not set; routes use mutual TLS: set cert_file, key_file and ca_file, or none`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error =\n%v\nwant\n%s", err, want)
	}

	f, err := Parse("petrel.yaml", []byte("cluster:\n  listen: 10.0.0.1:6222\n  peers: [10.0.0.2:6222]\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.Cluster.Listen = "10.0.0.1"
	f.Cluster.Peers = []string{"10.0.0.2:6222", "10.0.0.3:0"}
	want = `cluster.listen: "10.0.0.1" is not host:port (missing port in address), such as "10.0.0.1:6222"` + "\n" +
		`cluster.peers[1]: "10.0.0.3:0": port 0 is out of range 1..65535`
	if err := f.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() after flags =\n%v\nwant\n%s", err, want)
	}
}
