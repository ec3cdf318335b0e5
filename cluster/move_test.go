package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// connect5 connects an MQTT 5 client with a session that outlives its
// connection; it returns the client and whether its session was present.
func connect5(t *testing.T, addr, id string, clean bool, adjust func(*packet.Connect)) (*wiretest.Client, bool) {
	t.Helper()
	c := &packet.Connect{Version: packet.V5, CleanStart: clean, ClientID: id, KeepAlive: 60}
	c.Props.SessionExpiry = 300
	c.Props.Mark(packet.PropSessionExpiry)
	if adjust != nil {
		adjust(c)
	}
	w, ack := wiretest.Connect(t, addr, c)
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK 0x%02x", id, byte(ack.Code))
	}
	return w, ack.SessionPresent
}

// A client that connects to another node takes its session from the node
// that held it: the connection there is told that its session was taken
// over, and the new one finds the session present with its subscriptions,
// its queue in order, what was in flight again with the same packet ids
// (DUP set), PUBREL for the QoS 2 message it had received, and the QoS 2
// packet id it had sent and not released. Messages published afterwards
// go to the new node only.
// [MQTT-3.1.2-5] [MQTT-3.1.4-3] [MQTT-3.2.2-3] [MQTT-4.4.0-1] v5
func TestClusterSessionMovesWithItsClient(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	sub, present := connect5(t, n1, "mover", true, nil)
	if present {
		t.Fatal("a new session is present")
	}
	sub.SendSubscribe(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{
		{Filter: "q1/#", QoS: 1}, {Filter: "q2/#", QoS: 2}}})
	pub, _ := connect5(t, n3, "pub", true, nil)

	// In flight on n1: a QoS 1 message unacknowledged, a QoS 2 message
	// received (PUBREC sent) but not completed.
	if code := pub.SendPublish(&packet.Publish{Topic: "q1/a", Payload: []byte("one"), QoS: 1, PacketID: 1}); code != 0 {
		t.Fatalf("PUBACK 0x%02x", byte(code))
	}
	p1 := sub.NextPublish()
	if pub.SendPublish(&packet.Publish{Topic: "q2/a", Payload: []byte("two"), QoS: 2, PacketID: 2}) != 0 {
		t.Fatal("PUBREC refused")
	}
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
	pub.ExpectAck(packet.PUBCOMP, 2)
	p2 := sub.NextPublish()
	sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p2.PacketID})
	sub.ExpectAck(packet.PUBREL, p2.PacketID)
	// A QoS 2 message from the client, not yet released.
	if sub.SendPublish(&packet.Publish{Topic: "elsewhere", Payload: []byte("x"), QoS: 2, PacketID: 7}) >= 0x80 {
		t.Fatal("PUBREC refused")
	}
	sub.Ping() // everything above is taken

	// The client comes back on n2 while its connection to n1 is open.
	sub2, present := connect5(t, n2, "mover", false, nil)
	if !present {
		t.Fatal("the session did not follow the client to another node")
	}
	if d := sub.WaitClose(wiretest.Timeout); d == nil || d.Code != packet.SessionTakenOver {
		t.Fatalf("the old connection got %+v, want DISCONNECT 0x8E", d)
	}
	got := sub2.NextPublish()
	if got.Topic != "q1/a" || !got.Dup || got.PacketID != p1.PacketID {
		t.Fatalf("resent: %s dup=%v pid=%d, want q1/a dup=true pid=%d", got.Topic, got.Dup, got.PacketID, p1.PacketID)
	}
	sub2.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID})
	sub2.ExpectAck(packet.PUBREL, p2.PacketID) // not the PUBLISH again: it was received
	sub2.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p2.PacketID})
	// The client's own QoS 2 id is still awaiting release.
	sub2.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	if a := sub2.ExpectAck(packet.PUBCOMP, 7); a.Code != packet.Success {
		t.Fatalf("PUBCOMP for the client's own QoS 2 id: 0x%02x, want success (the id moved)", byte(a.Code))
	}

	// From now on messages go to n2.
	for i := range 5 {
		pub.SendPublish(&packet.Publish{Topic: "q1/b", Payload: fmt.Appendf(nil, "after %d", i), QoS: 1, PacketID: uint16(10 + i)})
	}
	for i := range 5 {
		p := sub2.NextPublish()
		if want := fmt.Sprintf("after %d", i); string(p.Payload) != want || p.Dup {
			t.Fatalf("got %q dup=%v, want %q", p.Payload, p.Dup, want)
		}
		sub2.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	sub2.Ping()
}

