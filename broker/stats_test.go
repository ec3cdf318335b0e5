package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// Stats after known traffic, over real sockets: the gauges kept as running
// counts against a walk over every session, and each counter family with
// exact values.

// walkedGauges are the gauges Stats keeps running counts of, computed the
// slow way: a walk over every session, which Stats must never do.
type walkedGauges struct {
	ClientsConnected, Sessions, SessionsOffline   int64
	Subscriptions, SharedSubscriptions            int64
	QueuedMessages, QueuedBytes, InflightMessages int64
}

func walkGauges(s *Server) walkedGauges {
	var g walkedGauges
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions.all() {
		ss.mu.Lock()
		g.Sessions++
		if ss.conn != nil {
			g.ClientsConnected++
		} else {
			g.SessionsOffline++
		}
		g.Subscriptions += int64(len(ss.subs))
		for _, sub := range ss.subs {
			if sub.group != nil {
				g.SharedSubscriptions++
			}
		}
		g.QueuedMessages += int64(ss.queuedLocked())
		g.QueuedBytes += ss.queuedBytesLocked()
		g.InflightMessages += int64(ss.inflight.len())
		ss.mu.Unlock()
	}
	return g
}

func gaugesOf(st Stats) walkedGauges {
	return walkedGauges{st.ClientsConnected, st.Sessions, st.SessionsOffline, st.Subscriptions,
		st.SharedSubscriptions, st.QueuedMessages, st.QueuedBytes, st.InflightMessages}
}

// expectGauges waits until Stats' gauges are want, and the walk agrees.
func expectGauges(t *testing.T, srv *Server, step string, want walkedGauges) {
	t.Helper()
	var got, walked walkedGauges
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		got, walked = gaugesOf(srv.Stats()), walkGauges(srv)
		if got == want && walked == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gauges\n  %+v\nwalked\n  %+v\nwant\n  %+v", step, got, walked, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// The gauges Stats keeps as running counts (queued and in flight, sessions
// and subscriptions) are those a walk over every session finds, as
// deliveries queue, go in flight, are acknowledged and sessions come, go
// offline and end: with memory queues only, and with durable sessions in
// the Pebble store, whose deliveries wait for their commit and, past the
// memory queue, in the store alone.
func TestStatsGaugesFollowQueuesAndWindows(t *testing.T) {
	for _, engine := range []string{"memory", "pebble"} {
		t.Run(engine, func(t *testing.T) {
			opts := Options{MaxInflight: 2, SysInterval: -1} // no retained $SYS messages
			if engine == "pebble" {
				opts.Store = openPebble(t, t.TempDir(), pebblestore.Options{})
			}
			srv := startServer(t, opts)
			addr := srv.Addrs()[0].String()

			win, _ := wiretest.MustConnect(t, addr, "win", false) // persistent, reads but does not acknowledge
			win.Subscribe("g/#", 1)
			away, _ := wiretest.MustConnect(t, addr, "away", false) // persistent, offline
			away.Subscribe("g/#", 1)
			away.Disconnect()
			shr, _ := wiretest.MustConnect(t, addr, "shr", true)
			shr.SendSubscribe(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{
				{Filter: "$share/grp/g/#", QoS: 0}, {Filter: "other/#", QoS: 0}}})
			pub, _ := wiretest.MustConnect(t, addr, "pub", true)
			expectGauges(t, srv, "connected", walkedGauges{ClientsConnected: 3, Sessions: 4, SessionsOffline: 1,
				Subscriptions: 4, SharedSubscriptions: 1})

			const n, size = 5, 10
			for i := range n {
				pub.SendPublish(&packet.Publish{Topic: "g/1", Payload: make([]byte, size), QoS: 1, PacketID: uint16(i + 1)})
			}
			// win: 2 in flight (its window), 3 queued; away: 5 queued.
			expectGauges(t, srv, "published", walkedGauges{ClientsConnected: 3, Sessions: 4, SessionsOffline: 1,
				Subscriptions: 4, SharedSubscriptions: 1, QueuedMessages: 8, QueuedBytes: 8 * size, InflightMessages: 2})

			for got := 0; got < n; got++ {
				p := win.NextPublish()
				win.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			}
			win.Ping()
			expectGauges(t, srv, "win acknowledged", walkedGauges{ClientsConnected: 3, Sessions: 4, SessionsOffline: 1,
				Subscriptions: 4, SharedSubscriptions: 1, QueuedMessages: 5, QueuedBytes: 5 * size})

			away, present := wiretest.MustConnect(t, addr, "away", false)
			if !present {
				t.Fatal("away's session is not present")
			}
			for got := 0; got < n; got++ {
				p := away.NextPublish()
				away.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			}
			away.Ping()
			expectGauges(t, srv, "away drained", walkedGauges{ClientsConnected: 4, Sessions: 4,
				Subscriptions: 4, SharedSubscriptions: 1})

			// A session taken over with messages in flight: what was in
			// flight stays in flight, then is re-sent.
			for i := range 3 {
				pub.SendPublish(&packet.Publish{Topic: "g/2", Payload: make([]byte, size), QoS: 1, PacketID: uint16(i + 1)})
			}
			expectGauges(t, srv, "published again", walkedGauges{ClientsConnected: 4, Sessions: 4,
				Subscriptions: 4, SharedSubscriptions: 1, QueuedMessages: 2, QueuedBytes: 2 * size, InflightMessages: 4})

			for _, c := range []*wiretest.Client{win, away, shr, pub} {
				c.Disconnect()
			}
			// win and away stay, offline, with what they had in flight
			// (which counts as in flight until they return) and queued.
			expectGauges(t, srv, "disconnected", walkedGauges{Sessions: 2, SessionsOffline: 2, Subscriptions: 2,
				QueuedMessages: 2, QueuedBytes: 2 * size, InflightMessages: 4})

			for _, id := range []string{"win", "away"} {
				c, _ := wiretest.MustConnect(t, addr, id, true) // a clean start ends the session
				c.Disconnect()
			}
			expectGauges(t, srv, "ended", walkedGauges{})
			if st := srv.Stats(); st.RetainedMessages != 0 || st.HeldBackConnections != 0 {
				t.Fatalf("retained %d, held back %d, want 0", st.RetainedMessages, st.HeldBackConnections)
			}
		})
	}
}

