package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/internal/listener/echotest"
	"github.com/petrelmq/petrel/internal/testpki"
)

// files is a listener's certificate files in a temporary directory.
type files struct {
	dir            string
	cert, key, ca  string
	serverCA       *testpki.CA // signs the server certificates
	clientCA       *testpki.CA // written to the client CA file
	serverRootPool *x509.CertPool
}

func newFiles(t *testing.T) *files {
	dir := t.TempDir()
	f := &files{
		dir:      dir,
		cert:     filepath.Join(dir, "server.crt"),
		key:      filepath.Join(dir, "server.key"),
		ca:       filepath.Join(dir, "clients-ca.crt"),
		serverCA: testpki.NewCA(t, "server CA"),
		clientCA: testpki.NewCA(t, "client CA"),
	}
	f.serverRootPool = f.serverCA.Pool()
	f.rotate(t, 1)
	testpki.WriteFile(t, f.ca, f.clientCA.PEM)
	return f
}

// rotate writes a new server certificate with this serial number.
func (f *files) rotate(t *testing.T, serial int64) {
	t.Helper()
	leaf := f.serverCA.Server(t, serial)
	testpki.WriteFile(t, f.cert, leaf.CertPEM)
	testpki.WriteFile(t, f.key, leaf.KeyPEM)
}

func (f *files) config(auth ClientAuth) Config {
	c := Config{CertFile: f.cert, KeyFile: f.key, ClientAuth: auth}
	if auth == ClientAuthRequest || auth == ClientAuthRequire {
		c.ClientCAFile = f.ca
	}
	return c
}

func (f *files) client(cert *testpki.Leaf) *tls.Config {
	c := &tls.Config{RootCAs: f.serverRootPool, ServerName: "localhost"}
	if cert != nil {
		// Always send it: with Certificates, Go's client holds back a
		// certificate whose issuer the server did not list.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert.TLS, nil
		}
	}
	return c
}

// result is what one handshake showed on each side.
type result struct {
	server    tls.ConnectionState
	serverErr error
	client    tls.ConnectionState
	clientErr error
}

// handshake connects a client to a server using serverConf over loopback.
// The server writes "ok" once its handshake succeeded, and the client reads
// it: in TLS 1.3 the client finishes before the server checked its
// certificate, so only that read shows a refusal.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res result
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverConf)
		ctx, cancel := context.WithTimeout(context.Background(), echotest.Timeout)
		defer cancel()
		if res.serverErr = tc.HandshakeContext(ctx); res.serverErr != nil {
			return
		}
		res.server = tc.ConnectionState()
		tc.Write([]byte("ok"))
		tc.SetReadDeadline(time.Now().Add(echotest.Timeout))
		io.Copy(io.Discard, tc) // until the client closes
	}()
	d := &net.Dialer{Timeout: echotest.Timeout}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), clientConf)
	if err == nil {
		c.SetDeadline(time.Now().Add(echotest.Timeout))
		var ok [2]byte
		if _, err = io.ReadFull(c, ok[:]); err == nil {
			res.client = c.ConnectionState()
		}
		c.Close()
	}
	res.clientErr = err
	echotest.Receive(t, done, "the server side of the handshake")
	return res
}

func (r result) ok() bool { return r.serverErr == nil && r.clientErr == nil }

func (r result) serial() int64 {
	if len(r.client.PeerCertificates) == 0 {
		return 0
	}
	return r.client.PeerCertificates[0].SerialNumber.Int64()
}

func newReloader(t *testing.T, cfg Config) (*Reloader, *logs) {
	t.Helper()
	l := &logs{}
	cfg.Logger = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, l
}

