package broker

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
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

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Helpers shared by the security tests (security_*_test.go, limits_test.go,
// listeners_test.go): a broker on any set of listeners, a raw MQTT client
// on any transport, and the broker's counters read as a whole.

// secStart runs a broker with opts until the test ends. Without listeners it
// gets one TCP listener on a loopback port picked by the OS. prepare, when
// not nil, runs between New and Start (to shorten the login throttle, say).
func secStart(t testing.TB, opts Options, prepare func(*Server)) *Server {
	t.Helper()
	if len(opts.Listeners) == 0 {
		opts.Listeners = []ListenerConfig{{Address: "127.0.0.1:0"}}
	}
	if opts.Logger == nil {
		opts.Logger = testlog.New(t)
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
	w := io.MultiWriter(buf, testlog.Writer(t))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// secClient is a wiretest.Client under the names the security, limits,
// listener and MQTT 5 tests call it by. The methods below are thin: every
// read, decode and write is wiretest's.
type secClient struct {
	*wiretest.Client
	t testing.TB
	// Read-only copies of the Client's Name, Conn and Version, under the
	// names these tests use.
	name    string
	nc      net.Conn
	version byte
}

// secOn wraps an open connection. The connection is closed when the test ends.
func secOn(t testing.TB, nc net.Conn, name string, version byte) *secClient {
	return secWrap(t, wiretest.New(t, nc, name, version))
}

func secWrap(t testing.TB, c *wiretest.Client) *secClient {
	return &secClient{Client: c, t: t, name: c.Name, nc: c.Conn, version: c.Version}
}

// secDial opens a connection ("tcp" or "unix") without sending anything.
func secDial(t testing.TB, network, addr, name string, version byte) *secClient {
	t.Helper()
	return secWrap(t, wiretest.Dial(t, network, addr, name, version))
}

// secTLSDial opens a TLS connection and completes the handshake.
func secTLSDial(t testing.TB, addr, name string, version byte, conf *tls.Config) (*secClient, error) {
	t.Helper()
	c, err := wiretest.DialTLS(t, addr, name, version, conf)
	if err != nil {
		return nil, err
	}
	return secWrap(t, c), nil
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
	return c.SendConnect(p)
}

func (c *secClient) send(p packet.Packet) {
	c.t.Helper()
	c.Send(p)
}

func (c *secClient) sendRaw(b []byte) {
	c.t.Helper()
	c.SendRaw(b)
}

// read returns the next packet, or the error that ended the connection
// (io.EOF when the broker closed it).
func (c *secClient) read(timeout time.Duration) (packet.Packet, error) {
	return c.Read(timeout)
}

// readRaw is read that also returns the packet's bytes as they came.
func (c *secClient) readRaw(timeout time.Duration) (packet.Packet, []byte, error) {
	return c.ReadRaw(timeout)
}

// next returns the next packet or fails the test.
func (c *secClient) next() packet.Packet {
	c.t.Helper()
	return c.Next()
}

func (c *secClient) nextPublish() *packet.Publish {
	c.t.Helper()
	return c.NextPublish()
}

func (c *secClient) nextAck(kind packet.Type, pid uint16) *packet.Ack {
	c.t.Helper()
	return c.ExpectAck(kind, pid)
}

// ping makes a PINGREQ round trip: anything the broker sends before the
// PINGRESP fails the test.
func (c *secClient) ping() {
	c.t.Helper()
	c.Ping()
}

// untilPong sends PINGREQ and returns the topics and payloads of the
// PUBLISHes that arrive before the PINGRESP ("topic=payload"), acknowledging
// QoS 1 ones.
func (c *secClient) untilPong() []string {
	c.t.Helper()
	return topicPayloads(c.UntilPong(true))
}

// until reads PUBLISHes until one with topic sentinel and returns those
// before it ("topic=payload"), acknowledging QoS 1 ones.
func (c *secClient) until(sentinel string) []string {
	c.t.Helper()
	return topicPayloads(c.UntilTopic(sentinel, true))
}

func topicPayloads(pubs []*packet.Publish) []string {
	var got []string
	for _, p := range pubs {
		got = append(got, p.Topic+"="+string(p.Payload))
	}
	return got
}

// subscribe sends one SUBSCRIBE and returns the SUBACK's codes.
func (c *secClient) subscribe(pid uint16, qos byte, filters ...string) []packet.ReasonCode {
	c.t.Helper()
	s := &packet.Subscribe{PacketID: pid}
	for _, f := range filters {
		s.Subs = append(s.Subs, packet.Subscription{Filter: f, QoS: qos})
	}
	return c.SendSubscribe(s)
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
	return c.SendPublish(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid, Retain: retain})
}

// closedErr waits for the broker to close the connection and returns what
// arrived first: nil, or the DISCONNECT it sent.
func (c *secClient) closedErr(timeout time.Duration) *packet.Disconnect {
	c.t.Helper()
	return c.WaitClose(timeout)
}

// expectClosed requires the broker to close the connection without
// sending anything.
func (c *secClient) expectClosed() {
	c.t.Helper()
	c.ExpectClosed()
}

// expectDisconnect requires a DISCONNECT with code, then the close, and
// returns the DISCONNECT.
func (c *secClient) expectDisconnect(code packet.ReasonCode) *packet.Disconnect {
	c.t.Helper()
	return c.ExpectDisconnect(code)
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
