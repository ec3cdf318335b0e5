// Package packettrace prints the packets a client sends and receives, one
// line each, as mosquitto_pub's and mosquitto_sub's -d (--debug) do.
package packettrace

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/petrelmq/petrel/packet"
)

// Tracer writes the trace of one client. Its Trace method is the client's
// Options.Trace; it is safe for concurrent use.
type Tracer struct {
	mu sync.Mutex
	w  io.Writer
	id string
}

// New returns a Tracer that writes to w and names the client clientID,
// which may be empty until the server assigns one (see SetClientID).
func New(w io.Writer, clientID string) *Tracer {
	return &Tracer{w: w, id: clientID}
}

// SetClientID names the client in the lines that follow: the identifier a
// server assigned in its CONNACK.
func (t *Tracer) SetClientID(id string) {
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
}

// Trace writes one line for p, sent by the client or received by it.
func (t *Tracer) Trace(sent bool, p packet.Packet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.id
	if id == "" {
		id = "(null)"
	}
	dir := "received"
	if sent {
		dir = "sending"
	}
	fmt.Fprintf(t.w, "Client %s %s %s%s\n", id, dir, p.Type(), describe(p))
}

// describe is the detail printed after a packet's name.
func describe(p packet.Packet) string {
	switch p := p.(type) {
	case *packet.Connack:
		return " (" + strconv.Itoa(int(p.Code)) + ")"
	case *packet.Publish:
		return fmt.Sprintf(" (d%d, q%d, r%d, m%d, '%s', ... (%d bytes))", b2i(p.Dup), p.QoS, b2i(p.Retain),
			p.PacketID, p.Topic, len(p.Payload))
	case *packet.Ack:
		return fmt.Sprintf(" (Mid: %d, RC:%d)", p.PacketID, p.Code)
	case *packet.Subscribe:
		var b strings.Builder
		fmt.Fprintf(&b, " (Mid: %d", p.PacketID)
		for _, s := range p.Subs {
			fmt.Fprintf(&b, ", Topic: %s, QoS: %d", s.Filter, s.QoS)
		}
		b.WriteString(")")
		return b.String()
	case *packet.Suback:
		return fmt.Sprintf(" (Mid: %d, Codes: %v)", p.PacketID, p.Codes)
	case *packet.Unsubscribe:
		return fmt.Sprintf(" (Mid: %d, Topics: %s)", p.PacketID, strings.Join(p.Filters, ", "))
	case *packet.Unsuback:
		return fmt.Sprintf(" (Mid: %d)", p.PacketID)
	case *packet.Disconnect:
		if p.Code != 0 {
			return fmt.Sprintf(" (%d)", p.Code)
		}
	}
	return ""
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
