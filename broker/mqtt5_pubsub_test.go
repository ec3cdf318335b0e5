package broker

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// MQTT 5 publish and subscribe features that a byte-exact wire script
// (testdata/wire/v5_pubsub.txt) cannot express: a DISCONNECT whose Reason
// String is the broker's own wording, values that depend on time (Message
// Expiry), identifiers in any order, and many messages through shared
// subscriptions with Eclipse Paho clients (paho.golang for MQTT 5,
// paho.mqtt.golang for 3.1.1).

// psClient is a raw MQTT connection (a secClient, so a wiretest.Client)
// with the publish and subscribe of the MQTT 5 tests: every property and
// reason code is visible. Used from the test goroutine only.
type psClient struct {
	*secClient
}

// psConnect opens a connection and sends CONNECT; the CONNACK must accept it.
func psConnect(t *testing.T, srv *Server, c packet.Connect) (*psClient, *packet.Connack) {
	t.Helper()
	if c.Version == 0 {
		c.Version = packet.V5
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60
	}
	sc, ack := secConnect(t, srv.Addrs()[0].String(), &c)
	if ack.Code != packet.Success {
		t.Fatalf("%s: CONNACK %+v, want success", c.ClientID, ack)
	}
	return &psClient{sc}, ack
}

// psV5 is the CONNECT of an MQTT 5 client with a clean start and props.
func psV5(id string, props packet.Properties) packet.Connect {
	return packet.Connect{Version: packet.V5, CleanStart: true, ClientID: id, Props: props}
}

// sendWire sends bytes in the wire scripts' notation (see parseWireBytes),
// for packets the encoder refuses to build.
func (c *psClient) sendWire(notation string) {
	c.t.Helper()
	b, err := parseWireBytes(notation)
	if err != nil {
		c.t.Fatalf("bad wire notation %q: %v", notation, err)
	}
	c.SendRaw(b)
}

// drainUntilPong sends PINGREQ and returns the PUBLISHes that arrive before
// the PINGRESP, acknowledging none.
func (c *psClient) drainUntilPong() []*packet.Publish {
	c.t.Helper()
	return c.UntilPong(false)
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK's reason code.
func (c *psClient) publish(pid uint16, topic, payload string, props packet.Properties) packet.ReasonCode {
	c.t.Helper()
	return c.SendPublish(&packet.Publish{QoS: 1, Topic: topic, PacketID: pid, Payload: []byte(payload), Props: props})
}

func (c *psClient) subscribe(pid uint16, subID uint32, subs ...packet.Subscription) []packet.ReasonCode {
	c.t.Helper()
	s := &packet.Subscribe{PacketID: pid, Subs: subs}
	if subID != 0 {
		s.Props.SubscriptionIDs = []uint32{subID}
	}
	return c.SendSubscribe(s)
}

// disconnect sends DISCONNECT 0x00 and waits for the broker to close: by
// then the broker has released the session.
func (c *psClient) disconnect() {
	c.t.Helper()
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
}

// expectDisconnect requires a DISCONNECT with code, and then the close.
// [MQTT-4.13.1-1] [MQTT-3.14.4-1] [MQTT-3.14.4-2] [MQTT-3.14.2-2]
func (c *psClient) expectDisconnect(code packet.ReasonCode) {
	c.t.Helper()
	d := c.ExpectDisconnect(code)
	if d.Props.Has(packet.PropSessionExpiry) {
		c.t.Errorf("%s: the server's DISCONNECT carries a Session Expiry Interval", c.name)
	}
}

func psQoS(q byte) *byte { return &q }

func psPayloads(pubs []*packet.Publish) []string {
	var s []string
	for _, p := range pubs {
		s = append(s, string(p.Payload))
	}
	return s
}

// pahoV5 connects an Eclipse paho.golang client; every PUBLISH it receives
// goes to the returned channel, acknowledged by the library.
func pahoV5(t *testing.T, srv *Server, cp *paho.Connect) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.Addrs()[0].String(), wiretest.Timeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	msgs := make(chan *paho.Publish, 10000)
	c := paho.NewClient(paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			},
		},
		OnClientError: func(error) {},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil || ca.ReasonCode != 0 {
		nc.Close()
		t.Fatalf("paho.golang connect %s: %+v, %v", cp.ClientID, ca, err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-c.Done():
		case <-time.After(wiretest.Timeout):
			t.Errorf("paho.golang client %s did not shut down", cp.ClientID)
		}
	})
	return c, msgs
}

func pahoV5Subscribe(t *testing.T, c *paho.Client, opts ...paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		t.Fatalf("subscribe %+v: %v", opts, err)
	}
	for i, code := range sa.Reasons {
		if code != opts[i].QoS {
			t.Fatalf("subscribe %q: SUBACK code 0x%02x, want granted QoS %d", opts[i].Topic, code, opts[i].QoS)
		}
	}
}

func pahoV5Publish(t *testing.T, c *paho.Client, p *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return r
}

// --- Protocol violations answered with DISCONNECT ---

