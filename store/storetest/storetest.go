// Package storetest is the conformance suite every store.Store engine
// passes. An engine's tests call Run with a function that opens a fresh,
// empty store.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/petrelmq/petrel/store"
)

// Run runs the suite. open returns a new, empty store for each subtest; Run
// closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"SessionsPutGetDelete", testSessions},
		{"RetainedPutGetDelete", testRetained},
		{"MessagesPutGetDelete", testMessages},
		{"QueuePutLoadDelete", testQueue},
		{"QueueOrderAndFrom", testQueueOrder},
		{"QueueStopAndError", testQueueStop},
		{"DeleteQueueAllTakesOnlyItsQueue", testDeleteQueueAll},
		{"DeleteSessionTakesOnlyTheRecord", testDeleteSession},
		{"LoadOrder", testLoadOrder},
		{"LoadStopsOnError", testLoadError},
		{"EmptyValues", testEmptyValues},
		{"LargeValue", testLargeValue},
		{"ValuesCopiedAtCommit", testValuesCopied},
		{"InvalidBatchAppliesNothing", testInvalidBatch},
		{"EmptyBatch", testEmptyBatch},
		{"LaterOpWins", testLaterOpWins},
		{"ReadersSeeWholeBatches", testReadersSeeWholeBatches},
		{"ConcurrentCommits", testConcurrentCommits},
		{"Usage", testUsage},
		{"SyncAfterUnsyncedCommits", testSync},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.fn(t, s)
		})
	}
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

// commit commits the ops that build adds, synced, and fails the test on error.
func commit(t *testing.T, s store.Store, build func(b *store.Batch)) {
	t.Helper()
	var b store.Batch
	build(&b)
	if err := s.Commit(&b, true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// record is one loaded key and value.
type record struct {
	key string
	val string
}

func sessions(t *testing.T, s store.Store) []record {
	t.Helper()
	var got []record
	if err := s.LoadSessions(func(id string, rec []byte) error {
		got = append(got, record{id, string(rec)})
		return nil
	}); err != nil {
		t.Fatalf("LoadSessions: %v", err)
	}
	return got
}

func retained(t *testing.T, s store.Store) []record {
	t.Helper()
	var got []record
	if err := s.LoadRetained(func(topic string, rec []byte) error {
		got = append(got, record{topic, string(rec)})
		return nil
	}); err != nil {
		t.Fatalf("LoadRetained: %v", err)
	}
	return got
}

func messages(t *testing.T, s store.Store) []record {
	t.Helper()
	var got []record
	if err := s.LoadMessages(func(id uint64, rec []byte) error {
		got = append(got, record{fmt.Sprint(id), string(rec)})
		return nil
	}); err != nil {
		t.Fatalf("LoadMessages: %v", err)
	}
	return got
}

func queue(t *testing.T, s store.Store, name string, from uint64) []record {
	t.Helper()
	var got []record
	if err := s.LoadQueue(name, from, func(seq uint64, entry []byte) (bool, error) {
		got = append(got, record{fmt.Sprint(seq), string(entry)})
		return true, nil
	}); err != nil {
		t.Fatalf("LoadQueue(%q, %d): %v", name, from, err)
	}
	return got
}

func want(t *testing.T, what string, got, want []record) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func testSessions(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutSession("c1", []byte("one"))
		b.PutSession("c2", []byte("two"))
	})
	want(t, "sessions after put", sessions(t, s), []record{{"c1", "one"}, {"c2", "two"}})
	commit(t, s, func(b *store.Batch) { b.PutSession("c1", []byte("uno")) })
	want(t, "sessions after overwrite", sessions(t, s), []record{{"c1", "uno"}, {"c2", "two"}})
	commit(t, s, func(b *store.Batch) { b.DeleteSession("c1") })
	want(t, "sessions after delete", sessions(t, s), []record{{"c2", "two"}})
	commit(t, s, func(b *store.Batch) { b.DeleteSession("never-there") })
	want(t, "sessions after deleting a missing one", sessions(t, s), []record{{"c2", "two"}})
	if got := retained(t, s); len(got) != 0 {
		t.Errorf("sessions leaked into retained: %q", got)
	}
}

