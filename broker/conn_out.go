package broker

import (
	"errors"
	"math"
	"strings"
	"time"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
)

// The output half of a connection: what goes to the client. Replies,
// acknowledgements held for a store commit and deliveries are encoded onto
// the outbound buffer under outMu, within the client's limits and
// Limits.MaxOutboundBytes, and the driver takes it (Output, OutputPieces).

// outRare is the output state of a connection that needed more than a
// buffer.
type outRare struct {
	// deferred holds replies that wait for a store commit, in the order the
	// client's packets came; any reply behind one waits too. [MQTT-4.6.0-2]
	deferred []deferredReply
	// lent are the big payloads the output refers to rather than copies
	// (lendPayload), in order; lentBytes is their length.
	lent      []lentPayload
	lentBytes int
	// closed is why the connection ended, for OnDisconnect (hooks.go);
	// ended is set once its end is reported.
	closed *DisconnectInfo
	ended  bool
	// aliases are the topic aliases the broker has set towards the client.
	aliases map[string]uint16
	// committedTo is the last commit group the connection heard of: the
	// replies of groups up to it are durable, and go once their cluster
	// work is done too.
	committedTo uint64
}

// lentPayload is a message's payload that goes out after out[:at].
type lentPayload struct {
	at int
	m  *message
}

// outRareLocked returns c.rare, making it if needed. outMu is held.
func (c *conn) outRareLocked() *outRare {
	if c.rare == nil {
		c.rare = new(outRare)
	}
	return c.rare
}

// deferredLocked returns the replies waiting for a commit. outMu is held.
func (c *conn) deferredLocked() []deferredReply {
	if c.rare == nil {
		return nil
	}
	return c.rare.deferred
}

// deferredReply is an acknowledgement (ack) or another reply (p) held until
// commit group `group` is on disk.
type deferredReply struct {
	group uint64
	ack   bareAck
	p     packet.Packet
	// wait, when not nil, is the cluster work the reply waits for as well
	// (cluster.go); failed says the store refused the reply's writes, and
	// drop that the reply is not to be sent at all.
	wait   *replyWait
	failed bool
	drop   bool
}

// bareAck is an acknowledgement without properties (packet.AppendBareAck),
// as the broker sends them: kept instead of a packet.Ack, whose properties
// took a deferred reply from 48 bytes to 320, and the deferred replies of a
// durable publisher were most of what the broker allocated.
type bareAck struct {
	Kind     packet.Type
	PacketID uint16
	Code     packet.ReasonCode
}

// Output implements listener.Endpoint: it hands the driver every pending byte.
func (c *conn) Output() []byte {
	c.outMu.Lock()
	b := c.out.Bytes()
	c.out.Set(nil)
	c.holdLocked(len(b))
	lent := c.takeLentLocked()
	c.outMu.Unlock()
	if lent != nil {
		b = flatten(b, lent)
	}
	return b
}

// flatten returns out with the lent payloads copied in where they go, for
// a driver that takes output in one piece.
func flatten(out []byte, lent []lentPayload) []byte {
	n := len(out)
	for _, l := range lent {
		n += l.m.size()
	}
	b := bufpool.Get(n)
	prev := 0
	for _, l := range lent {
		b = append(b, out[prev:l.at]...)
		b = append(b, l.m.body()...)
		prev = l.at
	}
	b = append(b, out[prev:]...)
	bufpool.Put(out)
	unrefLent(lent)
	return b
}

// appendPacket encodes p onto the outbound buffer without flushing.
func (c *conn) appendPacket(p packet.Packet) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.outClosed {
		return
	}
	if c.maxOut > 0 && !c.fits(p) {
		return
	}
	if c.out.Bytes() == nil {
		c.out.Set(bufpool.Get(512))
	}
	out, err := packet.Append(c.out.Bytes(), p, c.version)
	if err != nil {
		c.ln.srv.log.Error("encoding packet", "type", p.Type().String(), "client", c.clientID(), "err", err)
		return
	}
	c.out.Set(out)
	c.countSent(p.Type())
}

