package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/internal/record"
	"github.com/petrelmq/petrel/store"
)

// Cluster links a Server to the other nodes of a cluster; package cluster
// implements it over NATS. A Server without one (Options.Cluster nil) is a
// single broker and pays for none of this: each hook below is one nil test.
//
// The broker calls these methods on its event loops, often under its own
// locks: none may block, and none may call back into the Server.
type Cluster interface {
	// Start is called by Server.Start once the store is recovered, before
	// the listeners open: from then on the cluster hands what other nodes
	// send to n.
	Start(n *ClusterNode) error
	// Interest says that this node gained (add) or lost one subscription
	// to filter; group names a shared subscription's group, "" for none.
	// The cluster counts them. The Pending it returns (nil: nothing to
	// wait for) completes once every node it knows of has the change, so
	// that a SUBACK sent after it holds for PUBLISHes on any node.
	Interest(filter, group string, add bool) *Pending
	// Route is asked where a message published on this node goes besides
	// this node's own plain subscriptions: it sends the message to every
	// other node that wants it, chooses the node of each shared group, and
	// fills in r's results.
	Route(r *ClusterRoute)
	// Retain replicates a retained message (body from AppendBody), or its
	// deletion (body nil). The Pending completes once it is stored and
	// every node it knows of has it.
	Retain(topic string, body []byte) *Pending
	// Full reports whether what waits to go to other nodes is at its
	// bound: publishers held back for it wait until ClusterNode.Drained.
	Full() bool
	// Claim makes this node the owner of clientID's session, cluster-wide,
	// and returns the node that held it, for the session to come from
	// there, or from its replica when that node is no longer in the
	// cluster: "" when none did, or this one. Claims of a client id are in one order cluster-wide, each
	// numbered higher than the one before; claimed hears this one's number
	// as soon as it is known, before Claim returns. It blocks (the broker
	// calls it on a goroutine of its own); an error means the owner cannot
	// be known, and the CONNECT is refused.
	//
	// With from set, the claim is made only while from owns the session
	// (ErrNotOwner otherwise): a node taking a session that a leaving node
	// hands out must not take it from a client that went elsewhere.
	Claim(clientID, from string, claimed func(rev uint64)) (prev string, err error)
	// Owner says which node the directory has owning clientID's session:
	// "" when none does.
	Owner(clientID string) (string, error)
	// Peers lists the other nodes that are up.
	Peers() []string
	// Ask sends a request about a session to node (its
	// ClusterNode.Answer) and returns the answer. It blocks.
	Ask(node string, req []byte) ([]byte, error)
	// Cut asks every live node, this one included, for its Stamp, each
	// given once node old has taken every message that node sent it
	// before. It blocks.
	Cut(old string) (map[string]uint64, error)
	// ReplicatesSessions reports whether the cluster keeps a replica of
	// the nodes' persistent sessions (Replicate and the rest below).
	ReplicatesSessions() bool
	// Replicate copies writes of this node's persistent sessions to the
	// cluster's replica, under this node's name, and returns once a
	// majority of the nodes have them (replica.go). It blocks.
	Replicate(ws []ReplicaWrite) error
	// Replica reads what node's replica holds of clientID's session.
	Replica(node, clientID string) ([]ReplicaWrite, error)
	// ReplicaRecords reads the session records node's replica holds.
	ReplicaRecords(node string) ([][]byte, error)
	// DropReplica removes node's replica of clientID's session.
	DropReplica(node, clientID string) error
	// Close leaves the cluster; the Server calls it in Close, after the
	// listeners have stopped.
	Close() error
}

// ErrNotOwner is Cluster.Claim's answer when the session is not the
// node's it was to come from.
var ErrNotOwner = errors.New("the session is another node's")

// errNodeLost closes an MQTT 3 connection whose message a lost node
// never took.
var errNodeLost = errors.New("a node the message went to was lost before taking it")