// expectCounts waits until got() returns the counts want: what a client
// saw may be counted a moment after it saw it.
func expectCounts(t *testing.T, what string, want map[string]uint64, got func() map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		g := got()
		if maps.Equal(g, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v, want %v", what, g, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// zeroCounts is a count of 0 for each label.
func zeroCounts(labels []string) map[string]uint64 {
	m := make(map[string]uint64, len(labels))
	for _, l := range labels {
		m[l] = 0
	}
	return m
}

// Each way a connected client's connection ends is counted once, under its
// reason; a connection refused at CONNECT, or that never sent one, is not
// a disconnect. Once the broker is closed, every CONNACK 0x00 sent has its
// disconnect.
func TestStatsDisconnectReasons(t *testing.T) {
	opts := Options{
		MaxInflight:     1,
		StallTimeout:    50 * time.Millisecond,
		ServerKeepAlive: 100 * time.Millisecond, // MQTT 5 clients only: the others ask for none
		Hooks: Hooks{OnPublish: func(_ *auth.Client, m MessageView) packet.ReasonCode {
			if m.Topic() == "panic" {
				panic("on purpose")
			}
			return packet.Success
		}},
	}
	srv := secStart(t, opts, nil)
	addr := srv.Addrs()[0].String()
	want := zeroCounts(DisconnectReasons)
	expect := func(step string) {
		t.Helper()
		expectCounts(t, step+": disconnects", want, func() map[string]uint64 { return srv.Stats().Disconnects })
	}
	connect := func(id string) *wiretest.Client {
		c, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: id, CleanStart: true})
		return c
	}

	connect("bye").Disconnect()
	want["client_disconnect"]++
	expect("DISCONNECT")

	connect("lost").Conn.Close()
	want["connection_lost"]++
	expect("connection closed")

	c := connect("twice")
	c.Send(&packet.Connect{Version: packet.V311, ClientID: "twice", CleanStart: true})
	c.ExpectClosed()
	want["protocol_error"]++
	expect("second CONNECT")

	first := connect("dup")
	second := connect("dup")
	first.ExpectClosed()
	want["taken_over"]++
	expect("takeover")

	ka := wiretest.Dial(t, "tcp", addr, "ka", packet.V5)
	ka.SendConnect(&packet.Connect{Version: packet.V5, ClientID: "ka", CleanStart: true, KeepAlive: 60})
	ka.ExpectDisconnect(packet.KeepAliveTimeout)
	want["keep_alive_timeout"]++
	expect("keep alive")

	kick := connect("kick")
	kick.Ping()
	srv.mu.Lock()
	ss := srv.sessions.get("kick")
	srv.mu.Unlock()
	ss.mu.Lock()
	kc := ss.conn
	ss.mu.Unlock()
	kc.disconnect(packet.AdministrativeAction, "kicked by a test")
	kick.ExpectClosed()
	want["kicked"]++
	expect("kicked")

	stall := connect("stall")
	stall.Subscribe("stall", 1)
	pub := connect("pub")
	pub.SendPublish(&packet.Publish{Topic: "stall", QoS: 1, PacketID: 1})
	stall.NextPublish() // and never acknowledged
	stall.ExpectClosed()
	want["stalled"]++
	expect("stalled")

	pub.Send(&packet.Publish{Topic: "panic"})
	pub.ExpectClosed()
	want["internal_error"]++
	expect("hook panicked")

	// Not disconnects: a CONNECT refused, a connection that sends none.
	bad, ack := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: "", CleanStart: false})
	if ack.Code != packet.ConnRefusedIdentifierRejected {
		t.Fatalf("CONNACK 0x%02x, want 0x02", byte(ack.Code))
	}
	bad.ExpectClosed()
	wiretest.Dial(t, "tcp", addr, "silent", packet.V311).Conn.Close()
	expect("refused")

	stays := []*wiretest.Client{second, connect("stay1"), connect("stay2")}
	for _, c := range stays {
		c.Ping()
	}
	srv.Close()
	for _, c := range stays {
		c.ExpectClosed()
	}
	want["server_shutdown"] += 3
	expect("shutdown")

	st := srv.Stats()
	var ends uint64
	for _, n := range st.Disconnects {
		ends += n
	}
	if st.ConnacksSent["0x00"] != ends || st.ClientsConnected != 0 {
		t.Fatalf("%d CONNACK 0x00 sent, %d disconnects, %d clients connected after Close",
			st.ConnacksSent["0x00"], ends, st.ClientsConnected)
	}
	if st.SessionsTakenOver != 1 {
		t.Fatalf("%d sessions taken over, want 1", st.SessionsTakenOver)
	}
	if want := map[string]uint64{"0x00": 11, "0x85": 1}; !maps.Equal(st.ConnacksSent, want) {
		t.Fatalf("CONNACKs %v, want %v", st.ConnacksSent, want)
	}
	// Every connection the listener accepted: 11 admitted, one refused,
	// one silent.
	if st.ConnectionsAccepted != 13 {
		t.Fatalf("%d connections accepted, want 13", st.ConnectionsAccepted)
	}
}

