package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/listener"
	"github.com/petrelmq/petrel/packet"
)

// conn is the protocol engine of one network connection. It is sans-I/O:
// the driver hands it bytes (Data) and takes its output (Output); it never
// touches a socket. Its life reads top to bottom here: CONNECT, then packets
// until DISCONNECT, a protocol violation, a timeout, a takeover or the
// network ends it.
//
// Locking: mu serialises Data and Closed and guards the input side and the
// protocol state. outMu guards the outbound buffer, which sessions append to
// from other goroutines. The order is mu → Server.mu → session.mu → outMu.
type conn struct {
	srv *Server
	nc  listener.Conn
	ln  *listenerState

	mu      sync.Mutex
	in      []byte // the start of a packet that has not fully arrived
	state   connState
	version byte
	// sess is set once, at CONNECT; atomic because the path that ends a
	// connection may run on another goroutine (timeouts, takeover).
	sess atomic.Pointer[session]
	// will is published when the connection ends without DISCONNECT.
	will atomic.Pointer[Message]
	// willDone makes sure the will is considered once.
	willDone atomic.Bool

	// deadline (unix nanoseconds) after which the sweeper closes the
	// connection: the CONNECT timeout first, then 1.5 × keep alive after the
	// last bytes read. Zero means none. [MQTT-3.1.2-24]
	deadline  atomic.Int64
	keepAlive time.Duration
	// closing is set when the engine decides to close; later input is ignored.
	closing atomic.Bool
	// id is the client identifier, set once at CONNECT, for logs.
	id atomic.Pointer[string]

	outMu sync.Mutex
	out   []byte
	// outClosed stops appends once the connection is gone.
	outClosed bool
}

type connState uint8

const (
	stateNew       connState = iota // waiting for CONNECT
	stateConnected                  // CONNECT accepted
	stateClosed                     // Closed ran
)

var decoders = sync.Pool{New: func() any { return new(packet.Decoder) }}

// Data implements listener.Endpoint: it parses every complete packet in
// the bytes read and keeps the start of an incomplete one.
func (c *conn) Data(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() || c.state == stateClosed {
		return
	}
	if c.state == stateConnected && c.keepAlive > 0 {
		c.deadline.Store(time.Now().Add(c.keepAlive * 3 / 2).UnixNano())
	}
	dec := decoders.Get().(*packet.Decoder)
	dec.Version = c.version
	if len(c.in) == 0 {
		rest := c.parse(dec, b)
		if len(rest) > 0 && !c.closing.Load() {
			c.in = append(bufpool.Get(len(rest)), rest...)
		}
	} else {
		c.in = append(c.in, b...)
		rest := c.parse(dec, c.in)
		if len(rest) == 0 || c.closing.Load() {
			bufpool.Put(c.in)
			c.in = nil
		} else {
			n := copy(c.in, rest)
			c.in = c.in[:n]
		}
	}
	decoders.Put(dec)
}

// parse handles every complete packet at the start of b and returns the
// incomplete remainder.
func (c *conn) parse(dec *packet.Decoder, b []byte) []byte {
	for len(b) > 0 && !c.closing.Load() {
		h, n, err := packet.ParseFixedHeader(b, c.srv.opts.MaxPacketSize)
		if err == packet.ErrIncomplete {
			return b
		}
		if err != nil {
			c.fail(err)
			return nil
		}
		if len(b) < n+h.Remaining {
			return b
		}
		p, err := dec.Decode(h, b[n:n+h.Remaining])
		if c.version == 0 && dec.Version != 0 {
			c.version = dec.Version // CONNECT told us the protocol, even if it failed later
		}
		if err != nil {
			c.fail(err)
			return nil
		}
		b = b[n+h.Remaining:]
		if err := c.handle(p); err != nil {
			c.fail(err)
			return nil
		}
	}
	return b
}

// handle dispatches one decoded packet. An error is a protocol violation
// that closes the connection.
func (c *conn) handle(p packet.Packet) error {
	if c.state == stateNew {
		cp, ok := p.(*packet.Connect)
		if !ok {
			return violation(packet.ProtocolError, "first packet is %s, not CONNECT", p.Type()) // [MQTT-3.1.0-1]
		}
		return c.handleConnect(cp)
	}
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Ack:
		return c.handleAck(p)
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		c.writePacket(&packet.Pingresp{}) // [MQTT-3.12.4-1]
		return nil
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Connect:
		return violation(packet.ProtocolError, "second CONNECT") // [MQTT-3.1.0-2]
	default:
		return violation(packet.ProtocolError, "unexpected %s from a client", p.Type())
	}
}

