package broker

import (
	"crypto/tls"
	"log/slog"
	"os"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/store"
)

// Options configure a Server. The zero value of every field is a working
// default, so Options{} runs a broker on 127.0.0.1:1883; Defaults lists
// them, and the configuration file (docs/CONFIG.md) takes its own from
// there. In a limit, zero is the default and Unlimited lifts it.
type Options struct {
	// Listeners to open. Empty means one TCP listener on 127.0.0.1:1883.
	Listeners []ListenerConfig
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger

	// MaxPacketSize refuses larger packets before reading them and is
	// advertised to MQTT 5 clients. Default 1 MiB.
	MaxPacketSize int
	// ConnectTimeout closes a connection whose CONNECT has not arrived in
	// time. Default 10s.
	ConnectTimeout time.Duration
	// MaxInflight is the number of QoS 1 and 2 messages sent to a client and
	// not yet acknowledged. An MQTT 5 client's Receive Maximum lowers it.
	// Default 100.
	MaxInflight int
	// ReceiveMaximum is how many QoS 1 and 2 PUBLISHes a client may have
	// unacknowledged towards the broker (MQTT 5 Receive Maximum). A client
	// that exceeds it is disconnected with 0x93. Default 65535.
	ReceiveMaximum int
	// MaxQueuedMessages bounds each session's queue of messages waiting for
	// the client (offline, or beyond the in-flight window). Default
	// 100,000; negative means unlimited. A durable session's queue is in
	// the store, not in memory.
	MaxQueuedMessages int
	// MaxQueuedBytes bounds the payload bytes in each session's queue.
	// Default 64 MiB; negative means unlimited.
	MaxQueuedBytes int64
	// SessionQueueLimits, when set, may give a session bounds of its own
	// instead of MaxQueuedMessages and MaxQueuedBytes: it is asked once per
	// session, as it is made, with its client id, and answers 0 for either
	// bound to keep the Options' (a bridge's session, bounded per bridge).
	SessionQueueLimits func(clientID string) (messages int, bytes int64)
	// BacklogMessages and BacklogBytes bound an online session's backlog
	// (QoS 1 and 2 deliveries waiting behind its in-flight window) by
	// backpressure: at either, the clients publishing to it are not read
	// until it is down to half. Defaults 1,000 and 16 MiB, capped at half
	// MaxQueuedMessages and MaxQueuedBytes. See backpressure.go.
	BacklogMessages int
	BacklogBytes    int64
	// StallTimeout disconnects a client whose in-flight window has been
	// full this long with no acknowledgement from it, which would
	// otherwise hold its publishers back for ever; its session goes
	// offline. MQTT 5 clients are told with DISCONNECT 0x97. It acts within
	// two sweeps (half a second) after the timeout. Default 30s; negative
	// turns it off. See stall.go.
	StallTimeout time.Duration
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions.
	QueueQoS0 bool
	// MaxClientIDLength refuses longer client identifiers. Default 65535.
	MaxClientIDLength int

	// MaxQoS is the highest QoS the broker accepts and grants; nil means 2.
	// A PUBLISH above it is refused (MQTT 5: DISCONNECT 0x9B).
	MaxQoS *byte
	// DisableSplice keeps every payload in memory. Otherwise, on Linux,
	// the end of a big payload (32 to 320 KiB past the packet's first
	// read) stays in a kernel pipe from the publisher's socket to its
	// subscribers' (piped.go): moved by page, never copied, where nothing
	// on its way has to read it.
	DisableSplice bool

	// DisableRetain turns retained messages off: a retained PUBLISH then
	// closes the connection (MQTT 5: DISCONNECT 0x9A).
	DisableRetain bool
	// DisableWildcardSubscriptions refuses filters with '+' or '#'
	// (SUBACK 0xA2; 0x80 before MQTT 5).
	DisableWildcardSubscriptions bool
	// DisableSubscriptionIdentifiers refuses SUBSCRIBE with a Subscription
	// Identifier (DISCONNECT 0xA1).
	DisableSubscriptionIdentifiers bool
	// DisableSharedSubscriptions refuses $share/ filters (MQTT 5:
	// DISCONNECT 0x9E; SUBACK 0x80 before MQTT 5).
	DisableSharedSubscriptions bool
	// TopicAliasMaximum is how many topic aliases an MQTT 5 client may set
	// towards the broker, at most 65535. Default 10, as Mosquitto's; a
	// negative value accepts none.
	TopicAliasMaximum int
	// ServerKeepAlive, when non-zero, is the longest keep alive a client may
	// have. An MQTT 5 client asking for more, or for none, gets this one
	// and is told in CONNACK; an MQTT 3 client asking for more is refused
	// (0x02, as Mosquitto's max_keepalive); a shorter one is kept.
	ServerKeepAlive time.Duration
	// MaxSessionExpiry caps the Session Expiry Interval a client may ask
	// for; the session of an MQTT 3.1.1 client that is not clean lasts this
	// long after it disconnects. Zero means no cap (sessions may last
	// forever).
	MaxSessionExpiry time.Duration
	// ResponseInformation, when set, is the prefix of the Response
	// Information returned to MQTT 5 clients that request it: the prefix
	// followed by the client identifier.
	ResponseInformation string
	// AuthMethods are the MQTT 5 enhanced authentication methods, by name.
	AuthMethods auth.Methods
	// Authenticator checks the user name and password of CONNECT. A client
	// that gives a user name is checked whenever there is one; one without
	// is let in only where its listener allows anonymous clients.
	Authenticator auth.Authenticator
	// Authorizer decides what clients may publish, subscribe to and
	// receive; nil allows everything. Either way no client may publish to a
	// topic starting with '$'.
	Authorizer auth.Authorizer
	// AuthTimeout bounds one authentication. Default 10s.
	AuthTimeout time.Duration
	// Hooks are functions of the embedding program that the broker calls
	// at connection, authorization, publication and delivery (hooks.go
	// has their contract: they must not block). The zero value sets none
	// and costs nothing.
	Hooks Hooks

	Limits Limits

	// Store keeps durable sessions, their queues and retained messages.
	// The caller opens it and closes it after Close. Nil keeps them in
	// memory only: nothing survives a restart.
	Store store.Store
	// SyncPeriod chooses how commits reach the disk. Zero (the default,
	// "sync: always") syncs every commit before the clients it concerns are
	// acknowledged; concurrent writers share each sync. A positive period
	// ("sync: periodic") acknowledges after the write and syncs every
	// SyncPeriod: a crash of the machine or of the process can lose what was
	// acknowledged in the last period. docs/DURABILITY.md has the details.
	SyncPeriod time.Duration

	// SysInterval is how often the broker publishes its statistics as
	// retained messages under $SYS/broker/, with Mosquitto's topic names,
	// each topic only when its value changed (sys.go; docs/SYS.md).
	// Default 10s; negative turns it off, and then it costs nothing.
	SysInterval time.Duration

	// Cluster, when set, makes the Server one node of a cluster (package
	// cluster; docs/CLUSTER.md). In a cluster, retained messages are kept
	// by the cluster rather than in Store. Nil: a single broker.
	Cluster Cluster
	// NodeName names this node in a cluster, in $SYS and in the admin API.
	// Default: the host name.
	NodeName string

	// readGrace replaces readGrace (outwait.go) when set: a test that
	// must not take a reader starved by a busy machine for one that
	// stopped raises it.
	readGrace time.Duration
}

