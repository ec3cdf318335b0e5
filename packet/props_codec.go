package packet

import (
	"math/bits"

	"github.com/petrelmq/petrel/internal/topic"
)

// Which properties each packet allows (MQTT 5 §2.2.2.2, Table 2-4), one bit
// per PropID. allowSubIDRepeat is not a property: it marks the one place a
// Subscription Identifier may repeat, a PUBLISH (bit 63 is no identifier).
const (
	allowSubIDRepeat uint64 = 1 << 63

	connectProps = 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize |
		1<<PropTopicAliasMaximum | 1<<PropRequestResponseInfo | 1<<PropRequestProblemInfo |
		1<<PropUser | 1<<PropAuthMethod | 1<<PropAuthData
	willPropsMask = 1<<PropWillDelay | 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropUser
	connackProps = 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumQoS |
		1<<PropRetainAvailable | 1<<PropMaximumPacketSize | 1<<PropAssignedClientID |
		1<<PropTopicAliasMaximum | 1<<PropReasonString | 1<<PropUser | 1<<PropWildcardSubAvailable |
		1<<PropSubIDAvailable | 1<<PropSharedSubAvailable | 1<<PropServerKeepAlive |
		1<<PropResponseInfo | 1<<PropServerReference | 1<<PropAuthMethod | 1<<PropAuthData
	publishProps = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropTopicAlias |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropUser | 1<<PropSubscriptionID |
		1<<PropContentType | allowSubIDRepeat
	ackProps         = 1<<PropReasonString | 1<<PropUser // PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK
	subscribeProps   = 1<<PropSubscriptionID | 1<<PropUser
	unsubscribeProps = 1 << PropUser
	disconnectProps  = 1<<PropSessionExpiry | 1<<PropReasonString | 1<<PropUser | 1<<PropServerReference
	authProps        = 1<<PropAuthMethod | 1<<PropAuthData | 1<<PropReasonString | 1<<PropUser
)

// propNames names each property for error reasons; "" marks an identifier
// MQTT 5 does not define.
var propNames = [...]string{
	PropPayloadFormat:        "Payload Format Indicator",
	PropMessageExpiry:        "Message Expiry Interval",
	PropContentType:          "Content Type",
	PropResponseTopic:        "Response Topic",
	PropCorrelationData:      "Correlation Data",
	PropSubscriptionID:       "Subscription Identifier",
	PropSessionExpiry:        "Session Expiry Interval",
	PropAssignedClientID:     "Assigned Client Identifier",
	PropServerKeepAlive:      "Server Keep Alive",
	PropAuthMethod:           "Authentication Method",
	PropAuthData:             "Authentication Data",
	PropRequestProblemInfo:   "Request Problem Information",
	PropWillDelay:            "Will Delay Interval",
	PropRequestResponseInfo:  "Request Response Information",
	PropResponseInfo:         "Response Information",
	PropServerReference:      "Server Reference",
	PropReasonString:         "Reason String",
	PropReceiveMaximum:       "Receive Maximum",
	PropTopicAliasMaximum:    "Topic Alias Maximum",
	PropTopicAlias:           "Topic Alias",
	PropMaximumQoS:           "Maximum QoS",
	PropRetainAvailable:      "Retain Available",
	PropUser:                 "User Property",
	PropMaximumPacketSize:    "Maximum Packet Size",
	PropWildcardSubAvailable: "Wildcard Subscription Available",
	PropSubIDAvailable:       "Subscription Identifier Available",
	PropSharedSubAvailable:   "Shared Subscription Available",
}

func (id PropID) String() string {
	if int(id) < len(propNames) && propNames[id] != "" {
		return propNames[id]
	}
	return "property " + hex2(byte(id))
}

// props reads a property length and the properties it covers into p, which
// the caller has reset. allowed is the packet's set; where names the packet
// (or "will") for error reasons.
//
// A property the packet does not allow is a Malformed Packet, as §2.2.2.2
// says; a repeated one (other than User Property, and Subscription
// Identifier on PUBLISH) or a value out of range is a Protocol Error, as the
// section of each property says.
func (r *reader) props(p *Properties, allowed uint64, where string) error {
	// The property length, read here rather than with r.varint so that the
	// error reason is built only on failure.
	n, size := uvarint(r.b[r.off:])
	switch size {
	case varintIncomplete:
		return r.short(where + " property length")
	case varintMalformed:
		return errMalformed(where + " property length is longer than four bytes or not in its shortest form [MQTT-1.5.5-1]")
	}
	r.off += size
	if int(n) > r.remaining() {
		return errMalformed(where + " properties run past the end of the packet")
	}
	end := r.off + int(n)
	pr := reader{b: r.b[:end], off: r.off, v: r.v}
	var last PropID
	for pr.off < end {
		id := PropID(pr.b[pr.off])
		pr.off++
		if int(id) >= len(propNames) || propNames[id] == "" {
			// Identifiers are Variable Byte Integers, but every defined one
			// fits in one byte: 0x80 and above is unknown too.
			return errMalformed(where + " carries unknown property identifier " + hex2(byte(id)))
		}
		if allowed&(1<<id) == 0 {
			return errMalformed(id.String() + " is not allowed in " + where + " (5.0 §2.2.2.2)")
		}
		if id < last {
			r.nonCanonical = true
		}
		last = id
		if err := pr.prop(p, id, allowed, where); err != nil {
			return err
		}
	}
	r.off = end
	return nil
}

