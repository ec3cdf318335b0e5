package broker

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// These tests drive the broker with Eclipse Paho's Go client for MQTT 3.1.1,
// an implementation we did not write, over real TCP.

// pahoOptions returns client options for the test broker. The connection is
// made through dial so a test can cut it like a network failure would.
func pahoOptions(t *testing.T, srv *Server, clientID string) *mqtt.ClientOptions {
	t.Helper()
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + srv.Addrs()[0].String()).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(wiretest.Timeout).
		SetWriteTimeout(wiretest.Timeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	return o
}

func pahoConnect(t *testing.T, o *mqtt.ClientOptions) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(o)
	wait(t, c.Connect(), "connect")
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(0)
		}
	})
	return c
}

func wait(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(wiretest.Timeout) {
		t.Fatalf("%s: no answer within %v", what, wiretest.Timeout)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// inbox collects received messages on a channel.
type inbox chan mqtt.Message

func newInbox() inbox { return make(inbox, 10000) }

func (in inbox) handler(_ mqtt.Client, m mqtt.Message) { in <- m }

func (in inbox) next(t *testing.T) mqtt.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no message within %v", wiretest.Timeout)
		return nil
	}
}

// [MQTT-4.3.1-1] v3.1.1
// [MQTT-4.3.2-1] v3.1.1
// [MQTT-4.3.3-1] v3.1.1
// [MQTT-4.6.0-5] v3.1.1
// [MQTT-4.6.0-6] v3.1.1
// [MQTT-7.1.1-1] v3.1.1
func TestPahoQoSRoundTrip(t *testing.T) {
	srv := startServer(t, Options{})
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			in := newInbox()
			sub := pahoConnect(t, pahoOptions(t, srv, fmt.Sprintf("sub%d", qos)))
			filter := fmt.Sprintf("rt/%d/#", qos)
			wait(t, sub.Subscribe(filter, qos, in.handler), "subscribe")
			pub := pahoConnect(t, pahoOptions(t, srv, fmt.Sprintf("pub%d", qos)))
			const n = 200
			for i := range n {
				wait(t, pub.Publish(fmt.Sprintf("rt/%d/x", qos), qos, false, fmt.Sprint(i)), "publish")
			}
			for i := range n {
				m := in.next(t)
				if got, want := string(m.Payload()), fmt.Sprint(i); got != want {
					t.Fatalf("message %d: payload %q, want %q (order must be kept)", i, got, want)
				}
				if m.Qos() != qos || m.Retained() || m.Duplicate() {
					t.Fatalf("message %d: qos %d retained %v dup %v; want qos %d, not retained, not dup",
						i, m.Qos(), m.Retained(), m.Duplicate(), qos)
				}
			}
		})
	}
}

// [MQTT-3.3.1-6] v3.1.1
// [MQTT-3.3.1-8] v3.1.1
// [MQTT-3.3.1-10] v3.1.1
func TestPahoRetained(t *testing.T) {
	srv := startServer(t, Options{})
	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	wait(t, pub.Publish("ret/a", 1, true, "A"), "publish")
	wait(t, pub.Publish("ret/b", 1, true, "B"), "publish")
	wait(t, pub.Publish("ret/b", 1, true, "B2"), "publish")
	wait(t, pub.Publish("ret/c", 1, true, "C"), "publish")
	wait(t, pub.Publish("ret/c", 1, true, ""), "publish") // deletes

	in := newInbox()
	sub := pahoConnect(t, pahoOptions(t, srv, "sub"))
	wait(t, sub.Subscribe("ret/+", 1, in.handler), "subscribe")
	got := map[string]string{}
	for range 2 {
		m := in.next(t)
		if !m.Retained() {
			t.Errorf("%s: retained flag not set on a message sent at subscribe", m.Topic())
		}
		got[m.Topic()] = string(m.Payload())
	}
	if got["ret/a"] != "A" || got["ret/b"] != "B2" || len(got) != 2 {
		t.Fatalf("retained messages at subscribe: %v; want ret/a=A, ret/b=B2 and no ret/c", got)
	}
	wait(t, pub.Publish("ret/a", 1, true, "live"), "publish")
	if m := in.next(t); m.Retained() || string(m.Payload()) != "live" {
		t.Fatalf("live message: payload %q retained %v; want \"live\" with retain 0", m.Payload(), m.Retained())
	}
}

// cutConn lets a test sever a Paho client's TCP connection as a network
// failure would, so the broker sees no DISCONNECT.
type cutConn struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (cc *cutConn) open(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	c, err := net.Dial("tcp", uri.Host)
	if err == nil {
		cc.mu.Lock()
		cc.conns = append(cc.conns, c)
		cc.mu.Unlock()
	}
	return c, err
}

func (cc *cutConn) cut() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, c := range cc.conns {
		c.Close()
	}
}

