package packet

import (
	"bytes"
	"reflect"
	"testing"
)

// withProps returns p with the Present bits of the given singular properties set.
func withProps(p Properties, ids ...PropID) Properties {
	for _, id := range ids {
		p.Mark(id)
	}
	return p
}

type roundTrip struct {
	name string
	v    byte
	p    Packet
	wire []byte // the expected encoding, from the spec's layouts; nil to check the round trip only
}

// roundTrips covers every packet type at every protocol level it exists in.
var roundTrips = []roundTrip{
	// CONNECT
	{"connect minimal", V311, &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "abc"},
		hx("10 0f 0004 4d515454 04 02 003c 0003 616263")},
	{"connect 3.1 MQIsdp", V31, &Connect{Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "abc"},
		hx("10 11 0006 4d5149736470 03 02 003c 0003 616263")},
	{"connect empty client id", V311, &Connect{Version: V311, CleanStart: true}, nil},
	{"connect will and credentials", V311, &Connect{Version: V311, KeepAlive: 10, ClientID: "c",
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte{0, 1, 2},
		WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: "w", WillPayload: []byte("gone")},
		pk(0x10, s("MQTT"), 4, 0xF4, u16(10), s("c"), s("w"), s("gone"), s("user"), u16(3), 0, 1, 2)},
	{"connect 3.1 will and credentials", V31, &Connect{Version: V31, ClientID: "c",
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
		WillFlag: true, WillQoS: 1, WillTopic: "w"}, nil}, // an empty will payload decodes as nil
	{"connect v5 everything", V5, &Connect{Version: V5, CleanStart: true, KeepAlive: 30, ClientID: "c1",
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
		WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "w/t", WillPayload: []byte("bye"),
		WillProps: withProps(Properties{WillDelay: 10, PayloadFormat: 1}, PropWillDelay, PropPayloadFormat),
		Props: withProps(Properties{SessionExpiry: 3600, ReceiveMaximum: 100,
			User: []UserProperty{{"k", "v"}}}, PropSessionExpiry, PropReceiveMaximum)},
		hx(`10 36 0004 4d515454 05 ee 001e
			0f 11 00000e10 21 0064 26 0001 6b 0001 76
			0002 6331
			07 01 01 18 0000000a
			0003 772f74 0003 627965 0001 75 0001 70`)},
	{"connect v5 password without user name", V5, &Connect{Version: V5, ClientID: "c",
		PasswordFlag: true, Password: []byte("token")}, nil},
	{"connect v5 all connect properties", V5, &Connect{Version: V5, ClientID: "c",
		Props: withProps(Properties{SessionExpiry: 1, ReceiveMaximum: 2, MaximumPacketSize: 3,
			TopicAliasMaximum: 4, RequestResponseInfo: 1, RequestProblemInfo: 0, AuthMethod: "m",
			AuthData: []byte{9}, User: []UserProperty{{"a", "1"}, {"a", "2"}}},
			PropSessionExpiry, PropReceiveMaximum, PropMaximumPacketSize, PropTopicAliasMaximum,
			PropRequestResponseInfo, PropRequestProblemInfo, PropAuthMethod, PropAuthData)}, nil},
	{"connect v5 all will properties", V5, &Connect{Version: V5, ClientID: "c", WillFlag: true,
		WillTopic: "t", WillPayload: []byte("x"),
		WillProps: withProps(Properties{WillDelay: 5, PayloadFormat: 0, MessageExpiry: 6, ContentType: "ct",
			ResponseTopic: "rt", CorrelationData: []byte("cd"), User: []UserProperty{{"u", ""}}},
			PropWillDelay, PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
			PropCorrelationData)}, nil},

	// CONNACK
	{"connack session present", V311, &Connack{SessionPresent: true}, hx("20 02 01 00")},
	{"connack refused", V311, &Connack{Code: ConnRefusedNotAuthorized}, hx("20 02 00 05")},
	{"connack 3.1", V31, &Connack{Code: ConnRefusedIdentifierRejected}, hx("20 02 00 02")},
	{"connack v5 properties", V5, &Connack{Props: withProps(Properties{TopicAliasMaximum: 10,
		AssignedClientID: "auto-1", ReceiveMaximum: 20},
		PropTopicAliasMaximum, PropAssignedClientID, PropReceiveMaximum)},
		hx("20 12 00 00 0f 12 0006 6175746f2d31 21 0014 22 000a")},
	{"connack v5 refused", V5, &Connack{Code: BadUserNameOrPassword}, hx("20 03 00 86 00")},
	{"connack v5 all properties", V5, &Connack{SessionPresent: true, Props: withProps(Properties{
		SessionExpiry: 1, ReceiveMaximum: 2, MaximumQoS: 1, RetainAvailable: 0, MaximumPacketSize: 5,
		AssignedClientID: "id", TopicAliasMaximum: 7, ReasonString: "ok", WildcardSubAvailable: 1,
		SubIDAvailable: 0, SharedSubAvailable: 1, ServerKeepAlive: 60, ResponseInfo: "ri",
		ServerReference: "other:1883", AuthMethod: "m", AuthData: []byte{1},
		User: []UserProperty{{"x", "y"}}},
		PropSessionExpiry, PropReceiveMaximum, PropMaximumQoS, PropRetainAvailable, PropMaximumPacketSize,
		PropAssignedClientID, PropTopicAliasMaximum, PropReasonString, PropWildcardSubAvailable,
		PropSubIDAvailable, PropSharedSubAvailable, PropServerKeepAlive, PropResponseInfo,
		PropServerReference, PropAuthMethod, PropAuthData)}, nil},

	// PUBLISH
	{"publish qos 0", V311, &Publish{Topic: "a/b", Payload: []byte("hi")}, hx("30 07 0003 612f62 6869")},
	{"publish qos 1 dup retain", V311, &Publish{Dup: true, QoS: 1, Retain: true, Topic: "a/b", PacketID: 10,
		Payload: []byte("hi")}, hx("3b 09 0003 612f62 000a 6869")},
	{"publish empty payload", V311, &Publish{QoS: 2, Topic: "x", PacketID: 65535}, hx("34 05 0001 78 ffff")},
	{"publish 3.1", V31, &Publish{QoS: 1, Topic: "x", PacketID: 1, Payload: []byte("p")}, nil},
	{"publish two-byte remaining length", V311, &Publish{Topic: "t", Payload: bytes.Repeat([]byte{7}, 300)},
		append(hx("30 af 02 0001 74"), bytes.Repeat([]byte{7}, 300)...)},
	{"publish v5 no properties", V5, &Publish{Topic: "a", Payload: []byte("b")}, hx("30 05 0001 61 00 62")},
	{"publish v5 properties", V5, &Publish{QoS: 2, Topic: "t", PacketID: 0x1234, Payload: []byte("{}"),
		Props: withProps(Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: "json", ResponseTopic: "r",
			CorrelationData: []byte("id"), TopicAlias: 5, SubscriptionIDs: []uint32{1, 200},
			User: []UserProperty{{"a", "b"}}},
			PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData,
			PropTopicAlias)},
		hx(`34 2e 0001 74 1234 26
			01 01 02 0000003c 03 0004 6a736f6e 08 0001 72 09 0002 6964
			0b 01 0b c801 23 0005 26 0001 61 0001 62
			7b7d`)},
	{"publish v5 topic alias instead of topic", V5, &Publish{Payload: []byte("x"),
		Props: withProps(Properties{TopicAlias: 7}, PropTopicAlias)}, hx("30 07 0000 03 230007 78")},
	{"publish v5 byte order mark kept", V5, &Publish{Topic: "\uFEFFa", Payload: nil}, hx("30 07 0004 efbbbf61 00")},

	// PUBACK, PUBREC, PUBREL, PUBCOMP
	{"puback", V311, &Ack{Kind: PUBACK, PacketID: 1}, hx("40 02 0001")},
	{"pubrec", V311, &Ack{Kind: PUBREC, PacketID: 2}, hx("50 02 0002")},
	{"pubrel", V311, &Ack{Kind: PUBREL, PacketID: 3}, hx("62 02 0003")},
	{"pubcomp", V311, &Ack{Kind: PUBCOMP, PacketID: 4}, hx("70 02 0004")},
	{"puback 3.1", V31, &Ack{Kind: PUBACK, PacketID: 1}, hx("40 02 0001")},
	{"pubrec 3.1", V31, &Ack{Kind: PUBREC, PacketID: 9}, hx("50 02 0009")},
	{"pubrel 3.1", V31, &Ack{Kind: PUBREL, PacketID: 9}, hx("62 02 0009")},
	{"pubcomp 3.1", V31, &Ack{Kind: PUBCOMP, PacketID: 9}, hx("70 02 0009")},
	{"pubrec v5", V5, &Ack{Kind: PUBREC, PacketID: 9}, hx("50 02 0009")},
	{"pubrel v5", V5, &Ack{Kind: PUBREL, PacketID: 9}, hx("62 02 0009")},
	{"puback v5 success short form", V5, &Ack{Kind: PUBACK, PacketID: 1}, hx("40 02 0001")},
	{"puback v5 reason code only", V5, &Ack{Kind: PUBACK, PacketID: 1, Code: NoMatchingSubscribers},
		hx("40 03 0001 10")},
	{"puback v5 reason string", V5, &Ack{Kind: PUBACK, PacketID: 1, Code: NoMatchingSubscribers,
		Props: withProps(Properties{ReasonString: "no"}, PropReasonString)}, hx("40 09 0001 10 05 1f 0002 6e6f")},
	{"pubrec v5 failure", V5, &Ack{Kind: PUBREC, PacketID: 5, Code: QuotaExceeded}, hx("50 03 0005 97")},
	{"pubrel v5 not found", V5, &Ack{Kind: PUBREL, PacketID: 7, Code: PacketIdentifierNotFound}, hx("62 03 0007 92")},
	{"pubcomp v5 success with user property", V5, &Ack{Kind: PUBCOMP, PacketID: 7,
		Props: Properties{User: []UserProperty{{"k", "v"}}}}, hx("70 0b 0007 00 07 26 0001 6b 0001 76")},

	// SUBSCRIBE
	{"subscribe", V311, &Subscribe{PacketID: 10, Subs: []Subscription{{Filter: "a/+", QoS: 1}, {Filter: "#"}}},
		hx("82 0c 000a 0003 612f2b 01 0001 23 00")},
	{"subscribe 3.1", V31, &Subscribe{PacketID: 1, Subs: []Subscription{{Filter: "x", QoS: 2}}}, nil},
	{"subscribe v5 options and id", V5, &Subscribe{PacketID: 1,
		Props: Properties{SubscriptionIDs: []uint32{5}},
		Subs: []Subscription{{Filter: "$share/g/x", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
			{Filter: "y", NoLocal: true}}},
		hx("82 16 0001 02 0b05 000a 2473686172652f672f78 1a 0001 79 04")},
	{"subscribe v5 retain handling 2 and user property", V5, &Subscribe{PacketID: 2,
		Props: Properties{User: []UserProperty{{"a", "b"}}},
		Subs:  []Subscription{{Filter: "z/#", QoS: 1, RetainHandling: 2}}}, nil},

	// SUBACK
	{"suback", V311, &Suback{PacketID: 10, Codes: []ReasonCode{GrantedQoS1, Success, SubackFailure}},
		hx("90 05 000a 01 00 80")},
	{"suback 3.1", V31, &Suback{PacketID: 1, Codes: []ReasonCode{GrantedQoS2}}, nil},
	{"suback v5", V5, &Suback{PacketID: 10, Codes: []ReasonCode{GrantedQoS1, TopicFilterInvalid, Success,
		WildcardSubscriptionsNotSupported}}, hx("90 07 000a 00 01 8f 00 a2")},
	{"suback v5 reason string", V5, &Suback{PacketID: 3, Codes: []ReasonCode{NotAuthorized},
		Props: withProps(Properties{ReasonString: "acl"}, PropReasonString)}, nil},

	// UNSUBSCRIBE
	{"unsubscribe", V311, &Unsubscribe{PacketID: 11, Filters: []string{"a/b", "#"}},
		hx("a2 0a 000b 0003 612f62 0001 23")},
	{"unsubscribe 3.1", V31, &Unsubscribe{PacketID: 11, Filters: []string{"a"}}, nil},
	{"unsubscribe v5", V5, &Unsubscribe{PacketID: 11, Filters: []string{"a/b", "#"}},
		hx("a2 0b 000b 00 0003 612f62 0001 23")},
	{"unsubscribe v5 user property", V5, &Unsubscribe{PacketID: 1, Filters: []string{"$share/g/#"},
		Props: Properties{User: []UserProperty{{"k", "v"}}}}, nil},

	// UNSUBACK
	{"unsuback", V311, &Unsuback{PacketID: 11}, hx("b0 02 000b")},
	{"unsuback 3.1", V31, &Unsuback{PacketID: 11}, hx("b0 02 000b")},
	{"unsuback v5", V5, &Unsuback{PacketID: 11, Codes: []ReasonCode{NoSubscriptionExisted}}, hx("b0 04 000b 00 11")},
	{"unsuback v5 reason string", V5, &Unsuback{PacketID: 1, Codes: []ReasonCode{Success, NotAuthorized},
		Props: withProps(Properties{ReasonString: "r"}, PropReasonString)}, nil},

	// PINGREQ, PINGRESP
	{"pingreq", V311, &Pingreq{}, hx("c0 00")},
	{"pingreq 3.1", V31, &Pingreq{}, hx("c0 00")},
	{"pingreq v5", V5, &Pingreq{}, hx("c0 00")},
	{"pingresp", V311, &Pingresp{}, hx("d0 00")},
	{"pingresp 3.1", V31, &Pingresp{}, hx("d0 00")},
	{"pingresp v5", V5, &Pingresp{}, hx("d0 00")},

	// DISCONNECT
	{"disconnect", V311, &Disconnect{}, hx("e0 00")},
	{"disconnect 3.1", V31, &Disconnect{}, hx("e0 00")},
	{"disconnect v5 normal", V5, &Disconnect{}, hx("e0 00")},
	{"disconnect v5 with will", V5, &Disconnect{Code: DisconnectWithWill}, hx("e0 01 04")},
	{"disconnect v5 session expiry", V5, &Disconnect{Code: DisconnectWithWill,
		Props: withProps(Properties{}, PropSessionExpiry)}, hx("e0 07 04 05 11 00000000")},
	{"disconnect v5 server moved", V5, &Disconnect{Code: ServerMoved,
		Props: withProps(Properties{ServerReference: "b:1883", ReasonString: "bye",
			User: []UserProperty{{"a", "b"}}}, PropServerReference, PropReasonString)}, nil},

	// AUTH
	{"auth v5 success short form", V5, &Auth{}, hx("f0 00")},
	{"auth v5 continue", V5, &Auth{Code: ContinueAuthentication, Props: withProps(Properties{AuthMethod: "SCRAM",
		AuthData: []byte{1, 2}}, PropAuthMethod, PropAuthData)},
		hx("f0 0f 18 0d 15 0005 534352414d 16 0002 0102")},
	{"auth v5 re-authenticate", V5, &Auth{Code: ReAuthenticate, Props: withProps(Properties{AuthMethod: "m",
		ReasonString: "r", User: []UserProperty{{"k", "v"}}}, PropAuthMethod, PropReasonString)}, nil},
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTrips {
		t.Run(versionName(tc.v)+"/"+tc.name, func(t *testing.T) {
			got, err := Append(nil, tc.p, tc.v)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if tc.wire != nil && !bytes.Equal(got, tc.wire) {
				t.Fatalf("Append wrote\n% x\nwant\n% x", got, tc.wire)
			}
			if n := Len(tc.p, tc.v); n != len(got) {
				t.Errorf("Len = %d, Append wrote %d bytes", n, len(got))
			}
			d := Decoder{Version: tc.v}
			p, err := decodeAll(t, &d, got)
			if err != nil {
				t.Fatalf("Decode % x: %v", got, err)
			}
			if d.nonCanonical {
				t.Errorf("the encoder's own output decoded as non-canonical")
			}
			if c := Clone(p); !reflect.DeepEqual(c, tc.p) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", c, tc.p)
			}
			// Appending after existing bytes leaves them alone.
			prefix := []byte("prefix")
			again, err := Append(prefix, p, tc.v)
			if err != nil || !bytes.Equal(again[:6], []byte("prefix")) || !bytes.Equal(again[6:], got) {
				t.Fatalf("Append after a prefix: %v\n% x", err, again)
			}
		})
	}
}

