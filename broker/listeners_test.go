package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/tlsconf"
)

// Every kind of listener, driven by clients we did not write: Eclipse
// Paho's MQTT 3.1.1 client over TCP, TLS, WebSocket, secure WebSocket and a
// unix socket, Paho's MQTT 5 client over coder/websocket; TLS with and
// without client certificates, the user name taken from a certificate and
// given to the ACL, and certificates replaced on disk while the broker runs.

// tlsFiles writes the server's certificate and key, and the client CA when
// there is one, into dir, and returns the tlsconf configuration naming them.
func tlsFiles(t *testing.T, dir string, server *testpki.Leaf, clientCA *testpki.CA) tlsconf.Config {
	t.Helper()
	cfg := tlsconf.Config{
		CertFile:      filepath.Join(dir, "cert.pem"),
		KeyFile:       filepath.Join(dir, "key.pem"),
		CheckInterval: 10 * time.Millisecond,
		Logger:        testlog.New(t),
	}
	testpki.WriteFile(t, cfg.KeyFile, server.KeyPEM)
	testpki.WriteFile(t, cfg.CertFile, server.CertPEM)
	if clientCA != nil {
		cfg.ClientCAFile = filepath.Join(dir, "clients.pem")
		cfg.ClientAuth = tlsconf.ClientAuthRequire
		testpki.WriteFile(t, cfg.ClientCAFile, clientCA.PEM)
	}
	return cfg
}

// tlsListener is a listener's TLS configuration, from tlsconf as the
// broker's configuration would make it.
func tlsListener(t *testing.T, cfg tlsconf.Config) *tls.Config {
	t.Helper()
	r, err := tlsconf.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r.TLSConfig()
}

// pahoOn returns Paho 3.1.1 client options for brokerURL.
func pahoOn(brokerURL, clientID string, conf *tls.Config) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(wiretest.Timeout).
		SetWriteTimeout(wiretest.Timeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	if conf != nil {
		o.SetTLSConfig(conf)
	}
	return o
}

// pahoTryConnect connects and returns the error, disconnecting at the end
// of the test if it got in.
func pahoTryConnect(t *testing.T, o *mqtt.ClientOptions) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wiretest.Timeout) {
		t.Fatalf("paho connect: no answer within %v", wiretest.Timeout)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// Paho's 3.1.1 client works over each kind of listener, and every listener
// feeds the same broker: a subscriber on TCP receives what is published
// over TLS, WebSocket, secure WebSocket and the unix socket.
// [MQTT-6.0.0-4] v3.1.1
// [MQTT-7.0.0-2] v3.1.1
func TestListenersWithPaho(t *testing.T) {
	ca := testpki.NewCA(t, "petrel test CA")
	dir := shortTempDir(t)
	tlsCfg := tlsFiles(t, dir, ca.Server(t, 1), nil)
	sock := filepath.Join(dir, "mqtt.sock")
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "tcp", Address: "127.0.0.1:0"},
		{Name: "tls", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, tlsCfg)},
		{Name: "ws", Kind: "ws", Address: "127.0.0.1:0"},
		{Name: "wss", Kind: "wss", Address: "127.0.0.1:0", TLS: tlsListener(t, tlsCfg)},
		{Name: "unix", Kind: "unix", Address: sock},
	}}, nil)
	a := srv.Addrs()
	clientTLS := &tls.Config{RootCAs: ca.Pool()}
	kinds := []struct {
		name, url string
		conf      *tls.Config
	}{
		{"tcp", "tcp://" + a[0].String(), nil},
		{"tls", "ssl://" + a[1].String(), clientTLS},
		{"ws", "ws://" + a[2].String() + "/mqtt", nil},
		{"wss", "wss://" + a[3].String() + "/mqtt", clientTLS},
		{"unix", "unix://" + sock, nil},
	}

	all := newInbox()
	watcher, err := pahoTryConnect(t, pahoOn(kinds[0].url, "watcher", nil))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, watcher.Subscribe("kinds/#", 1, all.handler), "watcher subscribes")

	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			c, err := pahoTryConnect(t, pahoOn(k.url, "paho-"+k.name, k.conf))
			if err != nil {
				t.Fatalf("paho over %s: %v", k.url, err)
			}
			own := newInbox()
			topic := "kinds/" + k.name
			wait(t, c.Subscribe(topic, 1, own.handler), "subscribe")
			wait(t, c.Publish(topic, 1, false, "over "+k.name), "publish")
			for _, in := range []inbox{own, all} {
				if m := in.next(t); m.Topic() != topic || string(m.Payload()) != "over "+k.name {
					t.Fatalf("got %s=%q, want %s=%q", m.Topic(), m.Payload(), topic, "over "+k.name)
				}
			}
		})
	}

	t.Run("raw MQTT 5 over the unix socket", func(t *testing.T) {
		c := secDial(t, "unix", sock, "raw-unix", packet.V5)
		if ack := c.connect(connectPacket(packet.V5, "raw-unix")); ack.Code != packet.Success {
			t.Fatalf("CONNACK 0x%02x; a unix socket is local and lets anonymous clients in", byte(ack.Code))
		}
		if code := c.publish(1, 1, "kinds/raw-unix", "raw", false); code != packet.Success {
			t.Fatalf("PUBACK 0x%02x, want 0x00 (the watcher subscribes)", byte(code))
		}
		if m := all.next(t); m.Topic() != "kinds/raw-unix" {
			t.Fatalf("watcher got %s, want kinds/raw-unix", m.Topic())
		}
		c.ping()
	})

	t.Run("TLS before 1.2 is refused", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			conf := &tls.Config{RootCAs: ca.Pool(), MinVersion: v, MaxVersion: v}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: wiretest.Timeout}, "tcp", a[1].String(), conf)
			if err == nil {
				c.Close()
				t.Errorf("a TLS 0x%04x handshake succeeded; want TLS 1.2 or later only", v)
				continue
			}
			t.Logf("TLS 0x%04x: %v", v, err)
		}
	})
}

