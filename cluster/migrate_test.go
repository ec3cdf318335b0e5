package cluster

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// A single broker's retained messages survive its becoming a node of a
// cluster: they move from its own store to the cluster's bucket when it
// first joins, so that every node has them; and they move once, so that
// one deleted in the cluster afterwards does not come back when the node
// restarts.
func TestClusterTakesASingleBrokersRetained(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// A single broker on that data directory, with two retained messages.
	single := &procNode{name: "single", dir: dir}
	single.start(t)
	if err := single.serving(); err != nil {
		t.Fatal(err)
	}
	pub, _ := v5(t, single.addr, "pub")
	for _, m := range []string{"old/a", "old/b"} {
		v5Publish(t, pub, &paho.Publish{Topic: m, QoS: 1, Retain: true, Payload: []byte("kept " + m)})
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	single.stop(t)

	// The same directory is node 1's.
	nodes := startProcsWith(t, 3, func(nodes []*procNode) { nodes[0].dir = dir })
	if !nodes[0].logged("moved to the cluster", "messages=2") {
		t.Error("node 1 did not log moving 2 retained messages to the cluster")
	}
	c, ch := v5(t, nodes[1].addr, "sub2")
	v5Subscribe(t, c, paho.SubscribeOptions{Topic: "old/#", QoS: 1})
	got := map[string]string{}
	for range 2 {
		p := next(t, ch, "a retained message on node 2")
		got[p.Topic] = string(p.Payload)
	}
	if got["old/a"] != "kept old/a" || got["old/b"] != "kept old/b" {
		t.Fatalf("node 2 has %v", got)
	}
	// Deleted in the cluster, then node 1 restarts: old/b stays deleted.
	pub3, _ := v5(t, nodes[2].addr, "pub3")
	v5Publish(t, pub3, &paho.Publish{Topic: "old/b", QoS: 1, Retain: true})
	nodes[0].stop(t)
	nodes[0].start(t)
	if err := nodes[0].serving(); err != nil {
		t.Fatal(err)
	}
	c1, ch1 := v5(t, nodes[0].addr, "sub1")
	v5Subscribe(t, c1, paho.SubscribeOptions{Topic: "old/#", QoS: 1})
	if p := next(t, ch1, "old/a on node 1 after its restart"); p.Topic != "old/a" || string(p.Payload) != "kept old/a" {
		t.Fatalf("node 1 after its restart: %s %q", p.Topic, p.Payload)
	}
	none(t, ch1, 300*time.Millisecond)
	if nodes[0].count("moved to the cluster") != 0 { // the log is this run's
		t.Error("node 1 moved retained messages to the cluster again on its restart")
	}
}
