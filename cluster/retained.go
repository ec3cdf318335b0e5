package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/record"
)

// bucket is the JetStream key-value bucket of retained messages.
const bucket = "petrel_retained"

// retainer keeps the retained messages in the bucket and every node's
// index in step with it. The bucket's revision orders the changes to a
// topic: a node applies a change only if it is newer than the one it has,
// whether it comes from the bucket's updates or from the broadcast that
// the publishing node sends once the bucket has stored it (which is what
// a QoS 1 or 2 publisher's acknowledgement waits for, so that a SUBSCRIBE
// on any node after it sees the message).
type retainer struct {
	kvBucket
	loaded atomic.Int64

	// mu guards revs: the revision each topic's message here is at.
	mu   sync.Mutex
	revs map[string]uint64

	// queue feeds the writer, in order.
	qmu   sync.Mutex
	queue []retainJob
	wake  chan struct{}
}

type retainJob struct {
	topic string
	body  []byte // nil: delete
	p     *broker.Pending
}

// key is the bucket's key for a topic: its base64 (URL alphabet, which
// keys allow), or, for a topic too long for a subject, its SHA-256 (the
// topic is in the value as well).
func key(topic string) string {
	if len(topic) <= 1024 {
		return "t." + base64.RawURLEncoding.EncodeToString([]byte(topic))
	}
	h := sha256.Sum256([]byte(topic))
	return "h." + hex.EncodeToString(h[:])
}

func (rt *retainer) init() {
	rt.kvBucket = kvBucket{name: bucket, what: "retained messages", maxValue: 64 << 20}
	rt.revs = make(map[string]uint64)
	rt.wake = make(chan struct{}, 1)
}

func (rt *retainer) start(c *Cluster) error {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	// JetStream answers once the cluster has a leader.
	logged := false
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := c.js.AccountInfo(cctx)
		ccancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("JetStream not available (is a peer up? a cluster needs a quorum): %w", err)
		}
		if !logged {
			c.log.Info("cluster: waiting for JetStream (the other nodes)", "err", err)
			logged = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	kv, err := rt.bind(ctx, c)
	if err != nil {
		return err
	}
	// Watching makes a consumer, which JetStream may be slow to make while
	// the cluster forms (its request timed out once in a few hundred
	// starts): again, within the start's wait.
	var w jetstream.KeyWatcher
	for {
		w, err = kv.WatchAll(c.ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || c.ctx.Err() != nil {
			return fmt.Errorf("watch the bucket: %w", err)
		}
		c.log.Debug("cluster: watch the retained bucket", "err", err)
		time.Sleep(100 * time.Millisecond)
	}
	// The bucket's contents first, up to the marker, before serving.
	for e := range w.Updates() {
		if e == nil {
			break
		}
		rt.applyEntry(c, e)
		rt.loaded.Add(1)
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		defer w.Stop()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					rt.applyEntry(c, e)
				}
			case <-c.ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer c.wg.Done()
		rt.write(c)
	}()
	return nil
}

// applyEntry applies one of the bucket's updates.
func (rt *retainer) applyEntry(c *Cluster, e jetstream.KeyValueEntry) {
	var body []byte
	topic := ""
	switch e.Operation() {
	case jetstream.KeyValuePut:
		body = e.Value()
		t, err := broker.BodyTopic(body)
		if err != nil {
			c.log.Warn("cluster: a retained message in the bucket does not decode", "key", e.Key())
			return
		}
		topic = t
	default:
		t, err := keyTopic(e.Key())
		if err != nil {
			// A hashed key: the topic is known only from the value, which
			// this node has if it has the message.
			rt.mu.Lock()
			t = rt.hashed(e.Key())
			rt.mu.Unlock()
			if t == "" {
				return
			}
		}
		topic = t
	}
	rt.apply(c, topic, e.Revision(), body)
}

// hashed finds the topic of a hashed key among those known. mu is held.
func (rt *retainer) hashed(k string) string {
	for t := range rt.revs {
		if len(t) > 1024 && key(t) == k {
			return t
		}
	}
	return ""
}

func keyTopic(k string) (string, error) {
	if len(k) < 2 || k[:2] != "t." {
		return "", record.ErrMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(k[2:])
	return string(b), err
}

// apply sets topic's retained message here if rev is newer than what
// this node has.
func (rt *retainer) apply(c *Cluster, topic string, rev uint64, body []byte) {
	rt.mu.Lock()
	if rev <= rt.revs[topic] {
		rt.mu.Unlock()
		return
	}
	rt.revs[topic] = rev
	// Under mu, so that two changes to a topic land in revision order.
	c.node.SetRetained(topic, body)
	rt.mu.Unlock()
}

// migrate puts retained messages from this node's own store (from before
// it was clustered) in the bucket, each unless the cluster has had its
// topic already (a message or its deletion: the cluster's is newer). It
// reports, for each, whether the cluster has the topic now. They go
// asynchronously, a window at a time: one at a time, 1,000,000 would take
// minutes.
func (rt *retainer) migrate(c *Cluster, topics []string, bodies [][]byte) []bool {
	const inFlight = 1000
	taken := make([]bool, len(topics))
	type sent struct {
		i int
		f jetstream.PubAckFuture
	}
	var window []sent
	var unanswered int
	// One clock for them all: a bucket that does not answer costs the
	// start two minutes, not two per message.
	giveUp := time.NewTimer(2 * time.Minute)
	defer giveUp.Stop()
	settle := func(s sent) {
		select {
		case ack := <-s.f.Ok():
			rt.apply(c, topics[s.i], ack.Sequence, bodies[s.i])
			taken[s.i] = true
		case err := <-s.f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				taken[s.i] = true // another node's, just now
				return
			}
			c.log.Warn("cluster: move a retained message from this node's store to the cluster; kept for the next start",
				"topic", topics[s.i], "err", err)
		case <-giveUp.C:
			giveUp.Reset(0) // the rest give up at once too
			unanswered++
		}
	}
	defer func() {
		if unanswered > 0 {
			c.log.Warn("cluster: the bucket did not answer for retained messages from this node's store; kept for the next start",
				"messages", unanswered)
		}
	}()
	for i, topic := range topics {
		rt.mu.Lock()
		known := rt.revs[topic] != 0
		rt.mu.Unlock()
		if known {
			taken[i] = true
			continue
		}
		m := nats.NewMsg("$KV." + bucket + "." + key(topic))
		m.Data = bodies[i]
		f, err := c.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			c.log.Warn("cluster: move a retained message from this node's store to the cluster; kept for the next start",
				"topic", topic, "err", err)
			continue
		}
		window = append(window, sent{i, f})
		if len(window) == inFlight {
			settle(window[0])
			window = window[1:]
		}
	}
	for _, s := range window {
		settle(s)
	}
	return taken
}