// [MQTT-3.1.2-8] v3.1.1
// [MQTT-3.1.2-10] v3.1.1
func TestPahoWill(t *testing.T) {
	srv := startServer(t, Options{})
	in := newInbox()
	watcher := pahoConnect(t, pahoOptions(t, srv, "watcher"))
	wait(t, watcher.Subscribe("status/#", 1, in.handler), "subscribe")

	// A clean disconnect discards the will.
	polite := pahoConnect(t, pahoOptions(t, srv, "polite").SetWill("status/polite", "gone", 1, false))
	polite.Disconnect(250)

	// A dropped connection publishes it.
	cc := &cutConn{}
	lost := pahoConnect(t, pahoOptions(t, srv, "lost").
		SetWill("status/lost", "gone", 1, true).
		SetCustomOpenConnectionFn(cc.open))
	_ = lost
	cc.cut()

	m := in.next(t)
	if m.Topic() != "status/lost" || string(m.Payload()) != "gone" || m.Qos() != 1 {
		t.Fatalf("got %s %q qos %d; want the will status/lost \"gone\" at QoS 1 (and nothing from the polite client first)",
			m.Topic(), m.Payload(), m.Qos())
	}
	// Nothing from the polite client follows either.
	wait(t, watcher.Publish("status/end", 1, false, "end"), "publish")
	if m := in.next(t); m.Topic() != "status/end" {
		t.Fatalf("got %s; want status/end (the polite client's will must not be published)", m.Topic())
	}
	// Will retain: a later subscriber gets it as a retained message.
	in2 := newInbox()
	late := pahoConnect(t, pahoOptions(t, srv, "late"))
	wait(t, late.Subscribe("status/+", 1, in2.handler), "subscribe")
	if m := in2.next(t); m.Topic() != "status/lost" || !m.Retained() {
		t.Fatalf("late subscriber got %s retained=%v; want status/lost retained", m.Topic(), m.Retained())
	}
}

// [MQTT-3.1.2-4] v3.1.1
// [MQTT-3.1.2-5] v3.1.1
// [MQTT-4.4.0-1] v3.1.1
func TestPahoPersistentSession(t *testing.T) {
	srv := startServer(t, Options{})
	in := newInbox()
	subOpts := func(in inbox) *mqtt.ClientOptions {
		return pahoOptions(t, srv, "durable").SetCleanSession(false).SetDefaultPublishHandler(in.handler)
	}
	// The first connection has an inbox of its own: what it receives while
	// disconnecting must not count as delivered to the second.
	sub := pahoConnect(t, subOpts(newInbox()))
	wait(t, sub.Subscribe("jobs/#", 2, nil), "subscribe")
	sub.Disconnect(250)

	pub := pahoConnect(t, pahoOptions(t, srv, "producer"))
	const n = 100
	for i := range n {
		wait(t, pub.Publish("jobs/x", byte(1+i%2), false, fmt.Sprint(i)), "publish")
	}
	wait(t, pub.Publish("jobs/x", 0, false, "qos0 is not queued"), "publish")
	// The broker handles one connection's packets in order: once this is
	// acknowledged, the QoS 0 message before it has been routed.
	wait(t, pub.Publish("jobs/x", 1, false, "barrier"), "publish")

	sub = mqtt.NewClient(subOpts(in))
	tok := sub.Connect()
	wait(t, tok, "reconnect")
	if !tok.(*mqtt.ConnectToken).SessionPresent() {
		t.Fatal("session present = 0 on resuming a persistent session")
	}
	t.Cleanup(func() { sub.Disconnect(0) })
	for i := range n {
		m := in.next(t)
		if string(m.Payload()) != fmt.Sprint(i) {
			t.Fatalf("queued message %d: got %q", i, m.Payload())
		}
	}
	if m := in.next(t); string(m.Payload()) != "barrier" {
		t.Fatalf("after the queued messages: got %q, want \"barrier\" (QoS 0 must not be queued)", m.Payload())
	}
	// Nothing else: a fresh message arrives next.
	wait(t, pub.Publish("jobs/x", 1, false, "fresh"), "publish")
	if m := in.next(t); string(m.Payload()) != "fresh" {
		t.Fatalf("after the queue: got %q, want \"fresh\"", m.Payload())
	}
}

// [MQTT-4.4.0-1] v3.1.1
func TestPahoRedeliveryAfterCut(t *testing.T) {
	srv := startServer(t, Options{})
	// The subscriber receives but does not acknowledge, then loses the network.
	cc := &cutConn{}
	got := make(chan mqtt.Message, 10)
	sub := pahoConnect(t, pahoOptions(t, srv, "slow").
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetCustomOpenConnectionFn(cc.open))
	wait(t, sub.Subscribe("r", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }), "subscribe")
	pub := pahoConnect(t, pahoOptions(t, srv, "pub"))
	wait(t, pub.Publish("r", 1, false, "hello"), "publish")
	select {
	case m := <-got:
		if m.Duplicate() {
			t.Fatal("first delivery has DUP=1")
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("no first delivery")
	}
	cc.cut()

	in := newInbox()
	again := pahoConnect(t, pahoOptions(t, srv, "slow").SetCleanSession(false).SetDefaultPublishHandler(in.handler))
	_ = again
	m := in.next(t)
	if string(m.Payload()) != "hello" || !m.Duplicate() {
		t.Fatalf("redelivery: payload %q dup %v; want \"hello\" with DUP=1", m.Payload(), m.Duplicate())
	}
}

// [MQTT-3.1.4-2] v3.1.1
func TestPahoTakeover(t *testing.T) {
	srv := startServer(t, Options{})
	lost := make(chan error, 1)
	first := pahoConnect(t, pahoOptions(t, srv, "same").SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err }))
	_ = first
	second := pahoConnect(t, pahoOptions(t, srv, "same"))
	select {
	case <-lost:
	case <-time.After(wiretest.Timeout):
		t.Fatal("the first connection was not closed on takeover")
	}
	in := newInbox()
	wait(t, second.Subscribe("t", 0, in.handler), "subscribe on the new connection")
	wait(t, second.Publish("t", 0, false, "ok"), "publish")
	if m := in.next(t); string(m.Payload()) != "ok" {
		t.Fatalf("got %q", m.Payload())
	}
}
