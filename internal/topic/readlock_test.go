package topic

import (
	"math/bits"
	"sync"
	"testing"
)

func TestReadLockSpreadsReadersAndWriterTakesAll(t *testing.T) {
	l := newReadLock()
	if n := len(l.shards); n < 8 || bits.OnesCount(uint(n)) != 1 {
		t.Fatalf("%d shards, want a power of 2, at least 8", n)
	}
	seen := map[*sync.RWMutex]bool{}
	for hint := uintptr(0xc000010000); len(seen) < len(l.shards) && hint < 0xc000020000; hint += 48 {
		s := l.rlock(hint) // hints like the addresses of 48-byte allocations
		seen[s] = true
		s.RUnlock()
	}
	if len(seen) != len(l.shards) {
		t.Errorf("hints reached %d of %d shards", len(seen), len(l.shards))
	}

	l.lock()
	for i := range l.shards {
		if l.shards[i].TryRLock() {
			t.Errorf("shard %d can be read-locked while the writer holds the lock", i)
		}
	}
	l.unlock()

	reader := l.rlock(12345)
	for i := range l.shards {
		s := &l.shards[i].RWMutex
		if got, want := s.TryLock(), s != reader; got != want {
			t.Errorf("shard %d: TryLock = %v with a reader on shard %p, want %v", i, got, reader, want)
		} else if got {
			s.Unlock()
		}
	}
	reader.RUnlock()
}
