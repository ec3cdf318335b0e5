package packet

import (
	"slices"
	"strconv"
	"unsafe"
)

// maxString is the longest UTF-8 string or binary field: its length prefix
// has two bytes.
const maxString = 65535

func errEncode(reason string) error {
	return &Error{Code: MalformedPacket, Reason: "encode: " + reason}
}
func errTooLong(what string) error { return errEncode(what + " is longer than 65535 bytes") }
func errNoPacketID(t Type) error {
	return errEncode(t.String() + " needs a non-zero packet identifier")
}
func bytesAsString(b []byte) string         { return unsafe.String(unsafe.SliceData(b), len(b)) }
func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendString appends a length-prefixed string or binary field; its length
// was checked by the size pass.
func appendString(dst []byte, s string) []byte {
	return append(appendU16(dst, uint16(len(s))), s...)
}

// sizes is what the size pass of a packet learns and its write pass needs.
type sizes struct {
	rem   int // Remaining Length
	props int // length of the (variable header) properties, MQTT 5
	will  int // length of the will properties, CONNECT in MQTT 5
}

// encoder is implemented by every packet type of this package: size checks
// the packet and measures it for protocol level v, and write appends it,
// fixed header included, in one pass without moving anything.
type encoder interface {
	Packet
	size(v byte) (sizes, error)
	write(dst []byte, v byte, s sizes) []byte
}

// Append appends p, fixed header included, encoded for protocol level version
// (V31, V311 or V5). It does not allocate when dst has the capacity, and
// grows dst at most once when it does not.
//
// What the level cannot carry is left out: properties before MQTT 5, and of
// the MQTT 5 properties those p's type does not allow; they are written in
// ascending identifier order, User Properties in their order. In MQTT 5 an
// ack, DISCONNECT or AUTH takes its shortest form: no reason code when it is
// Success and there are no properties, no property length when there are
// none. Append checks what would make the bytes unencodable or invalid
// (string lengths, packet size, QoS, packet identifiers, AUTH before MQTT 5)
// but not the content of strings, which must be valid UTF-8 already. On
// error it returns dst unchanged.
func Append(dst []byte, p Packet, version byte) ([]byte, error) {
	e, s, err := measure(p, version)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, 1+varIntLen(uint32(s.rem))+s.rem)
	return e.write(dst, version, s), nil
}

// AppendPublish is Append for a PUBLISH. Called with a concrete type, it
// lets the caller keep p on its stack: the broker's per-delivery path.
func AppendPublish(dst []byte, p *Publish, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, errEncode("protocol level " + strconv.Itoa(int(version)) + " is not 3, 4 or 5")
	}
	s, err := p.size(version)
	if err != nil {
		return dst, err
	}
	if s.rem > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Reason: "encode: PUBLISH remaining length " +
			strconv.Itoa(s.rem) + " exceeds " + strconv.Itoa(MaxRemainingLength)}
	}
	dst = slices.Grow(dst, 1+varIntLen(uint32(s.rem))+s.rem)
	return p.write(dst, version, s), nil
}

// PublishHeader is a PUBLISH without properties, for the broker's hot path:
// building it costs nothing like a Publish, whose Properties are large.
type PublishHeader struct {
	Topic    string
	Payload  []byte
	QoS      byte
	PacketID uint16
	Dup      bool
	Retain   bool
	// PayloadFollows leaves the payload out of what is appended, though the
	// remaining length counts it: the caller writes it next, from where it
	// is (a big payload is not copied into every subscriber's buffer).
	PayloadFollows bool
	// Rest counts payload bytes beyond Payload, which the caller writes
	// after it: a payload whose end is not in memory (the broker's piped
	// payloads). Only with PayloadFollows; it must be 0 otherwise (not
	// checked: this is the hot path).
	Rest int
}