// fits keeps a packet within the client's Maximum Packet Size: it drops the
// Reason String and User Properties if that is enough, and otherwise
// reports false (the packet is not sent). [MQTT-3.1.2-25] (v5)
func (c *conn) fits(p packet.Packet) bool {
	if packet.Len(p, c.version) <= int(c.maxOut) {
		return true
	}
	var props *packet.Properties
	switch p := p.(type) {
	case *packet.Connack:
		props = &p.Props
	case *packet.Disconnect:
		props = &p.Props
	case *packet.Suback:
		props = &p.Props
	case *packet.Unsuback:
		props = &p.Props
	case *packet.Ack:
		props = &p.Props
	case *packet.Auth:
		props = &p.Props
	}
	if props != nil {
		props.Clear(packet.PropReasonString)
		props.Clear(packet.PropUser)
		if packet.Len(p, c.version) <= int(c.maxOut) {
			return true
		}
	}
	c.ln.srv.log.Debug("packet larger than the client's maximum packet size not sent", "client", c.clientID(),
		"type", p.Type().String(), "max", c.maxOut)
	return false
}

// writePacket appends p to the outbound buffer and asks the driver to flush.
func (c *conn) writePacket(p packet.Packet) {
	c.appendPacket(p)
	c.nc.Flush()
}

// ack sends an acknowledgement of the client's packet once commit group
// `group` is durable (0: nothing to wait for), keeping replies in order.
func (c *conn) ack(kind packet.Type, pid uint16, code packet.ReasonCode, group uint64) {
	c.ackAfter(kind, pid, code, group, nil)
}

// ackAfter is ack that also waits for cluster work (cluster.go).
func (c *conn) ackAfter(kind packet.Type, pid uint16, code packet.ReasonCode, group uint64, remote []*Pending) {
	w := c.waitAll(remote)
	c.outMu.Lock()
	if group == 0 && w == nil && len(c.deferredLocked()) == 0 {
		c.writeAckLocked(kind, pid, code)
		return
	}
	if !c.outClosed {
		r := c.outRareLocked()
		r.deferred = append(r.deferred, deferredReply{group: c.deferGroup(group), ack: bareAck{Kind: kind, PacketID: pid, Code: code}, wait: w})
	}
	c.outMu.Unlock()
	if w != nil && w.n.Load() == 0 {
		c.clusterReady() // done while it was being queued
	}
}

// reply sends p (SUBACK, UNSUBACK) once commit group `group` is durable.
func (c *conn) reply(p packet.Packet, group uint64) {
	c.replyAfter(p, group, nil)
}

// replyAfter is reply that also waits for cluster work (cluster.go).
func (c *conn) replyAfter(p packet.Packet, group uint64, remote []*Pending) {
	w := c.waitAll(remote)
	c.outMu.Lock()
	if group == 0 && w == nil && len(c.deferredLocked()) == 0 {
		c.outMu.Unlock()
		c.writePacket(p)
		return
	}
	if !c.outClosed {
		r := c.outRareLocked()
		r.deferred = append(r.deferred, deferredReply{group: c.deferGroup(group), p: p, wait: w})
	}
	c.outMu.Unlock()
	if w != nil && w.n.Load() == 0 {
		c.clusterReady()
	}
}

// clusterReady sends the replies whose cluster work is done and whose
// commit group is durable. Any goroutine.
func (c *conn) clusterReady() {
	c.outMu.Lock()
	g := uint64(0)
	if c.rare != nil {
		g = c.rare.committedTo
	}
	c.outMu.Unlock()
	c.committed(g, nil)
}

// deferGroup is the group a reply waits for: its own, or that of the reply
// ahead of it if later. outMu is held.
func (c *conn) deferGroup(group uint64) uint64 {
	if d := c.deferredLocked(); len(d) > 0 {
		group = max(group, d[len(d)-1].group)
	}
	return group
}