// Limits protect the broker from clients that ask too much. Zero means the
// default given; a negative value (Unlimited) removes the limit. Each refusal carries
// the MQTT 5 reason code named. Refusals are counted in the Server's
// internal counters (stats, in server.go), which the tests read; no API
// exports them yet.
type Limits struct {
	// MaxConnections is the number of connections the broker serves at
	// once (CONNACK 0x97 Quota exceeded beyond it). Default: unlimited.
	MaxConnections int
	// ConnectionRate is how many new connections per second one source
	// address may open, with bursts of ConnectionBurst (CONNACK 0x9F
	// Connection rate exceeded). Default: unlimited; burst default 10.
	ConnectionRate  float64
	ConnectionBurst int
	// MaxTopicLength and MaxTopicLevels bound topic names and filters
	// (DISCONNECT 0x90 for a PUBLISH, SUBACK 0x8F for a filter).
	// Defaults 65535 bytes and 128 levels.
	MaxTopicLength int
	MaxTopicLevels int
	// MaxSubscriptions is how many subscriptions one session may hold
	// (SUBACK 0x97 beyond it). Default 1000.
	MaxSubscriptions int
	// PublishRate and PublishBytesRate bound what one client may publish
	// per second, with bursts of one second's worth (DISCONNECT 0x96
	// Message rate too high). Default: unlimited.
	PublishRate      float64
	PublishBytesRate float64
	// ControlRate bounds SUBSCRIBE and UNSUBSCRIBE packets per second per
	// client, bursts of ten (DISCONNECT 0x96). Default 100.
	ControlRate float64
	// QueuedMemory is the memory all sessions together may use for queued
	// messages; past it, messages for clients that are not keeping up are
	// dropped and counted (persistent sessions' queues are on disk and do
	// not count). Default 256 MiB.
	QueuedMemory int64
	// IncompletePacketTimeout closes a connection whose packet has started
	// to arrive but not finished in this time: a client that trickles bytes
	// (slowloris). Default 30s.
	IncompletePacketTimeout time.Duration
	// MaxOutboundBytes bounds what one connection may have waiting to be
	// written: its outbound buffer, the payloads that buffer refers to,
	// and what its driver took and the socket has not accepted yet. Past
	// it, the publishers of the QoS 0 messages that went past it are read
	// no further until the client has taken its output down to half of it
	// (so a client that reads sets their pace, as with QoS 1); a client
	// that has taken nothing for a quarter of a second meanwhile counts as
	// not reading, and its QoS 0 messages past the bound are dropped and
	// counted until it catches up. At most twice the bound waits for any
	// client. QoS 1 and 2 wait in the session's queue instead, within the
	// in-flight window and the queue and backlog limits. A single message
	// goes out into an empty buffer whatever its size. Default 1 MiB:
	// enough for what piles up between two writes to a client that keeps
	// up, while a client that stops reading costs about that much (at most
	// twice), not what is published to it.
	MaxOutboundBytes int
}

