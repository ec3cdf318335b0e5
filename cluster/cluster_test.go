package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
)

// These tests run the nodes of a cluster in one process, each a
// broker.Server with its own embedded NATS, joined by routes on loopback;
// process_test.go runs them as separate processes, so that one can be
// killed.

type testNode struct {
	name string
	srv  *broker.Server
	cl   *Cluster
	addr string
}

// freePort asks the OS for a port to give a route listener: the embedded
// server needs its own route address before it starts.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts n nodes, each naming every other as a peer, and
// returns once every one serves and knows the others.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with each node's options changed by
// adjust (if not nil) first.
func startClusterWith(t *testing.T, n int, adjust func(o *broker.Options, c *Config)) []*testNode {
	t.Helper()
	return onFreePorts(t, func() ([]*testNode, error) { return tryStartCluster(t, n, adjust) })
}

// onFreePorts runs start, which picks route ports before its nodes start,
// up to three times while it fails because another socket took one of
// them meanwhile (rarely), and fails the test on any other error.
func onFreePorts[T any](t *testing.T, start func() (T, error)) T {
	t.Helper()
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil {
			return v
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}
}

func tryStartCluster(t *testing.T, n int, adjust func(o *broker.Options, c *Config)) ([]*testNode, error) {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		routes[i] = freePort(t)
	}
	nodes := make([]*testNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		var peers []string // every other node, as in process_test.go
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		log := testlog.New(t)
		cc := Config{Node: name, Listen: routes[i], Peers: peers, NodeTimeout: 2 * time.Second, Logger: log}
		o := broker.Options{NodeName: name, Logger: log, Limits: broker.Limits{ControlRate: 1e6},
			Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}}
		if adjust != nil {
			adjust(&o, &cc)
		}
		cl, err := New(cc)
		if err != nil {
			t.Fatal(err)
		}
		o.Cluster = cl
		srv := broker.New(o)
		nodes[i] = &testNode{name: name, srv: srv, cl: cl}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = srv.Start()
		}()
	}
	wg.Wait()
	// A node whose route port was taken meanwhile fails at once; the
	// others then wait for a quorum that never comes, and fail later with
	// errors of their own: the port is the cause, and a retry the cure.
	var failed error
	for i, nd := range nodes {
		if errs[i] != nil && (failed == nil || strings.Contains(errs[i].Error(), "address already in use")) {
			failed = fmt.Errorf("node %s: %w", nd.name, errs[i])
		}
	}
	if failed != nil {
		for i, nd := range nodes {
			if errs[i] == nil {
				nd.srv.Close()
			}
		}
		return nil, failed
	}
	for _, nd := range nodes {
		nd.addr = nd.srv.Addrs()[0].String()
		t.Cleanup(func() { nd.srv.Close() })
	}
	wiretest.Eventually(t, "every node hears every other", func() bool {
		for _, nd := range nodes {
			if len(nd.cl.Nodes()) != n {
				return false
			}
		}
		return true
	})
	return nodes, nil
}

// bothWays runs body on a cluster of n nodes in this process (under
// -race, the cluster's code is checked too) and on one of n processes.
func bothWays(t *testing.T, n int, body func(t *testing.T, addrs []string)) {
	t.Run("inproc", func(t *testing.T) {
		var addrs []string
		for _, nd := range startCluster(t, n) {
			addrs = append(addrs, nd.addr)
		}
		body(t, addrs)
	})
	t.Run("proc", func(t *testing.T) {
		var addrs []string
		for _, nd := range startProcs(t, n) {
			addrs = append(addrs, nd.addr)
		}
		body(t, addrs)
	})
}

// v5 connects a paho.golang client to addr; what it receives goes to the
// channel.
func v5(t *testing.T, addr, id string) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	return v5Within(t, addr, id, wiretest.Timeout)
}

// v5Within is v5 with a CONNECT that may take up to d: after a node's
// loss, a CONNECT waits until the session directory has elected a new
// leader, if the lost node led it (4 to 9 s, JetStream's election).
func v5Within(t *testing.T, addr, id string, d time.Duration) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	msgs := make(chan *paho.Publish, 10000)
	c := paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			},
		},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %+v, %v", id, ca, err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, msgs
}

func v5Subscribe(t *testing.T, c *paho.Client, subs ...paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i, code := range sa.Reasons {
		if code != subs[i].QoS {
			t.Fatalf("subscribe %q: SUBACK 0x%02x", subs[i].Topic, code)
		}
	}
}

