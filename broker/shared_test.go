package broker

import (
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A shared subscription group with one member that never acknowledges
// (Receive Maximum 5) and two that keep up: a publisher's burst of 2,000
// QoS 1 messages goes to the members with room, so the stalled member gets
// its window and no more, and nothing is lost: what it holds, taken when
// it returns, and what the others got add up to every message, each once.
//
// The bound: the members that keep up have windows of 10,000 here, which
// never fill, so the stalled member's share is its window alone. Where
// every member's window is full, the one with the shortest backlog is
// chosen, and a stalled member may then be given a backlog as long as the
// others'.
// [MQTT-3.3.4-9] [MQTT-4.9.0-2] v5
func TestSharedSubscriptionPassesOverStalledMember(t *testing.T) {
	const n, window = 2000, 5
	const filter = "$share/g/work"
	srv := startServer(t, Options{MaxInflight: 10000, StallTimeout: -1, Logger: warnLogger(t)})
	addr := srv.Addrs()[0].String()

	stalled := subscribeStalled(t, srv, packet.V5, "stalled", filter, window)
	tl := newTally()
	for _, name := range []string{"fast1", "fast2"} {
		c, in := pahoV5(t, srv, &paho.Connect{ClientID: name, CleanStart: true})
		tl.v5(name, in)
		pahoV5Subscribe(t, c, paho.SubscribeOptions{Topic: filter, QoS: 1})
	}
	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	publishAll(t, []mqtt.Client{pub}, n, func(_, i int) (string, byte, []byte) {
		return "work", 1, []byte(fmt.Sprint("w", i))
	})

	// Everything is routed once acknowledged: the stalled member had its
	// window, then nothing more.
	stalled.expectPublishes(t, window) // [MQTT-3.3.4-9] [MQTT-4.9.0-2]
	stalled.w.Send(&packet.Pingreq{})
	if p := stalled.next(t); p == nil || p.Type() != packet.PINGRESP {
		t.Fatalf("stalled member: got %v after its window of %d, want nothing more (PINGRESP)", p, window)
	}

	// It returns (taking its session over) and acknowledges what it held.
	back := &packet.Connect{Version: packet.V5, ClientID: "stalled", KeepAlive: 60}
	back.Props.SessionExpiry = 60
	back.Props.Mark(packet.PropSessionExpiry)
	wiretest.DrainSessionWith(t, addr, back, func(p *packet.Publish) { tl.add("stalled", string(p.Payload)) })
	tl.waitFor(t, "every message delivered to one member", func() bool {
		c := tl.countsLocked()
		return c["fast1"]+c["fast2"]+c["stalled"] >= n
	})
	per := tl.checkOnce(t, "w", n, "fast1", "fast2", "stalled")
	if per["stalled"] > window {
		t.Errorf("the stalled member was given %d messages, want at most its window of %d: %v", per["stalled"], window, per)
	}
	if per["fast1"] < n/4 || per["fast2"] < n/4 {
		t.Errorf("the members that keep up did not share the load: %v", per)
	}
	t.Logf("shares: %v", per)
}
