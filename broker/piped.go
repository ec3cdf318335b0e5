package broker

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/internal/pipebuf"
	"github.com/petrelmq/petrel/packet"
)

// Piped payloads. The end of a big PUBLISH's payload can stay in a kernel
// pipe (internal/pipebuf) from the socket it came on to the sockets it goes
// to: the event loop splices it in (SpliceReader), and each subscriber's
// output tees it out (listener.PieceWriter's pipe pieces), so its bytes
// are never copied.
// Copying is most of what a big payload costs: a broker that copies does
// not get past about 1.9× Mosquitto's bytes per CPU-second at 256 KiB, one
// that moves pages does (docs/BENCHMARKS.md, "Large payloads").
//
// Only the fast path keeps the bytes in the pipe: a PUBLISH from an
// event-loop client, past what a check of its payload or a hook must see
// (finishPiped's keepsPiped), delivered to event-loop subscribers
// without properties of their own. Everything else that needs the bytes
// (a store write, a TLS or WebSocket subscriber, an MQTT 5 delivery with
// properties, a queue, the admin API) asks message.body, which copies them
// out once, and the message then keeps both.

// pipedTail is the end of a message's payload, n bytes in a pipe that
// nothing takes bytes out of: readers tee them. It belongs to the
// message's bigBuf, and goes with it (putBigBuf).
type pipedTail struct {
	pipe *pipebuf.Pipe
	n    int
	// owner lets a cleanup give the pipe back when the message is left to
	// the garbage collector (pinned by a durable session's store writes)
	// instead of recycled.
	owner *pipeOwner

	// mu guards whole: the whole payload in memory, once body needed it.
	mu    sync.Mutex
	whole *bigBuf
}

// size is the length of m's payload: Payload, and a piped tail's bytes.
func (m *message) size() int {
	if m.big != nil && m.big.tail != nil {
		return len(m.Payload) + m.big.tail.n
	}
	return len(m.Payload)
}

// tail returns m's piped tail, or nil.
func (m *message) tail() *pipedTail {
	if m.big == nil {
		return nil
	}
	return m.big.tail
}

// body returns m's whole payload. For a piped message that is a copy, made
// on the first call and kept with the message.
func (m *message) body() []byte {
	t := m.tail()
	if t == nil {
		return m.Payload
	}
	return t.bytes(m.Payload)
}

func (t *pipedTail) bytes(head []byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(head) + t.n
	if t.whole == nil {
		bb := getBigBuf(n)
		copy(bb.b, head)
		if err := t.pipe.CopyOut(bb.b[len(head):n]); err != nil {
			// Only when no descriptor is left for a scratch pipe: the
			// message cannot be read, which must not pass unseen.
			panic("broker: reading a piped payload: " + err.Error())
		}
		t.whole = bb
	}
	return t.whole.b[:n:n]
}

// newPipedTail makes the tail of n bytes in pipe.
func newPipedTail(pipe *pipebuf.Pipe, n int) *pipedTail {
	t := &pipedTail{pipe: pipe, n: n, owner: &pipeOwner{pipe: pipe, held: n}}
	runtime.AddCleanup(t, (*pipeOwner).release, t.owner)
	return t
}

// release gives back what t holds; nobody reads it any more.
func (t *pipedTail) release() {
	t.owner.release()
	if t.whole != nil {
		putBigBuf(t.whole)
	}
}

// pipeOwner releases a pipe once, whether its tail was recycled or
// collected.
type pipeOwner struct {
	pipe *pipebuf.Pipe
	held int // the bytes in the pipe
	done atomic.Bool
}

func (o *pipeOwner) release() {
	if !o.done.Swap(true) {
		o.pipe.Release(o.held)
	}
}

// pipedIn is a big PUBLISH being read with its payload's end into a pipe:
// head holds its first bytes (the whole of its fixed and variable headers,
// and the start of the payload), the pipe got of the want bytes that
// follow.
type pipedIn struct {
	head      *bigBuf
	headLen   int
	pipe      *pipebuf.Pipe
	got, want int
}

// maxPipes bounds the pipes a server has open at once (two descriptors
// each, and never more than an eighth of the process's: pipebuf.Limit):
// the ends of payloads in flight and the copies the event loops splice
// out. Past it, payloads stay in memory.
const maxPipes = 512

// minPiped is the smallest end of a payload worth a pipe: below it, the
// system calls cost more than the copy they save.
const minPiped = 32 << 10

