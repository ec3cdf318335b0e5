package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// The broker's records in the store are small versioned binary encodings.
// Each starts with a version byte so a later format can read an earlier one.
//
//	message   v1 | qos+flags | expiry (unix ms, varint) | topic | forwarded properties | payload
//	entry     v1 | message id | qos+flags | expiry | payload size | subscription ids
//	session   v1 | uid | expiry | offline since (unix ms) | subscriptions | identity | pending will
//
// Strings and byte fields are uvarint length-prefixed.

const recordV1 = 1

var errRecord = errors.New("malformed record")

// --- writing ---

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixMilli(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

func fromUnixMilli(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// Message flag bits, after the QoS in the low two bits.
const (
	msgRetain = 1 << 2
	msgProps  = 1 << 3
)

// appendMessage encodes m's body.
func appendMessage(b []byte, m *message) []byte {
	flags := m.QoS
	if m.Retain {
		flags |= msgRetain
	}
	if m.Props != nil {
		flags |= msgProps
	}
	b = append(b, recordV1, flags)
	b = appendUvarint(b, unixMilli(m.Expiry))
	b = appendStr(b, m.Topic)
	if m.Props != nil {
		b = appendProps(b, m.Props)
	}
	return append(b, m.Payload...)
}

// appendProps encodes the forwarded properties.
func appendProps(b []byte, p *packet.Properties) []byte {
	b = appendUvarint(b, p.Present&forwarded)
	b = append(b, p.PayloadFormat)
	b = appendStr(b, p.ContentType)
	b = appendStr(b, p.ResponseTopic)
	b = appendBytes(b, p.CorrelationData)
	b = appendUvarint(b, uint64(len(p.User)))
	for _, u := range p.User {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Value)
	}
	return b
}

// --- reading ---

// reader decodes a record, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errRecord
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.bytes()) }

// version reads the version byte; a record of another version is not read
// further.
func (r *reader) version(what string) {
	if v := r.byte(); v != recordV1 && r.err == nil {
		r.err = fmt.Errorf("%s record version %d: %w", what, v, errRecord)
		r.b = nil
	}
}

// decodeMessage decodes a message body. The result owns its memory.
func decodeMessage(rec []byte) (*message, error) {
	r := reader{b: rec}
	flags, expiry, topic, props := r.messageHead()
	if r.err != nil {
		return nil, r.err
	}
	m := &message{QoS: flags & 3, Retain: flags&msgRetain != 0, Expiry: expiry, Props: props}
	buf := make([]byte, len(topic)+len(r.b))
	copy(buf, topic)
	copy(buf[len(topic):], r.b)
	m.Topic = string(buf[:len(topic)])
	m.Payload = buf[len(topic):len(buf):len(buf)]
	return m, nil
}

// messageHead reads a message body up to its payload, which it leaves in
// r.b: the flags, the expiry, the topic (aliasing the record) and the
// properties.
func (r *reader) messageHead() (flags byte, expiry time.Time, topic []byte, props *packet.Properties) {
	r.version("message")
	flags = r.byte()
	if flags&3 == 3 {
		r.fail() // no message has QoS 3
	}
	expiry = fromUnixMilli(r.uvarint())
	topic = r.bytes()
	if flags&msgProps != 0 {
		props = r.props()
	}
	return flags, expiry, topic, props
}

