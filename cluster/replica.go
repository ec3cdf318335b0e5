package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/record"
)

// The session replica: a copy of what each node's store holds for its
// persistent sessions, kept in a replicated key-value bucket so that a
// session outlives its node (broker/replica.go). Every node writes only
// under its own name; the bucket is read only when a node is lost, by
// the node that takes each of its sessions over.
//
// Keys: <node>.<dirKey>.r for the session's record, <node>.<dirKey>.q.
// <uid>.<seq> for a queue entry and <node>.<dirKey>.i.<uid>.<id> for an
// inbound QoS 2 id. A removal is a purge marker that expires after
// markerTTL, so removals do not pile up.

const (
	replicaBucket = "petrel_replica"
	markerTTL     = time.Second
	// replicateTimeout bounds one commit group's replication: it covers a
	// stream leader's election after its node was lost.
	replicateTimeout = claimTimeout
	// replicaWindow is how many writes go out before their acknowledgements
	// are waited for.
	replicaWindow = 2048
	// attemptTimeout bounds one attempt at a replica operation.
	attemptTimeout = 2 * time.Second
)

func replicaKey(node, clientID string) string { return node + "." + dirKey(clientID) }

// ReplicatesSessions implements broker.Cluster.
func (c *Cluster) ReplicatesSessions() bool { return !c.cfg.NoReplica }

// Replicate implements broker.Cluster.
func (c *Cluster) Replicate(ws []broker.ReplicaWrite) error {
	if !c.rep.ready.Load() {
		return errors.New("the session replica is not open")
	}
	if c.cutOff() {
		return errCutOff
	}
	// Each write is the same the second time: the whole group again.
	return c.retry("replicate sessions' writes", func(ctx context.Context) error {
		// Each attempt on its own clock: writes sent to a leader that was
		// just lost are never answered.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return c.replicateOnce(actx, ws)
	})
}

// retry runs fn until it succeeds or replicateTimeout passes: the
// replica's leader may be changing (its node was just lost), which
// JetStream takes 4 to 9 s to settle.
func (c *Cluster) retry(what string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(c.ctx, replicateTimeout)
	defer cancel()
	for {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		c.log.Debug("cluster: "+what, "err", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) replicateOnce(ctx context.Context, ws []broker.ReplicaWrite) error {
	subj := "$KV." + replicaBucket + "."
	var futs []jetstream.PubAckFuture
	var sb strings.Builder
	for i := range ws {
		w := &ws[i]
		sb.Reset()
		sb.WriteString(subj)
		sb.WriteString(replicaKey(c.cfg.Node, w.ClientID))
		sb.WriteByte('.')
		sb.WriteByte(w.Kind)
		if w.Kind != broker.ReplicaRecord {
			sb.WriteByte('.')
			sb.WriteString(w.UID)
			if w.All {
				// Every entry: a purge of the stream's subjects, after what
				// was written before it.
				if err := awaitAcks(ctx, futs); err != nil {
					return err
				}
				futs = futs[:0]
				sb.WriteString(".>")
				if err := c.purgeReplica(ctx, sb.String()); err != nil {
					return err
				}
				continue
			}
			sb.WriteByte('.')
			sb.WriteString(strconv.FormatUint(w.Num, 10))
		}
		m := &nats.Msg{Subject: sb.String(), Data: w.Value}
		var opts []jetstream.PublishOpt
		if w.Delete {
			m.Data = nil
			m.Header = nats.Header{"KV-Operation": []string{"PURGE"}, jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}
			opts = append(opts, jetstream.WithMsgTTL(markerTTL))
		}
		f, err := c.js.PublishMsgAsync(m, opts...)
		if err != nil {
			return fmt.Errorf("replicate session %q: %w", w.ClientID, err)
		}
		futs = append(futs, f)
		if len(futs) >= replicaWindow {
			if err := awaitAcks(ctx, futs); err != nil {
				return err
			}
			futs = futs[:0]
		}
	}
	return awaitAcks(ctx, futs)
}

func awaitAcks(ctx context.Context, futs []jetstream.PubAckFuture) error {
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("replicate a session's write: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("replicate a session's write: %w", ctx.Err())
		}
	}
	return nil
}

// purgeReplica removes the replica's entries under subject filter.
func (c *Cluster) purgeReplica(ctx context.Context, filter string) error {
	st, err := c.replicaStream(ctx)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject(filter))
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", filter, err)
	}
	return nil
}

