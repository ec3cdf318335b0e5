package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// These tests set Options.Hooks and drive the broker with raw clients over
// TCP, so that each reason code is seen as a client sees it; the hooks
// report what they saw on a channel the test reads.

// hookEvent is one call of a hook, as a test wants to see it.
type hookEvent struct {
	hook    string // "connect", "disconnect", "delivered", "dropped", "publish"
	client  string
	topic   string
	payload string
	qos     byte
	retain  bool
	present bool
	info    DisconnectInfo
	reason  DropReason
}

func (e hookEvent) String() string {
	return fmt.Sprintf("%s client=%q topic=%q payload=%q qos=%d retain=%v present=%v reason=%v info=%+v",
		e.hook, e.client, e.topic, e.payload, e.qos, e.retain, e.present, e.reason, e.info)
}

// hookLog collects the events of the hooks it sets.
type hookLog chan hookEvent

func newHookLog() hookLog { return make(hookLog, 1000) }

func (l hookLog) add(e hookEvent) {
	select {
	case l <- e:
	default:
		panic("hookLog full: the test does not read its events")
	}
}

// watch sets the hooks that report events (OnConnect, OnDisconnect,
// OnDelivered, OnDropped), leaving the others as they are.
func (l hookLog) watch(h *Hooks) {
	h.OnConnect = func(c *auth.Client, present bool) {
		l.add(hookEvent{hook: "connect", client: c.ClientID, present: present})
	}
	h.OnDisconnect = func(c *auth.Client, d DisconnectInfo) {
		l.add(hookEvent{hook: "disconnect", client: c.ClientID, info: d})
	}
	h.OnDelivered = func(id string, m MessageView) {
		l.add(hookEvent{hook: "delivered", client: id, topic: m.Topic(), payload: string(m.Payload()), qos: m.QoS(), retain: m.Retain()})
	}
	h.OnDropped = func(id string, m MessageView, r DropReason) {
		l.add(hookEvent{hook: "dropped", client: id, topic: m.Topic(), payload: string(m.Payload()), qos: m.QoS(), reason: r})
	}
}

// next returns the next event.
func (l hookLog) next(t testing.TB) hookEvent {
	t.Helper()
	select {
	case e := <-l:
		return e
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no hook event within %v", wiretest.Timeout)
		return hookEvent{}
	}
}

// expect returns the next event, which must be of hook for client.
func (l hookLog) expect(t testing.TB, hook, client string) hookEvent {
	t.Helper()
	e := l.next(t)
	if e.hook != hook || e.client != client {
		t.Fatalf("hook event %v; want %s for %q", e, hook, client)
	}
	return e
}

// hookConnect5 is an MQTT 5 CONNECT with a clean start.
func hookConnect5(id string) *packet.Connect { return connectPacket(packet.V5, id) }

