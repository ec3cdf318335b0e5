package packet

import (
	"strconv"

	"github.com/petrelmq/petrel/internal/topic"
)

// Decoder decodes the packets of one connection. Its zero value is ready: it
// expects a CONNECT first, which sets Version.
//
// A Decoder holds one value of each packet type and Decode returns a pointer
// to it: the packet, its strings and its slices alias the body passed to
// Decode and the Decoder's own storage, so they are valid only until the next
// Decode. Reusing that storage is what lets a warmed-up Decoder decode
// without allocating. A Decoder is not safe for concurrent use.
//
// The codes of refusals, where the specifications leave a choice:
//   - A protocol name other than "MQTT" and "MQIsdp": ProtocolError (not
//     MQTT; close). A known name at a level not spoken with it:
//     UnsupportedProtocolVersion (answer CONNACK 0x01 or 0x84, then close).
//   - A property the packet does not allow, or an unknown one: MalformedPacket,
//     as 5.0 §2.2.2.2 says. A property repeated or out of range: ProtocolError,
//     as each property's section says. Topic Alias 0: TopicAliasInvalid.
//   - A wildcard in a topic name (PUBLISH, will topic, Response Topic), or an
//     empty one: TopicNameInvalid; except an empty PUBLISH topic in MQTT 5
//     without a Topic Alias, a ProtocolError as 5.0 §3.3.2.1 says.
//   - An invalid topic filter refuses the whole SUBSCRIBE or UNSUBSCRIBE with
//     TopicFilterInvalid rather than giving it a failure code in SUBACK: the
//     caller closes the connection, as 3.1.1 allows and Mosquitto does.
//   - A packet identifier of 0: ProtocolError.
//
// Left to the caller, as they need the connection's state or direction: a
// Subscription Identifier on a client's PUBLISH [MQTT-3.3.4-6], a Topic Alias
// above the agreed maximum, a packet only the other side may send, a second
// CONNECT [MQTT-3.1.0-2] (which, decoded, sets Version again), the
// Authentication Method matching CONNECT's, payloads that claim to be UTF-8,
// and whether an empty client identifier is acceptable.
type Decoder struct {
	// Version is the connection's protocol level: V31, V311 or V5. It decides
	// how every packet but CONNECT is read; decoding a CONNECT sets it from
	// the packet as soon as the protocol name and level are read and valid,
	// even if a later field is wrong, so the caller can refuse the client in
	// its own protocol.
	Version byte

	connect     Connect
	connack     Connack
	publish     Publish
	ack         Ack
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
	auth        Auth

	// nonCanonical is the last Decode's reader.nonCanonical, for FuzzDecode.
	nonCanonical bool
}

// Decode decodes one packet from its fixed header (see ParseFixedHeader) and
// its body, which must be exactly h.Remaining bytes. Failures are *Error
// values whose Code is the MQTT 5 reason code to answer with.
func (d *Decoder) Decode(h FixedHeader, body []byte) (Packet, error) {
	if len(body) != h.Remaining {
		return nil, errMalformed("body of " + strconv.Itoa(len(body)) + " bytes for a remaining length of " +
			strconv.Itoa(h.Remaining))
	}
	// The header may not come from ParseFixedHeader: check it again, cheaply.
	if err := checkFlags(h.Type, h.Flags); err != nil {
		return nil, err
	}
	if h.Type != CONNECT && !validVersion(d.Version) {
		return nil, errProtocol(h.Type.String() + " before CONNECT: protocol level unknown")
	}
	r := reader{b: body, v: d.Version}
	var p Packet
	var err error
	switch h.Type {
	case CONNECT:
		p, err = &d.connect, d.decodeConnect(&r)
	case CONNACK:
		p, err = &d.connack, d.decodeConnack(&r)
	case PUBLISH:
		p, err = &d.publish, d.decodePublish(&r, h.Flags)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		p, err = &d.ack, d.decodeAck(&r, h.Type)
	case SUBSCRIBE:
		p, err = &d.subscribe, d.decodeSubscribe(&r)
	case SUBACK:
		p, err = &d.suback, d.decodeSuback(&r)
	case UNSUBSCRIBE:
		p, err = &d.unsubscribe, d.decodeUnsubscribe(&r)
	case UNSUBACK:
		p, err = &d.unsuback, d.decodeUnsuback(&r)
	case PINGREQ:
		p = &d.pingreq
	case PINGRESP:
		p = &d.pingresp
	case DISCONNECT:
		p, err = &d.disconnect, d.decodeDisconnect(&r)
	case AUTH:
		p, err = &d.auth, d.decodeAuth(&r)
	default:
		err = errMalformed("packet type " + strconv.Itoa(int(h.Type)) + " is invalid")
	}
	if err == nil {
		err = r.done(h.Type)
	}
	d.nonCanonical = r.nonCanonical
	if err != nil {
		return nil, err
	}
	return p, nil
}