func testRetained(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutRetained("a/b", []byte("x"))
		b.PutRetained("a/b/c", []byte("y"))
		b.PutRetained("$SYS/uptime", []byte("z"))
	})
	want(t, "retained after put", retained(t, s), []record{{"$SYS/uptime", "z"}, {"a/b", "x"}, {"a/b/c", "y"}})
	commit(t, s, func(b *store.Batch) {
		b.DeleteRetained("a/b")
		b.PutRetained("a/b/c", []byte("y2"))
	})
	want(t, "retained after delete", retained(t, s), []record{{"$SYS/uptime", "z"}, {"a/b/c", "y2"}})
	if got := sessions(t, s); len(got) != 0 {
		t.Errorf("retained leaked into sessions: %q", got)
	}
}

func testMessages(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutMessage(1, []byte("body1"))
		b.PutMessage(2, []byte("body2"))
	})
	body, err := s.Message(1)
	if err != nil || string(body) != "body1" {
		t.Errorf("Message(1) = %q, %v; want body1", body, err)
	}
	commit(t, s, func(b *store.Batch) { b.DeleteMessage(1) })
	if body, err := s.Message(1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message(1) after delete = %q, %v; want ErrNotFound", body, err)
	}
	if _, err := s.Message(99); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message(99) never stored: err %v; want ErrNotFound", err)
	}
	want(t, "messages", messages(t, s), []record{{"2", "body2"}})

	// The body Message returns is the caller's.
	body, _ = s.Message(2)
	body[0] = 'X'
	if again, _ := s.Message(2); string(again) != "body2" {
		t.Errorf("changing Message's result changed the store: now %q", again)
	}
}

func testQueue(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutQueue("c", 1, []byte("e1"))
		b.PutQueue("c", 2, []byte("e2"))
		b.PutQueue("c", 3, []byte("e3"))
	})
	want(t, "queue", queue(t, s, "c", 0), []record{{"1", "e1"}, {"2", "e2"}, {"3", "e3"}})
	commit(t, s, func(b *store.Batch) {
		b.DeleteQueue("c", 1)
		b.DeleteQueue("c", 3)
		b.DeleteQueue("c", 7) // never there
		b.PutQueue("c", 2, []byte("e2'"))
	})
	want(t, "queue after deletes", queue(t, s, "c", 0), []record{{"2", "e2'"}})
	if got := queue(t, s, "nobody", 0); len(got) != 0 {
		t.Errorf("queue of an unknown client: %q", got)
	}
}

func testQueueOrder(t *testing.T, s store.Store) {
	seqs := []uint64{5, 1, 1 << 63, 10, 3, 256, 255, ^uint64(0), 0}
	for _, seq := range seqs { // one batch each, out of order
		commit(t, s, func(b *store.Batch) { b.PutQueue("c", seq, []byte(fmt.Sprint("e", seq))) })
	}
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	var all []record
	for _, seq := range sorted {
		all = append(all, record{fmt.Sprint(seq), fmt.Sprint("e", seq)})
	}
	want(t, "queue from 0", queue(t, s, "c", 0), all)
	want(t, "queue from 3", queue(t, s, "c", 3), all[2:])
	want(t, "queue from 4", queue(t, s, "c", 4), all[3:])
	want(t, "queue from 256", queue(t, s, "c", 256), all[6:])
	want(t, "queue from max", queue(t, s, "c", ^uint64(0)), all[len(all)-1:])

	// A long queue, to cross any internal chunking.
	commit(t, s, func(b *store.Batch) {
		for seq := uint64(1000); seq < 1500; seq++ {
			b.PutQueue("long", seq, []byte{byte(seq)})
		}
	})
	got := queue(t, s, "long", 1100)
	if len(got) != 400 || got[0].key != "1100" || got[399].key != "1499" {
		t.Errorf("long queue from 1100: %d entries, first %v last %v; want 400 from 1100 to 1499",
			len(got), got[0], got[len(got)-1])
	}
}

func testQueueStop(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		for seq := uint64(1); seq <= 10; seq++ {
			b.PutQueue("c", seq, []byte("e"))
		}
	})
	var n int
	err := s.LoadQueue("c", 0, func(seq uint64, entry []byte) (bool, error) {
		n++
		return n < 3, nil
	})
	if err != nil || n != 3 {
		t.Errorf("LoadQueue stopping after 3: called %d times, err %v", n, err)
	}
	boom := errors.New("boom")
	n = 0
	err = s.LoadQueue("c", 0, func(seq uint64, entry []byte) (bool, error) {
		n++
		return true, boom
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Errorf("LoadQueue with fn failing: called %d times, err %v; want 1 and boom", n, err)
	}
}

