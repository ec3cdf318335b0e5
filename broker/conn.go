package broker

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
)

// conn is the protocol engine of one network connection. It is sans-I/O:
// the driver hands it bytes (Data) and takes its output (Output); it never
// touches a socket. Its life reads top to bottom here and in connect.go:
// CONNECT (and, in MQTT 5, an authentication exchange), then packets until
// DISCONNECT, a protocol violation, a timeout, a takeover or the network
// ends it.
//
// Locking: mu serialises Data and Closed and guards the input side and the
// protocol state. outMu guards the outbound buffer and what is encoded with
// it (outbound topic aliases); sessions append to it from other goroutines.
// docs/LOCKING.md gives the order.
type conn struct {
	srv *Server
	nc  listener.Conn
	ln  *listenerState

	// The fields are ordered to leave no padding: a conn is most of an idle
	// connection's cost. mu guards the connection's state and input; outMu
	// its output.
	mu    sync.Mutex
	outMu sync.Mutex

	in []byte // the start of a packet that has not fully arrived
	// inBig is the pooled buffer in holds, while a big packet is assembled
	// in a buffer of its own (bigBuffer); nil otherwise.
	inBig *bigBuf
	// sess is set once, at CONNECT; atomic because the path that ends a
	// connection may run on another goroutine (timeouts, takeover).
	sess atomic.Pointer[session]
	// will is published when the connection ends without DISCONNECT (or
	// with MQTT 5's DISCONNECT 0x04), after willDelay seconds.
	will atomic.Pointer[message]
	// ea is the state of MQTT 5 enhanced authentication, for the clients
	// that use it.
	ea *enhancedAuth
	// inAliases maps the client's topic aliases to topics (MQTT 5).
	inAliases map[uint16]string
	// client is who the client is, for the authenticator and authorizer.
	client *auth.Client
	// rates are the client's rate-limit buckets, made on first use.
	rates *connRates
	// id is the client identifier, set once at CONNECT, for logs.
	id atomic.Pointer[string]

	// deadline (unix nanoseconds) after which the sweeper closes the
	// connection: the CONNECT timeout first, then 1.5 × keep alive after the
	// last bytes read. Zero means none. [MQTT-3.1.2-24]
	deadline atomic.Int64
	// partial (unix ns) is when an incomplete packet must have finished
	// arriving; 0 when none is pending. [slowloris]
	partial atomic.Int64

	// Negotiated at CONNECT, read by deliveries under the session lock.
	maxOut uint32 // the client's Maximum Packet Size; 0 when it set none

	willDelay uint32
	// keepAliveMs is the keep alive in force, in milliseconds (the server
	// may set one finer than MQTT's seconds); 0 for none.
	keepAliveMs uint32
	// flags holds flagWillDone, flagConnectedV5, flagHeldBack and
	// flagClosing.
	flags atomic.Uint32
	// held is the part of the output the driver took that the socket has
	// not accepted yet (listener.WriteWatcher): set under outMu when output
	// is taken, lowered by the driver as the socket takes it.
	held atomic.Uint32

	window      uint16 // outbound in-flight limit: MaxInflight, lowered by the client's Receive Maximum
	aliasMax    uint16 // the client's Topic Alias Maximum
	problemInfo bool   // the client's Request Problem Information [MQTT-3.1.2-29]
	state       connState
	version     byte
	// refusal, when set at accept time (a connection limit), is the reason
	// CONNECT will be refused with.
	refusal packet.ReasonCode
	// paused holds input while authentication (or a remote authorizer)
	// runs elsewhere; rechecking is set while a packet kept for the
	// authorizer is handled again.
	paused, rechecking bool
	// outClosed, under outMu, stops appends once the connection is gone.
	outClosed bool

	out []byte
	// outAliases are the topic aliases the broker has set towards the client.
	outAliases map[string]uint16
	// rare holds output state few connections need, made on first use
	// (outRareLocked). Under outMu.
	rare *outRare
}

// outRare is the output state of a connection that needed more than a
// buffer.
type outRare struct {
	// deferred holds replies that wait for a store commit, in the order the
	// client's packets came; any reply behind one waits too. [MQTT-4.6.0-2]
	deferred []deferredReply
	// lent are the big payloads the output refers to rather than copies
	// (lendPayload), in order; lentBytes is their length.
	lent      []lentPayload
	lentBytes int
	// closed is why the connection ended, for OnDisconnect (hooks.go);
	// ended is set once its end is reported.
	closed *DisconnectInfo
	ended  bool
}

// lentPayload is a message's payload that goes out after out[:at].
type lentPayload struct {
	at int
	m  *message
}

// outRareLocked returns c.rare, making it if needed. outMu is held.
func (c *conn) outRareLocked() *outRare {
	if c.rare == nil {
		c.rare = new(outRare)
	}
	return c.rare
}