// Retain implements broker.Cluster.
func (c *Cluster) Retain(topic string, body []byte) *broker.Pending {
	rt := &c.ret
	p := broker.NewPending()
	rt.qmu.Lock()
	rt.queue = append(rt.queue, retainJob{topic: topic, body: body, p: p})
	rt.qmu.Unlock()
	select {
	case rt.wake <- struct{}{}:
	default:
	}
	return p
}

// write stores queued retained messages in the bucket, in order, and
// broadcasts each once stored.
func (rt *retainer) write(c *Cluster) {
	type sent struct {
		job retainJob
		f   jetstream.PubAckFuture
	}
	acks := make(chan sent, 4096)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for s := range acks {
			select {
			case ack := <-s.f.Ok():
				rt.stored(c, s.job, ack.Sequence)
			case err := <-s.f.Err():
				// The bucket's leader may be electing a successor (its node
				// died): once more, until it has one.
				if rev, ok := rt.retry(c, s.f.Msg(), err); ok {
					rt.stored(c, s.job, rev)
				} else {
					s.job.p.Done()
				}
			case <-c.ctx.Done():
				s.job.p.Done()
			}
		}
	}()
	defer close(acks)
	for {
		select {
		case <-rt.wake:
		case <-c.ctx.Done():
			rt.qmu.Lock()
			jobs := rt.queue
			rt.queue = nil
			rt.qmu.Unlock()
			for _, j := range jobs {
				j.p.Done()
			}
			return
		}
		rt.qmu.Lock()
		jobs := rt.queue
		rt.queue = nil
		rt.qmu.Unlock()
		for _, j := range jobs {
			m := nats.NewMsg("$KV." + bucket + "." + key(j.topic))
			if j.body == nil {
				m.Header.Set("KV-Operation", "DEL")
			} else {
				m.Data = j.body
			}
			f, err := c.js.PublishMsgAsync(m)
			if err != nil {
				c.log.Warn("cluster: store a retained message", "topic", j.topic, "err", err)
				j.p.Done()
				continue
			}
			select {
			case acks <- sent{j, f}:
			case <-c.ctx.Done():
				j.p.Done()
			}
		}
	}
}

// retry stores m again until the bucket takes it or retryFor passes; it
// reports the revision.
func (rt *retainer) retry(c *Cluster, m *nats.Msg, err error) (uint64, bool) {
	const retryFor = 30 * time.Second
	deadline := time.Now().Add(retryFor)
	for time.Now().Before(deadline) && c.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		ack, perr := c.js.PublishMsg(ctx, m)
		cancel()
		if perr == nil {
			return ack.Sequence, true
		}
		err = perr
		time.Sleep(100 * time.Millisecond)
	}
	c.log.Warn("cluster: the retained bucket did not take a message; it is kept on this node only",
		"subject", m.Subject, "err", err)
	return 0, false
}

// stored applies a retained message the bucket took at rev here, and
// tells every node; the publisher's Pending completes once all have it.
func (rt *retainer) stored(c *Cluster, j retainJob, rev uint64) {
	rt.apply(c, j.topic, rev, j.body)
	id, p := c.expectAcks()
	b := record.AppendString(nil, c.cfg.Node)
	b = record.AppendString(b, c.boot)
	b = record.AppendUvarint(b, id)
	b = record.AppendString(b, j.topic)
	b = record.AppendUvarint(b, rev)
	if j.body != nil {
		b = append(b, 1)
		b = append(b, j.body...)
	} else {
		b = append(b, 0)
	}
	msg := &nats.Msg{Subject: c.pfx + "ret", Data: b}
	if id != 0 {
		msg.Reply = c.pfx + "back." + c.cfg.Node
	}
	_ = c.nc.PublishMsg(msg)
	if p == nil {
		j.p.Done()
		return
	}
	p.Then(j.p.Done)
}

func (c *Cluster) onRetained(m *nats.Msg) {
	r := record.Reader{B: m.Data}
	name, _, id, topic, rev, has := r.Str(), r.Str(), r.Uvarint(), r.Str(), r.Uvarint(), r.Byte()
	if r.Err != nil || name == c.cfg.Node {
		return
	}
	var body []byte
	if has == 1 {
		body = r.B
	}
	c.ret.apply(c, topic, rev, body)
	c.answer(m.Reply, id)
}