// A session whose client is away keeps what comes for it on its node;
// the client, back on another node, gets all of it, in order, once.
// [MQTT-3.1.2-23] [MQTT-4.6.0-6] v5
func TestClusterOfflineSessionMovesWithItsQueue(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	sub, _ := connect5(t, n1, "away", true, nil)
	sub.Subscribe("q/#", 2)
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()

	pub, _ := connect5(t, n3, "pub", true, nil)
	const n = 3000
	for i := range n {
		qos := byte(1 + i%2)
		pid := uint16(i%60000 + 1)
		pub.Send(&packet.Publish{Topic: "q/x", Payload: fmt.Appendf(nil, "%d", i), QoS: qos, PacketID: pid})
		a := pub.Next().(*packet.Ack)
		if qos == 2 {
			pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: a.PacketID})
			pub.ExpectAck(packet.PUBCOMP, a.PacketID)
		}
	}
	next := 0
	wiretest.DrainSessionWith(t, n2, &packet.Connect{Version: packet.V5, ClientID: "away", KeepAlive: 60,
		Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 300}}, func(p *packet.Publish) {
		if want := fmt.Sprint(next); string(p.Payload) != want {
			t.Fatalf("message %d: got %q", next, p.Payload)
		}
		next++
	})
	if next != n {
		t.Fatalf("%d of %d messages arrived", next, n)
	}
}

// receiver is a QoS 2 subscriber's side of its session, as a client
// keeps it across connections: the packet ids of the messages it has
// received and not yet seen released, so that a message sent again (with
// the same id) is acknowledged but not taken twice. [MQTT-4.3.3-9]
type receiver struct {
	t        *testing.T
	awaiting map[uint16]bool
	got      map[string]int // payload → times taken
	// trace says, for a message taken twice, how each copy came.
	trace map[string][]string
	conn  int // connections served, for the trace
}

// took notes a message taken.
func (rc *receiver) took(w *wiretest.Client, p *packet.Publish) {
	rc.got[string(p.Payload)]++
	if rc.trace == nil {
		rc.trace = make(map[string][]string)
	}
	rc.trace[string(p.Payload)] = append(rc.trace[string(p.Payload)],
		fmt.Sprintf("%s #%d pid %d dup %v", w.Name, rc.conn, p.PacketID, p.Dup))
}

