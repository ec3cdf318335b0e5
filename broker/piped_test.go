package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/pipebuf"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// Piped payloads (piped.go) end to end: big PUBLISHes whose payload's end
// the event loop keeps in a kernel pipe, through real sockets to every kind
// of subscriber, to stores and retained messages, split anywhere on the
// way in, cut off halfway, held up by slow readers; and the same traffic
// with Options.DisableSplice, which must not change a byte.
//
// Every payload is random bytes after its number ("0000012/"), so a
// subscriber's copy says which message it is, and any byte out of place
// shows.

// pipedMsg is a message a test publishes.
type pipedMsg struct {
	topic   string
	qos     byte
	retain  bool
	payload []byte
	props   packet.Properties // sent by MQTT 5 publishers only
}

// pipedPayload is n random bytes (n >= 8) that start with seq's number.
func pipedPayload(rng *rand.ChaCha8, seq, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	copy(b, fmt.Sprintf("%07d/", seq))
	return b
}

// pipedSeq is the number a payload of pipedPayload starts with, or -1.
func pipedSeq(p []byte) int {
	if len(p) < 8 || p[7] != '/' {
		return -1
	}
	n, err := strconv.Atoi(string(p[:7]))
	if err != nil {
		return -1
	}
	return n
}

// pipedMessages makes n messages on topic, with sizes and QoS levels taken
// in turn from those given, and payloads from seed.
func pipedMessages(seed uint64, topic string, n int, sizes []int, qos []byte) []pipedMsg {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.NewChaCha8(key)
	msgs := make([]pipedMsg, n)
	for i := range msgs {
		msgs[i] = pipedMsg{topic: topic, qos: qos[i%len(qos)], payload: pipedPayload(rng, i, sizes[i%len(sizes)])}
	}
	return msgs
}

// The event loop reads 64 KiB at a time (and 4 KiB after a piped packet),
// and pipes what is still to come of a PUBLISH when that is 32 KiB to
// 320 KiB (pipebuf.MaxBytes): most of these sizes are piped, some are
// near the edges, 40 KiB and the small ones are read into memory.
var pipedSizes = []int{40 << 10, 300 << 10, 96<<10 + 1, 17, 150 << 10, 200 << 10, 64 << 10, 250 << 10, 3000, 100 << 10}

// pipedGot is a PUBLISH as a subscriber received it.
type pipedGot struct {
	topic   string
	qos     byte
	retain  bool
	dup     bool
	subID   int
	payload []byte
}

// digest identifies g by what the subscriber saw, its payload by hash.
func (g pipedGot) digest() string {
	return fmt.Sprintf("%s qos=%d retain=%v dup=%v sub=%d %d bytes sha256=%x",
		g.topic, g.qos, g.retain, g.dup, g.subID, len(g.payload), sha256.Sum256(g.payload))
}

// pipedReceiver returns the next PUBLISH a subscriber received, or an
// error when none came within timeout.
type pipedReceiver func(timeout time.Duration) (pipedGot, error)

// fromPaho3 receives from a Paho 3.1.1 client's inbox.
func fromPaho3(in inbox) pipedReceiver {
	return func(timeout time.Duration) (pipedGot, error) {
		select {
		case m := <-in:
			return pipedGot{topic: m.Topic(), qos: m.Qos(), retain: m.Retained(), dup: m.Duplicate(), payload: m.Payload()}, nil
		case <-time.After(timeout):
			return pipedGot{}, fmt.Errorf("nothing within %v", timeout)
		}
	}
}

// fromPaho5 receives from pahoV5's channel.
func fromPaho5(in chan *paho.Publish) pipedReceiver {
	return func(timeout time.Duration) (pipedGot, error) {
		select {
		case p := <-in:
			g := pipedGot{topic: p.Topic, qos: p.QoS, retain: p.Retain, dup: p.Duplicate(), payload: p.Payload}
			if p.Properties != nil && p.Properties.SubscriptionIdentifier != nil {
				g.subID = *p.Properties.SubscriptionIdentifier
			}
			return g, nil
		case <-time.After(timeout):
			return pipedGot{}, fmt.Errorf("nothing within %v", timeout)
		}
	}
}

// fromWire receives with a raw client, which answers each packet as a
// conforming subscriber does (wiretest.Reply) and resolves topic aliases.
// It is used on one goroutine.
func fromWire(c *wiretest.Client) pipedReceiver {
	aliases := map[uint16]string{}
	return func(timeout time.Duration) (pipedGot, error) {
		for {
			p, err := c.Read(timeout)
			if err != nil {
				return pipedGot{}, err
			}
			if r := wiretest.Reply(p); r != nil {
				if err := c.TrySend(r); err != nil {
					return pipedGot{}, err
				}
			}
			switch p := p.(type) {
			case *packet.Publish:
				if a := p.Props.TopicAlias; p.Props.Has(packet.PropTopicAlias) {
					if p.Topic == "" {
						p.Topic = aliases[a]
					}
					aliases[a] = p.Topic
				}
				g := pipedGot{topic: p.Topic, qos: p.QoS, retain: p.Retain, dup: p.Dup, payload: p.Payload}
				if len(p.Props.SubscriptionIDs) > 0 {
					g.subID = int(p.Props.SubscriptionIDs[0])
				}
				return g, nil
			case *packet.Ack:
				if p.Kind != packet.PUBREL {
					return pipedGot{}, fmt.Errorf("unexpected %s", p.Kind)
				}
			default:
				return pipedGot{}, fmt.Errorf("unexpected %s", p.Type())
			}
		}
	}
}

