package broker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// MQTT 5 connection tests that need more than a wire script: values the
// broker chooses (assigned client identifiers, SCRAM nonces), server
// shutdown, and Eclipse Paho's MQTT 5 client (paho.golang), an
// implementation we did not write, reading what the broker sends. The
// byte-exact cases are in testdata/wire/v5_connect.txt.

// ctConn is a raw MQTT client connection (a secClient, so a
// wiretest.Client): it sends packets encoded by package packet and decodes
// what the broker answers.
type ctConn struct {
	*secClient
}

func ctDial(t *testing.T, srv *Server, version byte) *ctConn {
	t.Helper()
	return &ctConn{secDial(t, "tcp", srv.Addrs()[0].String(), "client", version)}
}

// connect sends CONNECT in the connection's version and returns the CONNACK.
func (c *ctConn) connect(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	p.Version = c.version
	return c.SendConnect(p)
}

// expectDisconnect checks that the broker sends DISCONNECT with code, and
// then closes the connection.
func (c *ctConn) expectDisconnect(code packet.ReasonCode) *packet.Disconnect {
	c.t.Helper()
	d := c.ExpectDisconnect(code)
	if d.Props.Has(packet.PropSessionExpiry) {
		c.t.Fatalf("the server's DISCONNECT carries a Session Expiry Interval [MQTT-3.14.2-2]")
	}
	return d
}

func ctAs[T packet.Packet](t *testing.T, p packet.Packet) T {
	t.Helper()
	v, ok := p.(T)
	if !ok {
		var want T
		t.Fatalf("want %T, got %s %+v", want, p.Type(), p)
	}
	return v
}

// ctConnect5 is an MQTT 5 CONNECT with a 60 second keep alive.
func ctConnect5(clientID string, cleanStart bool, expiry uint32) *packet.Connect {
	p := &packet.Connect{Version: packet.V5, ClientID: clientID, CleanStart: cleanStart, KeepAlive: 60}
	if expiry != 0 {
		p.Props.SessionExpiry = expiry
		p.Props.Mark(packet.PropSessionExpiry)
	}
	return p
}

func ctExpectConnack(t *testing.T, ca *packet.Connack, code packet.ReasonCode, present bool) {
	t.Helper()
	if ca.Code != code || ca.SessionPresent != present {
		t.Fatalf("CONNACK reason 0x%02x (%q) session present %v; want 0x%02x, session present %v",
			byte(ca.Code), ca.Props.ReasonString, ca.SessionPresent, byte(code), present)
	}
}

// ctPaho connects a paho.golang client. On success it is disconnected
// when the test ends.
func ctPaho(t *testing.T, srv *Server, cfg paho.ClientConfig, cp *paho.Connect) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addrs()[0].String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	cfg.Conn = nc
	cfg.PacketTimeout = wiretest.Timeout
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return c, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

func ctCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// ctInbox collects the messages a paho.golang client receives.
type ctInbox chan *paho.Publish

func (in ctInbox) handler() []func(paho.PublishReceived) (bool, error) {
	return []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		in <- pr.Packet
		return true, nil
	}}
}

func (in ctInbox) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-in:
		return p
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no message within %v", wiretest.Timeout)
		return nil
	}
}

func ctU32(v uint32) *uint32 { return &v }

// ---- Client identifiers ----------------------------------------------------

// An empty client identifier gets one the broker makes up, different for
// each client, announced in CONNACK and usable like any other: a later
// connection with it takes the session over.
// [MQTT-3.1.3-6] v5
// [MQTT-3.1.3-7] v5
// [MQTT-3.2.2-16] v5
// [MQTT-3.1.4-3] v5
func TestV5AssignedClientID(t *testing.T) {
	srv := startServer(t, Options{})
	seen := map[string]bool{}
	var first *ctConn
	var firstID string
	for i := range 10 {
		c := ctDial(t, srv, packet.V5)
		ca := c.connect(ctConnect5("", true, 0))
		ctExpectConnack(t, ca, packet.Success, false)
		id := ca.Props.AssignedClientID
		if !ca.Props.Has(packet.PropAssignedClientID) || id == "" {
			t.Fatalf("CONNACK for an empty client id has no Assigned Client Identifier: %+v", ca.Props)
		}
		if seen[id] {
			t.Fatalf("assigned client id %q handed out twice", id)
		}
		seen[id] = true
		if i == 0 {
			first, firstID = c, id
		}
	}
	again := ctDial(t, srv, packet.V5)
	ca := again.connect(ctConnect5(firstID, true, 0))
	ctExpectConnack(t, ca, packet.Success, false)
	if ca.Props.Has(packet.PropAssignedClientID) {
		t.Fatalf("CONNACK for client id %q assigns one: %q", firstID, ca.Props.AssignedClientID)
	}
	first.expectDisconnect(packet.SessionTakenOver)
	again.ping()
}

