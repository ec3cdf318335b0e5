package broker

import (
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/packet"
)

// Message is one accepted application message. It is immutable once built
// and shared by every session it is delivered to; what differs per delivery
// (packet id, QoS, DUP, RETAIN) lives in the delivery, not in a copy.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props holds the MQTT 5 properties forwarded with the message (nil when none).
	Props *packet.Properties
	// Expiry is when the message expires (zero: never).
	Expiry time.Time
	// origin identifies the publishing session, for No Local (0 for wills and the broker).
	origin uint64
}

// newMessage copies what it keeps out of a decoded PUBLISH, which aliases the
// connection's read buffer. Topic and payload share one allocation.
func newMessage(p *packet.Publish, origin uint64) *Message {
	buf := make([]byte, len(p.Topic)+len(p.Payload))
	copy(buf, p.Topic)
	copy(buf[len(p.Topic):], p.Payload)
	m := &Message{
		QoS:     p.QoS,
		Retain:  p.Retain,
		Payload: buf[len(p.Topic):len(buf):len(buf)],
		origin:  origin,
	}
	if len(p.Topic) > 0 {
		m.Topic = unsafe.String(&buf[0], len(p.Topic))
	}
	return m
}