// committed implements commitWaiter: replies waiting for group g (and
// earlier) go out. If the commit failed, an MQTT 5 client is told with a
// failure code (0x97 when the disk is full); an MQTT 3 client, which has no
// way to be told, is disconnected and will publish again.
func (c *conn) committed(g uint64, err error) {
	c.outMu.Lock()
	n := 0
	failed, failedRelease, lost := false, false, false
	var unreceived []uint16
	var sent tally // counted once, below (stats.go)
	deferred := c.deferredLocked()
	if c.rare != nil && g > c.rare.committedTo {
		c.rare.committedTo = g
	}
	if err != nil {
		// The failure is marked on every reply of the group now, though
		// some may still wait for the cluster.
		for i := range deferred {
			r := &deferred[i]
			if r.group != g || r.failed {
				continue
			}
			r.failed = true
			failed = true
			if r.p == nil && r.ack.Kind == packet.PUBREL {
				// No PUBREL for a release the store does not have: the
				// client is disconnected instead, and the QoS 2 flow starts
				// over when it returns.
				failedRelease = true
				r.drop = true
				continue
			}
			if c.version != packet.V5 {
				r.drop = true
				continue
			}
			code := packet.UnspecifiedError
			if errors.Is(err, store.ErrFull) {
				code = packet.QuotaExceeded
			}
			switch p := r.p.(type) {
			case nil:
				r.ack.Code = code
			case *packet.Suback:
				for i := range p.Codes {
					p.Codes[i] = code
				}
			case *packet.Unsuback:
				for i := range p.Codes {
					p.Codes[i] = code
				}
			}
		}
	}
	for n < len(deferred) && deferred[n].group <= g && (deferred[n].wait == nil || deferred[n].wait.n.Load() == 0) {
		r := &deferred[n]
		n++
		if r.wait != nil && r.wait.failed.Load() && !r.failed {
			// A node the message went to was lost before it took it
			// (cluster.go): not acknowledged as delivered.
			r.failed, failed, lost = true, true, true
			if c.version == packet.V5 && r.p == nil && r.ack.Kind != packet.PUBREL {
				r.ack.Code = packet.UnspecifiedError
			} else {
				r.drop = true
			}
			if r.p == nil && r.ack.Kind == packet.PUBREC {
				// The client may send it again: a new message then, not a
				// repeat to be acknowledged unrouted. [MQTT-4.3.3-9] (v5)
				unreceived = append(unreceived, r.ack.PacketID)
			}
		}
		if c.outClosed || r.drop {
			continue
		}
		if c.out.Bytes() == nil {
			c.out.Set(bufpool.Get(512))
		}
		var out []byte
		var encErr error
		typ := r.ack.Kind
		if r.p != nil {
			out, encErr = packet.Append(c.out.Bytes(), r.p, c.version)
			typ = r.p.Type()
		} else {
			out = packet.AppendBareAck(c.out.Bytes(), r.ack.Kind, r.ack.PacketID, r.ack.Code, c.version)
		}
		if encErr == nil {
			c.out.Set(out)
			sent.countType(typ)
		}
	}
	if n > 0 {
		clear(deferred[:n])
		c.rare.deferred = deferred[n:]
		if len(c.rare.deferred) == 0 {
			c.rare.deferred = nil
		}
	}
	c.outMu.Unlock()
	if n > 0 {
		sh := c.statShard()
		sent.addTo(&sh.out.packets, &sh.out.msgs)
		c.nc.Flush()
	}
	if ss := c.sess.Load(); ss != nil && len(unreceived) > 0 {
		tx := txPool.Get().(*routeTx)
		for _, pid := range unreceived {
			ss.released(pid, tx)
		}
		tx.finish(c.ln.srv, nil)
		putTx(tx)
	}
	switch {
	case failedRelease:
		c.ln.srv.log.Warn("closing a connection: a QoS 2 release could not be stored", "client", c.clientID(), "err", err)
		code := packet.UnspecifiedError
		if errors.Is(err, store.ErrFull) {
			code = packet.QuotaExceeded
		}
		c.disconnectAs(closeStoreError, code, "the broker cannot store right now")
	case lost && c.version != packet.V5:
		c.ln.srv.log.Warn("closing an MQTT 3 connection: a node its message went to was lost before taking it",
			"client", c.clientID())
		c.noteClose(closeStoreError, packet.UnspecifiedError, "", errNodeLost)
		c.shutdown()
	case failed && c.version != packet.V5:
		c.ln.srv.log.Warn("closing an MQTT 3 connection: its message could not be stored", "client", c.clientID(), "err", err)
		c.noteClose(closeStoreError, packet.UnspecifiedError, "", commitError(err))
		c.shutdown()
	}
}

