package broker

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/petrelmq/petrel/internal/bufpool"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/packet"
)

// The engine is sans-I/O, so its hot path can be measured without sockets:
// these benchmarks feed bytes to connections and take their output as a
// driver would, to show what publish → match → deliver costs and allocates.

// benchConn is a driver stand-in that takes output on every Flush and
// recycles it.
type benchConn struct {
	ep    listener.Endpoint
	bytes int64
}

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

func (b *benchConn) Flush() {
	if out := b.ep.Output(); out != nil {
		b.bytes += int64(len(out))
		b.ep.(listener.WriteWatcher).Written(len(out))
		bufpool.Put(out)
	}
}
func (b *benchConn) Close()               {}
func (b *benchConn) Resume()              {}
func (b *benchConn) RemoteAddr() net.Addr { return benchAddr }
func (b *benchConn) LocalAddr() net.Addr  { return benchAddr }

func benchOpen(b *testing.B, srv *Server, id string, subscribe string, qos byte) *benchConn {
	b.Helper()
	ls := &listenerState{srv: srv, name: "bench", allowAnonymous: true}
	bc := &benchConn{}
	bc.ep = ls.Open(bc)
	feed(b, bc, &packet.Connect{Version: packet.V311, CleanStart: true, ClientID: id})
	if subscribe != "" {
		feed(b, bc, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: subscribe, QoS: qos}}})
	}
	return bc
}

func feed(b *testing.B, bc *benchConn, p packet.Packet) {
	b.Helper()
	buf, err := packet.Append(nil, p, packet.V311)
	if err != nil {
		b.Fatal(err)
	}
	bc.ep.Data(buf)
}

