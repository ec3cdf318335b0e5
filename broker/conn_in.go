package broker

import (
	"sync"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/packet"
)

// The input half of a connection: what the client sends. The bytes the
// driver hands over (Data, DataRead) are cut into packets and decoded
// under mu, and each packet is dispatched by type (handle) to connect.go,
// publish.go, subscribe.go and the rest.

var decoders = sync.Pool{New: func() any { return new(packet.Decoder) }}

// Data implements listener.Endpoint: it parses every complete packet in
// the bytes read and keeps the start of an incomplete one.
func (c *conn) Data(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosing() || c.state == stateClosed {
		return
	}
	if c.piping() != nil {
		// The rest of a piped packet came another way than ReadPipe said
		// (a pause came between): it is assembled in memory from here.
		c.unpipe()
	}
	if c.paused {
		c.statShard().in.bytes.Add(uint64(len(b)))
		// Authentication runs elsewhere: hold what the client sends
		// meanwhile (it may send before CONNACK), within reason.
		if len(c.in.Bytes())+len(b) > c.ln.srv.opts.MaxPacketSize+64<<10 {
			c.fail(violation(packet.ProtocolError, "%d bytes sent before CONNACK", len(c.in.Bytes())+len(b)))
			return
		}
		if c.in.Bytes() == nil {
			c.in.Set(bufpool.Get(len(b)))
		}
		c.in.Set(append(c.in.Bytes(), b...))
		return
	}
	c.consume(b, len(b))
}