// sameNames are names of which each is a prefix of the next, or differs
// only after a NUL: a range over one must not reach into another.
var sameNames = []string{"", "a", "a\x00", "a\x00b", "ab", "b", "a\xff"}

// fillNames gives every name of sameNames a session record and a queue of
// three entries, and adds a retained message and a message body named a.
func fillNames(t *testing.T, s store.Store) {
	t.Helper()
	commit(t, s, func(b *store.Batch) {
		for _, name := range sameNames {
			b.PutSession(name, []byte("s:"+name))
			for seq := uint64(0); seq < 3; seq++ {
				b.PutQueue(name, seq, []byte(fmt.Sprintf("%s/%d", name, seq)))
			}
		}
		b.PutRetained("a", []byte("retained a"))
		b.PutMessage(0x61, []byte("message 'a'"))
	})
}

// wantQueues checks that every queue of sameNames but gone still holds its
// three entries.
func wantQueues(t *testing.T, s store.Store, after, gone string) {
	t.Helper()
	for _, name := range sameNames {
		if name != gone {
			want(t, fmt.Sprintf("queue %q after %s", name, after), queue(t, s, name, 0),
				[]record{{"0", name + "/0"}, {"1", name + "/1"}, {"2", name + "/2"}})
		}
	}
}

func testDeleteQueueAll(t *testing.T, s store.Store) {
	fillNames(t, s)
	commit(t, s, func(b *store.Batch) { b.DeleteQueueAll("a") })

	if got := queue(t, s, "a", 0); len(got) != 0 {
		t.Errorf("queue a after DeleteQueueAll(a): %q", got)
	}
	wantQueues(t, s, "DeleteQueueAll(a)", "a")
	var wantSessions []record
	for _, name := range slices.Sorted(slices.Values(sameNames)) {
		wantSessions = append(wantSessions, record{name, "s:" + name})
	}
	want(t, "sessions after DeleteQueueAll(a)", sessions(t, s), wantSessions)
	want(t, "retained after DeleteQueueAll(a)", retained(t, s), []record{{"a", "retained a"}})
	want(t, "messages after DeleteQueueAll(a)", messages(t, s), []record{{"97", "message 'a'"}})

	// The queue can be used again afterwards.
	commit(t, s, func(b *store.Batch) { b.PutQueue("a", 9, []byte("again")) })
	want(t, "queue a reused", queue(t, s, "a", 0), []record{{"9", "again"}})
}

func testDeleteSession(t *testing.T, s store.Store) {
	fillNames(t, s)
	commit(t, s, func(b *store.Batch) { b.DeleteSession("a") })

	var wantSessions []record
	for _, name := range slices.Sorted(slices.Values(sameNames)) {
		if name != "a" {
			wantSessions = append(wantSessions, record{name, "s:" + name})
		}
	}
	want(t, "sessions after DeleteSession(a)", sessions(t, s), wantSessions)
	// Queues are named apart from sessions: a queue named a stays.
	wantQueues(t, s, "DeleteSession(a)", "")
	want(t, "retained after DeleteSession(a)", retained(t, s), []record{{"a", "retained a"}})
	want(t, "messages after DeleteSession(a)", messages(t, s), []record{{"97", "message 'a'"}})
}

func testLoadOrder(t *testing.T, s store.Store) {
	ids := []string{"zeta", "a", "ab", "a\x00", "B", "", "\xff", "a/b"}
	topics := []string{"x/y", "x", "$SYS/a", "x/y/z", "X", "x/\x00"}
	msgIDs := []uint64{256, 1, 0, 255, 1 << 40, ^uint64(0), 65536}
	commit(t, s, func(b *store.Batch) {
		for _, id := range ids {
			b.PutSession(id, []byte("s"+id))
		}
		for _, tp := range topics {
			b.PutRetained(tp, []byte("r"+tp))
		}
		for _, id := range msgIDs {
			b.PutMessage(id, []byte(fmt.Sprint("m", id)))
		}
	})
	var wantS, wantR, wantM []record
	for _, id := range slices.Sorted(slices.Values(ids)) {
		wantS = append(wantS, record{id, "s" + id})
	}
	for _, tp := range slices.Sorted(slices.Values(topics)) {
		wantR = append(wantR, record{tp, "r" + tp})
	}
	for _, id := range slices.Sorted(slices.Values(msgIDs)) {
		wantM = append(wantM, record{fmt.Sprint(id), fmt.Sprint("m", id)})
	}
	want(t, "LoadSessions order (bytewise by client id)", sessions(t, s), wantS)
	want(t, "LoadRetained order (bytewise by topic)", retained(t, s), wantR)
	want(t, "LoadMessages order (numeric by id)", messages(t, s), wantM)
}