func validVersion(v byte) bool { return v == V31 || v == V311 || v == V5 }

// ver picks the normative id of a rule by protocol version; the same number
// means different things in 3.1.1 and 5.0.
func ver(v byte, v311, v5 string) string {
	if v == V5 {
		return v5
	}
	return v311
}

// bridgeBit is the protocol level's top bit that Mosquitto's bridges set
// (Connect.Bridge).
const bridgeBit = 0x80

// decodeConnect reads CONNECT (3.1.1 §3.1, 5.0 §3.1).
//
// A protocol name other than "MQTT" or "MQIsdp" is a ProtocolError: the data
// is not MQTT and the caller just closes [MQTT-3.1.2-1]. A known name with a
// level this codec does not speak for it ("MQTT" with anything but 4 or 5,
// "MQIsdp" with anything but 3) is UnsupportedProtocolVersion: the caller
// answers CONNACK 0x01 (3.1.1) [MQTT-3.1.2-2] and closes. Version is then
// left unchanged, as the client's level is one we do not speak.
func (d *Decoder) decodeConnect(r *reader) error {
	c := &d.connect
	st, wst := c.Props.storage(), c.WillProps.storage()
	*c = Connect{}
	st.into(&c.Props)
	wst.into(&c.WillProps)

	name, err := r.str("protocol name")
	if err != nil {
		return err
	}
	level, err := r.u8("protocol level")
	if err != nil {
		return err
	}
	// A bridge's top bit (Connect.Bridge) is not part of the level.
	bridge := level&bridgeBit != 0
	if bridge {
		level &^= bridgeBit
	}
	switch {
	case name == "MQTT" && (level == V311 || level == V5), name == "MQIsdp" && level == V31:
	case name == "MQTT" || name == "MQIsdp":
		if bridge {
			level |= bridgeBit // say what the client sent
		}
		return &Error{Code: UnsupportedProtocolVersion,
			Reason: "protocol " + name + " level " + strconv.Itoa(int(level)) + " is not supported [MQTT-3.1.2-2]"}
	default:
		return errProtocol("protocol name " + strconv.Quote(name) + " is not MQTT [MQTT-3.1.2-1]")
	}
	d.Version, r.v, c.Version, c.Bridge = level, level, level, bridge

	flags, err := r.u8("connect flags")
	if err != nil {
		return err
	}
	if err := checkConnectFlags(flags, level); err != nil {
		return err
	}
	c.UsernameFlag = flags&0x80 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.WillRetain = flags&0x20 != 0
	c.WillQoS = flags >> 3 & 3
	c.WillFlag = flags&0x04 != 0
	c.CleanStart = flags&0x02 != 0
	if c.KeepAlive, err = r.u16("keep alive"); err != nil {
		return err
	}
	if level == V5 {
		if err := r.props(&c.Props, connectProps, "CONNECT"); err != nil {
			return err
		}
		if c.Props.Has(PropAuthData) && !c.Props.Has(PropAuthMethod) {
			return errProtocol("CONNECT carries Authentication Data without an Authentication Method")
		}
	}

	// The payload, in the order of [MQTT-3.1.3-1]. An empty client id is
	// the broker's to accept or refuse.
	if c.ClientID, err = r.str("client identifier"); err != nil {
		return err
	}
	if c.WillFlag {
		if level == V5 {
			if err := r.props(&c.WillProps, willPropsMask, "will"); err != nil {
				return err
			}
		}
		if c.WillTopic, err = r.str("will topic"); err != nil {
			return err
		}
		if terr := topic.ValidateName(c.WillTopic); terr != nil {
			return &Error{Code: TopicNameInvalid, Reason: "will topic: " + terr.Error()}
		}
		if c.WillPayload, err = r.binary("will payload"); err != nil {
			return err
		}
	}
	if c.UsernameFlag {
		if c.Username, err = r.str("user name"); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, err = r.binary("password"); err != nil {
			return err
		}
	}
	return nil
}

