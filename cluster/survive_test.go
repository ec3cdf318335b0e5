package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A persistent session outlives its node. Three nodes as processes: a
// client's session subscribed on node 1, a publisher on node 2 sending
// 20,000 QoS 1 messages, then 20,000 QoS 2; in the middle of the QoS 2
// ones a node is killed (SIGKILL). The client then connects to node 3:
// every message acknowledged to the publisher arrives, and none of the
// QoS 2 ones twice.
// [MQTT-3.1.2-5] v5
// [MQTT-4.4.0-1] v5
// [MQTT-4.3.3-6] v5
func TestClusterSessionSurvivesNodeKill(t *testing.T) {
	for _, tc := range []struct {
		name   string
		online bool // the client is connected to node 1 while messages come
		kill   int  // the node killed: 0 the subscriber's, 1 the publisher's
	}{
		{"offline subscriber's node killed", false, 0},
		{"online subscriber's node killed", true, 0},
		{"publisher's node killed", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSessionSurvives(t, tc.online, tc.kill)
		})
	}
}

func testSessionSurvives(t *testing.T, online bool, kill int) {
	const perQoS = 20000
	nodes := startProcs(t, 3)
	waitLogged(t, nodes, "sessions' replica replicated", "replicas=3")

	rc := &mixedReceiver{t: t, awaiting: map[uint16]bool{}, got: map[string]int{}}
	sub, _ := connect5(t, nodes[0].addr, "keeper", true, nil)
	sub.Name = "keeper@n1"
	sub.Subscribe("dur/#", 2)
	subDone := make(chan struct{})
	if online {
		go func() {
			defer close(subDone)
			for rc.serve(sub, 3*time.Minute) {
			}
		}()
	} else {
		sub.Disconnect()
		close(subDone)
	}

	pub := &resilientPublisher{t: t, id: "writer", addrs: []string{nodes[1].addr, nodes[2].addr}}
	pub.connect()
	killAt := int64(perQoS + perQoS/2)
	var killed atomic.Bool
	onAck := func(n int64) {
		if n == killAt && killed.CompareAndSwap(false, true) {
			nodes[kill].kill(t)
		}
	}
	start := time.Now()
	pub.run(1, perQoS, onAck)
	pub.run(2, perQoS, onAck)
	if !killed.Load() {
		t.Fatalf("only %d messages acknowledged; the node was never killed", pub.acked.Load())
	}
	t.Logf("published in %v: %d acknowledged, %d refused (0x80), %d unanswered",
		time.Since(start).Round(time.Millisecond), pub.acked.Load(), pub.refused.Load(), pub.lost.Load())

	w := sub
	if kill == 0 {
		<-subDone
		var present bool
		w, present = connectWithin(t, nodes[2].addr, "keeper", 4*claimTimeout)
		w.Name = "keeper@n3"
		if !present {
			t.Fatal("the session was not present on node 3")
		}
	} else {
		// The subscriber's node lives: the reading goroutine stops at the
		// answer to a ping, and this one serves from then on.
		rc.mu.Lock()
		rc.stopOnPong = true
		rc.mu.Unlock()
		_ = sub.TrySend(&packet.Pingreq{})
		<-subDone
	}
	ok := pub.ackedPayloads()
	rc.waitAll(w, ok, 60*time.Second)
	twice, dup1 := 0, 0
	for p, n := range rc.got {
		if n > 1 {
			if strings.HasPrefix(p, "writer/2/") {
				twice++
				if twice <= 10 {
					t.Errorf("QoS 2 message %s taken %d times", p, n)
				}
			} else {
				dup1++
			}
		}
	}
	if twice > 0 {
		t.Fatalf("%d QoS 2 messages taken more than once", twice)
	}
	t.Logf("all %d acknowledged messages arrived; QoS 1 duplicates: %d", len(ok), dup1)
}

// waitLogged waits until some node logged a line with all of parts.
func waitLogged(t *testing.T, nodes []*procNode, parts ...string) {
	t.Helper()
	wiretest.Eventually(t, fmt.Sprint(parts), func() bool {
		for _, nd := range nodes {
			if nd.logged(parts...) {
				return true
			}
		}
		return false
	})
}

