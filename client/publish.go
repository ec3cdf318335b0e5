package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/petrelmq/petrel/packet"
)

// Publish sends m and, at QoS 1 and 2, waits for its PUBACK or PUBCOMP; at
// QoS 0 it returns once m is queued. m.PacketID is ignored: the client picks
// one. The code is the acknowledgement's reason code (MQTT 5; Success
// otherwise); a failure code also comes back as a *ReasonError.
//
// When ctx ends first Publish returns ctx.Err(), and a message already sent
// stays in flight: the server may still deliver it. m is encoded before
// Publish waits for the acknowledgement; its memory is the caller's again
// once the message is queued.
func (c *Client) Publish(ctx context.Context, m *packet.Publish) (packet.ReasonCode, error) {
	if m.QoS == 0 {
		return packet.Success, c.publish0(ctx, m)
	}
	id, o, err := c.publishQoS(ctx, m, nil, true)
	if err != nil {
		return 0, err
	}
	r := c.await(ctx, id, o)
	return r.code, r.err
}

// PublishAsync queues m and returns: the client encodes m before it
// returns, so m and its payload are the caller's again at once. At QoS 1
// and 2 done, if not nil, is called with the outcome once the server has
// acknowledged m or the connection has ended; at QoS 0 it is called before
// PublishAsync returns. done runs on the read goroutine, or on the one that
// ends the connection: it must be quick and must not wait for the server
// (see Options.OnMessage).
//
// When the in-flight window is full PublishAsync waits for room until ctx is
// done, then returns ErrInflightFull: with a context that is already done it
// never waits for the window. An error means m was not sent and done will
// not be called.
func (c *Client) PublishAsync(ctx context.Context, m *packet.Publish, done func(packet.ReasonCode, error)) error {
	if m.QoS == 0 {
		if err := c.publish0(ctx, m); err != nil {
			return err
		}
		if done != nil {
			done(packet.Success, nil)
		}
		return nil
	}
	_, _, err := c.publishQoS(ctx, m, done, false)
	return err
}

// publish0 queues a QoS 0 message.
func (c *Client) publish0(ctx context.Context, m *packet.Publish) error {
	if err := c.lockOutput(ctx); err != nil {
		return err
	}
	err := c.appendPublishLocked(m)
	c.mu.Unlock()
	return err
}

// publishQoS queues a QoS 1 or 2 message under a new packet identifier,
// holding a token of the in-flight window until it is acknowledged.
func (c *Client) publishQoS(ctx context.Context, m *packet.Publish, done func(packet.ReasonCode, error),
	wait bool) (uint16, *op, error) {
	if m.QoS > 2 {
		return 0, nil, fmt.Errorf("client: PUBLISH QoS %d", m.QoS)
	}
	if err := c.acquire(ctx); err != nil {
		if !wait && ctx.Err() != nil {
			err = ErrInflightFull
		}
		return 0, nil, err
	}
	if err := c.lockOutput(ctx); err != nil {
		<-c.window
		return 0, nil, err
	}
	id, o, err := c.newOpLocked(packet.PUBLISH)
	if err != nil {
		c.mu.Unlock()
		<-c.window
		return 0, nil, err
	}
	p := *m
	p.PacketID = id
	if err := c.appendPublishLocked(&p); err != nil {
		c.freeLocked(id, o)
		c.mu.Unlock()
		<-c.window
		return 0, nil, err
	}
	o.qos, o.window, o.wait, o.cb = m.QoS, true, wait, done
	c.mu.Unlock()
	return id, o, nil
}

// appendPublishLocked checks m against the server's limits, encodes it and
// wakes the writer.
func (c *Client) appendPublishLocked(m *packet.Publish) error {
	if m.QoS > c.maxQoS {
		return fmt.Errorf("client: QoS %d is above the server's maximum QoS %d", m.QoS, c.maxQoS)
	}
	if m.Retain && !c.retainOK {
		return errors.New("client: the server does not support retained messages")
	}
	n := len(c.out)
	out, err := packet.AppendPublish(c.out, m, c.version)
	if err != nil {
		return fmt.Errorf("client: PUBLISH: %w", err)
	}
	if c.maxOut > 0 && len(out)-n > c.maxOut {
		c.out = out[:n]
		return ErrPacketTooLarge
	}
	c.out = out
	if c.opts.Trace != nil {
		c.tracePublish(*m)
	}
	c.kick()
	return nil
}

// tracePublish takes the message by value so that callers' copies stay on
// their stacks.
func (c *Client) tracePublish(p packet.Publish) { c.trace(true, &p) }

// onPuback completes a QoS 1 publish.
func (c *Client) onPuback(a *packet.Ack) {
	c.mu.Lock()
	o := c.lookupLocked(packet.PUBLISH, a.PacketID)
	if o == nil || o.qos != 1 {
		c.mu.Unlock()
		return
	}
	c.finishLocked(a.PacketID, o, ackResult(a))
}

// onPubrec answers PUBREC with PUBREL, or ends the flow on a failure code
// [MQTT-4.3.3]. A PUBREC for an unknown packet identifier gets PUBREL too
// (0x92 in MQTT 5), so the server's side of the flow completes.
func (c *Client) onPubrec(a *packet.Ack) {
	c.mu.Lock()
	o := c.lookupLocked(packet.PUBLISH, a.PacketID)
	switch {
	case o == nil || o.qos != 2:
		code := packet.Success
		if c.version == packet.V5 {
			code = packet.PacketIdentifierNotFound
		}
		if !a.Code.IsError() {
			c.appendAckLocked(packet.PUBREL, a.PacketID, code)
		}
	case a.Code.IsError():
		c.finishLocked(a.PacketID, o, ackResult(a))
		return
	default:
		o.rel = true
		c.appendAckLocked(packet.PUBREL, a.PacketID, packet.Success)
	}
	c.mu.Unlock()
}

// onPubcomp completes a QoS 2 publish.
func (c *Client) onPubcomp(a *packet.Ack) {
	c.mu.Lock()
	o := c.lookupLocked(packet.PUBLISH, a.PacketID)
	if o == nil || !o.rel {
		c.mu.Unlock()
		return
	}
	c.finishLocked(a.PacketID, o, ackResult(a))
}

// ackResult is the outcome an acknowledgement carries.
func ackResult(a *packet.Ack) result {
	r := result{code: a.Code}
	if a.Code.IsError() {
		r.err = &ReasonError{Packet: a.Kind, Code: a.Code, Reason: strings.Clone(a.Props.ReasonString)}
	}
	return r
}