// MQTT 5 allows an empty client identifier with Clean Start 0 (3.1.1 does
// not): the broker assigns one, and the session it names can be resumed.
// [MQTT-3.1.3-6] v5
// [MQTT-3.1.3-7] v5
// [MQTT-3.1.2-6] v5
// [MQTT-3.1.2-5] v5
// [MQTT-3.2.2-3] v5
func TestV5EmptyClientIDWithoutCleanStart(t *testing.T) {
	srv := startServer(t, Options{})
	c := ctDial(t, srv, packet.V5)
	ca := c.connect(ctConnect5("", false, 60))
	ctExpectConnack(t, ca, packet.Success, false)
	id := ca.Props.AssignedClientID
	if id == "" {
		t.Fatalf("CONNACK has no Assigned Client Identifier: %+v", ca.Props)
	}
	c.send(&packet.Disconnect{})
	c.expectClosed()

	c2 := ctDial(t, srv, packet.V5)
	ctExpectConnack(t, c2.connect(ctConnect5(id, false, 60)), packet.Success, true)
}

// paho.golang adopts the identifier the broker assigns.
// [MQTT-3.1.3-7] v5
func TestV5PahoAssignedClientID(t *testing.T) {
	srv := startServer(t, Options{})
	c, ca, err := ctPaho(t, srv, paho.ClientConfig{}, &paho.Connect{KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ca.Properties.AssignedClientID == "" || c.ClientID() != ca.Properties.AssignedClientID {
		t.Fatalf("assigned client id %q, client uses %q", ca.Properties.AssignedClientID, c.ClientID())
	}
}

// ---- CONNACK properties read by an independent client ---------------------

// paho.golang reads every property the broker announces.
// [MQTT-3.2.2-9] v5
func TestV5PahoReadsConnackProperties(t *testing.T) {
	qos := byte(1)
	srv := startServer(t, Options{
		MaxQoS:                         &qos,
		DisableRetain:                  true,
		DisableWildcardSubscriptions:   true,
		DisableSubscriptionIdentifiers: true,
		DisableSharedSubscriptions:     true,
		TopicAliasMaximum:              9,
		ReceiveMaximum:                 20,
		MaxPacketSize:                  5000,
		ServerKeepAlive:                2 * time.Second,
		MaxSessionExpiry:               10 * time.Second,
		ResponseInformation:            "resp/",
	})
	_, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "c"}, &paho.Connect{
		ClientID: "c", KeepAlive: 60, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ctU32(100), RequestResponseInfo: true, RequestProblemInfo: true},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	p := ca.Properties
	switch {
	case p.MaximumQoS == nil || *p.MaximumQoS != 1:
		t.Errorf("Maximum QoS %v, want 1", p.MaximumQoS)
	case p.RetainAvailable || p.WildcardSubAvailable || p.SubIDAvailable || p.SharedSubAvailable:
		t.Errorf("retain %v, wildcards %v, subscription ids %v, shared %v available; want none",
			p.RetainAvailable, p.WildcardSubAvailable, p.SubIDAvailable, p.SharedSubAvailable)
	case p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 9:
		t.Errorf("Topic Alias Maximum %v, want 9", p.TopicAliasMaximum)
	case p.ReceiveMaximum == nil || *p.ReceiveMaximum != 20:
		t.Errorf("Receive Maximum %v, want 20", p.ReceiveMaximum)
	case p.MaximumPacketSize == nil || *p.MaximumPacketSize != 5000:
		t.Errorf("Maximum Packet Size %v, want 5000", p.MaximumPacketSize)
	case p.ServerKeepAlive == nil || *p.ServerKeepAlive != 2:
		t.Errorf("Server Keep Alive %v, want 2", p.ServerKeepAlive)
	case p.SessionExpiryInterval == nil || *p.SessionExpiryInterval != 10:
		t.Errorf("Session Expiry Interval %v, want 10", p.SessionExpiryInterval)
	case p.ResponseInfo != "resp/c":
		t.Errorf("Response Information %q, want %q", p.ResponseInfo, "resp/c")
	}
}

// ---- Sessions ----------------------------------------------------------------

// A session whose expiry is 0xFFFFFFFF does not expire: once offline, no
// expiry is scheduled for it (a wait could only show it lasts a while).
// [MQTT-3.1.2-23] v5
func TestV5SessionExpiryNeverIsNotScheduled(t *testing.T) {
	srv := startServer(t, Options{})
	c := ctDial(t, srv, packet.V5)
	ctExpectConnack(t, c.connect(ctConnect5("forever", false, 0xFFFFFFFF)), packet.Success, false)
	c.send(&packet.Disconnect{})
	c.expectClosed() // the session is released before the broker closes

	srv.mu.Lock()
	ss := srv.sessions.get("forever")
	srv.mu.Unlock()
	if ss == nil {
		t.Fatal("the session is gone after DISCONNECT")
	}
	ss.mu.Lock()
	var expireAt time.Time
	var timer *time.Timer
	if ss.x().away != nil {
		expireAt, timer = ss.x().away.expireAt, ss.x().away.timer
	}
	expiry := ss.expiry
	ss.mu.Unlock()
	if !expireAt.IsZero() || timer != nil || expiry != expiryNever {
		t.Fatalf("offline session with expiry 0xFFFFFFFF: expiry %d, expires at %v, timer %v; want no expiry",
			expiry, expireAt, timer != nil)
	}

	c2 := ctDial(t, srv, packet.V5)
	ctExpectConnack(t, c2.connect(ctConnect5("forever", false, 0xFFFFFFFF)), packet.Success, true)
}

// paho.golang resumes a session: its subscription and the QoS 1 messages
// queued while it was away survive, and arrive in order.
// [MQTT-3.1.2-23] v5
// [MQTT-3.1.2-5] v5
// [MQTT-3.2.2-3] v5
// [MQTT-4.5.0-1] v5
// [MQTT-4.6.0-5] v5
func TestV5PahoSessionResumes(t *testing.T) {
	srv := startServer(t, Options{})
	sub, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "sub"}, &paho.Connect{
		ClientID: "sub", KeepAlive: 60, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ctU32(60), RequestProblemInfo: true},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := sub.Subscribe(ctCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "q/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}

	pub, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "pub"}, &paho.Connect{ClientID: "pub", KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	want := []string{"one", "two", "three"}
	for _, m := range want {
		r, err := pub.Publish(ctCtx(t), &paho.Publish{Topic: "q/x", QoS: 1, Payload: []byte(m)})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if r.ReasonCode != 0 {
			t.Fatalf("PUBACK 0x%02x for a message an offline session subscribes to, want 0x00", r.ReasonCode)
		}
	}

	in := make(ctInbox, 10)
	_, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "sub", OnPublishReceived: in.handler()}, &paho.Connect{
		ClientID: "sub", KeepAlive: 60, CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ctU32(60), RequestProblemInfo: true},
	})
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	if !ca.SessionPresent {
		t.Fatal("session present 0 on resuming a session with expiry 60")
	}
	for _, m := range want {
		p := in.next(t)
		if string(p.Payload) != m || p.Topic != "q/x" || p.QoS != 1 {
			t.Fatalf("got %q on %q at QoS %d, want %q on q/x at QoS 1", p.Payload, p.Topic, p.QoS, m)
		}
	}
}