// ListenerConfig is one listening socket.
type ListenerConfig struct {
	// Name labels the listener in logs; default "<kind>:<address>".
	Name string
	// Kind is "tcp" (the default), "tls", "ws", "wss" or "unix".
	Kind string
	// Address is host:port, or a socket path for "unix"; port 0 picks a
	// free port (see Server.Addrs).
	Address string
	// AllowAnonymous lets clients in without a user name. Nil means: yes
	// on loopback addresses and unix sockets, no elsewhere (secure by
	// default); the broker warns when a network listener allows them.
	AllowAnonymous *bool
	// MaxConnections bounds this listener's connections (CONNACK 0x97).
	MaxConnections int
	// TLS configures "tls" and "wss" listeners; tlsconf.Reloader.TLSConfig
	// builds one from certificate files and reloads them when they change.
	TLS *tls.Config
	// UsernameFrom takes the user name from the verified client certificate:
	// "cn", "dn", "san", "san:dns", "san:email" or "san:uri" (see
	// tlsconf.IdentityFrom); empty: from CONNECT. Start refuses any other
	// value.
	UsernameFrom string
	// WebSocketPath is where "ws" and "wss" listeners serve MQTT. Default /mqtt.
	WebSocketPath string
	// AllowedOrigins restricts the Origin of WebSocket upgrades (empty:
	// any); TrustProxy takes the client's address from X-Forwarded-For.
	AllowedOrigins []string
	TrustProxy     bool

	// goroutineDriver serves plain TCP with a goroutine per connection
	// instead of the event loop, for tests that run both drivers.
	goroutineDriver bool
}

const (
	maxReceiveMaximum = 65535
	// expiryNever is the Session Expiry Interval that means "does not expire".
	expiryNever = 0xFFFFFFFF
)

// Unlimited, in a limit of Options or Limits, lifts it: any negative value
// does. (In the configuration file, 0 does: the petrel command maps one to
// the other.)
const Unlimited = -1

// Defaults returns every default of Options in one place: what a zero
// field stands for. The configuration file's defaults (config.Default) and
// so the petrel command's are taken from here.
func Defaults() Options {
	maxQoS := byte(2)
	return Options{
		Listeners:         []ListenerConfig{{Kind: "tcp", Address: "127.0.0.1:1883", WebSocketPath: "/mqtt"}},
		MaxPacketSize:     1 << 20,
		ConnectTimeout:    10 * time.Second,
		MaxInflight:       100,
		ReceiveMaximum:    maxReceiveMaximum,
		MaxQueuedMessages: 100000,
		MaxQueuedBytes:    64 << 20,
		BacklogMessages:   1000,
		BacklogBytes:      16 << 20,
		StallTimeout:      30 * time.Second,
		MaxClientIDLength: 65535,
		MaxQoS:            &maxQoS,
		TopicAliasMaximum: 10,
		AuthTimeout:       10 * time.Second,
		SysInterval:       10 * time.Second,
		Limits: Limits{
			MaxConnections:          Unlimited,
			ConnectionRate:          Unlimited,
			ConnectionBurst:         10,
			MaxTopicLength:          65535,
			MaxTopicLevels:          128,
			MaxSubscriptions:        1000,
			PublishRate:             Unlimited,
			PublishBytesRate:        Unlimited,
			ControlRate:             100,
			QueuedMemory:            256 << 20,
			IncompletePacketTimeout: 30 * time.Second,
			MaxOutboundBytes:        1 << 20,
		},
	}
}

