package broker

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/internal/record"
)

// retainedRec is a retained message as the retained index keeps it: the
// first byte of one allocation that holds the length of the message's
// body and then its body, as the store keeps it (appendMessage: flags,
// expiry, topic, properties, payload).
//
// A retained message may sit in memory for months and is delivered only
// when a subscription that matches it is made, so it is kept small rather
// than ready: a *message (96 bytes and a pointer from the index, more
// with properties) is made from it for each delivery (deliverable). The
// index holds a pointer to the first byte, which keeps the allocation, and
// reads the length there; 20 bytes of payload on a topic of 17 take one
// 48-byte allocation.
//
// A record is never written once made, so it is read without a lock, and
// its body is what the store is given.
type retainedRec struct{ first byte }

// newRetainedRec makes the record of m.
func newRetainedRec(m *message) *retainedRec {
	n := 2 + uvarintLen(unixMilli(m.Expiry)) + uvarintLen(uint64(len(m.Topic))) + len(m.Topic) + m.size()
	if m.Props != nil {
		n += propsSize(m.Props)
	}
	b := make([]byte, 0, uvarintLen(uint64(n))+n)
	b = binary.AppendUvarint(b, uint64(n))
	b = appendMessage(b, m)
	if len(b) != cap(b) {
		panic(fmt.Sprintf("broker: a retained record of %d bytes, %d expected", len(b), cap(b)))
	}
	return (*retainedRec)(unsafe.Pointer(&b[0]))
}

// retainedRecOf checks that body is a message body and makes a record of
// a copy of it (body may be a store's buffer). It returns the message's
// topic and expiry.
func retainedRecOf(body []byte) (*retainedRec, string, time.Time, error) {
	r := reader{record.Reader{B: body}}
	_, expiry, _, _ := r.messageHead()
	if r.Err != nil {
		return nil, "", time.Time{}, r.Err
	}
	b := make([]byte, 0, uvarintLen(uint64(len(body)))+len(body))
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	rec := (*retainedRec)(unsafe.Pointer(&b[0]))
	return rec, rec.topic(), expiry, nil
}

// body returns the message's body: what appendMessage wrote.
func (rec *retainedRec) body() []byte {
	p := unsafe.Pointer(&rec.first)
	var n uint64
	k := 0
	for shift := 0; ; shift += 7 {
		b := *(*byte)(unsafe.Add(p, k))
		k++
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	return unsafe.Slice((*byte)(unsafe.Add(p, k)), n)
}

// top reads the flags, the expiry and the topic, which aliases the record.
func (rec *retainedRec) top() (flags byte, expiry time.Time, topic string) {
	r := reader{record.Reader{B: rec.body()}}
	flags, expiry, t := r.messageTop()
	if len(t) > 0 {
		topic = unsafe.String(&t[0], len(t))
	}
	return flags, expiry, topic
}

// topic returns the message's topic; it aliases the record.
func (rec *retainedRec) topic() string {
	_, _, t := rec.top()
	return t
}

// expired reports whether the message's lifetime has run out at now.
func (rec *retainedRec) expired(now time.Time) bool {
	_, expiry, _ := rec.top()
	return !expiry.IsZero() && !now.Before(expiry)
}

// deliverable makes the message to deliver: counted (pool.go), as a
// PUBLISH's is, so that the caller unrefs it once it has pushed it to the
// sessions it goes to.
func (rec *retainedRec) deliverable() *message {
	m, err := forwardedMessage(rec.body())
	if err != nil {
		// Records are checked when they are made.
		panic(fmt.Sprintf("broker: a retained record does not decode: %v", err))
	}
	return m
}

// message makes a message that owns its memory and is not counted, for
// a caller outside the broker.
func (rec *retainedRec) message() *message {
	m, err := decodeMessage(rec.body())
	if err != nil {
		panic(fmt.Sprintf("broker: a retained record does not decode: %v", err))
	}
	return m
}
