//go:build linux

// Command relayfloor is the least an epoll server that copies can do to
// relay MQTT 3.1.1 QoS 1 messages, to tell what a broker adds from what
// the kernel costs, as connfloor does for connects. One thread reads each
// PUBLISH once into a buffer of its own (the kernel's copy in), acknowledges
// it, and writes it to every client that subscribed, header and payload in
// one writev (the kernel's copy out); a write the socket cannot take whole
// waits in a queue that holds the buffer, not a copy of it. No topics (every
// SUBSCRIBE subscribes to everything), no sessions, no retained messages,
// no store, nothing after a disconnect; a PUBLISH at QoS 0 or 2 closes its
// connection. With "splice", a large payload's pages move socket → pipe →
// socket instead of being copied. docs/BENCHMARKS.md ("Large payloads")
// runs the large preset against it as against the brokers:
//
//	taskset -c 0 go run ./scripts/relayfloor PORT [splice]
//	petrel bench preset large -p PORT --broker-pid PID ...
//
// Loopback only.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/scripts/internal/floornet"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: relayfloor PORT [splice]")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor: port:", err)
		os.Exit(2)
	}
	splice := len(os.Args) > 2 && os.Args[2] == "splice"
	if err := serve(port, splice); err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
}

// smallRead is what a read asks for when no large packet is under way: a
// large one's first bytes land here and are copied to its own buffer, the
// rest is read straight into that.
const smallRead = 4096

// msg is a PUBLISH's payload-bearing part (topic, payload), shared by the
// writes to every subscriber until the last is done with it.
type msg struct {
	buf  []byte
	refs int
}

type pending struct {
	hdr  []byte // the fixed header and what follows it up to the topic
	m    *msg   // nil for a packet all in hdr
	body []byte // m.buf's bytes to send
	// In splice mode, the rest of the payload: pipeN bytes in a pipe.
	pipe  int
	pipeN int
}

// spliceIn is a large PUBLISH whose payload is being spliced from its
// socket into a pipe: head holds what came before it through the small
// buffer (fixed header, topic, packet id, the payload's first bytes).
type spliceIn struct {
	head   []byte
	hl     int // the fixed header's length in head
	pipe   int
	left   int // payload bytes still in the socket
	inPipe int
}

type conn struct {
	fd     int
	small  []byte // smallRead bytes; small[r:w] not yet parsed
	r, w   int
	big    *msg // the large packet being read, big.buf[:bigN] read so far
	bigN   int
	bigHdr int // the fixed header's length in big.buf
	spl    *spliceIn
	sub    bool
	nextID uint16
	out    []pending // what the socket has not taken yet, in order
	outOff int       // how much of out[0] it has
	outEv  bool      // EPOLLOUT is asked for
}

type relay struct {
	ep    int
	conns map[int]*conn
	free  []*msg // payload buffers to reuse
	iov   []unix.Iovec
	// splice: a large payload goes socket → pipe → socket, its pages
	// moved rather than copied; pipes are pooled.
	splice bool
	pipes  []int
}

func serve(port int, splice bool) error {
	runtime.LockOSThread()
	ln, err := floornet.Listen(port, false)
	if err != nil {
		return err
	}
	ep, err := floornet.Epoll(ln)
	if err != nil {
		return err
	}
	rl := &relay{ep: ep, conns: make(map[int]*conn), splice: splice}
	events := make([]unix.EpollEvent, 256)
	fmt.Println("listening on", port)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == ln {
				floornet.AcceptAll(ln, ep, func(c int) { rl.conns[c] = &conn{fd: c, small: make([]byte, smallRead)} })
				continue
			}
			c := rl.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && !rl.flush(c) {
				rl.close(c)
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && !rl.readable(c) {
				rl.close(c)
			}
		}
	}
}

func (rl *relay) close(c *conn) {
	for _, p := range c.out {
		rl.unref(p.m)
		if p.pipe != 0 {
			rl.putPipe(p.pipe)
		}
	}
	rl.unref(c.big)
	if c.spl != nil {
		rl.putPipe(c.spl.pipe)
	}
	delete(rl.conns, c.fd)
	unix.Close(c.fd)
}

