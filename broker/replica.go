package broker

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/record"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
)

// Sessions that outlive their node. On a cluster node the committer
// copies every write of a persistent session (its record, its queue's
// entries with their messages, its inbound QoS 2 ids, and their removals)
// to the cluster's replica before it tells anyone the write is done: a
// publisher's PUBACK then means the message is on a majority of the
// nodes, not only on this node's disk.
//
// When a node is lost, the live nodes share out its sessions (each takes
// those whose client id hashes to it), claim each in the directory from
// the lost node, and make it from the replica as a session arriving from
// another node (handover.go) would be made. A client that reconnects
// first claims its session itself and makes it from the replica the same
// way. The directory orders the claims: whichever comes first takes the
// session, the other finds it gone.

// ReplicaWrite is one write of a persistent session that the cluster
// replicates, or, read back, one entry of its replica (Value set, Delete
// and All false).
type ReplicaWrite struct {
	ClientID string
	Kind     byte   // ReplicaRecord, ReplicaQueue or ReplicaInbound
	UID      string // the session's queues' id (not for the record)
	Num      uint64 // the entry's sequence number, or the inbound packet id
	Value    []byte
	Delete   bool // remove the entry
	All      bool // remove every entry of Kind under UID
}

// The kinds of replicated entries.
const (
	ReplicaRecord  = 'r'
	ReplicaQueue   = 'q'
	ReplicaInbound = 'i'
)

// replicaWrites turns a commit group's writes of persistent sessions into
// the replica's. A queue entry goes with its message's body, from the
// group or, written before, from the store.
func (cm *committer) replicaWrites(g *commitGroup) ([]ReplicaWrite, error) {
	var bodies map[uint64][]byte
	ws := cm.repBuf[:0]
	for i := range g.batch.Ops {
		op := &g.batch.Ops[i]
		switch op.NS {
		case store.Messages:
			if !op.Delete && op.Num&refKeyBit == 0 {
				if bodies == nil {
					bodies = make(map[uint64][]byte)
				}
				bodies[op.Num] = op.Value
			}
		case store.Sessions:
			w := ReplicaWrite{ClientID: op.Name, Kind: ReplicaRecord, Delete: op.Delete}
			if !op.Delete {
				w.Value = append(record.AppendString(nil, op.Name), op.Value...)
			}
			ws = append(ws, w)
		}
	}
	for i := range g.batch.Ops {
		op := &g.batch.Ops[i]
		if op.NS != store.Queues {
			continue
		}
		clientID, kind, uid, ok := splitQueueName(op.Name)
		if !ok {
			continue
		}
		w := ReplicaWrite{ClientID: clientID, Kind: kind, UID: uid, Num: op.Num, Delete: op.Delete, All: op.AllQueue}
		if !op.Delete && kind == ReplicaQueue {
			e, err := decodeEntry(op.Value)
			if err != nil {
				return nil, fmt.Errorf("session %q queue entry %d: %w", clientID, op.Num, err)
			}
			body, ok := bodies[e.msgID]
			if !ok {
				body, err = cm.st.Message(e.msgID)
				if err != nil {
					return nil, fmt.Errorf("session %q queue entry %d's message: %w", clientID, op.Num, err)
				}
			}
			v := record.AppendUvarint(make([]byte, 0, len(op.Value)+len(body)+4), uint64(len(op.Value)))
			w.Value = append(append(v, op.Value...), body...)
		}
		ws = append(ws, w)
	}
	cm.repBuf = ws
	return ws, nil
}

// splitQueueName reads a durable session's queue name (queueName,
// inboundName): MQTT client ids hold no NUL [MQTT-1.5.4-2].
func splitQueueName(name string) (clientID string, kind byte, uid string, ok bool) {
	i := strings.LastIndexByte(name, 0)
	if i < 0 || i+1 >= len(name) {
		return "", 0, "", false
	}
	return name[:i], name[i+1], name[i+2:], name[i+1] == ReplicaQueue || name[i+1] == ReplicaInbound
}

