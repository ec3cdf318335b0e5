// Package wiretest is a minimal MQTT client for tests that need exact
// control of the packets: it sends what it is told, over any connection
// (TCP, TLS, a unix socket), and returns what arrives, decoded with package
// packet, so a test sees every flag, property and reason code. It is not
// the product's client.
//
// The methods that wait fail the test after Timeout; the Try and Read
// methods return the error instead, for tests that expect the connection to
// end and for goroutines, which may not fail a test.
package wiretest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// Timeout bounds every wait of the tests that drive the broker over the
// wire: a read, a write, a dial, a condition polled. It is a bound on a
// failure, not a pause: a passing test never waits it out.
const Timeout = 10 * time.Second

// Eventually polls cond until it holds, failing the test after Timeout:
// for a state the broker reaches on its own goroutines after the event the
// test caused (a connection's end, a counter's update).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, Timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Client is one raw MQTT connection. It is used from one goroutine at a
// time; only the methods that return errors may be called off the test's
// goroutine.
type Client struct {
	t testing.TB
	// Conn is the connection, for a test that writes or closes it itself.
	Conn net.Conn
	// Name is the client's name in failure messages: its client identifier
	// when Connect dialed it.
	Name string
	// Version is the protocol version packets are encoded and decoded in.
	// A test that sends its CONNECT raw may set it before reading the answer.
	Version byte
	dec     packet.Decoder
	buf     []byte // what was read and is not yet returned
}

// New wraps an open connection, closed when the test ends.
func New(t testing.TB, nc net.Conn, name string, version byte) *Client {
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, Conn: nc, Name: name, Version: version}
}

// Dial opens a connection ("tcp" or "unix") without sending anything; it
// fails the test if the dial fails.
func Dial(t testing.TB, network, addr, name string, version byte) *Client {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, Timeout)
	if err != nil {
		t.Fatalf("%s: dial %s %s: %v", name, network, addr, err)
	}
	return New(t, nc, name, version)
}

// DialTLS opens a TLS connection and completes the handshake. It returns
// the error, which a test of refused certificates expects.
func DialTLS(t testing.TB, addr, name string, version byte, conf *tls.Config) (*Client, error) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: Timeout}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	return New(t, nc, name, version), nil
}

// Connect dials addr over TCP, sends c and returns the client with its
// CONNACK, as it came. A CONNECT without a version is sent as 3.1.1.
func Connect(t testing.TB, addr string, c *packet.Connect) (*Client, *packet.Connack) {
	t.Helper()
	if c.Version == 0 {
		c.Version = packet.V311
	}
	w := Dial(t, "tcp", addr, c.ClientID, c.Version)
	return w, w.SendConnect(c)
}

// MustConnect connects a 3.1.1 client and fails the test unless CONNACK
// accepts. It returns the CONNACK's session present flag.
func MustConnect(t testing.TB, addr, clientID string, clean bool) (*Client, bool) {
	t.Helper()
	w, ack := Connect(t, addr, &packet.Connect{Version: packet.V311, CleanStart: clean, ClientID: clientID, KeepAlive: 60})
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK code 0x%02x", clientID, byte(ack.Code))
	}
	return w, ack.SessionPresent
}

// ByteCounter counts the bytes written and read over the connections it
// wraps: for a test, what the broker received from its clients and sent
// them. The zero value is ready.
type ByteCounter struct {
	Written, Read atomic.Int64
}

// Wrap returns nc counting into bc.
func (bc *ByteCounter) Wrap(nc net.Conn) net.Conn { return countingConn{nc, bc} }

type countingConn struct {
	net.Conn
	bc *ByteCounter
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.bc.Written.Add(int64(n))
	return n, err
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.bc.Read.Add(int64(n))
	return n, err
}

// fatalf fails the test with the client's name in front of the message.
func (w *Client) fatalf(format string, args ...any) {
	w.t.Helper()
	if w.Name != "" {
		format = w.Name + ": " + format
	}
	w.t.Fatalf(format, args...)
}

// Send encodes and writes p.
func (w *Client) Send(p packet.Packet) {
	w.t.Helper()
	if err := w.TrySend(p); err != nil {
		w.fatalf("send %s: %v", p.Type(), err)
	}
}

// TrySend is Send that returns the error instead of failing the test.
func (w *Client) TrySend(p packet.Packet) error {
	b, err := packet.Append(nil, p, w.Version)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return w.trySendRaw(b)
}

// SendRaw writes b as it is: for packets the encoder refuses to build.
func (w *Client) SendRaw(b []byte) {
	w.t.Helper()
	if err := w.trySendRaw(b); err != nil {
		w.fatalf("write: %v", err)
	}
}

func (w *Client) trySendRaw(b []byte) error {
	w.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	_, err := w.Conn.Write(b)
	return err
}