// ---- Wills -------------------------------------------------------------------

// A will with every will property, read after the connection drops by
// paho.golang. The will is set over a raw connection: paho.golang v0.23.0
// packs will properties as CONNECT properties, which drops all but the
// will delay and the user properties.
// [MQTT-3.1.2-8] v5
// [MQTT-3.1.3-10] v5
// [MQTT-3.3.2-4] v5
// [MQTT-3.3.2-6] v5
// [MQTT-3.3.2-15] v5
// [MQTT-3.3.2-16] v5
// [MQTT-3.3.2-17] v5
// [MQTT-3.3.2-18] v5
// [MQTT-3.3.2-20] v5
func TestV5WillPropertiesReachPaho(t *testing.T) {
	srv := startServer(t, Options{})
	in := make(ctInbox, 10)
	sub, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "s", OnPublishReceived: in.handler()},
		&paho.Connect{ClientID: "s", KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := sub.Subscribe(ctCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "will/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}

	w := ctDial(t, srv, packet.V5)
	cp := ctConnect5("w", true, 0)
	cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQoS = true, "will/w", []byte("gone"), 1
	wp := &cp.WillProps
	wp.PayloadFormat, wp.MessageExpiry, wp.ContentType = 1, 3600, "text/plain"
	wp.ResponseTopic, wp.CorrelationData = "reply/w", []byte{0, 1, 2}
	for _, id := range []packet.PropID{packet.PropPayloadFormat, packet.PropMessageExpiry, packet.PropContentType,
		packet.PropResponseTopic, packet.PropCorrelationData} {
		wp.Mark(id)
	}
	wp.User = []packet.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}}
	ctExpectConnack(t, w.connect(cp), packet.Success, false)
	w.nc.Close() // the network fails; the will goes out
	user := paho.UserProperties{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}}

	p := in.next(t)
	pp := p.Properties
	switch {
	case p.Topic != "will/w" || string(p.Payload) != "gone" || p.QoS != 1 || p.Retain:
		t.Fatalf("will %q on %q QoS %d retain %v; want \"gone\" on will/w QoS 1, not retained",
			p.Payload, p.Topic, p.QoS, p.Retain)
	case pp == nil:
		t.Fatal("will arrived without properties")
	case pp.PayloadFormat == nil || *pp.PayloadFormat != 1:
		t.Errorf("Payload Format Indicator %v, want 1", pp.PayloadFormat)
	case pp.MessageExpiry == nil || *pp.MessageExpiry == 0 || *pp.MessageExpiry > 3600:
		t.Errorf("Message Expiry Interval %v, want 1..3600", pp.MessageExpiry)
	case pp.ContentType != "text/plain":
		t.Errorf("Content Type %q, want text/plain", pp.ContentType)
	case pp.ResponseTopic != "reply/w":
		t.Errorf("Response Topic %q, want reply/w", pp.ResponseTopic)
	case !bytes.Equal(pp.CorrelationData, []byte{0, 1, 2}):
		t.Errorf("Correlation Data %x, want 000102", pp.CorrelationData)
	case !slices.Equal(pp.User, user):
		t.Errorf("User Properties %v, want %v in that order", pp.User, user)
	}
}