func v5Publish(t *testing.T, c *paho.Client, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	if p.QoS > 0 && r.ReasonCode >= 0x80 {
		t.Fatalf("publish %s: reason 0x%02x", p.Topic, r.ReasonCode)
	}
}

// v3 connects a paho.mqtt.golang (MQTT 3.1.1) client.
func v3(t *testing.T, addr, id string, onMsg mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wiretest.Timeout).
		SetKeepAlive(30 * time.Second).SetOrderMatters(true).SetCleanSession(true)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wiretest.Timeout) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func wait(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(wiretest.Timeout) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, tok.Error())
	}
}

func next(t *testing.T, ch chan *paho.Publish, what string) *paho.Publish {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(wiretest.Timeout):
		t.Fatalf("%s: nothing received", what)
		return nil
	}
}

func none(t *testing.T, ch chan *paho.Publish, d time.Duration) {
	t.Helper()
	select {
	case p := <-ch:
		t.Fatalf("unexpected PUBLISH %s %q", p.Topic, p.Payload)
	case <-time.After(d):
	}
}

// A message published on one node reaches subscribers on the others at
// the QoS of the subscription (at most the message's), once per client
// however many of its filters match, with its properties; from an MQTT
// 3.1.1 publisher to an MQTT 5 subscriber and back.
// [MQTT-3.3.5-1] [MQTT-3.8.4-8]
func TestClusterPublishCrossesNodes(t *testing.T) { bothWays(t, 3, testPublishCrossesNodes) }