// Each ClientAuth mode, with no client certificate, one from the client CA
// and one from an authority the server does not trust.
func TestClientAuthModes(t *testing.T) {
	f := newFiles(t)
	trusted := f.clientCA.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}})
	stranger := testpki.NewCA(t, "stranger CA").Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "mallory"}})
	type want struct{ noCert, trusted, stranger bool }
	for _, tc := range []struct {
		auth ClientAuth
		want want
	}{
		{"", want{true, true, true}},
		{ClientAuthNone, want{true, true, true}},
		{ClientAuthRequest, want{true, true, false}},
		{ClientAuthRequire, want{false, true, false}},
	} {
		t.Run(string(tc.auth), func(t *testing.T) {
			r, _ := newReloader(t, f.config(tc.auth))
			conf := r.TLSConfig()
			for _, c := range []struct {
				name   string
				cert   *testpki.Leaf
				wantOK bool
			}{
				{"no certificate", nil, tc.want.noCert},
				{"trusted certificate", trusted, tc.want.trusted},
				{"untrusted certificate", stranger, tc.want.stranger},
			} {
				res := handshake(t, conf, f.client(c.cert))
				if res.ok() != c.wantOK {
					t.Errorf("%s: handshake ok=%v (server: %v, client: %v), want ok=%v",
						c.name, res.ok(), res.serverErr, res.clientErr, c.wantOK)
					continue
				}
				if !res.ok() {
					continue
				}
				id, verified := IdentityFrom(res.server, "cn")
				wantVerified := c.cert == trusted && tc.auth != "" && tc.auth != ClientAuthNone
				if verified != wantVerified || (verified && id != "alice") {
					t.Errorf("%s: IdentityFrom = %q, %v; want alice verified=%v", c.name, id, verified, wantVerified)
				}
				if res.server.Version < tls.VersionTLS12 {
					t.Errorf("%s: negotiated version 0x%x, below TLS 1.2", c.name, res.server.Version)
				}
			}
		})
	}
}

