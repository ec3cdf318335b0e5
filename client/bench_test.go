package client

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

// BenchmarkPublish measures the client alone: the other end is a sink that
// discards and acknowledges without allocating, so allocs/op are the
// client's.
//
//	go test -run '^$' -bench 'Publish' -benchmem ./client
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		name  string
		qos   byte
		async bool
	}{{"qos0", 0, false}, {"qos1-sync", 1, false}, {"qos1-pipelined", 1, true}, {"qos2-pipelined", 2, true}} {
		b.Run(bc.name, func(b *testing.B) {
			benchPublish(b, sink(b), bc.qos, bc.async)
		})
	}
}

// BenchmarkPublishBroker publishes to the in-process broker, which routes
// each message to no subscriber (allocs/op include the broker's).
func BenchmarkPublishBroker(b *testing.B) {
	for _, bc := range []struct {
		name  string
		qos   byte
		async bool
	}{{"qos0", 0, false}, {"qos1-pipelined", 1, true}} {
		b.Run(bc.name, func(b *testing.B) {
			benchPublish(b, startBroker(b, broker.Options{}), bc.qos, bc.async)
		})
	}
}

func benchPublish(b *testing.B, addr string, qos byte, async bool) {
	c := connect(b, Options{Addr: addr, CleanStart: true, ClientID: "bench", MaxInflight: 1000})
	m := &packet.Publish{Topic: "bench/topic", QoS: qos, Payload: make([]byte, 64)}
	ctx := context.Background()
	var acked atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	done := func(_ packet.ReasonCode, err error) {
		if err != nil {
			b.Error(err)
		}
		if acked.Add(1) == target {
			close(all)
		}
	}
	b.SetBytes(int64(len(m.Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var err error
		if async {
			err = c.PublishAsync(ctx, m, done)
		} else {
			_, err = c.Publish(ctx, m)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if async && qos > 0 {
		<-all
	}
	// A QoS 1 round trip after the stream: everything before it was sent.
	if _, err := c.Publish(ctx, &packet.Publish{Topic: "bench/end", QoS: 1}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPubSub is end to end through the broker: one publisher, one
// subscriber, QoS 1 pipelined both ways; the clock stops when the
// subscriber has everything. The publisher keeps at most 10,000 messages
// ahead of the subscriber, within the broker's per-session queue.
func BenchmarkPubSub(b *testing.B) {
	addr := startBroker(b, broker.Options{})
	var got atomic.Int64
	all := make(chan struct{})
	ahead := make(chan struct{}, 10000)
	target := int64(b.N)
	sub := connect(b, Options{Addr: addr, CleanStart: true, ClientID: "bench-sub", OnMessage: func(*Message) {
		<-ahead
		if got.Add(1) == target {
			close(all)
		}
	}})
	if _, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: "bench/#", QoS: 1}}, packet.Properties{}); err != nil {
		b.Fatal(err)
	}
	pub := connect(b, Options{Addr: addr, CleanStart: true, ClientID: "bench-pub", MaxInflight: 1000})
	m := &packet.Publish{Topic: "bench/topic", QoS: 1, Payload: make([]byte, 64)}
	b.SetBytes(int64(len(m.Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		ahead <- struct{}{}
		if err := pub.PublishAsync(context.Background(), m, nil); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("subscriber received %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestPublishAllocations holds the publish path to its budget: nothing per
// message once warmed up, at any QoS, synchronous or pipelined.
func TestPublishAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := connect(t, Options{Addr: sink(t), CleanStart: true, ClientID: "allocs", MaxInflight: 100})
	ctx := context.Background()
	done := func(packet.ReasonCode, error) {}
	for _, tc := range []struct {
		name string
		qos  byte
		fn   func(m *packet.Publish) error
	}{
		{"Publish QoS 0", 0, func(m *packet.Publish) error { _, err := c.Publish(ctx, m); return err }},
		{"Publish QoS 1", 1, func(m *packet.Publish) error { _, err := c.Publish(ctx, m); return err }},
		{"Publish QoS 2", 2, func(m *packet.Publish) error { _, err := c.Publish(ctx, m); return err }},
		{"PublishAsync QoS 1", 1, func(m *packet.Publish) error { return c.PublishAsync(ctx, m, done) }},
		{"PublishAsync QoS 2", 2, func(m *packet.Publish) error { return c.PublishAsync(ctx, m, done) }},
	} {
		m := &packet.Publish{Topic: "allocs", QoS: tc.qos, Payload: make([]byte, 100)}
		for range 1000 { // warm up: buffers, packet id slots
			tc.fn(m)
		}
		allocs := testing.AllocsPerRun(2000, func() {
			if err := tc.fn(m); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0.05 {
			t.Errorf("%s: %.2f allocations per message, want 0", tc.name, allocs)
		}
	}
}

// BenchmarkReceive measures the client's inbound path alone: a scripted
// server streams pre-encoded messages and discards the acknowledgements,
// so allocs/op are the client's (decoding, delivery, PUBACK).
func BenchmarkReceive(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			n := b.N
			addr := fakeServer(b, func(f *fakeConn) {
				if _, err := f.accept(packet.Properties{}); err != nil {
					return
				}
				// Read the acks until the client leaves: closing with
				// them unread would reset the connection.
				drained := make(chan struct{})
				go func() {
					io.Copy(io.Discard, f.Conn)
					close(drained)
				}()
				defer func() { <-drained }()
				var chunk []byte
				const perChunk = 1000
				for i := range perChunk {
					m := packet.Publish{Topic: "bench/topic", QoS: qos, Payload: make([]byte, 64)}
					if qos > 0 {
						m.PacketID = uint16(i + 1)
					}
					chunk, _ = packet.AppendPublish(chunk, &m, f.v)
				}
				size := len(chunk) / perChunk
				for sent := 0; sent < n; sent += perChunk {
					if _, err := f.Write(chunk[:min(perChunk, n-sent)*size]); err != nil {
						return
					}
				}
			})
			var got atomic.Int64
			all := make(chan struct{})
			target := int64(n)
			connect(b, Options{Addr: addr, CleanStart: true, ClientID: "bench-recv", OnMessage: func(*Message) {
				if got.Add(1) == target {
					close(all)
				}
			}})
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			select {
			case <-all:
			case <-time.After(time.Minute):
				b.Fatalf("received %d of %d", got.Load(), n)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