// expectPiped takes what one subscriber receives until every message of
// want came, and fails the test unless each came once, whole, on its
// topic, at its QoS (at most granted), and after the messages of that QoS
// published before it: none may be lost, duplicated or altered. It
// returns what came, in order.
func expectPiped(t *testing.T, name string, recv pipedReceiver, want []pipedMsg, granted byte) []pipedGot {
	t.Helper()
	seen := make([]int, len(want))
	last := [3]int{-1, -1, -1}
	var got []pipedGot
	for len(got) < len(want) {
		g, err := recv(wiretest.Timeout)
		if err != nil {
			t.Fatalf("%s: %d of the %d messages published arrived, %d lost (missing %s): %v",
				name, len(got), len(want), len(want)-len(got), pipedMissing(seen), err)
		}
		i := pipedSeq(g.payload)
		if i < 0 || i >= len(want) {
			t.Fatalf("%s: after %d messages, a payload of %d bytes on %s that was never published (starts %q)",
				name, len(got), len(g.payload), g.topic, g.payload[:min(len(g.payload), 16)])
		}
		w := want[i]
		if g.topic != w.topic || !bytes.Equal(g.payload, w.payload) {
			t.Fatalf("%s: message %d, %d bytes on %s, arrived as %d bytes on %s: %s",
				name, i, len(w.payload), w.topic, len(g.payload), g.topic, pipedDiff(g.payload, w.payload))
		}
		if q := min(w.qos, granted); g.qos != q {
			t.Errorf("%s: message %d arrived at QoS %d, want %d", name, i, g.qos, q)
		}
		if seen[i]++; seen[i] > 1 {
			t.Fatalf("%s: message %d (%d bytes, QoS %d) arrived twice (dup flag %v)", name, i, len(w.payload), w.qos, g.dup)
		}
		if i < last[w.qos] {
			t.Errorf("%s: QoS %d message %d arrived after message %d, published later", name, w.qos, i, last[w.qos])
		}
		last[w.qos] = i
		got = append(got, g)
	}
	return got
}

// pipedMissing lists the messages not seen, the first few of them.
func pipedMissing(seen []int) string {
	var s []string
	for i, n := range seen {
		if n == 0 {
			if len(s) == 10 {
				s = append(s, "…")
				break
			}
			s = append(s, strconv.Itoa(i))
		}
	}
	return strings.Join(s, " ")
}

// pipedDiff says where got first differs from want.
func pipedDiff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("bytes differ from offset %d (of %d)", i, len(want))
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("the first %d bytes are right, then it is %s", min(len(got), len(want)),
			map[bool]string{true: "cut short", false: "too long"}[len(got) < len(want)])
	}
	return "same bytes"
}

// expectPipesUsed fails the test unless srv took a pipe for a payload: on
// Linux, splice is on by default, and a test of piped payloads that only
// ever went through memory would prove nothing.
func expectPipesUsed(t *testing.T, srv *Server) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	if srv.pipes == nil || srv.pipes.Live() == 0 {
		t.Fatal("no payload went through a pipe: the piped path was not exercised")
	}
}

// pahoPublishAll publishes msgs in order with a Paho 3.1.1 client, each
// acknowledged (or, at QoS 0, written) before the next.
func pahoPublishAll(t *testing.T, c mqtt.Client, msgs []pipedMsg) {
	t.Helper()
	for i, m := range msgs {
		wait(t, c.Publish(m.topic, m.qos, m.retain, m.payload), fmt.Sprintf("publish message %d (%d bytes, QoS %d)", i, len(m.payload), m.qos))
	}
}

// pipedPackets encodes msgs as one client would send them, with packet
// ids from 1 for those at QoS 1 and 2.
func pipedPackets(t *testing.T, msgs []pipedMsg, version byte) [][]byte {
	t.Helper()
	packets := make([][]byte, len(msgs))
	for i, m := range msgs {
		p := &packet.Publish{Topic: m.topic, QoS: m.qos, Retain: m.retain, Payload: m.payload, Props: m.props}
		if m.qos > 0 {
			p.PacketID = uint16(i + 1)
		}
		var err error
		if packets[i], err = packet.Append(nil, p, version); err != nil {
			t.Fatalf("encode message %d: %v", i, err)
		}
	}
	return packets
}

// pipedStream is pipedPackets back to back.
func pipedStream(t *testing.T, msgs []pipedMsg, version byte) []byte {
	t.Helper()
	return bytes.Join(pipedPackets(t, msgs, version), nil)
}

// writeStepwise writes the first n bytes of each packet one at a time,
// each once the broker has read the one before (its count of bytes
// received moved), then the rest of the packet at once: the broker sees
// the packet's head grow a byte a read, its fixed header, then its topic,
// then its properties incomplete.
func writeStepwise(t *testing.T, srv *Server, nc net.Conn, packets [][]byte, n int) {
	t.Helper()
	nc.SetWriteDeadline(time.Now().Add(wiretest.Timeout))
	for i, p := range packets {
		for j := range min(n, len(p)) {
			before := srv.Stats().BytesReceived
			if _, err := nc.Write(p[j : j+1]); err != nil {
				t.Fatalf("packet %d, byte %d: %v", i, j, err)
			}
			wiretest.Eventually(t, fmt.Sprintf("the broker reads byte %d of packet %d", j, i), func() bool {
				return srv.Stats().BytesReceived > before
			})
		}
		if len(p) > n {
			if _, err := nc.Write(p[n:]); err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
	}
}

// writeChunks writes b to nc in writes of the sizes given, in turn; with
// none, in one write.
func writeChunks(t *testing.T, nc net.Conn, b []byte, sizes []int) {
	t.Helper()
	nc.SetWriteDeadline(time.Now().Add(wiretest.Timeout))
	if len(sizes) == 0 {
		sizes = []int{len(b)}
	}
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		if _, err := nc.Write(b[:n]); err != nil {
			t.Fatalf("write: %v (%d bytes left)", err, len(b))
		}
		b = b[n:]
	}
}