// OnConnectAuthenticate runs before the configured authentication: when it
// decides, the Authenticator is not asked; when it does not, the usual
// rules apply. It sees the password, the client id and where the client
// comes from.
func TestHookConnectAuthenticateOrder(t *testing.T) {
	a := &goAuth{}
	no := false
	seen := make(chan ConnectRequest, 100)
	srv := secStart(t, Options{
		Authenticator: a,
		Listeners:     []ListenerConfig{{Name: "main", Address: "127.0.0.1:0", AllowAnonymous: &no}},
		Hooks: Hooks{OnConnectAuthenticate: func(r *ConnectRequest) (packet.ReasonCode, bool) {
			c := *r
			c.Password = []byte(string(r.Password)) // kept: a copy
			seen <- c
			switch r.Username {
			case "hook-admits":
				return packet.Success, true
			case "hook-refuses":
				return packet.BadUserNameOrPassword, true
			case "hook-says-0x10":
				return packet.NoMatchingSubscribers, true // not a failure code: refused as not authorized
			}
			return 0, false
		}},
	}, quickThrottle)
	addr := srv.Addrs()[0].String()

	for _, tc := range []struct {
		user, password string
		anonymous      bool
		version        byte
		want           packet.ReasonCode
		authenticator  bool // the Authenticator is asked
	}{
		{user: "hook-admits", password: "anything", version: packet.V5, want: packet.Success},
		{user: "hook-refuses", password: "gopher-hook-refuses", version: packet.V5, want: packet.BadUserNameOrPassword},
		{user: "hook-refuses", password: "gopher-hook-refuses", version: packet.V311, want: packet.ConnRefusedBadUsernamePassword},
		{user: "hook-says-0x10", version: packet.V5, want: packet.NotAuthorized},
		{user: "alice", password: "gopher-alice", version: packet.V5, want: packet.Success, authenticator: true},
		{user: "alice", password: "wrong", version: packet.V5, want: packet.BadUserNameOrPassword, authenticator: true},
		{anonymous: true, version: packet.V5, want: packet.NotAuthorized}, // the listener refuses anonymous clients
	} {
		name := fmt.Sprintf("%s/v%d", tc.user, tc.version)
		t.Run(name, func(t *testing.T) {
			a.mu.Lock()
			before := len(a.seen)
			a.mu.Unlock()
			p := connectPacket(tc.version, "c-"+tc.user)
			if !tc.anonymous {
				withLogin(p, tc.user, tc.password)
			}
			c, ack := secConnect(t, addr, p)
			r := <-seen
			if r.ClientID != p.ClientID || r.Username != tc.user || string(r.Password) != tc.password ||
				r.ProtocolVersion != tc.version || r.Listener != "main" || r.RemoteAddr == nil || r.TLS != nil || !r.CleanStart {
				t.Errorf("the hook was asked about %+v; want client %q, user %q, password %q, version %d, listener main, an address, no TLS",
					r, p.ClientID, tc.user, tc.password, tc.version)
			}
			if tc.want == packet.Success {
				if ack.Code != packet.Success {
					t.Fatalf("CONNACK 0x%02x, want success", byte(ack.Code))
				}
				c.ping()
			} else {
				expectRefused(t, c, ack, tc.want)
			}
			a.mu.Lock()
			asked := len(a.seen) > before
			a.mu.Unlock()
			if asked != tc.authenticator {
				t.Errorf("Authenticator asked: %v, want %v", asked, tc.authenticator)
			}
		})
	}
}

// OnACLCheck and the Authorizer must both allow a PUBLISH, a filter and a
// will; the hook is asked for Write and Subscribe, never for Read.
func TestHookACLCheck(t *testing.T) {
	type ask struct {
		access auth.Access
		topic  string
	}
	asked := make(chan ask, 100)
	srv := secStart(t, Options{
		Authorizer: denyTopic("authz/denied"),
		Hooks: Hooks{OnACLCheck: func(c *auth.Client, a auth.Access, topic string) bool {
			if c == nil || c.ClientID == "" {
				panic("OnACLCheck without the client")
			}
			asked <- ask{a, strings.Clone(topic)} // the topic is the broker's: copied to be kept
			return !strings.HasPrefix(topic, "hook/denied")
		}},
	}, nil)
	addr := srv.Addrs()[0].String()

	sub := secMustConnect(t, addr, hookConnect5("sub"))
	codes := sub.subscribe(1, 1, "hook/denied/#", "authz/denied", "ok/#", "hook/+/x")
	want := []packet.ReasonCode{packet.NotAuthorized, packet.NotAuthorized, packet.GrantedQoS1, packet.GrantedQoS1}
	if !slices.Equal(codes, want) {
		t.Fatalf("SUBACK codes %v, want %v", codes, want)
	}
	for _, want := range []ask{{auth.Subscribe, "hook/denied/#"}, {auth.Subscribe, "ok/#"}, {auth.Subscribe, "hook/+/x"}} {
		// The Authorizer refused authz/denied first: the hook was not asked.
		if got := <-asked; got != want {
			t.Fatalf("hook asked %+v, want %+v", got, want)
		}
	}

	pub := secMustConnect(t, addr, hookConnect5("pub"))
	if code := pub.publish(1, 1, "hook/denied/x", "no", false); code != packet.NotAuthorized {
		t.Errorf("PUBACK for a topic the hook refuses: 0x%02x, want 0x87", byte(code))
	}
	if code := pub.publish(2, 1, "authz/denied", "no", false); code != packet.NotAuthorized {
		t.Errorf("PUBACK for a topic the Authorizer refuses: 0x%02x, want 0x87 (the hook cannot grant it)", byte(code))
	}
	if code := pub.publish(3, 2, "hook/denied/x", "no", false); code != packet.NotAuthorized {
		t.Errorf("PUBREC for a topic the hook refuses: 0x%02x, want 0x87", byte(code))
	}
	if code := pub.publish(4, 1, "ok/x", "yes", false); code != packet.Success {
		t.Errorf("PUBACK for an allowed topic: 0x%02x, want 0x00", byte(code))
	}
	if got := sub.nextPublish(); got.Topic != "ok/x" {
		t.Fatalf("subscriber got %q, want only ok/x", got.Topic)
	}
	for _, want := range []ask{{auth.Write, "hook/denied/x"}, {auth.Write, "hook/denied/x"}, {auth.Write, "ok/x"}} {
		if got := <-asked; got != want {
			t.Fatalf("hook asked %+v, want %+v", got, want)
		}
	}

	// An MQTT 3.1.1 publisher cannot be told: acknowledged, not delivered.
	old := secMustConnect(t, addr, connectPacket(packet.V311, "old"))
	if code := old.publish(1, 1, "hook/denied/x", "no", false); code != packet.Success {
		t.Errorf("3.1.1 PUBACK for a refused topic: 0x%02x, want 0x00", byte(code))
	}
	old.send(&packet.Publish{Topic: "hook/denied/x", QoS: 2, PacketID: 2, Payload: []byte("no")})
	old.nextAck(packet.PUBREC, 2)
	old.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
	old.nextAck(packet.PUBCOMP, 2)
	<-asked
	<-asked
	sub.ping() // nothing was delivered

	// A will on a refused topic refuses the connection.
	p := hookConnect5("will")
	p.WillFlag, p.WillTopic, p.WillPayload = true, "hook/denied/will", []byte("bye")
	c, ack := secConnect(t, addr, p)
	expectRefused(t, c, ack, packet.NotAuthorized)
	if got := <-asked; got != (ask{auth.Write, "hook/denied/will"}) {
		t.Fatalf("hook asked %+v, want the will's topic for Write", got)
	}
	select {
	case got := <-asked:
		t.Fatalf("hook asked %+v more than expected (never for Read)", got)
	default:
	}
}

