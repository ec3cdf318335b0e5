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
	// Props holds the MQTT 5 properties forwarded unchanged: Payload Format
	// Indicator, Content Type, Response Topic, Correlation Data and User
	// Properties (in order). Nil when there are none.
	Props *packet.Properties
	// Expiry is when the message expires; zero means never.
	Expiry time.Time
	// origin identifies the publishing session, for No Local (0 for the broker).
	origin uint64
	// big is the pooled buffer the payload lives in, nil for most
	// messages; the message then counts its holders (bigbuf.go).
	big *bigBuf
	// willExpiry is a will's Message Expiry Interval in seconds: a will's
	// lifetime starts when it is published, not at CONNECT. [MQTT-3.1.3-?] (v5)
	willExpiry uint32
	QoS        byte
	Retain     bool
}

// forwarded are the properties a PUBLISH carries on to subscribers as they
// came; Message Expiry is forwarded too, but recomputed. [MQTT-3.3.2-4..20]
const forwarded = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData

// releasedMessage stands for the message of a QoS 2 delivery whose PUBREC came:
// only PUBREL is left to send, so the body can go. It is shared and never
// written.
var releasedMessage = &Message{}

// newMessage copies what it keeps out of a decoded PUBLISH, which aliases
// the connection's read buffer.
func newMessage(p *packet.Publish, origin uint64) *Message { return makeMessage(p, origin, false, nil) }

// makeMessage makes the message of a decoded PUBLISH. It copies the topic
// and payload, into the same allocation as the message when they are
// small; properties, which MQTT 3 messages never have, take their own.
// When owned, p's bytes are in a buffer nobody reuses, and the message
// keeps the payload where it is; big is that buffer when it is pooled, and
// the message starts with one holder, its caller.
func makeMessage(p *packet.Publish, origin uint64, owned bool, big *bigBuf) *Message {
	payload := p.Payload[:len(p.Payload):len(p.Payload)]
	n := len(p.Topic)
	if !owned {
		n += len(p.Payload)
	}
	m, buf := allocMessage(n)
	copy(buf, p.Topic)
	if !owned {
		copy(buf[len(p.Topic):], p.Payload)
		payload = buf[len(p.Topic):len(buf):len(buf)]
	}
	// The topic is copied even when the payload is not: it outlives the
	// message in maps (outbound topic aliases), where a recycled buffer
	// must not change it.
	topic := ""
	if len(p.Topic) > 0 {
		topic = unsafe.String(&buf[0], len(p.Topic))
	}
	*m = Message{
		Topic:   topic,
		QoS:     p.QoS,
		Retain:  p.Retain,
		Payload: payload,
		origin:  origin,
	}
	if owned && big != nil {
		m.big = big
		big.refs.Store(1)
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

// allocMessage returns a zero Message and n bytes for its topic and
// payload. Up to 416 bytes they share the message's allocation, one
// allocation per message instead of two; the sizes fill Go's size classes
// (a Message is 96 bytes: 96+32 = 128, ..., 96+416 = 512).
func allocMessage(n int) (*Message, []byte) {
	switch {
	case n <= 32:
		return inlineMessage[[32]byte](n)
	case n <= 64:
		return inlineMessage[[64]byte](n)
	case n <= 96:
		return inlineMessage[[96]byte](n)
	case n <= 160:
		return inlineMessage[[160]byte](n)
	case n <= 256:
		return inlineMessage[[256]byte](n)
	case n <= 416:
		return inlineMessage[[416]byte](n)
	}
	return new(Message), make([]byte, n)
}

// withBytes is a message followed by room for its bytes. The bytes hold no
// pointers, and a slice into them keeps the whole object alive, as any
// interior pointer does.
type withBytes[T any] struct {
	m    Message
	data T
}

func inlineMessage[T any](n int) (*Message, []byte) {
	w := new(withBytes[T])
	return &w.m, unsafe.Slice((*byte)(unsafe.Pointer(&w.data)), unsafe.Sizeof(w.data))[:n:n]
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