// Each case sends what the broker must refuse, and wants the DISCONNECT
// reason code, then the close; the statement each case breaks is tagged on
// it where MQTT 5 numbers one.
// [MQTT-4.13.1-1] v5
// [MQTT-3.14.2-1] v5
// [MQTT-3.14.2-2] v5
// [MQTT-3.14.4-1] v5
// [MQTT-3.14.4-2] v5
func TestV5PubSubViolationsDisconnect(t *testing.T) {
	big := strings.Repeat("x", 200)
	cases := []struct {
		name     string
		opts     Options
		props    packet.Properties // of the CONNECT
		announce packet.PropID     // a property CONNACK must carry, if any
		send     []string          // wire notation
		before   []string          // exact packets expected before the DISCONNECT
		code     packet.ReasonCode
	}{
		// [MQTT-3.3.2-8] v5
		// [MQTT-3.3.2-9] v5
		{name: "topic alias 0", opts: Options{TopicAliasMaximum: 5}, announce: packet.PropTopicAliasMaximum,
			send: []string{`30 [ s"t" [ 23 00 00 ] "x" ]`}, code: packet.TopicAliasInvalid},
		// [MQTT-3.2.2-17] v5
		// [MQTT-3.3.2-9] v5
		{name: "topic alias above the maximum", opts: Options{TopicAliasMaximum: 5},
			send: []string{`30 [ s"t" [ 23 00 05 ] "x" ]`, `30 [ s"t" [ 23 00 06 ] "x" ]`}, code: packet.TopicAliasInvalid},
		// [MQTT-3.2.2-18] v5
		{name: "topic alias when the broker accepts none", opts: Options{TopicAliasMaximum: -1},
			send: []string{`30 [ s"t" [ 23 00 01 ] "x" ]`}, code: packet.TopicAliasInvalid},
		{name: "topic alias never set", opts: Options{TopicAliasMaximum: 5},
			send: []string{`30 [ s"t" [ 23 00 01 ] "x" ]`, `30 [ 00 00 [ 23 00 02 ] "x" ]`}, code: packet.ProtocolError},
		{name: "empty topic and no alias", opts: Options{TopicAliasMaximum: 5},
			send: []string{`30 [ 00 00 [ ] "x" ]`}, code: packet.ProtocolError},
		// [MQTT-3.3.2-1] v5
		// [MQTT-1.5.4-1] v5
		{name: "topic name not UTF-8",
			send: []string{`30 [ 00 02 c3 28 [ ] "x" ]`}, code: packet.MalformedPacket},
		// [MQTT-1.5.4-2] v5
		{name: "topic name containing U+0000",
			send: []string{`30 [ 00 03 61 00 62 [ ] "x" ]`}, code: packet.MalformedPacket},
		// [MQTT-3.3.2-13] v5
		{name: "Response Topic not UTF-8",
			send: []string{`30 [ s"t" [ 08 00 02 c3 28 ] "x" ]`}, code: packet.MalformedPacket},
		// [MQTT-3.3.2-19] v5
		{name: "Content Type not UTF-8",
			send: []string{`30 [ s"t" [ 03 00 02 c3 28 ] "x" ]`}, code: packet.MalformedPacket},
		// [MQTT-1.5.7-1] v5
		{name: "User Property name not UTF-8 in PUBLISH",
			send: []string{`30 [ s"t" [ 26 00 02 c3 28 s"v" ] "x" ]`}, code: packet.MalformedPacket},
		// [MQTT-1.5.7-1] v5
		{name: "User Property value not UTF-8 in SUBSCRIBE",
			send: []string{`82 [ 00 01 [ 26 s"k" 00 02 c3 28 ] s"t" 00 ]`}, code: packet.MalformedPacket},
		// [MQTT-3.8.3-1] v5
		{name: "SUBSCRIBE filter not UTF-8",
			send: []string{`82 [ 00 01 [ ] 00 02 c3 28 00 ]`}, code: packet.MalformedPacket},
		// [MQTT-3.10.3-1] v5
		{name: "UNSUBSCRIBE filter not UTF-8",
			send: []string{`a2 [ 00 01 [ ] 00 02 c3 28 ]`}, code: packet.MalformedPacket},
		// [MQTT-3.3.4-6] v5
		{name: "PUBLISH with a Subscription Identifier",
			send: []string{`32 [ s"t" 00 01 [ 0b 01 ] "x" ]`}, code: packet.ProtocolError},
		// [MQTT-3.3.2-2] v5
		// [MQTT-4.7.0-1] v5
		{name: "wildcard in a PUBLISH topic",
			send: []string{`30 [ s"a/+" [ ] "x" ]`}, code: packet.TopicNameInvalid},
		// [MQTT-3.3.2-14] v5
		{name: "wildcard in a Response Topic",
			send: []string{`30 [ s"a" [ 08 s"r/#" ] "x" ]`}, code: packet.TopicNameInvalid},
		// [MQTT-3.8.3-2] v5
		{name: "SUBSCRIBE without a filter",
			send: []string{`82 [ 00 01 [ ] ]`}, code: packet.ProtocolError},
		// [MQTT-3.10.3-2] v5
		{name: "UNSUBSCRIBE without a filter",
			send: []string{`a2 [ 00 01 [ ] ]`}, code: packet.ProtocolError},
		// [MQTT-3.8.3-5] v5
		{name: "reserved subscription option bits",
			send: []string{`82 [ 00 01 [ ] s"t" 40 ]`}, code: packet.MalformedPacket},
		{name: "Retain Handling 3",
			send: []string{`82 [ 00 01 [ ] s"t" 30 ]`}, code: packet.ProtocolError},
		{name: "subscription at QoS 3",
			send: []string{`82 [ 00 01 [ ] s"t" 03 ]`}, code: packet.ProtocolError},
		{name: "Subscription Identifier 0",
			send: []string{`82 [ 00 01 [ 0b 00 ] s"t" 00 ]`}, code: packet.ProtocolError},
		{name: "two Subscription Identifiers in SUBSCRIBE",
			send: []string{`82 [ 00 01 [ 0b 01 0b 02 ] s"t" 00 ]`}, code: packet.ProtocolError},
		// [MQTT-3.2.2-11] v5
		{name: "PUBLISH above the Maximum QoS", opts: Options{MaxQoS: psQoS(1)}, announce: packet.PropMaximumQoS,
			send: []string{`34 [ s"t" 00 01 [ ] "x" ]`}, code: packet.QoSNotSupported},
		// [MQTT-3.2.2-14] v5
		{name: "retained PUBLISH when retain is not available", opts: Options{DisableRetain: true},
			announce: packet.PropRetainAvailable,
			send:     []string{`31 [ s"t" [ ] "x" ]`}, code: packet.RetainNotSupported},
		{name: "QoS 0 payload not UTF-8 though its format indicator says so",
			send: []string{`30 [ s"t" [ 01 01 ] "a" c0 80 ]`}, code: packet.PayloadFormatInvalid},
		// [MQTT-3.2.2-15] v5
		{name: "PUBLISH larger than the Maximum Packet Size", opts: Options{MaxPacketSize: 128},
			announce: packet.PropMaximumPacketSize,
			send:     []string{`30 [ s"t" [ ] "` + big + `" ]`}, code: packet.PacketTooLarge},
		// [MQTT-3.3.4-7] v5
		{name: "more QoS 2 PUBLISHes awaiting PUBREL than the Receive Maximum", opts: Options{ReceiveMaximum: 2},
			announce: packet.PropReceiveMaximum,
			send:     []string{`34 [ s"t" 00 01 [ ] "1" ]`, `34 [ s"t" 00 02 [ ] "2" ]`, `34 [ s"t" 00 03 [ ] "3" ]`},
			before:   []string{`50 03 00 01 10`, `50 03 00 02 10`}, code: packet.ReceiveMaximumExceeded},
		{name: "Subscription Identifier when they are not available", opts: Options{DisableSubscriptionIdentifiers: true},
			announce: packet.PropSubIDAvailable,
			send:     []string{`82 [ 00 01 [ 0b 01 ] s"t" 00 ]`}, code: packet.SubscriptionIdentifiersNotSupported},
		{name: "shared subscription when they are not available", opts: Options{DisableSharedSubscriptions: true},
			announce: packet.PropSharedSubAvailable,
			send:     []string{`82 [ 00 01 [ ] s"t" 00 s"$share/g/t" 00 ]`}, code: packet.SharedSubscriptionsNotSupported},
		// [MQTT-3.8.3-4] v5
		{name: "No Local on a shared subscription",
			send: []string{`82 [ 00 01 [ ] s"$share/g/t" 04 ]`}, code: packet.ProtocolError},
		// Filters that are not filters close the connection with 0x8F, a
		// DISCONNECT reason code ([MQTT-3.14.2-1]); closing on a malformed
		// packet is what [MQTT-4.13.1-1] asks.
		// [MQTT-4.8.2-1] v5
		{name: "share name missing", send: []string{`82 [ 00 01 [ ] s"$share/" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.8.2-2] v5
		{name: "share name without a filter", send: []string{`82 [ 00 01 [ ] s"$share/g" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.8.2-2] v5
		{name: "share name with +", send: []string{`82 [ 00 01 [ ] s"$share/+/x" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.8.2-2] v5
		{name: "share name with #", send: []string{`82 [ 00 01 [ ] s"$share/#/x" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.8.2-2] v5
		// [MQTT-4.7.3-1] v5
		{name: "shared subscription with an empty filter", send: []string{`82 [ 00 01 [ ] s"$share/g/" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.7.1-1] v5
		{name: "# not last", send: []string{`82 [ 00 01 [ ] s"a/#/b" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.7.1-2] v5
		{name: "+ not a whole level", send: []string{`82 [ 00 01 [ ] s"a+/b" 00 ]`}, code: packet.TopicFilterInvalid},
		// [MQTT-4.7.1-1] v5
		{name: "invalid filter in UNSUBSCRIBE", send: []string{`a2 [ 00 01 [ ] s"a/#/b" ]`}, code: packet.TopicFilterInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tc.opts)
			c, ack := psConnect(t, srv, psV5("c", tc.props))
			if tc.announce != 0 && !ack.Props.Has(tc.announce) {
				t.Errorf("CONNACK %+v does not announce property 0x%02x", ack.Props, byte(tc.announce))
			}
			for _, s := range tc.send {
				c.sendWire(s)
			}
			for _, want := range tc.before {
				wb, _ := parseWireBytes(want)
				_, raw, err := c.readRaw(wiretest.Timeout)
				if err != nil || string(raw) != string(wb) {
					t.Fatalf("want % x before the DISCONNECT, got % x (%v)", wb, raw, err)
				}
			}
			c.expectDisconnect(tc.code)
		})
	}
}

// An inbound alias lives as long as its connection: a new connection of the
// same client, session resumed, must set it again.
// [MQTT-3.3.2-7] v5
func TestV5InboundTopicAliasDoesNotOutliveConnection(t *testing.T) {
	srv := startServer(t, Options{TopicAliasMaximum: 5})
	sub, _ := psConnect(t, srv, psV5("sub", packet.Properties{}))
	sub.subscribe(1, 0, packet.Subscription{Filter: "alias/x", QoS: 1})

	cp := psV5("pub", packet.Properties{SessionExpiry: 60})
	cp.Props.Mark(packet.PropSessionExpiry)
	pub, _ := psConnect(t, srv, cp)
	pub.sendWire(`32 [ s"alias/x" 00 01 [ 23 00 01 ] "set" ]`)
	pub.nextAck(packet.PUBACK, 1)
	pub.disconnect()
	if got := sub.nextPublish(); string(got.Payload) != "set" {
		t.Fatalf("subscriber got %q, want \"set\"", got.Payload)
	}

	cp.CleanStart = false
	pub2, ack := psConnect(t, srv, cp)
	if !ack.SessionPresent {
		t.Fatalf("CONNACK %+v: want the session resumed", ack)
	}
	pub2.sendWire(`32 [ 00 00 00 02 [ 23 00 01 ] "use" ]`)
	pub2.expectDisconnect(packet.ProtocolError)
	sub.ping()
}

// A client that exceeds the broker's Receive Maximum is disconnected; another
// client's flows, and what was accepted before, are not disturbed.
// [MQTT-3.3.4-7] v5
// [MQTT-4.13.1-1] v5
func TestV5ReceiveMaximumExceededSparesOthers(t *testing.T) {
	srv := startServer(t, Options{ReceiveMaximum: 2})
	other, ack := psConnect(t, srv, psV5("other", packet.Properties{}))
	if !ack.Props.Has(packet.PropReceiveMaximum) || ack.Props.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK properties %+v: want Receive Maximum 2", ack.Props)
	}
	other.subscribe(1, 0, packet.Subscription{Filter: "rx/bad", QoS: 2})
	// other holds one QoS 2 PUBLISH of its own awaiting PUBREL throughout.
	other.send(&packet.Publish{QoS: 2, Topic: "rx/other", PacketID: 7, Payload: []byte("o1")})
	other.nextAck(packet.PUBREC, 7)

	bad, _ := psConnect(t, srv, psV5("bad", packet.Properties{}))
	for pid := uint16(1); pid <= 3; pid++ {
		bad.send(&packet.Publish{QoS: 2, Topic: "rx/bad", PacketID: pid, Payload: []byte{'0' + byte(pid)}})
	}
	bad.nextAck(packet.PUBREC, 1)
	bad.nextAck(packet.PUBREC, 2)
	bad.expectDisconnect(packet.ReceiveMaximumExceeded)

	// The first two were accepted and are delivered; the third is not.
	pubs := other.drainUntilPong()
	if got := psPayloads(pubs); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("other got %q after the offender's PUBLISHes, want [1 2]", got)
	}
	for _, p := range pubs {
		other.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		other.nextAck(packet.PUBREL, p.PacketID)
		other.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	}
	// other's own flows are untouched: a second QoS 2 PUBLISH within its
	// quota, then both released.
	other.send(&packet.Publish{QoS: 2, Topic: "rx/other", PacketID: 8, Payload: []byte("o2")})
	other.nextAck(packet.PUBREC, 8)
	other.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	other.nextAck(packet.PUBCOMP, 7)
	other.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 8})
	other.nextAck(packet.PUBCOMP, 8)
	other.ping()
}