func TestMinVersion(t *testing.T) {
	f := newFiles(t)
	for _, tc := range []struct {
		min, clientMax uint16
		wantOK         bool
	}{
		{0, tls.VersionTLS11, false}, // TLS 1.2 by default
		{0, tls.VersionTLS12, true},
		{tls.VersionTLS13, tls.VersionTLS12, false},
		{tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		cfg := f.config(ClientAuthNone)
		cfg.MinVersion = tc.min
		r, _ := newReloader(t, cfg)
		client := f.client(nil)
		client.MinVersion, client.MaxVersion = tls.VersionTLS10, tc.clientMax
		if res := handshake(t, r.TLSConfig(), client); res.ok() != tc.wantOK {
			t.Errorf("min 0x%x, client max 0x%x: handshake ok=%v (%v, %v), want %v",
				tc.min, tc.clientMax, res.ok(), res.serverErr, res.clientErr, tc.wantOK)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	f := newFiles(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no files", Config{}, "certificate file and a key file are required"},
		{"CA without client auth", Config{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca}, "client_auth is none"},
		{"client auth without CA", Config{CertFile: f.cert, KeyFile: f.key, ClientAuth: ClientAuthRequire}, "needs a client CA file"},
		{"unknown client auth", Config{CertFile: f.cert, KeyFile: f.key, ClientAuth: "optional"}, `"optional" is not none`},
		{"unknown version", Config{CertFile: f.cert, KeyFile: f.key, MinVersion: 0x0200}, "unknown minimum version"},
		{"missing cert", Config{CertFile: f.cert + ".missing", KeyFile: f.key}, "no such file"},
		{"key of another cert", Config{CertFile: f.cert, KeyFile: writeTemp(t, f.serverCA.Server(t, 9).KeyPEM)}, "private key does not match"},
		{"CA file without certificates", Config{CertFile: f.cert, KeyFile: f.key, ClientAuth: ClientAuthRequest,
			ClientCAFile: writeTemp(t, []byte("not PEM"))}, "no PEM certificate"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseVersion("1.3"); err != nil {
		t.Errorf("ParseVersion(1.3): %v", err)
	}
	if _, err := ParseVersion("TLS1.3"); err == nil {
		t.Error("ParseVersion(TLS1.3) succeeded, want an error")
	}
}

func writeTemp(t *testing.T, data []byte) string {
	p := filepath.Join(t.TempDir(), "file.pem")
	testpki.WriteFile(t, p, data)
	return p
}

// New certificate files are picked up by the next handshake once
// CheckInterval has passed; a broken replacement keeps the old certificate
// in service and is logged once; fixing it is picked up again.
func TestRotationWithoutRestart(t *testing.T) {
	f := newFiles(t)
	cfg := f.config(ClientAuthNone)
	cfg.CheckInterval = 50 * time.Millisecond
	r, logs := newReloader(t, cfg)
	conf := r.TLSConfig() // one listener's configuration, kept throughout
	client := f.client(nil)
	if got := handshake(t, conf, client).serial(); got != 1 {
		t.Fatalf("first handshake presented serial %d, want 1", got)
	}

	f.rotate(t, 2)
	time.Sleep(2 * cfg.CheckInterval)
	if got := handshake(t, conf, client).serial(); got != 2 {
		t.Fatalf("after rotating the files the handshake presented serial %d, want 2", got)
	}

	testpki.WriteFile(t, f.cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	for range 3 {
		time.Sleep(2 * cfg.CheckInterval)
		if res := handshake(t, conf, client); !res.ok() || res.serial() != 2 {
			t.Fatalf("with a broken certificate file: ok=%v (%v, %v) serial %d, want the old serial 2",
				res.ok(), res.serverErr, res.clientErr, res.serial())
		}
	}
	if n := strings.Count(logs.String(), "reloading the certificate failed"); n != 1 {
		t.Errorf("the broken file was logged %d times, want once; log:\n%s", n, logs)
	}
	if err := r.Reload(); err == nil {
		t.Error("Reload with a broken certificate file succeeded, want an error")
	}

	// A certificate whose key has not been written yet: also refused.
	testpki.WriteFile(t, f.cert, f.serverCA.Server(t, 3).CertPEM)
	time.Sleep(2 * cfg.CheckInterval)
	if got := handshake(t, conf, client).serial(); got != 2 {
		t.Errorf("with a certificate and a key that do not match: serial %d, want the old 2", got)
	}

	f.rotate(t, 4)
	time.Sleep(2 * cfg.CheckInterval)
	if got := handshake(t, conf, client).serial(); got != 4 {
		t.Errorf("after fixing the files: serial %d, want 4", got)
	}
	if got := r.Certificate().SerialNumber.Int64(); got != 4 {
		t.Errorf("Certificate() has serial %d, want 4", got)
	}
}

// The files are looked at no more than once per CheckInterval, and never
// when it is negative (then only Reload loads them).
func TestCheckInterval(t *testing.T) {
	f := newFiles(t)
	cfg := f.config(ClientAuthNone)
	cfg.CheckInterval = 400 * time.Millisecond
	r, _ := newReloader(t, cfg)
	conf := r.TLSConfig()
	f.rotate(t, 2)
	if got := handshake(t, conf, f.client(nil)).serial(); got != 1 {
		t.Errorf("a handshake within CheckInterval of the last look presented serial %d, want the old 1", got)
	}
	time.Sleep(cfg.CheckInterval + 50*time.Millisecond)
	if got := handshake(t, conf, f.client(nil)).serial(); got != 2 {
		t.Errorf("a handshake after CheckInterval presented serial %d, want 2", got)
	}

	cfg.CheckInterval = -1
	r, _ = newReloader(t, cfg)
	conf = r.TLSConfig()
	f.rotate(t, 3)
	time.Sleep(50 * time.Millisecond)
	if got := handshake(t, conf, f.client(nil)).serial(); got != 2 {
		t.Errorf("with automatic reloads off: serial %d, want 2", got)
	}
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := handshake(t, conf, f.client(nil)).serial(); got != 3 {
		t.Errorf("after Reload: serial %d, want 3", got)
	}
}

// Replacing the client CA file changes which client certificates pass,
// for resumed sessions too.
func TestClientCARotation(t *testing.T) {
	f := newFiles(t)
	cfg := f.config(ClientAuthRequire)
	cfg.CheckInterval = -1
	r, _ := newReloader(t, cfg)
	conf := r.TLSConfig()
	oldClient := f.client(f.clientCA.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "old"}}))
	oldClient.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if res := handshake(t, conf, oldClient); !res.ok() {
		t.Fatalf("client of the first CA: %v, %v", res.serverErr, res.clientErr)
	}
	if res := handshake(t, conf, oldClient); !res.ok() || !res.server.DidResume {
		t.Fatalf("second handshake: ok=%v resumed=%v (%v, %v); want a resumed session",
			res.ok(), res.server.DidResume, res.serverErr, res.clientErr)
	}

	newCA := testpki.NewCA(t, "new client CA")
	testpki.WriteFile(t, f.ca, newCA.PEM)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if res := handshake(t, conf, oldClient); res.ok() {
		t.Errorf("a client of the removed CA still connects (resumed=%v)", res.server.DidResume)
	}
	newClient := f.client(newCA.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "new"}}))
	if res := handshake(t, conf, newClient); !res.ok() {
		t.Errorf("client of the new CA: %v, %v", res.serverErr, res.clientErr)
	}
}