// denyTopic is an Authorizer that refuses one topic, for everything.
type denyTopic string

func (d denyTopic) Allow(_ *auth.Client, _ auth.Access, topic string) bool { return topic != string(d) }

// OnConnect and OnDisconnect pair up, for every way a connection ends, and
// say what became of the will. A takeover reports the old connection's end
// before the new one's start.
func TestHookConnectDisconnect(t *testing.T) {
	l := newHookLog()
	var h Hooks
	l.watch(&h)
	h.OnDelivered, h.OnDropped = nil, nil
	srv := secStart(t, Options{Hooks: h}, nil)
	addr := srv.Addrs()[0].String()

	t.Run("disconnect", func(t *testing.T) {
		c := secMustConnect(t, addr, hookConnect5("a"))
		if e := l.expect(t, "connect", "a"); e.present {
			t.Errorf("session present on a clean start")
		}
		c.send(&packet.Disconnect{})
		d := l.expect(t, "disconnect", "a").info
		if !d.ByClient || d.Code != 0 || d.Err != nil || d.WillPublished || d.WillDelayed {
			t.Errorf("after DISCONNECT: %+v; want by the client, code 0, no error, no will", d)
		}
	})
	t.Run("disconnect with will", func(t *testing.T) {
		p := hookConnect5("b")
		p.WillFlag, p.WillTopic, p.WillPayload = true, "will/b", []byte("bye")
		c := secMustConnect(t, addr, p)
		l.expect(t, "connect", "b")
		c.send(&packet.Disconnect{Code: packet.DisconnectWithWill})
		d := l.expect(t, "disconnect", "b").info
		if !d.ByClient || d.Code != packet.DisconnectWithWill || !d.WillPublished {
			t.Errorf("after DISCONNECT 0x04: %+v; want by the client, code 0x04, will published", d)
		}
	})
	t.Run("connection lost", func(t *testing.T) {
		p := connectPacket(packet.V311, "c")
		p.WillFlag, p.WillTopic, p.WillPayload = true, "will/c", []byte("bye")
		c := secMustConnect(t, addr, p)
		l.expect(t, "connect", "c")
		c.nc.Close()
		d := l.expect(t, "disconnect", "c").info
		if d.ByClient || d.Code != 0 || !errors.Is(d.Err, ErrConnectionLost) || !d.WillPublished {
			t.Errorf("after the network closed: %+v; want code 0, ErrConnectionLost, will published", d)
		}
	})
	t.Run("will delayed", func(t *testing.T) {
		p := hookConnect5("d")
		p.Props.SessionExpiry = 60
		p.Props.Mark(packet.PropSessionExpiry)
		p.WillFlag, p.WillTopic, p.WillPayload = true, "will/d", []byte("bye")
		p.WillProps.WillDelay = 30
		p.WillProps.Mark(packet.PropWillDelay)
		c := secMustConnect(t, addr, p)
		l.expect(t, "connect", "d")
		c.nc.Close()
		d := l.expect(t, "disconnect", "d").info
		if d.WillPublished || !d.WillDelayed {
			t.Errorf("will with a delay: %+v; want delayed, not published", d)
		}
	})
	t.Run("protocol violation", func(t *testing.T) {
		c := secMustConnect(t, addr, hookConnect5("e"))
		l.expect(t, "connect", "e")
		c.send(hookConnect5("e")) // a second CONNECT
		c.expectDisconnect(packet.ProtocolError)
		d := l.expect(t, "disconnect", "e").info
		if d.ByClient || d.Code != packet.ProtocolError || d.Err == nil {
			t.Errorf("after a second CONNECT: %+v; want code 0x82 with an error", d)
		}
	})
	t.Run("takeover", func(t *testing.T) {
		p := hookConnect5("f")
		p.CleanStart = false
		p.Props.SessionExpiry = 60
		p.Props.Mark(packet.PropSessionExpiry)
		old := secMustConnect(t, addr, p)
		l.expect(t, "connect", "f")
		c := secMustConnect(t, addr, p)
		d := l.expect(t, "disconnect", "f").info // before the new connection's OnConnect
		if d.ByClient || d.Code != packet.SessionTakenOver {
			t.Errorf("taken over: %+v; want code 0x8E", d)
		}
		if e := l.expect(t, "connect", "f"); !e.present {
			t.Errorf("the new connection's OnConnect: session not present")
		}
		old.expectDisconnect(packet.SessionTakenOver)
		c.send(&packet.Disconnect{})
		l.expect(t, "disconnect", "f")
	})
	t.Run("server closes", func(t *testing.T) {
		s2 := secStart(t, Options{Hooks: h}, nil)
		c := secMustConnect(t, s2.Addrs()[0].String(), hookConnect5("g"))
		l.expect(t, "connect", "g")
		s2.Close()
		d := l.expect(t, "disconnect", "g").info
		if d.Code != packet.ServerShuttingDown {
			t.Errorf("server closed: %+v; want code 0x8B", d)
		}
		c.expectDisconnect(packet.ServerShuttingDown)
	})
}

