package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// dialSession connects an MQTT 5 client with a persistent session to the
// first of the nodes that accepts, starting with the one at turn; it
// fails nothing (it runs off the test's goroutine) and returns nil when
// none accepts.
func dialSession(t *testing.T, nodes []*procNode, turn int, id string) *wiretest.Client {
	for i := range nodes {
		nd := nodes[(turn+i)%len(nodes)]
		nd.mu.Lock()
		addr := nd.addr
		nd.mu.Unlock()
		if addr == "" {
			continue
		}
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		w := wiretest.New(t, nc, id+"@"+nd.name, packet.V5)
		c := &packet.Connect{Version: packet.V5, ClientID: id, KeepAlive: 60,
			Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 600}}
		if w.TrySend(c) != nil {
			nc.Close()
			continue
		}
		p, err := w.Read(5 * time.Second)
		if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.Code != 0 {
			nc.Close()
			continue
		}
		return w
	}
	return nil
}

// Each node of three is stopped (SIGTERM) and started again in turn,
// while a publisher sends QoS 1 messages one after another and a
// subscriber with a persistent session takes them, each moving to another
// node whenever theirs goes: every message acknowledged to the publisher
// reaches the subscriber.
// [MQTT-4.4.0-1] v5
func TestClusterRollingRestart(t *testing.T) {
	nodes := startProcs(t, 3)
	waitReplicated(t, nodes)

	sub := dialSession(t, nodes, 0, "roll-sub")
	if sub == nil {
		t.Fatal("the subscriber cannot connect")
	}
	sub.Subscribe("roll/#", 1)

	var mu sync.Mutex
	got := map[string]bool{}
	var acked []string
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the subscriber
		defer wg.Done()
		turn := 0
		for w := sub; ; {
			p, err := w.Read(200 * time.Millisecond)
			var ne net.Error
			switch {
			case err == nil:
				if pub, ok := p.(*packet.Publish); ok {
					mu.Lock()
					got[string(pub.Payload)] = true
					mu.Unlock()
					_ = w.TrySend(&packet.Ack{Kind: packet.PUBACK, PacketID: pub.PacketID})
				}
				continue
			case errors.As(err, &ne) && ne.Timeout():
				if stop.Load() {
					return
				}
				continue
			}
			w.Conn.Close()
			for turn++; ; turn++ {
				if w = dialSession(t, nodes, turn, "roll-sub"); w != nil || stop.Load() {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if w == nil {
				return
			}
		}
	}()
	go func() { // the publisher: one message in flight, sent again on a new connection
		defer wg.Done()
		turn := 1
		w := dialSession(t, nodes, turn, "roll-pub")
		for i := 0; !stop.Load(); {
			payload := fmt.Sprint(i)
			pid := uint16(i%60000 + 1)
			ok := w != nil && w.TrySend(&packet.Publish{Topic: "roll/x", Payload: []byte(payload), QoS: 1, PacketID: pid}) == nil
			if ok {
				p, err := w.Read(5 * time.Second)
				a, isAck := p.(*packet.Ack)
				ok = err == nil && isAck && a.Kind == packet.PUBACK && a.PacketID == pid
				if ok && a.Code < 0x80 {
					mu.Lock()
					acked = append(acked, payload)
					mu.Unlock()
					i++
					continue
				}
			}
			// Connection gone: to the next node, and the message again.
			if w != nil {
				w.Conn.Close()
			}
			turn++
			w = dialSession(t, nodes, turn, "roll-pub")
			if w == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for _, nd := range nodes {
		before := count()
		wiretest.Eventually(t, "messages flow", func() bool { return count() > before+500 })
		nd.stop(t)
		if nd == nodes[0] && !nd.logged("sessions handed to other nodes", "failed=0") {
			t.Fatalf("%s held the subscriber's session, and did not hand it on as it stopped", nd.name)
		}
		nd.start(t)
		if err := nd.serving(); err != nil {
			t.Fatal(err)
		}
	}
	before := count()
	wiretest.Eventually(t, "messages flow after the restarts", func() bool { return count() > before+200 })
	stop.Store(true)
	wg.Wait()

	// What is still queued for the subscriber, from wherever its session is.
	mu.Lock()
	defer mu.Unlock()
	nodes[0].mu.Lock()
	addr := nodes[0].addr
	nodes[0].mu.Unlock()
	wiretest.DrainSessionWith(t, addr, &packet.Connect{Version: packet.V5, ClientID: "roll-sub", KeepAlive: 60,
		Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 600}}, func(p *packet.Publish) {
		got[string(p.Payload)] = true
	})
	lost := 0
	for _, p := range acked {
		if !got[p] {
			lost++
		}
	}
	t.Logf("%d messages acknowledged, %d lost", len(acked), lost)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", lost, len(acked))
	}
}
