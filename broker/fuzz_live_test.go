package broker

import (
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// FuzzLiveConnection sends arbitrary bytes to a running broker over TCP,
// reads whatever it answers until it closes the connection, and then
// checks that the broker still serves a well-behaved client (CONNECT,
// PINGREQ) and has let go of the fuzzed connection. One broker serves the
// whole fuzzing process; each input costs two loopback connections.
//
//	go test -run=NONE -fuzz='^FuzzLiveConnection$' -fuzztime=300000x ./broker
func FuzzLiveConnection(f *testing.F) {
	for _, seed := range liveFuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, err := liveFuzzBroker()
		if err != nil {
			t.Fatal(err)
		}
		addr := srv.Addrs()[0].String()
		if err := liveFuzzSend(addr, data); err != nil {
			t.Fatalf("input %s: %v", hex.EncodeToString(data), err)
		}
		if err := liveFuzzProbe(addr); err != nil {
			t.Fatalf("after input %s the broker does not serve a client: %v", hex.EncodeToString(data), err)
		}
		// Every connection is closed on the client side by now: the broker
		// must let go of them (no connection stuck waiting).
		deadline := time.Now().Add(2 * time.Second)
		for srv.connCount.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after input %s the broker still holds %d connections", hex.EncodeToString(data), srv.connCount.Load())
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// liveFuzz is the broker of one fuzzing process, started on first use and
// left running until the process ends.
var liveFuzz struct {
	once sync.Once
	srv  *Server
	err  error
}

func liveFuzzBroker() (*Server, error) {
	liveFuzz.once.Do(func() {
		maxQoS := byte(2)
		s := New(Options{
			Listeners:         []ListenerConfig{{Address: "127.0.0.1:0"}},
			MaxPacketSize:     64 << 10,
			ConnectTimeout:    time.Second,
			MaxQueuedMessages: 100,
			MaxQueuedBytes:    1 << 20,
			MaxSessionExpiry:  time.Second, // sessions the inputs leave behind do not pile up
			TopicAliasMaximum: 10,
			MaxQoS:            &maxQoS,
			Limits:            Limits{QueuedMemory: 16 << 20, IncompletePacketTimeout: time.Second},
		})
		if err := s.Start(); err != nil {
			liveFuzz.err = err
			return
		}
		liveFuzz.srv = s
	})
	return liveFuzz.srv, liveFuzz.err
}

// liveFuzzRead bounds the wait for the broker's answer to one input.
const liveFuzzRead = 200 * time.Millisecond

// liveFuzzSend writes data on a new connection, ends its input side so the
// broker handles what came and closes, and reads the answer until then.
// Only a failure to connect is an error: whatever the broker does with the
// bytes is its right.
func liveFuzzSend(addr string, data []byte) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(liveFuzzRead))
	nc.Write(data) // the broker may close before taking it all
	nc.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, nc)
	return nil
}

var probeConnect, _ = packet.Append(nil, &packet.Connect{Version: packet.V311, CleanStart: true, ClientID: "probe", KeepAlive: 5}, packet.V311)

// liveFuzzProbe connects a well-behaved client and makes a PINGREQ round
// trip. Its bounds are seconds, not wiretest.Timeout: a fuzzing run makes
// hundreds of thousands of probes, and a loopback broker that needs longer
// for one is a finding.
func liveFuzzProbe(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Write(probeConnect); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(nc, ack); err != nil {
		return err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return errors.New("CONNACK " + hex.EncodeToString(ack))
	}
	if _, err := nc.Write([]byte{0xc0, 0}); err != nil {
		return err
	}
	pong := make([]byte, 2)
	if _, err := io.ReadFull(nc, pong); err != nil {
		return err
	}
	if pong[0] != 0xd0 || pong[1] != 0 {
		return errors.New("want PINGRESP, got " + hex.EncodeToString(pong))
	}
	// Reset rather than close: a socket in TIME_WAIT for each of hundreds
	// of thousands of probes would use up the loopback ports.
	nc.(*net.TCPConn).SetLinger(0)
	return nil
}