// wsDial opens an MQTT-over-WebSocket stream with coder/websocket and
// checks the subprotocol the broker chose.
func wsDial(t *testing.T, url string, conf *tls.Config) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	opts := &websocket.DialOptions{Subprotocols: []string{"mqtt"}}
	if conf != nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	}
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	if got := c.Subprotocol(); got != "mqtt" {
		t.Errorf("WebSocket subprotocol %q, want mqtt [MQTT-6.0.0-4]", got)
	}
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	return nc, nil
}

// Paho's MQTT 5 client over coder/websocket, on ws and wss listeners
// serving a path of their own: the path is served, others are not, and the
// subprotocol is mqtt.
// [MQTT-6.0.0-4] v5
func TestWebSocketWithPahoV5(t *testing.T) {
	ca := testpki.NewCA(t, "petrel test CA")
	tlsCfg := tlsFiles(t, t.TempDir(), ca.Server(t, 1), nil)
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "ws", Kind: "ws", Address: "127.0.0.1:0", WebSocketPath: "/broker"},
		{Name: "wss", Kind: "wss", Address: "127.0.0.1:0", TLS: tlsListener(t, tlsCfg)},
	}}, nil)
	a := srv.Addrs()
	clientTLS := &tls.Config{RootCAs: ca.Pool()}
	if _, err := wsDial(t, "ws://"+a[0].String()+"/mqtt", nil); err == nil {
		t.Error("the ws listener serving /broker upgraded /mqtt")
	}
	for _, k := range []struct {
		name, url string
		conf      *tls.Config
	}{
		{"ws", "ws://" + a[0].String() + "/broker", nil},
		{"wss", "wss://" + a[1].String() + "/mqtt", clientTLS},
	} {
		t.Run(k.name, func(t *testing.T) {
			nc, err := wsDial(t, k.url, k.conf)
			if err != nil {
				t.Fatalf("WebSocket %s: %v", k.url, err)
			}
			msgs := make(chan *paho.Publish, 10)
			c := paho.NewClient(paho.ClientConfig{
				Conn: nc,
				OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
					msgs <- pr.Packet
					return true, nil
				}},
				OnClientError: func(error) {},
			})
			ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
			defer cancel()
			// No keep alive: paho.golang writes a packet in several Writes
			// (net.Buffers, one writev on TCP only) and its pinger's PINGREQ
			// can land in the middle of one on any other net.Conn.
			if ack, err := c.Connect(ctx, &paho.Connect{ClientID: "v5-" + k.name, CleanStart: true}); err != nil || ack.ReasonCode != 0 {
				t.Fatalf("paho.golang connect: %+v, %v", ack, err)
			}
			defer c.Disconnect(&paho.Disconnect{})
			topic := "ws/" + k.name
			if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("v5 over " + k.name)}); err != nil {
				t.Fatalf("publish: %v", err)
			}
			select {
			case m := <-msgs:
				if m.Topic != topic || string(m.Payload) != "v5 over "+k.name {
					t.Fatalf("got %s=%q", m.Topic, m.Payload)
				}
			case <-time.After(wiretest.Timeout):
				t.Fatal("no message")
			}
		})
	}
}