// The send quota starts afresh with each connection: PUBLISHes re-sent on
// resuming a session count against the new connection's Receive Maximum,
// and the rest follow as acknowledgements free the slots.
// [MQTT-3.3.4-9] v5
// [MQTT-4.9.0-1] v5
// [MQTT-4.9.0-2] v5
// [MQTT-4.4.0-1] v5
func TestV5ResendWithinReceiveMaximum(t *testing.T) {
	srv := startServer(t, Options{})
	cp := psV5("sub", packet.Properties{SessionExpiry: 300})
	cp.Props.Mark(packet.PropSessionExpiry)
	sub, _ := psConnect(t, srv, cp)
	sub.subscribe(1, 0, packet.Subscription{Filter: "rs/#", QoS: 1})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
	for i, payload := range []string{"a", "b", "c"} {
		pub.publish(uint16(i+1), "rs/x", payload, packet.Properties{})
	}
	if got := psPayloads(sub.drainUntilPong()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("got %q, want [a b c]", got)
	}
	sub.disconnect() // none acknowledged

	cp.CleanStart = false
	cp.Props.ReceiveMaximum = 1
	cp.Props.Mark(packet.PropReceiveMaximum)
	sub, _ = psConnect(t, srv, cp)
	for _, want := range []string{"a", "b", "c"} {
		pubs := sub.drainUntilPong()
		if len(pubs) != 1 || string(pubs[0].Payload) != want || !pubs[0].Dup {
			t.Fatalf("with Receive Maximum 1 got %q (before acknowledging it), want %s alone, re-sent with DUP",
				psPayloads(pubs), want)
		}
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pubs[0].PacketID})
	}
	sub.ping()
}

// --- Subscription identifiers ---

// Overlapping subscriptions deliver one PUBLISH at the highest QoS carrying
// the identifiers of all matching subscriptions that have one, in any order.
// [MQTT-3.3.4-2] v5
// [MQTT-3.3.4-3] v5
// [MQTT-3.3.4-4] v5
func TestV5SubscriptionIdentifiersOverlapping(t *testing.T) {
	srv := startServer(t, Options{})
	sub, _ := psConnect(t, srv, psV5("sub", packet.Properties{}))
	sub.subscribe(1, 1, packet.Subscription{Filter: "si/+", QoS: 0})
	sub.subscribe(2, 2, packet.Subscription{Filter: "si/#", QoS: 1})
	sub.subscribe(3, 0, packet.Subscription{Filter: "si/x", QoS: 0})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))

	for i, tc := range []struct {
		topic string
		ids   []uint32
	}{
		{"si/x", []uint32{1, 2}}, // three subscriptions, two with an identifier
		{"si/y", []uint32{1, 2}},
		{"si/y/z", []uint32{2}},
	} {
		pid := uint16(i + 1)
		if code := pub.publish(pid, tc.topic, tc.topic, packet.Properties{}); code != packet.Success {
			t.Fatalf("PUBACK for %s: 0x%02x, want 0x00", tc.topic, byte(code))
		}
		pubs := sub.drainUntilPong()
		if len(pubs) != 1 {
			t.Fatalf("%s: got %d PUBLISHes %q, want one copy", tc.topic, len(pubs), psPayloads(pubs))
		}
		got := slices.Sorted(slices.Values(pubs[0].Props.SubscriptionIDs))
		if !slices.Equal(got, tc.ids) || pubs[0].QoS != 1 {
			t.Fatalf("%s: QoS %d, subscription identifiers %v; want QoS 1 and %v", tc.topic, pubs[0].QoS,
				pubs[0].Props.SubscriptionIDs, tc.ids)
		}
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pubs[0].PacketID})
	}
}

// --- Message Expiry ---

