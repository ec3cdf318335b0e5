package ws_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/internal/listener/echotest"
	"github.com/petrelmq/petrel/internal/listener/ws"
	"github.com/petrelmq/petrel/internal/testpki"
)

// server is an echo server behind a WebSocket listener and the goroutine
// driver, as the broker will run it.
type server struct {
	url  string // ws://127.0.0.1:port/mqtt (or wss://)
	base string // the same without the path
	http string // http://127.0.0.1:port (or https://)
	h    *echotest.Handler
	d    listener.Driver
	ln   *ws.Listener
	// client is what dials it: plain, or trusting the test CA for wss.
	client *http.Client
}

type serverOptions struct {
	ws        ws.Options
	final     []byte
	tls       *tls.Config // wss when set
	clientTLS *tls.Config
	driver    listener.Options
}

func startServer(t *testing.T, so serverOptions) *server {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tcp
	scheme := "ws"
	client := &http.Client{Transport: &http.Transport{}}
	if so.tls != nil {
		ln = tls.NewListener(tcp, so.tls)
		scheme = "wss"
		client.Transport = &http.Transport{TLSClientConfig: so.clientTLS}
	}
	wl, err := ws.Listen(ln, so.ws)
	if err != nil {
		tcp.Close()
		t.Fatal(err)
	}
	s := &server{h: echotest.NewHandler(so.final), ln: wl, client: client}
	s.d = echotest.Serve(t, wl, s.h, so.driver)
	path := so.ws.Path
	if path == "" {
		path = "/mqtt"
	}
	s.base = scheme + "://" + tcp.Addr().String()
	s.http = strings.Replace(s.base, "ws", "http", 1)
	s.url = s.base + path
	return s
}