// Each reason a message is given up for is counted: a full queue, QoS 0
// for an offline session, a client's Maximum Packet Size, nobody
// subscribed, OnPublish's rejection, a client refusing it in its PUBACK,
// and its expiry.
func TestStatsDroppedMessages(t *testing.T) {
	srv := secStart(t, Options{MaxQueuedMessages: 2, SysInterval: -1, Hooks: Hooks{
		OnPublish: func(_ *auth.Client, m MessageView) packet.ReasonCode {
			if m.Topic() == "d/reject" {
				return packet.ImplementationSpecificError
			}
			return packet.Success
		}}}, nil)
	addr := srv.Addrs()[0].String()
	want := zeroCounts(DropReasons)
	expect := func(step string) {
		t.Helper()
		expectCounts(t, step+": dropped", want, func() map[string]uint64 { return srv.Stats().MessagesDropped })
	}

	q, _ := wiretest.MustConnect(t, addr, "q", false)
	q.Subscribe("d/q/#", 1)
	q.Disconnect()
	pub5 := wiretest.Dial(t, "tcp", addr, "pub5", packet.V5)
	pub5.SendConnect(&packet.Connect{Version: packet.V5, ClientID: "pub5", CleanStart: true})
	for i := range 3 {
		pub5.SendPublish(&packet.Publish{Topic: "d/q/1", QoS: 1, PacketID: uint16(i + 1)})
	}
	want["queue_full"]++
	expect("queue full")

	pub5.Send(&packet.Publish{Topic: "d/q/0"}) // QoS 0 for an offline session
	pub5.Ping()
	want["offline"]++
	expect("offline")

	big := wiretest.Dial(t, "tcp", addr, "big", packet.V5)
	p := &packet.Connect{Version: packet.V5, ClientID: "big", CleanStart: true}
	p.Props.MaximumPacketSize = 64
	p.Props.Mark(packet.PropMaximumPacketSize)
	big.SendConnect(p)
	big.Subscribe("d/big", 0)
	pub5.Send(&packet.Publish{Topic: "d/big", Payload: make([]byte, 100)})
	pub5.Ping()
	big.Ping()
	want["too_large"]++
	expect("too large")

	pub5.Send(&packet.Publish{Topic: "d/nobody"})
	pub5.Send(&packet.Publish{Topic: "d/nobody/retained", Payload: []byte("kept"), Retain: true}) // kept: not dropped
	pub5.Ping()
	want["no_subscribers"]++
	expect("no subscribers")

	if code := pub5.SendPublish(&packet.Publish{Topic: "d/reject", QoS: 1, PacketID: 9}); code != packet.ImplementationSpecificError {
		t.Fatalf("PUBACK 0x%02x for a rejected message, want 0x83", byte(code))
	}
	want["rejected"]++
	expect("rejected")

	ref := wiretest.Dial(t, "tcp", addr, "ref", packet.V5)
	ref.SendConnect(&packet.Connect{Version: packet.V5, ClientID: "ref", CleanStart: true})
	ref.Subscribe("d/ref", 1)
	pub5.SendPublish(&packet.Publish{Topic: "d/ref", QoS: 1, PacketID: 10})
	got := ref.NextPublish()
	ref.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID, Code: packet.UnspecifiedError})
	ref.Ping()
	want["refused"]++
	expect("refused by the client")

	// A message expiring in a second, for a session offline: the
	// background sweep gives it up once the second has passed.
	ex, _ := wiretest.MustConnect(t, addr, "ex", false)
	ex.Subscribe("d/ex", 1)
	ex.Disconnect()
	e := &packet.Publish{Topic: "d/ex", QoS: 1, PacketID: 11}
	e.Props.MessageExpiry = 1
	e.Props.Mark(packet.PropMessageExpiry)
	pub5.SendPublish(e)
	want["expired"]++
	expect("expired")

	if st := srv.Stats(); st.RetainedMessages != 1 || st.QueuedMessages != 2 {
		t.Fatalf("retained %d queued %d, want 1 and 2", st.RetainedMessages, st.QueuedMessages)
	}
}