// ---- The server's DISCONNECT -------------------------------------------------

// The connection taken over hears why from the broker, through paho.golang.
// [MQTT-3.1.4-3] v5
func TestV5PahoTakeover(t *testing.T) {
	srv := startServer(t, Options{})
	got := make(chan *paho.Disconnect, 1)
	_, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "t", OnServerDisconnect: func(d *paho.Disconnect) { got <- d }},
		&paho.Connect{ClientID: "t", KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "t"}, &paho.Connect{ClientID: "t", KeepAlive: 60, CleanStart: true}); err != nil {
		t.Fatalf("second connect: %v", err)
	}
	select {
	case d := <-got:
		if d.ReasonCode != byte(packet.SessionTakenOver) {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x8E (session taken over)", d.ReasonCode)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("the connection taken over got no DISCONNECT")
	}
}

// Shutting the server down tells every MQTT 5 client why with DISCONNECT
// 0x8B before closing; an MQTT 3.1.1 client, which has no server
// DISCONNECT, just sees the connection close.
// [MQTT-3.14.2-1] v5
// [MQTT-3.14.2-2] v5
// [MQTT-3.14.4-1] v5
// [MQTT-3.14.4-2] v5
func TestV5ServerShutdownDisconnect(t *testing.T) {
	srv := startServer(t, Options{})
	got := make(chan *paho.Disconnect, 1)
	_, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "p", OnServerDisconnect: func(d *paho.Disconnect) { got <- d }},
		&paho.Connect{ClientID: "p", KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	raw5 := ctDial(t, srv, packet.V5)
	ctExpectConnack(t, raw5.connect(ctConnect5("raw5", true, 0)), packet.Success, false)
	raw3 := ctDial(t, srv, packet.V311)
	ctExpectConnack(t, raw3.connect(&packet.Connect{ClientID: "raw3", CleanStart: true, KeepAlive: 60}), packet.Success, false)

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()

	select {
	case d := <-got:
		if d.ReasonCode != byte(packet.ServerShuttingDown) {
			t.Fatalf("paho.golang saw DISCONNECT 0x%02x, want 0x8B (server shutting down)", d.ReasonCode)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("paho.golang saw no DISCONNECT from the server shutting down")
	}
	raw5.expectDisconnect(packet.ServerShuttingDown)
	raw3.expectClosed()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("Close did not return")
	}
}

// A packet larger than the broker's Maximum Packet Size is refused with
// DISCONNECT 0x95. paho.golang reads the announced maximum but does not
// enforce it, so it sends one and hears why it is cut off.
// [MQTT-3.2.2-15] v5
func TestV5PahoPacketTooLarge(t *testing.T) {
	srv := startServer(t, Options{MaxPacketSize: 100})
	got := make(chan *paho.Disconnect, 1)
	c, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "p", OnServerDisconnect: func(d *paho.Disconnect) { got <- d }},
		&paho.Connect{ClientID: "p", KeepAlive: 60, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ca.Properties.MaximumPacketSize == nil || *ca.Properties.MaximumPacketSize != 100 {
		t.Fatalf("Maximum Packet Size %v, want 100", ca.Properties.MaximumPacketSize)
	}
	if _, err := c.Publish(ctCtx(t), &paho.Publish{Topic: "t", Payload: make([]byte, 200)}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case d := <-got:
		if d.ReasonCode != byte(packet.PacketTooLarge) {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x95 (packet too large)", d.ReasonCode)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("no DISCONNECT after a PUBLISH above the maximum packet size")
	}
}

// ---- Enhanced authentication -----------------------------------------------

const ctMethod = auth.SCRAMSHA256

// ctAuthServer runs a broker offering SCRAM-SHA-256 for alice (password
// "wonderland") and bob (password "builder").
func ctAuthServer(t *testing.T) *Server {
	t.Helper()
	store := &auth.MemoryStore{}
	for user, pw := range map[string]string{"alice": "wonderland", "bob": "builder"} {
		creds, err := auth.NewSCRAMCredentials(pw, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(user, creds); err != nil {
			t.Fatal(err)
		}
	}
	return startServer(t, Options{AuthMethods: auth.NewMethods(auth.NewSCRAM(store))})
}

func ctSCRAMClient(t *testing.T, user, password string) *auth.SCRAMClient {
	t.Helper()
	sc, err := auth.NewSCRAMClient(user, password)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// ctAuther is paho.golang's side of a SCRAM exchange. It records the AUTH
// packets the broker sends.
type ctAuther struct {
	mu   sync.Mutex
	sc   *auth.SCRAMClient
	seen []*paho.Auth
	errs []error
}

func (a *ctAuther) use(sc *auth.SCRAMClient) {
	a.mu.Lock()
	a.sc = sc
	a.mu.Unlock()
}

func (a *ctAuther) Authenticate(in *paho.Auth) *paho.Auth {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, in)
	final, err := a.sc.Final(in.Properties.AuthData)
	if err != nil {
		a.errs = append(a.errs, err)
	}
	return &paho.Auth{ReasonCode: byte(packet.ContinueAuthentication),
		Properties: &paho.AuthProperties{AuthMethod: ctMethod, AuthData: final}}
}

func (a *ctAuther) Authenticated() {}

// check verifies that every AUTH the broker sent continued the exchange
// with the method of CONNECT, and that the client had nothing to object to.
func (a *ctAuther) check(t *testing.T, wantAuths int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) > 0 {
		t.Fatalf("SCRAM client: %v", a.errs)
	}
	if len(a.seen) != wantAuths {
		t.Fatalf("broker sent %d AUTH packets, want %d", len(a.seen), wantAuths)
	}
	for _, in := range a.seen {
		if in.ReasonCode != byte(packet.ContinueAuthentication) || in.Properties.AuthMethod != ctMethod {
			t.Fatalf("AUTH reason 0x%02x method %q; want 0x18 and %q", in.ReasonCode, in.Properties.AuthMethod, ctMethod)
		}
	}
}

func ctAuthConnect(clientID string, sc *auth.SCRAMClient) *paho.Connect {
	return &paho.Connect{ClientID: clientID, KeepAlive: 60, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: ctMethod, AuthData: sc.First(), RequestProblemInfo: true}}
}

