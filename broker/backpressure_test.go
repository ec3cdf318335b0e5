package broker

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// Many publishers flood one subscriber faster than it takes messages:
// every message a publisher had acknowledged reaches the subscriber, at
// QoS 2 exactly once, at QoS 1 at least once. The queue limit is small, so
// without backpressure most of them would be dropped. [MQTT-4.3.2-2]
// [MQTT-4.3.3-2] [MQTT-4.6.0-6]
func TestFanInOverloadLosesNothing(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			const pubs, each = 32, 300
			srv := startServer(t, Options{MaxQueuedMessages: 200, MaxInflight: 20, Logger: warnLogger(t)})

			// The subscriber records each (publisher, sequence) it gets.
			var mu sync.Mutex
			seen := make(map[uint32]int, pubs*each)
			distinct := 0
			all := make(chan struct{})
			so := pahoOptions(t, srv, "sink").SetCleanSession(true)
			so.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
				key := binary.BigEndian.Uint32(m.Payload())
				mu.Lock()
				defer mu.Unlock()
				if seen[key]++; seen[key] == 1 {
					if distinct++; distinct == pubs*each {
						close(all)
					}
				}
			})
			sink := pahoConnect(t, so)
			wait(t, sink.Subscribe("fanin", qos, nil), "subscribe")

			// The publishers send everything without waiting, then collect
			// their acknowledgements.
			var cs []mqtt.Client
			for p := range pubs {
				cs = append(cs, pahoConnect(t, pahoOptions(t, srv, fmt.Sprint("pub-", p))))
			}
			publishAll(t, cs, each, func(p, i int) (string, byte, []byte) {
				payload := binary.BigEndian.AppendUint32(nil, uint32(p*each+i))
				return "fanin", qos, append(payload, make([]byte, 60)...)
			})
			select {
			case <-all:
			// Twice the usual bound: this waits for the whole flood, 9,600
			// messages squeezed through a 200-message queue, not for one
			// exchange, and under -race on a busy machine that takes longer.
			case <-time.After(2 * wiretest.Timeout):
				mu.Lock()
				t.Fatalf("the subscriber got %d of %d acknowledged messages (dropped: queue full %d, memory %d; held back %d)",
					distinct, pubs*each, srv.stats.droppedQueueFull.Load(), srv.stats.droppedMemory.Load(), srv.stats.heldBack.Load())
			}
			mu.Lock()
			defer mu.Unlock()
			dups := 0
			for _, n := range seen {
				dups += n - 1
			}
			if qos == 2 && dups > 0 {
				t.Errorf("QoS 2: %d duplicate deliveries", dups)
			}
			if srv.stats.heldBack.Load() == 0 {
				t.Errorf("no publisher was ever held back: the test did not overload the subscriber")
			}
			t.Logf("%d messages, %d duplicates, publishers held back %d times", distinct, dups, srv.stats.heldBack.Load())
		})
	}
}

// Clients that publish to each other flat out, each subscribed to what all
// of them publish, cannot hold each other back in a cycle: a connection
// with deliveries in flight to it is never held back. Every publish is
// acknowledged in bounded time, and every message is delivered or, past
// the queue limit, counted as dropped.
func TestHoldingBackFormsNoCycle(t *testing.T) {
	const clients, each = 4, 500
	srv := startServer(t, Options{MaxQueuedMessages: 100, MaxInflight: 10, Logger: warnLogger(t)})
	var mu sync.Mutex
	got := 0
	var cs []mqtt.Client
	for i := range clients {
		o := pahoOptions(t, srv, fmt.Sprint("ring-", i))
		o.SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {
			mu.Lock()
			got++
			mu.Unlock()
		})
		c := pahoConnect(t, o)
		wait(t, c.Subscribe("ring/#", 1, nil), "subscribe")
		cs = append(cs, c)
	}
	publishAll(t, cs, each, func(p, _ int) (string, byte, []byte) {
		return fmt.Sprint("ring/", p), 1, make([]byte, 64)
	})
	// None of them can be held back (each has deliveries in flight), so
	// past the queue limit messages are dropped, and counted.
	want := int64(clients * clients * each)
	wiretest.Eventually(t, "every message delivered or counted as dropped", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return int64(got)+srv.stats.droppedQueueFull.Load() >= want
	})
	t.Logf("%d delivered, %d dropped past the queue limit, held back %d times",
		got, srv.stats.droppedQueueFull.Load(), srv.stats.heldBack.Load())
}

// publishAll has each client publish each messages (msg gives the topic,
// QoS and payload of client p's i-th) without waiting, then waits until
// every one is acknowledged, failing the test if one is not.
func publishAll(t *testing.T, cs []mqtt.Client, each int, msg func(p, i int) (string, byte, []byte)) {
	t.Helper()
	var wg sync.WaitGroup
	failed := make(chan error, len(cs))
	for p, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]mqtt.Token, 0, each)
			for i := range each {
				topic, qos, payload := msg(p, i)
				toks = append(toks, c.Publish(topic, qos, false, payload))
			}
			// Twice the usual bound: a publisher's last message waits behind
			// the whole flood, held back until the subscriber catches up.
			for _, tok := range toks {
				if !tok.WaitTimeout(2*wiretest.Timeout) || tok.Error() != nil {
					failed <- fmt.Errorf("client %d: a publish was not acknowledged: %v", p, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Fatal(err)
	}
}