// expectCertRefused dials addr with conf and requires the TLS layer to
// refuse: in the handshake (TLS 1.2), or, since a TLS 1.3 client finishes
// its handshake before the server has checked its certificate, with an
// alert on the first read. Nothing MQTT may come back.
func expectCertRefused(t *testing.T, addr string, conf *tls.Config) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: wiretest.Timeout}, "tcp", addr, conf)
	if err != nil {
		t.Logf("refused in the handshake: %v", err)
		return
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(wiretest.Timeout))
	connect, _ := packet.Append(nil, connectPacket(packet.V311, "no-cert"), packet.V311)
	nc.Write(connect)
	n, err := nc.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("the broker answered %d bytes to a client without a valid certificate", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("the connection stayed open: want the handshake refused")
	case !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls"):
		t.Fatalf("read error %v: want a TLS alert about the certificate", err)
	}
	t.Logf("refused after the handshake: %v", err)
}

// insistOn makes a client present cert whatever authorities the server
// names (crypto/tls would otherwise send none that they did not sign).
func insistOn(conf *tls.Config, cert *testpki.Leaf) *tls.Config {
	if cert != nil {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	return conf
}

// A TLS listener that requires client certificates refuses, at the TLS
// layer, a client without one and a client whose certificate another
// authority signed, over TLS 1.2 and 1.3 and on wss too; a client with a
// good certificate is served.
func TestTLSClientCertificateRequired(t *testing.T) {
	ca, other := testpki.NewCA(t, "petrel client CA"), testpki.NewCA(t, "someone else's CA")
	cfg := tlsFiles(t, t.TempDir(), ca.Server(t, 1), ca)
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "mtls", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg)},
		{Name: "mwss", Kind: "wss", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg)},
	}}, nil)
	addr, wssAddr := srv.Addrs()[0].String(), srv.Addrs()[1].String()
	good := clientCert(t, ca, "device-1")
	stranger := clientCert(t, other, "device-1")

	t.Run("a good certificate is served", func(t *testing.T) {
		conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{good.TLS}}
		c, err := pahoTryConnect(t, pahoOn("ssl://"+addr, "device-1", conf))
		if err != nil {
			t.Fatalf("paho with a good client certificate: %v", err)
		}
		in := newInbox()
		wait(t, c.Subscribe("d/1", 1, in.handler), "subscribe")
		wait(t, c.Publish("d/1", 1, false, "hi"), "publish")
		in.next(t)
		if _, err := wsDial(t, "wss://"+wssAddr+"/mqtt", conf); err != nil {
			t.Errorf("wss with a good client certificate: %v", err)
		}
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range []struct {
			name string
			cert *testpki.Leaf
		}{{"no certificate", nil}, {"certificate of another CA", stranger}} {
			t.Run(fmt.Sprintf("%s, TLS 0x%04x", tc.name, v), func(t *testing.T) {
				expectCertRefused(t, addr, insistOn(&tls.Config{RootCAs: ca.Pool(), MinVersion: v, MaxVersion: v}, tc.cert))
			})
		}
	}
	t.Run("paho without a certificate", func(t *testing.T) {
		if _, err := pahoTryConnect(t, pahoOn("ssl://"+addr, "no-cert", &tls.Config{RootCAs: ca.Pool()})); err == nil {
			t.Fatal("paho connected without a client certificate")
		}
	})
	t.Run("wss without a certificate", func(t *testing.T) {
		if _, err := wsDial(t, "wss://"+wssAddr+"/mqtt", &tls.Config{RootCAs: ca.Pool()}); err == nil {
			t.Fatal("a wss upgrade succeeded without a client certificate")
		}
	})
}