// liveFuzzSeeds are whole conversations, valid for MQTT 3.1.1 and 5, and
// malformed ones.
func liveFuzzSeeds() [][]byte {
	seq := func(version byte, ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = packet.Append(b, p, version); err != nil {
				panic(err)
			}
		}
		return b
	}
	raw := func(s string) []byte {
		b, err := parseWireBytes(s)
		if err != nil {
			panic(err)
		}
		return b
	}
	v5props := func(f func(p *packet.Properties)) packet.Properties {
		var p packet.Properties
		f(&p)
		return p
	}
	v3 := seq(packet.V311,
		&packet.Connect{Version: packet.V311, CleanStart: true, ClientID: "f3", KeepAlive: 30},
		&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "a/#", QoS: 2}, {Filter: "$share/g/b/+", QoS: 1}}},
		&packet.Publish{Topic: "a/b", Payload: []byte("q0")},
		&packet.Publish{Topic: "a/b", Payload: []byte("q1"), QoS: 1, PacketID: 2, Retain: true},
		&packet.Publish{Topic: "a/c", Payload: []byte("q2"), QoS: 2, PacketID: 3},
		&packet.Ack{Kind: packet.PUBREL, PacketID: 3},
		&packet.Pingreq{},
		&packet.Unsubscribe{PacketID: 4, Filters: []string{"a/#"}},
		&packet.Disconnect{})
	v3will := seq(packet.V311,
		&packet.Connect{Version: packet.V311, ClientID: "f3w", KeepAlive: 1, WillFlag: true, WillTopic: "w/3",
			WillPayload: []byte("bye"), WillQoS: 1, WillRetain: true},
		&packet.Publish{Topic: "w/3", QoS: 1, PacketID: 1, Payload: []byte("x")})
	v5 := seq(packet.V5,
		&packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "f5", KeepAlive: 30,
			Props: v5props(func(p *packet.Properties) {
				p.SessionExpiry, p.ReceiveMaximum, p.TopicAliasMaximum, p.MaximumPacketSize = 60, 10, 5, 4096
				p.Mark(packet.PropSessionExpiry)
				p.Mark(packet.PropReceiveMaximum)
				p.Mark(packet.PropTopicAliasMaximum)
				p.Mark(packet.PropMaximumPacketSize)
			})},
		&packet.Subscribe{PacketID: 1, Props: v5props(func(p *packet.Properties) { p.SubscriptionIDs = []uint32{7} }),
			Subs: []packet.Subscription{{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 1}}},
		&packet.Publish{Topic: "a/b", Payload: []byte("q0"), Props: v5props(func(p *packet.Properties) {
			p.TopicAlias, p.MessageExpiry, p.PayloadFormat = 1, 10, 1
			p.Mark(packet.PropTopicAlias)
			p.Mark(packet.PropMessageExpiry)
			p.Mark(packet.PropPayloadFormat)
		})},
		&packet.Publish{Payload: []byte("alias"), QoS: 1, PacketID: 2, Props: v5props(func(p *packet.Properties) {
			p.TopicAlias = 1
			p.Mark(packet.PropTopicAlias)
		})},
		&packet.Publish{Topic: "a/c", Payload: []byte("q2"), QoS: 2, PacketID: 3, Retain: true},
		&packet.Ack{Kind: packet.PUBREL, PacketID: 3},
		&packet.Pingreq{},
		&packet.Disconnect{Code: packet.DisconnectWithWill})
	v5will := seq(packet.V5,
		&packet.Connect{Version: packet.V5, ClientID: "f5w", KeepAlive: 1, WillFlag: true, WillTopic: "w/5",
			WillPayload: []byte("bye"), WillQoS: 2, WillProps: v5props(func(p *packet.Properties) {
				p.WillDelay = 1
				p.Mark(packet.PropWillDelay)
			})},
		&packet.Auth{Code: packet.ReAuthenticate})
	return [][]byte{
		v3, v3will, v5, v5will,
		{},
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ]`), // CONNECT only: the broker waits, then EOF
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ] 30 ff ff ff 7f`), // a 256 MiB PUBLISH declared
		raw(`10 ff ff ff 7f`), // a 256 MiB CONNECT declared
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ] 36 06 00 01 61 00 01 78`),         // QoS 3
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ] 10 [ s"MQTT" 04 02 00 3c s"x" ]`), // second CONNECT
		raw(`30 [ s"a" "before connect" ]`),
		raw(`10 [ s"MQTT" 06 02 00 3c s"x" ]`),                        // unknown protocol level
		raw(`10 [ s"MQTT" 05 02 00 3c 06 11 00 00 00 01 11 s"x" ]`),   // duplicate property
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ] 30 [ 00 02 c3 28 "x" ]`), // invalid UTF-8 topic
		raw(`10 [ s"MQTT" 04 02 00 3c s"x" ] 80 [ 00 01 s"a" 00 ]`),   // SUBSCRIBE with reserved flags
		raw(`10 [ s"MQTT" 05 c2 00 3c 00 s"x" s"u" s"p" ] f0 [ 19 00 ]`),
		raw(`ff ff ff ff ff`),
	}
}

// TestFuzzLiveSeedsAreValid keeps the valid seeds valid: a seed the broker
// refuses would stop exercising what comes after its CONNECT.
func TestFuzzLiveSeedsAreValid(t *testing.T) {
	srv := secStart(t, Options{TopicAliasMaximum: 10}, nil)
	for i, seed := range liveFuzzSeeds()[:4] {
		c := secDial(t, "tcp", srv.Addrs()[0].String(), "seed", 0)
		c.sendRaw(seed)
		c.Version = seed[8] // the protocol level byte of CONNECT
		if ack, ok := c.next().(*packet.Connack); !ok || ack.Code != packet.Success {
			t.Errorf("seed %d: CONNECT refused: %+v", i, ack)
		}
	}
}
