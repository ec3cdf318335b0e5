package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Conn is one MQTT-over-WebSocket connection as a net.Conn: reads return
// the payloads of the client's binary messages as one byte stream, and each
// write sends one binary message. Deadlines apply to the underlying
// connection, and a read or write that fails ends the connection.
type Conn struct {
	ws     *websocket.Conn
	raw    net.Conn // the hijacked HTTP connection: TCP, or TLS for wss
	remote net.Addr // from X-Forwarded-For; nil means raw's peer

	readMu sync.Mutex // one Read at a time: msg is the stream's position
	msg    io.Reader  // the message being read, nil between messages

	// mu guards closed and halfClosed; handshake counts the goroutine
	// that runs the close handshake CloseWrite started.
	mu         sync.Mutex
	closed     bool
	halfClosed bool
	handshake  sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Read reads the next bytes of the stream, across message boundaries. A
// close frame with status 1000 or 1001 reads as io.EOF; a text message
// closes the connection with status 1003 and reads as ErrTextFrame.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.msg == nil {
			typ, r, err := c.ws.Reader(context.Background())
			if err != nil {
				return 0, c.readError(err)
			}
			if typ != websocket.MessageBinary {
				// [MQTT-6.0.0-1] Bounded: Close gives the client 5s to
				// answer, and the deadlines of raw apply too.
				c.ws.Close(websocket.StatusUnsupportedData, "MQTT travels in binary messages")
				return 0, ErrTextFrame
			}
			c.msg = r
		}
		n, err := c.msg.Read(p)
		if errors.Is(err, io.EOF) {
			c.msg, err = nil, nil // the message ended; the stream goes on
		}
		if err != nil {
			return n, c.readError(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (c *Conn) readError(err error) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return io.EOF
	}
	c.mu.Lock()
	halfClosed := c.halfClosed
	c.mu.Unlock()
	if halfClosed && errors.Is(err, net.ErrClosed) {
		return io.EOF // our close handshake completed
	}
	return err
}

// Write sends p as one binary message.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite starts the close handshake: it sends a close frame (status
// 1000) and returns. Reads then go on until the client's close frame, which
// reads as io.EOF, so what the client still sends meanwhile is read rather
// than reset. The goroutine driver calls it after the final flush.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if c.halfClosed {
		return nil
	}
	c.halfClosed = true
	c.handshake.Go(func() {
		// It waits for the client's close frame, which the read side
		// receives: both end when raw closes, so Close bounds it.
		c.ws.Close(websocket.StatusNormalClosure, "")
	})
	return nil
}

// Close closes the connection at once; a Read or Write in progress returns.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.closeErr = c.raw.Close()
		c.handshake.Wait()
		c.ws.CloseNow() // frees its buffers; raw is closed already
	})
	return c.closeErr
}

// RemoteAddr is the TCP peer, or with Options.TrustProxy the client address
// from X-Forwarded-For.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.raw.RemoteAddr()
}

// LocalAddr is the address the connection was accepted on.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Subprotocol is the negotiated subprotocol: "mqtt", "mqttv3.1", or "" when
// the client offered none.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// NetConn is the connection WebSocket runs on: TCP, or a *tls.Conn for wss.
func (c *Conn) NetConn() net.Conn { return c.raw }

// ConnectionState is the TLS state of a wss connection (the zero value on
// plain ws), so an endpoint reads client certificates the same way over
// TLS and wss: through listener.Underlying, then ConnectionState.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.raw.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// hijackCapture keeps the connection websocket.Accept hijacks, so the Conn
// can set its deadlines and close it directly, and swaps net/http's 4 KiB
// read and write buffers for smaller ones: a connection holds them for
// life, idle or not. Large payloads bypass bufio either way.
type hijackCapture struct {
	http.ResponseWriter
	conn net.Conn
}

// bufferSize is the size of a connection's read and write buffers.
const bufferSize = 1 << 10

func (h *hijackCapture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = c
	// Bytes the client sent after its request may sit in net/http's
	// buffer: move them into the new one (Accept takes what is buffered).
	early := bytes.Clone(peekBuffered(brw.Reader))
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(early), c), max(bufferSize, len(early)))
	if _, err := r.Peek(len(early)); err != nil {
		return nil, nil, err
	}
	return c, bufio.NewReadWriter(r, bufio.NewWriterSize(c, bufferSize)), nil
}

func peekBuffered(r *bufio.Reader) []byte {
	b, _ := r.Peek(r.Buffered())
	return b
}
