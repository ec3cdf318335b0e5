package broker

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/memstat"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// Benchmarks of the durable path over real TCP (docs/BENCHMARKS.md,
// "Durability"): QoS 1 publish throughput and latency per store mode, and
// recovery of a large store.

// durableModes are the store configurations compared.
var durableModes = []struct {
	name       string
	open       func(b *testing.B) store.Store
	syncPeriod time.Duration
}{
	{"pebble-sync-always", func(b *testing.B) store.Store { return openPebble(b, b.TempDir(), pebblestore.Options{}) }, 0},
	{"pebble-sync-periodic-100ms", func(b *testing.B) store.Store {
		return openPebble(b, b.TempDir(), pebblestore.Options{})
	}, 100 * time.Millisecond},
	{"memory", func(b *testing.B) store.Store { return memory.New() }, 0},
}

// BenchmarkDurablePublish: 8 publishers, each keeping up to 64 QoS 1
// PUBLISHes of 64 bytes unacknowledged, send b.N messages in all to one
// persistent QoS 1 subscriber, online and acknowledging or offline (its
// queue grows). It reports messages/s acknowledged and the p50 and p99 of
// the time from PUBLISH to its PUBACK.
func BenchmarkDurablePublish(b *testing.B) {
	const publishers, window = 8, 64
	payload := make([]byte, 64)
	for _, mode := range durableModes {
		for _, online := range []bool{true, false} {
			name := mode.name + "/subscriber-offline"
			if online {
				name = mode.name + "/subscriber-online"
			}
			b.Run(name, func(b *testing.B) {
				st := mode.open(b)
				srv := startServer(b, Options{Store: st, Logger: warnLogger(b), SyncPeriod: mode.syncPeriod,
					MaxQueuedMessages: -1, MaxQueuedBytes: -1})
				addr := srv.Addrs()[0].String()
				sub, _ := wiretest.MustConnect(b, addr, "bench-sub", false)
				sub.Subscribe("bench/#", 1)
				var got *ackingSubscriber
				if online {
					got = startAckingSubscriber(sub, b.N)
				} else {
					sub.Disconnect()
				}
				pubs := make([]*wiretest.Client, publishers)
				for i := range pubs {
					pubs[i], _ = wiretest.MustConnect(b, addr, fmt.Sprint("bench-pub-", i), true)
				}
				latencies := make([][]time.Duration, publishers)
				errs := make([]error, publishers)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for i, c := range pubs {
					n := b.N / publishers
					if i < b.N%publishers {
						n++
					}
					lat := make([]time.Duration, 0, n)
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[i] = pipelinedPublisher(c, "bench/"+strconv.Itoa(i), payload, n, window,
							func(_ int, code packet.ReasonCode, d time.Duration) bool {
								lat = append(lat, d)
								return code == packet.Success
							})
						latencies[i] = lat
					}()
				}
				wg.Wait()
				took := time.Since(start)
				b.StopTimer()
				for i, err := range errs {
					if err != nil {
						b.Fatalf("publisher %d: %v", i, err)
					}
				}
				if online {
					got.wait(b, 5*time.Minute)
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered/s")
				}
				all := slices.Concat(latencies...)
				if len(all) != b.N {
					b.Fatalf("%d of %d messages acknowledged", len(all), b.N)
				}
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/took.Seconds(), "msgs/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkRecovery measures the start of a broker on a store holding
// 1,000,000 retained messages and 100,000 persistent sessions, each with a
// subscription and two queued messages: New and Start (which runs recover)
// until it listens, and the heap it then holds. The store is written once,
// through the broker's own record encoders, before the timer starts. The
// two smaller cases split the figures between retained messages and
// sessions. Run it with -benchtime=1x.
func BenchmarkRecovery(b *testing.B) {
	for _, tc := range []struct {
		name                       string
		retained, sessions, queued int
	}{
		{"1M-retained+100k-sessions", 1_000_000, 100_000, 2},
		{"1M-retained", 1_000_000, 0, 0},
		{"100k-sessions", 0, 100_000, 2},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "store")
			genStart := time.Now()
			storeBytes := writeRecoveryStore(b, dir, tc.retained, tc.sessions, tc.queued)
			b.Logf("wrote %d retained messages and %d sessions with %d queued messages each in %v (%d MiB on disk)",
				tc.retained, tc.sessions, tc.queued, time.Since(genStart).Round(time.Millisecond), storeBytes>>20)
			b.ResetTimer()
			for range b.N {
				recoverOnce(b, dir, tc.sessions)
			}
		})
	}
}

// recoverOnce opens the store in dir, starts a broker on it, reports the
// time and memory, and closes both.
func recoverOnce(b *testing.B, dir string, sessions int) {
	b.StopTimer()
	st, err := pebblestore.Open(dir, pebblestore.Options{Logger: warnLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	before := memstat.Take()
	b.StartTimer()
	start := time.Now()
	srv := New(Options{Listeners: []ListenerConfig{{Address: "127.0.0.1:0"}}, Store: st, Logger: warnLogger(b)})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.StopTimer()
	after := memstat.Take()
	srv.mu.Lock()
	n := srv.sessions.len()
	srv.mu.Unlock()
	if n != sessions {
		b.Fatalf("recovered %d sessions; want %d", n, sessions)
	}
	b.ReportMetric(took.Seconds(), "recovery-s")
	b.ReportMetric(float64(after.Heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(after.Heap-before.Heap)/(1<<20), "heap-delta-MiB")
	b.ReportMetric(float64(after.RSS)/(1<<20), "rss-MiB")
	b.ReportMetric(0, "ns/op")
	runtime.KeepAlive(srv)
	srv.Close()
	st.Close()
	b.StartTimer()
}

// writeRecoveryStore writes the store of BenchmarkRecovery with large
// unsynced batches and one sync at the end; it returns the store's size.
func writeRecoveryStore(b *testing.B, dir string, retained, sessions, queued int) int64 {
	b.Helper()
	st, err := pebblestore.Open(dir, pebblestore.Options{Logger: warnLogger(b), MemTableSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var batch store.Batch
	commit := func(force bool) {
		if batch.Len() < 50_000 && !force {
			return
		}
		if err := st.Commit(&batch, false); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	payload := make([]byte, 64)
	for i := range retained {
		topic := fmt.Sprintf("tenant/%d/device/%d/state", i/1000, i%1000)
		m := &message{Topic: topic, Payload: payload, QoS: 1, Retain: true}
		batch.PutRetained(topic, appendMessage(nil, m))
		commit(false)
	}
	one := []byte{0, 0, 0, 1}
	msgID := uint64(1)
	offline := time.Now()
	for i := range sessions {
		clientID := fmt.Sprintf("client-%06d", i)
		rec := sessionRecord{uid: newSessionUID(), expiry: expiryNever, offlineSince: offline,
			subs: []storedSub{{key: fmt.Sprintf("tenant/%d/device/%d/cmd", i/1000, i%1000), qos: 1}}}
		batch.PutSession(clientID, appendSession(nil, &rec))
		ss := &session{clientID: clientID, durableState: &durableState{uid: rec.uid}}
		for seq := range uint64(queued) {
			m := &message{Topic: rec.subs[0].key, Payload: payload, QoS: 1}
			batch.PutMessage(msgID, appendMessage(nil, m))
			batch.PutMessage(msgID|refKeyBit, one)
			batch.PutQueue(ss.queueName(), seq+1, appendEntry(nil, &queueEntry{msgID: msgID, qos: 1, size: len(payload)}))
			msgID++
		}
		commit(false)
	}
	commit(true)
	if err := st.Sync(); err != nil {
		b.Fatal(err)
	}
	n, err := st.Usage()
	if err != nil {
		b.Fatal(err)
	}
	return n
}
