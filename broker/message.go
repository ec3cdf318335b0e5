package broker

import (
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/packet"
)

// message is one accepted application message. It is immutable once built
// and shared by every session it is delivered to; what differs per delivery
// (packet id, QoS, DUP, RETAIN, subscription identifiers, topic alias) lives
// in the delivery, not in a copy.
type message struct {
	Topic string
	// Payload is the payload, or only its start when the rest is in a
	// pipe (big.tail, piped.go): size and body see the whole.
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
	// messages.
	big *bigBuf
	// refs counts the holders of a message that goes back to its pool once
	// they are done with it (pool.go); 0 for one that is left to the
	// garbage collector.
	refs   atomic.Int32
	QoS    byte
	Retain bool
	// ephemeral: kept as retained in memory only, never in the store. The
	// broker's own $SYS values (sys.go) are, as they describe one run.
	ephemeral bool
}

// forwarded are the properties a PUBLISH carries on to subscribers as they
// came; Message Expiry is forwarded too, but recomputed. [MQTT-3.3.2-4..20]
const forwarded = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData

// releasedMessage stands for the message of a QoS 2 delivery whose PUBREC came:
// only PUBREL is left to send, so the body can go. It is shared and never
// written.
var releasedMessage = &message{}

// newMessage copies what it keeps out of a decoded PUBLISH, which aliases
// the connection's read buffer. The message is not counted (pool.go): the
// garbage collector has it once nobody refers to it.
func newMessage(p *packet.Publish, origin uint64) *message {
	m := makeMessage(p, origin, false, nil)
	m.refs.Store(0)
	return m
}

// makeMessage makes the message of a decoded PUBLISH. It copies the topic
// and payload, into the same allocation as the message when they are
// small; properties, which MQTT 3 messages never have, take their own.
// When owned, p's bytes are in a buffer nobody reuses, and the message
// keeps the payload where it is; big is that buffer when it is pooled.
// The message is counted (pool.go), with one holder: its caller.
func makeMessage(p *packet.Publish, origin uint64, owned bool, big *bigBuf) *message {
	m := makeMessageParts(p.Topic, p.Payload, p.QoS, p.Retain, origin, owned, big)
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

// makeMessageParts is makeMessage from the message's parts, without
// properties (a message from another node has them decoded already).
func makeMessageParts(topicIn string, payloadIn []byte, qos byte, retain bool, origin uint64, owned bool, big *bigBuf) *message {
	payload := payloadIn[:len(payloadIn):len(payloadIn)]
	if !owned && len(payloadIn) > maxInline && len(payloadIn) <= maxPooledBig {
		// Too big to share the message's allocation: the payload goes into
		// a pooled buffer (bigbuf.go), as a big PUBLISH's is read into one.
		big = getBigBuf(len(payloadIn))
		payload = big.b[:copy(big.b, payloadIn):len(payloadIn)]
		owned = true
	}
	n := len(topicIn)
	if !owned {
		n += len(payloadIn)
	}
	m, buf := allocMessage(n)
	copy(buf, topicIn)
	if !owned {
		copy(buf[len(topicIn):], payloadIn)
		payload = buf[len(topicIn):len(buf):len(buf)]
	}
	// The topic is copied even when the payload is not, so that the
	// message's allocation says its size (recycle).
	topic := ""
	if len(topicIn) > 0 {
		topic = unsafe.String(&buf[0], len(topicIn))
	}
	*m = message{
		Topic:   topic,
		QoS:     qos,
		Retain:  retain,
		Payload: payload,
		origin:  origin,
	}
	switch {
	case !owned:
		m.refs.Store(1)
	case big != nil:
		m.big = big
		m.refs.Store(1)
	}
	return m
}

// inlineSizes are the sizes of topic and payload that share a message's
// allocation (one allocation per message instead of two); they fill Go's
// size classes (a message is 96 bytes: 96+32 = 128, ..., 96+416 = 512).
// Each is a multiple of 32, which inlineClasses relies on.
var inlineSizes = [...]int{32, 64, 96, 160, 256, maxInline}

const maxInline = 416

// inlineClasses maps (n+31)/32 to inlineClass(n): a lookup, where a
// search through inlineSizes took some 30 instructions of every message
// made.
var inlineClasses = func() (t [maxInline/32 + 1]uint8) {
	class := 0
	for k := range t {
		for k*32 > inlineSizes[class] {
			class++
		}
		t[k] = uint8(class)
	}
	return t
}()

// inlineClass returns the index in inlineSizes for n bytes, or -1 when n
// does not fit in a message's allocation.
func inlineClass(n int) int {
	if uint(n) > maxInline {
		return -1
	}
	return int(inlineClasses[(n+31)>>5])
}

// allocMessage returns a zero message and n bytes for its topic and
// payload, recycled (pool.go) or new.
func allocMessage(n int) (*message, []byte) {
	class := inlineClass(n)
	if class < 0 {
		return new(message), make([]byte, n)
	}
	if v := messagePools[class].Get(); v != nil {
		m := v.(*message) // zeroed by recycle
		return m, inlineBytes(m, inlineSizes[class])[:n:n]
	}
	switch class {
	case 0:
		return inlineMessage[[32]byte](n)
	case 1:
		return inlineMessage[[64]byte](n)
	case 2:
		return inlineMessage[[96]byte](n)
	case 3:
		return inlineMessage[[160]byte](n)
	case 4:
		return inlineMessage[[256]byte](n)
	default:
		return inlineMessage[[416]byte](n)
	}
}

// inlineBytes returns the size bytes that follow m in its allocation
// (withBytes).
func inlineBytes(m *message, size int) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(m), unsafe.Sizeof(message{}))), size)
}

// withBytes is a message followed by room for its bytes. The bytes hold no
// pointers, and a slice into them keeps the whole object alive, as any
// interior pointer does.
type withBytes[T any] struct {
	m    message
	data T
}

func inlineMessage[T any](n int) (*message, []byte) {
	w := new(withBytes[T])
	return &w.m, inlineBytes(&w.m, int(unsafe.Sizeof(w.data)))[:n:n]
}

// A will keeps its Message Expiry Interval in its properties until it is
// published: its lifetime starts then, not at CONNECT. publishWill turns
// it into Expiry, which is what is forwarded from then on. (v5)
func setWillExpiry(w *message, secs uint32) {
	if secs == 0 {
		return
	}
	if w.Props == nil {
		w.Props = new(packet.Properties)
	}
	w.Props.MessageExpiry = secs
	w.Props.Mark(packet.PropMessageExpiry)
}

// willExpiry returns what setWillExpiry kept, in seconds.
func willExpiry(w *message) uint32 {
	if w.Props == nil || !w.Props.Has(packet.PropMessageExpiry) {
		return 0
	}
	return w.Props.MessageExpiry
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
func (m *message) expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// remaining is the Message Expiry Interval to send on forwarding: the
// seconds left, rounded up. [MQTT-3.3.2-6]
func (m *message) remaining(now time.Time) uint32 {
	d := m.Expiry.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}