// expectPubacks reads the acknowledgements of the messages of a stream
// (pipedStream), in order; it supports QoS 0 and 1.
func expectPubacks(pub *wiretest.Client, msgs []pipedMsg) {
	for i, m := range msgs {
		if m.qos == 1 {
			pub.ExpectAck(packet.PUBACK, uint16(i+1))
		}
	}
}

// One 3.1.1 publisher's big messages, at every QoS, reach every kind of
// subscriber whole and in order: on the event loop (where the payload's
// end is spliced from pipe to socket) with MQTT 3.1.1 and with MQTT 5
// without properties; with a subscription identifier or topic aliases
// (the properties path, which reads the payload out of the pipe); on the
// goroutine driver and over WebSocket, which write from memory.
func TestPipedPayloadsReachEveryKindOfSubscriber(t *testing.T) {
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "tcp", Address: "127.0.0.1:0"}, // first: pahoV5 dials it
		{Name: "goroutine", Address: "127.0.0.1:0", goroutineDriver: true},
		{Name: "ws", Kind: "ws", Address: "127.0.0.1:0"},
	}}, nil)
	a := srv.Addrs()
	msgs := pipedMessages(1, "piped/every", 40, pipedSizes, []byte{0, 1, 2})

	subs := map[string]pipedReceiver{}
	for _, k := range []struct{ name, url string }{
		{"3.1.1 event loop", "tcp://" + a[0].String()},
		{"3.1.1 goroutine driver", "tcp://" + a[1].String()},
		{"3.1.1 WebSocket", "ws://" + a[2].String() + "/mqtt"},
	} {
		in := newInbox()
		c := pahoConnect(t, pahoOn(k.url, strings.ReplaceAll(k.name, " ", "-"), nil))
		wait(t, c.Subscribe("piped/#", 2, in.handler), k.name+" subscribes")
		subs[k.name] = fromPaho3(in)
	}
	plain, in := pahoV5(t, srv, &paho.Connect{ClientID: "v5-plain", CleanStart: true})
	pahoV5Subscribe(t, plain, paho.SubscribeOptions{Topic: "piped/#", QoS: 2})
	subs["5 without properties"] = fromPaho5(in)
	withID, in := pahoV5(t, srv, &paho.Connect{ClientID: "v5-subid", CleanStart: true})
	subID := 7
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	if _, err := withID.Subscribe(ctx, &paho.Subscribe{
		Properties:    &paho.SubscribeProperties{SubscriptionIdentifier: &subID},
		Subscriptions: []paho.SubscribeOptions{{Topic: "piped/#", QoS: 2}},
	}); err != nil {
		t.Fatalf("subscribe with a subscription identifier: %v", err)
	}
	subs["5 with a subscription identifier"] = fromPaho5(in)
	// Paho's MQTT 5 client does not take topic aliases: a raw one does.
	aliasing := &packet.Connect{Version: packet.V5, ClientID: "v5-alias", CleanStart: true, KeepAlive: 60}
	aliasing.Props.TopicAliasMaximum = 4
	aliasing.Props.Mark(packet.PropTopicAliasMaximum)
	raw, ack := wiretest.Connect(t, a[0].String(), aliasing)
	if ack.Code != 0 {
		t.Fatalf("v5-alias: CONNACK 0x%02x", byte(ack.Code))
	}
	raw.Subscribe("piped/#", 2)
	subs["5 with topic aliases"] = fromWire(raw)

	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	pahoPublishAll(t, pub, msgs)
	expectPipesUsed(t, srv)

	for name, recv := range subs {
		got := expectPiped(t, name, recv, msgs, 2)
		want := 0
		if name == "5 with a subscription identifier" {
			want = subID
		}
		for _, g := range got {
			if g.subID != want {
				t.Errorf("%s: message %d came with subscription identifier %d, want %d", name, pipedSeq(g.payload), g.subID, want)
				break
			}
			if g.retain || g.dup {
				t.Errorf("%s: message %d came with retain %v dup %v, want neither", name, pipedSeq(g.payload), g.retain, g.dup)
				break
			}
		}
	}
}