// BenchmarkRoute publishes one QoS 0 or QoS 1 message per op from one client
// to subs subscribers, through decode, match, deliver and encode.
func BenchmarkRoute(b *testing.B) {
	for _, tc := range []struct {
		subs int
		qos  byte
	}{{1, 0}, {1, 1}, {10, 0}, {100, 0}, {100, 1}, {1000, 0}, {10000, 0}} {
		b.Run(fmt.Sprintf("subs=%d/qos=%d", tc.subs, tc.qos), func(b *testing.B) {
			srv := New(Options{MaxInflight: 65535, MaxQueuedMessages: -1})
			subs := make([]*benchConn, tc.subs)
			for i := range subs {
				subs[i] = benchOpen(b, srv, fmt.Sprintf("s%d", i), "bench/+/temp", tc.qos)
			}
			pub := benchOpen(b, srv, "pub", "", 0)
			msg, _ := packet.Append(nil, &packet.Publish{Topic: "bench/1/temp", QoS: tc.qos, PacketID: 1,
				Payload: make([]byte, 64)}, packet.V311)
			// Each subscriber acknowledges what it got, so the window never fills.
			acks := make([]byte, 0, 4)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pub.ep.Data(msg)
				if tc.qos > 0 {
					pid := uint16(i%65535 + 1)
					acks = append(acks[:0], 0x40, 2, byte(pid>>8), byte(pid))
					for _, s := range subs {
						s.ep.Data(acks)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*tc.subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkQueuedMessageMemory measures the memory a message costs while it
// waits in a session's queue: a subscriber that never acknowledges has its
// in-flight window (1) full, so each op's message is queued. It reports the
// heap growth per queued message, and that over the payload plus topic.
func BenchmarkQueuedMessageMemory(b *testing.B) {
	const topic = "building/3/floor/2/temp" // 23 bytes
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			srv := New(Options{MaxInflight: 1, MaxQueuedMessages: -1, MaxQueuedBytes: -1, Limits: Limits{QueuedMemory: -1}})
			benchOpen(b, srv, "slow", topic, 1)
			pub := benchOpen(b, srv, "pub", "", 0)
			payload := make([]byte, size)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 0; i < b.N; i++ {
				msg, _ := packet.Append(nil, &packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i%65535 + 1),
					Payload: payload}, packet.V311)
				pub.ep.Data(msg)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(b.N)
			b.ReportMetric(per, "B/queued")
			b.ReportMetric(per/float64(size+len(topic)), "x(payload+topic)")
			runtime.KeepAlive(srv)
		})
	}
}

// BenchmarkRouteParallel publishes from one client per goroutine, each to
// its own topic with its own subscriber, so that the engine's shared state
// (the topic index, the server's maps and counters) is what the goroutines
// share. Run with -cpu 1,2 to see whether throughput scales with cores.
func BenchmarkRouteParallel(b *testing.B) {
	srv := New(Options{MaxInflight: 65535, MaxQueuedMessages: -1})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		topic := fmt.Sprintf("bench/%d/temp", i)
		benchOpen(b, srv, fmt.Sprintf("s%d", i), topic, 0)
		pub := benchOpen(b, srv, fmt.Sprintf("p%d", i), "", 0)
		msg, _ := packet.Append(nil, &packet.Publish{Topic: topic, Payload: make([]byte, 64)}, packet.V311)
		for pb.Next() {
			pub.ep.Data(msg)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkBackloggedDelivery shows that a delivery to a subscriber that is
// behind costs the same however long its backlog: each op queues one QoS 1
// message behind backlog others and acknowledges the oldest in flight,
// which moves the head of the queue into the window. A cost that grew with
// the backlog would slow a subscriber down the further behind it fell.
func BenchmarkBackloggedDelivery(b *testing.B) {
	for _, backlog := range []int{0, 1000, 100000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			// A backlog limit above the backlog: nothing is held back here.
			srv := New(Options{MaxInflight: 10, MaxQueuedMessages: -1, BacklogMessages: 1 << 30, BacklogBytes: 1 << 40})
			sub := benchOpen(b, srv, "sub", "bench/backlog", 1)
			pub := benchOpen(b, srv, "pub", "", 0)
			msg, _ := packet.Append(nil, &packet.Publish{Topic: "bench/backlog", QoS: 1, PacketID: 1,
				Payload: make([]byte, 64)}, packet.V311)
			for range 10 + backlog { // the window, then the backlog
				pub.ep.Data(msg)
			}
			acks := make([]byte, 0, 4)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pub.ep.Data(msg)
				pid := uint16(i%65535 + 1)
				sub.ep.Data(append(acks[:0], 0x40, 2, byte(pid>>8), byte(pid)))
			}
			b.StopTimer()
			if n := sub.ep.(*conn).sess.Load().x().queue.len(); n != backlog {
				b.Fatalf("backlog %d at the end, want %d", n, backlog)
			}
		})
	}
}

// BenchmarkRouteShared publishes one message per op to a shared
// subscription group of members sessions, each a member that acknowledges
// what it got (in batches, so the acknowledgements cost little beside the
// routing): what choosing a member costs on top of BenchmarkRoute's
// subs=1.
func BenchmarkRouteShared(b *testing.B) {
	for _, tc := range []struct {
		members int
		qos     byte
	}{{2, 0}, {2, 1}, {10, 1}, {100, 1}} {
		b.Run(fmt.Sprintf("members=%d/qos=%d", tc.members, tc.qos), func(b *testing.B) {
			srv := New(Options{MaxInflight: 65535, MaxQueuedMessages: -1})
			members := make([]*benchConn, tc.members)
			acked := make([]uint64, tc.members)
			for i := range members {
				members[i] = benchOpen(b, srv, fmt.Sprintf("m%d", i), "$share/g/bench/+/temp", tc.qos)
			}
			pub := benchOpen(b, srv, "pub", "", 0)
			msg, _ := packet.Append(nil, &packet.Publish{Topic: "bench/1/temp", QoS: tc.qos, PacketID: 1,
				Payload: make([]byte, 64)}, packet.V311)
			var acks []byte
			ackAll := func() {
				for i, m := range members {
					ss := m.ep.(*conn).sess.Load()
					ss.mu.Lock()
					sent := ss.nextSeq - 1
					ss.mu.Unlock()
					acks = acks[:0]
					for ; acked[i] < sent; acked[i]++ {
						pid := pidOf(acked[i] + 1)
						acks = append(acks, 0x40, 2, byte(pid>>8), byte(pid))
					}
					if len(acks) > 0 {
						m.ep.Data(acks)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pub.ep.Data(msg)
				if tc.qos > 0 && i%1024 == 1023 {
					ackAll()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFanIn publishes one QoS 0 message per op from one of pubs
// clients, each on its own topic, to a single subscriber of them all: the
// many-sensors-one-collector shape, where per-message costs that do not
// depend on the subscribers (a hook, a check) show most.
func BenchmarkFanIn(b *testing.B) {
	for _, pubs := range []int{10, 1000} {
		b.Run(fmt.Sprintf("pubs=%d/qos=0", pubs), func(b *testing.B) {
			srv := New(Options{MaxInflight: 65535, MaxQueuedMessages: -1})
			benchOpen(b, srv, "collector", "fanin/+/temp", 0)
			clients := make([]*benchConn, pubs)
			msgs := make([][]byte, pubs)
			for i := range clients {
				clients[i] = benchOpen(b, srv, fmt.Sprintf("p%d", i), "", 0)
				msgs[i], _ = packet.Append(nil, &packet.Publish{Topic: fmt.Sprintf("fanin/%d/temp", i),
					Payload: make([]byte, 64)}, packet.V311)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clients[i%pubs].ep.Data(msgs[i%pubs])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkStats shows what a Stats snapshot costs, and that it does not
// grow with the number of sessions: it walks none.
func BenchmarkStats(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			srv := New(Options{})
			for i := range n {
				benchOpen(b, srv, fmt.Sprintf("c%d", i), fmt.Sprintf("t/%d", i), 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if st := srv.Stats(); st.Sessions != int64(n) {
					b.Fatalf("%d sessions, want %d", st.Sessions, n)
				}
			}
		})
	}
}
