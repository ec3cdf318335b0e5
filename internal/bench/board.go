package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/petrelmq/petrel/internal/topic"
)

// The board holds a run's counters: plain memory when the run is one
// process, a shared memory-mapped file with --procs. Every process writes
// the counters of its own clients and reads everyone's, so the coordinator
// prints live totals, publishers see how far subscribers in any process
// have got (backpressure), and losses are counted across processes. Times
// on the board are nanoseconds since the run's start plus one: 0 means
// "not yet".
type board struct {
	w                         []atomic.Uint64
	mem                       []byte // the mapping, with --procs
	procs, pubs, subs, npairs int
}

// Words per record; each record starts on its own cache line.
const (
	hdrWords  = 8
	procWords = 16
	pubWords  = 8
	subWords  = 8
	pairWords = 2
)

// Header words.
const (
	hReady   = iota // processes connected and waiting for the start
	hGo             // the measurement's start
	hStop           // 1: stop publishing, stop holding
	hRelease        // 1: the coordinator has read the broker; disconnect
)

// Words of a process.
const (
	pConnOK    = iota // connections (and subscriptions) that succeeded
	pConnFail         // that failed
	pConnFirst        // when its first connection attempt began
	pConnLast         // when its last connection ended (CONNACK or failure)
	pLost             // connections lost after they were up
	pMeasured         // when its measurement ended
	pWaits            // times a publisher waited for a subscriber (backpressure)
	pStalls           // times a publisher gave up waiting after a second
	pPubErr           // publishes refused by the client
	pResumed          // connections whose CONNACK said Session Present
)

// Words of a publisher.
const (
	wSent   = iota // published
	wAcked         // acknowledged (QoS 0: handed to the connection)
	wFailed        // acknowledged with a failure, or lost with the connection
	wDoneAt        // when it finished (and its acknowledgements arrived)
)

// Words of a subscriber.
const (
	wRecv     = iota // messages received
	wBytes           // their payload bytes
	wDups            // received again (a sequence number already seen)
	wForeign         // not from this run's publishers
	wLastRecv        // when the last one arrived
	wDead            // 1: its connection ended during the run
)

func boardWords(procs, pubs, subs, pairs int) int {
	return hdrWords + procs*procWords + pubs*pubWords + subs*subWords + pairs*pairWords
}

func newBoard(procs, pubs, subs, pairs int) *board {
	return &board{w: make([]atomic.Uint64, boardWords(procs, pubs, subs, pairs)),
		procs: procs, pubs: pubs, subs: subs, npairs: pairs}
}

// createSharedBoard makes the board of a run of several processes in a new
// file (in /dev/shm when there is one) and maps it.
func createSharedBoard(procs, pubs, subs, pairs int) (*board, string, error) {
	dir := os.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir = "/dev/shm"
	}
	f, err := os.CreateTemp(dir, "petrel-bench-*")
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	size := int64(boardWords(procs, pubs, subs, pairs) * 8)
	if err := f.Truncate(size); err != nil {
		os.Remove(f.Name())
		return nil, "", err
	}
	b, err := mapBoard(f, size, procs, pubs, subs, pairs)
	if err != nil {
		os.Remove(f.Name())
		return nil, "", err
	}
	return b, f.Name(), nil
}

// openSharedBoard maps the board a coordinator made.
func openSharedBoard(path string, procs, pubs, subs, pairs int) (*board, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := int64(boardWords(procs, pubs, subs, pairs) * 8)
	if st, err := f.Stat(); err != nil || st.Size() != size {
		return nil, fmt.Errorf("bench board %s: not the size this run needs (%d bytes)", path, size)
	}
	return mapBoard(f, size, procs, pubs, subs, pairs)
}

func mapBoard(f *os.File, size int64, procs, pubs, subs, pairs int) (*board, error) {
	mem, err := mapShared(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("bench board: %w", err)
	}
	// The mapping is page-aligned, so 8-byte atomics on it are aligned;
	// they work across processes as they do across threads.
	w := unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&mem[0])), size/8)
	return &board{w: w, mem: mem, procs: procs, pubs: pubs, subs: subs, npairs: pairs}, nil
}

func (b *board) close() {
	if b.mem != nil {
		unmapBoard(b.mem)
		b.mem, b.w = nil, nil
	}
}

func (b *board) hdr(i int) *atomic.Uint64 { return &b.w[i] }
func (b *board) proc(k, i int) *atomic.Uint64 {
	return &b.w[hdrWords+k*procWords+i]
}
func (b *board) pub(p, i int) *atomic.Uint64 {
	return &b.w[hdrWords+b.procs*procWords+p*pubWords+i]
}
func (b *board) sub(s, i int) *atomic.Uint64 {
	return &b.w[hdrWords+b.procs*procWords+b.pubs*pubWords+s*subWords+i]
}

// pairNext is the sequence number a subscriber expects next from a
// publisher; pairUnique counts the distinct messages it got from it.
func (b *board) pairNext(k int) *atomic.Uint64 {
	return &b.w[hdrWords+b.procs*procWords+b.pubs*pubWords+b.subs*subWords+k*pairWords]
}
func (b *board) pairUnique(k int) *atomic.Uint64 {
	return &b.w[hdrWords+b.procs*procWords+b.pubs*pubWords+b.subs*subWords+k*pairWords+1]
}

// sumProcs, sumPubs and sumSubs add up one word over every record.
func (b *board) sumProcs(i int) uint64 {
	var n uint64
	for k := range b.procs {
		n += b.proc(k, i).Load()
	}
	return n
}

func (b *board) sumPubs(i int) uint64 {
	var n uint64
	for p := range b.pubs {
		n += b.pub(p, i).Load()
	}
	return n
}