// A message that waits in the broker is forwarded with the interval minus
// the wait, and not at all once it has expired. Expiry is counted in whole
// seconds, so each subtest waits once, about 1.1s, for a one-second interval
// to pass: no event marks it. The subtests run in parallel and share that
// wait.
// [MQTT-3.3.2-5] v5
// [MQTT-3.3.2-6] v5
func TestV5MessageExpiry(t *testing.T) {
	setExpiry := func(secs uint32) packet.Properties {
		p := packet.Properties{MessageExpiry: secs}
		p.Mark(packet.PropMessageExpiry)
		return p
	}
	// waitPast waits until one second after t0, plus a margin.
	waitPast := func(t0 time.Time) {
		timer := time.NewTimer(time.Until(t0.Add(time.Second + 100*time.Millisecond)))
		defer timer.Stop()
		<-timer.C
	}
	expiryOf := func(p *packet.Publish) (uint32, bool) {
		return p.Props.MessageExpiry, p.Props.Has(packet.PropMessageExpiry)
	}

	t.Run("queued", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{})
		cp := psV5("sub", packet.Properties{SessionExpiry: 300})
		cp.Props.Mark(packet.PropSessionExpiry)
		sub, _ := psConnect(t, srv, cp)
		sub.subscribe(1, 0, packet.Subscription{Filter: "exp/#", QoS: 1})
		pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))

		// Online: forwarded at once, with at most the interval sent.
		pub.publish(1, "exp/live", "live", setExpiry(60))
		live := sub.nextPublish()
		if v, ok := expiryOf(live); !ok || v < 59 || v > 60 {
			t.Fatalf("live message: Message Expiry Interval %d (present %v), want 59 or 60", v, ok)
		}
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: live.PacketID})
		sub.disconnect()

		// Offline: queued.
		pub.publish(2, "exp/short", "short", setExpiry(1))
		sent := time.Now() // after the broker accepted "short"
		pub.publish(3, "exp/long", "long", setExpiry(3))
		pub.publish(4, "exp/none", "none", packet.Properties{})
		waitPast(sent)

		cp.CleanStart = false
		sub, ack := psConnect(t, srv, cp)
		if !ack.SessionPresent {
			t.Fatalf("CONNACK %+v: want the session resumed", ack)
		}
		pubs := sub.drainUntilPong()
		if got := psPayloads(pubs); !slices.Equal(got, []string{"long", "none"}) {
			t.Fatalf("after reconnecting got %q, want [long none]: the expired message must not be sent", got)
		}
		if v, ok := expiryOf(pubs[0]); !ok || v < 1 || v > 2 {
			t.Errorf("message published with interval 3 and delivered over 1s later: interval %d (present %v), want 1 or 2",
				v, ok)
		}
		if v, ok := expiryOf(pubs[1]); ok {
			t.Errorf("message published without an interval was delivered with interval %d", v)
		}
	})

	// [MQTT-4.3.3-7] v5
	// [MQTT-4.4.0-1] v5
	t.Run("in flight", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{})
		cp := psV5("sub", packet.Properties{SessionExpiry: 300})
		cp.Props.Mark(packet.PropSessionExpiry)
		sub, _ := psConnect(t, srv, cp)
		sub.subscribe(1, 0, packet.Subscription{Filter: "exp/#", QoS: 2})
		pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))

		// Onward delivery has begun once sent: expiry no longer applies.
		pub.publish(1, "exp/q1", "q1", setExpiry(1))
		sent := time.Now()
		pub.send(&packet.Publish{QoS: 2, Topic: "exp/q2", PacketID: 2, Payload: []byte("q2"), Props: setExpiry(1)})
		pub.nextAck(packet.PUBREC, 2)
		pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
		pub.nextAck(packet.PUBCOMP, 2)
		first := sub.drainUntilPong()
		if got := psPayloads(first); !slices.Equal(got, []string{"q1", "q2"}) {
			t.Fatalf("got %q, want [q1 q2]", got)
		}
		sub.disconnect() // without acknowledging either
		waitPast(sent)

		cp.CleanStart = false
		sub, _ = psConnect(t, srv, cp)
		again := sub.drainUntilPong()
		if got := psPayloads(again); !slices.Equal(got, []string{"q1", "q2"}) {
			t.Fatalf("after reconnecting got %q, want q1 and q2 re-sent though their interval passed", got)
		}
		for i, p := range again {
			if !p.Dup || p.PacketID != first[i].PacketID {
				t.Errorf("%s re-sent with DUP %v and packet id %d, want DUP and id %d", p.Payload, p.Dup,
					p.PacketID, first[i].PacketID)
			}
		}
	})

	// The broker as QoS 2 receiver: the message expires while it waits for
	// its only subscriber, before the publisher's PUBREL; the handshake
	// still completes, and the message is not delivered.
	// [MQTT-4.3.3-13] v5
	t.Run("receiver", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{})
		cp := psSession("sub", 300)
		sub, _ := psConnect(t, srv, cp)
		sub.subscribe(1, 0, packet.Subscription{Filter: "exp/#", QoS: 2})
		sub.disconnect()
		pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
		pub.send(&packet.Publish{QoS: 2, Topic: "exp/q2", PacketID: 7, Payload: []byte("q2"), Props: setExpiry(1)})
		if a := pub.nextAck(packet.PUBREC, 7); a.Code != packet.Success {
			t.Fatalf("PUBREC 0x%02x, want 0x00", byte(a.Code))
		}
		waitPast(time.Now())
		pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
		if a := pub.nextAck(packet.PUBCOMP, 7); a.Code != packet.Success {
			t.Fatalf("PUBCOMP 0x%02x after the message expired, want 0x00: the handshake completes", byte(a.Code))
		}
		cp.CleanStart = false
		sub, _ = psConnect(t, srv, cp)
		if got := sub.drainUntilPong(); len(got) != 0 {
			t.Fatalf("the subscriber got %q, want nothing: the message expired", psPayloads(got))
		}
	})

	t.Run("retained", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{})
		pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
		pub.send(&packet.Publish{QoS: 1, Retain: true, Topic: "ret/short", PacketID: 1, Payload: []byte("short"), Props: setExpiry(1)})
		pub.nextAck(packet.PUBACK, 1)
		sent := time.Now()
		pub.send(&packet.Publish{QoS: 1, Retain: true, Topic: "ret/long", PacketID: 2, Payload: []byte("long"), Props: setExpiry(3)})
		pub.nextAck(packet.PUBACK, 2)
		pub.send(&packet.Publish{QoS: 1, Retain: true, Topic: "ret/none", PacketID: 3, Payload: []byte("none")})
		pub.nextAck(packet.PUBACK, 3)

		retained := func(c *psClient) map[string]*packet.Publish {
			c.subscribe(1, 0, packet.Subscription{Filter: "ret/#", QoS: 0})
			got := map[string]*packet.Publish{}
			for _, p := range c.drainUntilPong() {
				if !p.Retain {
					t.Errorf("%s sent on subscribe without RETAIN", p.Topic)
				}
				got[p.Topic] = p
			}
			return got
		}

		before := retained(func() *psClient { c, _ := psConnect(t, srv, psV5("before", packet.Properties{})); return c }())
		for topic, max := range map[string]uint32{"ret/short": 1, "ret/long": 3} {
			p := before[topic]
			if p == nil {
				t.Fatalf("before expiry, a new subscriber got %v, want ret/short, ret/long, ret/none", slices.Collect(mapKeys(before)))
			}
			if v, ok := expiryOf(p); !ok || v < 1 || v > max {
				t.Errorf("%s before expiry: interval %d (present %v), want 1..%d", topic, v, ok, max)
			}
		}
		if p := before["ret/none"]; p == nil || p.Props.Has(packet.PropMessageExpiry) {
			t.Errorf("ret/none before expiry: %+v, want it without an interval", p)
		}

		waitPast(sent)
		after := retained(func() *psClient { c, _ := psConnect(t, srv, psV5("after", packet.Properties{})); return c }())
		if after["ret/short"] != nil || after["ret/long"] == nil || after["ret/none"] == nil || len(after) != 2 {
			t.Fatalf("after ret/short expired, a new subscriber got %v, want ret/long and ret/none", slices.Collect(mapKeys(after)))
		}
		if v, ok := expiryOf(after["ret/long"]); !ok || v < 1 || v > 2 {
			t.Errorf("ret/long (interval 3) over 1s later: interval %d (present %v), want 1 or 2", v, ok)
		}
	})
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// --- Maximum Packet Size towards the client ---