// A piped payload's end is always lent to the output (writePlainPublish).
var _ [minPiped - minLent]struct{}

// piping returns the piped packet c is reading, or nil. mu is held.
func (c *conn) piping() *pipedIn {
	if r := c.inR.Load(); r != nil {
		return r.piped
	}
	return nil
}

// startPiped begins reading the big PUBLISH that rest starts with its
// payload's end into a pipe, and reports whether it did. rest is the
// connection's input so far (in the driver's buffer or c.in); it is
// copied. mu is held.
func (c *conn) startPiped(rest []byte) bool {
	pipes := c.ln.srv.pipes
	if pipes == nil || len(rest) < 2 || rest[0]>>4 != byte(packet.PUBLISH) || c.state != stateConnected || c.paused ||
		c.flags.Load()&(flagClosing|flagHeldBack) != 0 {
		return false
	}
	h, n, err := packet.ParseFixedHeader(rest, c.ln.srv.opts.MaxPacketSize)
	if err != nil {
		return false
	}
	total := n + h.Remaining
	want := total - len(rest)
	if want < minPiped || want > pipebuf.MaxBytes {
		return false
	}
	if _, whole := packet.PublishHeadLen(rest, n, h, c.version); !whole {
		return false // it is decoded from what rest holds (finishPiped)
	}
	if _, goroutineDriver := c.nc.(listener.Underlying); goroutineDriver {
		return false // it would hand the bytes over in memory anyway
	}
	pipe := pipes.Get()
	if pipe == nil {
		return false
	}
	bb := getBigBuf(len(rest))
	copy(bb.b, rest)
	c.setPiping(&pipedIn{head: bb, headLen: len(rest), pipe: pipe, want: want})
	return true
}

// setPiping records the piped packet under way, or none. mu is held.
func (c *conn) setPiping(pi *pipedIn) {
	if pi != nil {
		c.inRareMake().piped = pi
		c.flags.Or(flagPiping)
		return
	}
	if r := c.inR.Load(); r != nil {
		r.piped = nil
	}
	c.flags.And(^uint32(flagPiping))
}