// AppendPublishHeader appends h as a PUBLISH with no properties (an empty
// property block in MQTT 5). The same checks as Append apply. It repeats
// Publish.size and Publish.write on purpose: sharing them as functions
// (which do not inline) cost 3 ns of this call's 9, once per delivery.
// TestAppendPublishHeaderMatchesAppend keeps the two in step.
func AppendPublishHeader(dst []byte, h *PublishHeader, version byte) ([]byte, error) {
	switch {
	case !validVersion(version):
		return dst, errEncode("protocol level " + strconv.Itoa(int(version)) + " is not 3, 4 or 5")
	case h.QoS > 2:
		return dst, errEncode("PUBLISH QoS " + strconv.Itoa(int(h.QoS)))
	case h.QoS == 0 && h.Dup:
		return dst, errEncode("PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]")
	case h.QoS > 0 && h.PacketID == 0:
		return dst, errNoPacketID(PUBLISH)
	case len(h.Topic) > maxString:
		return dst, errTooLong("topic name")
	}
	rem := 2 + len(h.Topic) + len(h.Payload) + h.Rest
	if h.QoS > 0 {
		rem += 2
	}
	if version == V5 {
		rem++ // property length 0
	}
	if rem > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Reason: "encode: PUBLISH remaining length " +
			strconv.Itoa(rem) + " exceeds " + strconv.Itoa(MaxRemainingLength)}
	}
	first := byte(PUBLISH)<<4 | h.QoS<<1
	if h.Dup {
		first |= 0x08
	}
	if h.Retain {
		first |= 0x01
	}
	grow := rem
	if h.PayloadFollows {
		grow -= len(h.Payload) + h.Rest
	}
	dst = slices.Grow(dst, 1+varIntLen(uint32(rem))+grow)
	dst = appendString(appendFixedHeader(dst, first, rem), h.Topic)
	if h.QoS > 0 {
		dst = appendU16(dst, h.PacketID)
	}
	if version == V5 {
		dst = append(dst, 0)
	}
	if h.PayloadFollows {
		return dst, nil
	}
	return append(dst, h.Payload...), nil
}

// PublishLen is Len for a PUBLISH, without making p escape to the heap:
// the broker checks each delivery against the client's Maximum Packet Size.
func PublishLen(p *Publish, version byte) int {
	if !validVersion(version) {
		return -1
	}
	s, err := p.size(version)
	if err != nil {
		return -1
	}
	return 1 + varIntLen(uint32(s.rem)) + s.rem
}

// AppendAck is Append for PUBACK, PUBREC, PUBREL and PUBCOMP, without
// making a to escape to the heap.
func AppendAck(dst []byte, a *Ack, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, errEncode("protocol level " + strconv.Itoa(int(version)) + " is not 3, 4 or 5")
	}
	s, err := a.size(version)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, 1+varIntLen(uint32(s.rem))+s.rem)
	return a.write(dst, version, s), nil
}

// AppendBareAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP without
// properties: the bytes AppendAck writes for Ack{Kind: kind, PacketID: pid,
// Code: code}, without building an Ack (whose properties make it large) or
// checking what the caller guarantees: kind is one of the four, pid is not
// 0 and version is 3, 4 or 5. A broker sends one of these for most
// messages.
func AppendBareAck(dst []byte, kind Type, pid uint16, code ReasonCode, version byte) []byte {
	if version == V5 && code != Success {
		return append(dst, firstByte(kind), 3, byte(pid>>8), byte(pid), byte(code))
	}
	return append(dst, firstByte(kind), 2, byte(pid>>8), byte(pid))
}

// Len returns the size in bytes of p encoded for protocol level version,
// fixed header included (what Maximum Packet Size limits), or -1 when p
// cannot be encoded at that level (Append says why).
func Len(p Packet, version byte) int {
	_, s, err := measure(p, version)
	if err != nil {
		return -1
	}
	return 1 + varIntLen(uint32(s.rem)) + s.rem
}

func measure(p Packet, v byte) (encoder, sizes, error) {
	if !validVersion(v) {
		return nil, sizes{}, errEncode("protocol level " + strconv.Itoa(int(v)) + " is not 3, 4 or 5")
	}
	e, ok := p.(encoder)
	if !ok {
		return nil, sizes{}, errEncode("not a packet of this package")
	}
	s, err := e.size(v)
	if err != nil {
		return nil, sizes{}, err
	}
	if s.rem > MaxRemainingLength {
		return nil, sizes{}, &Error{Code: PacketTooLarge, Reason: "encode: " + e.Type().String() +
			" remaining length " + strconv.Itoa(s.rem) + " exceeds " + strconv.Itoa(MaxRemainingLength)}
	}
	return e, s, nil
}

