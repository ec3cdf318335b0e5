package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/petrelmq/petrel/packet"
)

// Message is a message received. It aliases the client's read buffer: it and
// everything it points to are valid only during Options.OnMessage. Clone
// what you keep.
type Message struct {
	Topic    string // resolved from the Topic Alias when the server sent one
	Payload  []byte
	QoS      byte
	Retain   bool
	Dup      bool
	PacketID uint16            // zero at QoS 0
	Props    packet.Properties // MQTT 5 properties, empty before MQTT 5
}

// Clone returns a copy of m that shares no memory with the read buffer.
func (m *Message) Clone() *Message {
	p := packet.Clone(&packet.Publish{Topic: m.Topic, Payload: m.Payload, Props: m.Props}).(*packet.Publish)
	c := *m
	c.Topic, c.Payload, c.Props = p.Topic, p.Payload, p.Props
	return &c
}

// Read buffer sizes: a connection starts with minReadBuffer and keeps a
// grown buffer up to maxKeptReadBuffer once it is empty again.
const (
	minReadBuffer     = 4 << 10
	maxKeptReadBuffer = 1 << 20
)

// next returns the next packet from the server, reading as needed. The
// packet aliases rbuf and the decoder: it is valid until the next call.
func (c *Client) next() (packet.Packet, error) {
	for {
		h, n, err := packet.ParseFixedHeader(c.rbuf[c.rs:c.re], c.opts.MaxPacketSize)
		switch {
		case err == nil && c.re-c.rs >= n+h.Remaining:
			body := c.rbuf[c.rs+n : c.rs+n+h.Remaining]
			c.rs += n + h.Remaining
			p, err := c.dec.Decode(h, body)
			if err != nil {
				return c.oldConnack(h, body, err)
			}
			return p, nil
		case err == nil:
			c.makeRoom(n + h.Remaining)
		case err == packet.ErrIncomplete:
			c.makeRoom(5)
		default:
			return nil, fmt.Errorf("client: from the server: %w", err)
		}
		k, err := c.conn.Read(c.rbuf[c.re:])
		c.re += k
		if err != nil && k == 0 {
			return nil, err
		}
	}
}

// makeRoom makes rbuf able to hold a packet of size bytes from rs, and
// leaves free space after re to read into.
func (c *Client) makeRoom(size int) {
	if c.rs == c.re {
		c.rs, c.re = 0, 0
		if len(c.rbuf) > maxKeptReadBuffer {
			c.rbuf = make([]byte, minReadBuffer)
		}
	}
	if size > len(c.rbuf)-c.rs || c.re == len(c.rbuf) {
		if size > len(c.rbuf) {
			grown := make([]byte, max(size, 2*len(c.rbuf)))
			c.re = copy(grown, c.rbuf[c.rs:c.re])
			c.rs, c.rbuf = 0, grown
			return
		}
		c.re = copy(c.rbuf, c.rbuf[c.rs:c.re])
		c.rs = 0
	}
}

// oldConnack accepts the one packet an MQTT 5 client may get in 3.1.1's
// format: a server that does not speak MQTT 5 refuses it with a 3.1.1
// CONNACK, return code 1 (unacceptable protocol version).
func (c *Client) oldConnack(h packet.FixedHeader, body []byte, err error) (packet.Packet, error) {
	if c.version == packet.V5 && h.Type == packet.CONNACK && len(body) == 2 && body[1] != 0 {
		return &packet.Connack{Code: packet.ReasonCode(body[1])}, nil
	}
	return nil, fmt.Errorf("client: from the server: %w", err)
}

// readPackets handles packets until the connection fails; it returns why.
func (c *Client) readPackets() error {
	for {
		p, err := c.next()
		if err != nil {
			return fmt.Errorf("client: connection lost: %w", err)
		}
		if c.opts.Trace != nil {
			c.mu.Lock()
			c.trace(false, p)
			c.mu.Unlock()
		}
		if err := c.handle(p); err != nil {
			return err
		}
	}
}

func (c *Client) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.onPublish(p)
	case *packet.Ack:
		switch p.Kind {
		case packet.PUBACK:
			c.onPuback(p)
		case packet.PUBREC:
			c.onPubrec(p)
		case packet.PUBREL:
			c.onPubrel(p)
		case packet.PUBCOMP:
			c.onPubcomp(p)
		}
		return nil
	case *packet.Suback:
		c.complete(packet.SUBSCRIBE, p.PacketID, result{codes: slices.Clone(p.Codes)})
		return nil
	case *packet.Unsuback:
		codes := slices.Clone(p.Codes)
		if c.version != packet.V5 {
			codes = nil // filled in by the waiter, which knows how many filters it sent
		}
		c.complete(packet.UNSUBSCRIBE, p.PacketID, result{codes: codes})
		return nil
	case *packet.Pingresp:
		c.pingSent.Store(0)
		return nil
	case *packet.Disconnect:
		return &DisconnectError{Code: p.Code, Reason: strings.Clone(p.Props.ReasonString),
			ServerReference: strings.Clone(p.Props.ServerReference)}
	case *packet.Auth:
		return errors.New("client: the server sent AUTH; enhanced authentication is not supported")
	}
	return fmt.Errorf("client: the server sent %v, which only a client may send", p.Type())
}