// A SCRAM exchange through paho.golang: CONNECT, AUTH 0x18 both ways, then
// CONNACK 0x00 carrying the method and the server's signature, which the
// client verifies.
// [MQTT-4.12.0-2] v5
// [MQTT-4.12.0-5] v5
// [MQTT-3.2.0-1] v5
// [MQTT-3.1.4-5] v5
func TestV5AuthSCRAM(t *testing.T) {
	srv := ctAuthServer(t)
	sc := ctSCRAMClient(t, "alice", "wonderland")
	a := &ctAuther{sc: sc}
	c, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "a", AuthHandler: a}, ctAuthConnect("a", sc))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	a.check(t, 1)
	if ca.ReasonCode != 0 || ca.Properties.AuthMethod != ctMethod {
		t.Fatalf("CONNACK 0x%02x method %q; want 0x00 and %q", ca.ReasonCode, ca.Properties.AuthMethod, ctMethod)
	}
	if err := sc.Verify(ca.Properties.AuthData); err != nil {
		t.Fatalf("server-final in CONNACK: %v", err)
	}
	// The connection works.
	if _, err := c.Subscribe(ctCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "x", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe after authenticating: %v", err)
	}
}

// [MQTT-4.12.0-4] v5
// [MQTT-3.2.2-7] v5
func TestV5AuthWrongPassword(t *testing.T) {
	ctExpectSCRAMRefused(t, "with a wrong password", "alice", "looking-glass")
}

// [MQTT-4.12.0-4] v5
func TestV5AuthUnknownUser(t *testing.T) {
	ctExpectSCRAMRefused(t, "as an unknown user", "mallory", "wonderland")
}

// ctExpectSCRAMRefused connects a paho.golang client that authenticates
// with SCRAM as user and requires CONNACK 0x86; how says how it connects.
func ctExpectSCRAMRefused(t *testing.T, how, user, password string) {
	t.Helper()
	srv := ctAuthServer(t)
	sc := ctSCRAMClient(t, user, password)
	a := &ctAuther{sc: sc}
	_, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "a", AuthHandler: a}, ctAuthConnect("a", sc))
	if err == nil || ca == nil || ca.ReasonCode != byte(packet.BadUserNameOrPassword) {
		t.Fatalf("connect %s: CONNACK %+v, err %v; want CONNACK 0x86", how, ca, err)
	}
}

// [MQTT-4.12.0-1] v5
func TestV5AuthUnknownMethod(t *testing.T) {
	srv := ctAuthServer(t)
	_, ca, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "a", AuthHandler: &ctAuther{}}, &paho.Connect{
		ClientID: "a", KeepAlive: 60, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: "KERBEROS", AuthData: []byte("ticket"), RequestProblemInfo: true},
	})
	if err == nil || ca == nil || ca.ReasonCode != byte(packet.BadAuthenticationMethod) {
		t.Fatalf("connect with an unknown method: CONNACK %+v, err %v; want CONNACK 0x8C", ca, err)
	}
}

