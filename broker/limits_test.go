package broker

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Each limit of Options and Limits, enforced: an MQTT 5 client gets the
// reason code the limit names, a 3.1.1 client the nearest equivalent (a
// CONNACK return code, a SUBACK failure, or the connection closed), the
// matching counter rises, and a client connected alongside keeps being
// served (a PINGREQ round trip). Then what a hostile client can do with
// time: connect and send nothing, trickle bytes, declare a huge packet.

// versioned pairs a protocol level with the code it gets for a refusal.
type versioned struct {
	version byte
	code    packet.ReasonCode
}

// connackRefusals are the CONNACK codes of one refusal: v5's, and the
// MQTT 3.1.1 return code that stands for it.
func connackRefusals(v5, v311 packet.ReasonCode) []versioned {
	return []versioned{{packet.V5, v5}, {packet.V311, v311}}
}

// expectCounted fails unless counter moved by want between two readings.
func expectCounted(t *testing.T, before, after map[string]int64, counter string, want int64) {
	t.Helper()
	if d := after[counter] - before[counter]; d != want {
		t.Errorf("counter %s rose by %d, want %d (moved: %s)", counter, d, want, countersMoved(before, after))
	}
}

// MaxConnections, in all and per listener: CONNACK 0x97 (3.1.1: 0x03),
// counted; a freed slot can be taken again.
func TestLimitMaxConnections(t *testing.T) {
	srv := secStart(t, Options{Limits: Limits{MaxConnections: 3}, Listeners: []ListenerConfig{
		{Name: "small", Address: "127.0.0.1:0", MaxConnections: 1},
		{Name: "big", Address: "127.0.0.1:0"},
	}}, nil)
	small, big := srv.Addrs()[0].String(), srv.Addrs()[1].String()
	settle := func(n int64) {
		t.Helper()
		wiretest.Eventually(t, fmt.Sprintf("%d connections open", n), func() bool { return srv.connCount.Load() == n })
	}
	before := counters(srv)
	bystander := secMustConnect(t, big, connectPacket(packet.V5, "bystander"))
	secMustConnect(t, small, connectPacket(packet.V311, "small-1"))
	for _, v := range connackRefusals(packet.QuotaExceeded, packet.ConnRefusedServerUnavailable) {
		c, ack := secConnect(t, small, connectPacket(v.version, "small-2"))
		expectRefused(t, c, ack, v.code)
		settle(2)
	}
	last := secMustConnect(t, big, connectPacket(packet.V311, "big-2"))
	for _, v := range connackRefusals(packet.QuotaExceeded, packet.ConnRefusedServerUnavailable) {
		c, ack := secConnect(t, big, connectPacket(v.version, "big-3"))
		expectRefused(t, c, ack, v.code)
		settle(3)
	}
	expectCounted(t, before, counters(srv), "refusedConnections", 4)
	bystander.ping()

	last.send(&packet.Disconnect{})
	last.expectClosed()
	settle(2)
	secMustConnect(t, big, connectPacket(packet.V5, "big-4")).ping()
}