// readable reads what the socket has and handles every whole packet in it;
// false when the connection is over.
func (rl *relay) readable(c *conn) bool {
	for {
		if c.spl != nil {
			sp := c.spl
			m, err := unix.Splice(c.fd, nil, sp.pipe, nil, sp.left, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if err == unix.EAGAIN {
				return true
			}
			if err != nil || m <= 0 {
				return false
			}
			sp.left -= int(m)
			sp.inPipe += int(m)
			if sp.left == 0 {
				c.spl = nil
				if !rl.publish(c, sp.head, sp.hl, nil, sp) {
					return false
				}
			}
			continue
		}
		if c.big != nil {
			m, err := unix.Read(c.fd, c.big.buf[c.bigN:])
			if err == unix.EAGAIN {
				return true
			}
			if err != nil || m <= 0 {
				return false
			}
			c.bigN += m
			if c.bigN == len(c.big.buf) {
				big := c.big
				c.big = nil
				if !rl.publish(c, big.buf, c.bigHdr, big, nil) {
					return false
				}
			}
			continue
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
		} else if c.w == len(c.small) {
			c.w = copy(c.small, c.small[c.r:c.w])
			c.r = 0
		}
		m, err := unix.Read(c.fd, c.small[c.w:])
		if err == unix.EAGAIN {
			return true
		}
		if err != nil || m <= 0 {
			return false
		}
		c.w += m
		if !rl.parse(c) {
			return false
		}
	}
}

// parse handles the whole packets in c.small[c.r:c.w]; a packet too large
// for what is left moves, with what has come of it, to a buffer of its own.
func (rl *relay) parse(c *conn) bool {
	for c.r < c.w {
		b := c.small[c.r:c.w]
		h, hl, err := packet.ParseFixedHeader(b, 0)
		if err == packet.ErrIncomplete {
			return true
		}
		if err != nil {
			return false
		}
		size := hl + h.Remaining
		if size > len(b) {
			if size <= len(c.small) {
				return true // wait for the rest in small
			}
			if h.Type != packet.PUBLISH {
				return false // only a PUBLISH may be large
			}
			if rl.splice {
				// Through the packet id here, the rest spliced.
				if len(b) < hl+2 || len(b) < hl+2+int(binary.BigEndian.Uint16(b[hl:]))+2 {
					return true
				}
				sp := &spliceIn{head: append([]byte(nil), b...), hl: hl, pipe: rl.getPipe(), left: size - len(b)}
				if sp.pipe < 0 {
					return false
				}
				c.spl = sp
				c.r = c.w
				return true
			}
			c.big = rl.get(size)
			c.bigN = copy(c.big.buf, b)
			c.bigHdr = hl
			c.r = c.w
			return true
		}
		pkt := b[:size]
		c.r += size
		switch h.Type {
		case packet.CONNECT:
			rl.send(c, []byte{0x20, 2, 0, 0})
		case packet.PUBLISH:
			m := rl.get(size)
			copy(m.buf, pkt)
			if !rl.publish(c, m.buf, hl, m, nil) {
				return false
			}
		case packet.SUBSCRIBE: // to everything, at what was asked
			c.sub = true
			rl.send(c, []byte{0x90, 3, pkt[hl], pkt[hl+1], pkt[len(pkt)-1] & 3})
		case packet.PINGREQ:
			rl.send(c, []byte{0xd0, 0})
		case packet.DISCONNECT:
			return false
		}
	}
	return true
}

// publish acknowledges a QoS 1 PUBLISH and writes it to every subscriber
// with a packet id of its own: the subscriber's copy differs from the
// publisher's in that id alone (and DUP and RETAIN cleared), so its header
// is the publisher's up to the id. p is the packet from its first byte,
// whole in m.buf; or, spliced, up to where sp's pipe holds the rest (a tee
// of the pipe for every subscriber but the last).
func (rl *relay) publish(from *conn, p []byte, hl int, m *msg, sp *spliceIn) bool {
	if p[0]>>1&3 != 1 || len(p) < hl+2 {
		return false // QoS 0 and 2 are not what the floor measures
	}
	idAt := hl + 2 + int(binary.BigEndian.Uint16(p[hl:]))
	if len(p) < idAt+2 {
		return false
	}
	rl.send(from, []byte{0x40, 2, p[idAt], p[idAt+1]})
	var subs []*conn
	for _, s := range rl.conns {
		if s.sub {
			subs = append(subs, s)
		}
	}
	for i, s := range subs {
		if s.nextID++; s.nextID == 0 {
			s.nextID = 1
		}
		out := pending{hdr: binary.BigEndian.AppendUint16(append([]byte{0x32}, p[1:idAt]...), s.nextID)}
		if sp == nil {
			m.refs++
			out.m, out.body = m, p[idAt+2:]
		} else {
			out.hdr = append(out.hdr, p[idAt+2:]...) // the payload's first bytes
			out.pipe, out.pipeN = sp.pipe, sp.inPipe
			if i < len(subs)-1 {
				if out.pipe = rl.getPipe(); out.pipe < 0 {
					continue
				}
				if n, err := unix.Tee(sp.pipe, out.pipe, sp.inPipe, unix.SPLICE_F_NONBLOCK); err != nil || int(n) != sp.inPipe {
					rl.putPipe(out.pipe)
					continue
				}
			}
		}
		rl.queue(s, out)
	}
	switch {
	case sp == nil:
		rl.unref(m)
	case len(subs) == 0:
		rl.putPipe(sp.pipe)
	}
	return true
}

// getPipe returns a pipe from the pool, or a new one (see newPipe); -1 if
// none can be made.
func (rl *relay) getPipe() int {
	if n := len(rl.pipes); n > 0 {
		p := rl.pipes[n-1]
		rl.pipes = rl.pipes[:n-1]
		return p
	}
	return newPipe()
}

func (rl *relay) putPipe(p int) { rl.pipes = append(rl.pipes, p) }

// newPipe makes a pipe of 1 MiB and returns a descriptor that reads and
// writes it: /proc/self/fd/N of the read end, opened read-write, is the
// pipe itself, so one descriptor serves splice in, tee and splice out.
func newPipe() int {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return -1
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fds[0]), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	unix.Close(fds[0])
	unix.Close(fds[1])
	if err != nil {
		return -1
	}
	unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, 1<<20)
	return fd
}