// Big messages published while a persistent session is offline are
// written to the store from the pipe and queued; the session gets every
// one whole when it comes back, with MQTT 3.1.1 and MQTT 5, from the
// running broker and after a restart, on the memory and the Pebble store.
func TestPipedPayloadToOfflineDurableSession(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memory", func(t *testing.T) store.Store {
			st := memory.New()
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"pebble", func(t *testing.T) store.Store { return openPebble(t, t.TempDir(), pebblestore.Options{}) }},
	}
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			r := &restartable{t: t, st: sk.open(t)}
			t.Cleanup(func() {
				if r.srv != nil {
					r.srv.Close()
				}
			})
			r.start()

			// Each session subscribes, then goes away.
			for _, id := range []string{"v3", "v3-restart"} {
				c, _ := wireConnect(t, r.addr(), id, false)
				c.Subscribe("durable/#", 1)
				c.Disconnect()
			}
			c := connectV5(t, r.addr(), "v5", true, 3600)
			c.Subscribe("durable/#", 1)
			c.Disconnect()
			for _, id := range []string{"v3", "v3-restart", "v5"} {
				waitOffline(t, r.srv, id)
			}

			msgs := pipedMessages(2, "durable/big", 20, pipedSizes, []byte{1, 2, 1})
			pub := pahoConnect(t, pahoOptions(t, r.srv, "pub"))
			pahoPublishAll(t, pub, msgs)
			pub.Disconnect(0)
			expectPipesUsed(t, r.srv)

			in := newInbox()
			v3 := pahoConnect(t, pahoOptions(t, r.srv, "v3").SetCleanSession(false).SetDefaultPublishHandler(in.handler))
			expectPiped(t, "3.1.1 session back", fromPaho3(in), msgs, 1)
			v3.Disconnect(0)

			expiry := uint32(3600)
			v5, in5 := pahoV5(t, r.srv, &paho.Connect{ClientID: "v5", CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
			expectPiped(t, "MQTT 5 session back", fromPaho5(in5), msgs, 1)
			v5.Disconnect(&paho.Disconnect{ReasonCode: 0})
			select {
			case <-v5.Done():
			case <-time.After(wiretest.Timeout):
				t.Fatal("the MQTT 5 client did not disconnect")
			}

			r.restart()
			in = newInbox()
			pahoConnect(t, pahoOptions(t, r.srv, "v3-restart").SetCleanSession(false).SetDefaultPublishHandler(in.handler))
			expectPiped(t, "3.1.1 session back after a restart", fromPaho3(in), msgs, 1)
		})
	}
}

// A big retained PUBLISH is taken out of the pipe into memory (retained
// messages are kept and stored): subscribers then and later get it whole,
// and so does Server.Retained; a big retained message replaces another.
func TestPipedRetainedMessage(t *testing.T) {
	srv := startServer(t, Options{})
	live := newInbox()
	wait(t, pahoConnect(t, pahoOptions(t, srv, "live")).Subscribe("ret/#", 2, live.handler), "subscribe")

	msgs := pipedMessages(3, "", 5, []int{300 << 10, 150 << 10, 200 << 10, 250 << 10, 100 << 10}, []byte{1, 0, 2, 1, 0})
	for i, topic := range []string{"ret/a", "ret/b", "ret/c", "ret/a", "ret/d"} {
		msgs[i].topic, msgs[i].retain = topic, true
	}
	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	pahoPublishAll(t, pub, msgs)
	expectPipesUsed(t, srv)
	expectPiped(t, "subscribed before", fromPaho3(live), msgs, 2)

	kept := []pipedMsg{msgs[1], msgs[2], msgs[3], msgs[4]} // msgs[3] replaced msgs[0]
	for _, m := range kept {
		r, ok := srv.Retained(m.topic)
		if !ok || !bytes.Equal(r.Payload, m.payload) {
			t.Errorf("Server.Retained(%q): %v, %d bytes, want message %d: %s",
				m.topic, ok, len(r.Payload), pipedSeq(m.payload), pipedDiff(r.Payload, m.payload))
		}
	}

	// Subscribers that come later get the retained messages, in no
	// particular order: each is checked against the one kept for its topic.
	check := func(name string, recv pipedReceiver) {
		t.Helper()
		byTopic := map[string]pipedMsg{}
		for _, m := range kept {
			byTopic[m.topic] = m
		}
		for range kept {
			g, err := recv(wiretest.Timeout)
			if err != nil {
				t.Fatalf("%s: %d retained messages missing: %v", name, len(byTopic), err)
			}
			m, ok := byTopic[g.topic]
			if !ok {
				t.Fatalf("%s: got %s (message %d) twice, or one that is not kept", name, g.topic, pipedSeq(g.payload))
			}
			delete(byTopic, g.topic)
			if !g.retain || !bytes.Equal(g.payload, m.payload) {
				t.Fatalf("%s: %s came with retain %v, %d bytes, want message %d: %s",
					name, g.topic, g.retain, len(g.payload), pipedSeq(m.payload), pipedDiff(g.payload, m.payload))
			}
		}
	}
	late := newInbox()
	wait(t, pahoConnect(t, pahoOptions(t, srv, "late3")).Subscribe("ret/#", 1, late.handler), "late subscribe")
	check("3.1.1 subscriber after", fromPaho3(late))
	late5, in5 := pahoV5(t, srv, &paho.Connect{ClientID: "late5", CleanStart: true})
	pahoV5Subscribe(t, late5, paho.SubscribeOptions{Topic: "ret/#", QoS: 1})
	check("MQTT 5 subscriber after", fromPaho5(in5))
}

// pipedRound is a stream of PUBLISHes a raw client writes in chunks.
type pipedRound struct {
	name    string
	version byte
	sizes   []int
	chunks  []int // nil: the whole stream in one write
	// stepwise, when not 0, is how many bytes of each packet are written
	// one at a time (writeStepwise) instead.
	stepwise int
	// listener is the index of the listener the publisher uses.
	listener int
}