func testLoadError(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		for i := range 5 {
			b.PutSession(fmt.Sprint(i), []byte("s"))
			b.PutRetained(fmt.Sprint(i), []byte("r"))
			b.PutMessage(uint64(i), []byte("m"))
		}
	})
	boom := errors.New("boom")
	check := func(what string, load func(stopAt int, calls *int) error) {
		t.Helper()
		var calls int
		if err := load(2, &calls); !errors.Is(err, boom) || calls != 2 {
			t.Errorf("%s with fn failing on the 2nd record: %d calls, err %v; want 2 and boom", what, calls, err)
		}
	}
	check("LoadSessions", func(stopAt int, calls *int) error {
		return s.LoadSessions(func(string, []byte) error { return failAt(stopAt, calls, boom) })
	})
	check("LoadRetained", func(stopAt int, calls *int) error {
		return s.LoadRetained(func(string, []byte) error { return failAt(stopAt, calls, boom) })
	})
	check("LoadMessages", func(stopAt int, calls *int) error {
		return s.LoadMessages(func(uint64, []byte) error { return failAt(stopAt, calls, boom) })
	})
}

func failAt(at int, calls *int, err error) error {
	*calls++
	if *calls == at {
		return err
	}
	return nil
}

func testEmptyValues(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutSession("c", nil)
		b.PutRetained("t", []byte{})
		b.PutMessage(1, nil)
		b.PutQueue("c", 1, nil)
	})
	want(t, "empty session", sessions(t, s), []record{{"c", ""}})
	want(t, "empty retained", retained(t, s), []record{{"t", ""}})
	want(t, "empty queue entry", queue(t, s, "c", 0), []record{{"1", ""}})
	if body, err := s.Message(1); err != nil || len(body) != 0 {
		t.Errorf("Message(1) stored empty = %q, %v; want empty and no error", body, err)
	}
}

func testLargeValue(t *testing.T, s store.Store) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	commit(t, s, func(b *store.Batch) { b.PutMessage(7, big) })
	got, err := s.Message(7)
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("Message(7) of 1 MiB: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, big), err)
	}
}

func testValuesCopied(t *testing.T, s store.Store) {
	buf := []byte("original")
	var b store.Batch
	b.PutSession("c", buf)
	b.PutRetained("t", buf)
	b.PutMessage(1, buf)
	b.PutQueue("c", 1, buf)
	if err := s.Commit(&b, false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	copy(buf, "CHANGED!") // the caller reuses its buffer
	b.Reset()
	b.PutSession("other", buf) // and its batch
	if err := s.Commit(&b, false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	want(t, "sessions", sessions(t, s), []record{{"c", "original"}, {"other", "CHANGED!"}})
	want(t, "retained", retained(t, s), []record{{"t", "original"}})
	want(t, "queue", queue(t, s, "c", 0), []record{{"1", "original"}})
	if body, _ := s.Message(1); string(body) != "original" {
		t.Errorf("Message(1) = %q after the caller changed its buffer; want original", body)
	}

}

func testInvalidBatch(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) { b.PutSession("keep", []byte("v1")) })
	var b store.Batch
	b.PutSession("keep", []byte("v2"))
	b.PutRetained("t", []byte("r"))
	b.Ops = append(b.Ops, store.Op{NS: store.Namespace('x'), Name: "bad", Value: []byte("?")})
	if err := s.Commit(&b, true); err == nil {
		t.Fatal("Commit of a batch with an unknown namespace succeeded; want an error")
	}
	want(t, "sessions after a refused batch", sessions(t, s), []record{{"keep", "v1"}})
	if got := retained(t, s); len(got) != 0 {
		t.Errorf("retained after a refused batch: %q; want nothing of it applied", got)
	}
}

