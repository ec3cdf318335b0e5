package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/config"
)

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// parseTestConfig parses a configuration as petrel serve would.
func parseTestConfig(t *testing.T, yaml string) *config.File {
	t.Helper()
	cfg, err := config.Parse("petrel.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustBrokerOptions(t *testing.T, cfg *config.File) (broker.Options, *reloadable) {
	t.Helper()
	o, files, err := brokerOptions(cfg, discardLog)
	if err != nil {
		t.Fatalf("brokerOptions: %v", err)
	}
	return o, files
}

// In the file 0 means unlimited; to the broker it means "the default", and
// a negative value means unlimited.
func TestBrokerLimits(t *testing.T) {
	o, _ := mustBrokerOptions(t, config.Default())
	want := broker.Limits{
		MaxConnections:          -1,
		ConnectionRate:          -1,
		ConnectionBurst:         10,
		MaxTopicLength:          65535,
		MaxTopicLevels:          128,
		MaxSubscriptions:        1000,
		PublishRate:             -1,
		PublishBytesRate:        -1,
		ControlRate:             100,
		QueuedMemory:            256 << 20,
		IncompletePacketTimeout: 30 * time.Second,
		MaxOutboundBytes:        1 << 20,
	}
	if o.Limits != want {
		t.Errorf("default limits\n got: %+v\nwant: %+v", o.Limits, want)
	}
	if o.AuthTimeout != 10*time.Second {
		t.Errorf("AuthTimeout = %v, want 10s", o.AuthTimeout)
	}

	o, _ = mustBrokerOptions(t, parseTestConfig(t, `limits:
  max_connections: 100
  connection_rate: 2.5
  connection_burst: 3
  max_topic_length: 0
  max_topic_levels: 0
  max_subscriptions: 0
  publish_rate: 50
  publish_bytes_rate: 1MiB
  control_rate: 0
  queued_memory: 0
  incomplete_packet_timeout: 5s
  max_outbound_bytes: 0
auth:
  timeout: 3s
`))
	want = broker.Limits{
		MaxConnections:          100,
		ConnectionRate:          2.5,
		ConnectionBurst:         3,
		MaxTopicLength:          -1,
		MaxTopicLevels:          -1,
		MaxSubscriptions:        -1,
		PublishRate:             50,
		PublishBytesRate:        1 << 20,
		ControlRate:             -1,
		QueuedMemory:            -1,
		IncompletePacketTimeout: 5 * time.Second,
		MaxOutboundBytes:        -1,
	}
	if o.Limits != want {
		t.Errorf("limits\n got: %+v\nwant: %+v", o.Limits, want)
	}
	if o.AuthTimeout != 3*time.Second {
		t.Errorf("AuthTimeout = %v, want 3s", o.AuthTimeout)
	}
}

// A broker run by petrel with no configuration has the settings of one an
// embedder starts with broker.Options{}: both come from broker.Defaults.
func TestDefaultsAreTheBrokers(t *testing.T) {
	o, _ := mustBrokerOptions(t, config.Default())
	d := broker.Defaults()
	if o.Limits != d.Limits {
		t.Errorf("limits\n got: %+v\nwant: %+v", o.Limits, d.Limits)
	}
	got := []any{o.MaxPacketSize, o.ConnectTimeout, o.MaxInflight, o.ReceiveMaximum, o.MaxQueuedMessages, o.MaxQueuedBytes,
		o.BacklogMessages, o.BacklogBytes, o.MaxClientIDLength, *o.MaxQoS, o.TopicAliasMaximum, o.AuthTimeout,
		o.QueueQoS0, o.DisableSplice, o.DisableRetain, o.DisableWildcardSubscriptions, o.DisableSubscriptionIdentifiers,
		o.DisableSharedSubscriptions, o.ServerKeepAlive, o.MaxSessionExpiry, o.SysInterval}
	want := []any{d.MaxPacketSize, d.ConnectTimeout, d.MaxInflight, d.ReceiveMaximum, d.MaxQueuedMessages, d.MaxQueuedBytes,
		d.BacklogMessages, d.BacklogBytes, d.MaxClientIDLength, *d.MaxQoS, d.TopicAliasMaximum, d.AuthTimeout,
		d.QueueQoS0, d.DisableSplice, d.DisableRetain, d.DisableWildcardSubscriptions, d.DisableSubscriptionIdentifiers,
		d.DisableSharedSubscriptions, d.ServerKeepAlive, d.MaxSessionExpiry, d.SysInterval}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options from the default configuration\n got: %v\nwant: %v (broker.Defaults)", got, want)
	}
}

// mqtt.stall_timeout: the file's 0 turns it off, which the broker spells
// negative (its 0 means the default).
func TestBrokerStallTimeout(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 30 * time.Second},
		{"mqtt:\n  stall_timeout: 5s\n", 5 * time.Second},
		{"mqtt:\n  stall_timeout: 0s\n", -1},
	} {
		o, _ := mustBrokerOptions(t, parseTestConfig(t, tc.yaml))
		if o.StallTimeout != tc.want {
			t.Errorf("%q: StallTimeout = %v, want %v", tc.yaml, o.StallTimeout, tc.want)
		}
	}
}

