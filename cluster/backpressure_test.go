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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := publishQoS1(ctx, t, pub, "bp/", n, 16, payload, &acked)
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

// A shared group's members on two nodes, one of which stops reading: once
// it has no room, its node says so, and the publishing node gives the
// group's messages to the other node's member, rather than in turn (each
// message to the slow member held its publisher's acknowledgement until it
// drained). Each message still goes to exactly one member, and the slow
// member gets what it was given once it reads.
func TestClusterSharedGroupPrefersRoom(t *testing.T) {
	nodes := startClusterWith(t, 3, nil)
	slow, _ := wiretest.MustConnect(t, nodes[1].addr, "slow", true)
	slow.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "$share/g/room/#", QoS: 1}}})
	if _, ok := slow.Next().(*packet.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	fast, fastCh := v5(t, nodes[2].addr, "fast")
	v5Subscribe(t, fast, paho.SubscribeOptions{Topic: "$share/g/room/#", QoS: 1})
	pub, _ := v5(t, nodes[0].addr, "pub")
	const n = 5000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var acked atomic.Int64
	wg := publishQoS1(ctx, t, pub, "room/", n, 8, []byte("x"), &acked)
	// Every PUBLISH is acknowledged while the slow member reads nothing.
	wg.Wait()
	if acked.Load() != n {
		t.Fatalf("%d of %d acknowledged in a minute: the slow member held the publisher back", acked.Load(), n)
	}
	got := map[string]int{}
	fastGot := 0
	for fastGot < n {
		select {
		case p := <-fastCh:
			got[p.Topic]++
			fastGot++
			continue
		case <-time.After(500 * time.Millisecond):
		}
		break // the rest went to the slow member
	}
	// The slow member reads what it was given.
	for len(got) < n {
		pk, err := slow.Read(wiretest.Timeout)
		if err != nil {
			t.Fatalf("slow member: %v with %d of %d messages received (fast member: %d)", err, len(got), n, fastGot)
		}
		if p, ok := pk.(*packet.Publish); ok {
			got[p.Topic]++
			slow.Send(wiretest.Reply(p))
		}
	}
	for topic, c := range got {
		if c != 1 {
			t.Fatalf("%s delivered %d times", topic, c)
		}
	}
	if fastGot < n/2 {
		t.Fatalf("the member with room got %d of %d", fastGot, n)
	}
	t.Logf("the member with room got %d of %d", fastGot, n)
}

// publishQoS1 publishes n QoS 1 messages on pub, to prefix and each one's
// number, from workers goroutines, counting those acknowledged in acked;
// an error is the test's unless ctx ended. The WaitGroup says when all
// workers are done.
func publishQoS1(ctx context.Context, t *testing.T, pub *paho.Client, prefix string, n, workers int, payload []byte,
	acked *atomic.Int64) *sync.WaitGroup {
	var next atomic.Int64
	wg := new(sync.WaitGroup)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprint(prefix, i), QoS: 1, Payload: payload}); err != nil {
					if ctx.Err() == nil {
						t.Errorf("publish %d: %v", i, err)
					}
					return
				}
				acked.Add(1)
			}
		}()
	}
	return wg
}
