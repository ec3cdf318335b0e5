package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/packet"
)

// conn is the protocol engine of one network connection. It is sans-I/O:
// the driver hands it bytes (Data) and takes its output (Output); it never
// touches a socket. Its life reads top to bottom here and in connect.go:
// CONNECT (and, in MQTT 5, an authentication exchange), then packets until
// DISCONNECT, a protocol violation, a timeout, a takeover or the network
// ends it. What the client sends is read and dispatched in conn_in.go;
// what goes to the client is written in conn_out.go; what becomes of the
// session when the connection ends is in session_life.go.
//
// Locking: mu serialises Data and Closed and guards the input side and the
// protocol state. outMu guards the outbound buffer and what is encoded with
// it (outbound topic aliases); sessions append to it from other goroutines.
// docs/LOCKING.md gives the order.
type conn struct {
	nc listener.Conn
	// ln is the listener that accepted the connection; ln.srv its server
	// (not a field of its own: a conn is most of an idle connection's cost).
	ln *listenerState

	// The fields are ordered to leave no padding: a conn is most of an idle
	// connection's cost. mu guards the connection's state and input; outMu
	// its output.
	mu    sync.Mutex
	outMu sync.Mutex

	in bufpool.Slim // the start of a packet that has not fully arrived
	// sess is set once, at CONNECT; atomic because the path that ends a
	// connection may run on another goroutine (timeouts, takeover).
	sess atomic.Pointer[session]
	// inR holds the input state few connections need (a will, enhanced
	// authentication, topic aliases, a big packet's buffer), made on first
	// use under mu (inRareMake) and kept. Atomic because the path that ends
	// a connection takes the will from any goroutine.
	inR atomic.Pointer[inRare]
	// client is who the client is, for the authenticator and authorizer.
	client *auth.Client

	// deadline (unix nanoseconds) after which the sweeper closes the
	// connection: the CONNECT timeout first, then 1.5 × keep alive after the
	// last bytes read. Zero means none. [MQTT-3.1.2-24]
	deadline atomic.Int64
	// partial (unix ns) is when an incomplete packet must have finished
	// arriving; 0 when none is pending. [slowloris]
	partial atomic.Int64
	// connectedAt (unix ns) is when CONNECT was accepted, for the log line
	// of the connection's end. Under mu.
	connectedAt int64

	// Negotiated at CONNECT, read by deliveries under the session lock.
	maxOut uint32 // the client's Maximum Packet Size; 0 when it set none

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
	// wheelPos is the connection's place on the sweep's wheel (connset.go),
	// under the shard's lock: its slot in the top 8 bits (noSlot for none),
	// its index in the slot below. One word: the struct has no byte to spare.
	wheelPos uint32

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
	// cleanStart is the accepted CONNECT's, for the admin API (admin.go):
	// set before the session holds the connection, never changed after.
	cleanStart bool

	out bufpool.Slim // what waits to be taken by the driver (Output)
	// rare holds output state few connections need, made on first use
	// (outRareLocked). Under outMu.
	rare *outRare
}

// inRare is the input state few connections need: apart, so that conn
// stays in a smaller size class. Its fields are under mu, but for will.
type inRare struct {
	// will is published when the connection ends without DISCONNECT (or
	// with MQTT 5's DISCONNECT 0x04), after its delay.
	will atomic.Pointer[armedWill]
	// big is the pooled buffer conn.in holds while a big packet is
	// assembled in a buffer of its own (bigBuffer); nil otherwise.
	big *bigBuf
	// piped is the big PUBLISH being read into a pipe (piped.go), or nil;
	// peek is the small buffer the next read goes to after one, so that
	// another's start is not read whole into memory (ReadBuffer).
	piped *pipedIn
	peek  []byte
	// ea is the state of MQTT 5 enhanced authentication, for the clients
	// that use it.
	ea *enhancedAuth
	// aliases maps the client's topic aliases to topics (MQTT 5).
	aliases map[uint16]string
	// subWaits is the cluster work the SUBACK being made waits for
	// (cluster.go), so that every node has its filters first.
	subWaits []*Pending
	// rates are the client's rate-limit buckets, made on first use.
	rates *connRates
}

// inRareMake returns c.inR, made if need be. mu is held: only its
// holders make it, so no two can.
func (c *conn) inRareMake() *inRare {
	r := c.inR.Load()
	if r == nil {
		r = new(inRare)
		c.inR.Store(r)
	}
	return r
}

// eaState is the enhanced authentication state, nil for none. mu is held.
func (c *conn) eaState() *enhancedAuth {
	if r := c.inR.Load(); r != nil {
		return r.ea
	}
	return nil
}

// inBig returns the pooled buffer c.in is, for a big packet. mu is held.
func (c *conn) inBig() *bigBuf {
	if r := c.inR.Load(); r != nil {
		return r.big
	}
	return nil
}