func testPublishCrossesNodes(t *testing.T, nodes []string) {
	sub, msgs := v5(t, nodes[1], "sub5")
	v5Subscribe(t, sub,
		paho.SubscribeOptions{Topic: "a/+/c", QoS: 2},
		paho.SubscribeOptions{Topic: "a/#", QoS: 1})
	var got3 = make(chan mqtt.Message, 100)
	sub3 := v3(t, nodes[2], "sub3", nil)
	wait(t, sub3.Subscribe("a/b/#", 1, func(_ mqtt.Client, m mqtt.Message) { got3 <- m }), "subscribe 3.1.1")

	pub := v3(t, nodes[0], "pub3", nil)
	for qos := byte(0); qos <= 2; qos++ {
		wait(t, pub.Publish("a/b/c", qos, false, fmt.Sprintf("q%d", qos)), "publish")
		p := next(t, msgs, "v5 subscriber")
		if string(p.Payload) != fmt.Sprintf("q%d", qos) || p.QoS != qos {
			t.Fatalf("v5 got %q at QoS %d, want q%d at QoS %d", p.Payload, p.QoS, qos, qos)
		}
		select {
		case m := <-got3:
			if string(m.Payload()) != fmt.Sprintf("q%d", qos) || m.Qos() != min(qos, 1) {
				t.Fatalf("3.1.1 got %q at QoS %d", m.Payload(), m.Qos())
			}
		case <-time.After(wiretest.Timeout):
			t.Fatal("3.1.1 subscriber: nothing received")
		}
	}
	none(t, msgs, 100*time.Millisecond) // one copy per client, not one per filter

	// MQTT 5 properties cross nodes unchanged.
	pub5, _ := v5(t, nodes[2], "pub5")
	v5Publish(t, pub5, &paho.Publish{Topic: "a/x/c", QoS: 1, Payload: []byte("props"),
		Properties: &paho.PublishProperties{ContentType: "text/plain", ResponseTopic: "r/1",
			CorrelationData: []byte{1, 2}, User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	p := next(t, msgs, "properties")
	if p.Properties == nil || p.Properties.ContentType != "text/plain" || p.Properties.ResponseTopic != "r/1" ||
		string(p.Properties.CorrelationData) != "\x01\x02" || p.Properties.User.Get("k") != "v" {
		t.Fatalf("properties lost on the way: %+v", p.Properties)
	}
}

// A SUBACK from one node means that a PUBLISH accepted afterwards on any
// other node is delivered: 500 rounds, each on a new filter, no misses.
func TestClusterSubscribeThenPublish(t *testing.T) { bothWays(t, 3, testSubscribeThenPublish) }

func testSubscribeThenPublish(t *testing.T, nodes []string) {
	sub, msgs := v5(t, nodes[1], "sub")
	pub, _ := v5(t, nodes[0], "pub")
	rounds := 500
	if testing.Short() {
		rounds = 100
	}
	for i := range rounds {
		topic := fmt.Sprintf("race/%d", i)
		v5Subscribe(t, sub, paho.SubscribeOptions{Topic: topic, QoS: 1})
		v5Publish(t, pub, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
		p := next(t, msgs, "round "+topic)
		if p.Topic != topic {
			t.Fatalf("round %d: got %s", i, p.Topic)
		}
	}
}

// Members of a shared group on every node: each message goes to exactly
// one of them, and every node's member takes some.
func TestClusterSharedGroup(t *testing.T) { bothWays(t, 3, testSharedGroup) }

func testSharedGroup(t *testing.T, nodes []string) {
	var chans []chan *paho.Publish
	for i, addr := range nodes {
		c, ch := v5(t, addr, fmt.Sprintf("member%d", i))
		v5Subscribe(t, c, paho.SubscribeOptions{Topic: "$share/g/jobs/#", QoS: 1})
		chans = append(chans, ch)
	}
	pub, _ := v5(t, nodes[0], "pub")
	const n = 300
	for i := range n {
		v5Publish(t, pub, &paho.Publish{Topic: "jobs/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	seen := map[string]int{}
	per := make([]int, len(chans))
	deadline := time.After(wiretest.Timeout)
	for total := 0; total < n; {
		select {
		case p := <-chans[0]:
			seen[string(p.Payload)]++
			per[0]++
		case p := <-chans[1]:
			seen[string(p.Payload)]++
			per[1]++
		case p := <-chans[2]:
			seen[string(p.Payload)]++
			per[2]++
		case <-deadline:
			t.Fatalf("received %d of %d (per member %v)", total, n, per)
		}
		total++
	}
	for _, ch := range chans {
		none(t, ch, 50*time.Millisecond)
	}
	for k, v := range seen {
		if v != 1 {
			t.Fatalf("message %s delivered %d times", k, v)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
	for i, c := range per {
		if c == 0 {
			t.Fatalf("member on node %d got nothing: %v", i+1, per)
		}
	}
}

// A retained message published on one node is sent to a SUBSCRIBE on
// another; an empty retained payload deletes it everywhere.
// [MQTT-3.3.1-6] [MQTT-3.3.1-10]
func TestClusterRetained(t *testing.T) { bothWays(t, 3, testRetained) }

func testRetained(t *testing.T, nodes []string) {
	pub, _ := v5(t, nodes[0], "pub")
	v5Publish(t, pub, &paho.Publish{Topic: "r/1", QoS: 1, Retain: true, Payload: []byte("kept")})
	for i, addr := range nodes[1:] {
		c, ch := v5(t, addr, fmt.Sprint("sub-", i))
		v5Subscribe(t, c, paho.SubscribeOptions{Topic: "r/#", QoS: 1})
		p := next(t, ch, fmt.Sprint("retained on node ", i+2))
		if string(p.Payload) != "kept" || !p.Retain {
			t.Fatalf("node %d: got %q retain=%v", i+2, p.Payload, p.Retain)
		}
	}
	pub2, _ := v5(t, nodes[1], "pub2")
	v5Publish(t, pub2, &paho.Publish{Topic: "r/1", QoS: 1, Retain: true})
	for i, addr := range nodes {
		c, ch := v5(t, addr, fmt.Sprint("late-", i))
		v5Subscribe(t, c, paho.SubscribeOptions{Topic: "r/#", QoS: 1})
		none(t, ch, 100*time.Millisecond)
	}
}

// Server.Publish from a program that embeds a node returns at QoS 1 once
// the other nodes have taken the message, as a client's PUBACK does.
func TestClusterEmbeddedPublish(t *testing.T) {
	nodes := startCluster(t, 2)
	sub, msgs := v5(t, nodes[1].addr, "sub")
	v5Subscribe(t, sub, paho.SubscribeOptions{Topic: "embedded/#", QoS: 1})
	for i := range 50 {
		if err := nodes[0].srv.Publish(fmt.Sprint("embedded/", i), []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
		// Taken by node 2 before Publish returned.
		if got := nodes[1].cl.Stats().Received.Load(); got < uint64(i+1) {
			t.Fatalf("Publish %d returned with node 2 having received %d messages", i, got)
		}
		if p := next(t, msgs, "embedded publish"); p.Topic != fmt.Sprint("embedded/", i) {
			t.Fatalf("got %s", p.Topic)
		}
	}
}