// OnPublish sees what clients and the program publish, and a rejection
// keeps the message from everyone: MQTT 5 publishers hear the code,
// MQTT 3 ones are acknowledged as usual.
func TestHookPublishReject(t *testing.T) {
	type seen struct {
		client, topic, payload, contentType string
		qos                                 byte
		retain                              bool
		user                                []packet.UserProperty
	}
	saw := make(chan seen, 100)
	srv := secStart(t, Options{Hooks: Hooks{OnPublish: func(c *auth.Client, m MessageView) packet.ReasonCode {
		s := seen{topic: m.Topic(), payload: string(m.Payload()), contentType: m.ContentType(), qos: m.QoS(), retain: m.Retain()}
		if c != nil {
			s.client = c.ClientID
		}
		for _, u := range m.UserProperties() {
			s.user = append(s.user, packet.UserProperty{Key: strings.Clone(u.Key), Value: strings.Clone(u.Value)})
		}
		saw <- s
		if strings.HasPrefix(m.Topic(), "reject/") {
			return packet.ImplementationSpecificError
		}
		return packet.Success
	}}}, nil)
	addr := srv.Addrs()[0].String()
	sub := secMustConnect(t, addr, hookConnect5("sub"))
	sub.mustSubscribe(1, 2, "#")

	pub := secMustConnect(t, addr, hookConnect5("pub"))
	p := &packet.Publish{Topic: "reject/a", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("r1")}
	p.Props.ContentType = "text/plain"
	p.Props.Mark(packet.PropContentType)
	p.Props.User = []packet.UserProperty{{Key: "k", Value: "v"}}
	pub.send(p)
	if a := pub.nextAck(packet.PUBACK, 1); a.Code != packet.ImplementationSpecificError {
		t.Errorf("PUBACK 0x%02x, want the hook's 0x83", byte(a.Code))
	}
	got := <-saw
	if got.client != "pub" || got.topic != "reject/a" || got.payload != "r1" || got.qos != 1 || !got.retain ||
		got.contentType != "text/plain" || len(got.user) != 1 || got.user[0] != (packet.UserProperty{Key: "k", Value: "v"}) {
		t.Errorf("OnPublish saw %+v; want pub's retained QoS 1 r1 on reject/a with its properties", got)
	}
	if code := pub.publish(2, 2, "reject/b", "r2", false); code != packet.ImplementationSpecificError {
		t.Errorf("PUBREC 0x%02x, want 0x83", byte(code))
	}
	pub.publish(0, 0, "reject/c", "r3", false)
	old := secMustConnect(t, addr, connectPacket(packet.V311, "old"))
	if code := old.publish(1, 1, "reject/d", "r4", false); code != packet.Success {
		t.Errorf("3.1.1 PUBACK 0x%02x, want 0x00", byte(code))
	}
	if err := srv.Publish("reject/e", []byte("r5"), 1, false); !errors.Is(err, ErrRejected) {
		t.Errorf("Server.Publish of a rejected message: %v, want ErrRejected", err)
	}
	for range 4 {
		<-saw
	}
	if err := srv.Publish("fine", []byte("ok"), 1, false); err != nil {
		t.Fatalf("Server.Publish: %v", err)
	}
	if got := <-saw; got.client != "" || got.topic != "fine" {
		t.Errorf("OnPublish saw %+v for Server.Publish; want topic fine and no client", got)
	}
	if m := sub.nextPublish(); m.Topic != "fine" {
		t.Fatalf("subscriber got %q: a rejected message went through", m.Topic)
	}
	// Nor was the rejected message retained.
	late := secMustConnect(t, addr, hookConnect5("late"))
	late.mustSubscribe(1, 1, "reject/#")
	late.ping()
}