// A message larger than the client's Maximum Packet Size is not sent, and
// is then treated as delivered: not queued, not re-sent on reconnection.
// [MQTT-3.1.2-24] v5
// [MQTT-3.1.2-25] v5
func TestV5MaximumPacketSizeTowardsClient(t *testing.T) {
	srv := startServer(t, Options{})
	cp := psV5("sub", packet.Properties{SessionExpiry: 300, MaximumPacketSize: 64})
	cp.Props.Mark(packet.PropSessionExpiry)
	cp.Props.Mark(packet.PropMaximumPacketSize)
	sub, _ := psConnect(t, srv, cp)
	sub.subscribe(1, 0, packet.Subscription{Filter: "mps/#", QoS: 1})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))

	big := strings.Repeat("b", 200)
	pub.publish(1, "mps/big", big, packet.Properties{})
	pub.send(&packet.Publish{QoS: 0, Topic: "mps/big0", Payload: []byte(big)})
	pub.publish(2, "mps/small", "small", packet.Properties{})

	p, raw, err := sub.readRaw(wiretest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if pp, ok := p.(*packet.Publish); !ok || pp.Topic != "mps/small" {
		t.Fatalf("got %s % x, want the small PUBLISH only", p.Type(), raw)
	}
	if len(raw) > 64 {
		t.Fatalf("PUBLISH of %d bytes sent to a client with Maximum Packet Size 64", len(raw))
	}
	sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.(*packet.Publish).PacketID})
	sub.ping()

	// The oversized QoS 1 message is gone for good.
	sub.disconnect()
	cp.CleanStart = false
	sub, ack := psConnect(t, srv, cp)
	if !ack.SessionPresent {
		t.Fatalf("CONNACK %+v: want the session resumed", ack)
	}
	if pubs := sub.drainUntilPong(); len(pubs) != 0 {
		t.Fatalf("after reconnecting got %q, want nothing: the oversized message counts as delivered", psPayloads(pubs))
	}
	pub.publish(3, "mps/small", "again", packet.Properties{})
	if p := sub.nextPublish(); string(p.Payload) != "again" {
		t.Fatalf("got %q, want \"again\"", p.Payload)
	}
}

// A message in flight from an earlier connection that is too large for the
// client's new Maximum Packet Size is not re-sent, and is then as good as
// delivered: it must not hold a slot of the new Receive Maximum forever.
// [MQTT-3.1.2-25] v5
// [MQTT-3.3.4-9] v5
func TestV5MaximumPacketSizeOnResend(t *testing.T) {
	srv := startServer(t, Options{})
	cp := psV5("sub", packet.Properties{SessionExpiry: 300})
	cp.Props.Mark(packet.PropSessionExpiry)
	sub, _ := psConnect(t, srv, cp)
	sub.subscribe(1, 0, packet.Subscription{Filter: "mps/#", QoS: 1})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
	pub.publish(1, "mps/big", strings.Repeat("b", 200), packet.Properties{})
	if p := sub.nextPublish(); p.Topic != "mps/big" {
		t.Fatalf("got %s, want mps/big", p.Topic)
	}
	sub.disconnect() // without acknowledging it

	cp.CleanStart = false
	cp.Props.MaximumPacketSize, cp.Props.ReceiveMaximum = 64, 1
	cp.Props.Mark(packet.PropMaximumPacketSize)
	cp.Props.Mark(packet.PropReceiveMaximum)
	sub, _ = psConnect(t, srv, cp)
	if pubs := sub.drainUntilPong(); len(pubs) != 0 {
		t.Fatalf("after reconnecting with Maximum Packet Size 64 got %d PUBLISHes %q, want none", len(pubs), psPayloads(pubs))
	}
	pub.publish(2, "mps/small", "small", packet.Properties{})
	p, raw, err := sub.readRaw(wiretest.Timeout)
	if err != nil {
		t.Fatalf("want the small message: it must not wait behind the dropped one (%v)", err)
	}
	if pp, ok := p.(*packet.Publish); !ok || pp.Topic != "mps/small" {
		t.Fatalf("got %s % x, want the small PUBLISH", p.Type(), raw)
	}
}

// --- Forwarding between MQTT 5 and 3.1.1 clients (Eclipse Paho) ---

// Properties reach an MQTT 5 subscriber as sent, and a 3.1.1 subscriber gets
// the same message without them; a 3.1.1 publisher's message reaches an
// MQTT 5 subscriber with no properties.
// [MQTT-3.3.2-4] v5
// [MQTT-3.3.2-15] v5
// [MQTT-3.3.2-16] v5
// [MQTT-3.3.2-17] v5
// [MQTT-3.3.2-18] v5
// [MQTT-3.3.2-20] v5
// [MQTT-3.3.2-6] v5
func TestV5PahoForwardingMixedVersions(t *testing.T) {
	srv := startServer(t, Options{})
	sub5, in5 := pahoV5(t, srv, &paho.Connect{ClientID: "sub5", CleanStart: true})
	pahoV5Subscribe(t, sub5, paho.SubscribeOptions{Topic: "fw/#", QoS: 1})
	in3 := newInbox()
	sub3 := pahoConnect(t, pahoOptions(t, srv, "sub3"))
	wait(t, sub3.Subscribe("fw/v5", 1, in3.handler), "subscribe")
	pub5, _ := pahoV5(t, srv, &paho.Connect{ClientID: "pub5", CleanStart: true})

	format, expiry := byte(1), uint32(60)
	sent := &paho.Publish{
		QoS: 1, Topic: "fw/v5", Payload: []byte("grüße"),
		Properties: &paho.PublishProperties{
			PayloadFormat:   &format,
			MessageExpiry:   &expiry,
			ContentType:     "text/plain; charset=utf-8",
			ResponseTopic:   "fw/reply/1",
			CorrelationData: []byte{0, 1, 0xfe, 0xff},
			User: paho.UserProperties{
				{Key: "k", Value: "1"}, {Key: "a", Value: "b"}, {Key: "k", Value: "2"}, {Key: "k", Value: "1"},
			},
		},
	}
	if r := pahoV5Publish(t, pub5, sent); r.ReasonCode != 0 {
		t.Fatalf("PUBACK reason 0x%02x, want 0x00", r.ReasonCode)
	}

	got := psNextPaho(t, in5)
	gp, sp := got.Properties, sent.Properties
	switch {
	case got.Topic != sent.Topic || string(got.Payload) != string(sent.Payload) || got.QoS != 1:
		t.Errorf("MQTT 5 subscriber got %s %q QoS %d, want %s %q QoS 1", got.Topic, got.Payload, got.QoS, sent.Topic, sent.Payload)
	case gp == nil:
		t.Fatalf("MQTT 5 subscriber got no properties")
	case gp.PayloadFormat == nil || *gp.PayloadFormat != 1:
		t.Errorf("Payload Format Indicator %v, want 1", gp.PayloadFormat)
	case gp.ContentType != sp.ContentType || gp.ResponseTopic != sp.ResponseTopic ||
		string(gp.CorrelationData) != string(sp.CorrelationData):
		t.Errorf("content type %q, response topic %q, correlation data % x; want %q, %q, % x",
			gp.ContentType, gp.ResponseTopic, gp.CorrelationData, sp.ContentType, sp.ResponseTopic, sp.CorrelationData)
	case !slices.Equal(gp.User, sp.User):
		t.Errorf("user properties %v, want %v in that order", gp.User, sp.User)
	case gp.MessageExpiry == nil || *gp.MessageExpiry == 0 || *gp.MessageExpiry > 60:
		t.Errorf("Message Expiry Interval %v, want 1..60", gp.MessageExpiry)
	case gp.TopicAlias != nil || gp.SubscriptionIdentifier != nil:
		t.Errorf("unexpected topic alias %v or subscription identifier %v", gp.TopicAlias, gp.SubscriptionIdentifier)
	}

	m := in3.next(t)
	if m.Topic() != "fw/v5" || string(m.Payload()) != "grüße" || m.Qos() != 1 || m.Retained() {
		t.Errorf("3.1.1 subscriber got %s %q QoS %d retained %v, want fw/v5 \"grüße\" QoS 1",
			m.Topic(), m.Payload(), m.Qos(), m.Retained())
	}

	pub3 := pahoConnect(t, pahoOptions(t, srv, "pub3"))
	wait(t, pub3.Publish("fw/v3", 1, false, "plain"), "publish")
	got = psNextPaho(t, in5)
	if got.Topic != "fw/v3" || string(got.Payload) != "plain" || got.QoS != 1 || got.Retain {
		t.Fatalf("MQTT 5 subscriber got %s %q QoS %d retain %v, want fw/v3 \"plain\" QoS 1", got.Topic, got.Payload,
			got.QoS, got.Retain)
	}
	if p := got.Properties; p != nil && (p.PayloadFormat != nil || p.MessageExpiry != nil || p.ContentType != "" ||
		p.ResponseTopic != "" || p.CorrelationData != nil || len(p.User) > 0) {
		t.Errorf("a 3.1.1 publisher's message arrived with properties %+v", p)
	}
}