// prop reads the value of property id.
func (r *reader) prop(p *Properties, id PropID, allowed uint64, where string) error {
	var err error
	switch id {
	case PropUser:
		var kv UserProperty
		if kv.Key, err = r.str("User Property name"); err != nil {
			return err
		}
		if kv.Value, err = r.str("User Property value"); err != nil {
			return err
		}
		p.User = append(p.User, kv)
		return nil
	case PropSubscriptionID:
		if len(p.SubscriptionIDs) > 0 && allowed&allowSubIDRepeat == 0 {
			return errProtocol(where + " carries more than one Subscription Identifier")
		}
		v, err := r.varint("Subscription Identifier")
		if err != nil {
			return err
		}
		if v == 0 {
			return errProtocol("Subscription Identifier is 0")
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, v)
		return nil
	}
	if p.Present&(1<<id) != 0 {
		return errProtocol(where + " carries " + id.String() + " more than once")
	}
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat, err = r.boolean(id)
	case PropRequestProblemInfo:
		p.RequestProblemInfo, err = r.boolean(id)
	case PropRequestResponseInfo:
		p.RequestResponseInfo, err = r.boolean(id)
	case PropMaximumQoS:
		p.MaximumQoS, err = r.boolean(id)
	case PropRetainAvailable:
		p.RetainAvailable, err = r.boolean(id)
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable, err = r.boolean(id)
	case PropSubIDAvailable:
		p.SubIDAvailable, err = r.boolean(id)
	case PropSharedSubAvailable:
		p.SharedSubAvailable, err = r.boolean(id)

	case PropServerKeepAlive:
		p.ServerKeepAlive, err = r.u16(id.String())
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum, err = r.u16(id.String())
	case PropReceiveMaximum:
		if p.ReceiveMaximum, err = r.u16(id.String()); err == nil && p.ReceiveMaximum == 0 {
			err = errProtocol("Receive Maximum is 0")
		}
	case PropTopicAlias:
		// [MQTT-3.3.2-8]: alias 0 is never valid, whatever maximum was
		// agreed, so it is refused here with the code §3.3.2.3.4 gives.
		if p.TopicAlias, err = r.u16(id.String()); err == nil && p.TopicAlias == 0 {
			err = &Error{Code: TopicAliasInvalid, Reason: "Topic Alias is 0 [MQTT-3.3.2-8]"}
		}

	case PropMessageExpiry:
		p.MessageExpiry, err = r.u32(id.String())
	case PropSessionExpiry:
		p.SessionExpiry, err = r.u32(id.String())
	case PropWillDelay:
		p.WillDelay, err = r.u32(id.String())
	case PropMaximumPacketSize:
		if p.MaximumPacketSize, err = r.u32(id.String()); err == nil && p.MaximumPacketSize == 0 {
			err = errProtocol("Maximum Packet Size is 0")
		}

	case PropContentType:
		p.ContentType, err = r.str(id.String())
	case PropResponseTopic:
		// [MQTT-3.3.2-13] [MQTT-3.3.2-14]: a topic name, so no wildcards.
		if p.ResponseTopic, err = r.str(id.String()); err == nil {
			if terr := topic.ValidateName(p.ResponseTopic); terr != nil {
				err = &Error{Code: TopicNameInvalid, Reason: "Response Topic: " + terr.Error() + " [MQTT-3.3.2-14]"}
			}
		}
	case PropAssignedClientID:
		p.AssignedClientID, err = r.str(id.String())
	case PropAuthMethod:
		p.AuthMethod, err = r.str(id.String())
	case PropResponseInfo:
		p.ResponseInfo, err = r.str(id.String())
	case PropServerReference:
		p.ServerReference, err = r.str(id.String())
	case PropReasonString:
		p.ReasonString, err = r.str(id.String())

	case PropCorrelationData:
		p.CorrelationData, err = r.binary(id.String())
	case PropAuthData:
		p.AuthData, err = r.binary(id.String())
	}
	if err != nil {
		return err
	}
	p.Mark(id)
	return nil
}

// boolean reads a one-byte property whose only values are 0 and 1 (every
// byte-valued property of MQTT 5 is one).
func (r *reader) boolean(id PropID) (byte, error) {
	v, err := r.u8(id.String())
	if err == nil && v > 1 {
		err = errProtocol(id.String() + " must be 0 or 1, got " + hex2(v))
	}
	return v, err
}

// propStorage is the reusable memory of a Properties.
type propStorage struct {
	user []UserProperty
	ids  []uint32
}