// deferredLocked returns the replies waiting for a commit. outMu is held.
func (c *conn) deferredLocked() []deferredReply {
	if c.rare == nil {
		return nil
	}
	return c.rare.deferred
}

// deferredReply is an acknowledgement (ack) or another reply (p) held until
// commit group `group` is on disk.
type deferredReply struct {
	group uint64
	ack   packet.Ack
	p     packet.Packet
}

type connState uint8

// conn.flags: atomic, so that any goroutine may read them.
const (
	// flagWillDone makes sure the will is considered once.
	flagWillDone = 1 << iota
	// flagConnectedV5 is set once an MQTT 5 CONNECT is accepted: from then
	// on the server explains a close with DISCONNECT.
	flagConnectedV5
	// flagHeldBack: the connection is not read while a session its
	// messages go to is backed up (backpressure.go).
	flagHeldBack
	// flagClosing is set when the engine decides to close; later input is
	// ignored. (A flag rather than a field of its own: a conn is most of an
	// idle connection's cost.)
	flagClosing
	// For OnDisconnect, which must follow OnConnect (hooks.go):
	// flagConnectReported is set once OnConnect has run, flagDisconnectReady
	// once the connection's end is recorded, flagDisconnectReported once
	// OnDisconnect has run.
	flagConnectReported
	flagDisconnectReady
	flagDisconnectReported
)

// isClosing reports whether the engine decided to close the connection.
func (c *conn) isClosing() bool { return c.flags.Load()&flagClosing != 0 }

const (
	stateNew            connState = iota // waiting for CONNECT
	stateAuthenticating                  // MQTT 5: CONNECT received, AUTH exchange running
	stateConnected                       // CONNECT accepted
	stateClosed                          // Closed ran
)

var decoders = sync.Pool{New: func() any { return new(packet.Decoder) }}

// Data implements listener.Endpoint: it parses every complete packet in
// the bytes read and keeps the start of an incomplete one.
func (c *conn) Data(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosing() || c.state == stateClosed {
		return
	}
	if c.paused {
		// Authentication runs elsewhere: hold what the client sends
		// meanwhile (it may send before CONNACK), within reason.
		if len(c.in)+len(b) > c.srv.opts.MaxPacketSize+64<<10 {
			c.fail(violation(packet.ProtocolError, "%d bytes sent before CONNACK", len(c.in)+len(b)))
			return
		}
		if c.in == nil {
			c.in = bufpool.Get(len(b))
		}
		c.in = append(c.in, b...)
		return
	}
	c.consume(b)
}

// consume parses what was buffered followed by b, and keeps the start of an
// incomplete packet. Keep alive counts complete packets: a client that
// trickles bytes does not stay alive by them. [MQTT-3.1.2-24]
func (c *conn) consume(b []byte) {
	dec := decoders.Get().(*packet.Decoder)
	dec.Version = c.version
	var rest []byte
	var parsed bool
	total := c.bigPending()
	if total > 0 {
		// The rest of a big packet goes into its own buffer, and no further
		// (DataRead may have put it there already).
		take := min(total-len(c.in), len(b))
		c.in = append(c.in, b[:take]...)
		b = b[take:]
		if len(c.in) == total {
			own, big := c.in, c.inBig
			c.in, c.inBig = nil, nil
			if big != nil && &big.b[0] != &own[0] {
				big = nil // not the buffer it was made for: not recycled
			}
			_, parsed = c.parse(dec, own, true, big)
		}
	}
	switch {
	case len(c.in) == 0:
		if len(b) == 0 {
			break
		}
		var more bool
		rest, more = c.parse(dec, b, false, nil)
		parsed = parsed || more
		if len(rest) > 0 && !c.isClosing() {
			if c.in, c.inBig = bigBuffer(rest, c.srv.opts.MaxPacketSize); c.in == nil {
				c.in = append(bufpool.Get(len(rest)), rest...)
			}
		}
	case total > 0:
		// Still assembling the big packet: b went into it.
	default:
		c.in, c.inBig = append(c.in, b...), nil
		var more bool
		rest, more = c.parse(dec, c.in, false, nil)
		parsed = parsed || more
		if len(rest) == 0 || c.isClosing() {
			bufpool.Put(c.in)
			c.in = nil
		} else if big, bb := bigBuffer(rest, c.srv.opts.MaxPacketSize); big != nil {
			bufpool.Put(c.in)
			c.in, c.inBig = big, bb
		} else {
			n := copy(c.in, rest)
			c.in = c.in[:n]
		}
	}
	decoders.Put(dec)
	if c.isClosing() {
		return
	}
	var now time.Time
	if parsed && c.state == stateConnected && c.keepAliveMs > 0 {
		now = time.Now()
		c.deadline.Store(c.keepAliveDeadline(now))
	}
	switch {
	case len(c.in) == 0 || c.paused:
		c.partial.Store(0)
	case parsed || c.partial.Load() == 0:
		// A packet has started to arrive: it has this long to finish.
		if now.IsZero() {
			now = time.Now()
		}
		c.partial.Store(c.partialDeadline(now))
	}
}