// connectWithin connects "id" with its session kept, allowing d for the
// CONNACK (a claim after a node's loss waits for the directory's new
// leader), and returns the client and whether the session was present.
func connectWithin(t *testing.T, addr, id string, d time.Duration) (*wiretest.Client, bool) {
	t.Helper()
	w := wiretest.Dial(t, "tcp", addr, id, packet.V5)
	c := &packet.Connect{Version: packet.V5, ClientID: id, KeepAlive: 60}
	c.Props.SessionExpiry = 300
	c.Props.Mark(packet.PropSessionExpiry)
	w.Send(c)
	p, err := w.Read(d)
	if err != nil {
		t.Fatalf("%s: no CONNACK within %v: %v", id, d, err)
	}
	ack, isAck := p.(*packet.Connack)
	if !isAck || ack.Code != 0 {
		t.Fatalf("%s: got %+v, want CONNACK 0", id, p)
	}
	return w, ack.SessionPresent
}

// mixedReceiver is a subscriber's side of its session, as a client
// keeps it across connections: QoS 1 messages are acknowledged, QoS 2
// ones taken once per packet id until released (MQTT-4.3.3-10).
type mixedReceiver struct {
	t        *testing.T
	mu       sync.Mutex
	awaiting map[uint16]bool
	got      map[string]int
	// stopOnPong: serve reports the end at a PINGRESP.
	stopOnPong bool
	// want, once waitAll runs, are the payloads it waits for, and left
	// how many of them have yet to come.
	want map[string]bool
	left int
}

// take counts payload as taken.
func (rc *mixedReceiver) take(payload string) {
	if rc.got[payload] == 0 && rc.want[payload] {
		rc.left--
	}
	rc.got[payload]++
}

// missing counts the payloads of want not taken yet, and names the first.
func (rc *mixedReceiver) missing(want []string) (n int, first string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range want {
		if rc.got[p] == 0 {
			if n == 0 {
				first = p
			}
			n++
		}
	}
	return n, first
}

// serve reads one packet from w, waiting up to d, and handles it; false
// once w is closed.
func (rc *mixedReceiver) serve(w *wiretest.Client, d time.Duration) bool {
	p, err := w.Read(d)
	if err != nil {
		return false
	}
	return rc.handle(w, p)
}