// A hook that panics closes the connection of its client, and only that:
// the broker and its other clients carry on.
func TestHookPanicClosesOnlyThatConnection(t *testing.T) {
	srv := secStart(t, Options{Hooks: Hooks{
		OnConnectAuthenticate: func(r *ConnectRequest) (packet.ReasonCode, bool) {
			if r.ClientID == "boom-at-connect" {
				panic("test: OnConnectAuthenticate")
			}
			return 0, false
		},
		OnPublish: func(_ *auth.Client, m MessageView) packet.ReasonCode {
			if m.Topic() == "boom" {
				panic("test: OnPublish")
			}
			return packet.Success
		},
		OnDelivered: func(id string, m MessageView) {
			if id == "fragile" {
				panic("test: OnDelivered")
			}
		},
	}}, nil)
	addr := srv.Addrs()[0].String()
	steady := secMustConnect(t, addr, hookConnect5("steady"))
	steady.mustSubscribe(1, 0, "t/#")
	fragile := secMustConnect(t, addr, hookConnect5("fragile"))
	fragile.mustSubscribe(1, 0, "t/#")
	pub := secMustConnect(t, addr, hookConnect5("pub"))

	c, ack := secConnect(t, addr, hookConnect5("boom-at-connect"))
	expectRefused(t, c, ack, packet.ServerUnavailable)

	pub.publish(0, 0, "t/1", "one", false)
	if m := steady.nextPublish(); string(m.Payload) != "one" {
		t.Fatalf("steady got %q", m.Payload)
	}
	fragile.nextPublish() // written, then OnDelivered panicked
	fragile.expectDisconnect(packet.UnspecifiedError)

	bomber := secMustConnect(t, addr, hookConnect5("bomber"))
	bomber.send(&packet.Publish{Topic: "boom", QoS: 1, PacketID: 1})
	bomber.expectDisconnect(packet.UnspecifiedError)

	pub.publish(0, 0, "t/2", "two", false)
	if m := steady.nextPublish(); string(m.Payload) != "two" {
		t.Fatalf("steady got %q after the panics", m.Payload)
	}
	pub.ping()
	if n := srv.stats.hookPanics.Load(); n != 3 {
		t.Errorf("hook panics counted: %d, want 3", n)
	}
}