// replicate copies a committed group's session writes to the cluster.
func (cm *committer) replicate(g *commitGroup) error {
	if !cm.replicating.Load() {
		return nil
	}
	ws, err := cm.replicaWrites(g)
	if err == nil && len(ws) > 0 {
		err = cm.cluster.Replicate(ws)
	}
	clear(cm.repBuf)
	if err != nil {
		return fmt.Errorf("replicate to the cluster: %w", err)
	}
	return nil
}

// NodeLost takes over this node's share of a lost node's sessions from
// the replica. It blocks until they are here (or failed, logged), and
// reports whether the replica could be read and every one claimed: not
// on the minority side of a cut, where the directory cannot be written.
func (n *ClusterNode) NodeLost(dead string) bool {
	s := n.s
	cl := s.opts.Cluster
	start := time.Now()
	recs, err := cl.ReplicaRecords(dead)
	if err != nil {
		s.log.Error("cluster: a lost node's sessions cannot be read", "node", dead, "err", err)
		return false
	}
	nodes := append(cl.Peers(), s.opts.NodeName)
	slices.Sort(nodes)
	var mine []string
	for _, v := range recs {
		r := record.Reader{B: v}
		clientID := r.Str()
		if r.Err != nil {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(clientID))
		if nodes[int(h.Sum32()%uint32(len(nodes)))] == s.opts.NodeName {
			mine = append(mine, clientID)
		}
	}
	if len(mine) == 0 {
		return true
	}
	var failed atomic.Int64
	inParallel(len(mine), func(i int) {
		if !s.adoptLost(mine[i], dead) {
			failed.Add(1)
		}
	})
	s.log.Info("cluster: a lost node's sessions taken over", "node", dead, "sessions", len(mine),
		"of", len(recs), "failed", failed.Load(), "elapsed", time.Since(start).Round(time.Millisecond))
	return failed.Load() == 0
}

// adoptLost takes clientID's session from the replica of dead, which held
// it, unless its client has claimed it elsewhere meanwhile; false when
// the directory could not be written.
func (s *Server) adoptLost(clientID, dead string) bool {
	cl := s.claimLock(clientID)
	defer s.endClaim(clientID, cl)
	_, err := s.opts.Cluster.Claim(clientID, dead, cl.claimed)
	cl.claimed(0)
	if err != nil {
		if !errors.Is(err, ErrNotOwner) {
			s.log.Warn("cluster: a lost node's session cannot be claimed", "client", clientID, "node", dead, "err", err)
			return false
		}
		return true
	}
	s.takeReplica(dead, &connectParams{clientID: clientID})
	s.armIfOffline(clientID)
	return true
}

// Reconcile drops the sessions here that the directory says another node
// owns: those the others took over while this node was cut off from
// them (docs/CLUSTER.md, Partitions). Their clients, if connected here,
// are told the session was taken over and reconnect; their copies leave
// the store. Calls while one runs make it run once more after.
func (n *ClusterNode) Reconcile() {
	s := n.s
	if s.reconciles.Add(1) != 1 {
		return
	}
	for {
		s.reconcile()
		if s.reconciles.CompareAndSwap(1, 0) {
			return
		}
		s.reconciles.Store(1)
	}
}

func (s *Server) reconcile() {
	start := time.Now()
	// The ids first: forsaking a session deletes it from the table, which
	// must not change while iterated (and s.mu is not held across the
	// cluster's round trips).
	s.mu.Lock()
	ids := make([]string, 0, s.sessions.len())
	for ss := range s.sessions.all() {
		ids = append(ids, ss.clientID)
	}
	s.mu.Unlock()
	var dropped, unknown atomic.Int64
	inParallel(len(ids), func(i int) {
		// One at a time with the claims of the same client id here.
		cl := s.claimLock(ids[i])
		cl.claimed(0)
		defer s.endClaim(ids[i], cl)
		owner, err := s.opts.Cluster.Owner(ids[i])
		switch {
		case err != nil:
			unknown.Add(1)
		case owner != "" && owner != s.opts.NodeName:
			if s.forsake(ids[i]) {
				dropped.Add(1)
			}
		}
	})
	if dropped.Load() > 0 || unknown.Load() > 0 {
		s.log.Warn("cluster: sessions another node took over dropped here", "sessions", dropped.Load(),
			"of", len(ids), "owner_unknown", unknown.Load(), "elapsed", time.Since(start).Round(time.Millisecond))
	}
}