func TestIdentityFrom(t *testing.T) {
	ca := testpki.NewCA(t, "client CA")
	uri, _ := url.Parse("spiffe://example.org/device/7")
	full := ca.Client(t, &x509.Certificate{
		Subject:        pkix.Name{CommonName: "alice", Organization: []string{"Example"}},
		DNSNames:       []string{"alice.example.org", "second.example.org"},
		EmailAddresses: []string{"alice@example.org"},
		URIs:           []*url.URL{uri},
	}).Cert
	emailOnly := ca.Client(t, &x509.Certificate{EmailAddresses: []string{"bob@example.org"}, URIs: []*url.URL{uri}}).Cert
	uriOnly := ca.Client(t, &x509.Certificate{URIs: []*url.URL{uri}}).Cert
	verified := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c, ca.Cert}}}
	}
	for _, tc := range []struct {
		name  string
		state tls.ConnectionState
		from  string
		want  string // "" for none
	}{
		{"cn", verified(full), "cn", "alice"},
		{"dn", verified(full), "dn", "CN=alice,O=Example"},
		{"san prefers DNS", verified(full), "san", "alice.example.org"},
		{"san falls back to e-mail", verified(emailOnly), "san", "bob@example.org"},
		{"san falls back to URI", verified(uriOnly), "san", "spiffe://example.org/device/7"},
		{"san:email", verified(full), "san:email", "alice@example.org"},
		{"san:uri", verified(full), "san:uri", "spiffe://example.org/device/7"},
		{"san:dns absent", verified(uriOnly), "san:dns", ""},
		{"empty cn", verified(uriOnly), "cn", ""},
		{"unknown source", verified(full), "serial", ""},
		{"unverified certificate", tls.ConnectionState{PeerCertificates: []*x509.Certificate{full}}, "cn", ""},
		{"no certificate", tls.ConnectionState{}, "cn", ""},
	} {
		got, ok := IdentityFrom(tc.state, tc.from)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: IdentityFrom(%q) = %q, %v; want %q", tc.name, tc.from, got, ok, tc.want)
		}
	}
	for _, from := range []string{"cn", "dn", "san", "san:dns", "san:email", "san:uri"} {
		if err := CheckIdentitySource(from); err != nil {
			t.Errorf("CheckIdentitySource(%q): %v", from, err)
		}
	}
	if err := CheckIdentitySource("CN"); err == nil {
		t.Error("CheckIdentitySource(CN) accepted it")
	}
}

// The goroutine driver serves the reloader's TLS listener end to end, and
// an endpoint reaches the client's identity through listener.Underlying.
func TestDriverOverTLSWithClientCertificate(t *testing.T) {
	f := newFiles(t)
	r, _ := newReloader(t, f.config(ClientAuthRequire))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	final := echotest.Pattern(256<<10, 2)
	h := echotest.NewHandler(final)
	echotest.Serve(t, tls.NewListener(ln, r.TLSConfig()), h, listener.Options{})

	client := f.client(f.clientCA.Client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "sensor-7"}}))
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(echotest.Timeout))
	e := h.Next(t)
	echotest.Echo(t, c, echotest.Pattern(512<<10, 1), 1)

	u, ok := e.Conn.(listener.Underlying)
	if !ok {
		t.Fatalf("the goroutine driver's Conn %T does not implement listener.Underlying", e.Conn)
	}
	st, ok := u.NetConn().(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		t.Fatalf("NetConn is %T, want a TLS connection", u.NetConn())
	}
	if id, ok := IdentityFrom(st.ConnectionState(), "cn"); id != "sensor-7" || !ok {
		t.Errorf("identity from the served connection = %q, %v; want sensor-7", id, ok)
	}

	if _, err := c.Write([]byte(echotest.Bye)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("reading the final bytes: %v", err)
	}
	echotest.SameBytes(t, "final bytes", got, final)
	if err := e.WaitClosed(t); err != nil {
		t.Errorf("Closed(%v) after a server-side close, want nil", err)
	}
}

// Many handshakes at once while the files change under them: each gets a
// whole certificate (old or new), never a failure.
func TestConcurrentHandshakesDuringRotation(t *testing.T) {
	f := newFiles(t)
	cfg := f.config(ClientAuthNone)
	cfg.CheckInterval = time.Millisecond
	r, _ := newReloader(t, cfg)
	conf := r.TLSConfig()
	stop := make(chan struct{})
	var rotations sync.WaitGroup
	rotations.Go(func() {
		for serial := int64(2); ; serial++ {
			select {
			case <-stop:
				return
			default:
			}
			f.rotate(t, serial)
			time.Sleep(5 * time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if res := handshake(t, conf, f.client(nil)); !res.ok() {
					t.Errorf("handshake during rotation: %v, %v", res.serverErr, res.clientErr)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rotations.Wait()
}

// logs collects a reloader's log lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