func TestBrokerListeners(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writeSelfSignedCert(t, certFile, keyFile, "petrel")
	caFile := filepath.Join(dir, "ca.crt")
	writeSelfSignedCert(t, caFile, filepath.Join(dir, "ca.key"), "clients")
	o, files := mustBrokerOptions(t, parseTestConfig(t, `listeners:
  - address: 127.0.0.1:1883
  - name: open
    address: :1884
    allow_anonymous: true
    max_connections: 7
  - kind: unix
    address: /run/petrel.sock
    allow_anonymous: false
  - kind: ws
    address: :8080
    websocket: {path: /ws, allowed_origins: ["*.example.com"], trust_proxy: true}
  - kind: tls
    address: :8883
    tls:
      cert_file: `+certFile+`
      key_file: `+keyFile+`
      client_ca_file: `+caFile+`
      client_auth: require
      min_version: "1.3"
      username_from: cn
`))
	yes, no := true, false
	want := []broker.ListenerConfig{
		{Name: "tcp:127.0.0.1:1883", Kind: "tcp", Address: "127.0.0.1:1883"},
		{Name: "open", Kind: "tcp", Address: ":1884", AllowAnonymous: &yes, MaxConnections: 7},
		{Name: "unix:/run/petrel.sock", Kind: "unix", Address: "/run/petrel.sock", AllowAnonymous: &no},
		{Name: "ws::8080", Kind: "ws", Address: ":8080", WebSocketPath: "/ws", AllowedOrigins: []string{"*.example.com"}, TrustProxy: true},
		{Name: "tls::8883", Kind: "tls", Address: ":8883", UsernameFrom: "cn"},
	}
	got := o.Listeners
	if len(got) != len(want) {
		t.Fatalf("%d listeners, want %d", len(got), len(want))
	}
	tlsConf := got[4].TLS
	got[4].TLS = nil
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("listener %d\n got: %+v\nwant: %+v", i, got[i], want[i])
		}
	}
	if tlsConf == nil || tlsConf.MinVersion != 0x0304 || tlsConf.GetConfigForClient == nil {
		t.Errorf("tls listener's TLS config = %+v, want TLS 1.3 from the reloader", tlsConf)
	}
	if len(files.certs) != 1 || files.certs[0].listener != "tls::8883" {
		t.Errorf("reloadable certificates = %+v, want the tls listener's", files.certs)
	}
	if cn := files.certs[0].tls.Certificate().Subject.CommonName; cn != "petrel" {
		t.Errorf("loaded certificate %q, want petrel", cn)
	}
}

func TestBrokerAuthBackends(t *testing.T) {
	dir := t.TempDir()
	passwd, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	writePasswordFile(t, passwd, "alice", "secret")
	writeTestFile(t, acl, "user alice\ntopic read a/#\n")
	for _, tc := range []struct {
		name, yaml         string
		authn, authz       string // the backends' types; "" for none
		passwords, aclFile bool   // what SIGHUP reloads
	}{
		{"none", "", "", "", false, false},
		{"files", "auth:\n  password_file: " + passwd + "\n  acl_file: " + acl + "\n",
			"*auth.PasswordFile", "*auth.ACLFile", true, true},
		{"password file and ACL service", "auth:\n  password_file: " + passwd + "\n  http: {acl_url: http://127.0.0.1:9/acl}\n",
			"*auth.PasswordFile", "*auth.HTTP", true, false},
		{"login service and ACL file", "auth:\n  acl_file: " + acl + "\n  http: {auth_url: http://127.0.0.1:9/login}\n",
			"*auth.HTTP", "*auth.ACLFile", false, true},
		{"login service only", "auth:\n  http: {auth_url: http://127.0.0.1:9/login}\n",
			"*auth.HTTP", "", false, false},
		{"one service for both", "auth:\n  http: {auth_url: http://127.0.0.1:9/login, acl_url: http://127.0.0.1:9/acl}\n",
			"*auth.HTTP", "*auth.HTTP", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, files := mustBrokerOptions(t, parseTestConfig(t, tc.yaml))
			if got := dynamicTypeName(o.Authenticator); got != tc.authn {
				t.Errorf("Authenticator is %s, want %s", got, tc.authn)
			}
			if got := dynamicTypeName(o.Authorizer); got != tc.authz {
				t.Errorf("Authorizer is %s, want %s", got, tc.authz)
			}
			if (files.passwords != nil) != tc.passwords || (files.acl != nil) != tc.aclFile {
				t.Errorf("SIGHUP reloads password file %v, ACL file %v; want %v, %v",
					files.passwords != nil, files.acl != nil, tc.passwords, tc.aclFile)
			}
			if h, ok := o.Authenticator.(*auth.HTTP); ok && o.Authorizer != nil && tc.authz == "*auth.HTTP" && o.Authorizer != auth.Authorizer(h) {
				t.Error("one service, two backends: want the same *auth.HTTP for both")
			}
		})
	}
}

// dynamicTypeName names the dynamic type of v, "" for a nil interface.
func dynamicTypeName(v any) string {
	if v == nil {
		return ""
	}
	return reflect.TypeOf(v).String()
}