// downAuthenticator is an authentication backend that cannot answer.
type downAuthenticator struct{}

func (downAuthenticator) Authenticate(context.Context, *auth.Client, []byte) error {
	return errors.New("the user database is down")
}

// Logins count by result: admitted with a password, refused, admitted
// without a user name, and an authenticator that fails.
func TestStatsAuthentication(t *testing.T) {
	srv := secStart(t, Options{Authenticator: loadMosquittoPasswd(t)}, quickThrottle)
	addr := srv.Addrs()[0].String()
	login := func(id, user, password string) packet.ReasonCode {
		p := connectPacket(packet.V311, id)
		if user != "" {
			withLogin(p, user, password)
		}
		c, ack := secConnect(t, addr, p)
		if ack.Code == packet.Success {
			c.ping()
		} else {
			c.expectClosed()
		}
		return ack.Code
	}
	login("a1", "alice", "wonderland")
	login("a2", "alice", "wonderland")
	login("bad", "alice", "guess")
	login("anon", "", "")
	down := secStart(t, Options{Authenticator: downAuthenticator{}}, quickThrottle)
	c, ack := secConnect(t, down.Addrs()[0].String(), withLogin(connectPacket(packet.V5, "d"), "alice", "wonderland"))
	if ack.Code != packet.ServerUnavailable {
		t.Fatalf("CONNACK 0x%02x with the authenticator down, want 0x88", byte(ack.Code))
	}
	c.expectClosed()

	if got, want := srv.Stats().Authentication, map[string]uint64{"success": 2, "failure": 1, "anonymous": 1, "error": 0}; !maps.Equal(got, want) {
		t.Fatalf("authentication %v, want %v", got, want)
	}
	if got, want := down.Stats().Authentication, map[string]uint64{"success": 0, "failure": 0, "anonymous": 0, "error": 1}; !maps.Equal(got, want) {
		t.Fatalf("authentication with the backend down %v, want %v", got, want)
	}
	if got, want := srv.Stats().ConnacksSent, map[string]uint64{"0x00": 3, "0x86": 1}; !maps.Equal(got, want) {
		t.Fatalf("CONNACKs %v, want %v", got, want)
	}
	if got, want := down.Stats().ConnacksSent, map[string]uint64{"0x00": 0, "0x88": 1}; !maps.Equal(got, want) {
		t.Fatalf("CONNACKs with the backend down %v, want %v", got, want)
	}
}