// checkConnectFlags checks the rules of the Connect Flags byte that do not
// depend on the payload.
func checkConnectFlags(flags, level byte) error {
	if flags&0x01 != 0 {
		return errMalformed("reserved connect flag is 1 [MQTT-3.1.2-3]")
	}
	will, qos, retain := flags&0x04 != 0, flags>>3&3, flags&0x20 != 0
	switch {
	case !will && qos != 0:
		return errMalformed("will QoS is " + strconv.Itoa(int(qos)) + " without the will flag " +
			ver(level, "[MQTT-3.1.2-11] [MQTT-3.1.2-13]", "[MQTT-3.1.2-11]"))
	case !will && retain:
		return errMalformed("will retain is 1 without the will flag " +
			ver(level, "[MQTT-3.1.2-11] [MQTT-3.1.2-15]", "[MQTT-3.1.2-13]"))
	case qos == 3:
		return errMalformed("will QoS 3 " + ver(level, "[MQTT-3.1.2-14]", "[MQTT-3.1.2-12]"))
	case level != V5 && flags&0x40 != 0 && flags&0x80 == 0:
		return errMalformed("password flag without the user name flag [MQTT-3.1.2-22]")
	}
	return nil
}

// Reason codes each packet may carry, by protocol level.
var (
	connackCodes311 = codesOf(0, 1, 2, 3, 4, 5)
	connackCodes5   = codesOf(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
		0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackCodes     = codesOf(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99) // PUBACK and PUBREC
	pubrelCodes     = codesOf(0x00, 0x92)                                           // PUBREL and PUBCOMP
	subackCodes311  = codesOf(0x00, 0x01, 0x02, 0x80)
	subackCodes5    = codesOf(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	unsubackCodes   = codesOf(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnectCodes = codesOf(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
		0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
	authCodes = codesOf(0x00, 0x18, 0x19)
)

// codeSet is a set of reason codes, one bit each.
type codeSet [4]uint64

func codesOf(codes ...ReasonCode) codeSet {
	var s codeSet
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *codeSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// reasonCode reads a reason code and checks that t may carry it: using a
// code of another packet is a Protocol Error (e.g. [MQTT-3.4.2-1]).
func (r *reader) reasonCode(t Type, allowed *codeSet) (ReasonCode, error) {
	if r.off >= len(r.b) {
		return 0, r.short(t.String() + " reason code")
	}
	c := r.b[r.off]
	r.off++
	if !allowed.has(ReasonCode(c)) {
		return 0, errProtocol(t.String() + " cannot carry reason code " + hex2(c))
	}
	return ReasonCode(c), nil
}

// packetID reads a Packet Identifier, which is never 0
// (3.1.1 [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3]).
func (r *reader) packetID(t Type) (uint16, error) {
	if r.remaining() < 2 {
		return 0, r.short(t.String() + " packet identifier")
	}
	id, _ := r.u16("")
	if id == 0 {
		return 0, errProtocol(t.String() + " packet identifier is 0 " + ver(r.v, "[MQTT-2.3.1-1]", "[MQTT-2.2.1-3]"))
	}
	return id, nil
}

// decodeConnack reads CONNACK (3.1.1 §3.2, 5.0 §3.2). MQTT 3.1 has no
// Session Present flag; its byte is reserved and read like 3.1.1's.
func (d *Decoder) decodeConnack(r *reader) error {
	c := &d.connack
	st := c.Props.storage()
	*c = Connack{}
	st.into(&c.Props)
	flags, err := r.u8("connect acknowledge flags")
	if err != nil {
		return err
	}
	if flags&^1 != 0 {
		return errMalformed("reserved connect acknowledge flags are not 0" + ver(r.v, "", " [MQTT-3.2.2-1]"))
	}
	c.SessionPresent = flags == 1
	if r.v == V5 {
		if c.Code, err = r.reasonCode(CONNACK, &connackCodes5); err != nil {
			return err
		}
		if err := r.props(&c.Props, connackProps, "CONNACK"); err != nil {
			return err
		}
	} else if c.Code, err = r.reasonCode(CONNACK, &connackCodes311); err != nil {
		return err
	}
	if c.SessionPresent && c.Code != Success {
		return errProtocol("CONNACK refuses the connection with Session Present 1 " +
			ver(r.v, "[MQTT-3.2.2-4]", "[MQTT-3.2.2-6]"))
	}
	return nil
}

// decodePublish reads PUBLISH (3.1.1 §3.3, 5.0 §3.3). The flags were checked
// with the fixed header.
func (d *Decoder) decodePublish(r *reader, flags byte) error {
	p := &d.publish
	st := p.Props.storage()
	*p = Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 3, Retain: flags&0x01 != 0}
	st.into(&p.Props)
	var err error
	if p.Topic, err = r.str("topic name"); err != nil {
		return err
	}
	// [MQTT-2.3.1-5] / [MQTT-2.2.1-2]: only QoS 1 and 2 carry an id.
	if p.QoS > 0 {
		if p.PacketID, err = r.packetID(PUBLISH); err != nil {
			return err
		}
	}
	if r.v == V5 {
		if err := r.props(&p.Props, publishProps, "PUBLISH"); err != nil {
			return err
		}
	}
	if p.Topic == "" {
		// An empty topic stands for the one a Topic Alias maps (5.0 §3.3.2.1).
		if r.v != V5 {
			return &Error{Code: TopicNameInvalid, Reason: "PUBLISH topic name is empty [MQTT-4.7.3-1]"}
		}
		if !p.Props.Has(PropTopicAlias) {
			return errProtocol("PUBLISH topic name is empty and there is no Topic Alias")
		}
	} else if terr := topic.ValidateName(p.Topic); terr != nil {
		return &Error{Code: TopicNameInvalid, Reason: "PUBLISH topic name: " + terr.Error() + " [MQTT-3.3.2-2]"}
	}
	p.Payload = r.rest()
	return nil
}

// decodeAck reads PUBACK, PUBREC, PUBREL or PUBCOMP (5.0 §3.4 to §3.7).
// In MQTT 5, a remaining length of 2 means Success with no properties and 3
// a reason code with no properties.
func (d *Decoder) decodeAck(r *reader, kind Type) error {
	a := &d.ack
	st := a.Props.storage()
	*a = Ack{Kind: kind}
	st.into(&a.Props)
	var err error
	if a.PacketID, err = r.packetID(kind); err != nil {
		return err
	}
	if r.v != V5 || r.remaining() == 0 {
		return nil // before MQTT 5, done() refuses anything more
	}
	codes := &pubackCodes
	if kind == PUBREL || kind == PUBCOMP {
		codes = &pubrelCodes
	}
	if a.Code, err = r.reasonCode(kind, codes); err != nil {
		return err
	}
	if r.remaining() == 0 {
		r.nonCanonical = r.nonCanonical || a.Code == Success
		return nil
	}
	if err := r.props(&a.Props, ackProps, kind.String()); err != nil {
		return err
	}
	r.nonCanonical = r.nonCanonical || a.Props.Empty()
	return nil
}

// decodeSubscribe reads SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8).
//
// A syntactically invalid topic filter refuses the whole packet with
// TopicFilterInvalid rather than yielding a per-filter failure code: the
// broker then closes the connection, which 3.1.1 allows and MQTT 5 makes the
// natural answer to a filter that is not a filter. A filter starting with
// "$share/" must be a valid shared subscription ($share/{group}/{filter}) at
// every protocol level.
func (d *Decoder) decodeSubscribe(r *reader) error {
	s := &d.subscribe
	st, subs := s.Props.storage(), s.Subs[:0]
	*s = Subscribe{Subs: subs}
	st.into(&s.Props)
	var err error
	if s.PacketID, err = r.packetID(SUBSCRIBE); err != nil {
		return err
	}
	if r.v == V5 {
		if err := r.props(&s.Props, subscribeProps, "SUBSCRIBE"); err != nil {
			return err
		}
	}
	if r.remaining() == 0 {
		return errProtocol("SUBSCRIBE has no topic filter " + ver(r.v, "[MQTT-3.8.3-3]", "[MQTT-3.8.3-2]"))
	}
	for r.remaining() > 0 {
		var sub Subscription
		if sub.Filter, err = r.str("topic filter"); err != nil {
			return err
		}
		opts, err := r.u8("subscription options")
		if err != nil {
			return err
		}
		if err := checkFilter(sub.Filter, r.v); err != nil {
			return err
		}
		sub.QoS = opts & 3
		if r.v != V5 {
			if opts&^3 != 0 {
				return errMalformed("reserved bits of requested QoS " + hex2(opts) + " are not 0 [MQTT-3.8.3-4]")
			}
			if sub.QoS == 3 {
				return errMalformed("requested QoS 3 [MQTT-3.8.3-4]")
			}
			s.Subs = append(s.Subs, sub)
			continue
		}
		if opts&0xC0 != 0 {
			return errMalformed("reserved bits of subscription options " + hex2(opts) + " are not 0 [MQTT-3.8.3-5]")
		}
		if sub.QoS == 3 {
			return errProtocol("subscription requests QoS 3")
		}
		sub.NoLocal = opts&0x04 != 0
		sub.RetainAsPublished = opts&0x08 != 0
		sub.RetainHandling = opts >> 4 & 3
		if sub.RetainHandling == 3 {
			return errProtocol("subscription has Retain Handling 3")
		}
		if sub.NoLocal && topic.IsShared(sub.Filter) {
			return errProtocol("No Local on shared subscription " + strconv.Quote(sub.Filter) + " [MQTT-3.8.3-4]")
		}
		s.Subs = append(s.Subs, sub)
	}
	return nil
}

// checkFilter validates a topic filter of SUBSCRIBE or UNSUBSCRIBE.
func checkFilter(f string, v byte) error {
	var err error
	if topic.IsShared(f) {
		_, _, err = topic.ParseShare(f)
	} else {
		err = topic.ValidateFilter(f)
	}
	if err != nil {
		return &Error{Code: TopicFilterInvalid, Reason: "topic filter " + strconv.Quote(f) + ": " + err.Error() +
			ver(v, " [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]", " [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1]")}
	}
	return nil
}

// decodeSuback reads SUBACK (3.1.1 §3.9, 5.0 §3.9): one code per filter.
func (d *Decoder) decodeSuback(r *reader) error {
	s := &d.suback
	st, codes := s.Props.storage(), s.Codes[:0]
	*s = Suback{Codes: codes}
	st.into(&s.Props)
	var err error
	if s.PacketID, err = r.packetID(SUBACK); err != nil {
		return err
	}
	allowed := &subackCodes311
	if r.v == V5 {
		allowed = &subackCodes5
		if err := r.props(&s.Props, ackProps, "SUBACK"); err != nil {
			return err
		}
	}
	if r.remaining() == 0 {
		return errProtocol("SUBACK has no reason code")
	}
	for r.remaining() > 0 {
		c, err := r.reasonCode(SUBACK, allowed)
		if err != nil {
			return err
		}
		s.Codes = append(s.Codes, c)
	}
	return nil
}

// decodeUnsubscribe reads UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10).
func (d *Decoder) decodeUnsubscribe(r *reader) error {
	u := &d.unsubscribe
	st, filters := u.Props.storage(), u.Filters[:0]
	*u = Unsubscribe{Filters: filters}
	st.into(&u.Props)
	var err error
	if u.PacketID, err = r.packetID(UNSUBSCRIBE); err != nil {
		return err
	}
	if r.v == V5 {
		if err := r.props(&u.Props, unsubscribeProps, "UNSUBSCRIBE"); err != nil {
			return err
		}
	}
	if r.remaining() == 0 {
		return errProtocol("UNSUBSCRIBE has no topic filter [MQTT-3.10.3-2]")
	}
	for r.remaining() > 0 {
		f, err := r.str("topic filter")
		if err != nil {
			return err
		}
		if err := checkFilter(f, r.v); err != nil {
			return err
		}
		u.Filters = append(u.Filters, f)
	}
	return nil
}

// decodeUnsuback reads UNSUBACK (3.1.1 §3.11, 5.0 §3.11). Before MQTT 5 it
// is only the packet identifier.
func (d *Decoder) decodeUnsuback(r *reader) error {
	u := &d.unsuback
	st, codes := u.Props.storage(), u.Codes[:0]
	*u = Unsuback{Codes: codes}
	st.into(&u.Props)
	var err error
	if u.PacketID, err = r.packetID(UNSUBACK); err != nil {
		return err
	}
	if r.v != V5 {
		return nil
	}
	if err := r.props(&u.Props, ackProps, "UNSUBACK"); err != nil {
		return err
	}
	if r.remaining() == 0 {
		return errProtocol("UNSUBACK has no reason code")
	}
	for r.remaining() > 0 {
		c, err := r.reasonCode(UNSUBACK, &unsubackCodes)
		if err != nil {
			return err
		}
		u.Codes = append(u.Codes, c)
	}
	return nil
}

// decodeDisconnect reads DISCONNECT (5.0 §3.14). Before MQTT 5 it is empty;
// in MQTT 5 an absent reason code means Normal disconnection and absent
// properties mean none.
func (d *Decoder) decodeDisconnect(r *reader) error {
	x := &d.disconnect
	st := x.Props.storage()
	*x = Disconnect{}
	st.into(&x.Props)
	if r.v != V5 || r.remaining() == 0 {
		return nil
	}
	var err error
	if x.Code, err = r.reasonCode(DISCONNECT, &disconnectCodes); err != nil {
		return err
	}
	if r.remaining() == 0 {
		r.nonCanonical = r.nonCanonical || x.Code == Success
		return nil
	}
	if err := r.props(&x.Props, disconnectProps, "DISCONNECT"); err != nil {
		return err
	}
	r.nonCanonical = r.nonCanonical || x.Props.Empty()
	return nil
}

// decodeAuth reads AUTH (5.0 §3.15), which does not exist before MQTT 5.
// A remaining length of 0 means Success with no properties (§3.15.2.1);
// otherwise the reason code and the properties are both present, and the
// properties must name the Authentication Method (§3.15.2.2.2).
func (d *Decoder) decodeAuth(r *reader) error {
	if r.v != V5 {
		return errMalformed("AUTH does not exist before MQTT 5: packet type 15 is reserved")
	}
	a := &d.auth
	st := a.Props.storage()
	*a = Auth{}
	st.into(&a.Props)
	if r.remaining() == 0 {
		return nil
	}
	var err error
	if a.Code, err = r.reasonCode(AUTH, &authCodes); err != nil {
		return err
	}
	if err := r.props(&a.Props, authProps, "AUTH"); err != nil {
		return err
	}
	if !a.Props.Has(PropAuthMethod) {
		return errProtocol("AUTH carries no Authentication Method")
	}
	return nil
}