// On a listener that takes the user name from the client certificate
// (UsernameFrom "cn" or "san"), the certificate's name is the user the ACL
// knows, whatever CONNECT claims, and no password is asked; a certificate
// without that name gets no identity from it.
func TestTLSUsernameFromCertificate(t *testing.T) {
	acl, err := auth.LoadACLFile("testdata/security/acl.conf")
	if err != nil {
		t.Fatal(err)
	}
	authn := &goAuth{release: make(chan struct{})}
	ca := testpki.NewCA(t, "petrel client CA")
	cfg := tlsFiles(t, t.TempDir(), ca.Server(t, 1), ca)
	no := false
	srv := secStart(t, Options{Authenticator: authn, Authorizer: acl, Listeners: []ListenerConfig{
		{Name: "tcp", Address: "127.0.0.1:0", AllowAnonymous: &no},
		{Name: "by-cn", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg), UsernameFrom: "cn", AllowAnonymous: &no},
		{Name: "by-san", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg), UsernameFrom: "san", AllowAnonymous: &no},
	}}, quickThrottle)
	a := srv.Addrs()
	admin := secMustConnect(t, a[0].String(), withLogin(connectPacket(packet.V5, "admin-1"), "admin", "gopher-admin"))
	admin.mustSubscribe(1, 0, "#")

	for _, tc := range []struct {
		listener string
		addr     string
		cert     *testpki.Leaf
	}{
		{"by-cn", a[1].String(), clientCert(t, ca, "sensor-7")},
		{"by-san", a[2].String(), clientCert(t, ca, "not-a-user", "sensor-7")},
	} {
		t.Run(tc.listener, func(t *testing.T) {
			conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{tc.cert.TLS}}
			for _, version := range []byte{packet.V311, packet.V5} {
				c, err := secTLSDial(t, tc.addr, "sensor", version, conf)
				if err != nil {
					t.Fatal(err)
				}
				// It claims to be admin, with a wrong password.
				p := withLogin(connectPacket(version, fmt.Sprint("sensor-", tc.listener, version)), "admin", "wrong")
				if ack := c.connect(p); ack.Code != packet.Success {
					t.Fatalf("v%d: CONNACK 0x%02x; the certificate proves the identity", version, byte(ack.Code))
				}
				mine := fmt.Sprintf("sensors/7/%s-v%d", tc.listener, version)
				if code := c.publish(1, 1, mine, "21.5", false); code != packet.Success {
					t.Errorf("v%d: publish to %s: 0x%02x, want 0x00", version, mine, byte(code))
				}
				// admin could; sensor-7 may not.
				code := c.publish(2, 1, "home/alice/x", "x", false)
				if want := map[byte]packet.ReasonCode{packet.V311: packet.Success, packet.V5: packet.NotAuthorized}[version]; code != want {
					t.Errorf("v%d: publish to home/alice/x: 0x%02x, want 0x%02x", version, byte(code), byte(want))
				}
				c.publish(3, 1, "sensors/7/end", "", false)
				if got := admin.until("sensors/7/end"); !slices.Equal(got, []string{mine + "=21.5"}) {
					t.Errorf("v%d: admin got %q, want only %s", version, got, mine)
				}
				// Without a user name at all, on a listener that refuses
				// anonymous clients: the certificate is the identity.
				c2, err := secTLSDial(t, tc.addr, "sensor-anon", version, conf)
				if err != nil {
					t.Fatal(err)
				}
				if ack := c2.connect(connectPacket(version, fmt.Sprint("sensor-anon-", tc.listener, version))); ack.Code != packet.Success {
					t.Errorf("v%d without a user name: CONNACK 0x%02x, want 0x00", version, byte(ack.Code))
				}
			}
		})
	}

	t.Run("a certificate without the name", func(t *testing.T) {
		conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert(t, ca, "").TLS}}
		c, err := secTLSDial(t, a[1].String(), "nameless", packet.V5, conf)
		if err != nil {
			t.Fatal(err)
		}
		ack := c.connect(withLogin(connectPacket(packet.V5, "nameless"), "admin", "wrong"))
		expectRefused(t, c, ack, packet.BadUserNameOrPassword)
	})

	authn.mu.Lock()
	defer authn.mu.Unlock()
	for _, c := range authn.seen {
		if c.Listener != "tcp" && c.ClientID != "nameless" {
			t.Errorf("the authenticator was asked about %+v; a certificate identity needs no password", c)
		}
	}
}