// waitAll serves w until every message in ok has been taken, and fails
// the test, naming those missing, if some have not after a while.
func (rc *receiver) waitAll(w *wiretest.Client, ok []string) {
	rc.t.Helper()
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		rc.serve(w, true)
		var missing []string
		for _, p := range ok {
			if rc.got[p] == 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("%d of %d acknowledged messages never arrived: %v", len(missing), len(ok), missing[:min(len(missing), 20)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serve reads w until PINGRESP (ping) or the close, taking and
// acknowledging what arrives; it reports whether the connection is open.
func (rc *receiver) serve(w *wiretest.Client, ping bool) bool {
	rc.t.Helper()
	got, open := rc.collect(w, ping)
	for _, p := range got {
		rc.handle(w, p)
	}
	return open
}

// collect reads w until PINGRESP (ping) or the close, and returns what
// came, and whether the connection is open.
func (rc *receiver) collect(w *wiretest.Client, ping bool) ([]packet.Packet, bool) {
	rc.conn++
	if ping && w.TrySend(&packet.Pingreq{}) != nil {
		return nil, false
	}
	var got []packet.Packet
	for {
		p, err := w.Read(wiretest.Timeout)
		if err != nil {
			return got, false
		}
		if p.Type() == packet.PINGRESP {
			return got, true
		}
		got = append(got, p)
	}
}

// handle takes one packet that came on w, and acknowledges it.
func (rc *receiver) handle(w *wiretest.Client, p packet.Packet) {
	rc.t.Helper()
	switch p := p.(type) {
	case *packet.Disconnect:
		if p.Code != packet.SessionTakenOver {
			rc.t.Fatalf("%s: DISCONNECT 0x%02x", w.Name, byte(p.Code))
		}
	case *packet.Publish:
		if p.QoS != 2 {
			rc.t.Fatalf("QoS %d delivery, want 2", p.QoS)
		}
		if !rc.awaiting[p.PacketID] {
			rc.awaiting[p.PacketID] = true
			rc.took(w, p)
		}
		_ = w.TrySend(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	case *packet.Ack:
		if p.Kind != packet.PUBREL {
			rc.t.Fatalf("unexpected %s", p.Kind)
		}
		delete(rc.awaiting, p.PacketID)
		_ = w.TrySend(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	default:
		rc.t.Fatalf("unexpected %s", p.Type())
	}
}

// 1,000 times, a client with a persistent QoS 2 subscription connects to
// the node it is not on, while a publisher on a third node sends QoS 2
// messages without pause: each time the old connection is told that its
// session was taken over and closes (never two connections holding one
// session), the new one finds its session present, and in the end every
// message the publisher had acknowledged (PUBREC) arrived, and none twice.
// [MQTT-3.1.4-3] [MQTT-4.3.3-10] v5
func TestClusterSessionTakeoverRace(t *testing.T) {
	rounds := 1000
	if testing.Short() {
		rounds = 100
	}
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr
	rc := &receiver{t: t, awaiting: make(map[uint16]bool), got: make(map[string]int)}

	w, _ := connect5(t, n1, "racer", true, nil)
	w.Subscribe("race/#", 2)

	// The publisher: QoS 2, one at a time, until told to stop; it counts
	// what was acknowledged.
	stop := make(chan struct{})
	acked := make(chan []string, 1)
	pub, _ := connect5(t, n3, "racepub", true, nil)
	go func() {
		var ok []string
		defer func() { acked <- ok }()
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pid := uint16(i%60000 + 1)
			payload := fmt.Sprint(i)
			if pub.TrySend(&packet.Publish{Topic: "race/x", Payload: []byte(payload), QoS: 2, PacketID: pid}) != nil {
				return
			}
			p, err := pub.Read(wiretest.Timeout)
			a, isAck := p.(*packet.Ack)
			if err != nil || !isAck || a.Kind != packet.PUBREC || a.Code >= 0x80 {
				return
			}
			ok = append(ok, payload)
			_ = pub.TrySend(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
			if p, err := pub.Read(wiretest.Timeout); err != nil || p.Type() != packet.PUBCOMP {
				return
			}
		}
	}()

	for round := range rounds {
		addr := n2
		if round%2 == 1 {
			addr = n1
		}
		next, present := connect5(t, addr, "racer", false, nil)
		next.Name = fmt.Sprintf("racer@%s round %d", addr, round)
		if !present {
			t.Fatalf("round %d: the session was not present", round)
		}
		// The old connection: what it still gets, then DISCONNECT 0x8E
		// and the close, while the new one serves.
		if rc.serve(w, false) {
			t.Fatalf("round %d: the old connection is still open", round)
		}
		if !rc.serve(next, true) {
			t.Fatalf("round %d: the new connection closed", round)
		}
		w = next
	}
	close(stop)
	ok := <-acked
	// Whatever is still on its way.
	rc.waitAll(w, ok)
	for p, n := range rc.got {
		if n > 1 {
			t.Errorf("message %s taken %d times: %v", p, n, rc.trace[p])
		}
	}
	t.Logf("%d rounds, %d messages acknowledged, %d taken", rounds, len(ok), len(rc.got))
}

// Two connections of one client id at once, on two nodes, 300 times:
// both are accepted, the one that claimed the session first is then told
// that it was taken over and closes, and one connection holds the session
// at the end of each round. Every message acknowledged to the publisher
// meanwhile arrives, once.
// [MQTT-3.1.4-3] [MQTT-4.3.3-10] v5
func TestClusterSessionTakeoverConcurrent(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 30
	}
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr
	rc := &receiver{t: t, awaiting: make(map[uint16]bool), got: make(map[string]int)}
	w, _ := connect5(t, n1, "twin", true, nil)
	w.Subscribe("twin/#", 2)
	pub, _ := connect5(t, n3, "twinpub", true, nil)

	var ok []string
	for round := range rounds {
		// A message before each round, acknowledged before it begins.
		payload := fmt.Sprint(round)
		if pub.SendPublish(&packet.Publish{Topic: "twin/x", Payload: []byte(payload), QoS: 2, PacketID: 1}) < 0x80 {
			ok = append(ok, payload)
		}
		pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
		pub.ExpectAck(packet.PUBCOMP, 1)

		a := wiretest.Dial(t, "tcp", n1, fmt.Sprintf("twin@n1 round %d", round), packet.V5)
		b := wiretest.Dial(t, "tcp", n2, fmt.Sprintf("twin@n2 round %d", round), packet.V5)
		c := &packet.Connect{Version: packet.V5, ClientID: "twin", KeepAlive: 60,
			Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 300}}
		a.Send(c)
		b.Send(c)
		// The old connection goes first.
		if rc.serve(w, false) {
			t.Fatalf("round %d: the old connection is still open", round)
		}
		open := 0
		for _, x := range []*wiretest.Client{a, b} {
			p, err := x.Read(wiretest.Timeout)
			if err != nil {
				t.Fatalf("round %d: %s: no CONNACK: %v", round, x.Name, err)
			}
			if ack, isAck := p.(*packet.Connack); !isAck || ack.Code != 0 {
				t.Fatalf("round %d: %s: got %+v, want CONNACK success", round, x.Name, p)
			}
		}
		// Both accepted: the later claim's CONNACK came once the earlier
		// connection had been told to go, so its DISCONNECT is ahead of any
		// answer to a ping now. What the one taken over got came first: it
		// is taken first, as the client would have.
		var survivor *wiretest.Client
		var kept []packet.Packet
		for _, x := range []*wiretest.Client{a, b} {
			got, alive := rc.collect(x, true)
			if !alive {
				for _, p := range got {
					rc.handle(x, p)
				}
				continue
			}
			survivor, kept = x, got
			open++
		}
		for _, p := range kept {
			rc.handle(survivor, p)
		}
		if open != 1 {
			t.Fatalf("round %d: %d connections hold the session, want 1", round, open)
		}
		w = survivor
	}
	rc.waitAll(w, ok)
	for p, n := range rc.got {
		if n > 1 {
			t.Errorf("message %s taken %d times: %v", p, n, rc.trace[p])
		}
	}
}

// withWill gives a CONNECT a QoS 1 will on topic with delay seconds.
func withWill(topic string, delay uint32) func(*packet.Connect) {
	return func(c *packet.Connect) {
		c.WillFlag, c.WillQoS, c.WillTopic, c.WillPayload = true, 1, topic, []byte("gone")
		if delay > 0 {
			c.WillProps.WillDelay = delay
			c.WillProps.Mark(packet.PropWillDelay)
		}
	}
}

// wills subscribes a client on addr to the wills' topics.
func wills(t *testing.T, addr string) *wiretest.Client {
	t.Helper()
	w, _ := connect5(t, addr, "will-watch", true, nil)
	w.Subscribe("will/#", 1)
	return w
}

// nextWill reads the next will, within the test's timeout.
func nextWill(t *testing.T, w *wiretest.Client) string {
	t.Helper()
	p := w.NextPublish()
	w.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	return p.Topic
}

// noWill requires that no will arrives within d. A will is published when
// a connection or session ends, or its delay passes: a time-bounded wait
// is the only way to see one that should not come.
func noWill(t *testing.T, w *wiretest.Client, d time.Duration) {
	t.Helper()
	if p, err := w.Read(d); err == nil {
		t.Fatalf("unexpected %s %+v", p.Type(), p)
	}
}

// A session taken over from another node publishes the old connection's
// will once, cluster-wide, when it has no delay (as on one node); a will
// with a delay is not published (the session goes on), and neither is a
// delayed will of a session whose client comes back, on another node,
// within the delay.
// [MQTT-3.1.2-8] [MQTT-3.1.3-9] v5
func TestClusterWillWhenSessionMoves(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr
	watch := wills(t, n3)

	// No delay: published once, by the node the old connection was on.
	connect5(t, n1, "w0", true, withWill("will/w0", 0))
	connect5(t, n2, "w0", false, nil)
	if got := nextWill(t, watch); got != "will/w0" {
		t.Fatalf("will %s, want will/w0", got)
	}
	noWill(t, watch, 300*time.Millisecond)

	// A delay: the session goes on on the other node, no will.
	connect5(t, n1, "w1", true, withWill("will/w1", 60))
	connect5(t, n2, "w1", false, nil)
	noWill(t, watch, 300*time.Millisecond)

	// A delayed will waiting on an offline session: the client back on
	// another node before the delay passes cancels it.
	w, _ := connect5(t, n1, "w2", true, withWill("will/w2", 1))
	w.Conn.Close() // no DISCONNECT: the will waits for its delay
	wiretest.Eventually(t, "the session goes offline", func() bool {
		return nodes[0].srv.Stats().ClientsConnected == 0 // w0 and w1 moved to n2, w2 closed
	})
	connect5(t, n2, "w2", false, nil)
	noWill(t, watch, 1500*time.Millisecond)
}

// A clean start on another node ends the session there: its delayed will
// is published (the session ended), its subscriptions are gone, and the
// CONNACK says no session was present.
// [MQTT-3.1.2-4] [MQTT-3.2.2-2] v5
func TestClusterCleanStartOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr
	watch := wills(t, n3)

	old, _ := connect5(t, n1, "fresh", true, withWill("will/fresh", 60))
	old.Subscribe("old/#", 1)
	c, present := connect5(t, n2, "fresh", true, nil)
	if present {
		t.Fatal("a clean start found its session present")
	}
	if d := old.WaitClose(wiretest.Timeout); d == nil || d.Code != packet.SessionTakenOver {
		t.Fatalf("the old connection got %+v, want DISCONNECT 0x8E", d)
	}
	if got := nextWill(t, watch); got != "will/fresh" {
		t.Fatalf("will %s, want will/fresh", got)
	}
	pub, _ := connect5(t, n3, "freshpub", true, nil)
	if code := pub.SendPublish(&packet.Publish{Topic: "old/x", Payload: []byte("x"), QoS: 1, PacketID: 1}); code != packet.NoMatchingSubscribers {
		t.Fatalf("PUBACK 0x%02x, want 0x10: the old subscription should be gone", byte(code))
	}
	c.Ping()
}

// A node that shuts down hands its persistent sessions to the others
// before it leaves: a client it disconnected (0x8B) finds its session on
// another node, and an offline session's queue, and what comes for it
// meanwhile, is kept for its client.
// [MQTT-3.1.2-23] v5
func TestClusterNodeShutdownHandsOverSessions(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	online, _ := connect5(t, n1, "online", true, nil)
	online.Subscribe("h/#", 1)
	offline, _ := connect5(t, n1, "offline", true, nil)
	offline.Subscribe("h/#", 2)
	offline.Send(&packet.Disconnect{})
	offline.ExpectClosed()

	pub, _ := connect5(t, n3, "hpub", true, nil)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if code := pub.SendPublish(&packet.Publish{Topic: "h/x", Payload: fmt.Appendf(nil, "%d", i), QoS: 1,
				PacketID: uint16(i + 1)}); code >= 0x80 {
				t.Fatalf("PUBACK 0x%02x", byte(code))
			}
		}
	}
	send(0, 100)
	for range 100 { // the online client takes them as they come
		p := online.NextPublish()
		online.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	online.Ping()
	nodes[0].srv.Close()
	online.ExpectDisconnect(packet.ServerShuttingDown)
	send(100, 200) // while n1 is gone: kept wherever the sessions went

	for _, id := range []string{"online", "offline"} {
		seen := map[string]bool{}
		wiretest.DrainSessionWith(t, n2, &packet.Connect{Version: packet.V5, ClientID: id, KeepAlive: 60,
			Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 300}}, func(p *packet.Publish) {
			seen[string(p.Payload)] = true
		})
		from := 100
		if id == "offline" {
			from = 0
		}
		for i := from; i < 200; i++ {
			if !seen[fmt.Sprint(i)] {
				t.Fatalf("%s: message %d lost", id, i)
			}
		}
	}
}

// An MQTT 3.1.1 persistent session (Clean Session 0) moves as an MQTT 5
// one does, and so does a session's shared subscription: its queued
// messages come with it, and the group's messages go to its new node.
// [MQTT-3.1.2-4] [MQTT-3.1.2-5] v3.1.1
func TestClusterV3AndSharedSessionsMove(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	v3sub, _ := wiretest.MustConnect(t, n1, "v3mover", false)
	v3sub.Subscribe("v3/#", 1)
	v3sub.Send(&packet.Disconnect{})
	v3sub.ExpectClosed()
	sh, _ := connect5(t, n1, "sharer", true, nil)
	sh.Subscribe("$share/g/sh/#", 1)
	sh.Send(&packet.Disconnect{})
	sh.ExpectClosed()

	pub, _ := connect5(t, n3, "v3pub", true, nil)
	publish := func(topic string, from, to int) {
		for i := from; i < to; i++ {
			if code := pub.SendPublish(&packet.Publish{Topic: topic, Payload: fmt.Appendf(nil, "%d", i), QoS: 1,
				PacketID: uint16(i + 1)}); code >= 0x80 {
				t.Fatalf("PUBACK 0x%02x", byte(code))
			}
		}
	}
	publish("v3/x", 0, 50)
	publish("sh/x", 0, 50)

	next := 0
	wiretest.DrainSession(t, n2, "v3mover", func(p *packet.Publish) {
		if want := fmt.Sprint(next); string(p.Payload) != want {
			t.Fatalf("3.1.1 session: message %d is %q", next, p.Payload)
		}
		next++
	})
	if next != 50 {
		t.Fatalf("3.1.1 session: %d of 50 messages", next)
	}
	w, present := connect5(t, n2, "sharer", false, nil)
	if !present {
		t.Fatal("the shared member's session did not follow it")
	}
	got := map[string]bool{}
	for len(got) < 50 {
		p := w.NextPublish()
		got[string(p.Payload)] = true
		w.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	publish("sh/x", 50, 60) // the group's one member is on node 2 now
	for len(got) < 60 {
		p := w.NextPublish()
		got[string(p.Payload)] = true
		w.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	w.Ping()
}

// A session's offline limits hold wherever it is and wherever the
// messages come from: an offline session bounded to 50 messages (or to
// 50 payloads' bytes) takes the first 50 of 200 published on two other
// nodes, moves with them, and is bounded the same on the node it moved
// to.
func TestClusterOfflineSessionLimitsHold(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(o *broker.Options)
	}{
		{"messages", func(o *broker.Options) { o.MaxQueuedMessages = 50 }},
		{"bytes", func(o *broker.Options) { o.MaxQueuedBytes = 50 * 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startClusterWith(t, 3, func(o *broker.Options, _ *Config) { tc.adjust(o) })
			n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr
			sub, _ := connect5(t, n1, "bounded", true, nil)
			sub.Subscribe("lim/#", 1)
			sub.Send(&packet.Disconnect{})
			sub.ExpectClosed()

			publish := func(round int, addrs ...string) {
				for i, addr := range addrs {
					pub, _ := connect5(t, addr, fmt.Sprint("lim-pub", i), true, nil)
					for k := range 100 {
						payload := fmt.Appendf(nil, "%d/%03d/%s", round, i*100+k, strings.Repeat("x", 94))
						if code := pub.SendPublish(&packet.Publish{Topic: "lim/x", Payload: payload[:100], QoS: 1, PacketID: uint16(k + 1)}); code != packet.Success {
							t.Fatalf("PUBACK 0x%02x", byte(code))
						}
					}
					pub.Disconnect()
				}
			}
			drain := func(addr string, round int) {
				t.Helper()
				w, present := connect5(t, addr, "bounded", false, nil)
				if !present {
					t.Fatal("the session is not present")
				}
				next := 0
				for {
					w.Send(&packet.Pingreq{})
					got := w.UntilPong(true)
					for _, p := range got {
						if want := fmt.Sprintf("%d/%03d/", round, next); !strings.HasPrefix(string(p.Payload), want) {
							t.Fatalf("message %d: got %.10q, want %q…", next, p.Payload, want)
						}
						next++
					}
					if len(got) == 0 {
						break
					}
				}
				w.Disconnect() // offline again, with nothing queued
				if next != 50 {
					t.Fatalf("round %d: %d messages queued for the session, want its limit, 50", round, next)
				}
			}
			publish(1, n2, n3)
			drain(n2, 1) // the session moves to node 2 with its 50
			publish(2, n1, n3)
			drain(n3, 2)
		})
	}
}
