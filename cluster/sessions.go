package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/record"
)

// The session directory: which node owns each client id's session. A
// replicated key-value bucket, changed only by compare-and-set on the
// entry's revision, so that of two nodes claiming one client id at once
// one wins and the other, reading the winner, claims after it: the
// claims of a client id are in one order, cluster-wide, and each node
// takes the session from the one before it (broker/handover.go). Only
// the side of a partition with a majority of the nodes can write it: a
// node on the other side refuses CONNECTs rather than serve a session
// another node may be serving.

const (
	dirBucket = "petrel_sessions"
	// claimTimeout bounds a claim, conflicts and retries included: longer
	// than the directory's election of a new leader after its leader's
	// node was lost (JetStream waits 4 to 9 s before it elects).
	claimTimeout = 15 * time.Second
	// askTimeout bounds one request about a session to another node.
	askTimeout = 10 * time.Second
)

// dirKey is the directory's key for a client id: its base64 (URL
// alphabet, which keys allow), or its SHA-256 when too long for a subject.
func dirKey(clientID string) string {
	if len(clientID) <= 512 {
		return "c." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
	}
	h := sha256.Sum256([]byte(clientID))
	return "h." + hex.EncodeToString(h[:])
}

// dirReady returns once this node can read the directory: a node that
// restarts serves only then, or its first CONNECTs (and the sessions
// another node hands it as it stops) would wait for its JetStream to
// catch up with the cluster's.
func (c *Cluster) dirReady(ctx context.Context) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.dir.kv.Get(rctx, "ready")
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the session directory does not answer: %w", err)
		}
		c.log.Debug("cluster: read the session directory", "err", err)
		time.Sleep(50 * time.Millisecond)
	}
}

// Claim implements broker.Cluster.
func (c *Cluster) Claim(clientID, from string, claimed func(rev uint64)) (string, error) {
	if !c.dir.ready.Load() {
		return "", errors.New("the session directory is not open")
	}
	if c.cutOff() {
		return "", fmt.Errorf("claim session %q: %w", clientID, errCutOff)
	}
	ctx, cancel := context.WithTimeout(c.ctx, claimTimeout)
	defer cancel()
	k, me := dirKey(clientID), []byte(c.cfg.Node)
	for {
		prev := ""
		var rev uint64
		e, err := c.dir.kv.Get(ctx, k)
		switch {
		case err == nil:
			prev = string(e.Value())
			if from != "" && prev != from {
				return "", broker.ErrNotOwner
			}
			rev, err = c.dir.kv.Update(ctx, k, me, e.Revision())
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if from != "" {
				return "", broker.ErrNotOwner
			}
			rev, err = c.dir.kv.Create(ctx, k, me)
		}
		if err == nil {
			claimed(rev)
			if prev == c.cfg.Node {
				return "", nil
			}
			return prev, nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if ctx.Err() == nil {
				continue // another node claimed it meanwhile: after it, then
			}
		} else if ctx.Err() == nil {
			// The bucket's leader may be changing (a node left, or the
			// cluster is forming): again, within the claim's time.
			c.log.Debug("cluster: claim a session", "client", clientID, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return "", fmt.Errorf("claim session %q: %w", clientID, err)
	}
}

// Owner implements broker.Cluster. It asks the directory's leader: a
// key-value Get may be answered by any replica (a direct get), and a
// node just back from a cut has a replica that has not caught up yet, in
// which sessions taken over meanwhile are still its own.
func (c *Cluster) Owner(clientID string) (string, error) {
	if !c.dir.ready.Load() {
		return "", errors.New("the session directory is not open")
	}
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + dirBucket + "." + dirKey(clientID)})
	var owner string
	err := c.retry("read the session directory", func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		m, err := c.nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET.KV_"+dirBucket, req)
		if err != nil {
			return err
		}
		var ans struct {
			Message *struct {
				Header []byte `json:"hdrs"`
				Data   []byte `json:"data"`
			} `json:"message"`
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &ans); err != nil {
			return fmt.Errorf("the directory's answer: %w", err)
		}
		switch {
		case ans.Error != nil && ans.Error.Code == 404:
			owner = "" // never claimed
		case ans.Error != nil:
			return fmt.Errorf("the directory's answer: %s (%d)", ans.Error.Description, ans.Error.ErrCode)
		case ans.Message == nil:
			return errors.New("the directory's answer has no message")
		case bytes.Contains(ans.Message.Header, []byte("KV-Operation")):
			owner = "" // deleted or purged
		default:
			owner = string(ans.Message.Data)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("owner of session %q: %w", clientID, err)
	}
	return owner, nil
}

// Peers implements broker.Cluster.
func (c *Cluster) Peers() []string { return c.peers.names() }

// Ask implements broker.Cluster.
func (c *Cluster) Ask(node string, req []byte) ([]byte, error) {
	m, err := c.nc.Request(c.pfx+"sess."+node, req, askTimeout)
	if err != nil {
		return nil, fmt.Errorf("ask node %s about a session: %w", node, err)
	}
	return m.Data, nil
}

// onSession answers a request about a session, off NATS's goroutine: an
// answer may wait for a claim under way here.
func (c *Cluster) onSession(m *nats.Msg) {
	if !c.spawn(func() { _ = m.Respond(c.node.Answer(m.Data)) }) {
		_ = m.Respond(nil) // leaving: nothing here, rather than a wait for the timeout
	}
}

// Cut implements broker.Cluster.
func (c *Cluster) Cut(old string) (map[string]uint64, error) {
	want := make(map[string]*peer)
	for _, p := range c.peers.live() {
		want[p.name] = p
	}
	inbox := nats.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req := record.AppendString(record.AppendString(nil, c.cfg.Node), old)
	if err := c.nc.PublishRequest(c.pfx+"cut", inbox, req); err != nil {
		return nil, err
	}
	cuts := map[string]uint64{c.cfg.Node: c.stampFor(old)}
	deadline := time.Now().Add(askTimeout)
	for len(want) > 0 && time.Now().Before(deadline) {
		m, err := sub.NextMsg(min(time.Until(deadline), 50*time.Millisecond))
		if err == nil {
			r := record.Reader{B: m.Data}
			node, k := r.Str(), r.Uvarint()
			if r.Err == nil && want[node] != nil {
				cuts[node] = k
				delete(want, node)
			}
			continue
		}
		// A node that left meanwhile (or restarted: a new run of it was
		// not asked) will not answer.
		for node, p := range want {
			if !p.alive.Load() {
				delete(want, node)
			}
		}
	}
	for node := range want {
		return cuts, fmt.Errorf("node %s did not say where it cuts", node)
	}
	return cuts, nil
}

// onCut answers another node's Cut.
func (c *Cluster) onCut(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	asker, old := r.Str(), r.Str()
	if r.Err != nil || asker == c.cfg.Node {
		return
	}
	c.spawn(func() {
		k := c.stampFor(old)
		_ = m.Respond(record.AppendUvarint(record.AppendString(nil, c.cfg.Node), k))
	})
}

// stampFor is this node's Stamp, once node old has taken every batch
// this node had for it then (or has left the cluster).
func (c *Cluster) stampFor(old string) uint64 {
	k := c.node.Stamp()
	p := c.peers.get(old)
	if p == nil {
		return k
	}
	var waits []*batch
	p.mu.Lock()
	waits = append(waits, p.queue...)
	for _, b := range p.inflight {
		waits = append(waits, b)
	}
	p.mu.Unlock()
	for _, b := range waits {
		b.pending.Wait(askTimeout)
	}
	return k
}