// setInBig records the pooled buffer c.in now is, or none. mu is held.
func (c *conn) setInBig(bb *bigBuf) {
	if r := c.inR.Load(); r != nil {
		r.big = bb
	} else if bb != nil {
		c.inRareMake().big = bb
	}
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
	// flagOutWaited: publishers wait for the client's output to drain;
	// flagNotReading: the client's socket took nothing for a while when
	// they did, and QoS 0 to it past the bound is dropped (outwait.go).
	flagOutWaited
	flagNotReading
	// flagBridge: the client is a Mosquitto bridge (packet.Connect.Bridge).
	flagBridge
	// flagPiping: a big PUBLISH is being read into a pipe (piped.go), so
	// that the driver's ReadPipe, asked before every read, takes no lock
	// otherwise.
	flagPiping
)

// isClosing reports whether the engine decided to close the connection.
func (c *conn) isClosing() bool { return c.flags.Load()&flagClosing != 0 }

const (
	stateNew            connState = iota // waiting for CONNECT
	stateAuthenticating                  // MQTT 5: CONNECT received, AUTH exchange running
	stateConnected                       // CONNECT accepted
	stateClosed                          // Closed ran
)

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
	c.ln.srv.log.Debug("closing connection: protocol violation",
		"remote", c.nc.RemoteAddr().String(), "client", c.clientID(), "reason", err.Error(), "code", byte(code))
	c.ln.srv.stats.protocolErrors.Add(1)
	c.noteClose(closeProtocolError, code, "", err)
	switch {
	case c.state == stateNew && code == packet.UnsupportedProtocolVersion:
		// Answer in a form every protocol level reads. [MQTT-3.1.2-2]
		c.version = packet.V311
		c.ln.srv.countConnack(code)
		c.appendPacket(&packet.Connack{Code: packet.ConnRefusedUnacceptableProtocol})
	case c.state == stateNew && c.version == packet.V5:
		c.ln.srv.countConnack(code)
		c.appendPacket(&packet.Connack{Code: code, Props: c.reasonProps(err.Error())})
	default:
		c.appendDisconnect(code, err.Error())
	}
	c.shutdown()
}

// disconnect closes the connection for a reason of the server's own (takeover,
// keep alive, shutdown), telling an MQTT 5 client why. [MQTT-3.14.0-1]
func (c *conn) disconnect(code packet.ReasonCode, reason string) {
	c.disconnectAs(closeReasonOf(code), code, reason)
}

// disconnectAs is disconnect with the reason its log line gives, for codes
// that several reasons share.
func (c *conn) disconnectAs(why closeReason, code packet.ReasonCode, reason string) {
	if c.isClosing() {
		return
	}
	c.noteClose(why, code, reason, nil)
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
	var delay uint32
	if c.flags.Or(flagWillDone)&flagWillDone == 0 {
		if r := c.inR.Load(); r != nil {
			if w := r.will.Swap(nil); w != nil {
				will, delay = w.msg, w.delay
			}
		}
	}
	c.ln.srv.release(c, will, delay)
}

// armedWill is a connection's will with its Will Delay Interval in
// seconds: apart from conn, which most connections make without a will.
type armedWill struct {
	msg   *message
	delay uint32
}

// clientID is safe from any goroutine: it is set once the session is open.
func (c *conn) clientID() string {
	if ss := c.sess.Load(); ss != nil {
		return ss.clientID
	}
	return ""
}

// Closed implements listener.Endpoint: the connection is gone.
func (c *conn) Closed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return
	}
	wasOpen := c.state != stateNew
	connected := c.state == stateConnected
	if wasOpen {
		c.noteEnd(closeConnectionLost, 0)
		if c.ln.srv.opts.Hooks.OnDisconnect != nil {
			c.noteClose(closeConnectionLost, 0, "", lostConnection(err))
		}
	}
	c.state = stateClosed
	c.ln.srv.conns.remove(c)
	c.ln.srv.connCount.Add(-1)
	c.ln.conns.Add(-1)
	if c.flags.Load()&flagHeldBack != 0 {
		c.ln.srv.forgetHeldBack(c)
	}
	if c.flags.Load()&flagOutWaited != 0 {
		c.ln.srv.endOutWait(c, false) // its publishers wait for it no longer
	}
	if c.in.Bytes() != nil {
		bufpool.Put(c.in.Bytes())
		c.in.Set(nil)
		c.setInBig(nil)
	}
	c.dropPiped()
	c.dropPeek()
	c.outMu.Lock()
	c.outClosed = true
	if c.out.Bytes() != nil {
		bufpool.Put(c.out.Bytes())
		c.out.Set(nil)
	}
	unrefLent(c.takeLentLocked())
	c.outMu.Unlock()
	if !wasOpen {
		return
	}
	if connected {
		c.logDisconnected(err)
	}
	c.flags.Or(flagClosing)
	c.finish()
}

var (
	_ listener.Endpoint     = (*conn)(nil)
	_ listener.PieceWriter  = (*conn)(nil)
	_ listener.SpliceReader = (*conn)(nil)
	_ listener.DirectReader = (*conn)(nil)
	_ listener.WriteWatcher = (*conn)(nil)
)