// ClusterRoute is one routing's question to the cluster and its answer.
type ClusterRoute struct {
	m *message
	// Topic, QoS and Retain are the message's.
	Topic  string
	QoS    byte
	Retain bool
	// Local receives the shared groups (GroupKey) that this node
	// delivers; the cluster appends to it.
	Local []string
	// Pending lists what completes once every node the message was sent
	// to has taken it (in its store, for its persistent sessions); the
	// cluster appends to it.
	Pending []*Pending
	// Nodes is how many other nodes the message was sent to.
	Nodes int
	// Full: the queue towards some node is at its bound; the publisher is
	// held back until the cluster drains (Cluster.Full).
	Full bool
	// Scratch is the cluster's own working space, kept with the route
	// from one message to the next; the broker never reads it.
	Scratch any
	// Stamp is this node's count of routings at this one; the cluster
	// carries it with the message (Forwarded.Stamp).
	Stamp uint64
}

// AppendBody appends the message's encoding, which ClusterNode.Deliver
// and SetRetained decode on another node, to b.
func (r *ClusterRoute) AppendBody(b []byte) []byte { return appendMessage(b, r.m) }

// BodyTopic reads the topic of a message body (AppendBody).
func BodyTopic(body []byte) (string, error) {
	r := reader{record.Reader{B: body}}
	_, _, topic := r.messageTop()
	return string(topic), r.Err
}

// GroupKey names a shared subscription group and its filter, as Route's
// Local and Deliver's groups do.
func GroupKey(group, filter string) string { return group + "\x00" + filter }

// Pending is cluster work that a reply waits for: other nodes taking a
// forwarded message, or learning of a subscription. The cluster makes
// them and calls Done; the broker waits without blocking a goroutine.
type Pending struct {
	mu     sync.Mutex
	done   bool
	failed bool
	thens  []func()
}

// NewPending returns work not yet done.
func NewPending() *Pending { return new(Pending) }

// Done completes p and runs what waited for it, on the caller's goroutine.
// Later calls do nothing.
func (p *Pending) Done() { p.complete(false) }

// Fail completes p as work that will not be done: a reply that waited for
// it tells the client of a failure (MQTT 5) or is not sent (the MQTT 3
// client is disconnected, and sends again), rather than acknowledge what
// the broker cannot keep.
func (p *Pending) Fail() { p.complete(true) }

// Failed reports whether p completed with Fail.
func (p *Pending) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *Pending) complete(failed bool) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done, p.failed = true, failed
	thens := p.thens
	p.thens = nil
	p.mu.Unlock()
	for _, fn := range thens {
		fn()
	}
}

// IsDone reports whether p completed.
func (p *Pending) IsDone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Then runs fn once p completes: at once if it has, else on Done's
// goroutine.
func (p *Pending) Then(fn func()) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		fn()
		return
	}
	p.thens = append(p.thens, fn)
	p.mu.Unlock()
}

// Wait blocks until p completes or the timeout passes, reporting which.
func (p *Pending) Wait(timeout time.Duration) bool {
	ch := make(chan struct{})
	p.Then(func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-time.After(timeout):
		return false
	}
}

// replyWait counts the cluster work one deferred reply waits for, and
// notes whether any of it failed.
type replyWait struct {
	n      atomic.Int32
	failed atomic.Bool
}

// waitAll makes a replyWait for pendings (nil when all are done) that
// calls c.clusterReady once they are.
func (c *conn) waitAll(pendings []*Pending) *replyWait {
	if len(pendings) == 0 { // inline: a broker alone has none
		return nil
	}
	return c.waitForCluster(pendings)
}

func (c *conn) waitForCluster(pendings []*Pending) *replyWait {
	w := new(replyWait)
	w.n.Store(int32(len(pendings)) + 1)
	for _, p := range pendings {
		p.Then(func() {
			if p.Failed() {
				w.failed.Store(true)
			}
			if w.n.Add(-1) == 0 {
				c.clusterReady()
			}
		})
	}
	if w.n.Add(-1) == 0 && !w.failed.Load() {
		return nil // all done already
	}
	// Still to come, or failed already (a lost node's subscriptions): the
	// reply waits, or says so.
	return w
}

