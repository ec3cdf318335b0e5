package client

import (
	"context"
	"fmt"
)

// Output buffering. Senders encode into Client.out under the lock; the
// writer swaps it with its spare buffer and writes it in one call, so all
// that accumulated during a Write goes out in the next.
const (
	// maxBuffered is how much output may wait before senders of new
	// requests wait for the writer (acks never wait). One packet larger
	// than this is let in when the buffer is empty.
	maxBuffered = 1 << 20
	// maxKeptWriteBuffer is the largest buffer kept for reuse.
	maxKeptWriteBuffer = 4 << 20
)

// kick wakes the writer unless it is already awake. c.mu is held.
func (c *Client) kick() {
	if c.writing {
		return
	}
	c.writing = true
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop is the writer goroutine. It sleeps until kicked and then writes
// until the output buffer is empty.
func (c *Client) writeLoop() {
	defer close(c.writerDone)
	for {
		select {
		case <-c.wake:
		case <-c.closed:
			return
		}
		if err := c.flush(); err != nil {
			c.shutdown(fmt.Errorf("client: connection lost: %w", err))
			return
		}
	}
}

// flush writes the output buffer until it stays empty.
func (c *Client) flush() error {
	for {
		c.mu.Lock()
		if len(c.out) == 0 || c.err != nil {
			c.writing = false
			if c.drained != nil && len(c.out) == 0 {
				close(c.drained)
				c.drained = nil
			}
			c.mu.Unlock()
			return nil
		}
		buf := c.out
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()

		_, err := c.conn.Write(buf)
		c.lastWrite.Store(nanotime())

		c.mu.Lock()
		if cap(buf) <= maxKeptWriteBuffer {
			c.spare = buf[:0]
		}
		if c.space != nil {
			close(c.space)
			c.space = nil
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// lockOutput takes c.mu once the output buffer has room for a new request,
// or returns why it cannot (without the lock).
func (c *Client) lockOutput(ctx context.Context) error {
	c.mu.Lock()
	for {
		if c.closing {
			err := c.err
			c.mu.Unlock()
			if err == nil {
				err = ErrClosed
			}
			return err
		}
		if len(c.out) < maxBuffered {
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-c.closed:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
}