// keepAliveDeadline is when silence from now on closes the connection:
// one and a half keep alive periods. [MQTT-3.1.2-24]
func (c *conn) keepAliveDeadline(now time.Time) int64 {
	return now.Add(time.Duration(c.keepAliveMs) * time.Millisecond * 3 / 2).UnixNano()
}

// partialDeadline is when a packet that starts arriving now must be whole.
func (c *conn) partialDeadline(now time.Time) int64 {
	return now.Add(c.srv.opts.Limits.IncompletePacketTimeout).UnixNano()
}

// bigPacket is the size from which a packet that arrives in pieces is
// assembled in a buffer of its own, sized once, which a PUBLISH's message
// then keeps: its payload is not copied again after the read.
const bigPacket = 64 << 10

// bigBuffer returns a buffer of its own for the big packet that rest
// starts, holding rest, or nil if rest does not start one; the buffer is
// exactly the packet's size, in a pooled one (bb) that may be larger. It is
// only made once an eighth of the packet has arrived: a client cannot make
// the broker reserve more than eight times what it sent.
func bigBuffer(rest []byte, maxPacket int) (buf []byte, bb *bigBuf) {
	h, n, err := packet.ParseFixedHeader(rest, maxPacket)
	if err != nil {
		return nil, nil
	}
	total := n + h.Remaining
	if total < bigPacket || len(rest) < total/8 || len(rest) >= total {
		return nil, nil
	}
	bb = getBigBuf(total)
	buf = bb.b[:len(rest):total]
	copy(buf, rest)
	return buf, bb
}

// bigPending returns the size of the big packet c.in is assembling in a
// buffer of its own (bigBuffer's), or 0. A pooled buffer that happens to
// look like one is harmless: it is left to the garbage collector instead
// of going back to the pool.
func (c *conn) bigPending() int {
	if len(c.in) == 0 {
		return 0
	}
	h, n, err := packet.ParseFixedHeader(c.in, c.srv.opts.MaxPacketSize)
	if err != nil {
		return 0
	}
	if total := n + h.Remaining; total >= bigPacket && cap(c.in) == total && len(c.in) <= total {
		return total
	}
	return 0
}

// ReadBuffer implements listener.DirectReader: the rest of a big packet is
// read into the packet's own buffer.
func (c *conn) ReadBuffer() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	// While paused, another goroutine may resume and consume c.in.
	if c.paused || c.isClosing() || c.state == stateClosed {
		return nil
	}
	if total := c.bigPending(); total > len(c.in) {
		return c.in[len(c.in):total]
	}
	return nil
}

// DataRead implements listener.DirectReader.
func (c *conn) DataRead(b []byte) {
	c.mu.Lock()
	if c.isClosing() || c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	if n := len(c.in); !c.paused && len(b) > 0 && n < cap(c.in) && &c.in[:n+1][n] == &b[0] {
		c.in = c.in[:n+len(b)]
		c.consume(nil)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	// Not where ReadBuffer pointed (it cannot happen while the loop is the
	// only reader): take the bytes as ordinary input.
	c.Data(b)
}

// parse handles every complete packet at the start of b and returns the
// incomplete remainder, and whether any packet was complete. owned says
// that b holds one packet in a buffer nobody reuses: a PUBLISH's message
// may keep it rather than copy it.
func (c *conn) parse(dec *packet.Decoder, b []byte, owned bool, big *bigBuf) (rest []byte, parsed bool) {
	// A held-back client's further packets wait in c.in (backpressure.go).
	for len(b) > 0 && !c.isClosing() && !c.paused && c.flags.Load()&flagHeldBack == 0 {
		h, n, err := packet.ParseFixedHeader(b, c.srv.opts.MaxPacketSize)
		if err == packet.ErrIncomplete {
			return b, parsed
		}
		if err != nil {
			c.fail(err)
			return nil, parsed
		}
		if len(b) < n+h.Remaining {
			return b, parsed
		}
		p, err := dec.Decode(h, b[n:n+h.Remaining])
		if c.version == 0 && dec.Version != 0 {
			c.version = dec.Version // CONNECT told us the protocol, even if it failed later
		}
		if err != nil {
			c.fail(err)
			return nil, parsed
		}
		b = b[n+h.Remaining:]
		parsed = true
		if pub, ok := p.(*packet.Publish); ok && owned && c.state == stateConnected {
			err = c.handlePublish(pub, true, big)
		} else {
			err = c.handle(p)
		}
		if err != nil {
			c.fail(err)
			return nil, parsed
		}
	}
	return b, parsed
}

// handle dispatches one decoded packet. An error is a protocol violation
// that closes the connection.
func (c *conn) handle(p packet.Packet) error {
	switch c.state {
	case stateNew:
		cp, ok := p.(*packet.Connect)
		if !ok {
			return violation(packet.ProtocolError, "first packet is %s, not CONNECT", p.Type()) // [MQTT-3.1.0-1]
		}
		return c.handleConnect(cp)
	case stateAuthenticating:
		ap, ok := p.(*packet.Auth)
		if !ok {
			return violation(packet.ProtocolError, "%s during authentication", p.Type()) // [MQTT-3.1.2-30] [MQTT-4.13.1-1] (v5)
		}
		return c.handleAuth(ap)
	}
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p, false, nil)
	case *packet.Ack:
		return c.handleAck(p)
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		// Behind any reply still waiting for the disk, so that a client can
		// use PINGREQ to learn that everything before it was answered.
		c.reply(&packet.Pingresp{}, 0) // [MQTT-3.12.4-1]
		return nil
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Auth:
		return c.handleAuth(p)
	case *packet.Connect:
		return violation(packet.ProtocolError, "second CONNECT") // [MQTT-3.1.0-2]
	default:
		return violation(packet.ProtocolError, "unexpected %s from a client", p.Type())
	}
}