func (rl *relay) send(c *conn, b []byte) { rl.queue(c, pending{hdr: b}) }

// queue writes p now if nothing waits before it, and keeps what the
// socket does not take.
func (rl *relay) queue(c *conn, p pending) {
	wasEmpty := len(c.out) == 0
	c.out = append(c.out, p)
	if wasEmpty {
		if !rl.flush(c) {
			return // the read side finds the error
		}
		if len(c.out) > 0 && !c.outEv {
			c.outEv = true
			unix.EpollCtl(rl.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.fd)})
		}
	}
}

// flush writes what waits, in one writev while the socket takes it all.
func (rl *relay) flush(c *conn) bool {
	for len(c.out) > 0 {
		if p := &c.out[0]; p.pipe != 0 {
			if c.outOff < len(p.hdr) {
				n, err := unix.SendmsgN(c.fd, p.hdr[c.outOff:], nil, nil, unix.MSG_MORE|unix.MSG_DONTWAIT)
				if err == unix.EAGAIN {
					return true
				}
				if err != nil {
					return false
				}
				if c.outOff += n; c.outOff < len(p.hdr) {
					return true
				}
			}
			n, err := unix.Splice(p.pipe, nil, c.fd, nil, p.pipeN, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if err == unix.EAGAIN {
				return true
			}
			if err != nil {
				return false
			}
			if p.pipeN -= int(n); p.pipeN > 0 {
				return true
			}
			rl.putPipe(p.pipe)
			c.out[0] = pending{}
			c.out, c.outOff = c.out[1:], 0
			continue
		}
		rl.iov = rl.iov[:0]
		off, total := c.outOff, 0
		for _, p := range c.out {
			if p.pipe != 0 {
				break
			}
			for _, b := range [2][]byte{p.hdr, p.body} {
				if off >= len(b) {
					off -= len(b)
					continue
				}
				b = b[off:]
				off = 0
				var v unix.Iovec
				v.Base = &b[0]
				v.SetLen(len(b))
				rl.iov = append(rl.iov, v)
				total += len(b)
			}
			if len(rl.iov) >= 64 {
				break
			}
		}
		n, err := writev(c.fd, rl.iov)
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			return false
		}
		full := n < total
		n += c.outOff
		for len(c.out) > 0 && c.out[0].pipe == 0 && n >= len(c.out[0].hdr)+len(c.out[0].body) {
			n -= len(c.out[0].hdr) + len(c.out[0].body)
			rl.unref(c.out[0].m)
			c.out[0] = pending{}
			c.out = c.out[1:]
		}
		c.outOff = n
		if full {
			return true // the socket is full: EPOLLOUT says when it is not
		}
	}
	c.out = c.out[:0:0]
	if c.outEv {
		c.outEv = false
		unix.EpollCtl(rl.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
	return true
}

func writev(fd int, iov []unix.Iovec) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (rl *relay) get(size int) *msg {
	for i := len(rl.free) - 1; i >= 0; i-- {
		if m := rl.free[i]; cap(m.buf) >= size {
			rl.free[i] = rl.free[len(rl.free)-1]
			rl.free = rl.free[:len(rl.free)-1]
			m.buf, m.refs = m.buf[:size], 1
			return m
		}
	}
	return &msg{buf: make([]byte, size), refs: 1}
}

func (rl *relay) unref(m *msg) {
	if m == nil {
		return
	}
	if m.refs--; m.refs == 0 && len(rl.free) < 64 {
		rl.free = append(rl.free, m)
	}
}