// storage returns the emptied slices of p, so that a decoder can zero a
// whole packet in one write and then give them back with into.
func (p *Properties) storage() propStorage {
	return propStorage{user: p.User[:0], ids: p.SubscriptionIDs[:0]}
}

func (s propStorage) into(p *Properties) { p.User, p.SubscriptionIDs = s.user, s.ids }

// carried returns the properties of p to encode under mask: the singular
// ones marked present, and User Property and Subscription Identifier when
// there are any.
func carried(p *Properties, mask uint64) uint64 {
	m := p.Present &^ (1<<PropUser | 1<<PropSubscriptionID)
	if len(p.User) > 0 {
		m |= 1 << PropUser
	}
	if len(p.SubscriptionIDs) > 0 {
		m |= 1 << PropSubscriptionID
	}
	return m & mask &^ allowSubIDRepeat
}

// propsLen returns the encoded size of the properties of p allowed by mask,
// without their length prefix, or an error when one cannot be encoded.
func propsLen(p *Properties, mask uint64) (int, error) {
	n := 0
	for m := carried(p, mask); m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		switch id {
		case PropUser:
			for _, kv := range p.User {
				if len(kv.Key) > maxString || len(kv.Value) > maxString {
					return 0, errTooLong("User Property")
				}
				n += 5 + len(kv.Key) + len(kv.Value)
			}
		case PropSubscriptionID:
			if len(p.SubscriptionIDs) > 1 && mask&allowSubIDRepeat == 0 {
				return 0, errEncode("only PUBLISH may carry more than one Subscription Identifier")
			}
			for _, v := range p.SubscriptionIDs {
				if v == 0 || v > MaxRemainingLength {
					return 0, errEncode("Subscription Identifier must be 1 to 268435455")
				}
				n += 1 + varIntLen(v)
			}
		case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
			PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable:
			n += 2
		case PropServerKeepAlive, PropTopicAliasMaximum, PropReceiveMaximum, PropTopicAlias:
			n += 3
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			n += 5
		default:
			l := len(propBytes(p, id))
			if l > maxString {
				return 0, errTooLong(id.String())
			}
			n += 3 + l
		}
	}
	return n, nil
}

// propBytes returns the value of a string or binary property.
func propBytes(p *Properties, id PropID) string {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropCorrelationData:
		return bytesAsString(p.CorrelationData)
	case PropAssignedClientID:
		return p.AssignedClientID
	case PropAuthMethod:
		return p.AuthMethod
	case PropAuthData:
		return bytesAsString(p.AuthData)
	case PropResponseInfo:
		return p.ResponseInfo
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return ""
}

// appendProps appends the property length n (from propsLen) and the
// properties of p allowed by mask, in ascending identifier order.
func appendProps(dst []byte, p *Properties, mask uint64, n int) []byte {
	dst = appendVarInt(dst, uint32(n))
	for m := carried(p, mask); m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		switch id {
		case PropUser:
			for _, kv := range p.User {
				dst = appendString(append(dst, byte(PropUser)), kv.Key)
				dst = appendString(dst, kv.Value)
			}
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				dst = appendVarInt(append(dst, byte(PropSubscriptionID)), v)
			}
		case PropPayloadFormat:
			dst = append(dst, byte(id), p.PayloadFormat)
		case PropRequestProblemInfo:
			dst = append(dst, byte(id), p.RequestProblemInfo)
		case PropRequestResponseInfo:
			dst = append(dst, byte(id), p.RequestResponseInfo)
		case PropMaximumQoS:
			dst = append(dst, byte(id), p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, byte(id), p.RetainAvailable)
		case PropWildcardSubAvailable:
			dst = append(dst, byte(id), p.WildcardSubAvailable)
		case PropSubIDAvailable:
			dst = append(dst, byte(id), p.SubIDAvailable)
		case PropSharedSubAvailable:
			dst = append(dst, byte(id), p.SharedSubAvailable)
		case PropServerKeepAlive:
			dst = appendU16(append(dst, byte(id)), p.ServerKeepAlive)
		case PropTopicAliasMaximum:
			dst = appendU16(append(dst, byte(id)), p.TopicAliasMaximum)
		case PropReceiveMaximum:
			dst = appendU16(append(dst, byte(id)), p.ReceiveMaximum)
		case PropTopicAlias:
			dst = appendU16(append(dst, byte(id)), p.TopicAlias)
		case PropMessageExpiry:
			dst = appendU32(append(dst, byte(id)), p.MessageExpiry)
		case PropSessionExpiry:
			dst = appendU32(append(dst, byte(id)), p.SessionExpiry)
		case PropWillDelay:
			dst = appendU32(append(dst, byte(id)), p.WillDelay)
		case PropMaximumPacketSize:
			dst = appendU32(append(dst, byte(id)), p.MaximumPacketSize)
		default:
			dst = appendString(append(dst, byte(id)), propBytes(p, id))
		}
	}
	return dst
}