// enhancedAuth is what an MQTT 5 authentication exchange needs.
type enhancedAuth struct {
	// pending holds the accepted CONNECT while the exchange runs; x is the
	// exchange (also for re-authentication).
	pending *connectParams
	x       auth.Exchange
	// method and username are how the client authenticated.
	method, username string
}

// connRates are the buckets of a client's rate limits: PUBLISH messages
// and bytes, SUBSCRIBE/UNSUBSCRIBE packets.
type connRates struct {
	pub, pubBytes, control bucket
}

func (c *conn) rateBuckets() *connRates {
	if c.rates == nil {
		c.rates = new(connRates)
	}
	return c.rates
}

// protocolError is a client's breach of the protocol: the connection is
// closed, with the reason code in an MQTT 5 DISCONNECT, and logged.
type protocolError struct {
	code   packet.ReasonCode
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func violation(code packet.ReasonCode, format string, args ...any) error {
	return &protocolError{code: code, reason: fmt.Sprintf(format, args...)}
}

// fail closes the connection because of err, a client's fault. An MQTT 5
// client is told why: in CONNACK if CONNECT was the problem, otherwise in
// DISCONNECT. [MQTT-4.13.1-1]
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
	c.noteClose(code, false, "", err)
	switch {
	case c.state == stateNew && code == packet.UnsupportedProtocolVersion:
		// Answer in a form every protocol level reads. [MQTT-3.1.2-2]
		c.version = packet.V311
		c.appendPacket(&packet.Connack{Code: packet.ConnRefusedUnacceptableProtocol})
	case c.state == stateNew && c.version == packet.V5:
		c.appendPacket(&packet.Connack{Code: code, Props: c.reasonProps(err.Error())})
	default:
		c.appendDisconnect(code, err.Error())
	}
	c.shutdown()
}

// disconnect closes the connection for a reason of the server's own (takeover,
// keep alive, shutdown), telling an MQTT 5 client why. [MQTT-3.14.0-1]
func (c *conn) disconnect(code packet.ReasonCode, reason string) {
	if c.isClosing() {
		return
	}
	c.noteClose(code, false, reason, nil)
	c.appendDisconnect(code, reason)
	c.shutdown()
}

// appendDisconnect queues an MQTT 5 DISCONNECT for a connected client;
// earlier protocol levels have no server DISCONNECT and just see the
// connection close. Safe from any goroutine.
func (c *conn) appendDisconnect(code packet.ReasonCode, reason string) {
	if c.flags.Load()&flagConnectedV5 == 0 {
		return
	}
	c.appendPacket(&packet.Disconnect{Code: code, Props: c.reasonProps(reason)})
}

// reasonProps carries a reason string when the client allows it. The
// decision is per packet type: CONNACK and DISCONNECT always may.
func (c *conn) reasonProps(reason string) packet.Properties {
	var p packet.Properties
	if reason != "" && len(reason) < 1024 {
		p.ReasonString = reason
		p.Mark(packet.PropReasonString)
	}
	return p
}

// shutdown closes the connection. The session is released at once, so
// messages published from now on queue for the client's return instead of
// going to a socket about to close; the will is handled as the session's
// expiry and the will delay say. The driver then writes what is pending
// (a final CONNACK or DISCONNECT), half-closes and drains, so the client
// reads those bytes rather than a reset.
func (c *conn) shutdown() {
	if c.flags.Or(flagClosing)&flagClosing != 0 {
		return
	}
	c.finish()
	c.nc.Close()
}