// Access decisions count by result, under the ACL file: a filter allowed
// and one denied, a PUBLISH allowed and one denied, a delivery the ACL
// checks (alice's filter covers a topic she may not read), and a will
// refused at CONNECT.
func TestStatsAuthorization(t *testing.T) {
	srv := aclServer(t)
	alice := aclConnect(t, srv, packet.V311, "alice-1", "alice")
	alice.mustSubscribe(1, 1, "home/alice/#") // allowed: 1
	if codes := alice.subscribe(2, 1, "home/bob/#"); codes[0] != packet.SubackFailure {
		t.Fatalf("SUBACK 0x%02x for home/bob/#, want 0x80", byte(codes[0]))
	} // denied: 1
	alice.send(&packet.Publish{Topic: "home/alice/x", QoS: 1, PacketID: 3}) // allowed: 2
	if got := alice.nextPublish(); got.Topic != "home/alice/x" {            // delivered to alice, checked: 3
		t.Fatalf("alice got %q", got.Topic)
	}
	alice.nextAck(packet.PUBACK, 3)
	alice.publish(4, 1, "public/x", "no", false) // denied: 2 (3.1.1: acknowledged all the same)
	alice.ping()
	p := connectPacket(packet.V311, "anon-will")
	p.WillFlag, p.WillTopic, p.WillPayload = true, "public/will", []byte("gone")
	c, ack := secConnect(t, srv.Addrs()[0].String(), p)
	expectRefused(t, c, ack, packet.ConnRefusedNotAuthorized) // denied: 3
	if got, want := srv.Stats().Authorization, map[string]uint64{"allowed": 3, "denied": 3}; !maps.Equal(got, want) {
		t.Fatalf("authorization %v, want %v", got, want)
	}
}

