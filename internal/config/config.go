// Package config holds Petrel's configuration file: its schema, its
// defaults, a strict loader and the validation that runs before anything
// starts.
//
// A file is read by Load or Parse. Both start from Default, overlay what the
// file sets, and validate the result completely, so a broker never starts on
// a configuration it has only partly understood. Every problem is reported,
// not just the first, and each one names the file, the line and the key:
//
//	petrel.yaml:12: listeners[1].adress: unknown key (did you mean "address"?)
//
// The schema is plain structs: a field is a key when it has a `yaml:"name"`
// tag, and its Go type decides what the file may write there (see decode.go).
// docs/CONFIG.md is the reference for users.
//
// To add a key: add the tagged field to its struct (a new section is a new
// struct type and a field of File); set its default in Default, or, for a
// field of a list entry, in the entry type's setDefaults method; check its
// range in validate.go with v.failf and the key path; then add its row to
// docs/CONFIG.md and set it in testdata/petrel.example.yaml. The tests fail
// until the docs and the example know the key.
package config

import (
	"path/filepath"
	"time"

	"github.com/petrelmq/petrel/broker"
)

// File is a whole configuration file.
type File struct {
	Log       Log        `yaml:"log"`
	Listeners []Listener `yaml:"listeners"`
	Auth      Auth       `yaml:"auth"`
	Limits    Limits     `yaml:"limits"`
	MQTT      MQTT       `yaml:"mqtt"`
	Sys       Sys        `yaml:"sys"`
	Store     Store      `yaml:"store"`
	HTTP      HTTP       `yaml:"http"`
	Cluster   Cluster    `yaml:"cluster"`
	Bridges   []Bridge   `yaml:"bridges"`

	// ShutdownTimeout bounds a shutdown (SIGTERM, SIGINT): past it the
	// process exits without waiting for the rest.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`

	// Where the settings came from, so that Validate can point at the line
	// that set a bad value. name is the file's name; pos maps the key paths
	// the file sets ("listeners[1].address") to where it sets them; parsed
	// holds the settings as the file gave them, so that a value changed
	// since (by a command-line flag) is not blamed on the file. All three
	// are empty for a File built in Go.
	name   string
	pos    map[string]position
	parsed *File
}

// Log configures the broker's log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Listener is one address the broker accepts MQTT connections on.
type Listener struct {
	// Name labels the listener in logs and metrics. Empty means
	// "<kind>:<address>"; Validate fills it in.
	Name string `yaml:"name"`
	// Kind is the transport: tcp (the default; empty means tcp too), tls,
	// ws (WebSocket), wss (WebSocket over TLS) or unix (a unix socket).
	Kind string `yaml:"kind"`
	// Address is host:port, as net.Listen takes it, or for unix the
	// socket's path. An empty host listens on every interface; port 0
	// picks a free port.
	Address string `yaml:"address"`
	// AllowAnonymous lets clients in without a user name. Auto means yes
	// on loopback addresses and unix sockets, no elsewhere.
	AllowAnonymous Tristate `yaml:"allow_anonymous"`
	// MaxConnections bounds the listener's connections; 0 means unlimited.
	MaxConnections int `yaml:"max_connections"`
	// TLS is required by tls and wss listeners and refused by the others.
	TLS ListenerTLS `yaml:"tls"`
	// WebSocket tunes ws and wss listeners and is refused by the others.
	WebSocket ListenerWebSocket `yaml:"websocket"`
}

