package broker

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/store"
)

// committer writes to the store from one goroutine. Writes join the open
// commit group; when the previous commit finishes, the committer closes the
// open group, waits for the routings still filling it, and commits it as one
// batch: concurrent publishers share one fsync. Groups commit in order, and
// each one's waiters hear the outcome after it.
//
// A routing pins the open group with begin, adds its writes, and unpins it
// with end; the group cannot commit while pinned, and a group that has been
// closed takes no new pins, so a commit waits at most for routings already
// under way.
type committer struct {
	st  store.Store
	log *slog.Logger

	mu    sync.Mutex
	cond  *sync.Cond // signalled when a closed group's pins reach zero
	open  *commitGroup
	spare *commitGroup
	wake  chan struct{}
	done  chan struct{}

	// refs caches message reference counts the committer has written, so a
	// count is read from the store at most once while it stays in use.
	refs map[uint64]uint32

	// syncEvery, when positive, makes commits unsynced and syncs the store
	// that often instead; unsynced says a sync is due.
	syncEvery time.Duration
	unsynced  bool

	// latency is the time each commit group took to write, for Stats.
	latency latencyHistogram

	// cluster, once replicating is set, gets a copy of every commit's
	// session writes before the commit's waiters hear of it (replica.go).
	cluster     Cluster
	replicating atomic.Bool
	repBuf      []ReplicaWrite
}

// commitWaiter hears that the group it joined committed (err nil) or failed.
type commitWaiter interface {
	committed(group uint64, err error)
}

type commitGroup struct {
	id      uint64
	pins    int
	closing bool
	sync    bool
	batch   store.Batch
	waiters []commitWaiter
	// newRefs are the reference counts of messages first stored in this
	// group; dropRefs the references released (acknowledged deliveries).
	newRefs  map[uint64]uint32
	dropRefs map[uint64]uint32
	// dropQueues are durable sessions whose queues are discarded: their
	// entries' references are released before the range is deleted.
	dropQueues []string
	// lazy lists the writes of batch that nobody waits for (removals,
	// bookkeeping): a refused commit does not lose them, they are tried
	// again with the next group. The others belong to waiters, who hear of
	// the failure.
	lazy []int
}

// refKeyBit marks the message-namespace key holding a message's reference
// count, next to its body at the same id without the bit.
const refKeyBit = 1 << 63

func newCommitter(st store.Store, log *slog.Logger) *committer {
	cm := &committer{
		st:    st,
		log:   log,
		open:  newCommitGroup(1),
		spare: newCommitGroup(0),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		refs:  make(map[uint64]uint32),
	}
	cm.cond = sync.NewCond(&cm.mu)
	return cm
}

func newCommitGroup(id uint64) *commitGroup {
	return &commitGroup{id: id, newRefs: make(map[uint64]uint32), dropRefs: make(map[uint64]uint32)}
}

// begin pins the open group for a routing and returns it. The caller adds
// writes with the group's methods under the pin and calls end.
func (cm *committer) begin() *commitGroup {
	cm.mu.Lock()
	g := cm.open
	g.pins++
	cm.mu.Unlock()
	return g
}

// endTx adds a routing's writes to g, which it pinned with begin, registers
// its waiters, unpins g and wakes the committer.
func (cm *committer) endTx(g *commitGroup, tx *routeTx) {
	cm.mu.Lock()
	g.batch.Append(&tx.b)
	if tx.msgID != 0 && tx.refs > 0 {
		g.newRefs[tx.msgID] += tx.refs
	}
	for _, e := range tx.earlier {
		g.newRefs[e.id] += e.refs
	}
	g.sync = g.sync || tx.sync
	g.waiters = append(g.waiters, tx.waiters...)
	g.pins--
	if g.closing && g.pins == 0 {
		cm.cond.Broadcast()
	}
	cm.mu.Unlock()
	cm.poke()
}

