package broker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/packet"
)

// Helpers shared by the security tests (security_*_test.go, limits_test.go,
// listeners_test.go): a broker on any set of listeners, a raw MQTT client
// on any transport, and the broker's counters read as a whole.

// secTimeout bounds every wait of the security tests.
const secTimeout = 5 * time.Second

// secStart runs a broker with opts until the test ends. Without listeners it
// gets one TCP listener on a loopback port picked by the OS. prepare, when
// not nil, runs between New and Start (to shorten the login throttle, say).
func secStart(t testing.TB, opts Options, prepare func(*Server)) *Server {
	t.Helper()
	if len(opts.Listeners) == 0 {
		opts.Listeners = []ListenerConfig{{Address: "127.0.0.1:0"}}
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s := New(opts)
	if prepare != nil {
		prepare(s)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// captureLogs returns a logger that writes to the test's log and to a
// buffer the test can search.
func captureLogs(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	w := io.MultiWriter(buf, &testWriter{t: t})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// secClient is one raw MQTT connection over any transport: it sends packets
// encoded by package packet (or raw bytes) and decodes what the broker
// answers, so a test sees the exact reason codes.
type secClient struct {
	t       testing.TB
	name    string
	nc      net.Conn
	r       *bufio.Reader
	dec     packet.Decoder
	version byte
}

// secOn wraps an open connection. The connection is closed when the test ends.
func secOn(t testing.TB, nc net.Conn, name string, version byte) *secClient {
	t.Cleanup(func() { nc.Close() })
	c := &secClient{t: t, name: name, nc: nc, r: bufio.NewReader(nc), version: version}
	c.dec.Version = version
	return c
}

// secDial opens a connection ("tcp" or "unix") without sending anything.
func secDial(t testing.TB, network, addr, name string, version byte) *secClient {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, secTimeout)
	if err != nil {
		t.Fatalf("%s: dial %s %s: %v", name, network, addr, err)
	}
	return secOn(t, nc, name, version)
}

// secTLSDial opens a TLS connection and completes the handshake.
func secTLSDial(t testing.TB, addr, name string, version byte, conf *tls.Config) (*secClient, error) {
	t.Helper()
	d := &net.Dialer{Timeout: secTimeout}
	nc, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	return secOn(t, nc, name, version), nil
}

// connectPacket is a CONNECT of version for clientID with a 60 second keep
// alive and a clean start, without a user name.
func connectPacket(version byte, clientID string) *packet.Connect {
	return &packet.Connect{Version: version, ClientID: clientID, CleanStart: true, KeepAlive: 60}
}

// withLogin adds a user name and password to a CONNECT.
func withLogin(p *packet.Connect, user, password string) *packet.Connect {
	p.UsernameFlag, p.Username = true, user
	p.PasswordFlag, p.Password = true, []byte(password)
	return p
}

// secConnect dials addr over TCP, sends p and returns the CONNACK.
func secConnect(t testing.TB, addr string, p *packet.Connect) (*secClient, *packet.Connack) {
	t.Helper()
	c := secDial(t, "tcp", addr, p.ClientID, p.Version)
	return c, c.connect(p)
}

// secMustConnect is secConnect that fails the test unless CONNACK accepts.
func secMustConnect(t testing.TB, addr string, p *packet.Connect) *secClient {
	t.Helper()
	c, ack := secConnect(t, addr, p)
	if ack.Code != packet.Success {
		t.Fatalf("%s: CONNACK 0x%02x (%q), want 0x00", p.ClientID, byte(ack.Code), ack.Props.ReasonString)
	}
	return c
}

// connect sends CONNECT and returns the CONNACK.
func (c *secClient) connect(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	c.send(p)
	p2 := c.next()
	ack, ok := p2.(*packet.Connack)
	if !ok {
		c.t.Fatalf("%s: got %s %+v, want CONNACK", c.name, p2.Type(), p2)
	}
	return ack
}

func (c *secClient) send(p packet.Packet) {
	c.t.Helper()
	b, err := packet.Append(nil, p, c.version)
	if err != nil {
		c.t.Fatalf("%s: encode %s: %v", c.name, p.Type(), err)
	}
	c.sendRaw(b)
}

func (c *secClient) sendRaw(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(secTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// read returns the next packet, or the error that ended the connection
// (io.EOF when the broker closed it).
func (c *secClient) read(timeout time.Duration) (packet.Packet, error) {
	p, _, err := c.readRaw(timeout)
	return p, err
}

// readRaw is read that also returns the packet's bytes as they came.
func (c *secClient) readRaw(timeout time.Duration) (packet.Packet, []byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	hdr := make([]byte, 0, 5)
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			if len(hdr) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
		hdr = append(hdr, b)
		if len(hdr) > 1 && (b&0x80 == 0 || len(hdr) == 5) {
			break
		}
	}
	h, _, err := packet.ParseFixedHeader(hdr, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("fixed header % x: %w", hdr, err)
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, nil, err
	}
	p, err := c.dec.Decode(h, body)
	if err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", h.Type, err)
	}
	return packet.Clone(p), append(hdr, body...), nil
}

// next returns the next packet or fails the test.
func (c *secClient) next() packet.Packet {
	c.t.Helper()
	p, err := c.read(secTimeout)
	if err != nil {
		c.t.Fatalf("%s: waiting for a packet: %v", c.name, err)
	}
	return p
}

func (c *secClient) nextPublish() *packet.Publish {
	c.t.Helper()
	p := c.next()
	pub, ok := p.(*packet.Publish)
	if !ok {
		c.t.Fatalf("%s: got %s %+v, want PUBLISH", c.name, p.Type(), p)
	}
	return pub
}

func (c *secClient) nextAck(kind packet.Type, pid uint16) *packet.Ack {
	c.t.Helper()
	p := c.next()
	a, ok := p.(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != pid {
		c.t.Fatalf("%s: got %s %+v, want %s for packet id %d", c.name, p.Type(), p, kind, pid)
	}
	return a
}

// ping makes a PINGREQ round trip: anything the broker sends before the
// PINGRESP fails the test. It proves the connection is served and that
// nothing was pending for it.
func (c *secClient) ping() {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	if p := c.next(); p.Type() != packet.PINGRESP {
		c.t.Fatalf("%s: got %s %+v before PINGRESP, want nothing", c.name, p.Type(), p)
	}
}

// untilPong sends PINGREQ and returns the topics and payloads of the
// PUBLISHes that arrive before the PINGRESP ("topic=payload"), acknowledging
// QoS 1 ones.
func (c *secClient) untilPong() []string {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	var got []string
	for {
		switch p := c.next().(type) {
		case *packet.Pingresp:
			return got
		case *packet.Publish:
			got = append(got, p.Topic+"="+string(p.Payload))
			if p.QoS == 1 {
				c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			}
		default:
			c.t.Fatalf("%s: got %s %+v, want PUBLISH or PINGRESP", c.name, p.Type(), p)
		}
	}
}

// until reads PUBLISHes until one with topic sentinel and returns those
// before it ("topic=payload"), acknowledging QoS 1 ones.
func (c *secClient) until(sentinel string) []string {
	c.t.Helper()
	var got []string
	for {
		p := c.nextPublish()
		if p.QoS == 1 {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
		if p.Topic == sentinel {
			return got
		}
		got = append(got, p.Topic+"="+string(p.Payload))
	}
}

// subscribe sends one SUBSCRIBE and returns the SUBACK's codes.
func (c *secClient) subscribe(pid uint16, qos byte, filters ...string) []packet.ReasonCode {
	c.t.Helper()
	s := &packet.Subscribe{PacketID: pid}
	for _, f := range filters {
		s.Subs = append(s.Subs, packet.Subscription{Filter: f, QoS: qos})
	}
	return c.sendSubscribe(s)
}

// sendSubscribe sends s and returns the SUBACK's codes, one a subscription.
func (c *secClient) sendSubscribe(s *packet.Subscribe) []packet.ReasonCode {
	c.t.Helper()
	c.send(s)
	p := c.next()
	sa, ok := p.(*packet.Suback)
	if !ok || sa.PacketID != s.PacketID || len(sa.Codes) != len(s.Subs) {
		c.t.Fatalf("%s: got %s %+v, want SUBACK for packet id %d with %d codes", c.name, p.Type(), p, s.PacketID, len(s.Subs))
	}
	return sa.Codes
}

// mustSubscribe subscribes to filters at qos and fails unless all are granted.
func (c *secClient) mustSubscribe(pid uint16, qos byte, filters ...string) {
	c.t.Helper()
	for i, code := range c.subscribe(pid, qos, filters...) {
		if code != packet.ReasonCode(qos) {
			c.t.Fatalf("%s: SUBACK for %q: 0x%02x, want QoS %d granted", c.name, filters[i], byte(code), qos)
		}
	}
}

// publish sends a PUBLISH; at QoS 1 it returns the PUBACK's code.
func (c *secClient) publish(pid uint16, qos byte, topic, payload string, retain bool) packet.ReasonCode {
	c.t.Helper()
	c.send(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
	if qos == 0 {
		return packet.Success
	}
	return c.nextAck(ackKind(qos), pid).Code
}

// closedErr waits for the broker to close the connection and returns what
// arrived first: nil, or the DISCONNECT it sent. Other packets fail the
// test, and so does a connection still open after the timeout.
func (c *secClient) closedErr(timeout time.Duration) *packet.Disconnect {
	c.t.Helper()
	var disc *packet.Disconnect
	for {
		p, err := c.read(timeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("%s: connection still open after %v", c.name, timeout)
			}
			c.nc.Close()
			return disc
		}
		d, ok := p.(*packet.Disconnect)
		if !ok || disc != nil {
			c.t.Fatalf("%s: got %s %+v, want the connection closed", c.name, p.Type(), p)
		}
		disc = d
	}
}

// expectClosed requires the broker to close the connection without
// sending anything: what a 3.1.1 client sees of a refusal after CONNACK.
func (c *secClient) expectClosed() {
	c.t.Helper()
	if d := c.closedErr(secTimeout); d != nil {
		c.t.Fatalf("%s: got DISCONNECT 0x%02x before the close; a %d client gets none", c.name, byte(d.Code), c.version)
	}
}

// expectDisconnect requires a DISCONNECT with code, then the close, and
// returns the DISCONNECT.
func (c *secClient) expectDisconnect(code packet.ReasonCode) *packet.Disconnect {
	c.t.Helper()
	d := c.closedErr(secTimeout)
	switch {
	case d == nil:
		c.t.Fatalf("%s: the connection closed without DISCONNECT; want DISCONNECT 0x%02x (%s)", c.name, byte(code), code)
	case d.Code != code:
		c.t.Fatalf("%s: DISCONNECT 0x%02x (%q), want 0x%02x (%s)", c.name, byte(d.Code), d.Props.ReasonString, byte(code), code)
	}
	return d
}

// expectRefused requires CONNACK with code, then the close. A 3.1.1
// client gets no reason string, an MQTT 5 client may.
func expectRefused(t testing.TB, c *secClient, ack *packet.Connack, code packet.ReasonCode) {
	t.Helper()
	if ack.Code != code {
		t.Fatalf("%s: CONNACK 0x%02x (%q), want 0x%02x", c.name, byte(ack.Code), ack.Props.ReasonString, byte(code))
	}
	if ack.SessionPresent {
		t.Fatalf("%s: refusing CONNACK has session present set [MQTT-3.2.2-4]", c.name)
	}
	c.expectClosed()
}

// counters reads every counter of the broker's stats, by field name.
// Reading them as a whole lets a test say which counters a refusal moved.
func counters(s *Server) map[string]int64 {
	v := reflect.ValueOf(&s.stats).Elem()
	m := make(map[string]int64, v.NumField())
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Type() != reflect.TypeFor[atomic.Int64]() {
			continue
		}
		m[v.Type().Field(i).Name] = (*atomic.Int64)(unsafe.Pointer(f.UnsafeAddr())).Load()
	}
	return m
}

// countersMoved lists the counters that changed between two readings.
func countersMoved(before, after map[string]int64) string {
	var moved []string
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			moved = append(moved, fmt.Sprintf("%s%+d", k, d))
		}
	}
	slices.Sort(moved)
	if len(moved) == 0 {
		return "none"
	}
	return strings.Join(moved, " ")
}

// eventually polls cond until it holds, failing the test after secTimeout.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(secTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, secTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shortTempDir is a temporary directory whose paths fit a unix socket
// address (108 bytes), which t.TempDir's long names may not.
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "petrel")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// clientCert issues a client certificate with common name cn and DNS SANs.
func clientCert(t testing.TB, ca *testpki.CA, cn string, dnsNames ...string) *testpki.Leaf {
	t.Helper()
	return ca.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames})
}