func (c *conn) writeAck(kind packet.Type, pid uint16, code packet.ReasonCode) {
	c.outMu.Lock()
	c.writeAckLocked(kind, pid, code)
}

// writeAckLocked is writeAck with outMu held; it unlocks it.
func (c *conn) writeAckLocked(kind packet.Type, pid uint16, code packet.ReasonCode) {
	if c.outClosed {
		c.outMu.Unlock()
		return
	}
	out := c.out.Bytes()
	if out == nil {
		out = bufpool.Get(512)
	}
	c.out.Set(packet.AppendBareAck(out, kind, pid, code, c.version)) // the broker's acks carry no properties
	c.outMu.Unlock()
	c.countSent(kind)
	c.nc.Flush()
}

// writePublish appends one delivery. For an MQTT 5 client it adds what is
// particular to this delivery: the remaining expiry, the subscription
// identifiers and a topic alias. It reports whether the message was
// written, and if not why (writeResult). Encoding straight into the
// outbound buffer costs one copy of the payload and no allocation.
func (c *conn) writePublish(d *delivery, pid uint16, dup bool) writeResult {
	m := d.msg
	if c.version != packet.V5 || (m.Props == nil && m.Expiry.IsZero() && len(d.subIDs) == 0 && c.aliasMax == 0) {
		return c.writePlainPublish(d, pid, dup)
	}
	p := packet.Publish{Topic: m.Topic, Payload: m.body(), QoS: d.qos, PacketID: pid, Dup: dup, Retain: d.retain}
	if m.Props != nil {
		p.Props = *m.Props
	}
	if !m.Expiry.IsZero() {
		p.Props.MessageExpiry = m.remaining(time.Now()) // [MQTT-3.3.2-6]
		p.Props.Mark(packet.PropMessageExpiry)
	}
	p.Props.SubscriptionIDs = d.subIDs
	c.outMu.Lock()
	res := written
	if c.outClosed || (d.qos == 0 && !d.retain && c.outboundFullLocked(publishSize(m))) {
		if c.outClosed || !c.mayGoOverLocked(publishSize(m)) {
			return c.skipLocked(m)
		}
		res = writtenOver
	}
	newAlias := uint16(0)
	if c.aliasMax > 0 {
		var aliases map[string]uint16
		if c.rare != nil {
			aliases = c.rare.aliases
		}
		if a, ok := aliases[m.Topic]; ok {
			p.Topic = ""
			p.Props.TopicAlias = a
			p.Props.Mark(packet.PropTopicAlias)
		} else if len(aliases) < int(c.aliasMax) {
			newAlias = uint16(len(aliases) + 1)
			p.Props.TopicAlias = newAlias
			p.Props.Mark(packet.PropTopicAlias)
		}
	}
	if c.maxOut > 0 && packet.PublishLen(&p, c.version) > int(c.maxOut) {
		return c.tooLargeLocked()
	}
	if newAlias != 0 {
		r := c.outRareLocked()
		if r.aliases == nil {
			r.aliases = make(map[string]uint16)
		}
		r.aliases[strings.Clone(m.Topic)] = newAlias // m's bytes are recycled
	}
	out, err := packet.AppendPublish(c.outBufLocked(m, len(p.Payload)), &p, c.version)
	c.out.Set(out)
	c.outMu.Unlock()
	if err != nil {
		c.encodingFailed(m, err)
		return written
	}
	c.nc.Flush()
	return res
}