// ConnectionRate per source address: beyond the burst, CONNACK 0x9F
// (3.1.1: 0x03), counted; another address is not limited.
func TestLimitConnectionRate(t *testing.T) {
	srv := secStart(t, Options{Limits: Limits{ConnectionRate: 0.2, ConnectionBurst: 2}}, nil)
	addr := srv.Addrs()[0].String()
	before := counters(srv)
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	secMustConnect(t, addr, connectPacket(packet.V311, "second"))
	for _, v := range connackRefusals(packet.ConnectionRateExceeded, packet.ConnRefusedServerUnavailable) {
		c, ack := secConnect(t, addr, connectPacket(v.version, "too-soon"))
		expectRefused(t, c, ack, v.code)
	}
	expectCounted(t, before, counters(srv), "refusedRate", 2)
	bystander.ping()

	d := &net.Dialer{Timeout: wiretest.Timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	c := secOn(t, nc, "elsewhere", packet.V5)
	if ack := c.connect(connectPacket(packet.V5, "elsewhere")); ack.Code != packet.Success {
		t.Errorf("a client from 127.0.0.2: CONNACK 0x%02x; the rate is per source address", byte(ack.Code))
	}
}

// sizedPublish is a QoS 0 PUBLISH to topic whose encoded size is exactly size.
func sizedPublish(topic string, size int, version byte) *packet.Publish {
	p := &packet.Publish{Topic: topic}
	p.Payload = make([]byte, size-packet.Len(p, version))
	for packet.Len(p, version) > size { // the remaining length grew a byte
		p.Payload = p.Payload[:len(p.Payload)-1]
	}
	return p
}

// MaxPacketSize: advertised in CONNACK, a packet of that size is taken, a
// larger one gets DISCONNECT 0x95 (3.1.1: the connection closes), counted.
// [MQTT-3.2.2-15] v5
func TestLimitMaxPacketSize(t *testing.T) {
	const max = 1024
	srv := secStart(t, Options{MaxPacketSize: max}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	before := counters(srv)
	for _, version := range []byte{packet.V5, packet.V311} {
		c, ack := secConnect(t, addr, connectPacket(version, fmt.Sprint("big-v", version)))
		if version == packet.V5 && (!ack.Props.Has(packet.PropMaximumPacketSize) || ack.Props.MaximumPacketSize != max) {
			t.Errorf("CONNACK Maximum Packet Size %d (set %v), want %d", ack.Props.MaximumPacketSize,
				ack.Props.Has(packet.PropMaximumPacketSize), max)
		}
		c.send(sizedPublish("size/ok", max, version))
		c.ping()
		c.send(sizedPublish("size/big", max+1, version))
		if version == packet.V5 {
			c.expectDisconnect(packet.PacketTooLarge)
		} else {
			c.expectClosed()
		}
	}
	expectCounted(t, before, counters(srv), "protocolErrors", 2)
	bystander.ping()
}

// MaxClientIDLength: a longer client id gets CONNACK 0x85 (3.1.1: 0x02),
// counted.
func TestLimitMaxClientIDLength(t *testing.T) {
	srv := secStart(t, Options{MaxClientIDLength: 30}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	before := counters(srv)
	secMustConnect(t, addr, connectPacket(packet.V311, strings.Repeat("a", 30))).ping()
	for _, v := range connackRefusals(packet.ClientIdentifierNotValid, packet.ConnRefusedIdentifierRejected) {
		c, ack := secConnect(t, addr, connectPacket(v.version, strings.Repeat("b", 31)))
		expectRefused(t, c, ack, v.code)
	}
	expectCounted(t, before, counters(srv), "refused", 2)
	bystander.ping()
}

// MaxTopicLength and MaxTopicLevels: a PUBLISH beyond them gets DISCONNECT
// 0x90 (3.1.1: the connection closes); a filter beyond them SUBACK 0x8F
// (3.1.1: 0x80) while the other filters are granted.
func TestLimitTopicLengthAndLevels(t *testing.T) {
	srv := secStart(t, Options{Limits: Limits{MaxTopicLength: 32, MaxTopicLevels: 4}}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	long, deep := strings.Repeat("x", 33), "a/b/c/d/e"

	t.Run("SUBSCRIBE", func(t *testing.T) {
		before := counters(srv)
		filters := []string{"a/b/c/d", strings.Repeat("y", 32), "a/b/c/#", deep, long, "$share/g/" + deep, "a/+/+/+/+"}
		for _, v := range []versioned{{packet.V5, packet.TopicFilterInvalid}, {packet.V311, packet.SubackFailure}} {
			c := secMustConnect(t, addr, connectPacket(v.version, fmt.Sprint("sub-v", v.version)))
			want := []packet.ReasonCode{0, 0, 0, v.code, v.code, v.code, v.code}
			if got := c.subscribe(1, 0, filters...); !bytes.Equal(codesBytes(got), codesBytes(want)) {
				t.Errorf("v%d SUBACK % x, want % x", v.version, codesBytes(got), codesBytes(want))
			}
			c.ping()
		}
		after := counters(srv)
		t.Run("counted", func(t *testing.T) {
			if countersMoved(before, after) == "none" {
				t.Error("filters refused for the topic limits (SUBACK 0x8F) are not counted")
			}
		})
	})
	t.Run("PUBLISH", func(t *testing.T) {
		before := counters(srv)
		for _, topic := range []string{long, deep} {
			for _, version := range []byte{packet.V5, packet.V311} {
				c := secMustConnect(t, addr, connectPacket(version, fmt.Sprint("pub-v", version)))
				c.publish(0, 0, strings.Repeat("z", 32), "fits", false)
				c.publish(0, 0, "a/b/c/d", "fits", false)
				c.ping()
				c.publish(0, 0, topic, "too big", false)
				if version == packet.V5 {
					c.expectDisconnect(packet.TopicNameInvalid)
				} else {
					c.expectClosed()
				}
			}
		}
		expectCounted(t, before, counters(srv), "protocolErrors", 4)
	})
	bystander.ping()
}

func codesBytes(codes []packet.ReasonCode) []byte {
	b := make([]byte, len(codes))
	for i, c := range codes {
		b[i] = byte(c)
	}
	return b
}

// MaxSubscriptions: beyond it SUBACK 0x97 (3.1.1: 0x80); replacing a
// subscription is not a new one, and an unsubscribe frees a place.
func TestLimitMaxSubscriptions(t *testing.T) {
	srv := secStart(t, Options{Limits: Limits{MaxSubscriptions: 3}}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	before := counters(srv)
	for _, v := range []versioned{{packet.V5, packet.QuotaExceeded}, {packet.V311, packet.SubackFailure}} {
		c := secMustConnect(t, addr, connectPacket(v.version, fmt.Sprint("subs-v", v.version)))
		got := c.subscribe(1, 0, "a", "b", "c", "d", "$share/g/e")
		if want := []packet.ReasonCode{0, 0, 0, v.code, v.code}; !bytes.Equal(codesBytes(got), codesBytes(want)) {
			t.Errorf("v%d: five filters at a limit of three: SUBACK % x, want % x", v.version, codesBytes(got), codesBytes(want))
		}
		if got := c.subscribe(2, 1, "a"); got[0] != 1 {
			t.Errorf("v%d: replacing a subscription at the limit: 0x%02x, want 0x01", v.version, byte(got[0]))
		}
		c.send(&packet.Unsubscribe{PacketID: 3, Filters: []string{"b"}})
		if p, ok := c.next().(*packet.Unsuback); !ok || p.PacketID != 3 {
			t.Fatalf("v%d: want UNSUBACK, got %+v", v.version, p)
		}
		if got := c.subscribe(4, 0, "d"); got[0] != 0 {
			t.Errorf("v%d: subscribing after an unsubscribe freed a place: 0x%02x, want 0x00", v.version, byte(got[0]))
		}
		c.ping()
	}
	bystander.ping()
	after := counters(srv)
	t.Run("counted", func(t *testing.T) {
		if countersMoved(before, after) == "none" {
			t.Error("subscriptions refused at MaxSubscriptions (SUBACK 0x97) are not counted")
		}
	})
}

// ackAll reads n PUBLISHes at QoS 1, acknowledges them and returns their payloads.
func ackAll(c *secClient, n int) []string {
	c.t.Helper()
	var got []string
	for range n {
		p := c.nextPublish()
		got = append(got, string(p.Payload))
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	return got
}

// MaxInflight: no more than that many QoS 1 messages await acknowledgement;
// the rest wait their turn and none is lost. A client's Receive Maximum
// lowers it.
// [MQTT-4.9.0-2] v5
func TestLimitMaxInflight(t *testing.T) {
	srv := secStart(t, Options{MaxInflight: 2}, nil)
	addr := srv.Addrs()[0].String()
	for _, tc := range []struct {
		name   string
		p      *packet.Connect
		window int
	}{
		{"MaxInflight", connectPacket(packet.V311, "slow-3"), 2},
		{"Receive Maximum", func() *packet.Connect {
			p := connectPacket(packet.V5, "slow-5")
			p.Props.ReceiveMaximum = 1
			p.Props.Mark(packet.PropReceiveMaximum)
			return p
		}(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := secMustConnect(t, addr, tc.p)
			sub.mustSubscribe(1, 1, "inflight/"+tc.p.ClientID)
			pub := secMustConnect(t, addr, connectPacket(packet.V5, "pub-"+tc.p.ClientID))
			for i := range 5 {
				pub.publish(uint16(i+1), 1, "inflight/"+tc.p.ClientID, fmt.Sprint(i), false)
			}
			var got []string
			for len(got) < 5 {
				var ids []uint16
				for range min(tc.window, 5-len(got)) {
					p := sub.nextPublish()
					got = append(got, string(p.Payload))
					ids = append(ids, p.PacketID)
				}
				sub.ping() // the window is full: nothing more comes
				for _, id := range ids {
					sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: id})
				}
			}
			if strings.Join(got, ",") != "0,1,2,3,4" {
				t.Errorf("received %q, want 0..4 in order", got)
			}
			sub.ping()
		})
	}
}

// MaxQueuedMessages and MaxQueuedBytes: offline, what does not fit a
// session's queue is dropped and counted. Online, nothing is dropped: the
// publisher is held back at half the limit (the backlog) until the
// subscriber catches up, and every message arrives in order.
func TestLimitMaxQueued(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		payload int
	}{
		{"MaxQueuedMessages", Options{MaxInflight: 1, MaxQueuedMessages: 3}, 10},
		{"MaxQueuedBytes", Options{MaxInflight: 1, MaxQueuedBytes: 1000}, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := secStart(t, tc.opts, nil)
			addr := srv.Addrs()[0].String()
			bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
			pub := secMustConnect(t, addr, connectPacket(packet.V5, "pub"))
			payload := strings.Repeat("p", tc.payload-1)
			publish10 := func(topic string) {
				for i := range 10 {
					if code := pub.publish(uint16(i+1), 1, topic, fmt.Sprint(i)+payload, false); code.IsError() {
						t.Fatalf("publish: 0x%02x", byte(code))
					}
				}
			}

			// Online: the ten are sent at once; the publisher waits while the
			// subscriber is behind, and nothing is dropped.
			before := counters(srv)
			sub := secMustConnect(t, addr, connectPacket(packet.V311, "online"))
			sub.mustSubscribe(1, 1, "q/online")
			var all []byte
			for i := range 10 {
				all, _ = packet.Append(all, &packet.Publish{Topic: "q/online", Payload: []byte(fmt.Sprint(i) + payload),
					QoS: 1, PacketID: uint16(i + 1)}, packet.V5)
			}
			pub.sendRaw(all)
			wiretest.Eventually(t, "the publisher held back", func() bool { return srv.stats.heldBack.Load() > before["heldBack"] })
			got := ackAll(sub, 10)
			sub.ping()
			for i, g := range got {
				if !strings.HasPrefix(g, fmt.Sprint(i)) {
					t.Errorf("online message %d is %.3q..., want all ten in order", i, g)
				}
			}
			for i := range 10 {
				pub.nextAck(packet.PUBACK, uint16(i+1))
			}
			expectCounted(t, before, counters(srv), "droppedQueueFull", 0)

			// Offline (a persistent session): three queued, seven dropped.
			before = counters(srv)
			off := connectPacket(packet.V5, "offline")
			off.Props.SessionExpiry = 300
			off.Props.Mark(packet.PropSessionExpiry)
			sub = secMustConnect(t, addr, off)
			sub.mustSubscribe(1, 1, "q/offline")
			sub.send(&packet.Disconnect{})
			sub.expectClosed()
			publish10("q/offline")
			expectCounted(t, before, counters(srv), "droppedQueueFull", 7)
			off.CleanStart = false
			sub = secMustConnect(t, addr, off)
			if n := len(ackAll(sub, 3)); n != 3 {
				t.Errorf("got %d queued messages, want 3", n)
			}
			sub.ping()
			bystander.ping()
		})
	}
}

// PublishRate and PublishBytesRate: beyond a second's worth, DISCONNECT
// 0x96 (3.1.1: the connection closes), counted; a client within the rate
// is not touched.
func TestLimitPublishRate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  Limits
		payload int
		n       int
	}{
		{"PublishRate", Limits{PublishRate: 5}, 1, 50},
		{"PublishBytesRate", Limits{PublishBytesRate: 1000}, 600, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := secStart(t, Options{Limits: tc.limits}, nil)
			addr := srv.Addrs()[0].String()
			bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
			bystander.publish(0, 0, "rate/ok", "x", false)
			bystander.ping()
			before := counters(srv)
			for _, version := range []byte{packet.V5, packet.V311} {
				c := secMustConnect(t, addr, connectPacket(version, fmt.Sprint("flood-v", version)))
				var burst []byte
				for range tc.n {
					b, _ := packet.Append(nil, &packet.Publish{Topic: "rate/x", Payload: make([]byte, tc.payload)}, version)
					burst = append(burst, b...)
				}
				c.sendRaw(burst)
				if version == packet.V5 {
					c.expectDisconnect(packet.MessageRateTooHigh)
				} else {
					c.expectClosed()
				}
			}
			expectCounted(t, before, counters(srv), "rateLimited", 2)
			bystander.ping()
		})
	}
}