// dropEntry removes a delivery that is done with and releases its
// reference to the message body. Nobody waits for it: if a crash loses it,
// the delivery is made again, which QoS 1 and 2 allow for.
func (cm *committer) dropEntry(queue string, seq, msgID uint64) {
	cm.mu.Lock()
	cm.open.lazy = append(cm.open.lazy, cm.open.batch.Len())
	cm.open.batch.DeleteQueue(queue, seq)
	cm.open.dropRefs[msgID]++
	cm.mu.Unlock()
	cm.poke()
}

// write adds writes nobody waits for to the open group.
func (cm *committer) write(b *store.Batch) {
	cm.mu.Lock()
	for i := range b.Len() {
		cm.open.lazy = append(cm.open.lazy, cm.open.batch.Len()+i)
	}
	cm.open.batch.Append(b)
	cm.mu.Unlock()
	cm.poke()
}

// dropSession removes a durable session from the store: its record, its
// queues, and its queue entries' references to message bodies.
func (cm *committer) dropSession(clientID, queue, inbound string) {
	cm.drop(clientID, queue, inbound)
}

// dropQueues removes a session's queues, and their entries' references
// to message bodies, but not its record: a session that moved to another
// node while a new one of the same client id began here.
func (cm *committer) dropQueues(queue, inbound string) { cm.drop("", queue, inbound) }

// drop removes a session's queues, and its record unless clientID is "".
func (cm *committer) drop(clientID, queue, inbound string) {
	cm.mu.Lock()
	g := cm.open
	g.dropQueues = append(g.dropQueues, queue)
	n := g.batch.Len()
	if clientID != "" {
		g.batch.DeleteSession(clientID)
	}
	g.batch.DeleteQueueAll(queue)
	g.batch.DeleteQueueAll(inbound)
	for i := n; i < g.batch.Len(); i++ {
		g.lazy = append(g.lazy, i)
	}
	cm.mu.Unlock()
	cm.poke()
}

func (cm *committer) poke() {
	select {
	case cm.wake <- struct{}{}:
	default:
	}
}

// run commits groups until stop. Call it on its own goroutine.
func (cm *committer) run() {
	var tick <-chan time.Time
	if cm.syncEvery > 0 {
		t := time.NewTicker(cm.syncEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-cm.wake:
			cm.commitOpen()
		case <-tick:
			cm.syncNow()
		case <-cm.done:
			cm.commitOpen() // whatever is left
			cm.syncNow()
			return
		}
	}
}

// syncNow makes the unsynced commits of the periodic mode durable.
func (cm *committer) syncNow() {
	if !cm.unsynced {
		return
	}
	cm.unsynced = false
	if err := cm.st.Sync(); err != nil {
		cm.log.Error("store sync failed", "err", err)
	}
}

// stop makes run commit what is left and return.
func (cm *committer) stop() { close(cm.done) }

// commitOpen closes the open group, waits for its pins, and commits it.
func (cm *committer) commitOpen() {
	cm.mu.Lock()
	g := cm.open
	if g.batch.Len() == 0 && len(g.waiters) == 0 && len(g.dropRefs) == 0 && len(g.newRefs) == 0 &&
		len(g.dropQueues) == 0 && g.pins == 0 {
		cm.mu.Unlock()
		return
	}
	next := cm.spare
	next.id = g.id + 1
	cm.open, cm.spare = next, nil
	g.closing = true
	for g.pins > 0 {
		cm.cond.Wait()
	}
	cm.mu.Unlock()

	start := time.Now()
	err := cm.prepare(g)
	if err == nil {
		sync := g.sync && cm.syncEvery <= 0
		err = cm.st.Commit(&g.batch, sync)
		cm.unsynced = cm.unsynced || (!sync && g.batch.Len() > 0)
		if err == nil {
			// On this node's disk, not yet on the others': the waiters
			// hear of a failure, and the store keeps the writes.
			if err = cm.replicate(g); err != nil {
				cm.log.Error("store commit not replicated: its waiters are told it failed", "group", g.id, "err", err)
			}
			cm.latency.observe(time.Since(start))
			cm.tell(g, err)
			return
		}
	}
	cm.latency.observe(time.Since(start))
	if err != nil {
		cm.log.Error("store commit failed: the writes of this group are refused", "group", g.id,
			"writes", g.batch.Len(), "err", err)
		clear(cm.refs) // counts may not have been written
		cm.retryLater(g)
	}
	cm.tell(g, err)
	// The store refuses writes (a full disk): try again a little later
	// rather than spin.
	select {
	case <-time.After(retryDelay):
	case <-cm.done:
	}
	cm.poke()
}

