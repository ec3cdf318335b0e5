package packet

import (
	"strings"
	"testing"
)

// connect4 builds a 3.1.1 CONNECT with keep alive 60.
func connect4(flags int, payload ...any) []byte {
	return pk(0x10, append([]any{s("MQTT"), 4, flags, u16(60)}, payload...)...)
}

// connect5 builds an MQTT 5 CONNECT with keep alive 60 and properties p.
func connect5(flags int, p []byte, payload ...any) []byte {
	return pk(0x10, append([]any{s("MQTT"), 5, flags, u16(60), p}, payload...)...)
}

// publish5 builds an MQTT 5 QoS 0 PUBLISH to "t" with properties p.
func publish5(p []byte) []byte { return pk(0x30, s("t"), p, "x") }

type strictCase struct {
	name string
	v    byte // the Decoder's Version; a CONNECT brings its own
	b    []byte
	code ReasonCode
	why  string // a piece of the expected Reason
}

// strictCases are packets the decoder must refuse, each with the code it
// refuses them with.
var strictCases = []strictCase{
	// Strings.

	// [MQTT-1.5.3-1] v3.1.1
	{"ill-formed UTF-8", V311, pk(0x30, s("a\xc3\x28"), "x"), MalformedPacket, "UTF-8 [MQTT-1.5.3-1]"},
	// [MQTT-1.5.3-1] v3.1.1
	{"UTF-8 surrogate", V311, pk(0x30, s("\xed\xa0\x80"), "x"), MalformedPacket, "UTF-8"},
	// [MQTT-1.5.3-1] v3.1.1
	{"overlong UTF-8", V311, pk(0x30, s("\xc0\xaf"), "x"), MalformedPacket, "UTF-8"},
	// [MQTT-1.5.3-1] v3.1.1
	{"code point above U+10FFFF", V311, pk(0x30, s("\xf4\x90\x80\x80"), "x"), MalformedPacket, "UTF-8"},
	// [MQTT-1.5.3-1] v3.1.1
	{"truncated UTF-8 sequence", V311, pk(0x30, s("ab\xe2\x82"), "x"), MalformedPacket, "UTF-8"},
	// [MQTT-1.5.4-1] v5
	{"ill-formed UTF-8 v5", V5, pk(0x30, s("\xff"), 0), MalformedPacket, "UTF-8 [MQTT-1.5.4-1]"},
	// [MQTT-1.5.4-1] v5
	{"UTF-8 surrogate v5", V5, pk(0x30, s("\xed\xbf\xbf"), 0), MalformedPacket, "UTF-8"},
	// [MQTT-1.5.3-2] v3.1.1
	{"U+0000 in a string", V311, pk(0x30, s("a\x00b"), "x"), MalformedPacket, "U+0000 [MQTT-1.5.3-2]"},
	// [MQTT-1.5.4-2] v5
	{"U+0000 in a string v5", V5, pk(0x30, s("\u00e9\x00"), 0), MalformedPacket, "U+0000 [MQTT-1.5.4-2]"},
	{"string length past the end", V311, pk(0x30, u16(10), "abc"), MalformedPacket, "runs past the end"},
	{"string length cut in half", V311, pk(0x30, 0), MalformedPacket, "runs past the end"},

	// CONNECT.

	// [MQTT-3.1.2-1] v3.1.1
	// [MQTT-3.1.2-1] v5
	{"protocol name not MQTT", 0, pk(0x10, s("MQTX"), 4, 2, u16(60), s("c")), ProtocolError, "not MQTT"},
	// [MQTT-3.1.2-1] v3.1.1
	{"protocol name in lower case", 0, pk(0x10, s("mqtt"), 4, 2, u16(60), s("c")), ProtocolError, "not MQTT"},
	// [MQTT-3.1.2-2] v3.1.1
	// [MQTT-3.1.2-2] v5
	{"protocol level 6", 0, pk(0x10, s("MQTT"), 6, 2, u16(60), s("c")), UnsupportedProtocolVersion, "level 6"},
	// [MQTT-3.1.2-2] v3.1.1
	{"MQTT at level 3", 0, pk(0x10, s("MQTT"), 3, 2, u16(60), s("c")), UnsupportedProtocolVersion, "level 3"},
	// [MQTT-3.1.2-2] v3.1.1
	{"MQIsdp at level 4", 0, pk(0x10, s("MQIsdp"), 4, 2, u16(60), s("c")), UnsupportedProtocolVersion, "level 4"},
	{"CONNECT cut after the protocol name", 0, pk(0x10, s("MQTT")), MalformedPacket, "protocol level"},
	// [MQTT-3.1.2-3] v3.1.1
	{"reserved connect flag", 0, connect4(0x03, s("c")), MalformedPacket, "[MQTT-3.1.2-3]"},
	// [MQTT-3.1.2-3] v5
	{"reserved connect flag v5", 0, connect5(0x01, props(), s("c")), MalformedPacket, "[MQTT-3.1.2-3]"},
	// [MQTT-3.1.2-11] v3.1.1
	// [MQTT-3.1.2-13] v3.1.1
	{"will QoS without will flag", 0, connect4(0x0A, s("c")), MalformedPacket, "[MQTT-3.1.2-13]"},
	// [MQTT-3.1.2-11] v5
	{"will QoS without will flag v5", 0, connect5(0x12, props(), s("c")), MalformedPacket, "[MQTT-3.1.2-11]"},
	// [MQTT-3.1.2-11] v3.1.1
	// [MQTT-3.1.2-15] v3.1.1
	{"will retain without will flag", 0, connect4(0x22, s("c")), MalformedPacket, "[MQTT-3.1.2-15]"},
	// [MQTT-3.1.2-13] v5
	{"will retain without will flag v5", 0, connect5(0x22, props(), s("c")), MalformedPacket, "[MQTT-3.1.2-13]"},
	// [MQTT-3.1.2-14] v3.1.1
	{"will QoS 3", 0, connect4(0x1E, s("c"), s("w"), s("m")), MalformedPacket, "[MQTT-3.1.2-14]"},
	// [MQTT-3.1.2-12] v5
	{"will QoS 3 v5", 0, connect5(0x1E, props(), s("c"), props(), s("w"), s("m")), MalformedPacket, "[MQTT-3.1.2-12]"},
	// [MQTT-3.1.2-22] v3.1.1
	{"password without user name", 0, connect4(0x42, s("c"), s("p")), MalformedPacket, "[MQTT-3.1.2-22]"},
	{"password without user name 3.1", 0, pk(0x10, s("MQIsdp"), 3, 0x42, u16(60), s("c"), s("p")),
		MalformedPacket, "[MQTT-3.1.2-22]"},
	// [MQTT-3.1.2-9] v3.1.1
	// [MQTT-3.1.2-9] v5
	{"will flag without will topic", 0, connect4(0x06, s("c")), MalformedPacket, "will topic"},
	// [MQTT-3.1.2-9] v5
	{"will flag without will properties", 0, connect5(0x06, props(), s("c")), MalformedPacket, "will property"},
	// [MQTT-3.1.2-9] v3.1.1
	{"will flag without will payload", 0, connect4(0x06, s("c"), s("w")), MalformedPacket, "will payload"},
	// [MQTT-3.1.2-19] v3.1.1
	// [MQTT-3.1.2-17] v5
	{"user name flag without user name", 0, connect4(0x82, s("c")), MalformedPacket, "user name"},
	// [MQTT-3.1.2-21] v3.1.1
	// [MQTT-3.1.2-19] v5
	{"password flag without password", 0, connect5(0x42, props(), s("c")), MalformedPacket, "password"},
	// [MQTT-3.1.2-18] v3.1.1
	// [MQTT-3.1.2-16] v5
	{"user name without user name flag", 0, connect4(0x02, s("c"), s("u")), MalformedPacket, "unexpected bytes"},
	// [MQTT-3.1.2-20] v3.1.1
	// [MQTT-3.1.2-18] v5
	{"password without password flag", 0, connect5(0x82, props(), s("c"), s("u"), s("p")), MalformedPacket,
		"unexpected bytes"},
	// [MQTT-3.1.3-3] v3.1.1
	// [MQTT-3.1.3-3] v5
	{"no client identifier", 0, connect4(0x02), MalformedPacket, "client identifier"},
	// [MQTT-3.1.3-4] v3.1.1
	// [MQTT-3.1.3-4] v5
	{"client identifier not UTF-8", 0, connect5(0x02, props(), s("\xc3")), MalformedPacket,
		"client identifier is not well-formed UTF-8 [MQTT-1.5.4-1]"},
	// [MQTT-3.1.3-10] v3.1.1
	// [MQTT-3.1.3-11] v5
	{"will topic not UTF-8", 0, connect4(0x06, s("c"), s("\xed\xa0\x80"), s("m")), MalformedPacket, "will topic"},
	// [MQTT-3.3.2-2] v3.1.1
	{"will topic with a wildcard", 0, connect4(0x06, s("c"), s("a/#"), s("m")), TopicNameInvalid, "will topic"},
	// [MQTT-4.7.3-1] v5
	{"empty will topic", 0, connect5(0x06, props(), s("c"), props(), s(""), s("m")), TopicNameInvalid, "will topic"},
	// [MQTT-3.1.3-11] v3.1.1
	// [MQTT-3.1.3-12] v5
	{"user name not UTF-8", 0, connect5(0x82, props(), s("c"), s("\x00")), MalformedPacket, "user name"},
	{"CONNECT trailing bytes", 0, connect4(0x02, s("c"), "zz"), MalformedPacket, "unexpected bytes"},
	{"CONNECT property not allowed", 0, connect5(0x02, props(0x23, u16(1)), s("c")), MalformedPacket,
		"Topic Alias is not allowed in CONNECT"},
	{"CONNECT Authentication Data without Method", 0, connect5(0x02, props(0x16, s("d")), s("c")),
		ProtocolError, "Authentication Data"},
	{"CONNECT Session Expiry twice", 0, connect5(0x02, props(0x11, u32(1), 0x11, u32(2)), s("c")),
		ProtocolError, "more than once"},
	{"CONNECT Receive Maximum 0", 0, connect5(0x02, props(0x21, u16(0)), s("c")), ProtocolError, "Receive Maximum is 0"},
	{"CONNECT Maximum Packet Size 0", 0, connect5(0x02, props(0x27, u32(0)), s("c")), ProtocolError,
		"Maximum Packet Size is 0"},
	{"CONNECT Request Problem Information 2", 0, connect5(0x02, props(0x17, 2), s("c")), ProtocolError, "0 or 1"},
	{"CONNECT Request Response Information 2", 0, connect5(0x02, props(0x19, 2), s("c")), ProtocolError, "0 or 1"},
	{"will property not allowed", 0, connect5(0x06, props(), s("c"), props(0x11, u32(1)), s("w"), s("m")),
		MalformedPacket, "Session Expiry Interval is not allowed in will"},
	// [MQTT-3.3.2-14] v5
	{"will Response Topic with a wildcard", 0, connect5(0x06, props(), s("c"), props(0x08, s("r/+")), s("w"),
		s("m")), TopicNameInvalid, "Response Topic"},
	// [MQTT-1.5.7-1] v5
	{"user property name not UTF-8", 0, connect5(0x02, props(0x26, s("\xc0\x80"), s("v")), s("c")),
		MalformedPacket, "User Property name"},
	// [MQTT-1.5.7-1] v5
	{"user property value with U+0000", 0, connect5(0x02, props(0x26, s("k"), s("\x00")), s("c")),
		MalformedPacket, "User Property value"},

	// CONNACK.

	// [MQTT-3.2.2-1] v5
	{"CONNACK reserved flags", V5, pk(0x20, 0x02, 0, props()), MalformedPacket, "[MQTT-3.2.2-1]"},
	{"CONNACK reserved flags 3.1.1", V311, pk(0x20, 0x80, 0), MalformedPacket, "reserved"},
	// [MQTT-3.2.2-4] v3.1.1
	{"CONNACK session present with a refusal", V311, pk(0x20, 1, 5), ProtocolError, "[MQTT-3.2.2-4]"},
	// [MQTT-3.2.2-6] v5
	{"CONNACK session present with a refusal v5", V5, pk(0x20, 1, 0x87, props()), ProtocolError, "[MQTT-3.2.2-6]"},
	{"CONNACK return code 6", V311, pk(0x20, 0, 6), ProtocolError, "reason code 0x06"},
	// [MQTT-3.2.2-8] v5
	{"CONNACK 3.1.1 code in MQTT 5", V5, pk(0x20, 0, 1, props()), ProtocolError, "reason code 0x01"},
	{"CONNACK v5 without properties", V5, pk(0x20, 0, 0), MalformedPacket, "property length"},
	{"CONNACK 3.1.1 too long", V311, pk(0x20, 0, 0, 0), MalformedPacket, "unexpected bytes"},
	{"CONNACK property not allowed", V5, pk(0x20, 0, 0, props(0x17, 1)), MalformedPacket, "not allowed in CONNACK"},
	{"CONNACK Maximum QoS 2", V5, pk(0x20, 0, 0, props(0x24, 2)), ProtocolError, "Maximum QoS must be 0 or 1"},
	{"CONNACK Retain Available 2", V5, pk(0x20, 0, 0, props(0x25, 2)), ProtocolError, "0 or 1"},
	{"CONNACK Wildcard Subscription Available 2", V5, pk(0x20, 0, 0, props(0x28, 2)), ProtocolError, "0 or 1"},
	{"CONNACK Subscription Identifier Available 2", V5, pk(0x20, 0, 0, props(0x29, 2)), ProtocolError, "0 or 1"},
	{"CONNACK Shared Subscription Available 2", V5, pk(0x20, 0, 0, props(0x2A, 2)), ProtocolError, "0 or 1"},
	{"CONNACK Server Keep Alive twice", V5, pk(0x20, 0, 0, props(0x13, u16(1), 0x13, u16(1))), ProtocolError,
		"more than once"},

	// PUBLISH.

	// [MQTT-3.3.2-2] v3.1.1
	{"topic name with +", V311, pk(0x30, s("a/+"), "x"), TopicNameInvalid, "[MQTT-3.3.2-2]"},
	// [MQTT-3.3.2-2] v5
	{"topic name with #", V5, pk(0x30, s("#"), 0, "x"), TopicNameInvalid, "[MQTT-3.3.2-2]"},
	// [MQTT-4.7.3-1] v3.1.1
	{"empty topic name", V311, pk(0x30, s(""), "x"), TopicNameInvalid, "empty"},
	{"empty topic name v5 without Topic Alias", V5, pk(0x30, s(""), 0, "x"), ProtocolError, "no Topic Alias"},
	// [MQTT-2.3.1-1] v3.1.1
	{"QoS 1 packet identifier 0", V311, pk(0x32, s("t"), u16(0), "x"), ProtocolError, "[MQTT-2.3.1-1]"},
	// [MQTT-2.2.1-3] v5
	{"QoS 2 packet identifier 0", V5, pk(0x34, s("t"), u16(0), 0, "x"), ProtocolError, "[MQTT-2.2.1-3]"},
	{"QoS 1 without packet identifier", V311, pk(0x32, s("t"), 1), MalformedPacket, "packet identifier"},
	// [MQTT-3.3.2-8] v5
	{"Topic Alias 0", V5, publish5(props(0x23, u16(0))), TopicAliasInvalid, "[MQTT-3.3.2-8]"},
	{"Subscription Identifier 0", V5, publish5(props(0x0B, 0)), ProtocolError, "Subscription Identifier is 0"},
	// [MQTT-1.5.5-1] v5
	{"Subscription Identifier not in shortest form", V5, publish5(props(0x0B, 0x81, 0x00)), MalformedPacket,
		"[MQTT-1.5.5-1]"},
	{"property length past the end", V5, pk(0x30, s("t"), 9, 1, 1), MalformedPacket, "run past the end"},
	{"property value past the property length", V5, pk(0x30, s("t"), 2, 0x02, 0, 0, 0, 0), MalformedPacket,
		"Message Expiry Interval runs past the end"},
	// [MQTT-1.5.5-1] v5
	{"property length not in shortest form", V5, pk(0x30, s("t"), 0x80, 0x00), MalformedPacket, "[MQTT-1.5.5-1]"},
	{"unknown property identifier", V5, publish5(props(0x04, 0)), MalformedPacket, "unknown property identifier 0x04"},
	{"property identifier above 0x7f", V5, publish5(props(0x81, 0x01, 0)), MalformedPacket, "unknown property"},
	{"PUBLISH property not allowed", V5, publish5(props(0x11, u32(0))), MalformedPacket,
		"Session Expiry Interval is not allowed in PUBLISH"},
	{"Payload Format Indicator 2", V5, publish5(props(0x01, 2)), ProtocolError, "0 or 1"},
	{"Content Type twice", V5, publish5(props(0x03, s("a"), 0x03, s("a"))), ProtocolError, "more than once"},
	{"Topic Alias twice", V5, publish5(props(0x23, u16(1), 0x23, u16(2))), ProtocolError, "more than once"},
	// [MQTT-3.3.2-13] v5
	{"Response Topic not UTF-8", V5, publish5(props(0x08, s("\xc3"))), MalformedPacket, "Response Topic"},
	// [MQTT-3.3.2-14] v5
	{"Response Topic with a wildcard", V5, publish5(props(0x08, s("a/#"))), TopicNameInvalid, "[MQTT-3.3.2-14]"},
	// [MQTT-3.3.2-19] v5
	{"Content Type not UTF-8", V5, publish5(props(0x03, s("\xe0\x80\x80"))), MalformedPacket, "Content Type"},
	{"Correlation Data past the end", V5, publish5(props(0x09, u16(5), "ab")), MalformedPacket, "Correlation Data"},
	{"PUBLISH v5 without property length", V5, pk(0x30, s("t")), MalformedPacket, "property length"},

	// PUBACK, PUBREC, PUBREL, PUBCOMP.

	// [MQTT-2.3.1-6] v3.1.1
	{"PUBACK packet identifier 0", V311, pk(0x40, u16(0)), ProtocolError, "packet identifier is 0"},
	// [MQTT-2.2.1-5] v5
	{"PUBREL packet identifier 0", V5, pk(0x62, u16(0)), ProtocolError, "packet identifier is 0"},
	{"PUBACK too short", V311, pk(0x40, 1), MalformedPacket, "packet identifier runs past the end"},
	{"PUBACK 3.1.1 with a reason code", V311, pk(0x40, u16(1), 0), MalformedPacket, "unexpected bytes"},
	{"PUBCOMP 3.1 with a reason code", V31, pk(0x70, u16(1), 0), MalformedPacket, "unexpected bytes"},
	// [MQTT-3.4.2-1] v5
	{"PUBACK with a PUBREL code", V5, pk(0x40, u16(1), 0x92), ProtocolError, "PUBACK cannot carry reason code 0x92"},
	// [MQTT-3.5.2-1] v5
	{"PUBREC with a PUBREL code", V5, pk(0x50, u16(1), 0x92), ProtocolError, "PUBREC cannot carry"},
	// [MQTT-3.6.2-1] v5
	{"PUBREL with a PUBACK code", V5, pk(0x62, u16(1), 0x10), ProtocolError, "PUBREL cannot carry"},
	// [MQTT-3.7.2-1] v5
	{"PUBCOMP with a failure code", V5, pk(0x70, u16(1), 0x80), ProtocolError, "PUBCOMP cannot carry"},
	{"PUBACK property not allowed", V5, pk(0x40, u16(1), 0, props(0x23, u16(1))), MalformedPacket,
		"Topic Alias is not allowed in PUBACK"},
	{"PUBACK Reason String twice", V5, pk(0x40, u16(1), 0, props(0x1F, s("a"), 0x1F, s("b"))), ProtocolError,
		"more than once"},
	{"PUBACK trailing bytes", V5, pk(0x40, u16(1), 0, props(), 0), MalformedPacket, "unexpected bytes"},

	// SUBSCRIBE.

	// [MQTT-2.3.1-1] v3.1.1
	{"SUBSCRIBE packet identifier 0", V311, pk(0x82, u16(0), s("a"), 0), ProtocolError, "[MQTT-2.3.1-1]"},
	// [MQTT-2.2.1-3] v5
	{"SUBSCRIBE packet identifier 0 v5", V5, pk(0x82, u16(0), 0, s("a"), 0), ProtocolError, "[MQTT-2.2.1-3]"},
	// [MQTT-3.8.3-3] v3.1.1
	{"SUBSCRIBE without filters", V311, pk(0x82, u16(1)), ProtocolError, "[MQTT-3.8.3-3]"},
	// [MQTT-3.8.3-2] v5
	{"SUBSCRIBE without filters v5", V5, pk(0x82, u16(1), 0), ProtocolError, "[MQTT-3.8.3-2]"},
	// [MQTT-3.8.3-4] v3.1.1
	{"SUBSCRIBE requested QoS 3", V311, pk(0x82, u16(1), s("a"), 3), MalformedPacket, "QoS 3 [MQTT-3.8.3-4]"},
	// [MQTT-3.8.3-4] v3.1.1
	{"SUBSCRIBE reserved bits", V311, pk(0x82, u16(1), s("a"), 0x04), MalformedPacket, "reserved bits"},
	{"SUBSCRIBE 3.1 reserved bits", V31, pk(0x82, u16(1), s("a"), 0x80), MalformedPacket, "reserved bits"},
	// [MQTT-3.8.3-5] v5
	{"SUBSCRIBE reserved bits v5", V5, pk(0x82, u16(1), 0, s("a"), 0x40), MalformedPacket, "[MQTT-3.8.3-5]"},
	{"SUBSCRIBE maximum QoS 3 v5", V5, pk(0x82, u16(1), 0, s("a"), 3), ProtocolError, "QoS 3"},
	{"SUBSCRIBE Retain Handling 3", V5, pk(0x82, u16(1), 0, s("a"), 0x30), ProtocolError, "Retain Handling 3"},
	// [MQTT-3.8.3-4] v5
	{"SUBSCRIBE No Local on a shared subscription", V5, pk(0x82, u16(1), 0, s("$share/g/a"), 0x04), ProtocolError,
		"[MQTT-3.8.3-4]"},
	// [MQTT-3.8.3-1] v3.1.1
	// [MQTT-3.8.3-1] v5
	{"SUBSCRIBE filter not UTF-8", V311, pk(0x82, u16(1), s("\xc3"), 0), MalformedPacket, "topic filter"},
	// [MQTT-4.7.1-2] v3.1.1
	// [MQTT-4.7.1-1] v5
	{"SUBSCRIBE filter with # not last", V5, pk(0x82, u16(1), 0, s("a/#/b"), 0), TopicFilterInvalid, "'#'"},
	// [MQTT-4.7.1-3] v3.1.1
	// [MQTT-4.7.1-2] v5
	{"SUBSCRIBE filter with + inside a level", V311, pk(0x82, u16(1), s("a+/b"), 0), TopicFilterInvalid, "'+'"},
	// [MQTT-4.7.3-1] v3.1.1
	// [MQTT-4.7.3-1] v5
	{"SUBSCRIBE empty filter", V311, pk(0x82, u16(1), s(""), 0), TopicFilterInvalid, "empty"},
	// [MQTT-4.8.2-1] v5
	{"SUBSCRIBE shared with empty group", V5, pk(0x82, u16(1), 0, s("$share//a"), 0), TopicFilterInvalid, "group"},
	// [MQTT-4.8.2-2] v5
	{"SUBSCRIBE shared without filter", V5, pk(0x82, u16(1), 0, s("$share/g"), 0), TopicFilterInvalid, "$share"},
	// [MQTT-4.8.2-2] v5
	{"SUBSCRIBE shared group with a wildcard", V5, pk(0x82, u16(1), 0, s("$share/g+/a"), 0), TopicFilterInvalid,
		"$share"},
	{"SUBSCRIBE without options byte", V311, pk(0x82, u16(1), s("a")), MalformedPacket, "subscription options"},
	{"SUBSCRIBE two Subscription Identifiers", V5, pk(0x82, u16(1), props(0x0B, 1, 0x0B, 2), s("a"), 0),
		ProtocolError, "more than one Subscription Identifier"},
	{"SUBSCRIBE Subscription Identifier 0", V5, pk(0x82, u16(1), props(0x0B, 0), s("a"), 0), ProtocolError,
		"Subscription Identifier is 0"},
	{"SUBSCRIBE property not allowed", V5, pk(0x82, u16(1), props(0x1F, s("r")), s("a"), 0), MalformedPacket,
		"Reason String is not allowed in SUBSCRIBE"},

	// SUBACK.

	// [MQTT-3.9.3-2] v3.1.1
	{"SUBACK return code 3", V311, pk(0x90, u16(1), 3), ProtocolError, "reason code 0x03"},
	// [MQTT-3.9.3-2] v5
	{"SUBACK reason code 0x92", V5, pk(0x90, u16(1), 0, 0x92), ProtocolError, "reason code 0x92"},
	{"SUBACK 3.1.1 with an MQTT 5 code", V311, pk(0x90, u16(1), 0x87), ProtocolError, "reason code 0x87"},
	{"SUBACK without codes", V311, pk(0x90, u16(1)), ProtocolError, "no reason code"},
	// [MQTT-2.3.1-7] v3.1.1
	// [MQTT-2.2.1-6] v5
	{"SUBACK packet identifier 0", V5, pk(0x90, u16(0), 0, 0), ProtocolError, "packet identifier is 0"},

	// UNSUBSCRIBE.

	// [MQTT-3.10.3-2] v3.1.1
	// [MQTT-3.10.3-2] v5
	{"UNSUBSCRIBE without filters", V5, pk(0xA2, u16(1), 0), ProtocolError, "[MQTT-3.10.3-2]"},
	// [MQTT-3.10.3-1] v3.1.1
	// [MQTT-3.10.3-1] v5
	{"UNSUBSCRIBE filter not UTF-8", V311, pk(0xA2, u16(1), s("\xfe")), MalformedPacket, "topic filter"},
	{"UNSUBSCRIBE invalid filter", V311, pk(0xA2, u16(1), s("a/#/")), TopicFilterInvalid, "'#'"},
	// [MQTT-2.3.1-1] v3.1.1
	{"UNSUBSCRIBE packet identifier 0", V311, pk(0xA2, u16(0), s("a")), ProtocolError, "packet identifier is 0"},
	{"UNSUBSCRIBE property not allowed", V5, pk(0xA2, u16(1), props(0x0B, 1), s("a")), MalformedPacket,
		"Subscription Identifier is not allowed in UNSUBSCRIBE"},

	// UNSUBACK.

	{"UNSUBACK 3.1.1 with a code", V311, pk(0xB0, u16(1), 0), MalformedPacket, "unexpected bytes"},
	// [MQTT-3.11.3-2] v5
	{"UNSUBACK reason code 0x01", V5, pk(0xB0, u16(1), 0, 1), ProtocolError, "reason code 0x01"},
	{"UNSUBACK v5 without codes", V5, pk(0xB0, u16(1), 0), ProtocolError, "no reason code"},
	// [MQTT-2.2.1-6] v5
	{"UNSUBACK packet identifier 0", V5, pk(0xB0, u16(0), 0, 0), ProtocolError, "packet identifier is 0"},

	// PINGREQ, PINGRESP.

	{"PINGREQ with a body", V311, pk(0xC0, 0), MalformedPacket, "unexpected bytes"},
	{"PINGRESP with a body", V5, pk(0xD0, 0), MalformedPacket, "unexpected bytes"},

	// DISCONNECT.

	{"DISCONNECT 3.1.1 with a body", V311, pk(0xE0, 0), MalformedPacket, "unexpected bytes"},
	// [MQTT-3.14.2-1] v5
	{"DISCONNECT reason code 0x05", V5, pk(0xE0, 5), ProtocolError, "reason code 0x05"},
	{"DISCONNECT property not allowed", V5, pk(0xE0, 0, props(0x23, u16(1))), MalformedPacket,
		"Topic Alias is not allowed in DISCONNECT"},

	// AUTH.

	{"AUTH in 3.1.1", V311, pk(0xF0), MalformedPacket, "AUTH does not exist before MQTT 5"},
	{"AUTH in 3.1", V31, pk(0xF0, 0x18, props(0x15, s("m"))), MalformedPacket, "AUTH does not exist"},
	// [MQTT-3.15.2-1] v5
	{"AUTH reason code 0x01", V5, pk(0xF0, 1, props(0x15, s("m"))), ProtocolError, "reason code 0x01"},
	{"AUTH without Authentication Method", V5, pk(0xF0, 0x18, props(0x16, s("d"))), ProtocolError,
		"no Authentication Method"},
	{"AUTH reason code without property length", V5, pk(0xF0, 0x18), MalformedPacket, "property length"},
	{"AUTH Authentication Method twice", V5, pk(0xF0, 0x18, props(0x15, s("m"), 0x15, s("m"))), ProtocolError,
		"more than once"},

	// Order of packets.

	// [MQTT-3.1.0-1] v3.1.1
	// [MQTT-3.1.0-1] v5
	{"PUBLISH before CONNECT", 0, pk(0x30, s("t")), ProtocolError, "before CONNECT"},
}

