package broker

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// BenchmarkRetainedMemory measures what a retained message costs in the
// broker's memory: one client publishes the retained messages of issue
// 21's fleet (dev/<i/1000>/<i%1000>/state, 20-byte JSON payloads, QoS 1)
// through the whole engine, and the heap the retained index alone keeps
// is what a collection frees once the broker lets go of the index. The
// store is the memory one, closed with the broker before the count: its
// copies are not counted (its keys are the messages' topics, and would
// hold them).
//
//	go test ./broker -run '^$' -bench RetainedMemory -benchtime 1x
func BenchmarkRetainedMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				overhead, own := retainedHeap(b, n)
				b.ReportMetric(overhead, "B/msg")
				b.ReportMetric(own, "own-B/msg")
			}
		})
	}
}

// retainedHeap publishes n retained messages to a new broker and returns
// the heap bytes a message keeps beyond its topic and payload, and those.
func retainedHeap(b *testing.B, n int) (overhead, own float64) {
	srv := startServer(b, Options{SysInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	pub := benchOpen(b, srv, "fill", "", 0)
	var buf []byte
	bytes := 0
	for i := range n {
		p := &packet.Publish{Topic: fmt.Sprintf("dev/%d/%d/state", i/1000, i%1000), QoS: 1, Retain: true,
			PacketID: uint16(i%65535 + 1), Payload: fmt.Appendf(nil, `{"on":true,"v":%04d}`, i%10000)}
		bytes += len(p.Topic) + len(p.Payload)
		var err error
		if buf, err = packet.Append(buf[:0], p, packet.V311); err != nil {
			b.Fatal(err)
		}
		pub.ep.Data(buf)
		pub.Flush()
	}
	if got := srv.retained.Len(); got != n {
		b.Fatalf("%d retained messages, want %d", got, n)
	}
	srv.Close() // stops the committer once it has written everything
	held := heapAlloc()
	srv.retained = topic.NewRetained[retainedRec]()
	freed := held - heapAlloc()
	return float64(freed-int64(bytes)) / float64(n), float64(bytes) / float64(n)
}

func heapAlloc() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