// positiveOr is v, or d when v is zero or less: for settings that have no
// "unlimited".
func positiveOr[T int | int64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// orDefault is v, or d when v is zero.
func orDefault[T int | int64 | float64 | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

func (o *Options) setDefaults() {
	d := Defaults()
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
	}
	if len(o.Listeners) == 0 {
		o.Listeners = []ListenerConfig{{Address: d.Listeners[0].Address}}
	}
	for i := range o.Listeners {
		l := &o.Listeners[i]
		if l.Kind == "" {
			l.Kind = d.Listeners[0].Kind
		}
		if l.Name == "" {
			l.Name = l.Kind + ":" + l.Address
		}
		if l.WebSocketPath == "" {
			l.WebSocketPath = d.Listeners[0].WebSocketPath
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler) // nothing is formatted
	}
	// These have no "unlimited": zero or less is the default.
	o.MaxPacketSize = positiveOr(o.MaxPacketSize, d.MaxPacketSize)
	o.ConnectTimeout = positiveOr(o.ConnectTimeout, d.ConnectTimeout)
	o.MaxInflight = positiveOr(o.MaxInflight, d.MaxInflight)
	o.MaxInflight = min(o.MaxInflight, 65535)
	if o.ReceiveMaximum <= 0 || o.ReceiveMaximum > maxReceiveMaximum {
		o.ReceiveMaximum = d.ReceiveMaximum
	}
	o.BacklogMessages = positiveOr(o.BacklogMessages, d.BacklogMessages)
	o.BacklogBytes = positiveOr(o.BacklogBytes, d.BacklogBytes)
	o.MaxClientIDLength = positiveOr(o.MaxClientIDLength, d.MaxClientIDLength)
	o.AuthTimeout = positiveOr(o.AuthTimeout, d.AuthTimeout)
	o.MaxQueuedMessages = orDefault(o.MaxQueuedMessages, d.MaxQueuedMessages)
	o.MaxQueuedBytes = orDefault(o.MaxQueuedBytes, d.MaxQueuedBytes)
	o.TopicAliasMaximum = min(max(orDefault(o.TopicAliasMaximum, d.TopicAliasMaximum), 0), 65535)
	// Held-back publishers may each have one more message on its way:
	// the backlog stops short of the queue limits, which drop.
	if o.MaxQueuedMessages > 0 {
		o.BacklogMessages = max(min(o.BacklogMessages, o.MaxQueuedMessages/2), 1)
	}
	if o.MaxQueuedBytes > 0 {
		o.BacklogBytes = max(min(o.BacklogBytes, o.MaxQueuedBytes/2), 1)
	}
	o.StallTimeout = orDefault(o.StallTimeout, d.StallTimeout)
	o.SysInterval = orDefault(o.SysInterval, d.SysInterval)
	o.Limits.setDefaults(d.Limits)
}

func (l *Limits) setDefaults(d Limits) {
	l.MaxConnections = orDefault(l.MaxConnections, d.MaxConnections)
	l.ConnectionRate = orDefault(l.ConnectionRate, d.ConnectionRate)
	l.ConnectionBurst = orDefault(l.ConnectionBurst, d.ConnectionBurst)
	l.MaxTopicLength = orDefault(l.MaxTopicLength, d.MaxTopicLength)
	l.MaxTopicLevels = orDefault(l.MaxTopicLevels, d.MaxTopicLevels)
	l.MaxSubscriptions = orDefault(l.MaxSubscriptions, d.MaxSubscriptions)
	l.PublishRate = orDefault(l.PublishRate, d.PublishRate)
	l.PublishBytesRate = orDefault(l.PublishBytesRate, d.PublishBytesRate)
	l.ControlRate = orDefault(l.ControlRate, d.ControlRate)
	l.QueuedMemory = orDefault(l.QueuedMemory, d.QueuedMemory)
	l.IncompletePacketTimeout = positiveOr(l.IncompletePacketTimeout, d.IncompletePacketTimeout)
	l.MaxOutboundBytes = orDefault(l.MaxOutboundBytes, d.MaxOutboundBytes)
}

// maxQoS is the highest QoS the broker accepts and grants.
func (o *Options) maxQoS() byte {
	if o.MaxQoS == nil {
		return 2
	}
	return min(*o.MaxQoS, 2)
}

// sessionExpiry applies the server's cap to the interval a client asked for.
func (o *Options) sessionExpiry(asked uint32) uint32 {
	if o.MaxSessionExpiry <= 0 {
		return asked
	}
	max := uint32(min(o.MaxSessionExpiry/time.Second, expiryNever-1))
	return min(asked, max)
}
