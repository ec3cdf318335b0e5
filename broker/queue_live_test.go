package broker

import (
	"bytes"
	"fmt"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// A subscriber two messages wide stops reading while a thousand messages
// come for it, so all but two wait packed in its queue; each is made again
// as it leaves, as a counted message that goes back to the pool once
// acknowledged (pool.go). While it catches up, a second flow takes
// messages from the same pools. Every message must arrive whole and in
// order: one recycled while still in flight would come out with another's
// bytes.
func TestQueuedMessagesComeBackWhole(t *testing.T) {
	srv := startServer(t, Options{MaxInflight: 2})
	const n = 1000
	payload := func(flow, i int) []byte {
		return fmt.Appendf(bytes.Repeat([]byte{byte('a' + i%26)}, 40), "/%d/%d", flow, i)
	}
	release := make(chan struct{})
	ins := []inbox{newInbox(), newInbox()}
	pubs := make([]mqtt.Client, 2)
	for f := range 2 {
		handler := ins[f].handler
		if f == 0 {
			// Paho reads nothing more while a handler runs, so the broker's
			// window for this subscriber fills and the rest is queued.
			handler = func(c mqtt.Client, m mqtt.Message) { <-release; ins[0].handler(c, m) }
		}
		sub := pahoConnect(t, pahoOptions(t, srv, fmt.Sprintf("qsub%d", f)))
		wait(t, sub.Subscribe(fmt.Sprintf("queued/%d/#", f), 1, handler), "subscribe")
		pubs[f] = pahoConnect(t, pahoOptions(t, srv, fmt.Sprintf("qpub%d", f)))
	}
	publish := func(f int) {
		for i := range n {
			wait(t, pubs[f].Publish(fmt.Sprintf("queued/%d/%d", f, i), 1, false, payload(f, i)), "publish")
		}
	}
	publish(0) // acknowledged once queued
	close(release)
	publish(1)
	for f := range 2 {
		for i := range n {
			m := ins[f].next(t)
			if want := fmt.Sprintf("queued/%d/%d", f, i); m.Topic() != want || !bytes.Equal(m.Payload(), payload(f, i)) {
				t.Fatalf("flow %d, message %d: %q %q, want %q %q", f, i, m.Topic(), m.Payload(), want, payload(f, i))
			}
		}
	}
}