// Next reads one packet; it fails the test on error or after Timeout.
func (w *Client) Next() packet.Packet {
	w.t.Helper()
	p, err := w.TryNext()
	if err != nil {
		w.fatalf("waiting for a packet: %v", err)
	}
	return p
}

// TryNext is Read with Timeout.
func (w *Client) TryNext() (packet.Packet, error) {
	return w.Read(Timeout)
}

// Read returns the next packet, a copy that stays valid after later
// reads, or the error that ended the wait: io.EOF when the broker closed
// the connection between packets, io.ErrUnexpectedEOF inside one, a
// net.Error whose Timeout() is true after timeout. After a timeout the
// client may read again: what arrived of a packet is kept.
func (w *Client) Read(timeout time.Duration) (packet.Packet, error) {
	p, _, err := w.ReadRaw(timeout)
	return p, err
}

// ReadRaw is Read that also returns the packet's bytes as they came.
func (w *Client) ReadRaw(timeout time.Duration) (packet.Packet, []byte, error) {
	w.Conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		w.dec.Version = w.Version
		p, n, err := Decode(&w.dec, w.buf)
		if err == nil {
			raw := bytes.Clone(w.buf[:n])
			w.buf = w.buf[n:]
			return p, raw, nil
		}
		if err != packet.ErrIncomplete {
			return nil, nil, err
		}
		tmp := make([]byte, 64<<10)
		k, err := w.Conn.Read(tmp)
		w.buf = append(w.buf, tmp[:k]...)
		if err != nil {
			if err == io.EOF && len(w.buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}

// Decode decodes the packet at the start of b and returns a copy of it
// that stays valid when b changes, with its length in bytes. It returns
// packet.ErrIncomplete while b holds less than a whole packet. For tests
// whose bytes come in some other way than a net.Conn (WebSocket messages).
func Decode(dec *packet.Decoder, b []byte) (packet.Packet, int, error) {
	h, n, err := packet.ParseFixedHeader(b, 0)
	if err == packet.ErrIncomplete || err == nil && len(b) < n+h.Remaining {
		return nil, 0, packet.ErrIncomplete
	}
	if err != nil {
		return nil, 0, fmt.Errorf("fixed header % x: %w", b[:min(len(b), 5)], err)
	}
	p, err := dec.Decode(h, b[n:n+h.Remaining])
	if err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", h.Type, err)
	}
	return packet.Clone(p), n + h.Remaining, nil
}

// Reply returns what a conforming subscriber answers to p: PUBACK or
// PUBREC for a PUBLISH at QoS 1 or 2, PUBCOMP for a PUBREL; nil for
// anything else.
func Reply(p packet.Packet) packet.Packet {
	switch p := p.(type) {
	case *packet.Publish:
		switch p.QoS {
		case 1:
			return &packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID}
		case 2:
			return &packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID}
		}
	case *packet.Ack:
		if p.Kind == packet.PUBREL {
			return &packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID}
		}
	}
	return nil
}

// DrainSession resumes clientID's persistent session (MQTT 3.1.1) and
// takes every queued message until a PINGREQ finds nothing more, calling
// each for every PUBLISH. It acknowledges as a conforming subscriber does:
// PUBACK at QoS 1, PUBREC at QoS 2 and PUBCOMP for the PUBREL.
func DrainSession(t testing.TB, addr, clientID string, each func(*packet.Publish)) {
	t.Helper()
	DrainSessionWith(t, addr, &packet.Connect{Version: packet.V311, ClientID: clientID, KeepAlive: 60}, each)
}

// DrainSessionWith is DrainSession with the CONNECT to resume with (which
// must not ask for a clean start): another protocol level, properties.
func DrainSessionWith(t testing.TB, addr string, c *packet.Connect, each func(*packet.Publish)) {
	t.Helper()
	clientID := c.ClientID
	w, ack := Connect(t, addr, c)
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK code 0x%02x", clientID, byte(ack.Code))
	}
	if !ack.SessionPresent {
		t.Fatalf("%s: session lost", clientID)
	}
	for {
		w.Send(&packet.Pingreq{})
		arrived := 0
		for done := false; !done; {
			switch p := w.Next().(type) {
			case *packet.Pingresp:
				done = true
			case *packet.Publish:
				arrived++
				each(p)
				if r := Reply(p); r != nil {
					w.Send(r)
				}
			case *packet.Ack:
				if p.Kind != packet.PUBREL {
					t.Fatalf("%s: unexpected %s", clientID, p.Kind)
				}
				arrived++
				w.Send(Reply(p))
			default:
				t.Fatalf("%s: unexpected %s", clientID, p.Type())
			}
		}
		if arrived == 0 {
			return
		}
	}
}