// OnDelivered runs at QoS 0 when the PUBLISH is written, at QoS 1 on
// PUBACK and at QoS 2 on PUBREC, with the QoS of the delivery.
func TestHookDelivered(t *testing.T) {
	l := newHookLog()
	var h Hooks
	l.watch(&h)
	h.OnConnect, h.OnDisconnect = nil, nil
	srv := secStart(t, Options{Hooks: h}, nil)
	addr := srv.Addrs()[0].String()
	sub := secMustConnect(t, addr, hookConnect5("sub"))
	sub.subscribe(1, 2, "d/#")
	sub.subscribe(2, 0, "low/#")
	pub := secMustConnect(t, addr, hookConnect5("pub"))

	expectDelivered := func(topic string, qos byte) {
		t.Helper()
		e := l.expect(t, "delivered", "sub")
		if e.topic != topic || e.qos != qos {
			t.Fatalf("delivered %v; want %s at QoS %d", e, topic, qos)
		}
	}
	// sentinel sends a QoS 0 message through: its report shows that
	// nothing was reported before it.
	sentinel := func(topic string) {
		t.Helper()
		pub.publish(0, 0, topic, "x", false)
		sub.nextPublish()
		expectDelivered(topic, 0)
	}
	sentinel("d/0")

	// QoS 1: reported on PUBACK, not before. The QoS 0 message sent after
	// it is reported first.
	pub.publish(1, 1, "d/1", "x", false)
	p1 := sub.nextPublish()
	sentinel("d/after1")
	sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p1.PacketID})
	expectDelivered("d/1", 1)

	// QoS 2: reported on PUBREC; PUBCOMP adds nothing.
	pub.publish(2, 2, "d/2", "x", false)
	p2 := sub.nextPublish()
	sentinel("d/after2")
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p2.PacketID})
	expectDelivered("d/2", 2)
	sub.nextAck(packet.PUBREL, p2.PacketID)
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p2.PacketID})
	sentinel("d/after3")

	// A subscription at QoS 0 lowers the delivery's QoS.
	pub.publish(3, 1, "low/1", "x", false)
	sub.nextPublish()
	expectDelivered("low/1", 0)
}

// OnDropped says which messages a session lost, and why.
func TestHookDropped(t *testing.T) {
	l := newHookLog()
	var h Hooks
	l.watch(&h)
	h.OnConnect, h.OnDisconnect, h.OnDelivered = nil, nil, nil
	srv := secStart(t, Options{Hooks: h, MaxQueuedMessages: 2}, nil)
	addr := srv.Addrs()[0].String()

	expectDropped := func(client, topic string, reason DropReason) {
		t.Helper()
		e := l.expect(t, "dropped", client)
		if e.topic != topic || e.reason != reason || e.payload != "p-"+topic {
			t.Fatalf("dropped %v; want %s for %q: %v", e, topic, client, reason)
		}
	}
	// An offline persistent session: QoS 0 is not queued, QoS 1 queues up
	// to MaxQueuedMessages.
	p := hookConnect5("away")
	p.CleanStart = false
	p.Props.SessionExpiry = 300
	p.Props.Mark(packet.PropSessionExpiry)
	away := secMustConnect(t, addr, p)
	away.subscribe(1, 1, "q/#")
	away.send(&packet.Disconnect{})
	away.expectClosed()
	waitOffline(t, srv, "away")
	pub := secMustConnect(t, addr, hookConnect5("pub"))
	pub.publish(0, 0, "q/zero", "p-q/zero", false)
	expectDropped("away", "q/zero", DropOffline)
	for i := range 3 {
		pub.publish(uint16(i+1), 1, fmt.Sprintf("q/%d", i), fmt.Sprintf("p-q/%d", i), false)
	}
	expectDropped("away", "q/2", DropQueueFull)

	// Expired while queued: the background sweep finds it.
	e := &packet.Properties{MessageExpiry: 1}
	e.Mark(packet.PropMessageExpiry)
	away2 := hookConnect5("away2")
	away2.CleanStart = false
	away2.Props = p.Props
	c2 := secMustConnect(t, addr, away2)
	c2.subscribe(1, 1, "x/#")
	c2.send(&packet.Disconnect{})
	c2.expectClosed()
	waitOffline(t, srv, "away2")
	if err := srv.PublishWith("x/exp", []byte("p-x/exp"), PublishOptions{QoS: 1, Properties: e}); err != nil {
		t.Fatal(err)
	}
	expectDropped("away2", "x/exp", DropExpired)

	// Larger than the client accepts.
	small := hookConnect5("small")
	small.Props.MaximumPacketSize = 64
	small.Props.Mark(packet.PropMaximumPacketSize)
	sc := secMustConnect(t, addr, small)
	sc.subscribe(1, 0, "big/#")
	big := "p-big/x" + strings.Repeat(".", 100)
	pub.publish(0, 0, "big/x", big, false)
	ev := l.expect(t, "dropped", "small")
	if ev.reason != DropTooLarge || ev.payload != big {
		t.Fatalf("dropped %v; want big/x: too large", ev)
	}
}