// onPublish delivers a message and acknowledges it. A QoS 2 message is
// delivered once: its packet id is remembered until PUBREL, and a
// duplicate only gets its PUBREC again.
func (c *Client) onPublish(p *packet.Publish) error {
	topic := p.Topic
	if c.version == packet.V5 && p.Props.Has(packet.PropTopicAlias) {
		a := int(p.Props.TopicAlias)
		if a > len(c.aliases) {
			return fmt.Errorf("client: the server sent topic alias %d above the maximum %d", a, len(c.aliases))
		}
		if topic != "" {
			if c.aliases[a-1] != topic {
				c.aliases[a-1] = strings.Clone(topic)
			}
		} else if topic = c.aliases[a-1]; topic == "" {
			return fmt.Errorf("client: the server used topic alias %d before setting it", a)
		}
	}
	if p.QoS == 2 {
		if c.qos2in == nil {
			c.qos2in = make(map[uint16]struct{})
		}
		if _, dup := c.qos2in[p.PacketID]; dup {
			// Its PUBREC again, unless the application has yet to ack it:
			// then it goes when the application does.
			c.mu.Lock()
			if !c.awaitingAckLocked(packet.PUBREC, p.PacketID) {
				c.appendAckLocked(packet.PUBREC, p.PacketID, packet.Success)
			}
			c.mu.Unlock()
			return nil
		}
		c.qos2in[p.PacketID] = struct{}{}
	}
	if c.opts.ManualAck && p.QoS > 0 {
		kind := packet.PUBACK
		if p.QoS == 2 {
			kind = packet.PUBREC
		}
		c.mu.Lock()
		c.unacked = append(c.unacked, unacked{kind: kind, id: p.PacketID})
		c.mu.Unlock()
	}
	if cb := c.opts.OnMessage; cb != nil {
		c.msg = Message{Topic: topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Dup: p.Dup,
			PacketID: p.PacketID, Props: p.Props}
		cb(&c.msg)
		c.msg = Message{}
	}
	if c.opts.ManualAck {
		return nil
	}
	switch p.QoS {
	case 1:
		c.sendAck(packet.PUBACK, p.PacketID, packet.Success)
	case 2:
		c.sendAck(packet.PUBREC, p.PacketID, packet.Success)
	}
	return nil
}

// unacked is a message received with ManualAck whose acknowledgement waits
// for the application (done: it has called Ack, an earlier one has not).
type unacked struct {
	kind packet.Type // PUBACK or PUBREC
	id   uint16
	done bool
}

// awaitingAckLocked reports whether the acknowledgement kind of packet id
// waits for the application. c.mu is held.
func (c *Client) awaitingAckLocked(kind packet.Type, id uint16) bool {
	for _, u := range c.unacked {
		if u.kind == kind && u.id == id {
			return true
		}
	}
	return false
}

// Ack acknowledges a QoS 1 or 2 message received with Options.ManualAck
// (m may be a clone): its PUBACK or PUBREC is sent once every message
// received before it has been acknowledged too. It may be called from any
// goroutine, OnMessage's included. Acking a message twice, one of QoS 0,
// or after the connection ended does nothing.
func (c *Client) Ack(m *Message) {
	if m.QoS == 0 {
		return
	}
	kind := packet.PUBACK
	if m.QoS == 2 {
		kind = packet.PUBREC
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.unacked {
		if u := &c.unacked[i]; u.kind == kind && u.id == m.PacketID && !u.done {
			u.done = true
			break
		}
	}
	n := 0
	for n < len(c.unacked) && c.unacked[n].done {
		c.appendAckLocked(c.unacked[n].kind, c.unacked[n].id, packet.Success)
		n++
	}
	if n > 0 {
		c.unacked = append(c.unacked[:0], c.unacked[n:]...)
	}
}

// onPubrel completes an inbound QoS 2 flow.
func (c *Client) onPubrel(a *packet.Ack) {
	code := packet.Success
	if _, ok := c.qos2in[a.PacketID]; ok {
		delete(c.qos2in, a.PacketID)
	} else if c.version == packet.V5 {
		code = packet.PacketIdentifierNotFound
	}
	c.sendAck(packet.PUBCOMP, a.PacketID, code)
}

// sendAck queues an acknowledgement. Acks never wait for room in the output
// buffer: the read goroutine must not block on the writer.
func (c *Client) sendAck(kind packet.Type, id uint16, code packet.ReasonCode) {
	c.mu.Lock()
	c.appendAckLocked(kind, id, code)
	c.mu.Unlock()
}

func (c *Client) appendAckLocked(kind packet.Type, id uint16, code packet.ReasonCode) {
	if c.err != nil {
		return
	}
	a := packet.Ack{Kind: kind, PacketID: id, Code: code}
	c.out, _ = packet.AppendAck(c.out, &a, c.version)
	if c.opts.Trace != nil {
		c.traceAck(a)
	}
	c.kick()
}

// traceAck takes the ack by value so that appendAckLocked's stays on its
// stack.
func (c *Client) traceAck(a packet.Ack) { c.trace(true, &a) }
