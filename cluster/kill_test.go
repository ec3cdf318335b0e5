package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// A retained message survives the loss of the node it was published on:
// the bucket keeps it on the others. [MQTT-3.3.1-6]
func TestClusterRetainedSurvivesNodeKill(t *testing.T) {
	nodes := startProcs(t, 3)
	waitReplicated(t, nodes)
	pub, _ := v5(t, nodes[0].addr, "pub")
	v5Publish(t, pub, &paho.Publish{Topic: "state/dev1", QoS: 1, Retain: true, Payload: []byte("on")})
	nodes[0].kill(t)
	for _, nd := range nodes[1:] {
		c, ch := v5Within(t, nd.addr, "sub-"+nd.name, claimTimeout)
		v5Subscribe(t, c, paho.SubscribeOptions{Topic: "state/#", QoS: 1})
		p := next(t, ch, "retained on "+nd.name)
		if string(p.Payload) != "on" || !p.Retain {
			t.Fatalf("%s: got %q retain=%v", nd.name, p.Payload, p.Retain)
		}
	}
	// And a new one can still be stored with a node down.
	pub2, _ := v5(t, nodes[1].addr, "pub2")
	// The bucket's leader may have been the killed node: the write waits
	// for JetStream to elect another (4 to 9 s after the loss).
	ctx, cancel := context.WithTimeout(context.Background(), 2*claimTimeout)
	defer cancel()
	if r, err := pub2.Publish(ctx, &paho.Publish{Topic: "state/dev2", QoS: 1, Retain: true, Payload: []byte("off")}); err != nil || r.ReasonCode >= 0x80 {
		t.Fatalf("publish state/dev2: %v %+v", err, r)
	}
	c, ch := v5(t, nodes[2].addr, "late")
	v5Subscribe(t, c, paho.SubscribeOptions{Topic: "state/dev2", QoS: 1})
	if p := next(t, ch, "retained after the kill"); string(p.Payload) != "off" {
		t.Fatalf("got %q", p.Payload)
	}
}

// Publishers on two nodes, a subscriber on a third, QoS 1; one publisher's
// node is killed in the middle. Every message acknowledged to either
// publisher reaches the subscriber: loss counted as acknowledged minus
// delivered is 0.
func TestClusterLoadWithNodeKilled(t *testing.T) {
	nodes := startProcs(t, 3)
	sub, msgs := v5(t, nodes[1].addr, "sub")
	v5Subscribe(t, sub, paho.SubscribeOptions{Topic: "load/#", QoS: 1})

	const perPub = 4000
	const inFlight = 16
	var acked sync.Map // payload → true
	var nAcked [2]atomic.Int64
	var wg sync.WaitGroup
	killAt := int64(perPub / 3)
	killed := make(chan struct{})
	for i, nd := range []*procNode{nodes[0], nodes[2]} {
		c, _ := v5(t, nd.addr, fmt.Sprint("pub", i))
		next := atomic.Int64{}
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := next.Add(1) - 1
					if k >= perPub {
						return
					}
					payload := fmt.Sprintf("%d/%d", i, k)
					ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
					r, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("load/%d", i), QoS: 1, Payload: []byte(payload)})
					cancel()
					if err != nil {
						if i == 1 {
							return // its node was killed: what it had acknowledged counts
						}
						t.Errorf("publisher on a surviving node: %v", err)
						return
					}
					if r.ReasonCode >= 0x80 {
						t.Errorf("publish %s: reason 0x%02x", payload, r.ReasonCode)
						return
					}
					acked.Store(payload, true)
					if n := nAcked[i].Add(1); i == 1 && n == killAt {
						close(killed)
					}
				}
			}()
		}
	}
	select {
	case <-killed:
		nodes[2].kill(t)
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher on node 3 did not get a third of the way")
	}
	wg.Wait()
	got := map[string]bool{}
	want := 0
	acked.Range(func(any, any) bool { want++; return true })
	deadline := time.After(30 * time.Second)
	for len(got) < want {
		select {
		case p := <-msgs:
			got[string(p.Payload)] = true
		case <-deadline:
			lost := 0
			acked.Range(func(k, _ any) bool {
				if !got[k.(string)] {
					lost++
				}
				return true
			})
			t.Fatalf("acknowledged %d (node 1: %d, node 3: %d), delivered %d: %d lost",
				want, nAcked[0].Load(), nAcked[1].Load(), len(got), lost)
		}
	}
	if nAcked[0].Load() != perPub {
		t.Fatalf("the publisher on node 1 had %d of %d acknowledged", nAcked[0].Load(), perPub)
	}
	t.Logf("acknowledged %d (node 1: %d, node 3 before its kill: %d), all delivered",
		want, nAcked[0].Load(), nAcked[1].Load())
}