// ClusterNode is what the cluster hands to the Server: messages and
// retained messages from other nodes.
type ClusterNode struct {
	s *Server
}

// Name is this node's name (Options.NodeName).
func (n *ClusterNode) Name() string { return n.s.opts.NodeName }

// Logger is the Server's logger.
func (n *ClusterNode) Logger() *slog.Logger { return n.s.log }

// Drained says that the queues towards other nodes are below their bound
// again: the publishers held back for them are read again.
func (n *ClusterNode) Drained() { n.s.endClusterWait() }

// Forwarded is a message from another node: its body (AppendBody) and the
// shared groups (GroupKey) this node was chosen to deliver it to.
type Forwarded struct {
	Body   []byte
	Groups []string
	// From is the node that routed it, and Stamp its ClusterRoute.Stamp.
	From  string
	Stamp uint64
}

// Deliver routes messages from another node to this node's subscriptions
// (never on to other nodes), and calls done once this node has taken them
// all: in the store for its persistent sessions, and, when a subscriber
// here is backed up, once it has drained (so a slow subscriber here slows
// the publishers there). A body that does not decode is logged and
// skipped. It returns how many were routed. Nothing of msgs is kept once
// it returns: the caller may reuse them.
func (n *ClusterNode) Deliver(msgs []Forwarded, done func()) int {
	s := n.s
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	// Delivered while the node shuts down, until it leaves the cluster:
	// it hands its sessions to other nodes first (handover.go).
	if !s.running.Load() || s.leftCluster.Load() {
		done()
		return 0
	}
	bw := &batchWait{done: done}
	bw.n.Store(1)
	tx := txPool.Get().(*routeTx)
	defer putTx(tx)
	routed := 0
	for i := range msgs {
		m, err := forwardedMessage(msgs[i].Body)
		if err != nil {
			s.log.Warn("cluster: a message from another node does not decode", "err", err)
			continue
		}
		sc := matchPool.Get().(*matches)
		for _, key := range msgs[i].Groups {
			if g := s.shareGroup(key); g != nil {
				sc.groups = append(sc.groups, g)
			}
		}
		tx.stamp, tx.stampNode = msgs[i].Stamp, msgs[i].From
		s.countUnrouted(m, s.deliverLocal(m, sc, tx))
		s.messageShard(m).addSent(&tx.sent)
		m.unref()
		tx.sent = [3]uint32{}
		routed++
	}
	if tx.group() != 0 {
		bw.n.Add(1)
		tx.finish(s, bw)
	}
	for _, p := range tx.remote { // sessions arriving from another node (handover.go)
		bw.n.Add(1)
		p.Then(bw.release)
	}
	if len(tx.backedUp) > 0 || len(tx.outFull) > 0 {
		bw.n.Add(1)
		go s.awaitDrain(append([]*session(nil), tx.backedUp...), append([]*conn(nil), tx.outFull...), bw)
	}
	bw.release()
	return routed
}

// Crowded appends to into those of keys (GroupKey) whose shared group here
// has no online member with room: each is a quarter of its backlog bound
// (Options.BacklogMessages) behind or more. The cluster tells the node
// that sent them, which then prefers another node's members while it
// lasts, rather than giving this node messages whose acknowledgement
// would wait for a slow member to drain.
func (n *ClusterNode) Crowded(keys []string, into []string) []string {
	limit := uint32(max(n.s.opts.BacklogMessages/4, 1))
	for _, key := range keys {
		g := n.s.shareGroup(key)
		if g != nil && !g.hasRoom(limit) {
			into = append(into, key)
		}
	}
	return into
}

// localRetained is a retained message from this node's store (recover).
type localRetained struct {
	store, topic string // its key in the store, and its topic
	body         []byte
}

