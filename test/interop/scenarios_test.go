//go:build interop

package interop

import (
	"fmt"
	"testing"
)

// The scenarios every interactive peer runs: one broker and one peer
// process per client × transport × protocol version, one scenario after
// the other, each with its own topics and client identifiers. The Go
// reference client is on the other side, over TCP with MQTT 3.1.1, so each
// scenario also crosses transports and protocol versions.

// scenarioEnv is what a scenario runs with.
type scenarioEnv struct {
	b       *testBroker
	p       *peer
	url     string // the peer's way in: TCP or WebSocket
	version int    // the peer's MQTT version: 4 (3.1.1) or 5
}

func (e *scenarioEnv) options(id string, clean bool) connectOptions {
	return connectOptions{URL: e.url, ID: id, Version: e.version, Clean: clean}
}

// runScenarios runs the four scenarios for a peer started by start, for
// each transport and protocol version.
func runScenarios(t *testing.T, start func(t *testing.T) *peer, transports ...string) {
	for _, transport := range transports {
		for _, version := range []int{4, 5} {
			t.Run(fmt.Sprintf("%s/v%d", transport, version), func(t *testing.T) {
				t.Parallel()
				b := startBroker(t)
				e := &scenarioEnv{b: b, p: start(t), url: b.url(transport), version: version}
				t.Run("qos", func(t *testing.T) { qosScenario(t, e) })
				t.Run("retained", func(t *testing.T) { retainedScenario(t, e) })
				t.Run("session", func(t *testing.T) { sessionScenario(t, e) })
				// Last: a Python peer ends with its connection.
				t.Run("will", func(t *testing.T) { willScenario(t, e) })
			})
		}
	}
}

// qosScenario: QoS 0, 1 and 2 both ways. A message reaches a subscriber at
// the lower of its publish QoS and the subscription's. [MQTT-3.8.4-6]
func qosScenario(t *testing.T, e *scenarioEnv) {
	ref := connectRef(t, e.b, "ref-qos")
	ref.subscribe(t, "qos/from-peer/+", 2)
	e.p.connect(t, e.options("peer-qos", true))

	for sub := byte(0); sub <= 2; sub++ {
		if got := e.p.subscribe(t, fmt.Sprintf("qos/to-peer/sub%d/+", sub), sub); got != sub {
			t.Fatalf("peer subscribed at QoS %d, was granted %d", sub, got)
		}
	}
	var want []message
	for sub := byte(0); sub <= 2; sub++ {
		for pub := byte(0); pub <= 2; pub++ {
			m := message{
				Topic:   fmt.Sprintf("qos/to-peer/sub%d/pub%d", sub, pub),
				Payload: fmt.Sprintf("Go to peer, published at QoS %d", pub),
				QoS:     min(sub, pub),
			}
			ref.publish(t, m.Topic, m.Payload, pub, false)
			want = append(want, m)
		}
	}
	expect(t, e.p, want...)

	want = nil
	for pub := byte(0); pub <= 2; pub++ {
		m := message{
			Topic:   fmt.Sprintf("qos/from-peer/pub%d", pub),
			Payload: fmt.Sprintf("peer to Go at QoS %d", pub),
			QoS:     pub,
		}
		e.p.publish(t, m.Topic, m.Payload, pub, false)
		want = append(want, m)
	}
	expect(t, ref, want...)
	e.p.disconnect(t)
	expectNoMore(t, ref)
	t.Logf("Go → %v: 9 messages, publish QoS 0-2 × subscription QoS 0-2, each at the lower QoS; %v → Go: QoS 0, 1, 2 completed (PUBACK, PUBCOMP) and delivered", e.p, e.p)
}

