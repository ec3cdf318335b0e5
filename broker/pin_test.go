package broker

import (
	"fmt"
	"testing"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A message queued to several persistent sessions is pinned by each of
// them; it must stay intact until every one has sent it. Pinning added
// its mark once per session to a 32-bit count, and four marks wrapped the
// count back to the holders': the message went back to its pool while
// queued, and the subscribers got PUBLISHes with an empty topic.
// [MQTT-4.7.3-1] v3.1.1
func TestMessageQueuedToManyPersistentSessionsIntact(t *testing.T) {
	srv := startServer(t, Options{})
	addr := srv.Addrs()[0].String()
	const subs, n = 4, 200
	var clients []*wiretest.Client
	for i := range subs {
		w, _ := wiretest.MustConnect(t, addr, fmt.Sprint("keeper-", i), false)
		w.Subscribe("pin/+", 1)
		clients = append(clients, w)
	}
	pub, _ := wiretest.MustConnect(t, addr, "pinpub", true)
	for i := range n {
		pub.Publish(fmt.Sprint("pin/", i%4), fmt.Sprint(i), 1, uint16(i+1), false)
	}
	for k, w := range clients {
		for i := range n {
			p := w.NextPublish()
			if want := fmt.Sprint("pin/", i%4); p.Topic != want || string(p.Payload) != fmt.Sprint(i) {
				t.Fatalf("subscriber %d, message %d: topic %q payload %q, want %q %q", k, i, p.Topic, p.Payload, want, fmt.Sprint(i))
			}
			w.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
	}
}