func psNextPaho(t *testing.T, in chan *paho.Publish) *paho.Publish {
	t.Helper()
	select {
	case p := <-in:
		return p
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no message within %v", wiretest.Timeout)
		return nil
	}
}

// --- Shared subscriptions ---

// psTally counts messages received by name, from several goroutines.
type psTally struct {
	mu     sync.Mutex
	byName map[string]map[string]int // member → payload → times received
	cond   *sync.Cond
}

func newTally() *psTally {
	tl := &psTally{byName: map[string]map[string]int{}}
	tl.cond = sync.NewCond(&tl.mu)
	return tl
}

func (tl *psTally) add(name, payload string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.byName[name] == nil {
		tl.byName[name] = map[string]int{}
	}
	tl.byName[name][payload]++
	tl.cond.Broadcast()
}

// waitFor waits until ok holds, or fails the test after wiretest.Timeout.
func (tl *psTally) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	timer := time.AfterFunc(wiretest.Timeout, func() {
		tl.mu.Lock()
		tl.cond.Broadcast()
		tl.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(wiretest.Timeout)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; received %v", what, wiretest.Timeout, tl.countsLocked())
		}
		tl.cond.Wait()
	}
}

func (tl *psTally) countsLocked() map[string]int {
	n := map[string]int{}
	for name, m := range tl.byName {
		for _, c := range m {
			n[name] += c
		}
	}
	return n
}

// checkOnce fails unless each of the n payloads prefix0..prefix(n-1) was
// received exactly once across names. It returns each member's count.
func (tl *psTally) checkOnce(t *testing.T, prefix string, n int, names ...string) map[string]int {
	t.Helper()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	per := map[string]int{}
	for i := range n {
		p := fmt.Sprintf("%s%d", prefix, i)
		total := 0
		for _, name := range names {
			c := tl.byName[name][p]
			total += c
			per[name] += c
		}
		if total != 1 {
			t.Errorf("message %s received %d times by %v, want exactly once", p, total, names)
		}
	}
	return per
}

func (tl *psTally) v5(name string, in chan *paho.Publish) {
	go func() {
		for p := range in {
			tl.add(name, string(p.Payload))
		}
	}()
}

func (tl *psTally) v3(name string) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) { tl.add(name, string(m.Payload())) }
}

// sentinel publishes payload on topic and waits until every named client
// has received it: each had every earlier message delivered to it by then,
// as the broker keeps the order on each connection. [MQTT-4.6.0-6]
func (tl *psTally) sentinel(t *testing.T, pub *paho.Client, topic, payload string, names ...string) {
	t.Helper()
	pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(payload)})
	tl.waitFor(t, "sentinel "+payload, func() bool {
		for _, name := range names {
			if tl.byName[name][payload] == 0 {
				return false
			}
		}
		return true
	})
}

// Three members of one group, MQTT 5 and 3.1.1 clients, share 300 messages:
// each message goes to exactly one of them, all are delivered, the load is
// balanced and each member gets the QoS it was granted. Another group on the
// same filter and a normal subscriber each get every message.
// [MQTT-4.8.2-1] v5
// [MQTT-4.8.2-2] v5
// [MQTT-4.8.2-3] v5
// [MQTT-4.5.0-1] v5
func TestV5SharedSubscriptionDistributes(t *testing.T) {
	srv := startServer(t, Options{})
	tl := newTally()
	const n = 300
	const filter = "$share/g/sh/+"

	qos := map[string]byte{"m1": 1, "m2": 1, "m3": 0, "h1": 1, "plain": 1}
	var wrongQoS sync.Map // member → a QoS it got other than the granted one
	for _, name := range []string{"m1", "m2", "h1"} {
		c, in := pahoV5(t, srv, &paho.Connect{ClientID: name, CleanStart: true})
		checked := make(chan *paho.Publish, cap(in))
		go func() {
			defer close(checked)
			for p := range in {
				if string(p.Payload) != "end" && p.QoS != qos[name] {
					wrongQoS.Store(name, p.QoS)
				}
				checked <- p
			}
		}()
		tl.v5(name, checked)
		f := filter
		if name == "h1" {
			f = "$share/h/sh/+"
		}
		pahoV5Subscribe(t, c, paho.SubscribeOptions{Topic: f, QoS: 1}, paho.SubscribeOptions{Topic: "sh-end", QoS: 1})
	}
	m3 := pahoConnect(t, pahoOptions(t, srv, "m3"))
	wait(t, m3.SubscribeMultiple(map[string]byte{filter: 0, "sh-end": 1}, func(c mqtt.Client, m mqtt.Message) {
		if string(m.Payload()) != "end" && m.Qos() != qos["m3"] {
			wrongQoS.Store("m3", m.Qos())
		}
		tl.v3("m3")(c, m)
	}), "subscribe")
	plain := pahoConnect(t, pahoOptions(t, srv, "plain"))
	wait(t, plain.SubscribeMultiple(map[string]byte{"sh/+": 1, "sh-end": 1}, tl.v3("plain")), "subscribe")

	pub, _ := pahoV5(t, srv, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i := range n {
		r := pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: "sh/t", Payload: []byte(fmt.Sprintf("m%d", i))})
		if r.ReasonCode != 0 {
			t.Fatalf("PUBACK %d: reason 0x%02x, want 0x00", i, r.ReasonCode)
		}
	}
	tl.sentinel(t, pub, "sh-end", "end", "m1", "m2", "m3", "h1", "plain")

	per := tl.checkOnce(t, "m", n, "m1", "m2", "m3")
	for _, name := range []string{"m1", "m2", "m3"} {
		if per[name] < n/5 {
			t.Errorf("member %s got %d of %d messages, want at least %d: %v", name, per[name], n, n/5, per)
		}
	}
	tl.checkOnce(t, "m", n, "h1")
	tl.checkOnce(t, "m", n, "plain")
	wrongQoS.Range(func(k, v any) bool {
		t.Errorf("member %v got a message at QoS %v, want its granted QoS %d", k, v, qos[k.(string)])
		return true
	})
}