// propsField measures a properties field, length prefix included.
func propsField(p *Properties, mask uint64) (field, n int, err error) {
	n, err = propsLen(p, mask)
	return varIntLen(uint32(n)) + n, n, err
}

func (c *Connect) size(v byte) (sizes, error) {
	var s sizes
	if c.Version != 0 && c.Version != v {
		return s, errEncode("CONNECT of protocol level " + strconv.Itoa(int(c.Version)) +
			" encoded at level " + strconv.Itoa(int(v)))
	}
	n := 2 + len(protocolName(v)) + 1 + 1 + 2 // name, level, flags, keep alive
	if v == V5 {
		f, pl, err := propsField(&c.Props, connectProps)
		if err != nil {
			return s, err
		}
		n, s.props = n+f, pl
	}
	if len(c.ClientID) > maxString {
		return s, errTooLong("client identifier")
	}
	n += 2 + len(c.ClientID)
	if c.WillFlag {
		if c.WillQoS > 2 {
			return s, errEncode("will QoS " + strconv.Itoa(int(c.WillQoS)))
		}
		if v == V5 {
			f, pl, err := propsField(&c.WillProps, willPropsMask)
			if err != nil {
				return s, err
			}
			n, s.will = n+f, pl
		}
		if len(c.WillTopic) > maxString || len(c.WillPayload) > maxString {
			return s, errTooLong("will topic or payload")
		}
		n += 4 + len(c.WillTopic) + len(c.WillPayload)
	}
	if c.UsernameFlag {
		if len(c.Username) > maxString {
			return s, errTooLong("user name")
		}
		n += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		if v != V5 && !c.UsernameFlag {
			return s, errEncode("password without user name before MQTT 5 [MQTT-3.1.2-22]")
		}
		if len(c.Password) > maxString {
			return s, errTooLong("password")
		}
		n += 2 + len(c.Password)
	}
	s.rem = n
	return s, nil
}

func protocolName(v byte) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

