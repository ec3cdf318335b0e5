package client

import (
	"time"

	"github.com/petrelmq/petrel/packet"
)

// keepAlive runs on its timer. The client must send a packet within every
// keep alive period [MQTT-3.1.2-23]: when it has written nothing for three
// quarters of the period it sends PINGREQ, and a PINGREQ left unanswered
// for a whole period ends the connection. A timer rather than a goroutine
// per connection: an idle client holds no goroutine for its keep alive.
func (c *Client) keepAlive() {
	now := nanotime()
	ka := int64(c.ka)
	sent := c.pingSent.Load()
	if sent != 0 && now-sent >= ka {
		c.shutdown(ErrKeepAliveTimeout)
		return
	}
	interval := ka * 3 / 4
	next := interval - (now - c.lastWrite.Load())
	if next <= 0 {
		if sent == 0 {
			sent = now
			c.pingSent.Store(now)
			c.sendPing()
		}
		next = interval
	}
	if sent != 0 {
		next = min(next, sent+ka-now)
	}
	c.mu.Lock()
	if c.err == nil {
		c.kaTimer.Reset(time.Duration(max(next, int64(time.Millisecond))))
	}
	c.mu.Unlock()
}

func (c *Client) sendPing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.out = append(c.out, byte(packet.PINGREQ)<<4, 0)
	if c.opts.Trace != nil {
		c.trace(true, &packet.Pingreq{})
	}
	c.kick()
}