// retainedScenario: retained messages from either side reach later
// subscriptions with the retain flag set; one already there gets them
// without [MQTT-3.3.1-9]; an empty retained message clears the topic
// [MQTT-3.3.1-10].
func retainedScenario(t *testing.T, e *scenarioEnv) {
	ref := connectRef(t, e.b, "ref-retained")
	e.p.connect(t, e.options("peer-retained", true))

	e.p.publish(t, "retained/peer", "retained by the peer", 1, true)
	ref.publish(t, "retained/go", "retained by Go", 1, true)
	e.p.subscribe(t, "retained/+", 1)
	expect(t, e.p,
		message{Topic: "retained/peer", Payload: "retained by the peer", QoS: 1, Retain: true},
		message{Topic: "retained/go", Payload: "retained by Go", QoS: 1, Retain: true})
	ref.subscribe(t, "retained/peer", 2)
	expect(t, ref, message{Topic: "retained/peer", Payload: "retained by the peer", QoS: 1, Retain: true})

	// Replaced while the peer is subscribed: delivered, not marked retained.
	ref.publish(t, "retained/go", "replaced by Go", 2, true)
	expect(t, e.p, message{Topic: "retained/go", Payload: "replaced by Go", QoS: 1})

	// The peer clears its retained message.
	e.p.publish(t, "retained/peer", "", 1, true)
	expect(t, e.p, message{Topic: "retained/peer", QoS: 1})
	expect(t, ref, message{Topic: "retained/peer", QoS: 1})

	// A new subscriber gets the replacement and nothing for the cleared
	// topic: the first message there is the marker published after it
	// subscribed.
	late := connectRef(t, e.b, "ref-retained-late")
	late.subscribe(t, "retained/#", 2)
	e.p.publish(t, "retained/peer", "marker, not retained", 1, false)
	expect(t, late,
		message{Topic: "retained/go", Payload: "replaced by Go", QoS: 2, Retain: true},
		message{Topic: "retained/peer", Payload: "marker, not retained", QoS: 1})
	expect(t, e.p, message{Topic: "retained/peer", Payload: "marker, not retained", QoS: 1})
	expect(t, ref, message{Topic: "retained/peer", Payload: "marker, not retained", QoS: 1})
	e.p.disconnect(t)
	expectNoMore(t, late)
	t.Logf("%v: retained both ways with the flag on new subscriptions, not on live ones; replaced; cleared by an empty retained message", e.p)
}

// sessionScenario: a persistent session keeps the subscription and queues
// QoS 1 and 2 messages while the client is away [MQTT-3.1.2-5]; a clean
// start discards it [MQTT-3.1.2-6].
func sessionScenario(t *testing.T, e *scenarioEnv) {
	persistent := e.options("peer-session", false)
	persistent.Expiry = 300
	if present := e.p.connect(t, persistent); present {
		t.Fatalf("first connection of %s: session present, want none", persistent.ID)
	}
	e.p.subscribe(t, "session/+", 2)
	e.p.disconnect(t)

	ref := connectRef(t, e.b, "ref-session")
	queued := []message{
		{Topic: "session/qos1", Payload: "published while away, QoS 1", QoS: 1},
		{Topic: "session/qos2", Payload: "published while away, QoS 2", QoS: 2},
	}
	for _, m := range queued {
		ref.publish(t, m.Topic, m.Payload, m.QoS, false)
	}

	if present := e.p.connect(t, persistent); !present {
		t.Fatalf("reconnect of %s without clean start: CONNACK session present = false, want true", persistent.ID)
	}
	expect(t, e.p, queued...)
	// The subscription is the session's: no SUBSCRIBE since the reconnect.
	ref.publish(t, "session/qos1", "published after the resume", 1, false)
	expect(t, e.p, message{Topic: "session/qos1", Payload: "published after the resume", QoS: 1})
	e.p.disconnect(t)

	if present := e.p.connect(t, e.options("peer-session", true)); present {
		t.Fatalf("clean start of %s: session present, want the old one discarded", persistent.ID)
	}
	e.p.disconnect(t)
	t.Logf("%v: persistent session resumed (session present), 2 messages queued while away delivered, subscription kept; clean start discards it", e.p)
}

// willScenario: the will is discarded on DISCONNECT [MQTT-3.14.4-3] and
// published when the connection is lost [MQTT-3.1.2-8], retained if asked.
func willScenario(t *testing.T, e *scenarioEnv) {
	ref := connectRef(t, e.b, "ref-will")
	ref.subscribe(t, "will/#", 2)

	o := e.options("peer-will", true)
	o.Will = &will{Topic: "will/peer", Payload: "must not be sent: the peer said DISCONNECT", QoS: 1}
	e.p.connect(t, o)
	e.p.disconnect(t)

	o.Will = &will{Topic: "will/peer", Payload: "the peer is gone", QoS: 2, Retain: true}
	e.p.connect(t, o)
	e.p.drop(t)
	// Had the first will been sent, it would come first.
	expect(t, ref, message{Topic: "will/peer", Payload: "the peer is gone", QoS: 2})

	late := connectRef(t, e.b, "ref-will-late")
	late.subscribe(t, "will/peer", 2)
	expect(t, late, message{Topic: "will/peer", Payload: "the peer is gone", QoS: 2, Retain: true})
	t.Logf("%v: will discarded on DISCONNECT; published (QoS 2, retained) when the connection dropped without one", e.p)
}