// MigrateRetained hands the retained messages that this node's store kept
// from before it was clustered to take, once, at Start: a node turned from
// a single broker into a cluster's node keeps what was acknowledged to its
// publishers. take reports, for each topic, whether the cluster has its
// retained message now (stored, or it had one already); those it has are
// removed from this node's store (synchronously: the cluster's is the
// only copy from then on), the others stay for the next start. It returns
// how many were taken.
func (n *ClusterNode) MigrateRetained(take func(topics []string, bodies [][]byte) []bool) (int, error) {
	s := n.s
	if len(s.localRetained) == 0 {
		return 0, nil
	}
	topics := make([]string, len(s.localRetained))
	bodies := make([][]byte, len(s.localRetained))
	for i, lr := range s.localRetained {
		topics[i], bodies[i] = lr.topic, lr.body
	}
	taken := take(topics, bodies)
	var done store.Batch
	for i, lr := range s.localRetained {
		if i < len(taken) && taken[i] {
			done.DeleteRetained(lr.store)
		}
	}
	s.localRetained = nil
	if done.Len() == 0 {
		return 0, nil
	}
	if err := s.store.Commit(&done, true); err != nil {
		return 0, fmt.Errorf("remove the retained messages the cluster took from this node's store: %w", err)
	}
	return done.Len(), nil
}

// forwardedMessage makes the message of a body from another node the way
// a client's PUBLISH makes one: in a recycled allocation, counted
// (pool.go), so that a node receiving many makes no garbage. The caller
// unrefs it once routed. body is only read.
func forwardedMessage(body []byte) (*message, error) {
	r := reader{record.Reader{B: body}}
	flags, expiry, topic, props := r.messageHead()
	if r.Err != nil {
		return nil, r.Err
	}
	t := ""
	if len(topic) > 0 {
		t = unsafe.String(&topic[0], len(topic)) // copied by makeMessageParts
	}
	m := makeMessageParts(t, r.B, flags&3, flags&msgRetain != 0, 0, false, nil)
	m.Expiry, m.Props = expiry, props
	return m, nil
}

// SetRetained applies a retained message replicated by the cluster (body
// from AppendBody), or deletes the topic's retained message (body nil).
// It changes this node's memory only: the cluster keeps them.
func (n *ClusterNode) SetRetained(topic string, body []byte) {
	s := n.s
	if body == nil {
		s.retained.Delete(topic)
		s.retainedExpiry.set(topic, time.Time{})
		return
	}
	rec, t, expiry, err := retainedRecOf(body)
	if err != nil || t != topic {
		s.log.Warn("cluster: a retained message does not decode", "topic", topic, "err", err)
		return
	}
	s.retained.Set(t, rec)
	s.retainedExpiry.set(t, expiry)
}

// batchWait calls done once the store and the backed-up subscribers are
// through with a batch from another node.
type batchWait struct {
	n    atomic.Int32
	done func()
}

func (bw *batchWait) release() {
	if bw.n.Add(-1) == 0 {
		bw.done()
	}
}

// committed implements commitWaiter. A failed commit is logged by the
// committer; the other node hears of it as taken all the same, as a
// publisher here would get its PUBACK with a failure code only on MQTT 5.
func (bw *batchWait) committed(uint64, error) { bw.release() }

// awaitDrain waits until the sessions and connections a batch from another
// node filled have drained to half their bounds (or gone), then releases
// bw. Cross-node backpressure is this wait: the other node's window stays
// full meanwhile. Polled: it only runs while a subscriber is backed up.
func (s *Server) awaitDrain(sessions []*session, conns []*conn, bw *batchWait) {
	defer bw.release()
	o := &s.opts
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, ss := range sessions {
			ss.mu.Lock()
			if !ss.ended && ss.conn != nil &&
				(ss.queuedLocked() > o.BacklogMessages/2 || ss.queuedBytesLocked() > o.BacklogBytes/2) {
				busy = true
			}
			ss.mu.Unlock()
		}
		for _, c := range conns {
			if !c.isClosing() && !c.outDrained() && c.flags.Load()&flagNotReading == 0 {
				busy = true
			}
		}
		if !busy || s.shuttingDown.Load() {
			return
		}
		<-t.C
	}
}