// Big PUBLISHes split anywhere: the head of a packet across reads, its
// payload's end into the pipe in tiny segments (which fill a pipe before
// the packet is whole: the rest continues in memory), a big packet and the
// next in one read; from MQTT 5 clients, with properties; on the
// goroutine driver too. Every payload must come out whole, and every
// QoS 1 PUBLISH be acknowledged in order.
func TestPipedPacketsSplitAnywhere(t *testing.T) {
	srv := secStart(t, Options{Listeners: []ListenerConfig{
		{Name: "tcp", Address: "127.0.0.1:0"}, // first: pahoV5 dials it
		{Name: "goroutine", Address: "127.0.0.1:0", goroutineDriver: true},
	}}, nil)
	in3 := newInbox()
	wait(t, pahoConnect(t, pahoOptions(t, srv, "sub3")).Subscribe("split/#", 1, in3.handler), "subscribe")
	sub5, in5 := pahoV5(t, srv, &paho.Connect{ClientID: "sub5", CleanStart: true})
	pahoV5Subscribe(t, sub5, paho.SubscribeOptions{Topic: "split/#", QoS: 1})

	// Big ones back to back, one just past what a pipe takes after a
	// 4 KiB read, one too big for a pipe, small ones between.
	stream := []int{120 << 10, 10, 300 << 10, 200 << 10, 5 << 10, 100 << 10, 323 << 10, 390 << 10, 64 << 10, 3000, 250 << 10}
	mixed := []int{1, 7, 4095, 65537, 3, 200001, 2}
	rounds := []pipedRound{
		{name: "head a byte a read", version: packet.V311, sizes: []int{100 << 10, 300 << 10, 20, 200 << 10}, stepwise: 24},
		{name: "MQTT 5 head a byte a read", version: packet.V5, sizes: []int{100 << 10, 300 << 10, 20}, stepwise: 72},
		{name: "1-byte writes", version: packet.V311, sizes: []int{40, 100 << 10, 9}, chunks: []int{1}},
		{name: "7-byte writes", version: packet.V311, sizes: []int{150 << 10, 12, 100 << 10}, chunks: []int{7}},
		{name: "4095-byte writes", version: packet.V311, sizes: stream, chunks: []int{4095}},
		{name: "65537-byte writes", version: packet.V311, sizes: stream, chunks: []int{65537}},
		{name: "one write", version: packet.V311, sizes: stream},
		{name: "mixed writes", version: packet.V311, sizes: stream, chunks: mixed},
		{name: "MQTT 5 mixed writes", version: packet.V5, sizes: stream, chunks: []int{3, 65537, 7, 4095, 1, 200001}},
		{name: "MQTT 5 one write", version: packet.V5, sizes: stream},
		{name: "big then small in one write", version: packet.V311, sizes: []int{200 << 10, 20}},
		{name: "small then big in one write", version: packet.V311, sizes: []int{20, 200 << 10}},
		{name: "big, small, big in one write", version: packet.V311, sizes: []int{300 << 10, 20, 100 << 10}},
		{name: "two big in one write", version: packet.V311, sizes: []int{150 << 10, 300 << 10}},
		// The goroutine driver reads into memory: nothing is piped.
		{name: "goroutine driver, mixed writes", version: packet.V311, sizes: stream, chunks: mixed, listener: 1},
		{name: "goroutine driver, MQTT 5 one write", version: packet.V5, sizes: stream, listener: 1},
	}
	for r, round := range rounds {
		t.Run(round.name, func(t *testing.T) {
			topic := fmt.Sprintf("split/%d", r)
			msgs := pipedMessages(uint64(100+r), topic, len(round.sizes), round.sizes, []byte{1})
			if round.version == packet.V5 {
				for i := range msgs {
					p := &msgs[i].props
					p.ContentType = "application/x-piped"
					p.Mark(packet.PropContentType)
					p.User = []packet.UserProperty{{Key: "seq", Value: strconv.Itoa(i)}}
				}
				// Payload Format Indicator 1 on the biggest: the broker checks
				// the payload, so it reads it out of the pipe.
				utf8 := &msgs[0]
				for i := range msgs {
					if len(msgs[i].payload) > len(utf8.payload) {
						utf8 = &msgs[i]
					}
				}
				for j := 8; j < len(utf8.payload); j++ {
					utf8.payload[j] = 'a' + utf8.payload[j]%26
				}
				utf8.props.PayloadFormat = 1
				utf8.props.Mark(packet.PropPayloadFormat)
			}
			addr := srv.Addrs()[round.listener].String()
			pub, ack := wiretest.Connect(t, addr, &packet.Connect{Version: round.version, ClientID: fmt.Sprint("pub", r), CleanStart: true, KeepAlive: 60})
			if ack.Code != 0 {
				t.Fatalf("CONNACK 0x%02x", byte(ack.Code))
			}
			start := time.Now()
			b := pipedStream(t, msgs, round.version)
			if round.stepwise > 0 {
				writeStepwise(t, srv, pub.Conn, pipedPackets(t, msgs, round.version), round.stepwise)
			} else {
				writeChunks(t, pub.Conn, b, round.chunks)
			}
			expectPubacks(pub, msgs)
			expectPiped(t, "3.1.1 subscriber", fromPaho3(in3), msgs, 1)
			expectPiped(t, "MQTT 5 subscriber", fromPaho5(in5), msgs, 1)
			t.Logf("%d messages, %d bytes, in %v", len(msgs), len(b), time.Since(start))
			pub.Disconnect()
		})
	}
	expectPipesUsed(t, srv)
}

