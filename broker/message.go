package broker

import (
	"strings"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/packet"
)

// Message is one accepted application message. It is immutable once built
// and shared by every session it is delivered to; what differs per delivery
// (packet id, QoS, DUP, RETAIN, subscription identifiers, topic alias) lives
// in the delivery, not in a copy.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props holds the MQTT 5 properties forwarded unchanged: Payload Format
	// Indicator, Content Type, Response Topic, Correlation Data and User
	// Properties (in order). Nil when there are none.
	Props *packet.Properties
	// Expiry is when the message expires; zero means never.
	Expiry time.Time
	// origin identifies the publishing session, for No Local (0 for the broker).
	origin uint64
	// willExpiry is a will's Message Expiry Interval in seconds: a will's
	// lifetime starts when it is published, not at CONNECT. [MQTT-3.1.3-?] (v5)
	willExpiry uint32
}

// forwarded are the properties a PUBLISH carries on to subscribers as they
// came; Message Expiry is forwarded too, but recomputed. [MQTT-3.3.2-4..20]
const forwarded = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData

// newMessage copies what it keeps out of a decoded PUBLISH, which aliases
// the connection's read buffer.
func newMessage(p *packet.Publish, origin uint64) *Message { return makeMessage(p, origin, false) }

// makeMessage makes the message of a decoded PUBLISH. Unless owned (p's
// bytes are in a buffer nobody reuses, which the message may keep), it
// copies the topic and payload into one allocation; properties, which
// MQTT 3 messages never have, take their own.
func makeMessage(p *packet.Publish, origin uint64, owned bool) *Message {
	topic, payload := p.Topic, p.Payload[:len(p.Payload):len(p.Payload)]
	if !owned {
		buf := make([]byte, len(p.Topic)+len(p.Payload))
		copy(buf, p.Topic)
		copy(buf[len(p.Topic):], p.Payload)
		payload = buf[len(p.Topic):len(buf):len(buf)]
		topic = ""
		if len(p.Topic) > 0 {
			topic = unsafe.String(&buf[0], len(p.Topic))
		}
	}
	m := &Message{
		Topic:   topic,
		QoS:     p.QoS,
		Retain:  p.Retain,
		Payload: payload,
		origin:  origin,
	}
	// An interval of 0 is taken as no expiry, as Mosquitto does: the spec
	// gives it no meaning of its own.
	if p.Props.Has(packet.PropMessageExpiry) && p.Props.MessageExpiry > 0 {
		m.Expiry = time.Now().Add(time.Duration(p.Props.MessageExpiry) * time.Second)
	}
	if p.Props.Present&forwarded != 0 || len(p.Props.User) > 0 {
		m.Props = copyForwarded(&p.Props)
	}
	return m
}

// copyForwarded deep-copies the forwarded properties of src.
func copyForwarded(src *packet.Properties) *packet.Properties {
	p := &packet.Properties{
		Present:       src.Present & forwarded,
		PayloadFormat: src.PayloadFormat,
		ContentType:   strings.Clone(src.ContentType),
		ResponseTopic: strings.Clone(src.ResponseTopic),
	}
	if src.Has(packet.PropCorrelationData) {
		p.CorrelationData = append([]byte(nil), src.CorrelationData...)
	}
	if len(src.User) > 0 {
		p.User = make([]packet.UserProperty, len(src.User))
		for i, u := range src.User {
			p.User[i] = packet.UserProperty{Key: strings.Clone(u.Key), Value: strings.Clone(u.Value)}
		}
	}
	return p
}

// expired reports whether m's lifetime has run out at now.
func (m *Message) expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// remaining is the Message Expiry Interval to send on forwarding: the
// seconds left, rounded up. [MQTT-3.3.2-6]
func (m *Message) remaining(now time.Time) uint32 {
	d := m.Expiry.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}