// writePlainPublish is writePublish for a delivery that carries no
// properties (every MQTT 3 delivery, most MQTT 5 ones): the common case,
// encoded without building a full packet.Publish.
func (c *conn) writePlainPublish(d *delivery, pid uint16, dup bool) writeResult {
	m := d.msg
	h := packet.PublishHeader{Topic: m.Topic, Payload: m.Payload, QoS: d.qos, PacketID: pid, Dup: dup, Retain: d.retain}
	size := len(m.Payload)
	if m.big != nil && m.big.tail != nil {
		h.Rest = m.big.tail.n // piped.go
		size += h.Rest
	}
	c.outMu.Lock()
	res := written
	if c.outClosed || (d.qos == 0 && !d.retain && c.outboundFullLocked(len(m.Topic)+size+9)) { // publishSize
		if c.outClosed || !c.mayGoOverLocked(len(m.Topic)+size+9) {
			return c.skipLocked(m)
		}
		res = writtenOver
	}
	// The exact size is only worked out when a rough upper bound exceeds
	// the client's maximum.
	if c.maxOut > 0 && 2+len(m.Topic)+size+2+1+5 > int(c.maxOut) {
		full := packet.Publish{Topic: m.Topic, Payload: m.Payload, QoS: d.qos, PacketID: pid, Dup: dup}
		if packet.PublishLen(&full, c.version)+h.Rest > int(c.maxOut) {
			return c.tooLargeLocked()
		}
	}
	// A piped payload (at least minPiped) is always lent, so the payload
	// that is not lent is all in m.Payload.
	h.PayloadFollows = size >= minLent
	inline := size
	if h.PayloadFollows {
		inline = 0
	}
	out, err := packet.AppendPublishHeader(c.outBufLocked(m, inline), &h, c.version)
	c.out.Set(out)
	if h.PayloadFollows && err == nil {
		c.lendLocked(m)
	}
	c.outMu.Unlock()
	if err != nil {
		c.encodingFailed(m, err)
		return written
	}
	c.nc.Flush()
	return res
}

// minLent is the payload size from which a PUBLISH's output refers to the
// payload instead of copying it (for a driver that writes pieces, see
// OutputPieces): below it a copy costs less than the bookkeeping.
const minLent = 16 << 10

// lendLocked makes m's payload the next part of the output, which holds a
// reference to m until the driver has written it.
func (c *conn) lendLocked(m *message) {
	m.ref()
	r := c.outRareLocked()
	r.lent = append(r.lent, lentPayload{at: len(c.out.Bytes()), m: m})
	r.lentBytes += m.size()
}

// pendingLocked is how many bytes wait to be written to the client: in the
// outbound buffer, lent to it, or taken by the driver and not yet written.
func (c *conn) pendingLocked() int {
	n := len(c.out.Bytes()) + int(c.held.Load())
	if c.rare != nil {
		n += c.rare.lentBytes
	}
	return n
}

// holdLocked records that the driver takes the output, out bytes of it
// plus what is lent, before takeLentLocked.
func (c *conn) holdLocked(out int) {
	if c.rare != nil {
		out += c.rare.lentBytes
	}
	c.held.Store(uint32(min(out, math.MaxUint32)))
}

// Written implements listener.WriteWatcher: n more bytes of the output
// taken are in the socket. Only the driver's writer calls Output and
// Written, one at a time, so the load and store lose no update; deliveries
// only read held.
func (c *conn) Written(n int) {
	if n > 0 {
		c.statShard().out.bytes.Add(uint64(n))
	}
	h := c.held.Load()
	c.held.Store(h - uint32(min(int64(h), int64(n))))
	if n > 0 && c.flags.Load()&(flagOutWaited|flagNotReading) != 0 {
		c.wroteOutput() // outwait.go
	}
}

// outboundFullLocked reports whether a QoS 0 delivery of about size bytes
// would take what waits for the client past Limits.MaxOutboundBytes. Into
// an empty output, one message goes whatever its size.
func (c *conn) outboundFullLocked(size int) bool {
	bound := c.ln.srv.opts.Limits.MaxOutboundBytes
	if bound < 0 {
		return false
	}
	p := c.pendingLocked()
	return p > 0 && p+size > bound
}

// takeLentLocked takes the payloads lent to the output so far.
func (c *conn) takeLentLocked() []lentPayload {
	if c.rare == nil || len(c.rare.lent) == 0 {
		return nil
	}
	lent := c.rare.lent
	c.rare.lent, c.rare.lentBytes = nil, 0
	return lent
}

