// Package client is Petrel's MQTT client: MQTT 3.1, 3.1.1 and 5 over TCP,
// TLS, WebSocket (ws and wss) and unix sockets. It is the engine of
// `petrel pub`, `petrel sub` and `petrel bench`, so it is built to be cheap
// per connection and per message.
//
// A connection has one read goroutine and one writer goroutine. Everything
// sent is encoded into an output buffer under a lock and the writer, woken
// only when there is output, flushes whatever has accumulated in one Write:
// pipelined publishes share syscalls. Packet identifiers come from a free
// list, and QoS 1 and 2 publishes are bounded by an in-flight window
// (Options.MaxInflight, lowered by an MQTT 5 server's Receive Maximum).
// Publishing allocates nothing per message once warmed up; a received
// message is handed to Options.OnMessage straight from the read buffer.
//
// Inbound QoS 1 and 2 messages are acknowledged automatically once
// OnMessage returns; the client keeps the connection alive with PINGREQ.
//
// There is no reconnection and no client-side session state: when the
// connection ends (Options.OnDisconnect, Done, Err), make a new Client. A
// resumed session (CleanStart false) gets the messages the server queued,
// but messages this client had in flight when the previous connection ended
// are not sent again. MQTT 5 enhanced authentication (AUTH) is not
// supported.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Client is one connection to a server. Its methods are safe for
// concurrent use.
type Client struct {
	opts    Options
	conn    net.Conn
	version byte

	// The server's limits, from CONNACK.
	maxQoS   byte
	retainOK bool
	maxOut   int // the server's Maximum Packet Size; 0: none
	ka       time.Duration

	// Read side: owned by Connect, then by the read goroutine.
	dec     packet.Decoder
	rbuf    []byte
	rs, re  int // unread bytes are rbuf[rs:re]
	msg     Message
	aliases []string            // inbound topic aliases, index alias-1
	qos2in  map[uint16]struct{} // inbound QoS 2 ids awaiting PUBREL

	// window holds one token per QoS 1 or 2 publish in flight.
	window chan struct{}

	mu         sync.Mutex
	out, spare []byte        // output waiting for the writer, and its spare buffer
	writing    bool          // the writer was woken and has not yet found out empty
	space      chan struct{} // closed when the writer drains out; made by those waiting for room
	drained    chan struct{} // closed when out is empty; made by Disconnect
	ops        []*op         // in-flight requests, index packet id-1
	unacked    []unacked     // with ManualAck: the messages received and not yet sent their acknowledgement, in order
	free       []uint16      // packet ids free for reuse
	closing    bool          // nothing new may be sent
	userClosed bool          // Close or Disconnect was called
	err        error         // why the connection ended, once it has
	kaTimer    *time.Timer

	lastWrite atomic.Int64 // monotonic nanoseconds of the last Write
	pingSent  atomic.Int64 // when the outstanding PINGREQ was sent; 0: none

	wake       chan struct{} // wakes the writer
	closed     chan struct{} // closed by shutdown
	writerDone chan struct{}
	done       chan struct{} // closed when both goroutines have ended
}

// Connect dials o.Addr, sends CONNECT and waits for CONNACK. When the server
// refuses, the error is a *ConnectError and the CONNACK is returned with it.
// ctx bounds the connection attempt only.
func Connect(ctx context.Context, o Options) (*Client, *packet.Connack, error) {
	if err := o.setDefaults(); err != nil {
		return nil, nil, err
	}
	var t target
	if o.Dial == nil {
		var err error
		if t, err = parseAddr(o.Addr); err != nil {
			return nil, nil, err
		}
	}
	if o.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.DialTimeout)
		defer cancel()
	}
	var conn net.Conn
	var err error
	if o.Dial != nil {
		conn, err = o.Dial(ctx)
	} else {
		conn, err = dial(ctx, t, &o)
	}
	if err != nil {
		return nil, nil, err
	}
	c := &Client{
		opts:       o,
		conn:       conn,
		version:    o.Version,
		rbuf:       make([]byte, minReadBuffer),
		wake:       make(chan struct{}, 1),
		closed:     make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.dec.Version = o.Version
	ack, err := c.handshake(ctx)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}
	c.start()
	return c, ack, nil
}