// handle takes p, which came on w; false when it ends the connection.
func (rc *mixedReceiver) handle(w *wiretest.Client, p packet.Packet) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch p := p.(type) {
	case *packet.Publish:
		switch p.QoS {
		case 1:
			rc.take(string(p.Payload))
			_ = w.TrySend(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		case 2:
			if !rc.awaiting[p.PacketID] {
				rc.awaiting[p.PacketID] = true
				rc.take(string(p.Payload))
			}
			_ = w.TrySend(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		}
	case *packet.Ack:
		if p.Kind == packet.PUBREL {
			delete(rc.awaiting, p.PacketID)
			_ = w.TrySend(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
		}
	case *packet.Disconnect:
		return false
	default:
		if p.Type() == packet.PINGRESP {
			return !rc.stopOnPong
		}
	}
	return true
}

// waitAll serves w until every payload in ok has been taken, failing the
// test with the missing ones after d.
func (rc *mixedReceiver) waitAll(w *wiretest.Client, ok []string, d time.Duration) {
	rc.t.Helper()
	deadline := time.Now().Add(d)
	rc.mu.Lock()
	left := 0
	for _, p := range ok {
		if rc.got[p] == 0 {
			left++
		}
	}
	rc.want = make(map[string]bool, len(ok))
	for _, p := range ok {
		rc.want[p] = true
	}
	rc.left = left
	rc.mu.Unlock()
	for {
		rc.mu.Lock()
		left := rc.left
		rc.mu.Unlock()
		if left == 0 {
			return
		}
		p, err := w.Read(time.Until(deadline))
		if err != nil {
			var missing []string
			rc.mu.Lock()
			for _, p := range ok {
				if rc.got[p] == 0 {
					missing = append(missing, p)
				}
			}
			rc.mu.Unlock()
			rc.t.Fatalf("%s: %v; %d of %d acknowledged messages never arrived (lost), e.g. %v",
				w.Name, err, len(missing), len(ok), missing[:min(len(missing), 20)])
		}
		rc.handle(w, p)
	}
}

// resilientPublisher publishes from 16 workers on one MQTT 5
// connection; when the connection dies it connects to the next address
// and goes on. It counts what was acknowledged, refused (reason 0x80:
// the cluster could not keep it) and never answered.
type resilientPublisher struct {
	t     *testing.T
	id    string
	addrs []string
	// nodes, when set, are the addresses instead, read as each connects
	// (a restarted node listens on another port).
	nodes []*procNode
	// until, when set, ends run once it is true.
	until func() bool

	mu      sync.Mutex
	c       *paho.Client
	at      int
	payload []string // acknowledged
	// told counts the DISCONNECTs the nodes sent, by reason code.
	told map[packet.ReasonCode]int

	acked, refused, lost atomic.Int64
}

// address returns the i-th address, round the list.
func (rp *resilientPublisher) address(i int) string {
	if rp.nodes == nil {
		return rp.addrs[i%len(rp.addrs)]
	}
	nd := rp.nodes[i%len(rp.nodes)]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.addr
}

// disconnects returns how many DISCONNECTs the nodes sent with code, and
// with any other code.
func (rp *resilientPublisher) disconnects(code packet.ReasonCode) (with, other int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for c, n := range rp.told {
		if c == code {
			with += n
		} else {
			other += n
		}
	}
	return with, other
}

// connect connects to the first address, from rp.at on and around,
// that takes the client. rp.mu is held (or not yet shared).
func (rp *resilientPublisher) connect() {
	rp.t.Helper()
	for range max(len(rp.addrs), len(rp.nodes)) {
		addr := rp.address(rp.at)
		if addr == "" { // a node starting again
			rp.at++
			continue
		}
		nc, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
		if err != nil {
			rp.at++
			continue
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: rp.id, Conn: nc, OnClientError: func(error) {},
			OnServerDisconnect: func(d *paho.Disconnect) {
				rp.mu.Lock()
				defer rp.mu.Unlock()
				if rp.told == nil {
					rp.told = map[packet.ReasonCode]int{}
				}
				rp.told[packet.ReasonCode(d.ReasonCode)]++
			}})
		// A claim waits for the directory's election after a node's loss,
		// and the session's reading for the replica's.
		ctx, cancel := context.WithTimeout(context.Background(), 4*claimTimeout)
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: rp.id, KeepAlive: 30, CleanStart: true})
		cancel()
		if err != nil || ca.ReasonCode != 0 {
			rp.t.Logf("%s: connect to %s: %+v %v", rp.id, addr, ca, err)
			_ = nc.Close()
			rp.at++
			continue
		}
		rp.c = c
		rp.t.Cleanup(func() {
			_ = c.Disconnect(&paho.Disconnect{})
			<-c.Done()
		})
		return
	}
	rp.t.Errorf("%s: no node to publish to", rp.id)
}

// client returns the connection to publish on; after one failed
// (broken), a new one: on the same node if it is up, else the next.
func (rp *resilientPublisher) client(broken *paho.Client, err error) *paho.Client {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if broken != nil && rp.c == broken {
		rp.t.Logf("%s: %v; connecting again", rp.id, err)
		rp.c = nil
		rp.connect()
	}
	return rp.c
}

// run publishes n messages of qos ("<id>/<qos>/<k>") to dur/<qos>, calling
// onAck with the count of acknowledged messages after each.
func (rp *resilientPublisher) run(qos byte, n int, onAck func(int64)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rp.client(nil, nil)
			for c != nil {
				k := next.Add(1) - 1
				if k >= int64(n) || rp.until != nil && rp.until() {
					return
				}
				payload := fmt.Sprintf("%s/%d/%d", rp.id, qos, k)
				ctx, cancel := context.WithTimeout(context.Background(), 3*claimTimeout)
				r, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("dur/%d", qos), QoS: qos, Payload: []byte(payload)})
				cancel()
				switch {
				case err != nil:
					rp.lost.Add(1) // its node died before answering
					if c = rp.client(c, err); c == nil {
						return
					}
				case r.ReasonCode >= 0x80:
					rp.refused.Add(1)
				default:
					rp.mu.Lock()
					rp.payload = append(rp.payload, payload)
					rp.mu.Unlock()
					onAck(rp.acked.Add(1))
				}
			}
		}()
	}
	wg.Wait()
}

func (rp *resilientPublisher) ackedPayloads() []string {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return append([]string(nil), rp.payload...)
}