func (c *Cluster) replicaStream(ctx context.Context) (jetstream.Stream, error) {
	c.repMu.Lock()
	defer c.repMu.Unlock()
	if c.repStream != nil {
		return c.repStream, nil
	}
	st, err := c.js.Stream(ctx, "KV_"+replicaBucket)
	if err != nil {
		return nil, err
	}
	c.repStream = st
	return st, nil
}

// Replica implements broker.Cluster.
func (c *Cluster) Replica(node, clientID string) ([]broker.ReplicaWrite, error) {
	if c.cfg.NoReplica {
		return nil, nil // nothing kept: the session died with its node
	}
	var out []broker.ReplicaWrite
	err := c.readReplica(replicaKey(node, clientID)+".>", func(key string, value []byte) {
		if w, ok := parseReplicaKey(key); ok {
			w.ClientID, w.Value = clientID, value
			out = append(out, w)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read node %s's replica of session %q: %w", node, clientID, err)
	}
	return out, nil
}

// ReplicaRecords implements broker.Cluster.
func (c *Cluster) ReplicaRecords(node string) ([][]byte, error) {
	var out [][]byte
	err := c.readReplica(node+".*.*."+string(broker.ReplicaRecord), func(_ string, value []byte) {
		out = append(out, value)
	})
	if err != nil {
		return nil, fmt.Errorf("read node %s's replicated sessions: %w", node, err)
	}
	return out, nil
}

// DropReplica implements broker.Cluster.
func (c *Cluster) DropReplica(node, clientID string) error {
	if c.cfg.NoReplica {
		return nil
	}
	filter := "$KV." + replicaBucket + "." + replicaKey(node, clientID) + ".>"
	return c.retry("drop a session's replica", func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return c.purgeReplica(actx, filter)
	})
}

// readReplica calls fn with each key under filter that has a value.
func (c *Cluster) readReplica(filter string, fn func(key string, value []byte)) error {
	if !c.rep.ready.Load() {
		return errors.New("the session replica is not open")
	}
	return c.retry("read the sessions' replica", func(ctx context.Context) error { return c.watchOnce(ctx, filter, fn) })
}

func (c *Cluster) watchOnce(ctx context.Context, filter string, fn func(key string, value []byte)) error {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := c.rep.kv.Watch(wctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	type kv struct {
		k string
		v []byte
	}
	var got []kv
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended early")
			}
			if e == nil { // the initial values are all in
				for _, x := range got {
					fn(x.k, x.v)
				}
				return nil
			}
			got = append(got, kv{e.Key(), e.Value()})
		case <-wctx.Done():
			return wctx.Err()
		}
	}
}

// parseReplicaKey reads the kind, uid and number of a replica key
// (<node>.<c|h>.<id>.<kind>[.<uid>.<num>]).
func parseReplicaKey(key string) (broker.ReplicaWrite, bool) {
	parts := strings.Split(key, ".")
	if len(parts) < 4 || len(parts[3]) != 1 {
		return broker.ReplicaWrite{}, false
	}
	w := broker.ReplicaWrite{Kind: parts[3][0]}
	if w.Kind == broker.ReplicaRecord {
		return w, len(parts) == 4
	}
	if len(parts) != 6 {
		return w, false
	}
	n, err := strconv.ParseUint(parts[5], 10, 64)
	if err != nil {
		return w, false
	}
	w.UID, w.Num = parts[4], n
	return w, true
}

// Adopted implements broker.Cluster: every node hears that this one has
// taken its share of dead's sessions.
func (c *Cluster) Adopted(dead string) {
	b := record.AppendString(nil, c.cfg.Node)
	b = record.AppendString(b, dead)
	_ = c.nc.Publish(c.pfx+"adopted", b)
}

// ghosts: a lost node's subscriptions stay in the table until its
// sessions have been taken over, so that a message for one of them fails
// (its publisher is not told it was delivered) rather than match nobody
// and be acknowledged. Each live node takes a share of them, then says so
// (Adopted); the ghost goes when every node that was live has, or after
// ghostTimeout.
const ghostTimeout = 2 * claimTimeout

type ghost struct {
	p        *peer
	keys     map[string]bool
	waiting  map[string]bool
	deadline time.Time
}

