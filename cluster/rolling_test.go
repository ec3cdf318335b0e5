package cluster

import (
	"errors"
	"fmt"
	"math"
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
		p, err := w.Read(4 * claimTimeout)
		if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.Code != 0 {
			nc.Close()
			continue
		}
		return w
	}
	return nil
}

// rollingSub is a subscriber with a persistent session that moves to the
// next node whenever its connection ends. It records how each connection
// ended: the DISCONNECT's reason code, or none.
type rollingSub struct {
	rc   *mixedReceiver
	id   string
	mu   sync.Mutex
	ends map[string]int // "0x8b", "no DISCONNECT"
}

func (rs *rollingSub) ended(how string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.ends[how]++
}

// run serves the subscriber's connections until stop, starting on w.
func (rs *rollingSub) run(t *testing.T, nodes []*procNode, turn int, w *wiretest.Client, stop *atomic.Bool) {
	for {
		p, err := w.Read(200 * time.Millisecond)
		var ne net.Error
		switch {
		case err == nil:
			if d, ok := p.(*packet.Disconnect); ok {
				rs.ended(fmt.Sprintf("0x%02x", byte(d.Code)))
				// The close follows.
				_, _ = w.Read(wiretest.Timeout)
				break
			}
			rs.rc.handle(w, p)
			continue
		case errors.As(err, &ne) && ne.Timeout():
			if stop.Load() {
				w.Conn.Close()
				return
			}
			continue
		default:
			rs.ended("no DISCONNECT")
		}
		w.Conn.Close()
		for turn++; ; turn++ {
			if w = dialSession(t, nodes, turn, rs.id); w != nil {
				break
			}
			if stop.Load() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// A rolling upgrade: each node of three is stopped (SIGTERM) and started
// again in turn, twice round, while two publishers send QoS 1 messages
// from 16 workers each and three subscribers with persistent sessions
// take them, every client moving to another node whenever its own goes.
// Every MQTT 5 connection a stopping node closes is told why (DISCONNECT
// 0x8B, Server shutting down), every stopping node hands its sessions on
// without a failure and within its shutdown timeout, and every message
// acknowledged to a publisher reaches every subscriber.
// [MQTT-4.4.0-1] v5
func TestClusterRollingRestart(t *testing.T) {
	nodes := startProcs(t, 3)
	waitLogged(t, nodes, "sessions' replica replicated", "replicas=3")

	var stop, pubStop atomic.Bool
	var wg, pubWG sync.WaitGroup
	subs := make([]*rollingSub, 3)
	for i := range subs {
		rs := &rollingSub{id: fmt.Sprintf("roll-sub%d", i), ends: map[string]int{},
			rc: &mixedReceiver{t: t, awaiting: map[uint16]bool{}, got: map[string]int{}}}
		subs[i] = rs
		w := dialSession(t, nodes, i, rs.id)
		if w == nil {
			t.Fatalf("%s cannot connect", rs.id)
		}
		w.Subscribe("dur/#", 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.run(t, nodes, i, w, &stop)
		}()
	}
	pubs := make([]*resilientPublisher, 2)
	for i := range pubs {
		rp := &resilientPublisher{t: t, id: fmt.Sprintf("roll-pub%d", i), nodes: nodes, at: i + 1,
			until: pubStop.Load}
		rp.connect()
		pubs[i] = rp
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			rp.run(1, math.MaxInt32, func(int64) {})
		}()
	}
	acked := func() (n int64) {
		for _, rp := range pubs {
			n += rp.acked.Load()
		}
		return n
	}
	flows := func(what string) {
		t.Helper()
		before := acked()
		deadline := time.Now().Add(2 * claimTimeout)
		for acked() < before+1000 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d messages acknowledged in %v", what, acked()-before, 2*claimTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	for round := range 2 {
		for _, nd := range nodes {
			flows(fmt.Sprintf("round %d, before %s stops", round+1, nd.name))
			stopped := time.Now()
			nd.stop(t)
			took := time.Since(stopped)
			if nd.logged("shutdown timed out") {
				t.Fatalf("%s: shutdown timed out", nd.name)
			}
			if nd.logged("sessions handed to other nodes") && !nd.logged("sessions handed to other nodes", "failed=0") {
				t.Fatalf("%s could not hand every session on", nd.name)
			}
			t.Logf("round %d: %s stopped in %v", round+1, nd.name, took.Round(time.Millisecond))
			nd.start(t)
			if err := nd.serving(); err != nil {
				t.Fatal(err)
			}
		}
	}
	flows("after the restarts")
	pubStop.Store(true)
	pubWG.Wait() // their last messages answered or given up

	// Every subscriber takes every acknowledged message, where its session
	// now is.
	var ok []string
	for _, rp := range pubs {
		ok = append(ok, rp.ackedPayloads()...)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, rs := range subs {
		for {
			n, first := rs.rc.missing(ok)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d acknowledged messages never arrived (lost), e.g. %s", rs.id, n, len(ok), first)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()

	var refused, unanswered int64
	for _, rp := range pubs {
		refused += rp.refused.Load()
		unanswered += rp.lost.Load()
		if with, other := rp.disconnects(packet.ServerShuttingDown); other > 0 || with == 0 {
			t.Errorf("%s was told DISCONNECT 0x8B %d times and another reason %d times (%v)", rp.id, with, other, rp.told)
		}
	}
	for _, rs := range subs {
		rs.mu.Lock()
		for how, n := range rs.ends {
			if how != "0x8b" {
				t.Errorf("%s: %d connections ended with %s, want DISCONNECT 0x8B", rs.id, n, how)
			}
		}
		rs.mu.Unlock()
	}
	t.Logf("%d messages acknowledged, all delivered to 3 subscribers; %d refused (0x80), %d unanswered",
		len(ok), refused, unanswered)
}