func (r *reader) props() *packet.Properties {
	p := &packet.Properties{Present: r.uvarint() & forwarded}
	p.PayloadFormat = r.byte()
	p.ContentType = r.str()
	p.ResponseTopic = r.str()
	if cd := r.bytes(); len(cd) > 0 || p.Has(packet.PropCorrelationData) {
		p.CorrelationData = append([]byte(nil), cd...)
	}
	// A user property takes at least its two lengths: a count the rest of
	// the record cannot hold is malformed, and one it can is allocated once.
	n := r.uvarint()
	if n > uint64(len(r.b))/2 {
		r.fail()
		return p
	}
	if n > 0 {
		p.User = make([]packet.UserProperty, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		p.User = append(p.User, packet.UserProperty{Key: r.str(), Value: r.str()})
	}
	return p
}

// Queue entry flags, after the QoS in the low two bits.
const (
	entryRetain   = 1 << 2
	entryReleased = 1 << 3 // QoS 2: PUBREC received; PUBREL is what is left
)

// queueEntry is the stored form of one delivery waiting for (or in flight
// to) a durable session.
type queueEntry struct {
	msgID    uint64
	qos      byte
	retain   bool
	released bool
	expiry   time.Time
	size     int // payload bytes, for the queue's byte limit
	subIDs   []uint32
}

func appendEntry(b []byte, e *queueEntry) []byte {
	flags := e.qos
	if e.retain {
		flags |= entryRetain
	}
	if e.released {
		flags |= entryReleased
	}
	b = append(b, recordV1)
	b = binary.BigEndian.AppendUint64(b, e.msgID)
	b = append(b, flags)
	b = appendUvarint(b, unixMilli(e.expiry))
	b = appendUvarint(b, uint64(e.size))
	b = appendUvarint(b, uint64(len(e.subIDs)))
	for _, id := range e.subIDs {
		b = appendUvarint(b, uint64(id))
	}
	return b
}

func decodeEntry(rec []byte) (queueEntry, error) {
	r := reader{b: rec}
	r.version("queue entry")
	var e queueEntry
	if len(r.b) < 8 {
		return e, errRecord
	}
	e.msgID = binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	flags := r.byte()
	if flags&3 == 3 {
		r.fail() // no delivery has QoS 3
	}
	e.qos, e.retain, e.released = flags&3, flags&entryRetain != 0, flags&entryReleased != 0
	e.expiry = fromUnixMilli(r.uvarint())
	e.size = int(r.uvarint())
	n := r.uvarint() // each id takes at least a byte
	if n > uint64(len(r.b)) {
		r.fail()
	} else if n > 0 {
		e.subIDs = make([]uint32, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		e.subIDs = append(e.subIDs, uint32(r.uvarint()))
	}
	return e, r.err
}

// Subscription option bits in a session record.
const (
	subNoLocal   = 1 << 2
	subRAP       = 1 << 3
	subCheckRead = 1 << 4
)

// sessionRecord is the stored form of a durable session.
type sessionRecord struct {
	uid          string       // names the session's queues
	user         *auth.Client // who connected last (for the authorizer); nil when unknown
	expiry       uint32
	offlineSince time.Time // zero while connected
	subs         []storedSub
	will         *message // a will waiting for its delay
	willAt       time.Time
}

type storedSub struct {
	key   string // the filter as subscribed, $share/ prefix included
	qos   byte
	opts  byte
	subID uint32
}

func appendSession(b []byte, s *sessionRecord) []byte {
	b = append(b, recordV1)
	b = appendStr(b, s.uid)
	b = binary.BigEndian.AppendUint32(b, s.expiry)
	b = appendUvarint(b, unixMilli(s.offlineSince))
	b = appendUvarint(b, uint64(len(s.subs)))
	for _, sub := range s.subs {
		b = appendStr(b, sub.key)
		b = append(b, sub.qos|sub.opts)
		b = appendUvarint(b, uint64(sub.subID))
	}
	if s.user == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendStr(b, s.user.Username)
		b = append(b, boolByte(s.user.HasUsername))
		b = appendStr(b, s.user.Listener)
	}
	if s.will == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendUvarint(b, unixMilli(s.willAt))
	b = appendUvarint(b, uint64(willExpiry(s.will)))
	return appendBytes(b, appendMessage(nil, s.will))
}

func decodeSession(rec []byte) (*sessionRecord, error) {
	r := reader{b: rec}
	r.version("session")
	s := &sessionRecord{uid: r.str()}
	if len(r.b) < 4 {
		return nil, errRecord
	}
	s.expiry = binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	s.offlineSince = fromUnixMilli(r.uvarint())
	n := r.uvarint() // each subscription takes at least three bytes
	if n > uint64(len(r.b))/3 {
		r.fail()
	} else if n > 0 {
		s.subs = make([]storedSub, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		key := r.str()
		o := r.byte()
		if o&3 == 3 {
			r.fail() // no subscription has QoS 3
		}
		s.subs = append(s.subs, storedSub{key: key, qos: o & 3, opts: o &^ 3, subID: uint32(r.uvarint())})
	}
	if r.byte() == 1 {
		s.user = &auth.Client{Username: r.str(), HasUsername: r.byte() == 1, Listener: r.str()}
	}
	if r.byte() == 1 {
		s.willAt = fromUnixMilli(r.uvarint())
		willExpiry := uint32(r.uvarint())
		body := r.bytes()
		if r.err == nil {
			w, err := decodeMessage(body)
			if err != nil {
				return nil, err
			}
			setWillExpiry(w, willExpiry)
			s.will = w
		}
	}
	return s, r.err
}
