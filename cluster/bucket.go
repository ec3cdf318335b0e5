package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// kvBucket is one of the cluster's replicated JetStream key-value buckets
// (the retained messages, the session directory): made by the first node
// that needs it with as many replicas as there are nodes, up to 3, and
// raised as nodes join.
type kvBucket struct {
	name     string // the bucket's name
	what     string // what it keeps, for the log
	maxValue int32
	// markerTTL, when set, lets purge markers expire after it.
	markerTTL time.Duration

	kv       jetstream.KeyValue
	ready    atomic.Bool // kv is set
	scaling  atomic.Bool // scale is running
	replicas atomic.Int32
}

// bind opens the bucket, making it if it is not there yet, and sets kv.
func (kb *kvBucket) bind(ctx context.Context, c *Cluster) (jetstream.KeyValue, error) {
	for {
		// Each request on its own clock: one lost while the cluster forms
		// must not use up the whole wait.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := c.js.KeyValue(actx, kb.name)
		if err == nil {
			st, err := kv.Status(actx)
			if err == nil {
				if s, ok := st.(*jetstream.KeyValueBucketStatus); ok {
					kb.replicas.Store(int32(s.StreamInfo().Config.Replicas))
				}
			}
			acancel()
			kb.kv = kv
			kb.ready.Store(true)
			return kv, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			acancel()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("open the %s bucket: %w", kb.what, err)
			}
			c.log.Debug("cluster: open a bucket", "bucket", kb.name, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		n := min(3, len(c.Nodes()))
		kv, err = c.js.CreateKeyValue(actx, kb.config(n, c))
		acancel()
		if err == nil {
			kb.replicas.Store(int32(n))
			c.log.Info("cluster: "+kb.what+" replicated", "replicas", n)
			kb.kv = kv
			kb.ready.Store(true)
			return kv, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create the %s bucket: %w", kb.what, err)
		}
		time.Sleep(100 * time.Millisecond) // made meanwhile by another node, or no placement yet
	}
}

func (kb *kvBucket) config(replicas int, c *Cluster) jetstream.KeyValueConfig {
	cfg := jetstream.KeyValueConfig{Bucket: kb.name, History: 1, Replicas: replicas,
		Description: "Petrel's " + kb.what, MaxValueSize: kb.maxValue, LimitMarkerTTL: kb.markerTTL}
	if c.cfg.DataDir == "" && c.cfg.NATSURL == "" {
		cfg.Storage = jetstream.MemoryStorage
	}
	return cfg
}

// scale raises the bucket's replicas as nodes join, up to 3; the node
// with the lowest name does it.
func (kb *kvBucket) scale(c *Cluster) {
	if !kb.ready.Load() || kb.replicas.Load() >= 3 {
		return
	}
	nodes := c.Nodes()
	want := min(3, len(nodes))
	if int32(want) <= kb.replicas.Load() || slices.Min(nodes) != c.cfg.Node {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if _, err := c.js.UpdateKeyValue(ctx, kb.config(want, c)); err != nil {
		c.log.Debug("cluster: raise a bucket's replicas", "bucket", kb.name, "want", want, "err", err)
		return
	}
	kb.replicas.Store(int32(want))
	// Replicated once the new replicas have caught up: until then the
	// loss of a node may still cost the bucket its quorum.
	wait, wcancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer wcancel()
	for wait.Err() == nil {
		if kb.current(wait, c, want) {
			c.log.Info("cluster: "+kb.what+" replicated", "replicas", want)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.log.Warn("cluster: a bucket's new replicas are still catching up", "bucket", kb.name, "replicas", want)
}

// current reports whether the bucket's stream has n replicas, every one
// up to date with its leader.
func (kb *kvBucket) current(ctx context.Context, c *Cluster, n int) bool {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.js.Stream(rctx, "KV_"+kb.name)
	if err != nil {
		return false
	}
	info, err := st.Info(rctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Desired != nil ||
		len(info.Cluster.Replicas) != n-1 {
		return false
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current || p.Offline || p.Pending {
			return false
		}
	}
	return true
}

// buckets are the cluster's key-value buckets.
func (c *Cluster) buckets() []*kvBucket {
	if c.cfg.NoReplica {
		return []*kvBucket{&c.ret.kvBucket, &c.dir}
	}
	return []*kvBucket{&c.ret.kvBucket, &c.dir, &c.rep}
}