// A UsernameFrom that tlsconf.IdentityFrom does not know is an error from
// Start, not a listener that quietly takes the user name from CONNECT.
func TestUsernameFromChecked(t *testing.T) {
	for _, from := range []string{"CN", "subject", "san:ip"} {
		srv := New(Options{Logger: testlog.New(t), Listeners: []ListenerConfig{
			{Name: "by-cert", Kind: "tls", Address: "127.0.0.1:0", TLS: &tls.Config{}, UsernameFrom: from},
		}})
		err := srv.Start()
		if err == nil {
			srv.Close()
			t.Errorf("UsernameFrom %q: Start succeeded", from)
			continue
		}
		if !strings.Contains(err.Error(), "by-cert") || !strings.Contains(err.Error(), strconv.Quote(from)) {
			t.Errorf("UsernameFrom %q: error %q names neither the listener nor the value", from, err)
		}
	}
}

// Certificates replaced on disk are used by the next connection, without
// a restart: the server certificate and the client CA. Connections made
// before go on.
func TestTLSCertificateRotation(t *testing.T) {
	ca1, ca2 := testpki.NewCA(t, "CA 1"), testpki.NewCA(t, "CA 2")
	dir := t.TempDir()
	cfg := tlsFiles(t, dir, ca1.Server(t, 1), ca1)
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "tls", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg)},
	}}, nil)
	addr := srv.Addrs()[0].String()
	conf := func(ca *testpki.CA, cn string) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert(t, ca, cn).TLS}}
	}
	serial := func(c *secClient) int64 {
		return c.nc.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}

	before, err := secTLSDial(t, addr, "before", packet.V5, conf(ca1, "before"))
	if err != nil {
		t.Fatal(err)
	}
	if s := serial(before); s != 1 {
		t.Fatalf("server certificate serial %d, want 1", s)
	}
	if ack := before.connect(connectPacket(packet.V5, "before")); ack.Code != packet.Success {
		t.Fatalf("CONNACK 0x%02x", byte(ack.Code))
	}

	// The files are replaced one by one, as certificate tools do.
	next := ca2.Server(t, 2)
	testpki.WriteFile(t, cfg.KeyFile, next.KeyPEM)
	testpki.WriteFile(t, cfg.CertFile, next.CertPEM)
	testpki.WriteFile(t, cfg.ClientCAFile, ca2.PEM)

	var after *secClient
	wiretest.Eventually(t, "a new connection gets the new certificate", func() bool {
		c, err := secTLSDial(t, addr, "after", packet.V5, conf(ca2, "after"))
		if err != nil {
			return false
		}
		after = c
		return true
	})
	if s := serial(after); s != 2 {
		t.Fatalf("after the rotation: server certificate serial %d, want 2", s)
	}
	if ack := after.connect(connectPacket(packet.V5, "after")); ack.Code != packet.Success {
		t.Fatalf("after the rotation: CONNACK 0x%02x", byte(ack.Code))
	}
	// A certificate of the old client CA is no longer accepted.
	expectCertRefused(t, addr, insistOn(&tls.Config{RootCAs: ca2.Pool()}, clientCert(t, ca1, "old")))
	// The connection made before goes on.
	before.ping()
	after.ping()
}

