package pebblestore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrelmq/petrel/store"
)

// helperEnv names the environment variable that turns a test binary run
// into a helper process, and what the helper is asked to do.
const helperEnv = "PETREL_STORE_HELPER"

// helper starts this test binary again running only the test named run, with
// helperEnv set to job and dir given in PETREL_STORE_DIR.
func helper(t *testing.T, run, job, dir string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+job, "PETREL_STORE_DIR="+dir)
	return cmd
}

// crashBatch is batch i of the crash test: it adds message i, queue entry i
// and retained topic i, removes message and queue entry i-5, and records i
// in the session, so that after batches 0..k the store holds exactly what
// checkCrashState expects.
func crashBatch(b *store.Batch, i uint64) {
	b.Reset()
	body := fmt.Appendf(nil, "message %d %s", i, bytes.Repeat([]byte{'x'}, int(i%200)))
	b.PutMessage(i, body)
	b.PutQueue("c", i, strconv.AppendUint(nil, i, 10))
	b.PutRetained(fmt.Sprintf("t/%08d", i), body)
	if i >= 5 {
		b.DeleteMessage(i - 5)
		b.DeleteQueue("c", i-5)
	}
	b.PutSession("c", strconv.AppendUint(nil, i, 10))
}

// lastBatch returns the index of the last batch in s, or -1.
func lastBatch(t *testing.T, s *Store) int64 {
	last := int64(-1)
	err := s.LoadSessions(func(id string, rec []byte) error {
		n, err := strconv.ParseInt(string(rec), 10, 64)
		if id != "c" || err != nil {
			return fmt.Errorf("unexpected session %q = %q", id, rec)
		}
		last = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// checkCrashState checks that s holds exactly batches 0..k, k the session's
// record: every batch whole or absent, none missing before the last.
func checkCrashState(t *testing.T, s *Store) int64 {
	t.Helper()
	k := lastBatch(t, s)
	var topics int64
	err := s.LoadRetained(func(topic string, rec []byte) error {
		if want := fmt.Sprintf("t/%08d", topics); topic != want {
			return fmt.Errorf("retained topic %q where %q was due", topic, want)
		}
		topics++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if topics != k+1 {
		t.Fatalf("the session says batch %d was the last, but retained holds batches 0..%d", k, topics-1)
	}
	wantFrom := max(k-4, 0)
	var ids, seqs []uint64
	if err := s.LoadMessages(func(id uint64, rec []byte) error {
		if !bytes.HasPrefix(rec, fmt.Appendf(nil, "message %d ", id)) {
			return fmt.Errorf("message %d holds %q", id, rec)
		}
		ids = append(ids, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.LoadQueue("c", 0, func(seq uint64, e []byte) (bool, error) {
		seqs = append(seqs, seq)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := wantFrom; i <= k; i++ {
		want = append(want, uint64(i))
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) || fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Fatalf("after batch %d: messages %v and queue %v; want both %v", k, ids, seqs, want)
	}
	return k
}

// TestCrashKeepsSyncedBatches kills a process that commits synced batches
// at a random moment, several times over the same store, and checks that
// every batch it reported committed survived, and that each batch is whole
// or absent.
func TestCrashKeepsSyncedBatches(t *testing.T) {
	dir := t.TempDir()
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		cmd := helper(t, "TestCrashHelper", "crash", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 20 + rand.IntN(300)
		lastReported := int64(-1)
		lines := bufio.NewScanner(out)
		for n := 0; n < killAfter && lines.Scan(); n++ {
			if i, err := strconv.ParseInt(lines.Text(), 10, 64); err == nil {
				lastReported = i
			}
		}
		// The helper goes on committing until the signal lands, so the
		// kill falls at a random point inside some commit.
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if lastReported < 0 {
			t.Fatalf("round %d: the helper reported no commit; stderr:\n%s", round, stderr.Bytes())
		}

		s := openT(t, dir, testOptions())
		k := checkCrashState(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if k < lastReported {
			t.Fatalf("round %d: batch %d was reported committed (synced), but the store ends at batch %d", round, lastReported, k)
		}
		t.Logf("round %d: killed after batch %d was reported; the store holds batches 0..%d", round, lastReported, k)
	}
}

// TestCrashHelper is the process TestCrashKeepsSyncedBatches kills: it
// continues the store's batches from the last one and prints each index
// once Commit has returned.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "crash" {
		t.Skip("helper process for TestCrashKeepsSyncedBatches")
	}
	s, err := Open(os.Getenv("PETREL_STORE_DIR"), testOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var b store.Batch
	for i := uint64(lastBatch(t, s) + 1); ; i++ {
		crashBatch(&b, i)
		if err := s.Commit(&b, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

// TestPowerLossKeepsSyncedBatches runs the store on pebble's in-memory
// filesystem that forgets whatever was not synced when it "crashes": every
// synced batch must survive, and each unsynced one must be whole or absent.
func TestPowerLossKeepsSyncedBatches(t *testing.T) {
	mem := vfs.NewCrashableMem()
	opts := testOptions()
	opts.fs = mem
	s := openT(t, "/store", opts)
	var b store.Batch
	const synced, unsynced = 200, 50
	for i := range uint64(synced + unsynced) {
		crashBatch(&b, i)
		if err := s.Commit(&b, i < synced); err != nil {
			t.Fatal(err)
		}
	}
	for _, percent := range []int{0, 50, 100} {
		opts.fs = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: percent, RNG: rand.New(rand.NewPCG(1, uint64(percent)))})
		after := openT(t, "/store", opts)
		k := checkCrashState(t, after)
		if k < synced-1 {
			t.Errorf("power loss keeping %d%% of unsynced data: the store ends at batch %d; batches up to %d were synced",
				percent, k, synced-1)
		}
		if err := after.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
}

// TestPowerLossAfterSync: commits made without sync survive a power loss
// once Sync returned (the broker's periodic sync mode relies on it).
func TestPowerLossAfterSync(t *testing.T) {
	mem := vfs.NewCrashableMem()
	opts := testOptions()
	opts.fs = mem
	s := openT(t, "/store", opts)
	var b store.Batch
	const n = 100
	for i := range uint64(n) {
		crashBatch(&b, i)
		if err := s.Commit(&b, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	opts.fs = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(1, 2))})
	after := openT(t, "/store", opts)
	if k := checkCrashState(t, after); k < n-1 {
		t.Errorf("power loss after Sync: the store ends at batch %d; batches up to %d were synced by Sync", k, n-1)
	}
	_ = after.Close()
	_ = s.Close()
}

// TestLockedByAnotherProcess opens a store and has another process try.
func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions())
	defer s.Close()
	out, err := helper(t, "TestOpenHelper", "open", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("result: ErrLocked")) || !bytes.Contains(out, []byte("in use by another petrel process")) {
		t.Fatalf("Open from another process while this one has the store open:\n%s\nwant ErrLocked naming another process", out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// TestOpenHelper opens the store in PETREL_STORE_DIR and prints the kind of
// the error it gets.
func TestOpenHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "open" {
		t.Skip("helper process for the tests of Open's errors in another process")
	}
	s, err := Open(os.Getenv("PETREL_STORE_DIR"), testOptions())
	if err == nil {
		_ = s.Close()
	}
	fmt.Printf("result: %s\nerror: %v\n", errorKind(err), err)
}

// errorKind names the store error err wraps.
func errorKind(err error) string {
	for _, k := range []struct {
		name string
		err  error
	}{
		{"ErrLocked", store.ErrLocked}, {"ErrReadOnly", store.ErrReadOnly}, {"ErrFull", store.ErrFull},
		{"ErrCorrupt", store.ErrCorrupt}, {"ErrNewerFormat", store.ErrNewerFormat}, {"ErrClosed", store.ErrClosed},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	if err == nil {
		return "nil"
	}
	return "other"
}