// protocolError is a client's breach of the protocol: the connection is
// closed and the reason logged.
type protocolError struct {
	code   packet.ReasonCode
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func violation(code packet.ReasonCode, format string, args ...any) error {
	return &protocolError{code: code, reason: fmt.Sprintf(format, args...)}
}

// fail closes the connection because of err, a client's fault.
func (c *conn) fail(err error) {
	code := packet.ProtocolError
	var pe *protocolError
	var de *packet.Error
	switch {
	case errors.As(err, &pe):
		code = pe.code
	case errors.As(err, &de):
		code = de.Code
	}
	c.srv.log.Debug("closing connection: protocol violation",
		"remote", c.nc.RemoteAddr().String(), "client", c.clientID(), "reason", err.Error(), "code", byte(code))
	c.srv.stats.protocolErrors.Add(1)
	if c.state == stateNew && code == packet.UnsupportedProtocolVersion {
		// Answer in a form every protocol level reads. [MQTT-3.1.2-2]
		c.version = packet.V311
		c.appendPacket(&packet.Connack{Code: packet.ConnRefusedUnacceptableProtocol})
	}
	c.shutdown()
}

// shutdown closes the connection. The session is released at once, so
// messages published from now on queue for the client's return instead of
// going to a socket about to close; then the will, unless DISCONNECT
// disarmed it, is published.
func (c *conn) shutdown() {
	if c.closing.Swap(true) {
		return
	}
	c.finish()
	c.nc.Close()
}

// finish releases the session and publishes the armed will. The first path
// that ends the connection runs it; Closed runs it again for the case where
// the session was attached while the connection was already closing.
func (c *conn) finish() {
	c.srv.detach(c)
	if c.willDone.Swap(true) {
		return
	}
	if w := c.will.Swap(nil); w != nil && !c.srv.shuttingDown.Load() {
		c.srv.publish(w)
	}
}

// clientID is safe from any goroutine: it is set once the session is open.
func (c *conn) clientID() string {
	if id := c.id.Load(); id != nil {
		return *id
	}
	return ""
}

func (c *conn) handleDisconnect(*packet.Disconnect) error {
	// A clean DISCONNECT discards the will. [MQTT-3.1.2-10] [MQTT-3.14.4-3]
	c.will.Store(nil)
	c.shutdown()
	return nil
}

// Output implements listener.Endpoint: it hands the driver every pending byte.
func (c *conn) Output() []byte {
	c.outMu.Lock()
	b := c.out
	c.out = nil
	c.outMu.Unlock()
	return b
}

// Closed implements listener.Endpoint: the connection is gone. The session is
// released (or discarded if it was not persistent) and the will, if still
// armed, is published.
func (c *conn) Closed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return
	}
	wasConnected := c.state == stateConnected
	c.state = stateClosed
	c.srv.conns.remove(c)
	if c.in != nil {
		bufpool.Put(c.in)
		c.in = nil
	}
	c.outMu.Lock()
	c.outClosed = true
	if c.out != nil {
		bufpool.Put(c.out)
		c.out = nil
	}
	c.outMu.Unlock()
	if !wasConnected {
		return
	}
	if err != nil && !c.closing.Load() {
		c.srv.log.Debug("connection lost", "client", c.clientID(), "remote", c.nc.RemoteAddr().String(), "err", err)
	}
	c.closing.Store(true)
	c.finish()
}

// append encodes p onto the outbound buffer without flushing.
func (c *conn) appendPacket(p packet.Packet) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.outClosed {
		return
	}
	if c.out == nil {
		c.out = bufpool.Get(512)
	}
	out, err := packet.Append(c.out, p, c.version)
	if err != nil {
		c.srv.log.Error("encoding packet", "type", p.Type().String(), "client", c.clientID(), "err", err)
		return
	}
	c.out = out
}

// writePacket appends p to the outbound buffer and asks the driver to flush.
func (c *conn) writePacket(p packet.Packet) {
	c.appendPacket(p)
	c.nc.Flush()
}

func (c *conn) writeAck(kind packet.Type, pid uint16, code packet.ReasonCode) {
	a := packet.Ack{Kind: kind, PacketID: pid, Code: code}
	c.outMu.Lock()
	if c.outClosed {
		c.outMu.Unlock()
		return
	}
	if c.out == nil {
		c.out = bufpool.Get(512)
	}
	c.out, _ = packet.AppendAck(c.out, &a, c.version) // an ack of a valid id always encodes
	c.outMu.Unlock()
	c.nc.Flush()
}

// writePublish appends one delivery of m. Encoding straight into the
// outbound buffer costs one copy of the payload, the same as copying a
// shared encoding would, and needs no allocation.
func (c *conn) writePublish(m *Message, qos byte, pid uint16, dup, retain bool) {
	c.outMu.Lock()
	if c.outClosed {
		c.outMu.Unlock()
		return
	}
	if qos == 0 && !retain && len(c.out) > maxPendingOutput {
		// The client is not reading. QoS 0 may be dropped; QoS 1 and 2
		// are bounded by the in-flight window instead.
		c.outMu.Unlock()
		c.srv.stats.droppedQoS0Slow.Add(1)
		return
	}
	if c.out == nil {
		c.out = bufpool.Get(len(m.Payload) + len(m.Topic) + 16)
	}
	p := packet.Publish{Topic: m.Topic, Payload: m.Payload, QoS: qos, PacketID: pid, Dup: dup, Retain: retain}
	out, err := packet.AppendPublish(c.out, &p, c.version)
	c.out = out
	c.outMu.Unlock()
	if err != nil {
		c.srv.log.Error("encoding PUBLISH", "client", c.clientID(), "topic", m.Topic, "err", err)
		return
	}
	c.nc.Flush()
}

// maxPendingOutput bounds the bytes waiting for a client that does not read,
// beyond which QoS 0 messages to it are dropped.
const maxPendingOutput = 4 << 20

var _ listener.Endpoint = (*conn)(nil)