// Every packet type exists at every level, except AUTH before MQTT 5.
func TestRoundTripCoversEveryTypeAndLevel(t *testing.T) {
	seen := map[[2]byte]bool{}
	for _, tc := range roundTrips {
		seen[[2]byte{byte(tc.p.Type()), tc.v}] = true
	}
	for typ := CONNECT; typ <= AUTH; typ++ {
		for _, v := range []byte{V31, V311, V5} {
			if typ == AUTH && v != V5 {
				continue
			}
			if !seen[[2]byte{byte(typ), v}] {
				t.Errorf("no round trip for %v at %s", typ, versionName(v))
			}
		}
	}
}

// [MQTT-1.5.3-3] v3.1.1
// [MQTT-1.5.4-3] v5
func TestByteOrderMarkIsKept(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		var b []byte
		if v == V5 {
			b = pk(0x30, s("\uFEFFa/\uFEFF"), 0, "x")
		} else {
			b = pk(0x30, s("\uFEFFa/\uFEFF"), "x")
		}
		d := Decoder{Version: v}
		p, err := decodeAll(t, &d, b)
		if err != nil {
			t.Fatalf("%s: %v", versionName(v), err)
		}
		if got := p.(*Publish).Topic; got != "\uFEFFa/\uFEFF" {
			t.Errorf("%s: topic %q, want the U+FEFF kept", versionName(v), got)
		}
	}
}