// dial connects with the subprotocols offered, and returns the WebSocket
// and the HTTP response (for refusals).
func (s *server) dial(t *testing.T, subprotocols []string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.url, &websocket.DialOptions{
		HTTPClient:   s.client,
		Subprotocols: subprotocols,
		HTTPHeader:   header,
	})
	if c != nil {
		c.SetReadLimit(-1)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func (s *server) mustDial(t *testing.T) *websocket.Conn {
	t.Helper()
	c, _, err := s.dial(t, []string{"mqtt"}, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", s.url, err)
	}
	return c
}

// stream is the client's side as a byte stream, as MQTT.js and paho see it.
func stream(t *testing.T, c *websocket.Conn) net.Conn {
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	nc.SetDeadline(time.Now().Add(echotest.Timeout))
	return nc
}

func TestEcho(t *testing.T) {
	s := startServer(t, serverOptions{})
	c := s.mustDial(t)
	if got := c.Subprotocol(); got != "mqtt" {
		t.Errorf("negotiated subprotocol %q, want mqtt [MQTT-6.0.0-4]", got)
	}
	e := s.h.Next(t)
	// Writes of random sizes, so packets span messages and the server's
	// batched writes hold many.
	echotest.Echo(t, stream(t, c), echotest.Pattern(2<<20, 1), 1)
	if got := e.Conn.RemoteAddr().String(); !strings.HasPrefix(got, "127.0.0.1:") || strings.HasSuffix(got, ":0") {
		t.Errorf("RemoteAddr %q, want the client's 127.0.0.1:port", got)
	}
}

func TestManyClients(t *testing.T) {
	s := startServer(t, serverOptions{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c, _, err := s.dial(t, []string{"mqtt"}, nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			echotest.Echo(t, stream(t, c), echotest.Pattern(256<<10, uint64(i)), uint64(i))
		})
	}
	wg.Wait()
}

// [MQTT-6.0.0-2] A packet may span frames, a frame may hold several
// packets, and empty messages carry nothing: the server sees one stream.
func TestFramesAndPacketsAreIndependent(t *testing.T) {
	s := startServer(t, serverOptions{})
	c := s.mustDial(t)
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	connect := []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, 'a', 'b', 'c', 'd'}
	pings := []byte{0xc0, 0x00, 0xc0, 0x00, 0xc0, 0x00}

	// CONNECT in one message of three frames.
	w, err := c.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]byte{connect[:1], connect[1:7], connect[7:]} {
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// An empty message, then three PINGREQs in one frame, then a PINGREQ
	// split over two messages.
	for _, m := range [][]byte{{}, pings, {0xc0}, {0x00}} {
		if err := c.Write(ctx, websocket.MessageBinary, m); err != nil {
			t.Fatal(err)
		}
	}
	want := append(append(append([]byte(nil), connect...), pings...), 0xc0, 0x00)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(stream(t, c), got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	echotest.SameBytes(t, "echo of fragmented and batched packets", got, want)
}

// [MQTT-6.0.0-1] A text message closes the connection.
func TestTextMessageCloses(t *testing.T) {
	s := startServer(t, serverOptions{})
	c := s.mustDial(t)
	e := s.h.Next(t)
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"not":"mqtt"}`)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusUnsupportedData {
		t.Errorf("client read after a text message: %v (status %d), want a close with status 1003", err, got)
	}
	if err := e.WaitClosed(t); !errors.Is(err, ws.ErrTextFrame) {
		t.Errorf("Closed(%v), want ws.ErrTextFrame", err)
	}
}

func TestSubprotocols(t *testing.T) {
	s := startServer(t, serverOptions{})
	for _, tc := range []struct {
		offer      []string
		want       string
		wantStatus int // of a refusal
	}{
		{[]string{"mqtt"}, "mqtt", 0},
		{[]string{"mqttv3.1"}, "mqttv3.1", 0},
		{[]string{"mqttv3.1", "mqtt"}, "mqtt", 0},
		{[]string{"chat", "mqtt"}, "mqtt", 0},
		{nil, "", 0}, // no header: accepted without a subprotocol
		{[]string{"chat"}, "", http.StatusBadRequest},
	} {
		c, resp, err := s.dial(t, tc.offer, nil)
		if tc.wantStatus != 0 {
			if err == nil || resp == nil || resp.StatusCode != tc.wantStatus {
				t.Errorf("offering %q: err %v, status %v; want a refusal with %d", tc.offer, err, status(resp), tc.wantStatus)
			}
			continue
		}
		if err != nil {
			t.Errorf("offering %q: %v", tc.offer, err)
			continue
		}
		if got := c.Subprotocol(); got != tc.want {
			t.Errorf("offering %q: negotiated %q, want %q", tc.offer, got, tc.want)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

func status(resp *http.Response) any {
	if resp == nil {
		return "none"
	}
	return resp.StatusCode
}

func TestOtherPathsGet404(t *testing.T) {
	s := startServer(t, serverOptions{ws: ws.Options{Path: "/ws/mqtt"}})
	for _, p := range []string{"/", "/mqtt", "/ws/mqtt/", "/ws"} {
		resp, err := s.client.Get(s.http + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, s.base+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("upgrade on a wrong path: err %v, status %v; want 404", err, status(resp))
	}
	if _, _, err := s.dial(t, []string{"mqtt"}, nil); err != nil {
		t.Errorf("upgrade on the configured path: %v", err)
	}
	// A plain GET on the path is told to upgrade.
	resp, err = s.client.Get(s.http + "/ws/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET /ws/mqtt: status %d, want 426", resp.StatusCode)
	}
}

func TestAllowedOrigins(t *testing.T) {
	origin := func(o string) http.Header {
		if o == "" {
			return nil
		}
		return http.Header{"Origin": {o}}
	}
	t.Run("any by default", func(t *testing.T) {
		s := startServer(t, serverOptions{})
		if _, _, err := s.dial(t, []string{"mqtt"}, origin("https://elsewhere.example")); err != nil {
			t.Errorf("another origin refused with the default options: %v", err)
		}
	})
	t.Run("configured", func(t *testing.T) {
		s := startServer(t, serverOptions{ws: ws.Options{AllowedOrigins: []string{"app.example.com", "https://*.example.org"}}})
		for _, tc := range []struct {
			origin string
			ok     bool
		}{
			{"", true}, // not a browser
			{"https://app.example.com", true},
			{"http://app.example.com", true}, // a host pattern matches any scheme
			{"https://shop.example.org", true},
			{"http://shop.example.org", false},
			{"https://evil.example.net", false},
			{"http://" + strings.TrimPrefix(s.base, "ws://"), true}, // the broker's own host
		} {
			_, resp, err := s.dial(t, []string{"mqtt"}, origin(tc.origin))
			switch {
			case tc.ok && err != nil:
				t.Errorf("origin %q refused: %v", tc.origin, err)
			case !tc.ok && (err == nil || resp == nil || resp.StatusCode != http.StatusForbidden):
				t.Errorf("origin %q: err %v, status %v; want 403", tc.origin, err, status(resp))
			}
		}
	})
	if _, err := ws.Listen(nil, ws.Options{AllowedOrigins: []string{"[bad"}}); err == nil {
		t.Error("Listen accepted a malformed origin pattern")
	}
	if _, err := ws.Listen(nil, ws.Options{Path: "mqtt"}); err == nil {
		t.Error("Listen accepted a path without a leading /")
	}
}

func TestRemoteAddrFromProxy(t *testing.T) {
	xff := http.Header{"X-Forwarded-For": {"203.0.113.7, 198.51.100.2"}}
	for _, tc := range []struct {
		trust  bool
		header http.Header
		want   string // prefix
	}{
		{false, xff, "127.0.0.1:"},
		{true, xff, "198.51.100.2:0"},
		{true, http.Header{"X-Forwarded-For": {"10.0.0.1", "[2001:db8::1]:4711"}}, "[2001:db8::1]:0"},
		{true, http.Header{"X-Forwarded-For": {"not an address"}}, "127.0.0.1:"},
		{true, nil, "127.0.0.1:"},
	} {
		s := startServer(t, serverOptions{ws: ws.Options{TrustProxy: tc.trust}})
		if _, _, err := s.dial(t, []string{"mqtt"}, tc.header); err != nil {
			t.Fatal(err)
		}
		if got := s.h.Next(t).Conn.RemoteAddr().String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("TrustProxy %v, X-Forwarded-For %q: RemoteAddr %s, want %s…", tc.trust, tc.header.Values("X-Forwarded-For"), got, tc.want)
		}
	}
}

// A server-side close delivers the final bytes, then a close frame with
// status 1000, even while the client keeps sending.
func TestServerCloseDeliversFinalBytes(t *testing.T) {
	final := echotest.Pattern(1<<20, 3)
	s := startServer(t, serverOptions{final: final})
	c := s.mustDial(t)
	e := s.h.Next(t)
	nc := stream(t, c)
	if _, err := nc.Write([]byte(echotest.Bye)); err != nil {
		t.Fatal(err)
	}
	go func() { // input the server discards while it closes
		junk := make([]byte, 16<<10)
		for range 64 {
			if _, err := nc.Write(junk); err != nil {
				return
			}
		}
	}()
	got, err := io.ReadAll(nc) // the close frame with status 1000 reads as EOF
	if err != nil {
		t.Errorf("reading until the close frame: %v (after %d bytes)", err, len(got))
	}
	echotest.SameBytes(t, "final bytes", got, final)
	if err := e.WaitClosed(t); err != nil {
		t.Errorf("Closed(%v) after a server-side close, want nil", err)
	}
}

// A client that never answers the close frame holds the connection no
// longer than the driver's DrainTimeout.
func TestServerCloseWithSilentClient(t *testing.T) {
	s := startServer(t, serverOptions{final: []byte("final"), driver: listener.Options{DrainTimeout: 200 * time.Millisecond}})
	c := s.mustDial(t) // it never reads, so it never answers the close frame
	e := s.h.Next(t)
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	start := time.Now()
	if err := c.Write(ctx, websocket.MessageBinary, []byte(echotest.Bye)); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitClosed(t); err != nil {
		t.Errorf("Closed(%v), want nil", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closing took %v with a silent client, want about DrainTimeout (200ms)", d)
	}
	typ, b, err := c.Read(ctx) // what it was sent is there, then the close frame
	if err != nil || typ != websocket.MessageBinary || string(b) != "final" {
		t.Errorf("client read %v %q %v, want the final bytes", typ, b, err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("client read after the final bytes: %v, want a close with status 1000", err)
	}
}

// The client closing with status 1000 is an orderly end: Closed(io.EOF).
func TestClientClose(t *testing.T) {
	s := startServer(t, serverOptions{})
	c := s.mustDial(t)
	e := s.h.Next(t)
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("client close handshake: %v", err)
	}
	if err := e.WaitClosed(t); !errors.Is(err, io.EOF) {
		t.Errorf("Closed(%v) after the client's close frame, want io.EOF", err)
	}
}

// Closing the driver closes open WebSocket connections with status 1000.
func TestDriverCloseClosesConnections(t *testing.T) {
	s := startServer(t, serverOptions{})
	c := s.mustDial(t)
	s.h.Next(t)
	done := make(chan error, 1)
	go func() { done <- s.d.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Errorf("client read during Driver.Close: %v, want a close with status 1000", err)
	}
	if err := echotest.Receive(t, done, "Driver.Close"); err != nil {
		t.Errorf("Driver.Close: %v", err)
	}
	if _, _, err := s.dial(t, []string{"mqtt"}, nil); err == nil {
		t.Error("dial after Driver.Close succeeded")
	}
}

func TestReadLimit(t *testing.T) {
	s := startServer(t, serverOptions{ws: ws.Options{ReadLimit: 1024}})
	c := s.mustDial(t)
	e := s.h.Next(t)
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	nc := stream(t, c)
	echotest.Echo(t, nc, echotest.Pattern(1024, 4), 4) // at the limit: fine
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(nc)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Errorf("client read after too big a message: %v, want a close with status 1009", err)
	}
	// The error is the read's (ErrMessageTooBig) or, when the echo of the
	// message's first bytes was still being written, the write's.
	if err := e.WaitClosed(t); err == nil {
		t.Error("Closed(nil) after too big a message, want an error")
	}
}

// A client that connects and never finishes its request is dropped after
// HandshakeTimeout.
func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, serverOptions{ws: ws.Options{HandshakeTimeout: 200 * time.Millisecond}})
	for _, partial := range []string{"", "GET /mqtt HTTP/1.1\r\nHost: x\r\n"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "ws://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.Write([]byte(partial))
		c.SetReadDeadline(time.Now().Add(echotest.Timeout))
		io.Copy(io.Discard, c)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("request %q: dropped after %v, want about 200ms", partial, d)
		}
	}
}

// Closing the listener refuses new connections, ends Accept with
// net.ErrClosed, and closes a connection upgraded but not yet accepted.
func TestListenerClose(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ws.Listen(tcp, ws.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	url := "ws://" + l.Addr().String() + "/mqtt"
	// Nobody accepts: the upgrade succeeds and the connection waits.
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// A client that has sent half a request.
	half, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET /mqtt HTTP/1.1\r\n"))

	accepted := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, err := l.Accept() // takes the waiting connection
		if err == nil {
			_, err = l.Accept()
		}
		accepted <- err
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	if err := echotest.Receive(t, closed, "Listener.Close"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := echotest.Receive(t, accepted, "Accept to return"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	half.SetReadDeadline(time.Now().Add(echotest.Timeout))
	if _, err := io.Copy(io.Discard, half); err != nil && !isReset(err) {
		t.Errorf("half-sent request after Close: %v, want the connection closed", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("dial after Close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseWithUnacceptedConnection(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ws.Listen(tcp, ws.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+l.Addr().String()+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read on a connection never accepted, after Close: %v, want it closed", err)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// wss: the same over TLS, with a client certificate the endpoint reads
// through listener.Underlying as it would over plain TLS.
func TestWSSWithClientCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	serverConf := &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, 1).TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	clientConf := &tls.Config{
		RootCAs:      ca.Pool(),
		Certificates: []tls.Certificate{ca.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "browser-1"}}).TLS},
	}
	final := echotest.Pattern(300<<10, 5)
	s := startServer(t, serverOptions{tls: serverConf, clientTLS: clientConf, final: final})
	if !strings.HasPrefix(s.url, "wss://") {
		t.Fatalf("url %s, want wss", s.url)
	}
	c := s.mustDial(t)
	if got := c.Subprotocol(); got != "mqtt" {
		t.Errorf("negotiated subprotocol %q over wss, want mqtt", got)
	}
	e := s.h.Next(t)
	nc := stream(t, c)
	echotest.Echo(t, nc, echotest.Pattern(1<<20, 6), 6)

	st, ok := e.Conn.(listener.Underlying).NetConn().(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		t.Fatalf("the served connection %T has no ConnectionState", e.Conn.(listener.Underlying).NetConn())
	}
	cs := st.ConnectionState()
	if len(cs.VerifiedChains) == 0 || cs.VerifiedChains[0][0].Subject.CommonName != "browser-1" {
		t.Errorf("client certificate over wss: verified chains %v, want browser-1's", cs.VerifiedChains)
	}

	if _, err := nc.Write([]byte(echotest.Bye)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Errorf("reading the final bytes over wss: %v", err)
	}
	echotest.SameBytes(t, "final bytes over wss", got, final)
	if err := e.WaitClosed(t); err != nil {
		t.Errorf("Closed(%v), want nil", err)
	}

	// Without a client certificate the TLS handshake fails.
	s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	if _, _, err := s.dial(t, []string{"mqtt"}, nil); err == nil {
		t.Error("wss without a client certificate connected")
	}
}

// Plain ws offers no TLS state.
func TestPlainConnectionState(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.mustDial(t)
	e := s.h.Next(t)
	nc := e.Conn.(listener.Underlying).NetConn()
	wc, ok := nc.(*ws.Conn)
	if !ok {
		t.Fatalf("the served connection is %T, want *ws.Conn", nc)
	}
	if cs := wc.ConnectionState(); cs.HandshakeComplete || len(cs.PeerCertificates) != 0 {
		t.Errorf("ConnectionState over plain ws: %+v, want the zero value", cs)
	}
	if wc.Subprotocol() != "mqtt" {
		t.Errorf("Subprotocol() = %q, want mqtt", wc.Subprotocol())
	}
}

// A raw upgrade request, to check the exact response headers, with a
// binary frame sent in the same write as the request: bytes the HTTP
// server read ahead must reach the stream.
func TestRawHandshake(t *testing.T) {
	for _, size := range []int{5, 3000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { rawHandshake(t, size) })
	}
}

func rawHandshake(t *testing.T, size int) {
	s := startServer(t, serverOptions{})
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(echotest.Timeout))
	early := echotest.Pattern(size, 7)
	req := "GET /mqtt HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: mqtt\r\n\r\n"
	if _, err := c.Write(append([]byte(req), maskedFrame(early)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("Sec-WebSocket-Protocol %q, want mqtt", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q, want RFC 6455's example answer", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Errorf("Sec-WebSocket-Extensions %q, want none (no compression)", got)
	}
	var echo []byte
	for len(echo) < len(early) {
		payload, err := readServerFrame(br)
		if err != nil {
			t.Fatalf("reading the echo after %d bytes: %v", len(echo), err)
		}
		echo = append(echo, payload...)
	}
	echotest.SameBytes(t, "echo of the frame sent with the request", echo, early)
}

// maskedFrame is a client's binary frame holding p.
func maskedFrame(p []byte) []byte {
	f := []byte{0x82}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	default:
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, key...)
	for i, b := range p {
		f = append(f, b^key[i%4])
	}
	return f
}

// readServerFrame reads one unmasked binary frame and returns its payload.
func readServerFrame(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0] != 0x82 || h[1]&0x80 != 0 {
		return nil, fmt.Errorf("frame header % x, want an unmasked final binary frame", h)
	}
	n := int(h[1])
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return nil, err
		}
		n = int(ext[0])<<8 | int(ext[1])
	case 127:
		return nil, errors.New("a 64-bit frame length in a test that sends little")
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}
