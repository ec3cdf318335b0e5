//go:build interop

package interop

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCrossClients has every client publish to every other, through one
// broker: each subscribes to cross/#, then each publishes one QoS 2
// message, and each must receive all of them, its own included, exactly
// once at QoS 2. Clients differ in transport and protocol version, so
// messages cross from TCP to WebSocket and from MQTT 5 to 3.1.1.
func TestCrossClients(t *testing.T) {
	b := startBroker(t)
	type spec struct {
		name  string
		tool  string
		err   error
		start func(t *testing.T, name string, expected int) *participant
	}
	_, pythonErr := findPython()
	_, nodeErr := findNode()
	_, chromiumErr := findChromium()
	_, mosquittoErr := findMosquitto()
	specs := []spec{
		{"Go paho TCP 3.1.1", "", nil, func(t *testing.T, name string, _ int) *participant {
			return refParticipant(t, name, "tcp://"+b.host+":"+b.port)
		}},
		{"Go paho WebSocket 3.1.1", "", nil, func(t *testing.T, name string, _ int) *participant {
			return refParticipant(t, name, b.wsURL)
		}},
		{"mosquitto TCP 3.1.1", "mosquitto-clients", mosquittoErr, func(t *testing.T, name string, n int) *participant {
			return mosquittoParticipant(t, name, &mosquitto{b: b, version: "mqttv311"}, n)
		}},
		{"mosquitto TCP 5", "mosquitto-clients", mosquittoErr, func(t *testing.T, name string, n int) *participant {
			return mosquittoParticipant(t, name, &mosquitto{b: b, version: "mqttv5"}, n)
		}},
		{"paho-mqtt TCP 3.1.1", "Python paho-mqtt", pythonErr, func(t *testing.T, name string, _ int) *participant {
			return peerParticipant(t, startPythonPeer(t, name), b.mqttURL, 4)
		}},
		{"paho-mqtt WebSocket 5", "Python paho-mqtt", pythonErr, func(t *testing.T, name string, _ int) *participant {
			return peerParticipant(t, startPythonPeer(t, name), b.wsURL, 5)
		}},
		{"MQTT.js TCP 5", "MQTT.js", nodeErr, func(t *testing.T, name string, _ int) *participant {
			return peerParticipant(t, startNodePeer(t, name), b.mqttURL, 5)
		}},
		{"MQTT.js WebSocket 3.1.1", "MQTT.js", nodeErr, func(t *testing.T, name string, _ int) *participant {
			return peerParticipant(t, startNodePeer(t, name), b.wsURL, 4)
		}},
		{"browser WebSocket 5", "Chromium with playwright-core", chromiumErr, func(t *testing.T, name string, _ int) *participant {
			return peerParticipant(t, startBrowserPeer(t, name), b.wsURL, 5)
		}},
	}

	var present []spec
	for _, s := range specs {
		if s.err != nil {
			if os.Getenv("PETREL_INTEROP_REQUIRE") == "1" {
				t.Fatalf("%s is required (PETREL_INTEROP_REQUIRE=1): %v", s.tool, s.err)
			}
			t.Logf("%s left out: %s not available: %v", s.name, s.tool, s.err)
			continue
		}
		present = append(present, s)
	}
	var all []*participant
	for _, s := range present {
		all = append(all, s.start(t, s.name, len(present)))
	}

	var want []message
	for i, p := range all {
		m := message{Topic: "cross/" + strconv.Itoa(i), Payload: "from " + p.name, QoS: 2}
		p.publish(t, m.Topic, m.Payload)
		want = append(want, m)
	}
	for _, p := range all {
		expect(t, p.recv, want...)
	}
	for _, p := range all {
		p.finish(t)
	}
	names := make([]string, len(all))
	for i, p := range all {
		names[i] = p.name
	}
	t.Logf("%d clients, each published one QoS 2 message and received all %d: %s",
		len(all), len(all), strings.Join(names, ", "))
}

// participant is one client of TestCrossClients, subscribed to cross/#.
type participant struct {
	name    string
	recv    receiver
	publish func(t *testing.T, topic, payload string)
	// finish checks it received nothing more and leaves.
	finish func(t *testing.T)
}

func refParticipant(t *testing.T, name, url string) *participant {
	ref := connectRefURL(t, url, strings.ReplaceAll(name, " ", "-"))
	ref.name = name
	ref.subscribe(t, "cross/#", 2)
	return &participant{
		name: name,
		recv: ref,
		publish: func(t *testing.T, topic, payload string) {
			ref.publish(t, topic, payload, 2, false)
		},
		finish: func(t *testing.T) { expectNoMore(t, ref) },
	}
}

// mosquittoParticipant subscribes with mosquitto_sub, which leaves after
// the expected count, and publishes with mosquitto_pub.
func mosquittoParticipant(t *testing.T, name string, m *mosquitto, expected int) *participant {
	s := m.sub(t, "-i", strings.ReplaceAll(name, " ", "-"), "-q", "2", "-t", "cross/#", "-C", strconv.Itoa(expected))
	s.name = name
	s.waitSubscribed(t)
	return &participant{
		name: name,
		recv: s,
		publish: func(t *testing.T, topic, payload string) {
			m.pub(t, "-q", "2", "-t", topic, "-m", payload)
		},
		finish: func(t *testing.T) { s.wait(t) },
	}
}

func peerParticipant(t *testing.T, p *peer, url string, version int) *participant {
	p.connect(t, connectOptions{URL: url, ID: strings.ReplaceAll(p.name, " ", "-"), Version: version, Clean: true})
	if got := p.subscribe(t, "cross/#", 2); got != 2 {
		t.Fatalf("%v subscribed at QoS 2, was granted %d", p, got)
	}
	return &participant{
		name: p.name,
		recv: p,
		publish: func(t *testing.T, topic, payload string) {
			p.publish(t, topic, payload, 2, false)
		},
		finish: func(t *testing.T) { p.disconnect(t) },
	}
}