// tell gives g's waiters its outcome and makes g the spare group.
func (cm *committer) tell(g *commitGroup, err error) {
	for _, w := range g.waiters {
		w.committed(g.id, err)
	}
	cm.mu.Lock()
	g.reset()
	cm.spare = g
	cm.mu.Unlock()
}

// retryDelay spaces the attempts to commit while the store refuses writes.
const retryDelay = 100 * time.Millisecond

// retryLater moves the writes nobody waited for from a refused group to
// the front of the open one, in their order, with the references they
// released and the queues they dropped.
func (cm *committer) retryLater(g *commitGroup) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	next := cm.open
	retry := make([]store.Op, 0, len(g.lazy)+next.batch.Len())
	for _, i := range g.lazy {
		retry = append(retry, g.batch.Ops[i])
	}
	shift := len(retry)
	lazy := make([]int, 0, shift+len(next.lazy))
	for i := range shift {
		lazy = append(lazy, i)
	}
	for _, i := range next.lazy {
		lazy = append(lazy, i+shift)
	}
	next.batch.Ops = append(retry, next.batch.Ops...)
	next.lazy = lazy
	for id, n := range g.dropRefs {
		next.dropRefs[id] += n
	}
	next.dropQueues = append(next.dropQueues, g.dropQueues...)
}

// prepare turns a group's reference changes into writes: a message whose
// last reference is released loses its body and count.
func (cm *committer) prepare(g *commitGroup) error {
	// The references of dropped queues are counted apart from g.dropRefs,
	// which a refused commit hands on as it was.
	drops := g.dropRefs
	if len(g.dropQueues) > 0 {
		drops = make(map[uint64]uint32, len(g.dropRefs))
		for id, n := range g.dropRefs {
			drops[id] = n
		}
	}
	for _, queue := range g.dropQueues {
		err := cm.st.LoadQueue(queue, 0, func(_ uint64, entry []byte) (bool, error) {
			if e, err := decodeEntry(entry); err == nil && e.msgID != 0 {
				drops[e.msgID]++
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	for id, n := range g.newRefs {
		cm.refs[id] = n
	}
	for id, dropped := range drops {
		n, ok := cm.refs[id]
		if !ok {
			rec, err := cm.st.Message(id | refKeyBit)
			if errors.Is(err, store.ErrNotFound) {
				continue // already gone
			}
			if err != nil {
				return err
			}
			if len(rec) != 4 {
				return errors.New("malformed message reference count")
			}
			n = binary.BigEndian.Uint32(rec)
		}
		if dropped >= n {
			g.batch.DeleteMessage(id)
			g.batch.DeleteMessage(id | refKeyBit)
			delete(cm.refs, id)
			continue
		}
		n -= dropped
		cm.refs[id] = n
		g.batch.PutMessage(id|refKeyBit, binary.BigEndian.AppendUint32(nil, n))
	}
	for id, n := range g.newRefs {
		if _, dropped := drops[id]; !dropped {
			g.batch.PutMessage(id|refKeyBit, binary.BigEndian.AppendUint32(nil, n))
		}
	}
	if len(cm.refs) > 1<<16 {
		clear(cm.refs) // a cache, not the truth: reread from the store as needed
	}
	return nil
}

func (g *commitGroup) reset() {
	g.pins, g.closing, g.sync = 0, false, false
	g.batch.Reset()
	clear(g.waiters)
	g.waiters = g.waiters[:0]
	clear(g.newRefs)
	clear(g.dropRefs)
	g.dropQueues = g.dropQueues[:0]
	g.lazy = g.lazy[:0]
}