// A member that disconnects leaves the group: the others get every later
// message.
// [MQTT-4.8.2-3] v5
// [MQTT-4.5.0-1] v5
func TestV5SharedSubscriptionMemberLeaves(t *testing.T) {
	srv := startServer(t, Options{})
	tl := newTally()
	for _, name := range []string{"m1", "m2"} {
		c, in := pahoV5(t, srv, &paho.Connect{ClientID: name, CleanStart: true})
		tl.v5(name, in)
		pahoV5Subscribe(t, c, paho.SubscribeOptions{Topic: "$share/g/lv/x", QoS: 1}, paho.SubscribeOptions{Topic: "lv-end", QoS: 1})
	}
	leaver, _ := psConnect(t, srv, psV5("leaver", packet.Properties{}))
	leaver.subscribe(1, 0, packet.Subscription{Filter: "$share/g/lv/x", QoS: 0})
	pub, _ := pahoV5(t, srv, &paho.Connect{ClientID: "pub", CleanStart: true})

	const first, second = 30, 60
	for i := range first {
		pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: "lv/x", Payload: []byte(fmt.Sprintf("a%d", i))})
	}
	for _, p := range leaver.drainUntilPong() {
		tl.add("leaver", string(p.Payload))
	}
	tl.sentinel(t, pub, "lv-end", "end1", "m1", "m2")
	per := tl.checkOnce(t, "a", first, "m1", "m2", "leaver")
	if per["leaver"] == 0 {
		t.Fatalf("the third member got none of %d messages: %v", first, per)
	}

	leaver.disconnect()
	for i := range second {
		pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: "lv/x", Payload: []byte(fmt.Sprintf("b%d", i))})
	}
	tl.sentinel(t, pub, "lv-end", "end2", "m1", "m2")
	tl.checkOnce(t, "b", second, "m1", "m2")
}

// A member whose queue is full is passed over for the next, and an offline
// member (session kept) is passed over while another is online: no message
// is lost or given twice. (§4.8.2 leaves the choice of member to the server.)
// [MQTT-4.5.0-1] v5
// [MQTT-4.8.2-3] v5
func TestV5SharedSubscriptionSkipsMembers(t *testing.T) {
	t.Run("full queue", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{MaxQueuedMessages: 1})
		tl := newTally()
		// full takes one message in flight (Receive Maximum 1) and one queued,
		// and does not acknowledge.
		cp := psV5("full", packet.Properties{ReceiveMaximum: 1})
		cp.Props.Mark(packet.PropReceiveMaximum)
		full, _ := psConnect(t, srv, cp)
		full.subscribe(1, 0, packet.Subscription{Filter: "$share/g/fq/x", QoS: 1})
		other, in := pahoV5(t, srv, &paho.Connect{ClientID: "other", CleanStart: true})
		tl.v5("other", in)
		pahoV5Subscribe(t, other, paho.SubscribeOptions{Topic: "$share/g/fq/x", QoS: 1}, paho.SubscribeOptions{Topic: "fq-end", QoS: 1})
		pub, _ := pahoV5(t, srv, &paho.Connect{ClientID: "pub", CleanStart: true})

		const n = 20
		for i := range n {
			r := pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: "fq/x", Payload: []byte(fmt.Sprintf("q%d", i))})
			if r.ReasonCode != 0 {
				t.Fatalf("PUBACK %d: reason 0x%02x, want 0x00: the message must go to the other member", i, r.ReasonCode)
			}
		}
		inflight := full.drainUntilPong()
		if len(inflight) != 1 {
			t.Fatalf("member with Receive Maximum 1 got %d PUBLISHes, want 1", len(inflight))
		}
		tl.add("full", string(inflight[0].Payload))
		full.send(&packet.Ack{Kind: packet.PUBACK, PacketID: inflight[0].PacketID})
		for _, p := range full.drainUntilPong() { // what was queued
			tl.add("full", string(p.Payload))
			full.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
		tl.sentinel(t, pub, "fq-end", "end", "other")
		per := tl.checkOnce(t, "q", n, "full", "other")
		if per["full"] > 2 {
			t.Errorf("the member with a one-message queue took %d messages, want at most 2", per["full"])
		}
	})

	t.Run("offline member", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, Options{})
		tl := newTally()
		cp := psV5("away", packet.Properties{SessionExpiry: 300})
		cp.Props.Mark(packet.PropSessionExpiry)
		away, _ := psConnect(t, srv, cp)
		away.subscribe(1, 0, packet.Subscription{Filter: "$share/g/off/x", QoS: 1})
		away.disconnect()
		online, in := pahoV5(t, srv, &paho.Connect{ClientID: "online", CleanStart: true})
		tl.v5("online", in)
		pahoV5Subscribe(t, online, paho.SubscribeOptions{Topic: "$share/g/off/x", QoS: 1}, paho.SubscribeOptions{Topic: "off-end", QoS: 1})
		pub, _ := pahoV5(t, srv, &paho.Connect{ClientID: "pub", CleanStart: true})

		const n = 10
		for i := range n {
			pahoV5Publish(t, pub, &paho.Publish{QoS: 1, Topic: "off/x", Payload: []byte(fmt.Sprintf("o%d", i))})
		}
		tl.sentinel(t, pub, "off-end", "end", "online")
		tl.checkOnce(t, "o", n, "online")

		cp.CleanStart = false
		away, ack := psConnect(t, srv, cp)
		if !ack.SessionPresent {
			t.Fatalf("CONNACK %+v: want the session resumed", ack)
		}
		if pubs := away.drainUntilPong(); len(pubs) != 0 {
			t.Fatalf("the offline member got %q on return, want nothing: the online member took them", psPayloads(pubs))
		}
	})
}

// A member that refuses a message with PUBACK 0x80 or more has it
// discarded: it is not offered to another member.
// [MQTT-4.8.2-6] v5
func TestV5SharedSubscriptionRejectedIsNotRerouted(t *testing.T) {
	srv := startServer(t, Options{})
	a, _ := psConnect(t, srv, psV5("a", packet.Properties{}))
	a.subscribe(1, 0, packet.Subscription{Filter: "$share/g/rj/x", QoS: 1})
	b, _ := psConnect(t, srv, psV5("b", packet.Properties{}))
	b.subscribe(1, 0, packet.Subscription{Filter: "$share/g/rj/x", QoS: 1})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
	pub.publish(1, "rj/x", "once", packet.Properties{})

	got := map[string][]*packet.Publish{"a": a.drainUntilPong(), "b": b.drainUntilPong()}
	if len(got["a"])+len(got["b"]) != 1 {
		t.Fatalf("a got %q, b got %q; want the message at exactly one member", psPayloads(got["a"]), psPayloads(got["b"]))
	}
	for name, c := range map[string]*psClient{"a": a, "b": b} {
		for _, p := range got[name] {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID, Code: packet.ImplementationSpecificError})
		}
	}
	for name, c := range map[string]*psClient{"a": a, "b": b} {
		if pubs := c.drainUntilPong(); len(pubs) != 0 {
			t.Errorf("%s got %q after the message was refused, want nothing", name, psPayloads(pubs))
		}
	}
}

// psSession is the CONNECT of an MQTT 5 client whose session outlives its
// connection by expiry seconds (0: it ends with the connection).
func psSession(id string, expiry uint32) packet.Connect {
	cp := psV5(id, packet.Properties{SessionExpiry: expiry})
	cp.Props.Mark(packet.PropSessionExpiry)
	return cp
}

// psOneHolder drains a and b and returns the one that received exactly one
// PUBLISH, with it, and the other, which must have received nothing.
func psOneHolder(t *testing.T, a, b *psClient) (holder, other *psClient, p *packet.Publish) {
	t.Helper()
	ga, gb := a.drainUntilPong(), b.drainUntilPong()
	switch {
	case len(ga) == 1 && len(gb) == 0:
		return a, b, ga[0]
	case len(gb) == 1 && len(ga) == 0:
		return b, a, gb[0]
	}
	t.Fatalf("a got %q, b got %q; want the message at exactly one member", psPayloads(ga), psPayloads(gb))
	return nil, nil, nil
}

