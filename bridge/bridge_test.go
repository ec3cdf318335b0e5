package bridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// startBroker runs a broker on addr ("127.0.0.1:0" for a free port), with
// a Pebble store in dir when dir is set, and returns it, and what stops it
// (called again when the test ends).
func startBroker(t *testing.T, addr, dir string) (*broker.Server, func()) {
	t.Helper()
	o := broker.Options{Logger: testlog.New(t), Listeners: []broker.ListenerConfig{{Address: addr}}}
	var st *pebblestore.Store
	if dir != "" {
		var err error
		if st, err = pebblestore.Open(dir, pebblestore.Options{Logger: o.Logger}); err != nil {
			t.Fatal(err)
		}
		o.Store = st
	}
	s := broker.New(o)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Close()
			if st != nil {
				st.Close()
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// startBridge runs a bridge from local to the broker at remote until the
// test ends.
func startBridge(t *testing.T, local *broker.Server, remote string, version byte, rules ...Rule) *Bridge {
	t.Helper()
	b, err := New(Config{Name: "test", Addr: remote, Version: version, Rules: rules, Local: local.DialInternal,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: testlog.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Start())
	waitConnected(t, b)
	return b
}

// waitConnected waits until b's link is up.
func waitConnected(t *testing.T, b *Bridge) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !b.State().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("the bridge did not connect within 10s (state %+v)", b.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inbox collects the messages a client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []*client.Message
}

func (in *inbox) add(m *client.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m.Clone())
	in.mu.Unlock()
}

// topics returns the topics received so far, in order.
func (in *inbox) topics() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, m := range in.msgs {
		out = append(out, m.Topic+"="+string(m.Payload))
	}
	return out
}

// await waits until n messages have arrived, then a little for more that
// should not.
func (in *inbox) await(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(in.topics()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages arrived, want %d: %v", len(in.topics()), n, in.topics())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return in.topics()
}

// connectTLS connects an MQTT 5 client over TLS, its messages to in.
func connectTLS(t *testing.T, addr string, conf *tls.Config, id string, in *inbox) *client.Client {
	t.Helper()
	c, _, err := client.Connect(context.Background(), client.Options{Addr: "tls://" + addr, TLS: conf, Version: packet.V5,
		ClientID: id, CleanStart: true, OnMessage: in.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscriber(t *testing.T, addr, id string, filter string) *inbox {
	t.Helper()
	in := &inbox{}
	c, _, err := client.Connect(context.Background(), client.Options{Addr: addr, Version: packet.V5, ClientID: id,
		CleanStart: true, OnMessage: in.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: filter, QoS: 2}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	return in
}

func publisher(t *testing.T, addr, id string) *client.Client {
	t.Helper()
	c, _, err := client.Connect(context.Background(), client.Options{Addr: addr, Version: packet.V5, ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Two brokers bridged both ways, with an MQTT 5 and an MQTT 3.1.1 link:
// out rules carry local messages to the remote broker under its prefix,
// in rules bring remote ones home, QoS is the lower of the rule's and the
// message's, and a message bridged both ways arrives once on each side,
// never echoed back.
func TestBridgeBothWays(t *testing.T) {
	for _, v := range []struct {
		name    string
		version byte
	}{{"mqtt5", packet.V5}, {"mqtt311", packet.V311}} {
		t.Run(v.name, func(t *testing.T) {
			local, _ := startBroker(t, "127.0.0.1:0", "")
			remote, _ := startBroker(t, "127.0.0.1:0", "")
			la, ra := local.Addrs()[0].String(), remote.Addrs()[0].String()
			rules := []Rule{
				{Pattern: "sensors/#", Direction: Out, QoS: 1, RemotePrefix: "site1/"},
				{Pattern: "cmd/#", Direction: In, QoS: 2, RemotePrefix: "site1/"},
			}
			if v.version == packet.V5 { // MQTT 3.1.1 has no No Local to stop a loop
				rules = append(rules, Rule{Pattern: "chat/#", Direction: Both, QoS: 2, LocalPrefix: "l/", RemotePrefix: "r/"})
			}
			startBridge(t, local, ra, v.version, rules...)
			atRemote := subscriber(t, ra, "rs", "#")
			atLocal := subscriber(t, la, "ls", "#")
			lp, rp := publisher(t, la, "lp"), publisher(t, ra, "rp")

			ctx := context.Background()
			lp.Publish(ctx, &packet.Publish{Topic: "sensors/t1", QoS: 2, Payload: []byte("21")})
			rp.Publish(ctx, &packet.Publish{Topic: "site1/cmd/open", QoS: 2, Payload: []byte("now")})
			lp.Publish(ctx, &packet.Publish{Topic: "other", QoS: 1, Payload: []byte("stays")})
			if v.version == packet.V5 {
				lp.Publish(ctx, &packet.Publish{Topic: "l/chat/a", QoS: 1, Payload: []byte("hi")})
				rp.Publish(ctx, &packet.Publish{Topic: "r/chat/b", QoS: 1, Payload: []byte("yo")})
			}
			wantRemote := map[string]bool{"site1/sensors/t1=21": true, "site1/cmd/open=now": true}
			wantLocal := map[string]bool{"sensors/t1=21": true, "cmd/open=now": true, "other=stays": true}
			if v.version == packet.V5 {
				wantRemote["r/chat/a=hi"], wantRemote["r/chat/b=yo"] = true, true
				wantLocal["l/chat/a=hi"], wantLocal["l/chat/b=yo"] = true, true
				// Last each way: an echo of what went before would come
				// before these.
				lp.Publish(ctx, &packet.Publish{Topic: "l/chat/end", QoS: 1, Payload: []byte("1")})
				rp.Publish(ctx, &packet.Publish{Topic: "r/chat/end", QoS: 1, Payload: []byte("2")})
				wantRemote["r/chat/end=1"], wantRemote["r/chat/end=2"] = true, true
				wantLocal["l/chat/end=1"], wantLocal["l/chat/end=2"] = true, true
			}
			for _, side := range []struct {
				name string
				in   *inbox
				want map[string]bool
			}{{"remote", atRemote, wantRemote}, {"local", atLocal, wantLocal}} {
				got := side.in.await(t, len(side.want))
				for _, g := range got {
					if !side.want[g] {
						t.Errorf("%s broker: unexpected %s", side.name, g)
					}
				}
				if len(got) != len(side.want) {
					t.Errorf("%s broker got %v, want each of %v once", side.name, got, side.want)
				}
			}
			// QoS: the rule's (1) caps a QoS 2 message going out.
			atRemote.mu.Lock()
			for _, m := range atRemote.msgs {
				if m.Topic == "site1/sensors/t1" && m.QoS != 1 {
					t.Errorf("site1/sensors/t1 arrived at QoS %d, want 1 (the rule's)", m.QoS)
				}
			}
			atRemote.mu.Unlock()
		})
	}
}

// A bridge keeps what it has to send while the remote broker is down, in
// its local session: the remote broker stops for a while in the middle of
// a 10,000-message QoS 1 stream, and every message acknowledged to the
// publisher reaches the subscriber on the remote broker once it is back.
func TestBridgeRemoteOutage(t *testing.T) {
	const n = 10000
	local, _ := startBroker(t, "127.0.0.1:0", t.TempDir())
	dir := t.TempDir()
	remote, stopRemote := startBroker(t, "127.0.0.1:0", dir)
	ra := remote.Addrs()[0].String()
	startBridge(t, local, ra, packet.V5, Rule{Pattern: "data/#", Direction: Out, QoS: 1})

	// The subscriber's session at the remote broker outlives the outage.
	got := make(map[string]int)
	var mu sync.Mutex
	subOpts := client.Options{Addr: ra, Version: packet.V5, ClientID: "far", SessionExpiry: 3600,
		OnMessage: func(m *client.Message) {
			mu.Lock()
			got[string(m.Payload)]++
			mu.Unlock()
		}}
	sub, _, err := client.Connect(context.Background(), subOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: "data/#", QoS: 1}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}

	pub := publisher(t, local.Addrs()[0].String(), "near")
	down := make(chan struct{})
	var restarted *broker.Server
	for i := range n {
		if i == n/3 {
			stopRemote()
			sub.Close()
			close(down)
		}
		if i == 2*n/3 {
			// Back after the outage, on the same address and store.
			outage := 10 * time.Second
			if testing.Short() {
				outage = time.Second
			}
			time.Sleep(outage)
			restarted, _ = startBroker(t, ra, dir)
			if sub, _, err = client.Connect(context.Background(), subOpts); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() })
		}
		code, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/x", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
		if err != nil || code >= 0x80 {
			t.Fatalf("message %d: 0x%02x %v", i, byte(code), err)
		}
	}
	_ = restarted
	<-down
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing, first := 0, -1
		for i := range n {
			if got[fmt.Sprint(i)] == 0 {
				if first < 0 {
					first = i
				}
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the remote subscriber (lost), the first %d", missing, n, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A remote broker that sends a packet larger than the bridge takes ends
// that link, not the local broker: the bridge logs it, connects again
// after its backoff, and carries on with the next remote.
func TestBridgeHostileRemote(t *testing.T) {
	local, _ := startBroker(t, "127.0.0.1:0", "")
	addr, conns := fakeRemote(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)                                   // CONNECT
		c.Write([]byte{0x20, 0x03, 0x00, 0x00, 0x00}) // CONNACK, MQTT 5
		c.Read(buf)                                   // SUBSCRIBE
		// A PUBLISH announcing 256 MB.
		c.Write([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01})
		c.Read(buf)
	})
	b, err := New(Config{Name: "hostile", Addr: addr, Local: local.DialInternal,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testlog.New(t),
		Rules: []Rule{{Pattern: "x/#", Direction: In, QoS: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := b.Start()
	for range 3 { // it keeps coming back
		select {
		case <-conns:
		case <-time.After(10 * time.Second):
			t.Fatal("the bridge did not connect again")
		}
	}
	stop()
	if st := b.State(); st.Failures < 2 || st.Received != 0 {
		t.Errorf("state %+v: want failed links and nothing received", st)
	}
	// The local broker is unharmed.
	pub := publisher(t, local.Addrs()[0].String(), "still-here")
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "y", QoS: 1}); err != nil {
		t.Fatal(err)
	}
}

// slowConn delays each write: a local broker that takes its time.
type slowConn struct{ net.Conn }

func (c slowConn) Write(b []byte) (int, error) {
	// Slow enough that the flood's 3,000 messages, read in a few
	// milliseconds, pile up past maxAcked before the local side takes
	// 1,024 of them: at 1 ms a write, 1 run in 30 took them all.
	time.Sleep(20 * time.Millisecond)
	return c.Conn.Write(b)
}

// A remote broker that floods the bridge with more unacknowledged QoS 1
// messages than its window (an MQTT 3.1.1 broker is told none) ends that
// link: what waits is bounded, and the link is made again after the
// backoff.
func TestBridgeFloodingRemote(t *testing.T) {
	local, _ := startBroker(t, "127.0.0.1:0", "")
	addr, conns := fakeRemote(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)                             // CONNECT
		c.Write([]byte{0x20, 0x02, 0x00, 0x00}) // CONNACK, MQTT 3.1.1
		c.Read(buf)                             // SUBSCRIBE
		c.Write([]byte{0x90, 0x03, 0x00, 0x01, 0x01})
		// 3,000 QoS 1 messages at once, none waiting for its PUBACK.
		var flood []byte
		for i := range 3000 {
			id := uint16(i + 1)
			flood = append(flood, 0x32, 0x08, 0x00, 0x03, 'x', '/', 'y', byte(id>>8), byte(id), 'p')
		}
		c.Write(flood)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	slow := func(ctx context.Context) (net.Conn, error) {
		c, err := local.DialInternal(ctx)
		if err != nil {
			return nil, err
		}
		return slowConn{c}, nil
	}
	b, err := New(Config{Name: "flood", Addr: addr, Version: packet.V311, Local: slow,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testlog.New(t),
		Rules: []Rule{{Pattern: "x/#", Direction: In, QoS: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := b.Start()
	for range 2 { // the link ended, and was made again
		select {
		case <-conns:
		case <-time.After(20 * time.Second):
			t.Fatalf("the bridge did not connect again (state %+v)", b.State())
		}
	}
	stop()
	if st := b.State(); st.Failures < 1 || st.Received >= 3000 {
		t.Errorf("state %+v: want the flooded link ended before it took everything", st)
	}
}

// What waits to go out is bounded per bridge: with the remote broker down,
// the bridge's session keeps 50 queued, besides what is in flight to the
// bridge (as mqtt.max_queued_messages counts), and drops the rest
// (counted); the remote broker, once back, gets what was kept, in order.
func TestBridgeQueueBounded(t *testing.T) {
	// The remote broker, with the subscriber's session in its store, then
	// down.
	dir := t.TempDir()
	remote, stopRemote := startBroker(t, "127.0.0.1:0", dir)
	ra := remote.Addrs()[0].String()
	subOpts := client.Options{Addr: ra, Version: packet.V5, ClientID: "far", SessionExpiry: 3600}
	sub, _, err := client.Connect(context.Background(), subOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: "data/#", QoS: 1}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(packet.Success, nil)
	stopRemote()

	o := broker.Options{Logger: testlog.New(t), Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}},
		SessionQueueLimits: func(id string) (int, int64) {
			if id == SessionOf("bounded") {
				return 50, 0
			}
			return 0, 0
		}}
	local := broker.New(o)
	if err := local.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	b, err := New(Config{Name: "bounded", Addr: ra, Local: local.DialInternal, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Logger: testlog.New(t), Rules: []Rule{{Pattern: "data/#", Direction: Out, QoS: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Start())

	// Once the bridge's session is subscribed, a message is queued for it
	// (PUBACK 0x00, not 0x10: no subscriber).
	pub := publisher(t, local.Addrs()[0].String(), "near")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/x", QoS: 1, Payload: []byte("0")})
		if err != nil {
			t.Fatal(err)
		}
		if code == packet.Success {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bridge's session never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < 200; i++ {
		if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/x", QoS: 1, Payload: fmt.Append(nil, i)}); err != nil {
			t.Fatal(err)
		}
	}
	dropped := int(local.Stats().MessagesDropped["queue_full"])
	kept := 200 - dropped
	if kept < 50 || kept > 50+window {
		t.Fatalf("%d messages dropped for a full queue: %d kept, want 50 queued and at most %d in flight", dropped, kept, window)
	}

	// The remote broker is back: its subscriber's session gets what was
	// kept, in order.
	startBroker(t, ra, dir)
	waitConnected(t, b)
	in := &inbox{}
	subOpts.OnMessage = in.add
	if sub, _, err = client.Connect(context.Background(), subOpts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	// Which were dropped depends on when the bridge's attempts took some
	// in flight; those kept come in order.
	got := in.await(t, kept)
	last := -1
	for i, g := range got {
		var n int
		if _, err := fmt.Sscanf(g, "data/x=%d", &n); err != nil || n <= last {
			t.Fatalf("message %d: %s, after message %d", i, g, last)
		}
		last = n
	}
	// And no more: a message sent after them comes next.
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/x", QoS: 1, Payload: []byte("last")}); err != nil {
		t.Fatal(err)
	}
	if got := in.await(t, kept+1); got[kept] != "data/x=last" {
		t.Errorf("after the %d kept: %v", kept, got[kept:])
	}
}

// A retained message crosses as retained, as Mosquitto's bridge carries
// it: the remote broker keeps it for a subscriber that comes later.
func TestBridgeRetained(t *testing.T) {
	local, _ := startBroker(t, "127.0.0.1:0", "")
	remote, _ := startBroker(t, "127.0.0.1:0", "")
	ra := remote.Addrs()[0].String()
	startBridge(t, local, ra, packet.V5, Rule{Pattern: "r/#", Direction: Out, QoS: 1, RemotePrefix: "site/"})
	first := subscriber(t, ra, "first", "site/r/#")
	pub := publisher(t, local.Addrs()[0].String(), "lp")
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "r/a", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	first.await(t, 1) // it has crossed
	later := subscriber(t, ra, "later", "site/r/#")
	later.await(t, 1)
	later.mu.Lock()
	m := later.msgs[0]
	later.mu.Unlock()
	if m.Topic != "site/r/a" || string(m.Payload) != "kept" || !m.Retain {
		t.Errorf("a later subscriber got %q on %q, retain %v; want the retained message", m.Payload, m.Topic, m.Retain)
	}
}

// A remote broker that refuses the bridge (CONNACK 0x87) or answers
// garbage ends that attempt only: the bridge tries again after its
// backoff, the local broker serves on.
func TestBridgeRefusedOrGarbage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer []byte
	}{
		{"refused", []byte{0x20, 0x03, 0x00, 0x87, 0x00}},
		{"garbage", []byte("HTTP/1.1 400 Bad Request\r\n\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, _ := startBroker(t, "127.0.0.1:0", "")
			addr, conns := fakeRemote(t, func(c net.Conn) {
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write(tc.answer)
			})
			b, err := New(Config{Name: tc.name, Addr: addr, Local: local.DialInternal, MinBackoff: 10 * time.Millisecond,
				MaxBackoff: 20 * time.Millisecond, Logger: testlog.New(t), Rules: []Rule{{Pattern: "x/#", Direction: Both, QoS: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			stop := b.Start()
			for range 3 {
				select {
				case <-conns:
				case <-time.After(10 * time.Second):
					t.Fatal("the bridge did not try again")
				}
			}
			stop()
			if st := b.State(); st.Connected || st.Failures < 2 {
				t.Errorf("state %+v: want failed attempts, never connected", st)
			}
			pub := publisher(t, local.Addrs()[0].String(), "still-here")
			if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "x/1", QoS: 1}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// fakeRemote runs script on each connection to a loopback listener, then
// closes it, until the test ends; conns gets a value per connection.
func fakeRemote(t *testing.T, script func(c net.Conn)) (addr string, conns chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = make(chan struct{}, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- struct{}{}:
			default:
			}
			go func() {
				defer c.Close()
				script(c)
			}()
		}
	}()
	return ln.Addr().String(), conns
}