// finish releases the session and hands over the armed will. The first
// path that ends the connection runs it; Closed runs it again for the case
// where the session was attached while the connection was already closing.
func (c *conn) finish() {
	var will *message
	if c.flags.Or(flagWillDone)&flagWillDone == 0 {
		will = c.will.Swap(nil)
	}
	c.srv.release(c, will, c.willDelay)
}

func (c *conn) handleDisconnect(p *packet.Disconnect) error {
	if c.version == packet.V5 {
		ss := c.sess.Load()
		if p.Props.Has(packet.PropSessionExpiry) {
			// A session that was to end with the connection cannot be
			// extended on the way out. [MQTT-3.14.2-2]
			if !ss.setExpiry(c.srv.opts.sessionExpiry(p.Props.SessionExpiry)) {
				return violation(packet.ProtocolError, "DISCONNECT sets a session expiry interval after CONNECT set 0")
			}
		}
		if p.Code != packet.Success {
			// Only a normal disconnection discards the will: 0x04 asks for
			// it, and an error code leaves it to be published. [MQTT-3.1.2-10]
			c.srv.log.Debug("client disconnected", "client", c.clientID(), "code", byte(p.Code))
			c.noteClose(p.Code, true, "", nil)
			c.shutdown()
			return nil
		}
	}
	// A normal DISCONNECT discards the will. [MQTT-3.1.2-10] [MQTT-3.14.4-3]
	c.will.Store(nil)
	c.srv.log.Debug("client disconnected", "client", c.clientID(), "code", byte(p.Code))
	c.noteClose(p.Code, true, "", nil)
	c.shutdown()
	return nil
}

// clientID is safe from any goroutine: it is set once the session is open.
func (c *conn) clientID() string {
	if id := c.id.Load(); id != nil {
		return *id
	}
	return ""
}

// Output implements listener.Endpoint: it hands the driver every pending byte.
func (c *conn) Output() []byte {
	c.outMu.Lock()
	b := c.out
	c.out = nil
	c.holdLocked(len(b))
	lent := c.takeLentLocked()
	c.outMu.Unlock()
	if lent != nil {
		b = flatten(b, lent)
	}
	return b
}

// flatten returns out with the lent payloads copied in where they go, for
// a driver that takes output in one piece.
func flatten(out []byte, lent []lentPayload) []byte {
	n := len(out)
	for _, l := range lent {
		n += len(l.m.Payload)
	}
	b := bufpool.Get(n)
	prev := 0
	for _, l := range lent {
		b = append(b, out[prev:l.at]...)
		b = append(b, l.m.Payload...)
		prev = l.at
	}
	b = append(b, out[prev:]...)
	bufpool.Put(out)
	unrefLent(lent)
	return b
}

// Closed implements listener.Endpoint: the connection is gone.
func (c *conn) Closed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return
	}
	wasOpen := c.state != stateNew
	if wasOpen && c.srv.opts.Hooks.OnDisconnect != nil {
		c.noteClose(0, false, "", lostConnection(err))
	}
	c.state = stateClosed
	c.srv.conns.remove(c)
	c.srv.connCount.Add(-1)
	c.ln.conns.Add(-1)
	if c.flags.Load()&flagHeldBack != 0 {
		c.srv.forgetHeldBack(c)
	}
	if c.in != nil {
		bufpool.Put(c.in)
		c.in, c.inBig = nil, nil
	}
	c.outMu.Lock()
	c.outClosed = true
	if c.out != nil {
		bufpool.Put(c.out)
		c.out = nil
	}
	unrefLent(c.takeLentLocked())
	c.outMu.Unlock()
	if !wasOpen {
		return
	}
	if err != nil && !c.isClosing() && c.srv.debugging() {
		c.srv.log.Debug("connection lost", "client", c.clientID(), "remote", c.nc.RemoteAddr().String(), "err", err)
	}
	c.flags.Or(flagClosing)
	c.finish()
}