// ReadPipe implements listener.SpliceReader.
func (c *conn) ReadPipe() (*pipebuf.Pipe, int) {
	if c.flags.Load()&flagPiping == 0 {
		return nil, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pi := c.piping()
	if pi == nil || c.paused || c.isClosing() || c.state == stateClosed {
		return nil, 0
	}
	return pi.pipe, pi.want - pi.got
}

// DataSpliced implements listener.SpliceReader.
func (c *conn) DataSpliced(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pi := c.piping()
	if pi == nil || c.isClosing() || c.state == stateClosed {
		return
	}
	if n == 0 {
		// The pipe is full: the rest comes into memory.
		c.unpipe()
		return
	}
	pi.got += n
	if pi.got < pi.want {
		c.statShard().in.bytes.Add(uint64(n))
		return
	}
	c.finishPiped(n)
}

// unpipe turns the piped packet under way into one assembled in memory,
// as bigBuffer would have started it: for input that comes in any other
// way than ReadPipe said, and for a full pipe. mu is held.
func (c *conn) unpipe() {
	pi := c.piping()
	c.setPiping(nil)
	total := pi.headLen + pi.want
	bb, err := pipeToMemory(pi.head.b[:pi.headLen], pi.pipe, pi.got, total)
	putBigBuf(pi.head)
	if err != nil {
		c.fail(violation(packet.UnspecifiedError, "reading a piped payload: %v", err))
		return
	}
	if c.in.Bytes() != nil {
		bufpool.Put(c.in.Bytes())
	}
	c.in.Set(bb.b[: pi.headLen+pi.got : total])
	c.setInBig(bb)
}

// dropPiped releases a piped packet that will not be finished (the
// connection is gone). mu is held.
func (c *conn) dropPiped() {
	if pi := c.piping(); pi != nil {
		c.setPiping(nil)
		pi.pipe.Release(pi.got)
		putBigBuf(pi.head)
	}
}

// pipeToMemory returns a pooled buffer of size bytes that holds start,
// then the n bytes in pipe, which it takes out and releases.
func pipeToMemory(start []byte, pipe *pipebuf.Pipe, n, size int) (*bigBuf, error) {
	bb := getBigBuf(size)
	copy(bb.b, start)
	if err := pipe.ReadFull(bb.b[len(start) : len(start)+n]); err != nil {
		pipe.Release(-1)
		putBigBuf(bb)
		return nil, err
	}
	pipe.Release(0)
	return bb, nil
}

// finishPiped handles the piped packet, now all read: it is decoded from
// its head, and its message keeps the pipe, or when something on the way
// in must read the payload (keepsPiped), has it read into memory first.
// read is the bytes of the last read, for the statistics. mu is held.
func (c *conn) finishPiped(read int) {
	if c.paused || c.flags.Load()&flagHeldBack != 0 {
		// Not to be handled now (the driver does not read a paused
		// connection, so this is for safety): it waits in c.in, whole, for
		// the input taken up when the pause ends.
		c.unpipe()
		c.statShard().in.bytes.Add(uint64(read))
		return
	}
	pi := c.piping()
	c.setPiping(nil)
	head := pi.head.b[:pi.headLen]
	h, n, err := packet.ParseFixedHeader(head, c.ln.srv.opts.MaxPacketSize)
	if err == nil {
		// Decoded as a PUBLISH whose payload is what head holds of it.
		h.Remaining = len(head) - n
		var t tally
		dec := decoders.Get().(*packet.Decoder)
		dec.Version = c.version
		var p packet.Packet
		p, err = dec.Decode(h, head[n:])
		if err == nil {
			t.count(head[0])
			var big *bigBuf
			if big, err = c.pipedBig(p.(*packet.Publish), pi); err == nil {
				err = c.handlePublish(p.(*packet.Publish), true, big, &t)
			}
		}
		decoders.Put(dec)
		c.statShard().addIn(&t, read)
	}
	if pi.pipe != nil { // not handed on
		pi.pipe.Release(pi.got)
		putBigBuf(pi.head)
	}
	if err != nil {
		c.fail(err)
		return
	}
	c.partial.Store(0)
	c.notePiped()
	if c.state == stateConnected && c.keepAliveMs > 0 {
		c.deadline.Store(c.keepAliveDeadline(time.Now())) // [MQTT-3.1.2-24]
	}
}

// peekSize is the read after a piped packet: enough for the next one's
// headers, little to copy if it is piped too.
const peekSize = 4 << 10

// notePiped readies the small read that follows a piped packet (peek):
// the next is likely big too. mu is held.
func (c *conn) notePiped() {
	if r := c.inRareMake(); r.peek == nil {
		r.peek = bufpool.Get(peekSize)[:peekSize]
	}
}

// peeked takes the bytes of a small read (ReadBuffer's peek) as input,
// and gives the buffer back unless they started another piped packet. mu
// is held.
func (c *conn) peeked(b []byte) {
	if c.isClosing() || c.state == stateClosed {
		return
	}
	c.consume(b, len(b)) // keeps a copy of what it does not handle
	if c.piping() == nil {
		c.dropPeek()
	}
}

// dropPeek gives back the small read's buffer. mu is held.
func (c *conn) dropPeek() {
	if r := c.inR.Load(); r != nil && r.peek != nil {
		bufpool.Put(r.peek)
		r.peek = nil
	}
}

// pipedBig returns the buffer the message of p, decoded from pi's head,
// is to keep: the head with the pipe as its tail, or when the message may
// not keep it (keepsPiped), a buffer that holds the whole payload, which
// p.Payload then is (p's other fields still point into the head, which is
// left to the garbage collector). Either way pi no longer has the pipe.
func (c *conn) pipedBig(p *packet.Publish, pi *pipedIn) (*bigBuf, error) {
	pipe := pi.pipe
	pi.pipe = nil
	if c.keepsPiped(p) {
		pi.head.tail = newPipedTail(pipe, pi.want)
		return pi.head, nil
	}
	n := len(p.Payload) + pi.want
	bb, err := pipeToMemory(p.Payload, pipe, pi.want, n)
	if err != nil {
		return nil, violation(packet.UnspecifiedError, "reading a piped payload: %v", err)
	}
	p.Payload = bb.b[:n:n]
	return bb, nil
}

// keepsPiped reports whether the message of p, a piped PUBLISH, may keep
// its payload's end in the pipe: nothing on the way in needs to read it.
func (c *conn) keepsPiped(p *packet.Publish) bool {
	s := c.ln.srv
	return !p.Retain && !s.publishHooks && s.opts.Authorizer == nil && s.opts.Cluster == nil &&
		s.opts.Limits.PublishBytesRate <= 0 &&
		!(p.Props.Has(packet.PropPayloadFormat) && p.Props.PayloadFormat == 1)
}