func TestDecodeStrict(t *testing.T) {
	for _, c := range strictCases {
		t.Run(c.name, func(t *testing.T) {
			d := Decoder{Version: c.v}
			p, err := decodeAll(t, &d, c.b)
			if err == nil {
				t.Fatalf("% x decoded as %+v, want %v", c.b, p, c.code)
			}
			if got := codeOf(t, err); got != c.code {
				t.Errorf("code %v, want %v (error: %v)", got, c.code, err)
			}
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
		})
	}
}

type acceptCase struct {
	name  string
	v     byte
	b     []byte
	check func(Packet) bool
}

// acceptCases are the limits of the rules above: packets that look odd but
// that the specifications allow.
var acceptCases = []acceptCase{
	// [MQTT-3.1.2-19] v5
	{"v5 password without user name", 0, connect5(0x42, props(), s("c"), s("p")), func(p Packet) bool {
		c := p.(*Connect)
		return c.PasswordFlag && !c.UsernameFlag && string(c.Password) == "p"
	}},
	// [MQTT-3.1.3-6] v3.1.1
	// [MQTT-3.1.3-6] v5
	{"empty client identifier (the broker decides)", 0, connect4(0x02, s("")), func(p Packet) bool {
		return p.(*Connect).ClientID == ""
	}},
	// [MQTT-2.3.1-5] v3.1.1
	// [MQTT-2.2.1-2] v5
	{"QoS 0 PUBLISH has no packet identifier", V311, pk(0x30, s("t"), 0, 1, 2), func(p Packet) bool {
		pub := p.(*Publish)
		return pub.PacketID == 0 && string(pub.Payload) == "\x00\x01\x02"
	}},
	{"empty payload", V5, pk(0x31, s("t"), 0), func(p Packet) bool {
		pub := p.(*Publish)
		return len(pub.Payload) == 0 && pub.Retain
	}},
	{"PUBLISH with several Subscription Identifiers", V5, publish5(props(0x0B, 1, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F)),
		func(p Packet) bool {
			ids := p.(*Publish).Props.SubscriptionIDs
			return len(ids) == 2 && ids[0] == 1 && ids[1] == MaxRemainingLength
		}},
	{"user properties repeat and keep their order", V5, publish5(props(0x26, s("a"), s("1"), 0x26, s("a"),
		s("2"), 0x26, s("b"), s(""))), func(p Packet) bool {
		u := p.(*Publish).Props.User
		return len(u) == 3 && u[0] == UserProperty{"a", "1"} && u[1] == UserProperty{"a", "2"} &&
			u[2] == UserProperty{"b", ""}
	}},
	{"properties in any order", V5, publish5(props(0x23, u16(3), 0x01, 1)), func(p Packet) bool {
		pp := &p.(*Publish).Props
		return pp.TopicAlias == 3 && pp.PayloadFormat == 1 && pp.Has(PropTopicAlias) && pp.Has(PropPayloadFormat)
	}},
	{"PUBACK v5 remaining length 3", V5, pk(0x40, u16(1), 0x10), func(p Packet) bool {
		a := p.(*Ack)
		return a.Code == NoMatchingSubscribers && a.Props.Empty()
	}},
	{"PUBACK v5 empty property length", V5, pk(0x40, u16(1), 0x80, 0), func(p Packet) bool {
		return p.(*Ack).Code == UnspecifiedError
	}},
	{"DISCONNECT v5 reason code only", V5, pk(0xE0, 0x8E), func(p Packet) bool {
		return p.(*Disconnect).Code == SessionTakenOver
	}},
	{"AUTH v5 remaining length 0 means Success", V5, pk(0xF0), func(p Packet) bool {
		return p.(*Auth).Code == Success
	}},
	{"filter $share/... valid at 3.1.1 too", V311, pk(0x82, u16(1), s("$share/g/a/#"), 1), func(p Packet) bool {
		return p.(*Subscribe).Subs[0].Filter == "$share/g/a/#"
	}},
	{"UNSUBSCRIBE filters are not matched, only checked", V311, pk(0xA2, u16(1), s("+/+"), s("#")),
		func(p Packet) bool { return len(p.(*Unsubscribe).Filters) == 2 }},
	// [MQTT-3.3.1-4] v5
	{"PUBLISH QoS 2 with DUP and RETAIN", V5, pk(0x3D, s("t"), u16(9), 0), func(p Packet) bool {
		pub := p.(*Publish)
		return pub.Dup && pub.QoS == 2 && pub.Retain && pub.PacketID == 9
	}},
}

func TestDecodeAccepts(t *testing.T) {
	for _, c := range acceptCases {
		d := Decoder{Version: c.v}
		p, err := decodeAll(t, &d, c.b)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(p) {
			t.Errorf("%s: decoded as %+v", c.name, p)
		}
	}
}

// The caller answers a bad CONNECT in the client's protocol, so the version
// is known as soon as the protocol name and level are.
func TestConnectSetsVersionBeforeLaterErrors(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		name := "MQTT"
		if v == V31 {
			name = "MQIsdp"
		}
		d := Decoder{}
		b := pk(0x10, s(name), int(v), 0x01, u16(60), s("c")) // reserved flag set
		if _, err := decodeAll(t, &d, b); err == nil {
			t.Fatalf("%s: reserved flag accepted", versionName(v))
		}
		if d.Version != v {
			t.Errorf("%s: Version %d after a failed CONNECT", versionName(v), d.Version)
		}
	}
	d := Decoder{}
	if _, err := decodeAll(t, &d, pk(0x10, s("MQTT"), 7, 2, u16(60), s("c"))); err == nil {
		t.Fatal("level 7 accepted")
	}
	if d.Version != 0 {
		t.Errorf("an unsupported level set Version to %d", d.Version)
	}
}