// pipedFDs counts the process's open descriptors: the broker's and the
// test's.
func pipedFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// expectFDsBack waits until the process has at most want descriptors open
// (and cond holds, if not nil), running the garbage collector as it polls
// (a message left to it gives its pipe back in a cleanup).
func expectFDsBack(t *testing.T, what string, want int, cond func() bool) int {
	t.Helper()
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		runtime.GC()
		n := pipedFDs(t)
		if n <= want && (cond == nil || cond()) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d descriptors open after %v, want at most %d", what, n, wiretest.Timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Clients that hang up in the middle of a big PUBLISH, while its end is
// being spliced into a pipe, with FIN or with RST, and clients whose big
// PUBLISH turns out malformed once whole (a wildcard in its topic, packet
// id 0), which the broker hangs up on: their pipes go back to the pool,
// and nothing of those packets is delivered. Then subscribers hang up with
// piped payloads half written to them. Once the server is closed, every
// pipe it had is closed: the process has the descriptors it had before.
func TestPipedConnectionClosedMidPacket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pipes and /proc/self/fd are Linux's")
	}
	const slack = 6
	fdsBeforeServer := pipedFDs(t)
	srv := startServer(t, Options{})
	addr := srv.Addrs()[0].String()
	in := newInbox()
	wait(t, pahoConnect(t, pahoOptions(t, srv, "sub")).Subscribe("cut/#", 1, in.handler), "subscribe")
	big := pipedMessages(4, "cut/big", 2, []int{300 << 10}, []byte{1})
	whole := pipedStream(t, big[:1], packet.V311)

	cut := func(i, at int, reset bool) {
		t.Helper()
		c, _ := wiretest.MustConnect(t, addr, fmt.Sprint("cut", i), true)
		before := srv.Stats().BytesReceived
		c.SendRaw(whole[:at])
		wiretest.Eventually(t, fmt.Sprintf("cut %d: the broker reads the %d bytes sent", i, at), func() bool {
			return srv.Stats().BytesReceived >= before+uint64(at)
		})
		if reset {
			c.Conn.(*net.TCPConn).SetLinger(0)
		}
		c.Conn.Close()
	}
	// Malformed: the topic ends "cut/bi#", or the packet id is 0.
	wildcard := bytes.Clone(whole)
	at := bytes.Index(wildcard[:16], []byte("cut/big"))
	wildcard[at+len("cut/big")-1] = '#'
	noID := bytes.Clone(whole)
	noID[at+len("cut/big")], noID[at+len("cut/big")+1] = 0, 0
	refuse := func(i int, b []byte) {
		t.Helper()
		c, _ := wiretest.MustConnect(t, addr, fmt.Sprint("bad", i), true)
		c.SendRaw(b)
		c.ExpectClosed()
	}
	onlyTheSubscriber := func(when string) {
		t.Helper()
		wiretest.Eventually(t, when+": the other connections end", func() bool { return srv.Stats().ClientsConnected == 1 })
	}
	// Once first, so that the pool's pipe and the loops' buffers exist.
	cut(0, 100<<10, false)
	onlyTheSubscriber("warm-up")
	expectPipesUsed(t, srv)
	fds, pipes := pipedFDs(t), srv.pipes.Live()

	cuts := []int{100 << 10, 100 << 10, 64<<10 + 1, 100 << 10, 299 << 10, 100 << 10, 200 << 10, 3}
	const rounds = 50
	for i := range rounds {
		cut(i+1, cuts[i%len(cuts)], i%2 == 1)
		if i%5 == 0 {
			refuse(i, [][]byte{wildcard, noID}[i/5%2])
		}
	}
	onlyTheSubscriber("after the cuts")
	// One packet at a time is cut: the pool lends the same pipe again.
	now := expectFDsBack(t, "after the cuts", fds+slack, nil)
	t.Logf("descriptors: %d before the cuts, %d after; pipes: %d before, %d after", fds, now, pipes, srv.pipes.Live())
	if live := srv.pipes.Live(); live > pipes+2 {
		t.Errorf("%d pipes alive after %d cut packets, %d before: pipes leak", live, rounds, pipes)
	}

	// The next message is the first the subscriber gets: nothing of the
	// cut packets went anywhere.
	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	pahoPublishAll(t, pub, big[1:])
	g, err := fromPaho3(in)(wiretest.Timeout)
	if err != nil {
		t.Fatalf("a whole PUBLISH after the cut ones: %v", err)
	}
	if pipedSeq(g.payload) != 1 || !bytes.Equal(g.payload, big[1].payload) {
		t.Fatalf("the subscriber got %d bytes, message %d, want the whole message 1: %s",
			len(g.payload), pipedSeq(g.payload), pipedDiff(g.payload, big[1].payload))
	}

	// Subscribers that stop reading, then reset the connection, with more
	// big messages for them than the sockets hold.
	outgoing := pipedMessages(9, "out/big", 20, []int{300 << 10}, []byte{1})
	for i := range 3 {
		nc, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).SetReadBuffer(16 << 10)
		slow := wiretest.New(t, nc, fmt.Sprint("slow", i), packet.V311)
		if ack := slow.SendConnect(&packet.Connect{Version: packet.V311, ClientID: slow.Name, CleanStart: true, KeepAlive: 60}); ack.Code != 0 {
			t.Fatalf("CONNACK 0x%02x", byte(ack.Code))
		}
		slow.Subscribe("out/#", 1)
		before := srv.Stats().BytesSent
		pahoPublishAll(t, pub, outgoing)
		wiretest.Eventually(t, "the broker writes to the slow subscriber", func() bool {
			return srv.Stats().BytesSent-before >= 2<<20
		})
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
		wiretest.Eventually(t, "the slow subscriber's connection ends", func() bool { return srv.Stats().ClientsConnected == 2 })
	}

	// The pool keeps empty pipes for reuse while the server runs; Close
	// closes them, and every pipe a message or an output still held.
	pub.Disconnect(0)
	srv.Close()
	expectFDsBack(t, "after Close", fdsBeforeServer+slack, func() bool { return srv.pipes.Live() == 0 })
}