// forsake ends clientID's session here, which another node took over: its
// client is disconnected with 0x8E, its will is not published (the client
// did not go; it reconnects to its session), and its copy leaves the store.
func (s *Server) forsake(clientID string) bool {
	ss := s.lockSession(clientID)
	if ss == nil {
		return false
	}
	previous := s.detachLocked(ss)
	if previous != nil {
		ss.letAllGoLocked()
		ss.noteLoadLocked()
	}
	_ = s.endLocked(ss)
	s.mu.Unlock()
	if previous != nil {
		previous.disconnect(packet.SessionTakenOver, "the session was taken over by another node while this one was cut off") // [MQTT-3.1.4-3] (v5)
	}
	return true
}

// takeReplica makes clientID's session from the replica of node dead,
// claimed from it. Whatever goes wrong leaves the client a new session
// (logged).
func (s *Server) takeReplica(dead string, cp *connectParams) {
	cl := s.opts.Cluster
	start := time.Now()
	if cp.cleanStart {
		// The session ends: nothing of it is read, and its copy goes.
		go s.dropReplica(dead, cp.clientID)
		return
	}
	ents, err := cl.Replica(dead, cp.clientID)
	if err != nil {
		s.log.Error("cluster: a lost node's session cannot be read; the client gets a new one",
			"client", cp.clientID, "node", dead, "err", err)
		return
	}
	var rec *sessionRecord
	for _, e := range ents {
		if e.Kind != ReplicaRecord {
			continue
		}
		r := record.Reader{B: e.Value}
		_ = r.Str()
		if r.Err == nil {
			rec, err = decodeSession(r.B)
		}
		if r.Err != nil || err != nil {
			s.log.Error("cluster: a lost node's session does not decode", "client", cp.clientID, "node", dead)
			return
		}
	}
	if rec == nil {
		return // none there
	}
	if rec.expiry == 0 {
		s.dropReplica(dead, cp.clientID)
		return
	}
	ss, pendings := s.arriving(cp.clientID, rec)
	for _, p := range pendings {
		p.Wait(moveTimeout)
	}
	var b store.Batch
	entries := 0
	next := uint64(1)
	for _, e := range ents {
		if e.UID != rec.uid {
			continue // an older session's, removed after
		}
		switch e.Kind {
		case ReplicaInbound:
			b.PutQueue(ss.inboundName(), e.Num, nil)
		case ReplicaQueue:
			r := record.Reader{B: e.Value}
			n := r.Uvarint()
			if r.Err != nil || n > uint64(len(r.B)) {
				continue
			}
			qe, err := decodeEntry(r.B[:n])
			if err != nil {
				continue
			}
			id := s.nextMessageID()
			qe.msgID = id
			b.PutMessage(id, r.B[n:])
			b.PutMessage(id|refKeyBit, []byte{0, 0, 0, 1})
			b.PutQueue(ss.queueName(), e.Num, appendEntry(nil, &qe))
			next = max(next, e.Num+1)
			entries++
		}
	}
	ss.mu.Lock()
	ss.nextSeq = max(ss.nextSeq, next)
	ss.mu.Unlock()
	s.arrived(ss, &b, nil)
	s.dropReplica(dead, cp.clientID)
	s.stats.movedIn.Add(1)
	s.log.Info("cluster: session taken over from a lost node", "client", cp.clientID, "node", dead,
		"queued", entries, "took", time.Since(start).Round(time.Millisecond))
}

func (s *Server) dropReplica(dead, clientID string) {
	if err := s.opts.Cluster.DropReplica(dead, clientID); err != nil {
		s.log.Warn("cluster: a lost node's copy of a session stays in the replica", "client", clientID, "node", dead, "err", err)
	}
}