type ghostSet struct {
	mu     sync.Mutex
	byName map[string]*ghost
	// early are the Adopted notices that came before this node found the
	// node lost (another found it first): lost node → adopter → when.
	early map[string]map[string]time.Time
}

// haunt keeps lost peer p's keys in the table as a ghost, and starts this
// node's adoption of its sessions.
func (c *Cluster) haunt(p *peer, keys map[string]bool) {
	g := &ghost{p: p, keys: keys, waiting: map[string]bool{c.cfg.Node: true}, deadline: time.Now().Add(ghostTimeout)}
	for _, q := range c.peers.live() {
		g.waiting[q.name] = true
	}
	c.ghosts.mu.Lock()
	if c.ghosts.byName == nil {
		c.ghosts.byName = make(map[string]*ghost)
	}
	for from, at := range c.ghosts.early[p.name] {
		if time.Since(at) < ghostTimeout {
			delete(g.waiting, from)
		}
	}
	delete(c.ghosts.early, p.name)
	old := c.ghosts.byName[p.name]
	c.ghosts.byName[p.name] = g
	c.ghosts.mu.Unlock()
	if old != nil {
		c.exorcise(old)
	}
	p.failed = broker.NewPending()
	p.failed.Fail()
	p.ghost.Store(true)
	c.spawn(func() {
		// A node that cannot read the lost one's sessions (it is on the
		// minority side of a cut) does not say it took them: its ghost
		// stays, so what was routed to them goes on failing.
		if c.node.NodeLost(p.name) {
			c.Adopted(p.name)
		}
	})
}

func (c *Cluster) onAdopted(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	from, dead := r.Str(), r.Str()
	if r.Err != nil {
		return
	}
	if dead == c.cfg.Node {
		// The others took this node's sessions over while it was cut off
		// from them: the copies here go.
		c.spawn(c.node.Reconcile)
		return
	}
	c.ghosts.mu.Lock()
	g := c.ghosts.byName[dead]
	if g != nil {
		delete(g.waiting, from)
	} else if from != c.cfg.Node {
		if c.ghosts.early == nil {
			c.ghosts.early = make(map[string]map[string]time.Time)
		}
		if c.ghosts.early[dead] == nil {
			c.ghosts.early[dead] = make(map[string]time.Time)
		}
		c.ghosts.early[dead][from] = time.Now()
	}
	c.ghosts.mu.Unlock()
	c.checkGhosts(time.Now())
}

// dropGhost removes the ghost of node name, which is back.
func (c *Cluster) dropGhost(name string) {
	c.ghosts.mu.Lock()
	g := c.ghosts.byName[name]
	delete(c.ghosts.byName, name)
	c.ghosts.mu.Unlock()
	if g != nil {
		c.exorcise(g)
	}
}

// checkGhosts removes the ghosts whose sessions have all been taken
// over: every node they wait for has said so, or left, or time is up.
// On the minority side of a cut time is never up: the ghosts' sessions
// are served across it, and what is routed to them must not be
// acknowledged as matching nobody.
func (c *Cluster) checkGhosts(now time.Time) {
	var gone []*ghost
	minority := c.cutOff()
	c.ghosts.mu.Lock()
	for dead, froms := range c.ghosts.early {
		for from, at := range froms {
			if now.Sub(at) >= ghostTimeout {
				delete(froms, from)
			}
		}
		if len(froms) == 0 {
			delete(c.ghosts.early, dead)
		}
	}
	for name, g := range c.ghosts.byName {
		if minority && now.After(g.deadline) {
			g.deadline = now.Add(ghostTimeout)
			continue
		}
		for n := range g.waiting {
			if n == c.cfg.Node {
				continue
			}
			if q := c.peers.get(n); q == nil || !q.alive.Load() {
				delete(g.waiting, n)
			}
		}
		if len(g.waiting) == 0 || now.After(g.deadline) {
			if len(g.waiting) > 0 {
				c.log.Warn("cluster: a lost node's sessions were not all taken over in time", "node", name)
			}
			delete(c.ghosts.byName, name)
			gone = append(gone, g)
		}
	}
	c.ghosts.mu.Unlock()
	for _, g := range gone {
		c.exorcise(g)
	}
}

func (c *Cluster) exorcise(g *ghost) {
	g.p.ghost.Store(false)
	for key := range g.keys {
		c.table.removeNode(key, g.p)
	}
}