// Packets, bytes and messages are counted both ways, exactly, when
// payloads big enough to be lent to the event loop's writev (rather than
// copied into the output) go out beside small packets.
func TestStatsCountsLentPayloads(t *testing.T) {
	srv := startServer(t, Options{})
	addr := srv.Addrs()[0].String()
	var bytes wiretest.ByteCounter // the broker's bytes received and sent
	dial := func(id string) *wiretest.Client {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := wiretest.New(t, bytes.Wrap(nc), id, packet.V311)
		c.SendConnect(&packet.Connect{Version: packet.V311, ClientID: id, CleanStart: true})
		return c
	}
	sub := dial("sub")
	sub.Subscribe("big/#", 2)
	pub := dial("pub")
	const n = 4
	for i := range n {
		payload := make([]byte, minLent+i*1000) // lent
		if i%2 == 1 {
			payload = payload[:100] // copied
		}
		pub.SendPublish(&packet.Publish{Topic: "big/" + fmt.Sprint(i), Payload: payload, QoS: 1, PacketID: uint16(i + 1)})
	}
	for range n {
		p := sub.NextPublish()
		sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	sub.Disconnect()
	pub.Disconnect()

	wantIn := map[string]uint64{"connect": 2, "subscribe": 1, "publish": n, "puback": n, "disconnect": 2}
	wantOut := map[string]uint64{"connack": 2, "suback": 1, "publish": n, "puback": n}
	var st Stats
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		// What the clients saw may be counted a moment after they saw it.
		st = srv.Stats()
		if st.BytesReceived == uint64(bytes.Written.Load()) && st.BytesSent == uint64(bytes.Read.Load()) &&
			maps.Equal(nonZero(st.PacketsReceived), wantIn) && maps.Equal(nonZero(st.PacketsSent), wantOut) &&
			st.MessagesReceived == [3]uint64{0, n, 0} && st.MessagesSent == [3]uint64{0, n, 0} {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bytes received %d sent %d (the clients: %d and %d); packets received %v (want %v), sent %v (want %v); "+
				"messages received %v sent %v (want %d at QoS 1)", st.BytesReceived, st.BytesSent, bytes.Written.Load(), bytes.Read.Load(),
				nonZero(st.PacketsReceived), wantIn, nonZero(st.PacketsSent), wantOut, st.MessagesReceived, st.MessagesSent, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// Messages count by QoS as Eclipse Paho's clients send and receive them,
// MQTT 3.1.1 (paho.mqtt.golang) and 5 (paho.golang): each client publishes
// at each QoS to a subscriber that takes QoS 2.
func TestStatsPahoMessages(t *testing.T) {
	srv := startServer(t, Options{})
	in := newInbox()
	sub := pahoConnect(t, pahoOptions(t, srv, "paho-sub"))
	wait(t, sub.Subscribe("paho/#", 2, in.handler), "subscribe")

	pub3 := pahoConnect(t, pahoOptions(t, srv, "paho-pub3"))
	pub5, ack, err := ctPaho(t, srv, paho.ClientConfig{ClientID: "paho-pub5"},
		&paho.Connect{ClientID: "paho-pub5", CleanStart: true, KeepAlive: 0})
	if err != nil {
		t.Fatalf("paho.golang connect: %+v, %v", ack, err)
	}
	const each = 3
	for qos := range byte(3) {
		for i := range each {
			wait(t, pub3.Publish("paho/3", qos, false, fmt.Sprint(i)), "publish")
			if _, err := pub5.Publish(ctCtx(t), &paho.Publish{Topic: "paho/5", QoS: qos, Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatalf("paho.golang publish: %v", err)
			}
		}
	}
	for range 3 * 2 * each {
		in.next(t)
	}
	want := [3]uint64{2 * each, 2 * each, 2 * each}
	wiretest.Eventually(t, "messages counted", func() bool {
		st := srv.Stats()
		return st.MessagesReceived == want && st.MessagesSent == want
	})
	// The QoS 2 flows are complete on both sides.
	wiretest.Eventually(t, "QoS 2 flows counted", func() bool {
		st := srv.Stats()
		return st.PacketsReceived["pubrel"] == 2*each && st.PacketsReceived["pubcomp"] == 2*each &&
			st.PacketsSent["pubrec"] == 2*each && st.PacketsSent["pubcomp"] == 2*each &&
			st.PacketsSent["pubrel"] == 2*each && st.PacketsReceived["pubrec"] == 2*each
	})
}

// A session whose expiry interval passes while its client is away is
// counted as expired.
func TestStatsSessionExpired(t *testing.T) {
	srv := startServer(t, Options{})
	c := wiretest.Dial(t, "tcp", srv.Addrs()[0].String(), "brief", packet.V5)
	p := &packet.Connect{Version: packet.V5, ClientID: "brief", CleanStart: true}
	p.Props.SessionExpiry = 1
	p.Props.Mark(packet.PropSessionExpiry)
	c.SendConnect(p)
	c.Disconnect()
	if st := srv.Stats(); st.SessionsExpired != 0 || st.Sessions != 1 || st.SessionsOffline != 1 {
		t.Fatalf("expired %d, sessions %d (%d offline) before the expiry", st.SessionsExpired, st.Sessions, st.SessionsOffline)
	}
	wiretest.Eventually(t, "session expired", func() bool {
		st := srv.Stats()
		return st.SessionsExpired == 1 && st.Sessions == 0
	})
}

// The store's commit latency is observed for each commit group, and its
// size is what the store says: on disk for Pebble, in memory for the
// memory store.
func TestStatsStore(t *testing.T) {
	for _, engine := range []string{"memory", "pebble"} {
		t.Run(engine, func(t *testing.T) {
			var opts Options
			if engine == "pebble" {
				opts.Store = openPebble(t, t.TempDir(), pebblestore.Options{})
			}
			srv := startServer(t, opts)
			addr := srv.Addrs()[0].String()
			sub, _ := wiretest.MustConnect(t, addr, "durable", false)
			sub.Subscribe("s", 1)
			pub, _ := wiretest.MustConnect(t, addr, "pub", true)
			pub.SendPublish(&packet.Publish{Topic: "s", Payload: []byte("kept"), QoS: 1, PacketID: 2, Retain: true})
			sub.NextPublish() // once committed
			st := srv.Stats()
			h := st.Store.CommitDuration
			if h.Count == 0 || h.Sum <= 0 || len(h.Buckets) == 0 {
				t.Fatalf("commit latency %+v after durable writes", h)
			}
			for i, b := range h.Buckets {
				if b.Count > h.Count || (i > 0 && (b.Count < h.Buckets[i-1].Count || b.UpperBound <= h.Buckets[i-1].UpperBound)) {
					t.Fatalf("buckets not cumulative and ascending: %+v", h)
				}
			}
			if st.Store.SizeBytes <= 0 {
				t.Fatalf("store size %d with a session and a retained message in it", st.Store.SizeBytes)
			}
			// The PUBACK waited for the commit: it is counted as it goes out.
			want := map[string]uint64{"connack": 2, "suback": 1, "puback": 1, "publish": 1}
			wiretest.Eventually(t, fmt.Sprintf("packets sent %v", want), func() bool {
				return maps.Equal(nonZero(srv.Stats().PacketsSent), want)
			})
		})
	}
}

// Stats reads Petrel's version from the build, and the label sets are
// complete whatever was counted.
func TestStatsLabels(t *testing.T) {
	st := startServer(t, Options{}).Stats()
	if st.Version == "" || st.StartTime.IsZero() {
		t.Fatalf("version %q, start time %v", st.Version, st.StartTime)
	}
	for name, m := range map[string]struct {
		got  map[string]uint64
		want []string
	}{
		"disconnects":    {st.Disconnects, DisconnectReasons},
		"dropped":        {st.MessagesDropped, DropReasons},
		"authentication": {st.Authentication, AuthenticationResults},
		"authorization":  {st.Authorization, AuthorizationResults},
	} {
		if got := slices.Sorted(maps.Keys(m.got)); !slices.Equal(got, slices.Sorted(slices.Values(m.want))) {
			t.Errorf("%s: labels %v, want %v", name, got, m.want)
		}
	}
	for _, typ := range []string{"connect", "publish", "pingreq", "auth"} {
		if _, ok := st.PacketsReceived[typ]; !ok {
			t.Errorf("packets received without %q: %v", typ, st.PacketsReceived)
		}
	}
	for label := range st.PacketsSent {
		if label != strings.ToLower(label) || label == "connect" {
			t.Errorf("packets sent has %q", label)
		}
	}
}
