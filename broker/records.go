package broker

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/record"
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

// errRecord is a record that does not decode.
var errRecord = record.ErrMalformed

// --- writing ---

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
	b = record.AppendUvarint(b, unixMilli(m.Expiry))
	b = record.AppendString(b, m.Topic)
	if m.Props != nil {
		b = appendProps(b, m.Props)
	}
	return append(b, m.body()...)
}

// appendProps encodes the forwarded properties.
func appendProps(b []byte, p *packet.Properties) []byte {
	b = record.AppendUvarint(b, p.Present&forwarded)
	b = append(b, p.PayloadFormat)
	b = record.AppendString(b, p.ContentType)
	b = record.AppendString(b, p.ResponseTopic)
	b = record.AppendBytes(b, p.CorrelationData)
	b = record.AppendUvarint(b, uint64(len(p.User)))
	for _, u := range p.User {
		b = record.AppendString(b, u.Key)
		b = record.AppendString(b, u.Value)
	}
	return b
}

// --- reading ---

// reader decodes a record (package record), with the broker's own
// fields: the version byte, a message's head.
type reader struct{ record.Reader }

// version reads the version byte; a record of another version is not read
// further.
func (r *reader) version(what string) {
	if v := r.Byte(); v != recordV1 && r.Err == nil {
		r.Err = fmt.Errorf("%s record version %d: %w", what, v, errRecord)
		r.B = nil
	}
}

// decodeMessage decodes a message body. The result owns its memory.
func decodeMessage(rec []byte) (*message, error) {
	r := reader{record.Reader{B: rec}}
	flags, expiry, topic, props := r.messageHead()
	if r.Err != nil {
		return nil, r.Err
	}
	m := &message{QoS: flags & 3, Retain: flags&msgRetain != 0, Expiry: expiry, Props: props}
	buf := make([]byte, len(topic)+len(r.B))
	copy(buf, topic)
	copy(buf[len(topic):], r.B)
	m.Topic = string(buf[:len(topic)])
	m.Payload = buf[len(topic):len(buf):len(buf)]
	return m, nil
}

// messageHead reads a message body up to its payload, which it leaves in
// r.B: the flags, the expiry, the topic (aliasing the record) and the
// properties.
func (r *reader) messageHead() (flags byte, expiry time.Time, topic []byte, props *packet.Properties) {
	flags, expiry, topic = r.messageTop()
	if flags&msgProps != 0 {
		props = r.props()
	}
	return flags, expiry, topic, props
}

// messageTop reads a message body up to its topic: messageHead without
// the properties.
func (r *reader) messageTop() (flags byte, expiry time.Time, topic []byte) {
	r.version("message")
	flags = r.Byte()
	if flags&3 == 3 {
		r.Fail() // no message has QoS 3
	}
	expiry = fromUnixMilli(r.Uvarint())
	topic = r.Bytes()
	return flags, expiry, topic
}

func (r *reader) props() *packet.Properties {
	p := &packet.Properties{Present: r.Uvarint() & forwarded}
	p.PayloadFormat = r.Byte()
	p.ContentType = r.Str()
	p.ResponseTopic = r.Str()
	if cd := r.Bytes(); len(cd) > 0 || p.Has(packet.PropCorrelationData) {
		p.CorrelationData = append([]byte(nil), cd...)
	}
	// A user property takes at least its two lengths: a count the rest of
	// the record cannot hold is malformed, and one it can is allocated once.
	n := r.Uvarint()
	if n > uint64(len(r.B))/2 {
		r.Fail()
		return p
	}
	if n > 0 {
		p.User = make([]packet.UserProperty, 0, n)
	}
	for i := uint64(0); i < n && r.Err == nil; i++ {
		p.User = append(p.User, packet.UserProperty{Key: r.Str(), Value: r.Str()})
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
	b = record.AppendUvarint(b, unixMilli(e.expiry))
	b = record.AppendUvarint(b, uint64(e.size))
	b = record.AppendUvarint(b, uint64(len(e.subIDs)))
	for _, id := range e.subIDs {
		b = record.AppendUvarint(b, uint64(id))
	}
	return b
}

func decodeEntry(rec []byte) (queueEntry, error) {
	r := reader{record.Reader{B: rec}}
	r.version("queue entry")
	var e queueEntry
	if len(r.B) < 8 {
		return e, errRecord
	}
	e.msgID = binary.BigEndian.Uint64(r.B)
	r.B = r.B[8:]
	flags := r.Byte()
	if flags&3 == 3 {
		r.Fail() // no delivery has QoS 3
	}
	e.qos, e.retain, e.released = flags&3, flags&entryRetain != 0, flags&entryReleased != 0
	e.expiry = fromUnixMilli(r.Uvarint())
	e.size = int(r.Uvarint())
	n := r.Uvarint() // each id takes at least a byte
	if n > uint64(len(r.B)) {
		r.Fail()
	} else if n > 0 {
		e.subIDs = make([]uint32, 0, n)
	}
	for i := uint64(0); i < n && r.Err == nil; i++ {
		e.subIDs = append(e.subIDs, uint32(r.Uvarint()))
	}
	return e, r.Err
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
	b = record.AppendString(b, s.uid)
	b = binary.BigEndian.AppendUint32(b, s.expiry)
	b = record.AppendUvarint(b, unixMilli(s.offlineSince))
	b = record.AppendUvarint(b, uint64(len(s.subs)))
	for _, sub := range s.subs {
		b = record.AppendString(b, sub.key)
		b = append(b, sub.qos|sub.opts)
		b = record.AppendUvarint(b, uint64(sub.subID))
	}
	if s.user == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = record.AppendString(b, s.user.Username)
		b = append(b, boolByte(s.user.HasUsername))
		b = record.AppendString(b, s.user.Listener)
	}
	if s.will == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = record.AppendUvarint(b, unixMilli(s.willAt))
	b = record.AppendUvarint(b, uint64(willExpiry(s.will)))
	return record.AppendBytes(b, appendMessage(nil, s.will))
}

func decodeSession(rec []byte) (*sessionRecord, error) {
	r := reader{record.Reader{B: rec}}
	r.version("session")
	s := &sessionRecord{uid: r.Str()}
	if len(r.B) < 4 {
		return nil, errRecord
	}
	s.expiry = binary.BigEndian.Uint32(r.B)
	r.B = r.B[4:]
	s.offlineSince = fromUnixMilli(r.Uvarint())
	n := r.Uvarint() // each subscription takes at least three bytes
	if n > uint64(len(r.B))/3 {
		r.Fail()
	} else if n > 0 {
		s.subs = make([]storedSub, 0, n)
	}
	for i := uint64(0); i < n && r.Err == nil; i++ {
		key := r.Str()
		o := r.Byte()
		if o&3 == 3 {
			r.Fail() // no subscription has QoS 3
		}
		s.subs = append(s.subs, storedSub{key: key, qos: o & 3, opts: o &^ 3, subID: uint32(r.Uvarint())})
	}
	if r.Byte() == 1 {
		s.user = &auth.Client{Username: r.Str(), HasUsername: r.Byte() == 1, Listener: r.Str()}
	}
	if r.Byte() == 1 {
		s.willAt = fromUnixMilli(r.Uvarint())
		willExpiry := uint32(r.Uvarint())
		body := r.Bytes()
		if r.Err == nil {
			w, err := decodeMessage(body)
			if err != nil {
				return nil, err
			}
			setWillExpiry(w, willExpiry)
			s.will = w
		}
	}
	return s, r.Err
}