// MQTT over WebSocket with frames that do not line up with packets: one
// binary message holding CONNECT, SUBSCRIBE and PINGREQ, then a PUBLISH
// split over three messages. The broker answers in binary messages only,
// and a text message closes the connection.
// [MQTT-6.0.0-1] v3.1.1
// [MQTT-6.0.0-2] v3.1.1
// [MQTT-6.0.0-1] v5
// [MQTT-6.0.0-2] v5
func TestWebSocketFramesAndPackets(t *testing.T) {
	srv := secStart(t, Options{Listeners: []ListenerConfig{{Name: "ws", Kind: "ws", Address: "127.0.0.1:0"}}}, nil)
	url := "ws://" + srv.Addrs()[0].String() + "/mqtt"
	for _, version := range []byte{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("version ", version), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
			if err != nil {
				t.Fatalf("dial %s: %v", url, err)
			}
			defer ws.CloseNow()
			enc := func(ps ...packet.Packet) []byte {
				var b []byte
				for _, p := range ps {
					if b, err = packet.Append(b, p, version); err != nil {
						t.Fatalf("encode %s: %v", p.Type(), err)
					}
				}
				return b
			}
			send := func(typ websocket.MessageType, b []byte) {
				t.Helper()
				if err := ws.Write(ctx, typ, b); err != nil {
					t.Fatalf("write a message of %d bytes: %v", len(b), err)
				}
			}
			// next returns the broker's next packet, read from as many binary
			// messages as it takes.
			var buf []byte
			dec := packet.Decoder{Version: version}
			next := func() (packet.Packet, error) {
				for {
					p, n, err := wiretest.Decode(&dec, buf)
					if err == nil {
						buf = buf[n:]
						return p, nil
					}
					if err != packet.ErrIncomplete {
						return nil, err
					}
					typ, b, err := ws.Read(ctx)
					if err != nil {
						return nil, err
					}
					if typ != websocket.MessageBinary {
						t.Fatalf("the broker sent a %v message, want binary only", typ)
					}
					buf = append(buf, b...)
				}
			}
			expect := func(want ...packet.Type) {
				t.Helper()
				for _, w := range want {
					p, err := next()
					if err != nil || p.Type() != w {
						t.Fatalf("want %s, got %v (%v)", w, p, err)
					}
				}
			}

			send(websocket.MessageBinary, enc(
				&packet.Connect{Version: version, CleanStart: true, ClientID: "frames", KeepAlive: 60},
				&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "ws/frames", QoS: 1}}},
				&packet.Pingreq{}))
			expect(packet.CONNACK, packet.SUBACK, packet.PINGRESP)

			pub := enc(&packet.Publish{Topic: "ws/frames", QoS: 1, PacketID: 7, Payload: []byte("in three pieces")})
			send(websocket.MessageBinary, pub[:1])
			send(websocket.MessageBinary, pub[1:6])
			send(websocket.MessageBinary, append(pub[6:], enc(&packet.Pingreq{})...))
			var got *packet.Publish
			acked := false
			for !acked || got == nil {
				p, err := next()
				switch p := p.(type) {
				case *packet.Ack:
					acked = p.Kind == packet.PUBACK && p.PacketID == 7
				case *packet.Publish:
					got = p
				}
				if err != nil || (p.Type() != packet.PUBACK && p.Type() != packet.PUBLISH) {
					t.Fatalf("want PUBACK 7 and the PUBLISH, got %v (%v)", p, err)
				}
			}
			if string(got.Payload) != "in three pieces" || got.QoS != 1 {
				t.Fatalf("got %q at QoS %d, want %q at QoS 1", got.Payload, got.QoS, "in three pieces")
			}
			expect(packet.PINGRESP)
			send(websocket.MessageBinary, enc(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID}))

			send(websocket.MessageText, enc(&packet.Pingreq{}))
			p, err := next()
			if err == nil {
				t.Fatalf("after a text message the broker sent %s, want the connection closed", p.Type())
			}
			if ctx.Err() != nil {
				t.Fatalf("the connection is still open %v after a text message", wiretest.Timeout)
			}
			if s := websocket.CloseStatus(err); s != websocket.StatusUnsupportedData {
				t.Logf("closed with %v (status %d)", err, s)
			}
		})
	}
}
