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

import "time"

// File is a whole configuration file.
type File struct {
	Log       Log        `yaml:"log"`
	Listeners []Listener `yaml:"listeners"`
	MQTT      MQTT       `yaml:"mqtt"`
	Store     Store      `yaml:"store"`

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
	// "tcp:<address>"; Validate fills it in.
	Name string `yaml:"name"`
	// Address is host:port, as net.Listen takes it. An empty host listens
	// on every interface; port 0 picks a free port.
	Address string `yaml:"address"`
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
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions too
	// (off by default, as in Mosquitto).
	QueueQoS0 bool `yaml:"queue_qos0"`
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
	// ServerKeepAlive, when not 0, replaces the keep alive clients ask for.
	ServerKeepAlive Duration `yaml:"server_keep_alive"`
	// MaxSessionExpiry caps how long a session outlives its connection;
	// 0 means no cap.
	MaxSessionExpiry Duration `yaml:"max_session_expiry"`
	// ResponseInformation is the prefix of the Response Information sent to
	// MQTT 5 clients that request it (the prefix, then the client id); empty
	// sends none.
	ResponseInformation string `yaml:"response_information"`
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

// Default returns the configuration used where a file is silent.
func Default() *File {
	return &File{
		Log: Log{Level: "info", Format: "text"},
		Listeners: []Listener{
			{Name: defaultListenerName(DefaultListenAddress), Address: DefaultListenAddress},
		},
		MQTT: MQTT{
			MaxPacketSize:     1 * MiB,
			ConnectTimeout:    Duration{10 * time.Second},
			MaxInflight:       100,
			MaxQueuedMessages: 100000,
			MaxQueuedBytes:    64 * MiB,
			QueueQoS0:         false,
			RetainAvailable:   true,
			MaxClientIDLength: 65535,

			MaxQoS:                  2,
			ReceiveMaximum:          65535,
			WildcardSubscriptions:   true,
			SubscriptionIdentifiers: true,
			SharedSubscriptions:     true,
			TopicAliasMaximum:       10,
		},
		Store: Store{Engine: "pebble", Dir: "./data", Sync: "always", SyncInterval: Duration{100 * time.Millisecond}},
	}
}

// defaultListenerName is a listener's name when the file gives none.
func defaultListenerName(address string) string { return "tcp:" + address }