// consume parses what was buffered followed by b, and keeps the start of an
// incomplete packet. Keep alive counts complete packets: a client that
// trickles bytes does not stay alive by them. [MQTT-3.1.2-24] read is
// the number of bytes just read (in b, or in place at the end of c.in),
// counted with the packets in one addition to the statistics (stats.go).
func (c *conn) consume(b []byte, read int) {
	var t tally
	dec := decoders.Get().(*packet.Decoder)
	dec.Version = c.version
	var rest []byte
	var parsed bool
	total := c.bigPending()
	if total > 0 {
		// The rest of a big packet goes into its own buffer, and no further
		// (DataRead may have put it there already).
		take := min(total-len(c.in.Bytes()), len(b))
		c.in.Set(append(c.in.Bytes(), b[:take]...))
		b = b[take:]
		if len(c.in.Bytes()) == total {
			own, big := c.in.Bytes(), c.inBig()
			c.in.Set(nil)
			c.setInBig(nil)
			if big != nil && &big.b[0] != &own[0] {
				big = nil // not the buffer it was made for: not recycled
			}
			_, parsed = c.parse(dec, own, true, big, &t)
		}
	}
	switch {
	case len(c.in.Bytes()) == 0:
		if len(b) == 0 {
			break
		}
		var more bool
		rest, more = c.parse(dec, b, false, nil, &t)
		parsed = parsed || more
		if len(rest) > 0 && !c.isClosing() && !c.startPiped(rest) {
			in, bb := bigBuffer(rest, c.ln.srv.opts.MaxPacketSize)
			if in == nil {
				in = append(bufpool.Get(len(rest)), rest...)
			}
			c.in.Set(in)
			c.setInBig(bb)
		}
	case total > 0:
		// Still assembling the big packet: b went into it.
	default:
		c.in.Set(append(c.in.Bytes(), b...))
		c.setInBig(nil)
		var more bool
		rest, more = c.parse(dec, c.in.Bytes(), false, nil, &t)
		parsed = parsed || more
		if len(rest) == 0 || c.isClosing() || c.startPiped(rest) {
			bufpool.Put(c.in.Bytes())
			c.in.Set(nil)
		} else if big, bb := bigBuffer(rest, c.ln.srv.opts.MaxPacketSize); big != nil {
			bufpool.Put(c.in.Bytes())
			c.in.Set(big)
			c.setInBig(bb)
		} else {
			n := copy(c.in.Bytes(), rest)
			c.in.Set(c.in.Bytes()[:n])
		}
	}
	decoders.Put(dec)
	c.statShard().addIn(&t, read)
	if c.isClosing() {
		return
	}
	var now time.Time
	if parsed && c.state == stateConnected && c.keepAliveMs > 0 {
		now = time.Now()
		c.deadline.Store(c.keepAliveDeadline(now))
	}
	switch {
	case (len(c.in.Bytes()) == 0 && c.piping() == nil) || c.paused:
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
	return now.Add(c.ln.srv.opts.Limits.IncompletePacketTimeout).UnixNano()
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
	if len(c.in.Bytes()) == 0 {
		return 0
	}
	h, n, err := packet.ParseFixedHeader(c.in.Bytes(), c.ln.srv.opts.MaxPacketSize)
	if err != nil {
		return 0
	}
	if total := n + h.Remaining; total >= bigPacket && cap(c.in.Bytes()) == total && len(c.in.Bytes()) <= total {
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
	if total := c.bigPending(); total > len(c.in.Bytes()) {
		return c.in.Bytes()[len(c.in.Bytes()):total]
	}
	if r := c.inR.Load(); r != nil && r.peek != nil && len(c.in.Bytes()) == 0 && r.piped == nil {
		return r.peek
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
	if n := len(c.in.Bytes()); !c.paused && len(b) > 0 && n < cap(c.in.Bytes()) && &c.in.Bytes()[:n+1][n] == &b[0] {
		c.in.Set(c.in.Bytes()[:n+len(b)])
		c.consume(nil, len(b))
		c.mu.Unlock()
		return
	}
	if r := c.inR.Load(); r != nil && r.peek != nil && len(b) > 0 && &r.peek[0] == &b[0] {
		c.peeked(b)
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
// may keep it rather than copy it. Each packet decoded is counted in t.
func (c *conn) parse(dec *packet.Decoder, b []byte, owned bool, big *bigBuf, t *tally) (rest []byte, parsed bool) {
	// A held-back client's further packets wait in c.in (backpressure.go).
	for len(b) > 0 && !c.paused && c.flags.Load()&(flagClosing|flagHeldBack) == 0 {
		h, n, err := packet.ParseFixedHeader(b, c.ln.srv.opts.MaxPacketSize)
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
		t.count(b[0])
		b = b[n+h.Remaining:]
		parsed = true
		if pub, ok := p.(*packet.Publish); ok && owned && c.state == stateConnected {
			err = c.handlePublish(pub, true, big, t)
		} else {
			err = c.handle(p, t)
		}
		if err != nil {
			c.fail(err)
			return nil, parsed
		}
	}
	return b, parsed
}

// handle dispatches one decoded packet. An error is a protocol violation
// that closes the connection. t is the tally of the read it came in (nil
// when it is handled again later).
func (c *conn) handle(p packet.Packet, t *tally) error {
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
		return c.handlePublish(p, false, nil, t)
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

// rateBuckets returns the client's buckets, made on first use. mu is held.
func (c *conn) rateBuckets() *connRates {
	r := c.inRareMake()
	if r.rates == nil {
		r.rates = new(connRates)
	}
	return r.rates
}

func (c *conn) handleDisconnect(p *packet.Disconnect) error {
	if c.version == packet.V5 {
		ss := c.sess.Load()
		if p.Props.Has(packet.PropSessionExpiry) {
			// A session that was to end with the connection cannot be
			// extended on the way out. [MQTT-3.14.2-2]
			if !ss.setExpiry(c.ln.srv.opts.sessionExpiry(p.Props.SessionExpiry)) {
				return violation(packet.ProtocolError, "DISCONNECT sets a session expiry interval after CONNECT set 0")
			}
		}
		if p.Code != packet.Success {
			// Only a normal disconnection discards the will: 0x04 asks for
			// it, and an error code leaves it to be published. [MQTT-3.1.2-10]
			c.noteClose(closeClientDisconnect, p.Code, "", nil)
			c.shutdown()
			return nil
		}
	}
	// A normal DISCONNECT discards the will. [MQTT-3.1.2-10] [MQTT-3.14.4-3]
	if r := c.inR.Load(); r != nil {
		r.will.Store(nil)
	}
	c.noteClose(closeClientDisconnect, p.Code, "", nil)
	c.shutdown()
	return nil
}