// appendPacket encodes p onto the outbound buffer without flushing.
func (c *conn) appendPacket(p packet.Packet) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.outClosed {
		return
	}
	if c.maxOut > 0 && !c.fits(p) {
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

// fits keeps a packet within the client's Maximum Packet Size: it drops the
// Reason String and User Properties if that is enough, and otherwise
// reports false (the packet is not sent). [MQTT-3.1.2-25] (v5)
func (c *conn) fits(p packet.Packet) bool {
	if packet.Len(p, c.version) <= int(c.maxOut) {
		return true
	}
	var props *packet.Properties
	switch p := p.(type) {
	case *packet.Connack:
		props = &p.Props
	case *packet.Disconnect:
		props = &p.Props
	case *packet.Suback:
		props = &p.Props
	case *packet.Unsuback:
		props = &p.Props
	case *packet.Ack:
		props = &p.Props
	case *packet.Auth:
		props = &p.Props
	}
	if props != nil {
		props.Clear(packet.PropReasonString)
		props.Clear(packet.PropUser)
		if packet.Len(p, c.version) <= int(c.maxOut) {
			return true
		}
	}
	c.srv.log.Debug("packet larger than the client's maximum packet size not sent", "client", c.clientID(),
		"type", p.Type().String(), "max", c.maxOut)
	return false
}

// writePacket appends p to the outbound buffer and asks the driver to flush.
func (c *conn) writePacket(p packet.Packet) {
	c.appendPacket(p)
	c.nc.Flush()
}

// ack sends an acknowledgement of the client's packet once commit group
// `group` is durable (0: nothing to wait for), keeping replies in order.
func (c *conn) ack(kind packet.Type, pid uint16, code packet.ReasonCode, group uint64) {
	c.outMu.Lock()
	if group == 0 && len(c.deferredLocked()) == 0 {
		c.outMu.Unlock()
		c.writeAck(kind, pid, code)
		return
	}
	if !c.outClosed {
		r := c.outRareLocked()
		r.deferred = append(r.deferred, deferredReply{group: c.deferGroup(group), ack: packet.Ack{Kind: kind, PacketID: pid, Code: code}})
	}
	c.outMu.Unlock()
}

// reply sends p (SUBACK, UNSUBACK) once commit group `group` is durable.
func (c *conn) reply(p packet.Packet, group uint64) {
	c.outMu.Lock()
	if group == 0 && len(c.deferredLocked()) == 0 {
		c.outMu.Unlock()
		c.writePacket(p)
		return
	}
	if !c.outClosed {
		r := c.outRareLocked()
		r.deferred = append(r.deferred, deferredReply{group: c.deferGroup(group), p: p})
	}
	c.outMu.Unlock()
}

// deferGroup is the group a reply waits for: its own, or that of the reply
// ahead of it if later. outMu is held.
func (c *conn) deferGroup(group uint64) uint64 {
	if d := c.deferredLocked(); len(d) > 0 {
		group = max(group, d[len(d)-1].group)
	}
	return group
}

// committed implements commitWaiter: replies waiting for group g (and
// earlier) go out. If the commit failed, an MQTT 5 client is told with a
// failure code (0x97 when the disk is full); an MQTT 3 client, which has no
// way to be told, is disconnected and will publish again.
func (c *conn) committed(g uint64, err error) {
	c.outMu.Lock()
	n := 0
	failed, failedRelease := false, false
	deferred := c.deferredLocked()
	for n < len(deferred) && deferred[n].group <= g {
		r := &deferred[n]
		n++
		if c.outClosed {
			continue
		}
		if err != nil && r.group == g {
			failed = true
			if r.p == nil && r.ack.Kind == packet.PUBREL {
				// No PUBREL for a release the store does not have: the
				// client is disconnected instead, and the QoS 2 flow starts
				// over when it returns.
				failedRelease = true
				continue
			}
			if c.version != packet.V5 {
				continue
			}
			code := packet.UnspecifiedError
			if errors.Is(err, store.ErrFull) {
				code = packet.QuotaExceeded
			}
			switch p := r.p.(type) {
			case nil:
				r.ack.Code = code
			case *packet.Suback:
				for i := range p.Codes {
					p.Codes[i] = code
				}
			case *packet.Unsuback:
				for i := range p.Codes {
					p.Codes[i] = code
				}
			}
		}
		if c.out == nil {
			c.out = bufpool.Get(512)
		}
		var out []byte
		var encErr error
		if r.p != nil {
			out, encErr = packet.Append(c.out, r.p, c.version)
		} else {
			out, encErr = packet.AppendAck(c.out, &r.ack, c.version)
		}
		if encErr == nil {
			c.out = out
		}
	}
	if n > 0 {
		clear(deferred[:n])
		c.rare.deferred = deferred[n:]
		if len(c.rare.deferred) == 0 {
			c.rare.deferred = nil
		}
	}
	c.outMu.Unlock()
	if n > 0 {
		c.nc.Flush()
	}
	switch {
	case failedRelease:
		c.srv.log.Warn("closing a connection: a QoS 2 release could not be stored", "client", c.clientID(), "err", err)
		code := packet.UnspecifiedError
		if errors.Is(err, store.ErrFull) {
			code = packet.QuotaExceeded
		}
		c.disconnect(code, "the broker cannot store right now")
	case failed && c.version != packet.V5:
		c.srv.log.Warn("closing an MQTT 3 connection: its message could not be stored", "client", c.clientID(), "err", err)
		c.noteClose(packet.UnspecifiedError, false, "", commitError(err))
		c.shutdown()
	}
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

// writePublish appends one delivery. For an MQTT 5 client it adds what is
// particular to this delivery: the remaining expiry, the subscription
// identifiers and a topic alias. It reports whether the message was
// written, and if not why (writeResult). Encoding straight into the
// outbound buffer costs one copy of the payload and no allocation.
func (c *conn) writePublish(d *delivery, pid uint16, dup bool) writeResult {
	m := d.msg
	if c.version != packet.V5 || (m.Props == nil && m.Expiry.IsZero() && len(d.subIDs) == 0 && c.aliasMax == 0) {
		return c.writePlainPublish(d, pid, dup)
	}
	p := packet.Publish{Topic: m.Topic, Payload: m.Payload, QoS: d.qos, PacketID: pid, Dup: dup, Retain: d.retain}
	if m.Props != nil {
		p.Props = *m.Props
	}
	if !m.Expiry.IsZero() {
		p.Props.MessageExpiry = m.remaining(time.Now()) // [MQTT-3.3.2-6]
		p.Props.Mark(packet.PropMessageExpiry)
	}
	p.Props.SubscriptionIDs = d.subIDs
	c.outMu.Lock()
	if c.outClosed || (d.qos == 0 && !d.retain && c.outboundFullLocked(publishSize(m))) {
		return c.skipLocked(m)
	}
	newAlias := uint16(0)
	if c.aliasMax > 0 {
		if a, ok := c.outAliases[m.Topic]; ok {
			p.Topic = ""
			p.Props.TopicAlias = a
			p.Props.Mark(packet.PropTopicAlias)
		} else if len(c.outAliases) < int(c.aliasMax) {
			newAlias = uint16(len(c.outAliases) + 1)
			p.Props.TopicAlias = newAlias
			p.Props.Mark(packet.PropTopicAlias)
		}
	}
	if c.maxOut > 0 && packet.PublishLen(&p, c.version) > int(c.maxOut) {
		return c.tooLargeLocked()
	}
	if newAlias != 0 {
		if c.outAliases == nil {
			c.outAliases = make(map[string]uint16)
		}
		c.outAliases[strings.Clone(m.Topic)] = newAlias // m's bytes are recycled
	}
	out, err := packet.AppendPublish(c.outBufLocked(m, false), &p, c.version)
	c.out = out
	c.outMu.Unlock()
	if err != nil {
		c.encodingFailed(m, err)
		return written
	}
	c.nc.Flush()
	return written
}

// writePlainPublish is writePublish for a delivery that carries no
// properties (every MQTT 3 delivery, most MQTT 5 ones): the common case,
// encoded without building a full packet.Publish.
func (c *conn) writePlainPublish(d *delivery, pid uint16, dup bool) writeResult {
	m := d.msg
	h := packet.PublishHeader{Topic: m.Topic, Payload: m.Payload, QoS: d.qos, PacketID: pid, Dup: dup, Retain: d.retain}
	c.outMu.Lock()
	if c.outClosed || (d.qos == 0 && !d.retain && c.outboundFullLocked(publishSize(m))) {
		return c.skipLocked(m)
	}
	// The exact size is only worked out when a rough upper bound exceeds
	// the client's maximum.
	if c.maxOut > 0 && 2+len(m.Topic)+len(m.Payload)+2+1+5 > int(c.maxOut) {
		full := packet.Publish{Topic: m.Topic, Payload: m.Payload, QoS: d.qos, PacketID: pid, Dup: dup}
		if packet.PublishLen(&full, c.version) > int(c.maxOut) {
			return c.tooLargeLocked()
		}
	}
	h.PayloadFollows = len(m.Payload) >= minLent
	out, err := packet.AppendPublishHeader(c.outBufLocked(m, h.PayloadFollows), &h, c.version)
	c.out = out
	if h.PayloadFollows && err == nil {
		c.lendLocked(m)
	}
	c.outMu.Unlock()
	if err != nil {
		c.encodingFailed(m, err)
		return written
	}
	c.nc.Flush()
	return written
}

// minLent is the payload size from which a PUBLISH's output refers to the
// payload instead of copying it (for a driver that writes pieces, see
// OutputPieces): below it a copy costs less than the bookkeeping.
const minLent = 16 << 10

// lendLocked makes m's payload the next part of the output, which holds a
// reference to m until the driver has written it.
func (c *conn) lendLocked(m *message) {
	m.ref()
	r := c.outRareLocked()
	r.lent = append(r.lent, lentPayload{at: len(c.out), m: m})
	r.lentBytes += len(m.Payload)
}

// pendingLocked is how many bytes wait to be written to the client: in the
// outbound buffer, lent to it, or taken by the driver and not yet written.
func (c *conn) pendingLocked() int {
	n := len(c.out) + int(c.held.Load())
	if c.rare != nil {
		n += c.rare.lentBytes
	}
	return n
}

// holdLocked records that the driver takes the output, out bytes of it
// plus what is lent, before takeLentLocked.
func (c *conn) holdLocked(out int) {
	if c.rare != nil {
		out += c.rare.lentBytes
	}
	c.held.Store(uint32(min(out, math.MaxUint32)))
}

// Written implements listener.WriteWatcher: n more bytes of the output
// taken are in the socket. Only the driver's writer calls Output and
// Written, one at a time, so the load and store lose no update; deliveries
// only read held.
func (c *conn) Written(n int) {
	h := c.held.Load()
	c.held.Store(h - uint32(min(int64(h), int64(n))))
}

// outboundFullLocked reports whether a QoS 0 delivery of about size bytes
// would take what waits for the client past Limits.MaxOutboundBytes. Into
// an empty output, one message goes whatever its size.
func (c *conn) outboundFullLocked(size int) bool {
	bound := c.srv.opts.Limits.MaxOutboundBytes
	if bound < 0 {
		return false
	}
	p := c.pendingLocked()
	return p > 0 && p+size > bound
}

// takeLentLocked takes the payloads lent to the output so far.
func (c *conn) takeLentLocked() []lentPayload {
	if c.rare == nil || len(c.rare.lent) == 0 {
		return nil
	}
	lent := c.rare.lent
	c.rare.lent, c.rare.lentBytes = nil, 0
	return lent
}

// OutputPieces implements listener.PieceWriter: lent payloads are written
// from where they are.
func (c *conn) OutputPieces() (buf []byte, pieces [][]byte, done func()) {
	c.outMu.Lock()
	buf = c.out
	c.out = nil
	c.holdLocked(len(buf))
	lent := c.takeLentLocked()
	c.outMu.Unlock()
	if lent == nil {
		return buf, nil, nil
	}
	pieces = make([][]byte, 0, 2*len(lent)+1)
	prev := 0
	for _, l := range lent {
		pieces = append(pieces, buf[prev:l.at], l.m.Payload)
		prev = l.at
	}
	pieces = append(pieces, buf[prev:])
	return buf, pieces, func() { unrefLent(lent) }
}

func unrefLent(lent []lentPayload) {
	for _, l := range lent {
		l.m.unref()
	}
}

// skipLocked releases outMu for a delivery of m that is not written: the
// connection is gone, or it is QoS 0 to a client that does not read (QoS 1
// and 2 wait in the session's queue instead, bounded by the in-flight
// window), which is counted and logged. The callers test for these
// inline: this is the uncommon path.
func (c *conn) skipLocked(m *message) writeResult {
	if c.outClosed {
		c.outMu.Unlock()
		return notWritten
	}
	pending := c.pendingLocked()
	c.outMu.Unlock()
	n := c.srv.stats.droppedQoS0Slow.Add(1)
	if c.srv.mayWarnDropped() {
		c.srv.log.Warn("client not reading: QoS 0 message dropped", "client", c.clientID(), "topic", m.Topic,
			"pending_bytes", pending, "max_outbound_bytes", c.srv.opts.Limits.MaxOutboundBytes,
			"dropped_total", n, "note", dropNote)
	}
	return skippedSlow
}

// publishSize is about what a PUBLISH of m adds to the output: its topic
// and payload, and at most 9 bytes of header and packet id.
func publishSize(m *message) int { return len(m.Topic) + len(m.Payload) + 9 }

// tooLargeLocked counts a delivery larger than the client accepts and
// releases outMu; its result is writePublish's.
func (c *conn) tooLargeLocked() writeResult {
	c.outMu.Unlock()
	c.srv.stats.droppedTooLarge.Add(1)
	return tooLarge
}

// writeResult is what became of a delivery handed to writePublish.
type writeResult uint8

const (
	written writeResult = iota
	// notWritten: the connection is closed. A QoS 1 or 2 delivery stays
	// in flight for the next one; a QoS 0 one is lost.
	notWritten
	// skippedSlow: QoS 0 to a client with more than maxPendingOutput
	// unread, dropped.
	skippedSlow
	// tooLarge: larger than the client's Maximum Packet Size, dropped.
	tooLarge
)

// outBufLocked returns the output buffer to append m's PUBLISH to, with
// or without its payload, with room for it (grown through bufpool).
func (c *conn) outBufLocked(m *message, lent bool) []byte {
	n := len(m.Topic) + 16
	if !lent {
		n += len(m.Payload)
	}
	if c.out == nil {
		c.out = bufpool.Get(n)
	} else {
		c.out = bufpool.Grow(c.out, n)
	}
	return c.out
}

// encodingFailed logs a PUBLISH that could not be encoded (a bug: the
// message was checked when it arrived).
func (c *conn) encodingFailed(m *message, err error) {
	c.srv.log.Error("encoding PUBLISH", "client", c.clientID(), "topic", m.Topic, "err", err)
}

var (
	_ listener.Endpoint     = (*conn)(nil)
	_ listener.PieceWriter  = (*conn)(nil)
	_ listener.WriteWatcher = (*conn)(nil)
)