// Server.Publish routes like a client's PUBLISH: to subscribers at their
// QoS, retained, and at QoS 1 durably before it returns.
func TestServerPublish(t *testing.T) {
	t.Run("not running", func(t *testing.T) {
		s := New(Options{Listeners: []ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: testlog.New(t)})
		if err := s.Publish("a", nil, 0, false); !errors.Is(err, ErrNotRunning) {
			t.Errorf("before Start: %v, want ErrNotRunning", err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := s.Publish("a", nil, 0, false); !errors.Is(err, ErrNotRunning) {
			t.Errorf("after Close: %v, want ErrNotRunning", err)
		}
	})

	// SysInterval: the $SYS/# subscriber below hears only what the test publishes.
	srv := secStart(t, Options{Limits: Limits{MaxTopicLevels: 4}, SysInterval: -1}, nil)
	addr := srv.Addrs()[0].String()
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			topic string
			qos   byte
		}{{"", 0}, {"a/+", 0}, {"a/#", 0}, {"a\x00b", 0}, {"a/b/c/d/e", 0}, {"a", 3}, {"\xff", 0}} {
			if err := srv.Publish(tc.topic, nil, tc.qos, false); err == nil {
				t.Errorf("Publish(%q, QoS %d) accepted", tc.topic, tc.qos)
			}
		}
	})
	t.Run("routes", func(t *testing.T) {
		sub := secMustConnect(t, addr, hookConnect5("sub"))
		sub.subscribe(1, 2, "r/#", "$SYS/#")
		for qos := range byte(3) {
			if err := srv.Publish(fmt.Sprintf("r/%d", qos), []byte("hello"), qos, false); err != nil {
				t.Fatalf("QoS %d: %v", qos, err)
			}
			m := sub.nextPublish()
			if m.Topic != fmt.Sprintf("r/%d", qos) || m.QoS != qos || string(m.Payload) != "hello" {
				t.Fatalf("got %s QoS %d %q", m.Topic, m.QoS, m.Payload)
			}
			switch qos {
			case 1:
				sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			case 2:
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
				sub.nextAck(packet.PUBREL, m.PacketID)
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
			}
		}
		if err := srv.Publish("$SYS/broker/hello", []byte("sys"), 0, false); err != nil {
			t.Fatalf("a $ topic: %v", err)
		}
		if m := sub.nextPublish(); m.Topic != "$SYS/broker/hello" {
			t.Fatalf("got %s, want the $SYS message", m.Topic)
		}
		props := &packet.Properties{ContentType: "text/plain", User: []packet.UserProperty{{Key: "from", Value: "go"}}}
		props.Mark(packet.PropContentType)
		if err := srv.PublishWith("r/props", []byte("p"), PublishOptions{QoS: 0, Retain: true, Properties: props}); err != nil {
			t.Fatal(err)
		}
		m := sub.nextPublish()
		if m.Props.ContentType != "text/plain" || len(m.Props.User) != 1 || m.Props.User[0].Value != "go" {
			t.Fatalf("properties not forwarded: %+v", m.Props)
		}
		late := secMustConnect(t, addr, hookConnect5("late"))
		late.subscribe(1, 0, "r/props")
		if m := late.nextPublish(); !m.Retain || string(m.Payload) != "p" {
			t.Fatalf("retained message: %+v", m)
		}
	})
}

