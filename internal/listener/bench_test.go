package listener

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkEcho: 64-byte request and response over parallel connections.
func BenchmarkEcho(b *testing.B) {
	for _, dk := range driverKinds {
		b.Run(dk.name, func(b *testing.B) {
			h := newTestHandler(b)
			h.onData = echo
			s := startServer(b, dk, h, Options{})
			b.SetBytes(64)
			b.RunParallel(func(pb *testing.PB) {
				c := dial(b, s.addr)
				msg := make([]byte, 64)
				got := make([]byte, 64)
				for pb.Next() {
					if _, err := c.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, got); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkFanOut: one publisher's 64-byte messages copied to 100
// subscribers from inside its Data; reports deliveries per second, where
// batching writes pays most.
func BenchmarkFanOut(b *testing.B) {
	const nsubs, size = 100, 64
	for _, dk := range driverKinds {
		b.Run(dk.name, func(b *testing.B) {
			var subs atomic.Pointer[[]*testEndpoint]
			ready := make(chan *testEndpoint, nsubs)
			h := newTestHandler(b)
			h.onData = func(e *testEndpoint, p []byte) {
				if e.role == 0 {
					e.role, p = p[0], p[1:]
					if e.role == 'S' {
						ready <- e
					}
				}
				if e.role == 'P' && len(p) > 0 {
					for _, s := range *subs.Load() {
						s.write(p)
					}
				}
			}
			s := startServer(b, dk, h, Options{})
			var wg sync.WaitGroup
			for range nsubs {
				c := dial(b, s.addr)
				c.Write([]byte{'S'})
				wg.Go(func() {
					if _, err := io.CopyN(io.Discard, c, int64(b.N)*size); err != nil {
						b.Error(err)
					}
				})
			}
			list := make([]*testEndpoint, 0, nsubs)
			for range nsubs {
				list = append(list, receive(b, ready, "subscribers"))
			}
			subs.Store(&list)
			pub := dial(b, s.addr)
			pub.Write([]byte{'P'})
			msg := make([]byte, size)
			b.ResetTimer()
			for range b.N {
				if _, err := pub.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)*nsubs/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