// A QoS 2 delivery to a member that is cut off by a disconnect stays with
// that member: the other member is not given it, and the member finishes
// it when it returns: the PUBLISH again with DUP if it had not answered,
// the PUBREL again if it had sent PUBREC.
// [MQTT-4.8.2-4] v5
func TestV5SharedQoS2StaysWithItsMember(t *testing.T) {
	for _, answered := range []bool{false, true} {
		t.Run(fmt.Sprintf("PUBREC sent %v", answered), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, Options{})
			cps := map[*psClient]packet.Connect{}
			var members []*psClient
			for _, id := range []string{"a", "b"} {
				cp := psSession(id, 300)
				c, _ := psConnect(t, srv, cp)
				c.subscribe(1, 0, packet.Subscription{Filter: "$share/g/s2/x", QoS: 2})
				cps[c] = cp
				members = append(members, c)
			}
			pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
			pub.send(&packet.Publish{QoS: 2, Topic: "s2/x", PacketID: 1, Payload: []byte("once")})
			pub.nextAck(packet.PUBREC, 1)
			pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
			pub.nextAck(packet.PUBCOMP, 1)

			holder, other, p := psOneHolder(t, members[0], members[1])
			if p.QoS != 2 || p.Dup {
				t.Fatalf("%s got QoS %d DUP %v, want QoS 2 and DUP 0", holder.name, p.QoS, p.Dup)
			}
			if answered {
				holder.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				holder.nextAck(packet.PUBREL, p.PacketID)
			}
			holder.disconnect() // session kept
			if got := other.drainUntilPong(); len(got) != 0 {
				t.Fatalf("%s got %q after %s disconnected mid-flow, want nothing", other.name, psPayloads(got), holder.name)
			}

			cp := cps[holder]
			cp.CleanStart = false
			back, ack := psConnect(t, srv, cp)
			if !ack.SessionPresent {
				t.Fatalf("%s: CONNACK %+v, want the session resumed", back.name, ack)
			}
			if answered {
				back.nextAck(packet.PUBREL, p.PacketID)
			} else {
				again := back.nextPublish()
				if !again.Dup || again.PacketID != p.PacketID || string(again.Payload) != "once" {
					t.Fatalf("%s on its return got %q id %d DUP %v, want %q again with id %d and DUP", back.name,
						again.Payload, again.PacketID, again.Dup, "once", p.PacketID)
				}
				back.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				back.nextAck(packet.PUBREL, p.PacketID)
			}
			back.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			back.ping()
			other.ping()
		})
	}
}

// A QoS 2 delivery to a member whose session then ends is not given to
// another member.
// [MQTT-4.8.2-5] v5
func TestV5SharedQoS2NotMovedWhenItsSessionEnds(t *testing.T) {
	srv := startServer(t, Options{})
	var members []*psClient
	for _, id := range []string{"a", "b"} {
		c, _ := psConnect(t, srv, psSession(id, 0))
		c.subscribe(1, 0, packet.Subscription{Filter: "$share/g/s5/x", QoS: 2})
		members = append(members, c)
	}
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
	pub.send(&packet.Publish{QoS: 2, Topic: "s5/x", PacketID: 1, Payload: []byte("once")})
	pub.nextAck(packet.PUBREC, 1)
	pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	pub.nextAck(packet.PUBCOMP, 1)

	holder, other, _ := psOneHolder(t, members[0], members[1])
	holder.disconnect() // its session ends with the connection
	if got := other.drainUntilPong(); len(got) != 0 {
		t.Fatalf("%s got %q after %s's session ended mid-flow, want nothing", other.name, psPayloads(got), holder.name)
	}
	back, ack := psConnect(t, srv, psSession(holder.name, 0))
	if ack.SessionPresent {
		t.Fatalf("%s: CONNACK %+v, want no session", back.name, ack)
	}
	back.ping()
}

// A client that matches through a shared and a non-shared subscription
// gets one copy through each, and each copy carries its own subscription's
// identifier and no other.
// [MQTT-3.3.4-5] v5
func TestV5SubscriptionIdentifierPerCopy(t *testing.T) {
	srv := startServer(t, Options{})
	sub, _ := psConnect(t, srv, psV5("sub", packet.Properties{}))
	sub.subscribe(1, 3, packet.Subscription{Filter: "$share/g/pc/x", QoS: 1})
	sub.subscribe(2, 4, packet.Subscription{Filter: "pc/+", QoS: 1})
	sub.subscribe(3, 0, packet.Subscription{Filter: "$share/h/pc/#", QoS: 1})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))
	if code := pub.publish(1, "pc/x", "m", packet.Properties{}); code != packet.Success {
		t.Fatalf("PUBACK 0x%02x, want 0x00", byte(code))
	}
	var got []string
	for _, p := range sub.drainUntilPong() {
		got = append(got, fmt.Sprint(p.Props.SubscriptionIDs))
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	slices.Sort(got)
	if want := []string{"[3]", "[4]", "[]"}; !slices.Equal(got, want) {
		t.Fatalf("copies carry subscription identifiers %v, want one copy each with %v", got, want)
	}
	sub.ping()
}

// One publisher's messages reach a subscriber in the order they were
// published, per topic and QoS, none lost and none doubled: 300 messages
// over two topics at QoS 0, 1 and 2, sent without waiting for
// acknowledgements.
// [MQTT-4.6.0-5] v5
// [MQTT-4.6.0-6] v5
// [MQTT-4.2.0-1] v5
func TestV5OrderedTopics(t *testing.T) {
	srv := startServer(t, Options{})
	sub, _ := psConnect(t, srv, psV5("sub", packet.Properties{}))
	sub.subscribe(1, 0, packet.Subscription{Filter: "ord/+", QoS: 2})
	pub, _ := psConnect(t, srv, psV5("pub", packet.Properties{}))

	const n = 300
	for i := range n {
		p := &packet.Publish{Topic: fmt.Sprint("ord/", i%2), QoS: byte(i % 3), Payload: []byte(fmt.Sprint(i))}
		if p.QoS > 0 {
			p.PacketID = uint16(i + 1)
		}
		pub.send(p)
	}
	// The publisher's acknowledgements: PUBACK, or PUBREC then PUBCOMP.
	for acked := 0; acked < n/3*2; {
		a, ok := pub.next().(*packet.Ack)
		switch {
		case !ok || a.Code != packet.Success:
			t.Fatalf("publisher got %+v, want a successful acknowledgement", a)
		case a.Kind == packet.PUBREC:
			pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: a.PacketID})
		case a.Kind == packet.PUBACK || a.Kind == packet.PUBCOMP:
			acked++
		}
	}

	last := map[string]int{} // topic and QoS → the last number received
	seen := map[int]bool{}
	released := 0 // QoS 2 flows the broker has released
	for len(seen) < n || released < n/3 {
		switch p := sub.next().(type) {
		case *packet.Publish:
			i, err := strconv.Atoi(string(p.Payload))
			if err != nil || seen[i] || p.QoS != byte(i%3) {
				t.Fatalf("got %q at QoS %d: not one of the messages sent, or sent twice", p.Payload, p.QoS)
			}
			seen[i] = true
			key := fmt.Sprint(p.Topic, " QoS ", p.QoS)
			if prev, ok := last[key]; ok && prev > i {
				t.Fatalf("%s: message %d arrived after %d", key, i, prev)
			}
			last[key] = i
			if r := wiretest.Reply(p); r != nil {
				sub.send(r)
			}
		case *packet.Ack:
			if p.Kind != packet.PUBREL {
				t.Fatalf("subscriber got %s %+v", p.Kind, p)
			}
			sub.send(wiretest.Reply(p))
			released++
		default:
			t.Fatalf("subscriber got %s %+v", p.Type(), p)
		}
	}
	if len(last) != 6 {
		t.Errorf("messages arrived on %d topic and QoS pairs, want 6: %v", len(last), last)
	}
	sub.ping()
}