// At QoS 1, Publish returns once the message is in the store for the
// persistent sessions it goes to, and a restart delivers it.
func TestServerPublishDurable(t *testing.T) {
	r := newRestartable(t)
	sub, _ := wireConnect(t, r.addr(), "durable", false)
	sub.Subscribe("dur/#", 1)
	sub.Disconnect()
	waitOffline(t, r.srv, "durable")
	if err := r.srv.Publish("dur/1", []byte("kept"), 1, false); err != nil {
		t.Fatal(err)
	}
	if bodies, entries := storeContents(t, r.st); bodies == 0 || entries != 1 {
		t.Fatalf("after Publish returned, the store holds %d bodies and %d entries; want the message and 1 entry", bodies, entries)
	}
	r.restart()
	sub, present := wireConnect(t, r.addr(), "durable", false)
	if !present {
		t.Fatal("session not present after the restart")
	}
	p, ok := sub.Next().(*packet.Publish)
	if !ok || p.Topic != "dur/1" || string(p.Payload) != "kept" {
		t.Fatalf("after the restart got %+v, want dur/1 kept", p)
	}
}

// waitOffline waits until the session of clientID is there without a
// connection.
func waitOffline(t testing.TB, srv *Server, clientID string) {
	t.Helper()
	wiretest.Eventually(t, clientID+"'s session goes offline", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		ss := srv.sessions.get(clientID)
		return ss != nil && !ss.online.Load()
	})
}

// OnConnectAuthenticate sees the TLS state, and may admit a client by its
// certificate where the listener refuses anonymous clients.
func TestHookConnectAuthenticateTLS(t *testing.T) {
	ca := testpki.NewCA(t, "petrel client CA")
	cfg := tlsFiles(t, t.TempDir(), ca.Server(t, 1), ca)
	no := false
	srv := secStart(t, Options{
		Listeners: []ListenerConfig{{Name: "mtls", Kind: "tls", Address: "127.0.0.1:0", TLS: tlsListener(t, cfg), AllowAnonymous: &no}},
		Hooks: Hooks{OnConnectAuthenticate: func(r *ConnectRequest) (packet.ReasonCode, bool) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.Certificates) == 0 {
				return packet.NotAuthorized, true
			}
			if r.TLS.PeerCertificates[0].Subject.CommonName != "device-1" {
				return packet.Banned, true
			}
			return packet.Success, true
		}},
	}, nil)
	addr := srv.Addrs()[0].String()
	for _, tc := range []struct {
		cn string
		ok bool
	}{{"device-1", true}, {"device-2", false}} {
		conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert(t, ca, tc.cn).TLS}}
		c, err := pahoTryConnect(t, pahoOn("ssl://"+addr, tc.cn, conf))
		if tc.ok != (err == nil) {
			t.Fatalf("%s: connect: %v; want admitted %v", tc.cn, err, tc.ok)
		}
		if err == nil {
			c.Disconnect(0)
		}
	}
}

// A QoS 0 message for a client that reads nothing is dropped once its
// unread output passes the limit, and OnDropped says so.
func TestHookDroppedSlowClient(t *testing.T) {
	l := newHookLog()
	srv := secStart(t, Options{Hooks: Hooks{OnDropped: func(id string, m MessageView, r DropReason) {
		if r == DropSlowClient {
			l.add(hookEvent{hook: "dropped", client: id, topic: m.Topic(), reason: r})
		}
	}}}, nil)
	addr := srv.Addrs()[0].String()
	sleepy := secMustConnect(t, addr, hookConnect5("sleepy"))
	sleepy.mustSubscribe(1, 0, "flood")
	pub := secMustConnect(t, addr, hookConnect5("pub"))
	payload := strings.Repeat("z", 64<<10)
	// The kernel's buffers take some megabytes before the broker's output
	// grows: publish until the drop is reported, within a bound.
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("no message dropped for a client that reads nothing after 2000 × 64 KiB")
		}
		pub.publish(0, 0, "flood", payload, false)
		select {
		case e := <-l:
			if e.client != "sleepy" || e.topic != "flood" {
				t.Fatalf("dropped %v; want flood for sleepy", e)
			}
			pub.ping() // the publisher is still served
			return
		default:
		}
	}
}