// Decoded strings alias the body rather than copying it, and the Decoder's
// slices are reused from one packet to the next.
func TestDecodeAliasesBody(t *testing.T) {
	b := pk(0x30, s("topic"), "payload")
	var d Decoder
	d.Version = V311
	p, err := decodeAll(t, &d, b)
	if err != nil {
		t.Fatal(err)
	}
	pub := p.(*Publish)
	copy(b[4:], "TOPIC")
	b[len(b)-1] = 'D'
	if pub.Topic != "TOPIC" || string(pub.Payload) != "payloaD" {
		t.Errorf("topic %q payload %q: want them to alias the body", pub.Topic, pub.Payload)
	}
}

func TestDecoderReusesSlices(t *testing.T) {
	d := Decoder{Version: V311}
	big := pk(0x82, u16(1), s("a"), 0, s("b"), 1, s("c"), 2)
	small := pk(0x82, u16(2), s("d"), 1)
	if _, err := decodeAll(t, &d, big); err != nil {
		t.Fatal(err)
	}
	p, err := decodeAll(t, &d, small)
	if err != nil {
		t.Fatal(err)
	}
	sub := p.(*Subscribe)
	if len(sub.Subs) != 1 || sub.Subs[0].Filter != "d" || sub.Subs[0].QoS != 1 {
		t.Fatalf("second SUBSCRIBE decoded as %+v", sub.Subs)
	}
	if cap(sub.Subs) < 3 {
		t.Errorf("Subs capacity %d: the first decode's storage was not reused", cap(sub.Subs))
	}
}

// One Decoder decodes every packet of its level in turn, forwards and then
// backwards: nothing of one packet may linger in the next of the same type.
func TestSharedDecoderLeavesNothingBehind(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		var cases []roundTrip
		for _, tc := range roundTrips {
			if tc.v == v {
				cases = append(cases, tc)
			}
		}
		for i := range cases {
			cases = append(cases, cases[len(cases)-1-i]) // forwards, then backwards
		}
		d := Decoder{Version: v}
		for _, tc := range cases {
			b, err := Append(nil, tc.p, v)
			if err != nil {
				t.Fatal(err)
			}
			p, err := decodeAll(t, &d, b)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if c := Clone(p); !reflect.DeepEqual(c, tc.p) {
				t.Fatalf("%s after other packets: decoded\n%+v\nwant\n%+v", tc.name, c, tc.p)
			}
		}
	}
}