// shareGroup finds a shared group by its GroupKey.
func (s *Server) shareGroup(key string) *shareGroup {
	s.sharesMu.Lock()
	defer s.sharesMu.Unlock()
	return s.shares[key]
}

// publishClustered routes a message published on this node: to this
// node's plain subscriptions, to the shared groups the cluster gives this
// node, and through the cluster to the other nodes. A retained message is
// kept here at once and replicated. The cluster's Pending goes to tx.
func (s *Server) publishClustered(m *message, tx *routeTx) int {
	// The route lives with the pooled tx: a pool of its own cost a
	// publishing node 2% of its CPU.
	r := tx.route
	if r == nil {
		r = new(ClusterRoute)
		tx.route = r
	}
	// Numbered before it is matched, and routed whole under the read
	// lock: a node's Stamp counts every routing that may have missed a
	// subscription it had not yet heard of (handover.go).
	s.cutMu.RLock()
	defer s.cutMu.RUnlock()
	tx.stamp, tx.stampNode = s.stamps.Add(1), ""
	r.m, r.Topic, r.QoS, r.Retain, r.Stamp = m, m.Topic, m.QoS, m.Retain, tx.stamp
	s.opts.Cluster.Route(r)
	sc := matchPool.Get().(*matches)
	for _, key := range r.Local {
		if g := s.shareGroup(key); g != nil {
			sc.groups = append(sc.groups, g)
		}
	}
	if m.Retain {
		if m.size() == 0 {
			m.pin() // the cluster may keep m.Topic until the deletion is replicated
			s.retained.Delete(m.Topic)
			s.retainedExpiry.set(m.Topic, time.Time{})
			tx.addRemote(s.opts.Cluster.Retain(m.Topic, nil))
		} else {
			// The record's topic and body are never written: the cluster
			// may keep them.
			rec := newRetainedRec(m)
			s.retained.Set(m.Topic, rec)
			s.retainedExpiry.set(m.Topic, m.Expiry)
			tx.addRemote(s.opts.Cluster.Retain(rec.topic(), rec.body()))
		}
	}
	n := s.deliverLocal(m, sc, tx)
	tx.remote = append(tx.remote, r.Pending...)
	tx.clusterFull = tx.clusterFull || r.Full
	n += r.Nodes
	s.countUnrouted(m, n)
	clear(r.Local)
	clear(r.Pending)
	*r = ClusterRoute{Local: r.Local[:0], Pending: r.Pending[:0], Scratch: r.Scratch}
	return n
}

// addRemote adds cluster work the routing's acknowledgement waits for.
func (tx *routeTx) addRemote(p *Pending) {
	if p != nil {
		tx.remote = append(tx.remote, p)
	}
}

// interest tells the cluster of a subscription added or removed, and
// returns what its acknowledgement waits for (nil on one node).
func (s *Server) interest(filter, group string, add bool) *Pending {
	if s.opts.Cluster == nil {
		return nil
	}
	return s.opts.Cluster.Interest(filter, group, add)
}

// addClusterWait holds c back until the cluster drains. h is c's hold.
func (s *Server) addClusterWait(c *conn, h *hold) {
	s.heldBackMu.Lock()
	if s.clusterWaits == nil {
		s.clusterWaits = make(map[*conn]*hold)
	}
	if s.clusterWaits[c] == h {
		s.heldBackMu.Unlock()
		return
	}
	s.clusterWaits[c] = h
	h.waiting++
	s.heldBackMu.Unlock()
	// The cluster may have drained before c was listed.
	if !s.opts.Cluster.Full() {
		s.endClusterWait()
	}
}

// endClusterWait lets go the publishers that waited for the cluster only.
func (s *Server) endClusterWait() {
	s.heldBackMu.Lock()
	free := s.countOffLocked(s.clusterWaits)
	s.clusterWaits = nil
	s.heldBackMu.Unlock()
	for _, c := range free {
		c.letGo()
	}
}