// A broker without any method refuses one named in CONNECT the same way.
// [MQTT-4.12.0-1] v5
func TestV5AuthNoMethodsOffered(t *testing.T) {
	srv := startServer(t, Options{})
	c := ctDial(t, srv, packet.V5)
	p := ctConnect5("a", true, 0)
	p.Props.AuthMethod = ctMethod
	p.Props.Mark(packet.PropAuthMethod)
	ctExpectConnack(t, c.connect(p), packet.BadAuthenticationMethod, false)
	c.expectClosed()
}

// ctSCRAMRaw authenticates a raw connection as user and returns it with the
// SCRAM client that did it.
func ctSCRAMRaw(t *testing.T, srv *Server, clientID, user, password string) *ctConn {
	t.Helper()
	c := ctDial(t, srv, packet.V5)
	sc := ctSCRAMClient(t, user, password)
	p := ctConnect5(clientID, true, 0)
	p.Version = packet.V5
	p.Props.AuthMethod, p.Props.AuthData = ctMethod, sc.First()
	p.Props.Mark(packet.PropAuthMethod)
	p.Props.Mark(packet.PropAuthData)
	c.send(p)
	first := ctAs[*packet.Auth](t, c.next())
	final, err := sc.Final(first.Props.AuthData)
	if err != nil {
		t.Fatalf("server-first: %v", err)
	}
	c.send(ctAuth(packet.ContinueAuthentication, ctMethod, final))
	ca := ctAs[*packet.Connack](t, c.next())
	ctExpectConnack(t, ca, packet.Success, false)
	if err := sc.Verify(ca.Props.AuthData); err != nil {
		t.Fatalf("server-final: %v", err)
	}
	return c
}

func ctAuth(code packet.ReasonCode, method string, data []byte) *packet.Auth {
	a := &packet.Auth{Code: code}
	a.Props.AuthMethod = method
	a.Props.Mark(packet.PropAuthMethod)
	if data != nil {
		a.Props.AuthData = data
		a.Props.Mark(packet.PropAuthData)
	}
	return a
}

// Re-authentication: AUTH 0x19 with client-first, AUTH 0x18 both ways, and
// AUTH 0x00 with the server's signature; every AUTH names the method.
// [MQTT-4.12.0-2] v5
// [MQTT-4.12.0-5] v5
// [MQTT-3.15.2-1] v5
func TestV5ReAuthentication(t *testing.T) {
	srv := ctAuthServer(t)
	c := ctSCRAMRaw(t, srv, "a", "alice", "wonderland")

	for round := range 2 {
		sc := ctSCRAMClient(t, "alice", "wonderland")
		c.send(ctAuth(packet.ReAuthenticate, ctMethod, sc.First()))
		first := ctAs[*packet.Auth](t, c.next())
		if first.Code != packet.ContinueAuthentication || first.Props.AuthMethod != ctMethod {
			t.Fatalf("round %d: AUTH 0x%02x method %q, want 0x18 and %q", round, byte(first.Code), first.Props.AuthMethod, ctMethod)
		}
		final, err := sc.Final(first.Props.AuthData)
		if err != nil {
			t.Fatalf("round %d: server-first: %v", round, err)
		}
		c.send(ctAuth(packet.ContinueAuthentication, ctMethod, final))
		done := ctAs[*packet.Auth](t, c.next())
		if done.Code != packet.Success || done.Props.AuthMethod != ctMethod {
			t.Fatalf("round %d: AUTH 0x%02x method %q, want 0x00 and %q", round, byte(done.Code), done.Props.AuthMethod, ctMethod)
		}
		if err := sc.Verify(done.Props.AuthData); err != nil {
			t.Fatalf("round %d: server-final: %v", round, err)
		}
		c.ping()
	}
}

