package broker

import (
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// The expiry sweep visits only the sessions that queue a delivery with an
// expiry: a session is listed once one is queued, and leaves the list when
// its expired deliveries are purged or when it ends. A session left on it
// would be held in memory after it ended; one missing from it would keep
// its expired messages until it reconnects.
func TestExpiringSessionsAreListed(t *testing.T) {
	r := newRestartable(t)
	for _, id := range []string{"plain", "long", "short"} {
		sub, _ := wireConnect(t, r.addr(), id, false)
		sub.Subscribe(id+"/#", 1)
		sub.Disconnect()
	}
	pub, ack := wiretest.Connect(t, r.addr(), &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "pub", KeepAlive: 60})
	if ack.Code != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	publish := func(id uint16, topic string, expiry uint32) {
		t.Helper()
		p := &packet.Publish{Topic: topic, Payload: []byte("x"), QoS: 1, PacketID: id}
		if expiry > 0 {
			p.Props.MessageExpiry = expiry
			p.Props.Mark(packet.PropMessageExpiry)
		}
		pub.Send(p)
		pub.ExpectAck(packet.PUBACK, id)
	}
	publish(1, "plain/a", 0)
	publish(2, "long/a", 3600)
	publish(3, "short/a", 1)

	get := func(id string) *session {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return r.srv.sessions.get(id)
	}
	listed := func(ss *session) bool {
		// Under the session's lock: it joins and leaves with it held.
		ss.mu.Lock()
		defer ss.mu.Unlock()
		r.srv.expiring.mu.Lock()
		defer r.srv.expiring.mu.Unlock()
		_, ok := r.srv.expiring.m[ss]
		return ok
	}
	plain, long, short := get("plain"), get("long"), get("short")
	if listed(plain) || !listed(long) || !listed(short) {
		t.Fatalf("listed: plain %v, long %v, short %v; want false, true, true", listed(plain), listed(long), listed(short))
	}

	// A sweep after the short one's expiry purges it, and it leaves; the
	// long one's has not expired.
	r.srv.sweepExpired(time.Now().Add(2 * time.Second))
	if listed(short) || !listed(long) {
		t.Fatalf("after the sweep: short listed %v, long listed %v; want false, true", listed(short), listed(long))
	}
	short.mu.Lock()
	queued := short.x().queue.len() + short.storeQueuedLocked()
	short.mu.Unlock()
	if queued != 0 {
		t.Fatalf("short still queues %d deliveries after the sweep", queued)
	}

	// A clean start ends the long one's session: it leaves the list.
	c, _ := wireConnect(t, r.addr(), "long", true)
	c.Disconnect()
	if listed(long) {
		t.Fatal("an ended session is still listed")
	}
	r.srv.expiring.mu.Lock()
	n := len(r.srv.expiring.m)
	r.srv.expiring.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sessions listed at the end, want 0", n)
	}
}