// A subscriber that reads nothing while big QoS 1 messages come: more
// than the sockets' buffers hold, so pipe pieces wait in its output,
// partly written; or its window fills and the publisher, writing without
// waiting, is held back (no longer read) with a piped packet under way.
// Once it reads, every message arrives whole, once, in order, and every
// one was acknowledged.
func TestPipedSlowSubscriber(t *testing.T) {
	const n = 30
	t.Run("output waits", func(t *testing.T) {
		srv := startServer(t, Options{})
		nc, err := net.DialTimeout("tcp", srv.Addrs()[0].String(), wiretest.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).SetReadBuffer(16 << 10)
		sub := wiretest.New(t, nc, "slow", packet.V311)
		if ack := sub.SendConnect(&packet.Connect{Version: packet.V311, ClientID: "slow", CleanStart: true, KeepAlive: 60}); ack.Code != 0 {
			t.Fatalf("CONNACK 0x%02x", byte(ack.Code))
		}
		sub.Subscribe("slow/#", 1)

		// About 8 MiB: the broker's socket takes at most 4 MiB
		// (net.ipv4.tcp_wmem), the subscriber's 32 KiB.
		msgs := pipedMessages(5, "slow/big", n, []int{300 << 10, 250 << 10, 310 << 10, 200 << 10}, []byte{1})
		total := len(pipedStream(t, msgs, packet.V311))
		sentBefore := srv.Stats().BytesSent
		pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
		pahoPublishAll(t, pub, msgs) // all acknowledged while the subscriber reads nothing
		expectPipesUsed(t, srv)
		if sent := int(srv.Stats().BytesSent - sentBefore); sent >= total {
			t.Fatalf("the broker wrote %d bytes of the %d published before the subscriber read: its output never had to wait", sent, total)
		}
		got := expectPiped(t, "slow subscriber", fromWire(sub), msgs, 1)
		for _, g := range got {
			if g.dup {
				t.Fatalf("message %d came again (DUP) on the same connection", pipedSeq(g.payload))
			}
		}
		sub.Ping()
	})

	t.Run("publisher held back", func(t *testing.T) {
		srv := startServer(t, Options{MaxInflight: 2, BacklogMessages: 4})
		release := make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		in := newInbox()
		blocked := func(c mqtt.Client, m mqtt.Message) {
			<-release
			in.handler(c, m)
		}
		slow := pahoConnect(t, pahoOptions(t, srv, "slow"))
		t.Cleanup(releaseOnce) // before the client's cleanup disconnects it
		wait(t, slow.Subscribe("held/#", 1, blocked), "subscribe")

		msgs := pipedMessages(6, "held/big", n, pipedSizes, []byte{1})
		pub, _ := wiretest.MustConnect(t, srv.Addrs()[0].String(), "pub", true)
		stream := pipedStream(t, msgs, packet.V311)
		wrote := make(chan error, 1)
		go func() {
			pub.Conn.SetWriteDeadline(time.Now().Add(2 * wiretest.Timeout))
			_, err := pub.Conn.Write(stream)
			wrote <- err
		}()
		wiretest.Eventually(t, "the publisher is held back", func() bool { return srv.Stats().HeldBackConnections > 0 })
		releaseOnce()
		expectPubacks(pub, msgs)
		if err := <-wrote; err != nil {
			t.Fatalf("writing the PUBLISHes: %v", err)
		}
		expectPipesUsed(t, srv)
		expectPiped(t, "slow subscriber", fromPaho3(in), msgs, 1)
	})
}

// pipedScenario runs one sequence of traffic through a broker with
// DisableSplice as given, checks every subscriber got it whole, and
// returns what each received, in order, as digests.
func pipedScenario(t *testing.T, disable bool) map[string][]string {
	srv := secStart(t, Options{DisableSplice: disable, Listeners: []ListenerConfig{
		{Name: "tcp", Address: "127.0.0.1:0"},
		{Name: "goroutine", Address: "127.0.0.1:0", goroutineDriver: true},
	}}, nil)
	a := srv.Addrs()
	subs := map[string]pipedReceiver{}
	in := newInbox()
	wait(t, pahoConnect(t, pahoOn("tcp://"+a[0].String(), "v3", nil)).Subscribe("same/#", 2, in.handler), "subscribe")
	subs["3.1.1 event loop"] = fromPaho3(in)
	in = newInbox()
	wait(t, pahoConnect(t, pahoOn("tcp://"+a[1].String(), "v3-goroutine", nil)).Subscribe("same/#", 2, in.handler), "subscribe")
	subs["3.1.1 goroutine driver"] = fromPaho3(in)
	raw := connectV5(t, a[0].String(), "raw5", true, 0)
	if codes := raw.SendSubscribe(&packet.Subscribe{PacketID: 1, Props: packet.Properties{SubscriptionIDs: []uint32{9}},
		Subs: []packet.Subscription{{Filter: "same/#", QoS: 1}}}); codes[0] != 1 {
		t.Fatalf("SUBACK 0x%02x", byte(codes[0]))
	}
	subs["MQTT 5 raw, subscription identifier"] = fromWire(raw)

	msgs := pipedMessages(7, "same/t", 24, pipedSizes, []byte{1, 0, 1})
	msgs[5].retain = true
	pub, _ := wiretest.MustConnect(t, a[0].String(), "pub", true)
	writeChunks(t, pub.Conn, pipedStream(t, msgs, packet.V311), []int{4095, 65537, 1, 7, 200001})
	expectPubacks(pub, msgs)
	if disable {
		if srv.pipes != nil && srv.pipes.Live() != 0 {
			t.Fatalf("DisableSplice: %d pipes were made", srv.pipes.Live())
		}
	} else {
		expectPipesUsed(t, srv)
	}

	seen := map[string][]string{}
	for name, recv := range subs {
		for _, g := range expectPiped(t, name, recv, msgs, 2) {
			seen[name] = append(seen[name], g.digest())
		}
	}
	late := connectV5(t, a[0].String(), "late", true, 0)
	late.Subscribe("same/#", 1)
	g, err := fromWire(late)(wiretest.Timeout)
	if err != nil || !bytes.Equal(g.payload, msgs[5].payload) {
		t.Fatalf("the retained message: %v, %s", err, pipedDiff(g.payload, msgs[5].payload))
	}
	seen["late subscriber"] = []string{g.digest()}
	return seen
}