// The broker's AUTH packets leave out a Reason String or User Property the
// client's Maximum Packet Size has no room for: with a limit that the
// SCRAM exchange fits only without them, an authentication and a
// re-authentication complete and no packet exceeds the limit.
// [MQTT-3.15.2-2] v5
// [MQTT-3.15.2-3] v5
// [MQTT-3.1.2-24] v5
func TestV5AuthWithinClientMaximumPacketSize(t *testing.T) {
	srv := ctAuthServer(t)
	// exchange authenticates and re-authenticates on a new connection whose
	// CONNECT sets limit (0: none). It returns the size the largest packet
	// the broker sent would have without a Reason String or User Property.
	exchange := func(id string, limit uint32) int {
		c := ctDial(t, srv, packet.V5)
		need := 0
		recv := func() packet.Packet {
			p := c.next()
			if n := packet.Len(p, packet.V5); limit > 0 && n > int(limit) {
				t.Errorf("%s: %s of %d bytes, above the client's Maximum Packet Size %d", id, p.Type(), n, limit)
			}
			bare := packet.Clone(p)
			switch b := bare.(type) {
			case *packet.Auth:
				b.Props.Clear(packet.PropReasonString)
				b.Props.Clear(packet.PropUser)
			case *packet.Connack:
				b.Props.Clear(packet.PropReasonString)
				b.Props.Clear(packet.PropUser)
			}
			need = max(need, packet.Len(bare, packet.V5))
			return p
		}
		round := func(first *packet.Auth, sc *auth.SCRAMClient) {
			t.Helper()
			final, err := sc.Final(first.Props.AuthData)
			if err != nil {
				t.Fatalf("%s: server-first: %v", id, err)
			}
			c.send(ctAuth(packet.ContinueAuthentication, ctMethod, final))
		}

		sc := ctSCRAMClient(t, "alice", "wonderland")
		p := ctConnect5(id, true, 0)
		p.Version = packet.V5
		p.Props.AuthMethod, p.Props.AuthData = ctMethod, sc.First()
		p.Props.Mark(packet.PropAuthMethod)
		p.Props.Mark(packet.PropAuthData)
		if limit > 0 {
			p.Props.MaximumPacketSize = limit
			p.Props.Mark(packet.PropMaximumPacketSize)
		}
		c.send(p)
		round(ctAs[*packet.Auth](t, recv()), sc)
		ca := ctAs[*packet.Connack](t, recv())
		ctExpectConnack(t, ca, packet.Success, false)
		if err := sc.Verify(ca.Props.AuthData); err != nil {
			t.Fatalf("%s: server-final: %v", id, err)
		}

		sc = ctSCRAMClient(t, "alice", "wonderland")
		c.send(ctAuth(packet.ReAuthenticate, ctMethod, sc.First()))
		round(ctAs[*packet.Auth](t, recv()), sc)
		done := ctAs[*packet.Auth](t, recv())
		if done.Code != packet.Success {
			t.Fatalf("%s: re-authentication ended with AUTH 0x%02x, want 0x00", id, byte(done.Code))
		}
		if err := sc.Verify(done.Props.AuthData); err != nil {
			t.Fatalf("%s: re-authentication server-final: %v", id, err)
		}
		c.ping()
		return need
	}
	need := exchange("roomy", 0)
	exchange("tight", uint32(need))
}

// paho.golang re-authenticates through its Auther.
// [MQTT-4.12.0-5] v5
func TestV5PahoReAuthentication(t *testing.T) {
	srv := ctAuthServer(t)
	sc := ctSCRAMClient(t, "alice", "wonderland")
	a := &ctAuther{sc: sc}
	c, _, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "a", AuthHandler: a}, ctAuthConnect("a", sc))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	sc2 := ctSCRAMClient(t, "alice", "wonderland")
	a.use(sc2)
	r, err := c.Authenticate(ctCtx(t), &paho.Auth{ReasonCode: byte(packet.ReAuthenticate),
		Properties: &paho.AuthProperties{AuthMethod: ctMethod, AuthData: sc2.First()}})
	if err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	if !r.Success || r.ReasonCode != 0 {
		t.Fatalf("re-authentication: success %v reason 0x%02x, want AUTH 0x00", r.Success, r.ReasonCode)
	}
	a.check(t, 2)
}

// A failed re-authentication ends the connection with DISCONNECT, whose
// reason must be one DISCONNECT may carry: 0x86 (Bad User Name or
// Password) is a CONNACK code only, so a wrong password is Not Authorized.
// [MQTT-4.12.1-2] v5
// [MQTT-3.14.2-1] v5
func TestV5ReAuthenticationFails(t *testing.T) {
	cases := []struct {
		name, user, password string
		code                 packet.ReasonCode
	}{
		{"wrong password", "alice", "looking-glass", packet.NotAuthorized},
		{"another user", "bob", "builder", packet.NotAuthorized},
	}
	srv := ctAuthServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ctSCRAMRaw(t, srv, "a-"+tc.user, "alice", "wonderland")
			sc := ctSCRAMClient(t, tc.user, tc.password)
			c.send(ctAuth(packet.ReAuthenticate, ctMethod, sc.First()))
			first := ctAs[*packet.Auth](t, c.next())
			final, err := sc.Final(first.Props.AuthData)
			if err != nil {
				t.Fatalf("server-first: %v", err)
			}
			c.send(ctAuth(packet.ContinueAuthentication, ctMethod, final))
			c.expectDisconnect(tc.code)
		})
	}
}

// Re-authentication must use the method of the original authentication.
// [MQTT-4.12.1-1] v5
// [MQTT-4.12.0-5] v5
func TestV5ReAuthenticationOtherMethod(t *testing.T) {
	srv := ctAuthServer(t)
	c := ctSCRAMRaw(t, srv, "a", "alice", "wonderland")
	c.send(ctAuth(packet.ReAuthenticate, "SCRAM-SHA-1", []byte("n,,n=alice,r=abc")))
	c.expectDisconnect(packet.ProtocolError)
}

