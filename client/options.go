package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Options configure one connection. The zero value of every field is a
// working default, except CleanStart, which mirrors the protocol's flag:
// false asks the server to resume an existing session.
type Options struct {
	// Addr is where the server listens: "host:port" (TCP), or a URL:
	// tcp:// (or mqtt://), tls:// (or ssl://, mqtts://), ws://host:port/path,
	// wss://host:port/path, unix:///path/to/socket. Ports default to 1883,
	// 8883, 80 and 443; a WebSocket path defaults to /mqtt. Default
	// "127.0.0.1:1883".
	Addr string
	// TLS configures tls:// and wss:// connections, client certificates
	// included. Nil means the system's roots; the server name defaults to
	// the host of Addr.
	TLS *tls.Config
	// Dialer dials TCP and unix sockets (and under TLS and WebSocket); set
	// its LocalAddr to bind the connection. Nil means a default Dialer.
	Dialer *net.Dialer
	// Dial, when set, makes the connection instead of Addr: a connection
	// inside the process (broker.Server.DialInternal), or through a proxy.
	// Addr is then unused.
	Dial func(ctx context.Context) (net.Conn, error)
	// DialTimeout bounds Connect: the dial, the TLS and WebSocket handshakes
	// and the wait for CONNACK. Default 10s; negative means only Connect's
	// context bounds them.
	DialTimeout time.Duration

	// Version is the protocol level: packet.V31, packet.V311 (the default)
	// or packet.V5.
	Version  byte
	ClientID string
	// Username is sent when not empty, Password when not nil.
	Username string
	Password []byte
	// CleanStart starts a new session (Clean Session in MQTT 3.1.1). When
	// false the server resumes the session of ClientID, if it has one.
	CleanStart bool
	// SessionExpiry is the MQTT 5 Session Expiry Interval in seconds
	// (0xFFFFFFFF: never). It replaces the one in ConnectProps when not zero.
	SessionExpiry uint32
	// KeepAlive is the longest the client stays silent: it sends PINGREQ
	// when it has sent nothing for three quarters of it, and gives up on a
	// server that does not answer within KeepAlive. Default 60s; negative
	// turns keep alive off. An MQTT 5 server's Server Keep Alive replaces it.
	KeepAlive time.Duration
	// Will is the will message: its Topic, Payload, QoS, Retain, and in
	// MQTT 5 its will properties in Props (Will Delay Interval included).
	Will *packet.Publish
	// ConnectProps are the MQTT 5 CONNECT properties. A Topic Alias Maximum
	// here lets the server send topic aliases, which the client resolves.
	ConnectProps packet.Properties

	// MaxInflight bounds the QoS 1 and 2 messages published and not yet
	// acknowledged. Default 100; an MQTT 5 server's Receive Maximum lowers
	// it.
	MaxInflight int
	// MaxPacketSize refuses larger packets from the server (the connection
	// ends). In MQTT 5 it is sent as the Maximum Packet Size. Zero means no
	// limit.
	MaxPacketSize int

	// OnMessage receives every message the server sends, on the client's
	// read goroutine, before the client acknowledges it. The Message and
	// what it points to are valid only until OnMessage returns: copy what
	// you keep (Message.Clone). It must not wait for the server — Publish at
	// QoS 1 or 2, Subscribe, Unsubscribe, Disconnect and Close would
	// deadlock, as the acknowledgements they wait for are read by this
	// goroutine — but it may publish at QoS 0, and call PublishAsync with a
	// context that is already done (which returns ErrInflightFull rather
	// than wait for the window).
	OnMessage func(*Message)
	// ManualAck leaves the acknowledgement of each QoS 1 and 2 message
	// (PUBACK, PUBREC) to the application, which calls Client.Ack once
	// it has done with the message: a bridge, once the other broker has
	// taken it. Until then the server keeps the message, and sends it
	// again on the session's next connection if this one ends first.
	// Acknowledgements leave in the order the messages came whatever the
	// order of the calls, as MQTT requires [MQTT-4.6.0-2] [MQTT-4.6.0-3].
	ManualAck bool
	// OnDisconnect is called once, on the read goroutine, when the
	// connection ends for any reason but Close or Disconnect: a
	// *DisconnectError when the server sent DISCONNECT, else what failed.
	// The client is closed by then. There is no reconnection: make a new
	// Client.
	OnDisconnect func(error)
	// Trace, when set, sees every packet sent and received, in order, for
	// debugging. It runs with the client's lock held and must not call the
	// Client; the packet is valid only during the call.
	Trace func(sent bool, p packet.Packet)
}