func (c *Connect) write(dst []byte, v byte, s sizes) []byte {
	dst = appendFixedHeader(dst, firstByte(CONNECT), s.rem)
	level := v
	if c.Bridge {
		level |= bridgeBit
	}
	dst = append(appendString(dst, protocolName(v)), level)
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.WillFlag {
		flags |= 0x04 | c.WillQoS<<3
		if c.WillRetain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	dst = appendU16(append(dst, flags), c.KeepAlive)
	if v == V5 {
		dst = appendProps(dst, &c.Props, connectProps, s.props)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if v == V5 {
			dst = appendProps(dst, &c.WillProps, willPropsMask, s.will)
		}
		dst = appendString(dst, c.WillTopic)
		dst = appendString(dst, bytesAsString(c.WillPayload))
	}
	if c.UsernameFlag {
		dst = appendString(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendString(dst, bytesAsString(c.Password))
	}
	return dst
}

func (c *Connack) size(v byte) (sizes, error) {
	s := sizes{rem: 2}
	if v == V5 {
		f, pl, err := propsField(&c.Props, connackProps)
		if err != nil {
			return s, err
		}
		s.rem, s.props = 2+f, pl
	}
	return s, nil
}

func (c *Connack) write(dst []byte, v byte, s sizes) []byte {
	dst = appendFixedHeader(dst, firstByte(CONNACK), s.rem)
	var flags byte
	if c.SessionPresent {
		flags = 1
	}
	dst = append(dst, flags, byte(c.Code))
	if v == V5 {
		dst = appendProps(dst, &c.Props, connackProps, s.props)
	}
	return dst
}

func (p *Publish) size(v byte) (sizes, error) {
	var s sizes
	switch {
	case p.QoS > 2:
		return s, errEncode("PUBLISH QoS " + strconv.Itoa(int(p.QoS)))
	case p.QoS == 0 && p.Dup:
		return s, errEncode("PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]")
	case p.QoS > 0 && p.PacketID == 0:
		return s, errNoPacketID(PUBLISH)
	case len(p.Topic) > maxString:
		return s, errTooLong("topic name")
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		f, pl, err := propsField(&p.Props, publishProps)
		if err != nil {
			return s, err
		}
		n, s.props = n+f, pl
	}
	s.rem = n
	return s, nil
}

func (p *Publish) write(dst []byte, v byte, s sizes) []byte {
	first := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	dst = appendString(appendFixedHeader(dst, first, s.rem), p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendProps(dst, &p.Props, publishProps, s.props)
	}
	return append(dst, p.Payload...)
}

// An ack's Remaining Length tells its form in MQTT 5: 2 for Success without
// properties, 3 for a reason code without properties, more for both.
func (a *Ack) size(v byte) (sizes, error) {
	var s sizes
	if a.Kind < PUBACK || a.Kind > PUBCOMP {
		return s, errEncode("Ack of kind " + a.Kind.String())
	}
	if a.PacketID == 0 {
		return s, errNoPacketID(a.Kind)
	}
	s.rem = 2
	if v != V5 {
		return s, nil
	}
	f, pl, err := propsField(&a.Props, ackProps)
	if err != nil {
		return s, err
	}
	switch {
	case pl > 0:
		s.rem, s.props = 3+f, pl
	case a.Code != Success:
		s.rem = 3
	}
	return s, nil
}

func (a *Ack) write(dst []byte, v byte, s sizes) []byte {
	dst = appendU16(appendFixedHeader(dst, firstByte(a.Kind), s.rem), a.PacketID)
	if s.rem > 2 {
		dst = append(dst, byte(a.Code))
	}
	if s.rem > 3 {
		dst = appendProps(dst, &a.Props, ackProps, s.props)
	}
	return dst
}

func (p *Subscribe) size(v byte) (sizes, error) {
	var s sizes
	if p.PacketID == 0 {
		return s, errNoPacketID(SUBSCRIBE)
	}
	if len(p.Subs) == 0 {
		return s, errEncode("SUBSCRIBE needs at least one subscription")
	}
	n := 2
	if v == V5 {
		f, pl, err := propsField(&p.Props, subscribeProps)
		if err != nil {
			return s, err
		}
		n, s.props = n+f, pl
	}
	for i := range p.Subs {
		sub := &p.Subs[i]
		switch {
		case len(sub.Filter) > maxString:
			return s, errTooLong("topic filter")
		case sub.QoS > 2:
			return s, errEncode("subscription QoS " + strconv.Itoa(int(sub.QoS)))
		case sub.RetainHandling > 2:
			return s, errEncode("Retain Handling " + strconv.Itoa(int(sub.RetainHandling)))
		}
		n += 3 + len(sub.Filter)
	}
	s.rem = n
	return s, nil
}

func (p *Subscribe) write(dst []byte, v byte, s sizes) []byte {
	dst = appendU16(appendFixedHeader(dst, firstByte(SUBSCRIBE), s.rem), p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Props, subscribeProps, s.props)
	}
	for i := range p.Subs {
		sub := &p.Subs[i]
		opts := sub.QoS
		if v == V5 {
			opts |= sub.RetainHandling << 4
			if sub.NoLocal {
				opts |= 0x04
			}
			if sub.RetainAsPublished {
				opts |= 0x08
			}
		}
		dst = append(appendString(dst, sub.Filter), opts)
	}
	return dst
}

func (p *Suback) size(v byte) (sizes, error) {
	var s sizes
	if p.PacketID == 0 {
		return s, errNoPacketID(SUBACK)
	}
	if len(p.Codes) == 0 {
		return s, errEncode("SUBACK needs at least one reason code")
	}
	n := 2 + len(p.Codes)
	if v == V5 {
		f, pl, err := propsField(&p.Props, ackProps)
		if err != nil {
			return s, err
		}
		n, s.props = n+f, pl
	}
	s.rem = n
	return s, nil
}

func (p *Suback) write(dst []byte, v byte, s sizes) []byte {
	dst = appendU16(appendFixedHeader(dst, firstByte(SUBACK), s.rem), p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Props, ackProps, s.props)
	}
	for _, c := range p.Codes {
		dst = append(dst, byte(c))
	}
	return dst
}

