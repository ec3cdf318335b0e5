package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
)

// Nodes given one shared list of every node's address (their own left
// out: named twice, it made JetStream wait for a fourth node for good)
// and started a second apart serve only once each has met the other two.
// A node that served before meeting another could acknowledge a PUBLISH
// without knowing of the other's subscriptions (TestClusterLoadWithNodeKilled
// lost 4,000 messages so once, with two nodes routed only to the third);
// here JetStream's own start takes long enough to hide that, so this test
// holds the shared list and the staggered start.
func TestClusterStartsFromOneSharedPeerList(t *testing.T) {
	routes := []string{freePort(t), freePort(t), freePort(t)}
	type result struct {
		name  string
		err   error
		nodes []string
	}
	results := make(chan result, 3)
	start := func(i int) {
		name := fmt.Sprintf("n%d", i+1)
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		peers = append(peers, routes[i]) // one list for every node: its own address is left out
		log := testlog.New(t)
		cl, err := New(Config{Node: name, Listen: routes[i], Peers: peers, NodeTimeout: 5 * time.Second, Logger: log})
		if err != nil {
			t.Error(err)
			results <- result{name: name, err: err}
			return
		}
		srv := broker.New(broker.Options{NodeName: name, Logger: log, Cluster: cl,
			Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
		t.Cleanup(func() { srv.Close() })
		err = srv.Start()
		results <- result{name: name, err: err, nodes: cl.Nodes()}
	}
	go start(0)
	go start(1)
	// Not a synchronisation: the stagger.
	time.Sleep(time.Second)
	go start(2)
	for range 3 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("node %s: %v", r.name, r.err)
			}
			if len(r.nodes) != 3 {
				t.Errorf("node %s served knowing only %v", r.name, r.nodes)
			}
		case <-time.After(time.Minute):
			t.Fatal("the nodes did not start within a minute")
		}
	}
}

func TestOtherPeers(t *testing.T) {
	for _, tc := range []struct {
		listen string
		peers  []string
		want   int
	}{
		{"127.0.0.1:7001", nil, 0},
		{"127.0.0.1:7001", []string{"127.0.0.1:7002", "127.0.0.1:7003"}, 2},
		{"127.0.0.1:7001", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, 2},
		{"127.0.0.1:7001", []string{"127.0.0.1:7002", "127.0.0.1:7002"}, 1},
		{"0.0.0.0:7001", []string{"127.0.0.1:7001", "127.0.0.1:7002"}, 1},
		{"127.0.0.1:7001", []string{"127.0.0.2:7001"}, 1},
	} {
		if got := otherPeers(&Config{Listen: tc.listen, Peers: tc.peers}); len(got) != tc.want {
			t.Errorf("listen %s, peers %v: other peers %v, want %d", tc.listen, tc.peers, got, tc.want)
		}
	}
}
