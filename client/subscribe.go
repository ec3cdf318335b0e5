package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/petrelmq/petrel/packet"
)

// Subscribe sends SUBSCRIBE and waits for SUBACK. It returns one code per
// subscription: the granted QoS, or a failure (IsError) for a filter the
// server refused; a refused filter is not an error of Subscribe. props are
// the MQTT 5 SUBSCRIBE properties (Subscription Identifier, User Property).
// Messages may arrive, retained ones first, before Subscribe returns.
func (c *Client) Subscribe(ctx context.Context, subs []packet.Subscription, props packet.Properties) ([]packet.ReasonCode, error) {
	if len(subs) == 0 {
		return nil, errors.New("client: SUBSCRIBE needs at least one filter")
	}
	r := c.request(ctx, packet.SUBSCRIBE, func(id uint16) packet.Packet {
		return &packet.Subscribe{PacketID: id, Props: props, Subs: subs}
	})
	if r.err == nil && len(r.codes) != len(subs) {
		return r.codes, fmt.Errorf("client: SUBACK has %d codes for %d filters", len(r.codes), len(subs))
	}
	return r.codes, r.err
}

// Unsubscribe sends UNSUBSCRIBE and waits for UNSUBACK. It returns one code
// per filter; before MQTT 5, which has no codes, all are Success.
func (c *Client) Unsubscribe(ctx context.Context, filters []string, props packet.Properties) ([]packet.ReasonCode, error) {
	if len(filters) == 0 {
		return nil, errors.New("client: UNSUBSCRIBE needs at least one filter")
	}
	r := c.request(ctx, packet.UNSUBSCRIBE, func(id uint16) packet.Packet {
		return &packet.Unsubscribe{PacketID: id, Props: props, Filters: filters}
	})
	if r.err == nil && r.codes == nil {
		r.codes = make([]packet.ReasonCode, len(filters))
	}
	if r.err == nil && len(r.codes) != len(filters) {
		return r.codes, fmt.Errorf("client: UNSUBACK has %d codes for %d filters", len(r.codes), len(filters))
	}
	return r.codes, r.err
}

// request sends the packet build makes with a new packet identifier and
// waits for its acknowledgement.
func (c *Client) request(ctx context.Context, kind packet.Type, build func(id uint16) packet.Packet) result {
	if err := c.lockOutput(ctx); err != nil {
		return result{err: err}
	}
	id, o, err := c.newOpLocked(kind)
	if err != nil {
		c.mu.Unlock()
		return result{err: err}
	}
	p := build(id)
	out, err := packet.Append(c.out, p, c.version)
	if err == nil && c.maxOut > 0 && len(out)-len(c.out) > c.maxOut {
		err = ErrPacketTooLarge
	}
	if err != nil {
		c.freeLocked(id, o)
		c.mu.Unlock()
		if !errors.Is(err, ErrPacketTooLarge) {
			err = fmt.Errorf("client: %v: %w", kind, err)
		}
		return result{err: err}
	}
	c.out = out
	c.trace(true, p)
	o.wait = true
	c.kick()
	c.mu.Unlock()
	r := c.await(ctx, id, o)
	r.codes = slices.Clip(r.codes)
	return r
}