func (p *Unsubscribe) size(v byte) (sizes, error) {
	var s sizes
	if p.PacketID == 0 {
		return s, errNoPacketID(UNSUBSCRIBE)
	}
	if len(p.Filters) == 0 {
		return s, errEncode("UNSUBSCRIBE needs at least one topic filter")
	}
	n := 2
	if v == V5 {
		f, pl, err := propsField(&p.Props, unsubscribeProps)
		if err != nil {
			return s, err
		}
		n, s.props = n+f, pl
	}
	for _, f := range p.Filters {
		if len(f) > maxString {
			return s, errTooLong("topic filter")
		}
		n += 2 + len(f)
	}
	s.rem = n
	return s, nil
}

func (p *Unsubscribe) write(dst []byte, v byte, s sizes) []byte {
	dst = appendU16(appendFixedHeader(dst, firstByte(UNSUBSCRIBE), s.rem), p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Props, unsubscribeProps, s.props)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

func (p *Unsuback) size(v byte) (sizes, error) {
	var s sizes
	if p.PacketID == 0 {
		return s, errNoPacketID(UNSUBACK)
	}
	s.rem = 2
	if v != V5 {
		return s, nil
	}
	if len(p.Codes) == 0 {
		return s, errEncode("UNSUBACK needs at least one reason code in MQTT 5")
	}
	f, pl, err := propsField(&p.Props, ackProps)
	if err != nil {
		return s, err
	}
	s.rem, s.props = 2+f+len(p.Codes), pl
	return s, nil
}

func (p *Unsuback) write(dst []byte, v byte, s sizes) []byte {
	dst = appendU16(appendFixedHeader(dst, firstByte(UNSUBACK), s.rem), p.PacketID)
	if v == V5 {
		dst = appendProps(dst, &p.Props, ackProps, s.props)
		for _, c := range p.Codes {
			dst = append(dst, byte(c))
		}
	}
	return dst
}

func (*Pingreq) size(byte) (sizes, error) { return sizes{}, nil }
func (*Pingreq) write(dst []byte, _ byte, _ sizes) []byte {
	return append(dst, firstByte(PINGREQ), 0)
}

func (*Pingresp) size(byte) (sizes, error) { return sizes{}, nil }
func (*Pingresp) write(dst []byte, _ byte, _ sizes) []byte {
	return append(dst, firstByte(PINGRESP), 0)
}

// reasonAndProps sizes the variable header of DISCONNECT and AUTH in MQTT 5:
// nothing for Success without properties, else the reason code, then the
// properties if there are any (or always, for AUTH).
func reasonAndProps(code ReasonCode, p *Properties, mask uint64, propsAlways bool) (sizes, error) {
	f, pl, err := propsField(p, mask)
	if err != nil {
		return sizes{}, err
	}
	switch {
	case pl == 0 && code == Success:
		return sizes{}, nil
	case pl == 0 && !propsAlways:
		return sizes{rem: 1}, nil
	}
	return sizes{rem: 1 + f, props: pl}, nil
}

func (x *Disconnect) size(v byte) (sizes, error) {
	if v != V5 {
		return sizes{}, nil
	}
	return reasonAndProps(x.Code, &x.Props, disconnectProps, false)
}

func (x *Disconnect) write(dst []byte, v byte, s sizes) []byte {
	dst = appendFixedHeader(dst, firstByte(DISCONNECT), s.rem)
	if s.rem > 0 {
		dst = append(dst, byte(x.Code))
	}
	if s.rem > 1 {
		dst = appendProps(dst, &x.Props, disconnectProps, s.props)
	}
	return dst
}

// AUTH has no form with a reason code but no property length (§3.15.2.1).
func (a *Auth) size(v byte) (sizes, error) {
	if v != V5 {
		return sizes{}, errEncode("AUTH does not exist before MQTT 5")
	}
	return reasonAndProps(a.Code, &a.Props, authProps, true)
}

func (a *Auth) write(dst []byte, v byte, s sizes) []byte {
	dst = appendFixedHeader(dst, firstByte(AUTH), s.rem)
	if s.rem > 0 {
		dst = appendProps(append(dst, byte(a.Code)), &a.Props, authProps, s.props)
	}
	return dst
}