const (
	defaultAddr        = "127.0.0.1:1883"
	defaultDialTimeout = 10 * time.Second
	defaultKeepAlive   = 60 * time.Second
	defaultMaxInflight = 100
)

func (o *Options) setDefaults() error {
	if o.Addr == "" {
		o.Addr = defaultAddr
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	switch o.Version {
	case 0:
		o.Version = packet.V311
	case packet.V31, packet.V311, packet.V5:
	default:
		return fmt.Errorf("client: protocol level %d is not 3, 4 or 5", o.Version)
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = defaultKeepAlive
	}
	if o.KeepAlive > 0 && o.KeepAlive < time.Second {
		o.KeepAlive = time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = defaultMaxInflight
	}
	o.MaxInflight = min(o.MaxInflight, 65535)
	if o.Will != nil && o.Will.QoS > 2 {
		return fmt.Errorf("client: will QoS %d", o.Will.QoS)
	}
	return nil
}

// Errors of the client. Connection failures are wrapped; test with errors.Is.
var (
	// ErrClosed is the error of anything attempted, or left waiting, after
	// Close or Disconnect.
	ErrClosed = errors.New("client: closed")
	// ErrInflightFull is PublishAsync's answer when the in-flight window
	// stays full until its context is done.
	ErrInflightFull = errors.New("client: in-flight window full")
	// ErrKeepAliveTimeout ends a connection whose server did not answer a
	// PINGREQ within the keep alive.
	ErrKeepAliveTimeout = errors.New("client: no PINGRESP within the keep alive")
	// ErrPacketTooLarge refuses a packet larger than the server's Maximum
	// Packet Size; nothing is sent.
	ErrPacketTooLarge = errors.New("client: packet larger than the server's maximum packet size")
)

// ConnectError is a refusal in CONNACK.
type ConnectError struct {
	Version byte
	Code    packet.ReasonCode
	Reason  string // MQTT 5 Reason String, if any
}

// v3Refusals are the MQTT 3.1 / 3.1.1 CONNACK return codes' meanings.
var v3Refusals = [...]string{1: "unacceptable protocol version", 2: "identifier rejected",
	3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}

// Text is the refusal's meaning in the connection's protocol version.
func (e *ConnectError) Text() string {
	if e.Version != packet.V5 && int(e.Code) < len(v3Refusals) && v3Refusals[e.Code] != "" {
		return v3Refusals[e.Code]
	}
	return e.Code.String()
}

func (e *ConnectError) Error() string {
	s := "client: connection refused: " + e.Text() + " (" + hexCode(e.Code) + ")"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// DisconnectError ends a connection the server closed with DISCONNECT
// (MQTT 5).
type DisconnectError struct {
	Code            packet.ReasonCode
	Reason          string // Reason String, if any
	ServerReference string // where to go instead, with 0x9C and 0x9D
}

func (e *DisconnectError) Error() string {
	s := "client: server sent DISCONNECT: " + e.Code.String() + " (" + hexCode(e.Code) + ")"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.ServerReference != "" {
		s += " (server reference " + strconv.Quote(e.ServerReference) + ")"
	}
	return s
}

// ReasonError is a failure reason code in an acknowledgement: PUBACK, PUBREC
// or PUBCOMP.
type ReasonError struct {
	Packet packet.Type
	Code   packet.ReasonCode
	Reason string // MQTT 5 Reason String, if any
}

func (e *ReasonError) Error() string {
	s := "client: " + e.Packet.String() + " " + e.Code.String() + " (" + hexCode(e.Code) + ")"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func hexCode(c packet.ReasonCode) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[c>>4], digits[c&15]})
}