// ControlRate: a SUBSCRIBE and UNSUBSCRIBE flood gets DISCONNECT 0x96
// (3.1.1: the connection closes) once the burst of ten is spent.
func TestLimitControlRate(t *testing.T) {
	srv := secStart(t, Options{Limits: Limits{ControlRate: 1}}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	before := counters(srv)
	for _, version := range []byte{packet.V5, packet.V311} {
		c := secMustConnect(t, addr, connectPacket(version, fmt.Sprint("ctl-v", version)))
		var flood []byte
		for i := range 20 {
			var p packet.Packet = &packet.Subscribe{PacketID: uint16(i + 1), Subs: []packet.Subscription{{Filter: "ctl/x"}}}
			if i%2 == 1 {
				p = &packet.Unsubscribe{PacketID: uint16(i + 1), Filters: []string{"ctl/x"}}
			}
			b, _ := packet.Append(nil, p, version)
			flood = append(flood, b...)
		}
		c.sendRaw(flood)
		acks := 0
		for {
			p, err := c.read(wiretest.Timeout)
			if err != nil {
				break
			}
			switch p := p.(type) {
			case *packet.Suback, *packet.Unsuback:
				acks++
			case *packet.Disconnect:
				if p.Code != packet.MessageRateTooHigh || version != packet.V5 {
					t.Errorf("v%d: DISCONNECT 0x%02x, want 0x96 for MQTT 5 only", version, byte(p.Code))
				}
				acks += 100
			default:
				t.Errorf("v%d: unexpected %s", version, p.Type())
			}
		}
		wantAcks := 10
		if version == packet.V5 {
			wantAcks += 100
		}
		if acks != wantAcks {
			t.Errorf("v%d: %d acknowledgements (+100 for a DISCONNECT 0x96), want %d: the burst is ten", version, acks, wantAcks)
		}
	}
	expectCounted(t, before, counters(srv), "rateLimited", 2)
	bystander.ping()
}

// QueuedMemory: clean sessions that do not keep up share a memory budget
// for their queues. Once it is spent, the publisher is held back (its
// packets are not read) instead of its messages being dropped, so memory
// stays within one message per session of the budget; as the slow clients
// catch up the publisher goes on, and every message is delivered. A
// persistent session's queue is in the store and does not count.
func TestLimitQueuedMemory(t *testing.T) {
	const budget, size = 64 << 10, 4 << 10
	srv := secStart(t, Options{MaxInflight: 1, Limits: Limits{QueuedMemory: budget}}, nil)
	addr := srv.Addrs()[0].String()
	var slow []*secClient
	for i := range 4 {
		c := secMustConnect(t, addr, connectPacket(packet.V311, fmt.Sprint("slow-", i)))
		c.mustSubscribe(1, 1, "mem/#")
		slow = append(slow, c)
	}
	durable := connectPacket(packet.V5, "durable")
	durable.Props.SessionExpiry = 300
	durable.Props.Mark(packet.PropSessionExpiry)
	dc := secMustConnect(t, addr, durable)
	dc.mustSubscribe(1, 1, "mem/#")

	before := counters(srv)
	pub := secMustConnect(t, addr, connectPacket(packet.V5, "pub"))
	payload := bytes.Repeat([]byte{'m'}, size)
	const n = 40
	var all []byte
	for i := range n {
		all, _ = packet.Append(all, &packet.Publish{Topic: "mem/x", Payload: payload, QoS: 1, PacketID: uint16(i + 1)}, packet.V5)
	}
	sent := make(chan error, 1)
	go func() { _, err := pub.nc.Write(all); sent <- err }()

	wiretest.Eventually(t, "the publisher held back", func() bool { return srv.stats.heldBack.Load() > before["heldBack"] })
	// Nobody reads meanwhile, so what is queued now is the most there was.
	// Five sessions (the persistent one pages its queue in) may each take
	// one message past the budget.
	if got := srv.queuedMem.Load(); got > budget+5*size {
		t.Errorf("queued memory reached %d bytes; the budget is %d", got, budget)
	}
	// The slow clients catch up together: the publisher goes on once all
	// the sessions it waits for have drained.
	got := make([]chan int, len(slow))
	for i, c := range slow {
		got[i] = make(chan int, 1)
		go func() {
			k := 0
			for k < n {
				p, err := c.read(wiretest.Timeout)
				if err != nil {
					break
				}
				if pub, ok := p.(*packet.Publish); ok {
					k++
					// Not c.send: it may not fail the test from here.
					ack, _ := packet.Append(nil, &packet.Ack{Kind: packet.PUBACK, PacketID: pub.PacketID}, c.version)
					if _, err := c.nc.Write(ack); err != nil {
						break
					}
				}
			}
			got[i] <- k
		}()
	}
	for i := range slow {
		if k := <-got[i]; k != n {
			t.Errorf("slow-%d got %d messages, want %d", i, k, n)
		}
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("the publisher's write did not finish")
	}
	for i := range n {
		pub.nextAck(packet.PUBACK, uint16(i+1))
	}
	// The persistent session gets everything: its queue spills to the store.
	if got := len(ackAll(dc, n)); got != n {
		t.Errorf("the persistent session got %d messages, want %d", got, n)
	}
	after := counters(srv)
	if d := after["droppedMemory"] + after["droppedQueueFull"] - before["droppedMemory"] - before["droppedQueueFull"]; d != 0 {
		t.Errorf("%d messages dropped; online sessions hold their publishers back instead (moved: %s)", d, countersMoved(before, after))
	}
	wiretest.Eventually(t, "queued memory given back", func() bool { return srv.queuedMem.Load() == 0 })
}

// A subscriber that never reads cannot make the broker hold more than a
// bounded amount for it: past the bound its QoS 0 messages are dropped and
// counted. 50 MiB published at it grow the heap by less than 16 MiB.
func TestLimitSlowConsumerQoS0(t *testing.T) {
	const total, size = 50 << 20, 64 << 10
	const n = total / size
	srv := secStart(t, Options{Logger: warnLogger(t)}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	bystander.mustSubscribe(1, 0, "other/#")
	slow := secMustConnect(t, addr, connectPacket(packet.V311, "never-reads"))
	slow.mustSubscribe(1, 0, "flood/#")

	pub := secMustConnect(t, addr, connectPacket(packet.V311, "flood"))
	msg, _ := packet.Append(nil, &packet.Publish{Topic: "flood/x", Payload: bytes.Repeat([]byte{'f'}, size)}, packet.V311)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	start, h0 := time.Now(), heap()
	for range n {
		pub.sendRaw(msg)
	}
	pub.ping() // every PUBLISH has been routed
	h1 := heap()
	dropped := srv.stats.droppedQoS0Slow.Load()
	growth := int64(h1) - int64(h0)
	t.Logf("%d MiB in %v at a client that does not read: heap %+.1f MiB, %d of %d messages dropped",
		total>>20, time.Since(start).Round(time.Millisecond), float64(growth)/(1<<20), dropped, n)
	if growth > 16<<20 {
		t.Errorf("the heap grew by %.1f MiB; want under 16 MiB whatever one client does not read", float64(growth)/(1<<20))
	}
	if dropped == 0 {
		t.Fatal("droppedQoS0Slow did not rise")
	}
	bystander.ping()

	// Once it reads, it gets what was kept for it: every message is
	// either delivered or counted as dropped.
	delivered := len(slow.untilPong())
	if int64(delivered)+dropped != n {
		t.Errorf("%d delivered + %d dropped = %d, want the %d published", delivered, dropped, int64(delivered)+dropped, n)
	}
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// trickle writes b one byte every interval until stop closes or a write
// fails, and returns when it stopped.
func trickle(nc net.Conn, b []byte, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i = (i + 1) % len(b) {
			nc.SetWriteDeadline(time.Now().Add(wiretest.Timeout))
			if _, err := nc.Write(b[i : i+1]); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return done
}

// Slowloris: a connection that sends nothing is cut at ConnectTimeout (after
// the second or so that the kernel holds it unaccepted, TCP_DEFER_ACCEPT); one
// that trickles a packet, before or after CONNECT, is cut once
// IncompletePacketTimeout passed, though bytes keep coming; and the keep
// alive is kept by complete packets only, not by bytes.
// [MQTT-3.1.2-24] v3.1.1
// [MQTT-3.1.2-22] v5
func TestLimitSlowloris(t *testing.T) {
	const connectTimeout, incomplete = 500 * time.Millisecond, 500 * time.Millisecond
	// A silent connection reaches the broker once the kernel's first SYN-ACK
	// retransmission (after 1s) is answered; the listener asks for one.
	const deferredAccept = 2 * time.Second
	short := Options{ConnectTimeout: connectTimeout, Limits: Limits{IncompletePacketTimeout: incomplete}}
	connect := func(version byte, keepAlive uint16) []byte {
		p := connectPacket(version, "trickler")
		p.KeepAlive = keepAlive
		b, _ := packet.Append(nil, p, version)
		return b
	}
	// A PUBLISH header that announces more bytes than the trickle will
	// ever send in the test.
	publishStart := append([]byte{0x30, 0xff, 0x7f, 0, 3, 'a', '/', 'b'}, bytes.Repeat([]byte{'x'}, 4096)...)
	cases := []struct {
		name     string
		opts     Options
		version  byte
		prefix   []byte // sent at once (CONNECT), answered with CONNACK
		trickled []byte
		min, max time.Duration
	}{
		{"nothing sent", short, packet.V311, nil, nil, connectTimeout, 3*connectTimeout + deferredAccept},
		{"CONNECT trickled", short, packet.V5, nil, connect(packet.V5, 60), incomplete, 3 * incomplete},
		{"PUBLISH trickled, 3.1.1", short, packet.V311, connect(packet.V311, 60), publishStart, incomplete, 3 * incomplete},
		{"PUBLISH trickled, 5", short, packet.V5, connect(packet.V5, 60), publishStart, incomplete, 3 * incomplete},
		// The default incomplete-packet timeout (30s) is far off: only the
		// keep alive can cut this one.
		{"bytes do not keep alive", Options{}, packet.V5, connect(packet.V5, 1), publishStart, 1500 * time.Millisecond, 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := secStart(t, tc.opts, nil)
			bystander := secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V5, "bystander"))
			before := counters(srv)
			c := secDial(t, "tcp", srv.Addrs()[0].String(), "trickler", tc.version)
			if tc.prefix != nil {
				c.sendRaw(tc.prefix)
				if ack := c.next().(*packet.Connack); ack.Code != packet.Success {
					t.Fatalf("CONNACK 0x%02x", byte(ack.Code))
				}
			}
			start := time.Now()
			stop := make(chan struct{})
			var done <-chan struct{} = closedChan()
			if tc.trickled != nil {
				done = trickle(c.nc, tc.trickled, 100*time.Millisecond, stop)
			}
			d := c.closedErr(tc.max + time.Second)
			took := time.Since(start)
			close(stop)
			<-done
			if took < tc.min*9/10 || took > tc.max {
				t.Errorf("cut after %v; want between %v and %v", took, tc.min, tc.max)
			}
			if d != nil {
				t.Logf("cut after %v with DISCONNECT 0x%02x (%q)", took, byte(d.Code), d.Props.ReasonString)
			} else {
				t.Logf("cut after %v", took)
			}
			expectCounted(t, before, counters(srv), "timeouts", 1)
			bystander.ping()
		})
	}
}

// A declared remaining length of 256 MiB is refused as soon as the fixed
// header is read: the connection closes while the client has sent five
// bytes, before CONNECT and after (MQTT 5: DISCONNECT 0x95).
// [MQTT-3.2.2-15] v5
func TestLimitHugeDeclaredLength(t *testing.T) {
	srv := secStart(t, Options{}, nil)
	addr := srv.Addrs()[0].String()
	bystander := secMustConnect(t, addr, connectPacket(packet.V5, "bystander"))
	huge := []byte{0xff, 0xff, 0xff, 0x7f} // 268,435,455 bytes to follow
	for _, tc := range []struct {
		name    string
		version byte
		connect bool
		first   byte
	}{
		{"CONNECT", packet.V5, false, 0x10},
		{"PUBLISH 3.1.1", packet.V311, true, 0x30},
		{"PUBLISH 5", packet.V5, true, 0x30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *secClient
			if tc.connect {
				c = secMustConnect(t, addr, connectPacket(tc.version, "huge"))
			} else {
				c = secDial(t, "tcp", addr, "huge", tc.version)
			}
			var m0 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c.sendRaw(append([]byte{tc.first}, huge...)) // five bytes, and no more
			start := time.Now()
			d := c.closedErr(wiretest.Timeout)
			var m1 runtime.MemStats
			runtime.ReadMemStats(&m1)
			if tc.connect && tc.version == packet.V5 && (d == nil || d.Code != packet.PacketTooLarge) {
				t.Errorf("want DISCONNECT 0x95 before the close, got %+v", d)
			}
			if !tc.connect && d != nil {
				t.Errorf("got DISCONNECT before CONNECT")
			}
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 {
				t.Errorf("%d MiB allocated while refusing a 256 MiB declaration", alloc>>20)
			}
			t.Logf("closed %v after five bytes were sent", time.Since(start))
		})
	}
	bystander.ping()
}
