//go:build interop

package interop

import (
	"errors"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// refClient is the reference side of a test: Eclipse Paho's Go client, MQTT
// 3.1.1, clean session, over TCP unless connectRefURL says otherwise.
type refClient struct {
	name string
	c    mqtt.Client
	in   chan message
}

func connectRef(t *testing.T, b *testBroker, id string) *refClient {
	t.Helper()
	return connectRefURL(t, "tcp://"+b.host+":"+b.port, id)
}

// connectRefURL connects to url: tcp://host:port or ws://host:port/path.
func connectRefURL(t *testing.T, url, id string) *refClient {
	t.Helper()
	r := &refClient{name: "Go paho " + id, in: make(chan message, 1000)}
	o := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(timeout).
		SetWriteTimeout(timeout).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			r.in <- message{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retain: m.Retained()}
		})
	r.c = mqtt.NewClient(o)
	r.wait(t, r.c.Connect(), "connect to "+url)
	t.Cleanup(func() {
		if r.c.IsConnected() {
			r.c.Disconnect(100)
		}
	})
	return r
}

func (r *refClient) String() string { return r.name }

func (r *refClient) wait(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(timeout) {
		t.Fatalf("%s: %s: no answer within %v", r.name, what, timeout)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %s: %v", r.name, what, err)
	}
}

func (r *refClient) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	tok := r.c.Subscribe(filter, qos, nil)
	r.wait(t, tok, "subscribe "+filter)
	if got := tok.(*mqtt.SubscribeToken).Result()[filter]; got != qos {
		t.Fatalf("%s: subscribe %s at QoS %d: granted %d", r.name, filter, qos, got)
	}
}

// publish returns once the QoS flow is complete (PUBACK, PUBCOMP).
func (r *refClient) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	r.wait(t, r.c.Publish(topic, qos, retain, payload), "publish to "+topic)
}

func (r *refClient) receive(wait time.Duration) (message, error) {
	return receiveFrom(r.in, wait, func() error { return errors.New("closed") })
}