// AUTH packets out of turn once connected: AUTH 0x18 with no exchange
// running, AUTH 0x00 from the client, and AUTH from a client that did not
// authenticate with a method, are Protocol Errors.
// [MQTT-4.12.0-7] v5
// [MQTT-4.13.1-1] v5
func TestV5AuthOutOfTurnWhenConnected(t *testing.T) {
	srv := ctAuthServer(t)
	t.Run("continue with no exchange", func(t *testing.T) {
		c := ctSCRAMRaw(t, srv, "a", "alice", "wonderland")
		c.send(ctAuth(packet.ContinueAuthentication, ctMethod, []byte("c=biws,r=x,p=y")))
		c.expectDisconnect(packet.ProtocolError)
	})
	t.Run("success from the client", func(t *testing.T) {
		c := ctSCRAMRaw(t, srv, "b", "alice", "wonderland")
		c.send(ctAuth(packet.Success, ctMethod, nil))
		c.expectDisconnect(packet.ProtocolError)
	})
	t.Run("client without a method", func(t *testing.T) {
		c := ctDial(t, srv, packet.V5)
		ctExpectConnack(t, c.connect(ctConnect5("c", true, 0)), packet.Success, false)
		sc := ctSCRAMClient(t, "alice", "wonderland")
		c.send(ctAuth(packet.ReAuthenticate, ctMethod, sc.First()))
		c.expectDisconnect(packet.ProtocolError)
	})
}

// Before CONNACK the broker may not send DISCONNECT [MQTT-3.14.0-1]: a
// breach of the exchange is answered with CONNACK 0x82 or a bare close.
// [MQTT-3.14.0-1] v5
// [MQTT-4.12.0-4] v5
// [MQTT-4.12.0-5] v5
// [MQTT-3.2.0-1] v5
func TestV5AuthOutOfTurnDuringExchange(t *testing.T) {
	srv := ctAuthServer(t)
	cases := []struct {
		name string
		next func(sc *auth.SCRAMClient, serverFirst []byte) packet.Packet
	}{
		{"re-authenticate", func(sc *auth.SCRAMClient, _ []byte) packet.Packet {
			return ctAuth(packet.ReAuthenticate, ctMethod, sc.First())
		}},
		{"success from the client", func(*auth.SCRAMClient, []byte) packet.Packet {
			return ctAuth(packet.Success, ctMethod, nil)
		}},
		{"another method", func(sc *auth.SCRAMClient, serverFirst []byte) packet.Packet {
			final, _ := sc.Final(serverFirst)
			return ctAuth(packet.ContinueAuthentication, "SCRAM-SHA-1", final)
		}},
		{"PUBLISH", func(*auth.SCRAMClient, []byte) packet.Packet {
			return &packet.Publish{Topic: "t", Payload: []byte("early")}
		}},
		{"SUBSCRIBE", func(*auth.SCRAMClient, []byte) packet.Packet {
			return &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "t"}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ctDial(t, srv, packet.V5)
			sc := ctSCRAMClient(t, "alice", "wonderland")
			p := ctConnect5("a", true, 0)
			p.Props.AuthMethod, p.Props.AuthData = ctMethod, sc.First()
			p.Props.Mark(packet.PropAuthMethod)
			p.Props.Mark(packet.PropAuthData)
			c.send(p)
			first := ctAs[*packet.Auth](t, c.next())
			c.send(tc.next(sc, first.Props.AuthData))
			reply, err := c.read(wiretest.Timeout)
			if err == nil {
				ca, ok := reply.(*packet.Connack)
				if !ok || ca.Code != packet.ProtocolError {
					t.Fatalf("want CONNACK 0x82 or a close, got %s %+v", reply.Type(), reply)
				}
				c.expectClosed()
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", wiretest.Timeout)
			}
		})
	}
}

// A client that skips the exchange's second step never gets connected: the
// connect timeout still runs while the exchange waits.
// [MQTT-4.12.0-4] v5
func TestV5AuthAbandonedExchangeTimesOut(t *testing.T) {
	store := &auth.MemoryStore{}
	creds, err := auth.NewSCRAMCredentials("wonderland", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add("alice", creds); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Options{ConnectTimeout: 300 * time.Millisecond, AuthMethods: auth.NewMethods(auth.NewSCRAM(store))})
	c := ctDial(t, srv, packet.V5)
	sc := ctSCRAMClient(t, "alice", "wonderland")
	p := ctConnect5("a", true, 0)
	p.Props.AuthMethod, p.Props.AuthData = ctMethod, sc.First()
	p.Props.Mark(packet.PropAuthMethod)
	p.Props.Mark(packet.PropAuthData)
	c.send(p)
	ctAs[*packet.Auth](t, c.next())
	// Nothing more from the client: before CONNACK only a close may follow.
	reply, err := c.read(wiretest.Timeout)
	if err == nil {
		t.Fatalf("want the connection closed, got %s %+v", reply.Type(), reply)
	}
	if !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("want the connection closed, got %v", err)
	}
}
