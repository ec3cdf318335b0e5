package client

import (
	"context"
	"errors"

	"github.com/petrelmq/petrel/packet"
)

// op is a request waiting for the server: a QoS 1 or 2 PUBLISH, a SUBSCRIBE
// or an UNSUBSCRIBE. Its packet identifier is its index in Client.ops plus
// one. Slots are made at the high-water mark of requests in flight and
// reused, so a steady flow allocates nothing.
type op struct {
	kind   packet.Type // PUBLISH, SUBSCRIBE or UNSUBSCRIBE; 0 when the slot is free
	qos    byte        // of a PUBLISH
	rel    bool        // QoS 2: PUBREC received, PUBREL sent
	wait   bool        // a goroutine waits on ch for the result
	ended  bool        // the result was sent on ch and not yet collected
	window bool        // holds a token of the in-flight window
	cb     func(packet.ReasonCode, error)
	ch     chan result // capacity 1, made with the slot
}

// result is how a request ended.
type result struct {
	code  packet.ReasonCode
	codes []packet.ReasonCode // SUBACK and UNSUBACK
	err   error
}

// errNoPacketIDs refuses a request when all 65535 packet identifiers are in
// use.
var errNoPacketIDs = errors.New("client: all 65535 packet identifiers in use")

// newOpLocked takes a free packet identifier for a request of kind.
func (c *Client) newOpLocked(kind packet.Type) (uint16, *op, error) {
	var id uint16
	if n := len(c.free); n > 0 {
		id = c.free[n-1]
		c.free = c.free[:n-1]
	} else if len(c.ops) < 65535 {
		c.ops = append(c.ops, &op{ch: make(chan result, 1)})
		id = uint16(len(c.ops))
	} else {
		return 0, nil, errNoPacketIDs
	}
	o := c.ops[id-1]
	*o = op{kind: kind, ch: o.ch}
	return id, o, nil
}

// freeLocked returns a finished request's packet identifier to the free
// list.
func (c *Client) freeLocked(id uint16, o *op) {
	*o = op{ch: o.ch}
	c.free = append(c.free, id)
}

// lookupLocked finds the request of kind waiting with packet identifier id.
func (c *Client) lookupLocked(kind packet.Type, id uint16) *op {
	if id == 0 || int(id) > len(c.ops) {
		return nil
	}
	if o := c.ops[id-1]; o.kind == kind && !o.ended {
		return o
	}
	return nil
}

// endLocked ends request o with r. A waiting goroutine gets r on o.ch and
// frees the slot once it has it; otherwise the slot is freed now and the
// callback, if any, is returned for the caller to run with r once the lock
// is released.
func (c *Client) endLocked(id uint16, o *op, r result) func(packet.ReasonCode, error) {
	if o.window {
		<-c.window
	}
	if o.wait {
		o.ended, o.window = true, false
		o.ch <- r
		return nil
	}
	cb := o.cb
	c.freeLocked(id, o)
	return cb
}

// complete ends the request of kind with id, if there is one.
func (c *Client) complete(kind packet.Type, id uint16, r result) {
	c.mu.Lock()
	o := c.lookupLocked(kind, id)
	if o == nil {
		c.mu.Unlock()
		return
	}
	c.finishLocked(id, o, r)
}

// finishLocked ends o with r, releases mu and then runs o's callback, if
// any.
func (c *Client) finishLocked(id uint16, o *op, r result) {
	cb := c.endLocked(id, o, r)
	c.mu.Unlock()
	if cb != nil {
		cb(r.code, r.err)
	}
}

// failOpsLocked ends every request with err; it returns the callbacks to
// run, with err, once the lock is released.
func (c *Client) failOpsLocked(err error) []func(packet.ReasonCode, error) {
	var cbs []func(packet.ReasonCode, error)
	for i, o := range c.ops {
		if o.kind == 0 || o.ended {
			continue
		}
		if cb := c.endLocked(uint16(i+1), o, result{err: err}); cb != nil {
			cbs = append(cbs, cb)
		}
	}
	return cbs
}

// await waits for the result of request o, sent with packet identifier id.
// If ctx ends first the request stays in flight, its result discarded.
func (c *Client) await(ctx context.Context, id uint16, o *op) result {
	select {
	case r := <-o.ch:
		c.mu.Lock()
		c.freeLocked(id, o)
		c.mu.Unlock()
		return r
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !o.ended {
		o.wait = false // whoever ends it frees the slot
		c.mu.Unlock()
		return result{err: ctx.Err()}
	}
	c.mu.Unlock()
	r := <-o.ch
	c.mu.Lock()
	c.freeLocked(id, o)
	c.mu.Unlock()
	return r
}

// acquire takes a token of the in-flight window, waiting until ctx is done
// or the connection ends.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.window <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.window <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return c.Err()
	}
}
