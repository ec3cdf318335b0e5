package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// stalledSub is a subscriber that reads everything the broker sends and
// acknowledges nothing. A goroutine reads; the test takes the packets
// from arrived, which is closed, after end and endAt are set, once the
// connection ends.
type stalledSub struct {
	w       *wiretest.Client
	arrived chan packet.Packet
	end     error // why reading stopped; read it after arrived is closed
	endAt   time.Time
}

// subscribeStalled connects a stalled subscriber to filter at QoS 1. An
// MQTT 5 one asks for receiveMax messages in flight (0: the server's
// window) and a session that outlives the connection.
func subscribeStalled(t *testing.T, srv *Server, version byte, id, filter string, receiveMax uint16) *stalledSub {
	t.Helper()
	cp := &packet.Connect{Version: version, CleanStart: true, ClientID: id, KeepAlive: 60}
	if version == packet.V5 {
		cp.Props.SessionExpiry = 60
		cp.Props.Mark(packet.PropSessionExpiry)
		if receiveMax > 0 {
			cp.Props.ReceiveMaximum = receiveMax
			cp.Props.Mark(packet.PropReceiveMaximum)
		}
	}
	w, ack := wiretest.Connect(t, srv.Addrs()[0].String(), cp)
	if ack.Code != packet.Success {
		t.Fatalf("%s: CONNACK 0x%02x", id, byte(ack.Code))
	}
	w.Subscribe(filter, 1)
	s := &stalledSub{w: w, arrived: make(chan packet.Packet, 1000)}
	go func() {
		defer close(s.arrived)
		for {
			p, err := w.TryNext()
			if err != nil {
				s.end, s.endAt = err, time.Now()
				return
			}
			s.arrived <- p
		}
	}()
	return s
}

// next returns the next packet, or nil once the connection has ended.
func (s *stalledSub) next(t *testing.T) packet.Packet {
	t.Helper()
	select {
	case p := <-s.arrived:
		return p
	case <-time.After(2 * wiretest.Timeout):
		t.Fatalf("stalled subscriber: nothing within %v", 2*wiretest.Timeout)
		return nil
	}
}

// expectPublishes requires n PUBLISHes: its window.
func (s *stalledSub) expectPublishes(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if p, ok := s.next(t).(*packet.Publish); !ok {
			t.Fatalf("stalled subscriber: packet %d is %v, want PUBLISH %d of its window of %d", i+1, p, i+1, n)
		}
	}
}