// handshake sends CONNECT and reads CONNACK, within ctx.
func (c *Client) handshake(ctx context.Context) (*packet.Connack, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	ack, err := c.exchangeConnect()
	if !stop() {
		// ctx ended during the exchange and cut it short.
		return ack, fmt.Errorf("client: connect: %w", ctx.Err())
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// ctx's deadline, reached on the connection before ctx noticed.
			return ack, fmt.Errorf("client: connect: %w (%v)", context.DeadlineExceeded, err)
		}
		return ack, err
	}
	c.conn.SetDeadline(time.Time{})
	return ack, nil
}

func (c *Client) exchangeConnect() (*packet.Connack, error) {
	o := &c.opts
	cp := packet.Connect{
		Version:    o.Version,
		CleanStart: o.CleanStart,
		ClientID:   o.ClientID,
		Username:   o.Username,
		Password:   o.Password,
	}
	if o.KeepAlive > 0 {
		cp.KeepAlive = uint16(min((o.KeepAlive+time.Second-1)/time.Second, 65535))
	}
	cp.UsernameFlag = o.Username != ""
	cp.PasswordFlag = o.Password != nil
	if w := o.Will; w != nil {
		cp.WillFlag, cp.WillTopic, cp.WillPayload = true, w.Topic, w.Payload
		cp.WillQoS, cp.WillRetain, cp.WillProps = w.QoS, w.Retain, w.Props
	}
	if o.Version == packet.V5 {
		cp.Props = o.ConnectProps
		if o.SessionExpiry != 0 {
			cp.Props.SessionExpiry = o.SessionExpiry
			cp.Props.Mark(packet.PropSessionExpiry)
		}
		if o.MaxPacketSize > 0 {
			cp.Props.MaximumPacketSize = uint32(min(o.MaxPacketSize, packet.MaxRemainingLength+5))
			cp.Props.Mark(packet.PropMaximumPacketSize)
		}
	}
	buf, err := packet.Append(nil, &cp, o.Version)
	if err != nil {
		return nil, fmt.Errorf("client: CONNECT: %w", err)
	}
	c.trace(true, &cp)
	if _, err := c.conn.Write(buf); err != nil {
		return nil, fmt.Errorf("client: send CONNECT: %w", err)
	}
	c.lastWrite.Store(nanotime())

	p, err := c.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("client: waiting for CONNACK: %w", err)
	}
	c.trace(false, p)
	ack, ok := p.(*packet.Connack)
	if !ok {
		return nil, fmt.Errorf("client: the server sent %v instead of CONNACK", p.Type())
	}
	ack = packet.Clone(ack).(*packet.Connack)
	if ack.Code != packet.Success {
		return ack, &ConnectError{Version: c.version, Code: ack.Code, Reason: ack.Props.ReasonString}
	}
	c.applyConnack(ack)
	return ack, nil
}

// applyConnack takes the server's limits and sets up what depends on them.
func (c *Client) applyConnack(ack *packet.Connack) {
	o, p := &c.opts, &ack.Props
	c.maxQoS, c.retainOK, c.ka = 2, true, o.KeepAlive
	window := o.MaxInflight
	if c.version == packet.V5 {
		if p.Has(packet.PropMaximumQoS) {
			c.maxQoS = p.MaximumQoS
		}
		if p.Has(packet.PropRetainAvailable) {
			c.retainOK = p.RetainAvailable == 1
		}
		if p.Has(packet.PropMaximumPacketSize) {
			c.maxOut = int(p.MaximumPacketSize)
		}
		if p.Has(packet.PropReceiveMaximum) {
			window = min(window, int(p.ReceiveMaximum))
		}
		if p.Has(packet.PropServerKeepAlive) {
			c.ka = time.Duration(p.ServerKeepAlive) * time.Second
		}
		if o.ConnectProps.Has(packet.PropTopicAliasMaximum) && o.ConnectProps.TopicAliasMaximum > 0 {
			c.aliases = make([]string, o.ConnectProps.TopicAliasMaximum)
		}
	}
	c.window = make(chan struct{}, window)
}

