package pebblestore

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrelmq/petrel/store"
)

// TestMain removes the recovery benchmark's store, which outlives each
// benchmark run so that it is made once.
func TestMain(m *testing.M) {
	code := m.Run()
	if recoveryStore.dir != "" {
		_ = os.RemoveAll(recoveryStore.dir)
	}
	os.Exit(code)
}

// BenchmarkCommit commits what a QoS 1 publish to one persistent session
// writes: a message body of 100 bytes and a queue entry.
//
//	go test ./store/pebblestore -run '^$' -bench Commit -benchtime 3s
func BenchmarkCommit(b *testing.B) {
	body := make([]byte, 100)
	for _, sync := range []bool{true, false} {
		name := map[bool]string{true: "sync", false: "nosync"}[sync]
		b.Run(name, func(b *testing.B) {
			s := openB(b)
			var batch store.Batch
			b.ReportAllocs()
			for i := range uint64(b.N) {
				batch.Reset()
				batch.PutMessage(i, body)
				batch.PutQueue("client", i, body[:16])
				if err := s.Commit(&batch, sync); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
	// 64 goroutines each committing synced batches: pebble's commit
	// pipeline shares one fsync among the batches waiting for it.
	b.Run("sync-64-committers", func(b *testing.B) {
		s := openB(b)
		var next atomic.Uint64
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			var batch store.Batch
			client := fmt.Sprint("client", next.Add(1<<32))
			for pb.Next() {
				i := next.Add(1)
				batch.Reset()
				batch.PutMessage(i, body)
				batch.PutQueue(client, i, body[:16])
				if err := s.Commit(&batch, true); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
}

func openB(b *testing.B) *Store {
	s, err := Open(b.TempDir(), Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// The recovery benchmark's store: 1,000,000 retained messages, 100,000
// sessions, 100,000 message bodies and as many queue entries, every record
// about 100 bytes; made once per process.
const (
	recoveryRetained = 1_000_000
	recoverySessions = 100_000
	recoveryMessages = 100_000
)

var recoveryStore struct {
	once sync.Once
	dir  string
	err  error
}

func makeRecoveryStore(b *testing.B) string {
	recoveryStore.once.Do(func() {
		dir, err := os.MkdirTemp("", "petrel-recovery-")
		if err != nil {
			recoveryStore.err = err
			return
		}
		recoveryStore.dir = dir
		s, err := Open(dir, Options{Logger: quiet})
		if err != nil {
			recoveryStore.err = err
			return
		}
		rec := make([]byte, 100)
		var batch store.Batch
		flush := func() {
			if err := s.Commit(&batch, false); err != nil && recoveryStore.err == nil {
				recoveryStore.err = err
			}
			batch.Reset()
		}
		start := time.Now()
		for i := range recoveryRetained {
			copy(rec, fmt.Sprintf("retained %d", i))
			batch.PutRetained(fmt.Sprintf("sensors/site%03d/device%05d/temperature", i%1000, i/1000), rec)
			if batch.Len() == 1000 {
				flush()
			}
		}
		for i := range recoverySessions {
			copy(rec, fmt.Sprintf("session %d", i))
			batch.PutSession(fmt.Sprintf("client-%08d", i), rec)
			if batch.Len() == 1000 {
				flush()
			}
		}
		for i := range uint64(recoveryMessages) {
			copy(rec, fmt.Sprintf("message %d", i))
			batch.PutMessage(i, rec)
			batch.PutQueue(fmt.Sprintf("client-%08d", i%recoverySessions), i, rec[:16])
			if batch.Len() == 1000 {
				flush()
			}
		}
		flush()
		if err := s.Close(); err != nil && recoveryStore.err == nil {
			recoveryStore.err = err
		}
		n, _ := usage(vfs.Default, dir)
		b.Logf("recovery store: %d records written in %v; %d MiB on disk",
			recoveryRetained+recoverySessions+2*recoveryMessages, time.Since(start).Round(time.Millisecond), n>>20)
	})
	if recoveryStore.err != nil {
		b.Fatal(recoveryStore.err)
	}
	return recoveryStore.dir
}

var coldCache = flag.Bool("coldcache", false,
	"BenchmarkRecovery drops the page cache before each Open (needs Linux and root)")

// BenchmarkRecovery measures what a broker's start costs the store: Open,
// then LoadRetained, LoadSessions and LoadMessages over the records above
// (the broker's decoding of each record comes on top).
//
//	go test ./store/pebblestore -run '^$' -bench Recovery -benchtime 5x [-coldcache]
func BenchmarkRecovery(b *testing.B) {
	dir := makeRecoveryStore(b)
	var open, load time.Duration
	b.ResetTimer()
	for range b.N {
		if *coldCache {
			b.StopTimer()
			if err := dropPageCache(); err != nil {
				b.Fatalf("dropping the page cache: %v", err)
			}
			b.StartTimer()
		}
		start := time.Now()
		s, err := Open(dir, Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Now()
		var n int
		count := func(string, []byte) error { n++; return nil }
		if err := s.LoadRetained(count); err != nil {
			b.Fatal(err)
		}
		if err := s.LoadSessions(count); err != nil {
			b.Fatal(err)
		}
		if err := s.LoadMessages(func(uint64, []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		load += time.Since(opened)
		open += opened.Sub(start)
		if want := recoveryRetained + recoverySessions + recoveryMessages; n != want {
			b.Fatalf("loaded %d records; want %d", n, want)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "ms-open/op")
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "ms-load/op")
}
