// Package packet is MQTT's wire format for protocol levels 3 (MQTT 3.1,
// "MQIsdp"), 4 (3.1.1) and 5 (5.0): the fourteen control packets, MQTT 5
// properties and reason codes, and their encoding and decoding.
//
// It does no I/O and holds no broker logic. Decoding is strict: anything the
// specifications call malformed or a protocol error is refused with an *Error
// carrying the MQTT 5 reason code a server would answer with.
//
// Decoded packets alias the decoder's input and the Decoder's own storage: a
// packet, its strings and its byte slices are valid only until the next call
// to Decode on the same Decoder. Copy what you keep.
package packet

// Type is a control packet type, the high nibble of the first byte.
type Type byte

// The control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15 // MQTT 5 only
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "INVALID"
}

// Protocol levels, as carried in CONNECT.
const (
	V31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 byte = 4 // MQTT 3.1.1
	V5   byte = 5 // MQTT 5.0
)

// MaxRemainingLength is the largest value a four-byte variable byte integer holds.
const MaxRemainingLength = 268435455

// Packet is any decoded or to-be-encoded control packet. The concrete types
// are *Connect, *Connack, *Publish, *Ack, *Subscribe, *Suback, *Unsubscribe,
// *Unsuback, *Pingreq, *Pingresp, *Disconnect and *Auth.
type Packet interface {
	Type() Type
}

// FixedHeader is the first byte and the remaining length of a packet.
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // length of the variable header and payload
}

// Connect is CONNECT. Version selects the protocol name on encoding:
// "MQIsdp" for V31, "MQTT" otherwise.
type Connect struct {
	Version byte
	// Bridge: the client set the top bit of the protocol level (0x84 for
	// 3.1.1), as Mosquitto's bridges do by default (try_private) to ask
	// not to be sent their own messages back. Version holds the level
	// without the bit.
	Bridge       bool
	CleanStart   bool // Clean Session in 3.1.1
	KeepAlive    uint16
	ClientID     string
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
	WillFlag     bool
	WillQoS      byte
	WillRetain   bool
	WillTopic    string
	WillPayload  []byte
	WillProps    Properties // MQTT 5 will properties
	Props        Properties
}

// Connack is CONNACK. Code is the 3.1.1 return code or the MQTT 5 reason code.
type Connack struct {
	SessionPresent bool
	Code           ReasonCode
	Props          Properties
}

// Publish is PUBLISH.
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string // may be empty in MQTT 5 when a Topic Alias stands in for it
	PacketID uint16 // zero at QoS 0
	Props    Properties
	Payload  []byte
}

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP: they share one shape.
// In MQTT 5 an omitted reason code means Success, and it is omitted again on
// encoding when Code is Success and Props is empty.
type Ack struct {
	Kind     Type // PUBACK, PUBREC, PUBREL or PUBCOMP
	PacketID uint16
	Code     ReasonCode
	Props    Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options.
// The MQTT 5 options are zero for earlier protocol levels.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0: send retained on subscribe, 1: only if new, 2: never
}

// Subscribe is SUBSCRIBE.
type Subscribe struct {
	PacketID uint16
	Props    Properties
	Subs     []Subscription
}

// Suback is SUBACK: one granted QoS or reason code per requested filter.
type Suback struct {
	PacketID uint16
	Props    Properties
	Codes    []ReasonCode
}

// Unsubscribe is UNSUBSCRIBE.
type Unsubscribe struct {
	PacketID uint16
	Props    Properties
	Filters  []string
}

// Unsuback is UNSUBACK. Before MQTT 5 it carries only the packet id.
type Unsuback struct {
	PacketID uint16
	Props    Properties
	Codes    []ReasonCode
}

// Pingreq is PINGREQ.
type Pingreq struct{}

// Pingresp is PINGRESP.
type Pingresp struct{}

// Disconnect is DISCONNECT. Before MQTT 5 it carries nothing.
type Disconnect struct {
	Code  ReasonCode
	Props Properties
}

// Auth is AUTH (MQTT 5 only).
type Auth struct {
	Code  ReasonCode
	Props Properties
}

func (*Connect) Type() Type     { return CONNECT }
func (*Connack) Type() Type     { return CONNACK }
func (*Publish) Type() Type     { return PUBLISH }
func (a *Ack) Type() Type       { return a.Kind }
func (*Subscribe) Type() Type   { return SUBSCRIBE }
func (*Suback) Type() Type      { return SUBACK }
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }
func (*Unsuback) Type() Type    { return UNSUBACK }
func (*Pingreq) Type() Type     { return PINGREQ }
func (*Pingresp) Type() Type    { return PINGRESP }
func (*Disconnect) Type() Type  { return DISCONNECT }
func (*Auth) Type() Type        { return AUTH }