// start runs the connection's goroutines and its keep alive.
func (c *Client) start() {
	go c.writeLoop()
	if c.ka > 0 {
		c.mu.Lock()
		c.kaTimer = time.AfterFunc(c.ka*3/4, c.keepAlive)
		c.mu.Unlock()
	}
	go c.readLoop()
}

// Done is closed when the connection has ended and the client's goroutines
// have stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended: nil while it is open, ErrClosed
// after Close or Disconnect, else what ended it.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection without DISCONNECT, so the server publishes
// the will, and waits for the client's goroutines to stop. Requests still
// waiting fail with ErrClosed. It returns the error that had already ended
// the connection, if one had (ErrClosed after Close or Disconnect).
func (c *Client) Close() error {
	c.mu.Lock()
	prior := c.err
	c.userClosed, c.closing = true, true
	c.mu.Unlock()
	c.shutdown(ErrClosed)
	<-c.done
	return prior
}

// closeTimeout bounds how long Disconnect waits for its DISCONNECT to be
// written and for the server to close the connection.
const closeTimeout = 5 * time.Second

// Disconnect sends DISCONNECT with code (MQTT 5; props may be nil), after
// everything already queued, then closes the connection and waits for the
// client's goroutines to stop. The server discards the will unless code is
// packet.DisconnectWithWill. Requests still waiting for an acknowledgement
// fail with ErrClosed. It returns the error that had already ended the
// connection, if one had (ErrClosed after Close or Disconnect).
func (c *Client) Disconnect(code packet.ReasonCode, props *packet.Properties) error {
	d := packet.Disconnect{Code: code}
	if props != nil {
		d.Props = *props
	}
	c.mu.Lock()
	if c.closing {
		prior := c.err
		c.mu.Unlock()
		c.Close()
		return prior
	}
	c.userClosed, c.closing = true, true
	var err error
	c.out, err = packet.Append(c.out, &d, c.version)
	if err == nil {
		c.trace(true, &d)
		c.drained = make(chan struct{})
		c.kick()
	}
	drained := c.drained
	c.mu.Unlock()
	if err != nil {
		c.Close()
		return fmt.Errorf("client: DISCONNECT: %w", err)
	}

	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-drained:
		// Half-close where the transport can, so the server reads
		// DISCONNECT before it sees the connection end; it then closes.
		if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		select {
		case <-c.done:
		case <-t.C:
		}
	case <-c.closed:
	case <-t.C:
	}
	c.shutdown(ErrClosed)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != ErrClosed {
		return c.err
	}
	return nil
}

// shutdown ends the connection once: it records why, closes the socket
// (which stops the read goroutine), stops the writer and the keep alive, and
// fails every request still waiting.
func (c *Client) shutdown(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.userClosed {
		cause = ErrClosed
	}
	c.err, c.closing = cause, true
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	failed := c.failOpsLocked(cause)
	c.mu.Unlock()
	close(c.closed)
	c.conn.Close()
	for _, cb := range failed {
		cb(0, cause)
	}
}

// readLoop is the read goroutine: it handles packets until the connection
// ends, then waits for the writer and reports.
func (c *Client) readLoop() {
	c.shutdown(c.readPackets())
	<-c.writerDone
	c.mu.Lock()
	err, user := c.err, c.userClosed
	c.mu.Unlock()
	close(c.done)
	if !user && c.opts.OnDisconnect != nil {
		c.opts.OnDisconnect(err)
	}
}

// epoch anchors nanotime to the monotonic clock.
var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds, never 0.
func nanotime() int64 { return int64(time.Since(epoch)) + 1 }

func (c *Client) trace(sent bool, p packet.Packet) {
	if c.opts.Trace != nil {
		c.opts.Trace(sent, p)
	}
}
