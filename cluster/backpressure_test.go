package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A subscriber on node 2 that stops reading holds back the publisher on
// node 1, as a slow local subscriber would, instead of either node
// dropping what it acknowledged; once it reads again, every acknowledged
// message arrives.
func TestClusterBackpressureAcrossNodes(t *testing.T) {
	nodes := startClusterWith(t, 2, func(o *broker.Options, c *Config) {
		o.BacklogMessages = 50
		c.QueueBytes = 32 << 10
	})
	slow, _ := wiretest.MustConnect(t, nodes[1].addr, "slow", true)
	slow.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "bp/#", QoS: 1}}})
	if _, ok := slow.Next().(*packet.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	pub, _ := v5(t, nodes[0].addr, "pub")
	const n = 20000
	payload := make([]byte, 1024)
	var acked atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				p := &paho.Publish{Topic: fmt.Sprint("bp/", i), QoS: 1, Payload: payload}
				if _, err := pub.Publish(ctx, p); err != nil {
					if ctx.Err() == nil {
						t.Errorf("publish %d: %v", i, err)
					}
					return
				}
				acked.Add(1)
			}
		}()
	}
	// The publisher stops getting acknowledgements well short of n: it
	// is held back (its progress checked every 250 ms until it stalls).
	last, stalled := int64(-1), false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		cur := acked.Load()
		if cur == last {
			stalled = true
			break
		}
		last = cur
		time.Sleep(250 * time.Millisecond)
	}
	if !stalled || last >= n {
		t.Fatalf("the publisher was not held back: %d of %d acknowledged", acked.Load(), n)
	}
	for _, nd := range nodes {
		for reason, c := range nd.srv.Stats().MessagesDropped {
			if c > 0 {
				t.Fatalf("%s dropped %d messages (%s)", nd.name, c, reason)
			}
		}
	}
	t.Logf("held back after %d of %d acknowledged", last, n)
	// The subscriber reads again: every message comes, the publisher
	// finishes.
	got := map[string]bool{}
	for len(got) < n {
		pk, err := slow.Read(wiretest.Timeout)
		if err != nil {
			t.Fatalf("subscriber: %v after %d messages (%d acknowledged to the publisher)", err, len(got), acked.Load())
		}
		if p, ok := pk.(*packet.Publish); ok {
			got[p.Topic] = true
			slow.Send(wiretest.Reply(p))
		}
	}
	wg.Wait()
	if acked.Load() != n {
		t.Fatalf("%d of %d acknowledged", acked.Load(), n)
	}
}