// OutputPieces implements listener.PieceWriter: lent payloads are written
// from where they are, in memory or in a pipe (piped.go).
func (c *conn) OutputPieces() (buf []byte, pieces []listener.Piece, done func()) {
	c.outMu.Lock()
	buf = c.out.Bytes()
	c.out.Set(nil)
	c.holdLocked(len(buf))
	lent := c.takeLentLocked()
	c.outMu.Unlock()
	if lent == nil {
		return buf, nil, nil
	}
	pieces = make([]listener.Piece, 0, 3*len(lent)+1)
	prev := 0
	for _, l := range lent {
		pieces = append(pieces, listener.Piece{Bytes: buf[prev:l.at]}, listener.Piece{Bytes: l.m.Payload})
		if t := l.m.tail(); t != nil {
			pieces = append(pieces, listener.Piece{Pipe: t.pipe, N: t.n})
		}
		prev = l.at
	}
	pieces = append(pieces, listener.Piece{Bytes: buf[prev:]})
	return buf, pieces, func() { unrefLent(lent) }
}

func unrefLent(lent []lentPayload) {
	for _, l := range lent {
		l.m.unref()
	}
}

// skipLocked releases outMu for a delivery of m that is not written: the
// connection is gone, or it is QoS 0 to a client that does not read (QoS 1
// and 2 wait in the session's queue instead, bounded by the in-flight
// window), which is counted and logged. The callers test for these
// inline: this is the uncommon path.
func (c *conn) skipLocked(m *message) writeResult {
	if c.outClosed {
		c.outMu.Unlock()
		return notWritten
	}
	pending := c.pendingLocked()
	c.outMu.Unlock()
	n := c.ln.srv.stats.droppedQoS0Slow.Add(1)
	if c.ln.srv.mayWarnDropped() {
		c.ln.srv.log.Warn("client not reading: QoS 0 message dropped", "client", c.clientID(), "topic", m.Topic,
			"pending_bytes", pending, "max_outbound_bytes", c.ln.srv.opts.Limits.MaxOutboundBytes,
			"dropped_total", n, "note", dropNote)
	}
	return skippedSlow
}

// publishSize is about what a PUBLISH of m adds to the output: its topic
// and payload, and at most 9 bytes of header and packet id.
func publishSize(m *message) int { return len(m.Topic) + m.size() + 9 }

// tooLargeLocked counts a delivery larger than the client accepts and
// releases outMu; its result is writePublish's.
func (c *conn) tooLargeLocked() writeResult {
	c.outMu.Unlock()
	c.ln.srv.stats.droppedTooLarge.Add(1)
	return tooLarge
}

// writeResult is what became of a delivery handed to writePublish.
type writeResult uint8

const (
	written writeResult = iota
	// notWritten: the connection is closed. A QoS 1 or 2 delivery stays
	// in flight for the next one; a QoS 0 one is lost.
	notWritten
	// writtenOver: QoS 0 written past Limits.MaxOutboundBytes to a client
	// that reads: its publisher is to wait for it (outwait.go).
	writtenOver
	// skippedSlow: QoS 0 to a client that does not read, with more than
	// Limits.MaxOutboundBytes unwritten, or to one that reads with twice
	// that: dropped.
	skippedSlow
	// tooLarge: larger than the client's Maximum Packet Size, dropped.
	tooLarge
)

// outBufLocked returns the output buffer to append m's PUBLISH to, with
// room for it and payload bytes of its payload (0 when it is lent), grown
// through bufpool. The caller sets c.out to what it appends: until then
// c.out may hold the buffer Grow gave back.
func (c *conn) outBufLocked(m *message, payload int) []byte {
	n := len(m.Topic) + 16 + payload
	b := c.out.Bytes()
	if b == nil {
		b = bufpool.Get(n)
	} else {
		b = bufpool.Grow(b, n)
	}
	return b
}

// encodingFailed logs a PUBLISH that could not be encoded (a bug: the
// message was checked when it arrived).
func (c *conn) encodingFailed(m *message, err error) {
	c.ln.srv.log.Error("encoding PUBLISH", "client", c.clientID(), "topic", m.Topic, "err", err)
}