// A subscriber that takes its in-flight window of messages and never
// acknowledges one holds back the four clients publishing to it until
// StallTimeout; then the broker disconnects it (MQTT 5: DISCONNECT 0x97
// Quota exceeded, without a Session Expiry Interval, and nothing after
// it), its session goes offline and keeps every message for it, the
// publishers go on, and nobody else is disconnected: a subscriber that
// keeps up receives every message.
//
// The subscriber that keeps up must not have a full window of its own, or
// a busy machine keeping it (or the broker) from its acknowledgements for
// the short stall timeout would have it disconnected too, by the same
// rule. With an MQTT 5 stalled client, whose Receive Maximum is small, the
// broker's window is larger than all the messages; an MQTT 3.1.1 stalled
// client has the broker's window, so there the other subscribes at QoS 0,
// which takes no window.
// [MQTT-3.14.2-1] [MQTT-3.14.2-2] [MQTT-3.14.4-1] [MQTT-3.3.4-9] [MQTT-4.9.0-2] v5
func TestStalledSubscriberIsDisconnected(t *testing.T) {
	const pubs, each, stall = 4, 2000, 200 * time.Millisecond
	for _, tc := range []struct {
		name        string
		version     byte
		maxInflight int
		window      int  // the stalled client's: its Receive Maximum (MQTT 5), else maxInflight
		keepUpQoS   byte // the subscriber that keeps up
	}{{"mqtt5", packet.V5, 10 * pubs * each, 5, 1}, {"mqtt311", packet.V311, 100, 100, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			// A short backlog, so that the publishers are held back well
			// within the stall timeout even on a busy machine.
			srv := startServer(t, Options{MaxInflight: tc.maxInflight, BacklogMessages: 10, StallTimeout: stall, Logger: warnLogger(t)})

			lost := make(chan string, pubs+1)
			onLost := func(id string) mqtt.ConnectionLostHandler {
				return func(_ mqtt.Client, err error) { lost <- fmt.Sprintf("%s: %v", id, err) }
			}
			var mu sync.Mutex
			seen := make(map[uint32]bool, pubs*each)
			all := make(chan struct{})
			o := pahoOptions(t, srv, "keeps-up").SetConnectionLostHandler(onLost("keeps-up"))
			o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
				mu.Lock()
				defer mu.Unlock()
				if k := binary.BigEndian.Uint32(m.Payload()); !seen[k] {
					if seen[k] = true; len(seen) == pubs*each {
						close(all)
					}
				}
			})
			good := pahoConnect(t, o)
			wait(t, good.Subscribe("stall/#", tc.keepUpQoS, nil), "subscribe")

			before := time.Now()
			stalled := subscribeStalled(t, srv, tc.version, "stalled", "stall/#", uint16(tc.window))
			var cs []mqtt.Client
			for p := range pubs {
				id := fmt.Sprint("pub-", p)
				cs = append(cs, pahoConnect(t, pahoOptions(t, srv, id).SetConnectionLostHandler(onLost(id))))
			}
			// Every publish is acknowledged in bounded time (publishAll fails
			// the test otherwise), held back or not.
			publishAll(t, cs, each, func(p, i int) (string, byte, []byte) {
				return fmt.Sprint("stall/", p), 1, binary.BigEndian.AppendUint32(nil, uint32(p*each+i))
			})

			stalled.expectPublishes(t, tc.window) // [MQTT-3.3.4-9] [MQTT-4.9.0-2]
			p := stalled.next(t)
			if tc.version == packet.V5 {
				d, ok := p.(*packet.Disconnect)
				if !ok {
					t.Fatalf("stalled subscriber: got %v after its window, want DISCONNECT", p)
				}
				if d.Code != packet.QuotaExceeded || d.Props.Has(packet.PropSessionExpiry) {
					t.Errorf("stalled subscriber: DISCONNECT 0x%02x %+v, want 0x97 without a session expiry", byte(d.Code), d.Props)
				}
				p = stalled.next(t)
			}
			if p != nil {
				t.Fatalf("stalled subscriber: got %v, want the connection closed", p)
			}
			if errors.Is(stalled.end, os.ErrDeadlineExceeded) {
				t.Fatalf("stalled subscriber: still connected after %v", wiretest.Timeout)
			}
			if d := stalled.endAt.Sub(before); d < stall {
				t.Errorf("stalled subscriber disconnected %v after subscribing, before the stall timeout %v", d, stall)
			}
			select {
			case <-all:
			case <-time.After(2 * wiretest.Timeout):
				mu.Lock()
				t.Fatalf("the subscriber that keeps up got %d of %d messages", len(seen), pubs*each)
			}
			select {
			case who := <-lost:
				t.Errorf("a client that kept up was disconnected: %s", who)
			default:
			}
			if n := srv.stats.stalled.Load(); n != 1 {
				t.Errorf("%d clients counted as stalled, want 1", n)
			}
			if srv.stats.heldBack.Load() == 0 {
				t.Errorf("no publisher was held back: the test did not show the stall holding publishers back")
			}
			srv.mu.Lock()
			ss := srv.sessions.get("stalled")
			srv.mu.Unlock()
			if tc.version == packet.V311 {
				if ss != nil {
					t.Errorf("the stalled clean session outlived its connection")
				}
				return
			}
			if ss == nil {
				t.Fatal("the stalled subscriber's session ended; it has an expiry and should be offline")
			}
			ss.mu.Lock()
			online, held := ss.conn != nil, ss.inflight.len()+ss.queuedLocked()
			ss.mu.Unlock()
			if online || held != pubs*each {
				t.Errorf("stalled session: online %v holding %d messages, want offline holding all %d", online, held, pubs*each)
			}
		})
	}
}

// With the stall timeout off, a subscriber that never acknowledges stays
// connected however long its window is full.
func TestStallTimeoutOff(t *testing.T) {
	const window = 5
	srv := startServer(t, Options{MaxInflight: window, StallTimeout: -1, ConnectTimeout: 2 * time.Second})
	stalled := subscribeStalled(t, srv, packet.V5, "stalled", "stall", 0)
	pub, _ := wiretest.MustConnect(t, srv.Addrs()[0].String(), "pub", true)
	for i := range 2 * window {
		pid := uint16(i + 1)
		pub.Publish("stall", "m", 1, pid, false)
		pub.ExpectAck(packet.PUBACK, pid)
	}
	stalled.expectPublishes(t, window)

	// The sweep that would disconnect a stalled client also closes a
	// connection that sends no CONNECT within ConnectTimeout: once one
	// opened now is closed, a sweep has run two seconds after the window
	// filled, ten times TestStalledSubscriberIsDisconnected's stall timeout.
	// (Two seconds, not less: every client here must send CONNECT within
	// it, on a machine that may be busy.)
	silent, err := net.DialTimeout("tcp", srv.Addrs()[0].String(), wiretest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(wiretest.Timeout))
	if _, err := silent.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
		t.Fatalf("a connection without CONNECT: read %v, want it closed by the sweep", err)
	}

	stalled.w.Send(&packet.Pingreq{})
	if p := stalled.next(t); p == nil || p.Type() != packet.PINGRESP {
		t.Fatalf("stalled subscriber: got %v (connection end: %v), want PINGRESP: still connected", p, stalled.end)
	}
	if n := srv.stats.stalled.Load(); n != 0 {
		t.Errorf("%d clients counted as stalled with the stall timeout off", n)
	}
}