func (b *board) sumSubs(i int) uint64 {
	var n uint64
	for s := range b.subs {
		n += b.sub(s, i).Load()
	}
	return n
}

// atomicMax and atomicMinSet keep the largest, and the smallest non-zero,
// value stored.
func atomicMax(w *atomic.Uint64, v uint64) {
	for {
		o := w.Load()
		if v <= o || w.CompareAndSwap(o, v) {
			return
		}
	}
}

func atomicMinSet(w *atomic.Uint64, v uint64) {
	for {
		o := w.Load()
		if (o != 0 && o <= v) || w.CompareAndSwap(o, v) {
			return
		}
	}
}

// The topology is who publishes where and who hears whom: every process of
// a run computes the same one from the flags. A pair is a subscriber and a
// publisher whose topic its filter matches; the board tracks each pair's
// sequence numbers, which is how losses, duplicates and backpressure work.
type topology struct {
	pubIDs, pubTopics  []string
	subIDs, subFilters []string

	// tracked: pairs are counted. Off when the subscribers' filters are
	// shared subscriptions (each message goes to one member), or when there
	// would be more than maxPairs pairs.
	tracked  bool
	untraced string // why not, for the report

	subAll   []bool    // the subscriber hears every publisher
	subPubs  [][]int32 // otherwise the publishers it hears, ascending
	subPair  []int     // the index of its first pair
	pubPairs [][]pairRef
	pairs    int
}

// pairRef is one of a publisher's pairs: the board index, the subscriber,
// and how many messages the publisher may be ahead of it.
type pairRef struct {
	idx    int
	sub    int32
	window int32
}

const (
	maxPairs = 4 << 20
	// maxMatches bounds topic.Match calls when computing pairs.
	maxMatches = 8 << 20
)

// expandPattern replaces %i with the client's index and %c with its id.
func expandPattern(pattern string, i int, id string) string {
	if !strings.Contains(pattern, "%") {
		return pattern
	}
	return strings.NewReplacer("%i", strconv.Itoa(i), "%c", id).Replace(pattern)
}

// clientID is the client identifier of a role's i-th client.
func clientID(prefix, role string, i int) string {
	return prefix + role + "-" + strconv.Itoa(i)
}

// newTopology lays out cfg's publishers on its topic and its subscribers
// on its filter.
func newTopology(cfg *Config) *topology {
	prefix, topicPattern, filterPattern := cfg.IDPrefix, cfg.Topic, cfg.Filter
	pubs, subs, window := cfg.Pubs, cfg.Subs, cfg.subWindow()
	t := &topology{
		pubIDs: make([]string, pubs), pubTopics: make([]string, pubs),
		subIDs: make([]string, subs), subFilters: make([]string, subs),
	}
	for i := range pubs {
		t.pubIDs[i] = clientID(prefix, "pub", i)
		t.pubTopics[i] = expandPattern(topicPattern, i, t.pubIDs[i])
	}
	for i := range subs {
		t.subIDs[i] = clientID(prefix, "sub", i)
		t.subFilters[i] = expandPattern(filterPattern, i, t.subIDs[i])
	}
	if pubs == 0 || subs == 0 {
		return t
	}
	if topic.IsShared(filterPattern) {
		t.untraced = "shared subscriptions split the messages between subscribers"
		return t
	}

	// Match each distinct filter once against each publisher's topic.
	byFilter := map[string][]int32{}
	for _, f := range t.subFilters {
		if _, ok := byFilter[f]; !ok {
			byFilter[f] = nil
		}
	}
	if len(byFilter)*pubs > maxMatches {
		t.untraced = fmt.Sprintf("%d filters × %d publishers is too many to match", len(byFilter), pubs)
		return t
	}
	pairs := 0
	for f := range byFilter {
		var m []int32
		for p, name := range t.pubTopics {
			if topic.Match(f, name) {
				m = append(m, int32(p))
			}
		}
		byFilter[f] = m
	}
	for _, f := range t.subFilters {
		pairs += len(byFilter[f])
	}
	if pairs > maxPairs {
		t.untraced = fmt.Sprintf("%d subscriber-publisher pairs are more than the %d tracked", pairs, maxPairs)
		return t
	}

	t.tracked, t.pairs = true, pairs
	t.subAll, t.subPubs, t.subPair = make([]bool, subs), make([][]int32, subs), make([]int, subs)
	t.pubPairs = make([][]pairRef, pubs)
	next := 0
	for s, f := range t.subFilters {
		m := byFilter[f]
		t.subPair[s] = next
		t.subAll[s] = len(m) == pubs
		if !t.subAll[s] {
			t.subPubs[s] = m
		}
		// The subscriber's window is shared by the publishers it hears.
		w := int32(max(1, window/max(1, len(m))))
		for j, p := range m {
			t.pubPairs[p] = append(t.pubPairs[p], pairRef{idx: next + j, sub: int32(s), window: w})
		}
		next += len(m)
	}
	return t
}

// pairOf is the pair of subscriber s and publisher p, if s hears p.
func (t *topology) pairOf(s int, p uint32) (int, bool) {
	if t.subAll[s] {
		if int(p) >= len(t.pubIDs) {
			return 0, false
		}
		return t.subPair[s] + int(p), true
	}
	m := t.subPubs[s]
	lo, hi := 0, len(m)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint32(m[mid]) < p {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(m) && uint32(m[lo]) == p {
		return t.subPair[s] + lo, true
	}
	return 0, false
}

// pubsOf calls fn with each publisher subscriber s hears and their pair.
func (t *topology) pubsOf(s int, fn func(p, pair int)) {
	if t.subAll[s] {
		for p := range t.pubIDs {
			fn(p, t.subPair[s]+p)
		}
		return
	}
	for j, p := range t.subPubs[s] {
		fn(int(p), t.subPair[s]+j)
	}
}
