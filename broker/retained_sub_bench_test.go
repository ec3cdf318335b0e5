package broker

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/petrelmq/petrel/packet"
)

// BenchmarkRetainedSubscribe measures a subscription that is sent the
// retained messages it matches, through the engine: of 100,000 retained
// messages (dev/<i/1000>/<i%1000>/state), one (exact) or a thousand
// (plus) go to a new client that subscribes, and disconnects.
func BenchmarkRetainedSubscribe(b *testing.B) {
	// Not started, as BenchmarkRoute's: output comes only when the
	// connection is flushed, on this goroutine.
	srv := New(Options{SysInterval: -1, Logger: slog.New(slog.DiscardHandler), MaxInflight: 65535, MaxQueuedMessages: -1})
	defer srv.Close()
	pub := benchOpen(b, srv, "fill", "", 0)
	var buf []byte
	for i := range 100_000 {
		p := &packet.Publish{Topic: fmt.Sprintf("dev/%d/%d/state", i/1000, i%1000), QoS: 0, Retain: true,
			Payload: fmt.Appendf(nil, `{"on":true,"v":%04d}`, i%10000)}
		var err error
		if buf, err = packet.Append(buf[:0], p, packet.V311); err != nil {
			b.Fatal(err)
		}
		pub.ep.Data(buf)
		pub.Flush()
	}
	for _, bc := range []struct{ name, filter string }{{"exact", "dev/42/7/state"}, {"plus", "dev/42/+/state"}} {
		b.Run(bc.name, func(b *testing.B) {
			subscribe, _ := packet.Append(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: bc.filter, QoS: 0}}}, packet.V311)
			disconnect, _ := packet.Append(nil, &packet.Disconnect{}, packet.V311)
			out := int64(0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				sub := benchOpen(b, srv, fmt.Sprintf("sub-%s-%d", bc.name, i), "", 0)
				sub.ep.Data(subscribe)
				drain(sub)
				sub.ep.Data(disconnect)
				out += sub.bytes
			}
			b.ReportMetric(float64(out)/float64(b.N), "out-B/op")
		})
	}
}

// drain takes all of a connection's output, which Flush takes a buffer
// at a time.
func drain(bc *benchConn) {
	for n := int64(-1); n != bc.bytes; {
		n = bc.bytes
		bc.Flush()
	}
}