func testEmptyBatch(t *testing.T, s store.Store) {
	var b store.Batch
	if err := s.Commit(&b, true); err != nil {
		t.Errorf("Commit of an empty batch: %v", err)
	}
}

func testLaterOpWins(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) {
		b.PutSession("c", []byte("first"))
		b.PutQueue("c", 1, []byte("q1"))
		b.DeleteSession("c")
		b.DeleteQueueAll("c") // takes the queue entry above
		b.PutSession("c", []byte("second"))
		b.PutQueue("c", 2, []byte("q2"))
		b.PutMessage(1, []byte("m"))
		b.DeleteMessage(1)
	})
	want(t, "sessions", sessions(t, s), []record{{"c", "second"}})
	want(t, "queue", queue(t, s, "c", 0), []record{{"2", "q2"}})
	if _, err := s.Message(1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message(1) put then deleted in one batch: err %v; want ErrNotFound", err)
	}
}

// testReadersSeeWholeBatches commits batches that set two records to the
// same value while readers load both; a reader seeing them differ saw half a
// batch.
func testReadersSeeWholeBatches(t *testing.T, s store.Store) {
	const rounds = 300
	done := make(chan struct{})
	var wg sync.WaitGroup
	var torn []string
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				var vals []string
				err := s.LoadRetained(func(topic string, rec []byte) error {
					vals = append(vals, string(rec))
					return nil
				})
				if err != nil {
					t.Errorf("LoadRetained: %v", err)
					return
				}
				if len(vals) == 2 && vals[0] != vals[1] || len(vals) == 1 {
					mu.Lock()
					torn = append(torn, fmt.Sprint(vals))
					mu.Unlock()
				}
			}
		})
	}
	for i := range rounds {
		v := []byte(fmt.Sprint(i))
		commit(t, s, func(b *store.Batch) {
			b.PutRetained("x", v)
			b.PutRetained("y", v)
		})
	}
	close(done)
	wg.Wait()
	if len(torn) > 0 {
		t.Errorf("readers saw half a batch %d times, e.g. %s", len(torn), torn[0])
	}
}

func testConcurrentCommits(t *testing.T, s store.Store) {
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprint("client", w)
			for i := range each {
				var b store.Batch
				b.PutQueue(id, uint64(i), []byte("e"))
				b.PutMessage(uint64(w*each+i), []byte("m"))
				if err := s.Commit(&b, i%2 == 0); err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		if got := queue(t, s, fmt.Sprint("client", w), 0); len(got) != each {
			t.Errorf("client%d: %d queue entries; want %d", w, len(got), each)
		}
	}
	if got := messages(t, s); len(got) != writers*each {
		t.Errorf("%d messages; want %d", len(got), writers*each)
	}
}

func testUsage(t *testing.T, s store.Store) {
	before, err := s.Usage()
	if err != nil || before < 0 {
		t.Fatalf("Usage: %d, %v", before, err)
	}
	commit(t, s, func(b *store.Batch) {
		for i := range 100 {
			b.PutMessage(uint64(i), bytes.Repeat([]byte{byte(i)}, 1000))
		}
	})
	after, err := s.Usage()
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if after < before+50_000 {
		t.Errorf("Usage after storing 100 KB went from %d to %d; want it to grow by most of that", before, after)
	}
}

func testClose(t *testing.T, s store.Store) {
	commit(t, s, func(b *store.Batch) { b.PutSession("c", []byte("v")) })
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var b store.Batch
	b.PutSession("c", []byte("v2"))
	if err := s.Commit(&b, true); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after Close: err %v; want ErrClosed", err)
	}
	if err := s.LoadSessions(func(string, []byte) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadSessions after Close: err %v; want ErrClosed", err)
	}
	if _, err := s.Message(1); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Message after Close: err %v; want ErrClosed", err)
	}
	if err := s.Sync(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Sync after Close: err %v; want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v; want nil", err)
	}
}

// testSync: Sync succeeds after commits made without sync, and they stay.
func testSync(t *testing.T, s store.Store) {
	for i := range 10 {
		var b store.Batch
		b.PutQueue("c", uint64(i+1), []byte{byte(i)})
		if err := s.Commit(&b, false); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := queue(t, s, "c", 0); len(got) != 10 {
		t.Fatalf("after Sync: %d entries, want 10", len(got))
	}
}