// ListenerTLS names a TLS listener's files. They are read when the broker
// starts and again on SIGHUP, not when the configuration is validated.
type ListenerTLS struct {
	// CertFile and KeyFile hold the server's PEM certificate chain (leaf
	// first) and its private key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the PEM certificates that client certificates
	// are verified against; required when ClientAuth asks for them.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, request (verify a certificate when the client
	// gives one) or require (refuse the handshake without one).
	ClientAuth string `yaml:"client_auth"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
	// UsernameFrom, when set, takes the user name from the verified client
	// certificate instead of CONNECT (see tlsconf.IdentityFrom).
	UsernameFrom string `yaml:"username_from"`
}

// ListenerWebSocket tunes a ws or wss listener.
type ListenerWebSocket struct {
	// Path is the URL path that is upgraded to MQTT over WebSocket.
	Path string `yaml:"path"`
	// AllowedOrigins restricts the Origin of upgrade requests (host
	// patterns such as "*.example.com"); empty allows any.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// TrustProxy takes the client's address from X-Forwarded-For: for a
	// listener that only a reverse proxy can reach.
	TrustProxy bool `yaml:"trust_proxy"`
}

// defaultTLS is a listener's tls section when the file writes none.
var defaultTLS = ListenerTLS{ClientAuth: "none", MinVersion: "1.2"}

// defaultWebSocketPath is the path ws and wss listeners serve by default.
const defaultWebSocketPath = "/mqtt"

// setDefaults gives a listener of the file its defaults.
func (l *Listener) setDefaults() { l.fillEmpty() }

// fillEmpty sets the fields left empty to their defaults. It serves a
// listener built in Go (petrel --listen ADDR) as well as a new list entry.
func (l *Listener) fillEmpty() {
	if l.Kind == "" {
		l.Kind = "tcp"
	}
	if l.TLS.ClientAuth == "" {
		l.TLS.ClientAuth = defaultTLS.ClientAuth
	}
	if l.TLS.MinVersion == "" {
		l.TLS.MinVersion = defaultTLS.MinVersion
	}
	if l.WebSocket.Path == "" {
		l.WebSocket.Path = defaultWebSocketPath
	}
}

// Auth chooses who may connect and what they may do. Files are read when
// the broker starts and again on SIGHUP, not when the configuration is
// validated.
type Auth struct {
	// PasswordFile is a password file in Mosquitto's format (made by
	// petrel passwd or mosquitto_passwd): the authenticator.
	PasswordFile string `yaml:"password_file"`
	// ACLFile is an ACL file in Mosquitto's format: the authorizer.
	ACLFile string `yaml:"acl_file"`
	// HTTP asks a web service instead of the files.
	HTTP AuthHTTP `yaml:"http"`
	// Timeout bounds one authentication.
	Timeout Duration `yaml:"timeout"`
}

// AuthHTTP is the web service that authenticates and authorizes clients
// (auth.HTTP describes the requests).
type AuthHTTP struct {
	// AuthURL receives a POST for each login: the authenticator.
	AuthURL string `yaml:"auth_url"`
	// ACLURL receives a POST for each access decision not in the cache:
	// the authorizer.
	ACLURL string `yaml:"acl_url"`
	// Timeout bounds each request.
	Timeout Duration `yaml:"timeout"`
	// CacheTTL is how long an allow answer is remembered, NegativeTTL a
	// deny answer or a failure to get one.
	CacheTTL    Duration `yaml:"cache_ttl"`
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// Limits protect the broker from clients that ask too much. For each, 0
// means unlimited, except where its comment says otherwise.
type Limits struct {
	// MaxConnections is how many connections the broker serves at once.
	MaxConnections int `yaml:"max_connections"`
	// ConnectionRate is how many new connections per second one source
	// address may open, in bursts of up to ConnectionBurst (at least 1).
	ConnectionRate  float64 `yaml:"connection_rate"`
	ConnectionBurst int     `yaml:"connection_burst"`
	// MaxTopicLength (bytes, at most 65535) and MaxTopicLevels bound topic
	// names and filters.
	MaxTopicLength int `yaml:"max_topic_length"`
	MaxTopicLevels int `yaml:"max_topic_levels"`
	// MaxSubscriptions is how many subscriptions one session may hold.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// PublishRate (messages) and PublishBytesRate (payload bytes) bound
	// what one client may publish per second.
	PublishRate      float64 `yaml:"publish_rate"`
	PublishBytesRate Size    `yaml:"publish_bytes_rate"`
	// ControlRate bounds SUBSCRIBE and UNSUBSCRIBE packets per second per
	// client.
	ControlRate float64 `yaml:"control_rate"`
	// QueuedMemory is the memory all sessions together may use for
	// messages queued in memory.
	QueuedMemory Size `yaml:"queued_memory"`
	// IncompletePacketTimeout closes a connection whose packet has started
	// to arrive but not finished in this time; it cannot be turned off.
	IncompletePacketTimeout Duration `yaml:"incomplete_packet_timeout"`
	// MaxOutboundBytes bounds what one connection may have waiting to be
	// written; past it, QoS 0 messages to that client are dropped.
	MaxOutboundBytes Size `yaml:"max_outbound_bytes"`
}

// MQTT holds the protocol limits, the same for every listener.
type MQTT struct {
	// MaxPacketSize is the largest packet accepted from a client, and the
	// Maximum Packet Size announced to MQTT 5 clients.
	MaxPacketSize Size `yaml:"max_packet_size"`
	// ConnectTimeout is how long a new connection may take to send CONNECT.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxInflight is the outbound window per client: how many QoS 1 and 2
	// messages may await acknowledgement at once.
	MaxInflight int `yaml:"max_inflight"`
	// MaxQueuedMessages bounds each session's queue of messages waiting for
	// the client; 0 means unlimited.
	MaxQueuedMessages int `yaml:"max_queued_messages"`
	// MaxQueuedBytes bounds the same queue in bytes; 0 means unlimited.
	MaxQueuedBytes Size `yaml:"max_queued_bytes"`
	// BacklogMessages and BacklogBytes bound an online client's backlog
	// (QoS 1/2 messages waiting behind its in-flight window) by holding
	// back the clients that publish to it, until it is down to half.
	BacklogMessages int  `yaml:"backlog_messages"`
	BacklogBytes    Size `yaml:"backlog_bytes"`
	// StallTimeout disconnects a client whose in-flight window has been
	// full this long without an acknowledgement, so that it cannot hold
	// its publishers back for ever; 0 turns it off.
	StallTimeout Duration `yaml:"stall_timeout"`
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions too
	// (off by default, as in Mosquitto).
	QueueQoS0 bool `yaml:"queue_qos0"`
	// SplicePayloads lets the end of a big payload stay in a kernel pipe
	// between sockets (Linux): broker.Options.DisableSplice, negated.
	SplicePayloads bool `yaml:"splice_payloads"`
	// RetainAvailable lets clients publish retained messages.
	RetainAvailable bool `yaml:"retain_available"`
	// MaxClientIDLength is the longest client identifier accepted. The
	// spec requires at least 23 [MQTT-3.1.3-5]; the wire format allows at
	// most 65535.
	MaxClientIDLength int `yaml:"max_client_id_length"`

	// MaxQoS is the highest QoS accepted and granted (MQTT 5 Maximum QoS).
	MaxQoS int `yaml:"max_qos"`
	// ReceiveMaximum is how many QoS 1 and 2 PUBLISHes a client may have
	// unacknowledged towards the broker (MQTT 5 Receive Maximum).
	ReceiveMaximum int `yaml:"receive_maximum"`
	// WildcardSubscriptions, SubscriptionIdentifiers and SharedSubscriptions
	// turn those features on; MQTT 5 clients are told in CONNACK.
	WildcardSubscriptions   bool `yaml:"wildcard_subscriptions"`
	SubscriptionIdentifiers bool `yaml:"subscription_identifiers"`
	SharedSubscriptions     bool `yaml:"shared_subscriptions"`
	// TopicAliasMaximum is how many topic aliases an MQTT 5 client may set.
	TopicAliasMaximum int `yaml:"topic_alias_maximum"`
	// ServerKeepAlive, when not 0, is the longest keep alive a client may
	// have (MQTT 5: longer or none is lowered; MQTT 3: longer is refused).
	ServerKeepAlive Duration `yaml:"server_keep_alive"`
	// MaxSessionExpiry caps how long a session outlives its connection;
	// 0 means no cap.
	MaxSessionExpiry Duration `yaml:"max_session_expiry"`
	// ResponseInformation is the prefix of the Response Information sent to
	// MQTT 5 clients that request it (the prefix, then the client id); empty
	// sends none.
	ResponseInformation string `yaml:"response_information"`
}

// Sys is the broker's statistics published under $SYS/broker/ (docs/SYS.md).
type Sys struct {
	// Interval is how often they are published, each topic only when its
	// value changed; 0 turns $SYS off.
	Interval Duration `yaml:"interval"`
}

// Store is where durable sessions, their queues and retained messages live.
type Store struct {
	// Engine is "pebble" (on disk, the default) or "memory" (nothing
	// survives a restart).
	Engine string `yaml:"engine"`
	// Dir is the pebble store's data directory.
	Dir string `yaml:"dir"`
	// Sync is "always" (acknowledge after the disk has it) or "periodic"
	// (acknowledge after the write; sync every SyncInterval).
	Sync string `yaml:"sync"`
	// SyncInterval is the period of "periodic" syncing.
	SyncInterval Duration `yaml:"sync_interval"`
}

// HTTP is the HTTP server: health checks, metrics, the admin API and the
// dashboard, on one address.
type HTTP struct {
	// Listen is host:port; empty turns the server off.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token every request but the health checks
	// must carry. Empty: <store.dir>/http-token, created on first start.
	TokenFile string `yaml:"token_file"`
	// MetricsAuth requires the token for /metrics too.
	MetricsAuth bool `yaml:"metrics_auth"`
	// TLS serves HTTPS when it names a certificate and its key.
	TLS HTTPTLS `yaml:"tls"`
}

// HTTPTLS names the HTTP server's certificate files: those of a TLS
// listener, without a user name taken from the client certificate.
type HTTPTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	ClientAuth   string `yaml:"client_auth"`
	MinVersion   string `yaml:"min_version"`
}

// Enabled reports whether the server is to serve HTTPS.
func (t HTTPTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Listener returns the same settings as a listener's.
func (t HTTPTLS) Listener() ListenerTLS {
	return ListenerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
		ClientAuth: t.ClientAuth, MinVersion: t.MinVersion}
}

// Cluster makes the broker one node of a cluster (package cluster;
// docs/CLUSTER.md): it is on when Listen or NATSURL is set. The password
// and certificate files are read when the broker starts, not when the
// configuration is validated, and not again on SIGHUP.
type Cluster struct {
	// Node names this node, unique in the cluster: 1 to 64 letters,
	// digits, '-' or '_'. Empty means the host name, with the characters
	// a node name may not have made '-' (cmd/petrel fills it in).
	Node string `yaml:"node"`
	// Name is the cluster's name; nodes of different names do not join.
	Name string `yaml:"name"`
	// Listen is this node's route address (host:port), which the other
	// nodes' Peers name. Setting it turns clustering on, with a NATS
	// server embedded in the broker.
	Listen string `yaml:"listen"`
	// Advertise is the route address the other nodes are told to dial
	// for this one, when it is not Listen: behind NAT, in a container, or
	// through a proxy. Empty: Listen's.
	Advertise string `yaml:"advertise"`
	// Peers are other nodes' route addresses (host:port); any one that is
	// up is enough to join. They need Listen.
	Peers []string `yaml:"peers"`
	// NATSURL makes the node a client of an existing NATS cluster (with
	// JetStream) instead of embedding a server; not with Listen.
	NATSURL string `yaml:"nats_url"`
	// NodeTimeout is how long a node may go unheard before it counts as
	// dead.
	NodeTimeout Duration `yaml:"node_timeout"`
	// ReplicateSessions copies every write of a persistent session to the
	// cluster before it is acknowledged, so that the session outlives its
	// node (docs/CLUSTER.md); off, a node's sessions die with it.
	ReplicateSessions bool `yaml:"replicate_sessions"`
	// Username, and the password in PasswordFile (without surrounding
	// white space), are required of the routes between the nodes: both or
	// neither.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// TLS runs the routes over mutual TLS.
	TLS ClusterTLS `yaml:"tls"`
}

// ClusterTLS names the files of the routes' mutual TLS: all three or none.
// Each node presents its certificate, and verifies the other's against
// the CA, both ways.
type ClusterTLS struct {
	// CertFile and KeyFile hold this node's PEM certificate chain (leaf
	// first) and its private key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile holds the PEM certificates that the other nodes' certificates
	// are verified against.
	CAFile string `yaml:"ca_file"`
}

// Enabled reports whether the routes are to use TLS.
func (t ClusterTLS) Enabled() bool { return t != ClusterTLS{} }

// Enabled reports whether the broker is to be a node of a cluster.
func (c Cluster) Enabled() bool { return c.Listen != "" || c.NATSURL != "" }

// Limits of the cluster section.
const (
	// DefaultClusterName is cluster.name's default.
	DefaultClusterName = "petrel"
	// MinNodeTimeout and MaxNodeTimeout bound cluster.node_timeout:
	// heartbeats go every third of it, and a node is declared dead only
	// after it.
	MinNodeTimeout = 300 * time.Millisecond
	MaxNodeTimeout = time.Minute
)

// HTTPTokenFile is the name of the token file created in store.dir when
// http.token_file is empty.
const HTTPTokenFile = "http-token"

// TokenPath returns where the HTTP server's token is: http.token_file, or
// HTTPTokenFile in store.dir. created says whether the server creates it
// when it is missing: only there.
func (f *File) TokenPath() (path string, created bool) {
	if f.HTTP.TokenFile != "" {
		return f.HTTP.TokenFile, false
	}
	return filepath.Join(f.Store.Dir, HTTPTokenFile), true
}

// Limits the schema enforces.
const (
	// MinPacketSize keeps max_packet_size from making the broker useless.
	MinPacketSize = 1 * KiB
	// MaxPacketSize is the largest MQTT packet there can be: a remaining
	// length of at most 268,435,455 bytes, a 4-byte length field and the
	// 1-byte fixed header.
	MaxPacketSize Size = 268435455 + 4 + 1
	// MinClientIDLength is the length every server must accept [MQTT-3.1.3-5].
	MinClientIDLength = 23
)

// DefaultListenAddress is where the broker listens when nothing says
// otherwise: loopback only, so an unconfigured broker is not reachable from
// the network.
const DefaultListenAddress = "127.0.0.1:1883"

// Default returns the configuration used where a file is silent. The
// broker's limits and protocol settings come from broker.Defaults, the one
// place they are written; where the broker says Unlimited, the file says 0.
func Default() *File {
	d := broker.Defaults()
	l := d.Limits
	return &File{
		Log:       Log{Level: "info", Format: "text"},
		Listeners: []Listener{defaultListener()},
		Auth: Auth{
			Timeout: Duration{d.AuthTimeout},
			HTTP: AuthHTTP{
				Timeout:     Duration{2 * time.Second},
				CacheTTL:    Duration{60 * time.Second},
				NegativeTTL: Duration{5 * time.Second},
			},
		},
		Limits: Limits{
			MaxConnections:          fileLimit(l.MaxConnections),
			ConnectionRate:          fileLimit(l.ConnectionRate),
			ConnectionBurst:         l.ConnectionBurst,
			MaxTopicLength:          fileLimit(l.MaxTopicLength),
			MaxTopicLevels:          fileLimit(l.MaxTopicLevels),
			MaxSubscriptions:        fileLimit(l.MaxSubscriptions),
			PublishRate:             fileLimit(l.PublishRate),
			PublishBytesRate:        Size(fileLimit(l.PublishBytesRate)),
			ControlRate:             fileLimit(l.ControlRate),
			QueuedMemory:            Size(fileLimit(l.QueuedMemory)),
			IncompletePacketTimeout: Duration{l.IncompletePacketTimeout},
			MaxOutboundBytes:        Size(fileLimit(l.MaxOutboundBytes)),
		},
		MQTT: MQTT{
			MaxPacketSize:     Size(d.MaxPacketSize),
			ConnectTimeout:    Duration{d.ConnectTimeout},
			MaxInflight:       d.MaxInflight,
			MaxQueuedMessages: fileLimit(d.MaxQueuedMessages),
			MaxQueuedBytes:    Size(fileLimit(d.MaxQueuedBytes)),
			BacklogMessages:   d.BacklogMessages,
			BacklogBytes:      Size(d.BacklogBytes),
			StallTimeout:      Duration{d.StallTimeout},
			QueueQoS0:         d.QueueQoS0,
			SplicePayloads:    !d.DisableSplice,
			RetainAvailable:   !d.DisableRetain,
			MaxClientIDLength: d.MaxClientIDLength,

			MaxQoS:                  int(*d.MaxQoS),
			ReceiveMaximum:          d.ReceiveMaximum,
			WildcardSubscriptions:   !d.DisableWildcardSubscriptions,
			SubscriptionIdentifiers: !d.DisableSubscriptionIdentifiers,
			SharedSubscriptions:     !d.DisableSharedSubscriptions,
			TopicAliasMaximum:       fileLimit(d.TopicAliasMaximum),
			ServerKeepAlive:         Duration{d.ServerKeepAlive},
			MaxSessionExpiry:        Duration{d.MaxSessionExpiry},
		},
		Sys:     Sys{Interval: Duration{max(d.SysInterval, 0)}},
		Store:   Store{Engine: "pebble", Dir: "./data", Sync: "always", SyncInterval: Duration{100 * time.Millisecond}},
		HTTP:    HTTP{MetricsAuth: true, TLS: HTTPTLS{ClientAuth: defaultTLS.ClientAuth, MinVersion: defaultTLS.MinVersion}},
		Cluster: Cluster{Name: DefaultClusterName, NodeTimeout: Duration{3 * time.Second}, ReplicateSessions: true},

		ShutdownTimeout: Duration{10 * time.Second},
	}
}

// fileLimit is a broker default as the file writes it: 0 for Unlimited.
func fileLimit[T int | int64 | float64](v T) T { return max(v, 0) }

// defaultListener is the listener of a broker configured nowhere.
func defaultListener() Listener {
	l := Listener{Address: DefaultListenAddress}
	l.fillEmpty()
	l.Name = defaultListenerName(l.Kind, l.Address)
	return l
}

// defaultListenerName is a listener's name when the file gives none.
func defaultListenerName(kind, address string) string { return kind + ":" + address }
