package broker

import (
	"crypto/tls"
	"io"
	"log/slog"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/store"
)

// Options configure a Server. The zero value of every field is a working
// default, so Options{} runs a broker on 127.0.0.1:1883; docs/CONFIG.md and
// docs/MQTT5.md give the defaults the configuration file applies.
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
	// BacklogMessages and BacklogBytes bound an online session's backlog
	// (QoS 1 and 2 deliveries waiting behind its in-flight window) by
	// backpressure: at either, the clients publishing to it are not read
	// until it is down to half. Defaults 1,000 and 16 MiB, capped at half
	// MaxQueuedMessages and MaxQueuedBytes. See backpressure.go.
	BacklogMessages int
	BacklogBytes    int64
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions.
	QueueQoS0 bool
	// MaxClientIDLength refuses longer client identifiers. Default 65535.
	MaxClientIDLength int

	// MaxQoS is the highest QoS the broker accepts and grants; nil means 2.
	// A PUBLISH above it is refused (MQTT 5: DISCONNECT 0x9B).
	MaxQoS *byte
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
	// towards the broker. Zero accepts none.
	TopicAliasMaximum uint16
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
}

// Limits protect the broker from clients that ask too much. Zero means the
// default given; a negative value removes the limit. Each refusal carries
// the MQTT 5 reason code named and is counted (Server.Stats).
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
	// TLS configures "tls" and "wss" listeners.
	TLS *tls.Config
	// UsernameFrom takes the user name from the verified client certificate
	// ("cn" or "san"; empty: from CONNECT).
	UsernameFrom string
	// WebSocketPath is where "ws" and "wss" listeners serve MQTT. Default /mqtt.
	WebSocketPath string
	// AllowedOrigins restricts the Origin of WebSocket upgrades (empty:
	// any); TrustProxy takes the client's address from X-Forwarded-For.
	AllowedOrigins []string
	TrustProxy     bool
	// GoroutineDriver serves plain TCP with a goroutine per connection
	// instead of the event loop.
	GoroutineDriver bool
}

const (
	defaultMaxPacketSize = 1 << 20
	maxReceiveMaximum    = 65535
	// expiryNever is the Session Expiry Interval that means "does not expire".
	expiryNever = 0xFFFFFFFF
)

func (o *Options) setDefaults() {
	if len(o.Listeners) == 0 {
		o.Listeners = []ListenerConfig{{Address: "127.0.0.1:1883"}}
	}
	for i := range o.Listeners {
		l := &o.Listeners[i]
		if l.Kind == "" {
			l.Kind = "tcp"
		}
		if l.Name == "" {
			l.Name = l.Kind + ":" + l.Address
		}
		if l.WebSocketPath == "" {
			l.WebSocketPath = "/mqtt"
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = defaultMaxPacketSize
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 100
	}
	o.MaxInflight = min(o.MaxInflight, 65535)
	if o.ReceiveMaximum <= 0 || o.ReceiveMaximum > maxReceiveMaximum {
		o.ReceiveMaximum = maxReceiveMaximum
	}
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = 100000
	}
	if o.MaxQueuedBytes == 0 {
		o.MaxQueuedBytes = 64 << 20
	}
	if o.BacklogMessages <= 0 {
		o.BacklogMessages = 1000
	}
	// Held-back publishers may each have one more message on its way:
	// the backlog stops short of the queue limits, which drop.
	if o.MaxQueuedMessages > 0 {
		o.BacklogMessages = max(min(o.BacklogMessages, o.MaxQueuedMessages/2), 1)
	}
	if o.BacklogBytes <= 0 {
		o.BacklogBytes = 16 << 20
	}
	if o.MaxQueuedBytes > 0 {
		o.BacklogBytes = max(min(o.BacklogBytes, o.MaxQueuedBytes/2), 1)
	}
	if o.MaxClientIDLength <= 0 {
		o.MaxClientIDLength = 65535
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = 10 * time.Second
	}
	o.Limits.setDefaults()
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.ConnectionBurst, 10)
	def(&l.MaxTopicLength, 65535)
	def(&l.MaxTopicLevels, 128)
	def(&l.MaxSubscriptions, 1000)
	if l.ControlRate == 0 {
		l.ControlRate = 100
	}
	if l.QueuedMemory == 0 {
		l.QueuedMemory = 256 << 20
	}
	if l.IncompletePacketTimeout <= 0 {
		l.IncompletePacketTimeout = 30 * time.Second
	}
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