// DisableSplice turns the pipes off, and changes nothing a subscriber
// receives: the same traffic gives the same bytes, in the same order, with
// the same flags, either way.
func TestPipedMatchesDisabled(t *testing.T) {
	var runs [2]map[string][]string
	for i, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableSplice=%v", disable), func(t *testing.T) {
			runs[i] = pipedScenario(t, disable)
		})
	}
	if t.Failed() {
		return
	}
	spliced, copied := runs[0], runs[1]
	if len(spliced) != len(copied) {
		t.Fatalf("%d subscribers with splice, %d without", len(spliced), len(copied))
	}
	for name, a := range spliced {
		b := copied[name]
		if len(a) != len(b) {
			t.Errorf("%s: %d messages with splice, %d without", name, len(a), len(b))
			continue
		}
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("%s, message %d: with splice %s; without %s", name, i, a[i], b[i])
				break
			}
		}
	}
}

// When every pipe the server may have is taken (here by messages queued
// for an offline session, which keep theirs), a big PUBLISH is read into
// memory, and output whose pipe piece finds no pipe to tee into copies
// the bytes out instead. Nothing is lost either way.
func TestPipedPoolExhausted(t *testing.T) {
	const limit = 4
	srv := secStart(t, Options{}, func(s *Server) { s.pipes = pipebuf.NewPool(limit) })
	away, _ := wireConnect(t, srv.Addrs()[0].String(), "away", false)
	away.Subscribe("pool/#", 1)
	away.Disconnect()
	waitOffline(t, srv, "away")
	live := newInbox()
	wait(t, pahoConnect(t, pahoOptions(t, srv, "live")).Subscribe("pool/#", 1, live.handler), "subscribe")

	msgs := pipedMessages(8, "pool/big", 12, []int{100 << 10, 300 << 10, 200 << 10, 150 << 10}, []byte{1})
	pahoPublishAll(t, pahoConnect(t, pahoOptions(t, srv, "pub")), msgs)
	if runtime.GOOS == "linux" && srv.pipes.Live() != limit {
		t.Fatalf("%d pipes alive, want all %d taken by the queued messages", srv.pipes.Live(), limit)
	}
	expectPiped(t, "online subscriber", fromPaho3(live), msgs, 1)

	in := newInbox()
	pahoConnect(t, pahoOptions(t, srv, "away").SetCleanSession(false).SetDefaultPublishHandler(in.handler))
	expectPiped(t, "persistent session back", fromPaho3(in), msgs, 1)
}

// pipedSeen counts the payloads a hook saw, by hash.
type pipedSeen struct {
	mu sync.Mutex
	n  map[[32]byte]int
}

func (s *pipedSeen) add(payload []byte) {
	sum := sha256.Sum256(payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[[32]byte]int{}
	}
	s.n[sum]++
}

// each reports whether every message of msgs was seen exactly once.
func (s *pipedSeen) each(msgs []pipedMsg) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, m := range msgs {
		if s.n[sha256.Sum256(m.payload)] != 1 {
			return false
		}
	}
	for _, k := range s.n {
		total += k
	}
	return total == len(msgs)
}

// Where the broker must read a piped payload on its way in (a publish
// hook or an ACL check, an Authorizer, a byte rate limit) it takes it into
// memory first; a delivery hook reads it out of the pipe. Each sees every
// payload whole, and subscribers still get every one.
func TestPipedPayloadReadByHooksAndLimits(t *testing.T) {
	allowAll := func(*auth.Client, auth.Access, string) bool { return true }
	cases := []struct {
		name string
		opts func(seen *pipedSeen) Options
	}{
		{"OnPublish", func(seen *pipedSeen) Options {
			return Options{Hooks: Hooks{OnPublish: func(_ *auth.Client, m MessageView) packet.ReasonCode {
				seen.add(m.Payload())
				return packet.Success
			}}}
		}},
		{"OnDelivered", func(seen *pipedSeen) Options {
			return Options{Hooks: Hooks{OnDelivered: func(_ string, m MessageView) { seen.add(m.Payload()) }}}
		}},
		{"OnACLCheck", func(*pipedSeen) Options { return Options{Hooks: Hooks{OnACLCheck: allowAll}} }},
		{"Authorizer", func(*pipedSeen) Options { return Options{Authorizer: denyTopic("nothing/here")} }},
		{"PublishBytesRate", func(*pipedSeen) Options { return Options{Limits: Limits{PublishBytesRate: 1 << 30}} }},
	}
	for c, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := &pipedSeen{}
			srv := startServer(t, tc.opts(seen))
			in := newInbox()
			wait(t, pahoConnect(t, pahoOptions(t, srv, "sub")).Subscribe("hooked/#", 1, in.handler), "subscribe")
			msgs := pipedMessages(uint64(200+c), "hooked/big", 12, pipedSizes, []byte{1, 0, 2})
			pahoPublishAll(t, pahoConnect(t, pahoOptions(t, srv, "pub")), msgs)
			expectPipesUsed(t, srv)
			expectPiped(t, "subscriber", fromPaho3(in), msgs, 1)
			if tc.name == "OnPublish" || tc.name == "OnDelivered" {
				wiretest.Eventually(t, tc.name+" sees every payload once, whole", func() bool { return seen.each(msgs) })
			}
		})
	}
}
