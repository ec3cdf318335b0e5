package memory_test

import (
	"fmt"
	"testing"

	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	"github.com/petrelmq/petrel/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

// TestQueueHeadDeletesReleaseEntries: a queue used as a sliding window (put
// at the tail, delete at the head) keeps only its live entries.
func TestQueueHeadDeletesReleaseEntries(t *testing.T) {
	s := memory.New()
	defer s.Close()
	for i := range uint64(10_000) {
		var b store.Batch
		b.PutQueue("c", i, []byte("entry"))
		if i >= 10 {
			b.DeleteQueue("c", i-10)
		}
		if err := s.Commit(&b, false); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	_ = s.LoadQueue("c", 0, func(seq uint64, _ []byte) (bool, error) {
		seqs = append(seqs, seq)
		return true, nil
	})
	if len(seqs) != 10 || seqs[0] != 9990 {
		t.Errorf("queue after a sliding window: %v; want 9990..9999", seqs)
	}
	if n, _ := s.Usage(); n != 10*(1+8+5) {
		t.Errorf("Usage = %d; want %d (10 entries of key 1+8 bytes and 5-byte values)", n, 10*(1+8+5))
	}
}

func BenchmarkCommit(b *testing.B) {
	s := memory.New()
	defer s.Close()
	body := make([]byte, 100)
	var batch store.Batch
	b.ReportAllocs()
	for i := range uint64(b.N) {
		batch.Reset()
		batch.PutMessage(i, body)
		batch.PutQueue("client", i, body[:16])
		if err := s.Commit(&batch, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func BenchmarkLoadQueueAmongManyClients(b *testing.B) {
	s := memory.New()
	defer s.Close()
	var batch store.Batch
	for c := range 10_000 {
		batch.Reset()
		for seq := range uint64(10) {
			batch.PutQueue(fmt.Sprint("client", c), seq, []byte("entry"))
		}
		_ = s.Commit(&batch, false)
	}
	b.ResetTimer()
	for i := range b.N {
		n := 0
		_ = s.LoadQueue(fmt.Sprint("client", i%10_000), 5, func(uint64, []byte) (bool, error) {
			n++
			return true, nil
		})
		if n != 5 {
			b.Fatalf("loaded %d entries; want 5", n)
		}
	}
}
