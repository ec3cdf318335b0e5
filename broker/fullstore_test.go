package broker

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
)

// These tests refuse the broker's commits as a full disk does, without a
// disk: refusingStore says store.ErrFull while full is set. (The real thing,
// Pebble on a small tmpfs, is in fulldisk_test.go; there pebble's own
// compactions free and take space at moments a test cannot choose.)

// refusingStore is a store whose commits fail with store.ErrFull while
// full is set; reads go on working.
type refusingStore struct {
	store.Store
	full    atomic.Bool
	refused atomic.Int64
}

func (s *refusingStore) Commit(b *store.Batch, sync bool) error {
	if s.full.Load() {
		s.refused.Add(1)
		return fmt.Errorf("%w: refusingStore", store.ErrFull)
	}
	return s.Store.Commit(b, sync)
}

// restartOn starts a broker on st, closed when the test ends.
func restartOn(t *testing.T, st store.Store) (*Server, string) {
	t.Helper()
	srv := startServer(t, Options{Store: st, Logger: warnLogger(t)})
	return srv, srv.Addrs()[0].String()
}

// hangUp disconnects c and closes the socket, so that the broker, which
// drains a connection it closes until the client closes too, can shut
// down at once.
func hangUp(c *wiretest.Client) {
	c.Disconnect()
	c.Conn.Close()
}

// commitBarrier subscribes c (an MQTT 5 client with a durable session)
// once more: the session is on disk before its SUBACK, and groups commit in
// order, so the SUBACK comes after every write the broker made before the
// SUBSCRIBE arrived was committed, or refused. It returns the SUBACK code.
func commitBarrier(t *testing.T, c *wiretest.Client, filter string) packet.ReasonCode {
	t.Helper()
	c.Send(&packet.Subscribe{PacketID: 9, Subs: []packet.Subscription{{Filter: filter, QoS: 1, RetainHandling: 2}}})
	p := c.Next()
	a, ok := p.(*packet.Suback)
	if !ok || a.PacketID != 9 || len(a.Codes) != 1 {
		t.Fatalf("want SUBACK 9, got %s %+v", p.Type(), p)
	}
	return a.Codes[0]
}

// TestRefusedCommitKeepsAcknowledgedRemovals: a durable subscriber that takes
// its queue while the store refuses writes (a full disk) receives
// everything, and once writes are accepted again the store no longer holds
// what it acknowledged. Acknowledgements are the way out of a full disk
// that the broker controls, so their removals must not be lost with a
// refused commit.
// [MQTT-4.3.2-3] v3.1.1
func TestRefusedCommitKeepsAcknowledgedRemovals(t *testing.T) {
	st := &refusingStore{Store: memory.New()}
	_, addr := restartOn(t, st)
	sub, _ := wiretest.MustConnect(t, addr, "rm-sub", false)
	sub.Subscribe("rm/#", 1)
	hangUp(sub)
	pub, _ := wiretest.MustConnect(t, addr, "rm-pub", true)
	const n = 50
	for i := range n {
		pub.Publish("rm/data", fmt.Sprint(i), 1, uint16(i+1), false)
		pub.ExpectAck(packet.PUBACK, uint16(i+1))
	}
	watcher := connectV5(t, addr, "rm-watcher", false, 3600)

	st.full.Store(true)
	if got := drainText(t, addr, "rm-sub"); len(got) != n {
		t.Fatalf("the subscriber received %d of %d messages while the store was full", len(got), n)
	}
	if code := commitBarrier(t, watcher, "rm/watch"); code != packet.QuotaExceeded {
		t.Fatalf("SUBSCRIBE while the store is full: SUBACK 0x%02x; want 0x97", byte(code))
	}
	st.full.Store(false)
	if code := commitBarrier(t, watcher, "rm/watch"); code != 1 {
		t.Fatalf("SUBSCRIBE once the store takes writes: SUBACK 0x%02x; want 1", byte(code))
	}
	if bodies, entries := storeContents(t, st); bodies != 0 || entries != 0 {
		t.Errorf("the subscriber acknowledged all %d messages while the disk was full (%d commits refused), yet "+
			"once writes are accepted again the store holds %d message bodies and %d queue entries; want 0 and 0",
			n, st.refused.Load(), bodies, entries)
	}
}

// TestRefusedCommitDoesNotUndoCleanStart: a client that discards its durable
// session with a clean start while the store refuses writes has discarded
// it for good: after a restart its old session, subscription and queue do
// not come back.
// [MQTT-3.1.2-6] v3.1.1
// [MQTT-3.2.2-1] v3.1.1
func TestRefusedCommitDoesNotUndoCleanStart(t *testing.T) {
	st := &refusingStore{Store: memory.New()}
	srv, addr := restartOn(t, st)
	sub, _ := wiretest.MustConnect(t, addr, "cs-sub", false)
	sub.Subscribe("cs/#", 1)
	hangUp(sub)
	pub, _ := wiretest.MustConnect(t, addr, "cs-pub", true)
	for i := range 5 {
		pub.Publish("cs/data", fmt.Sprint(i), 1, uint16(i+1), false)
		pub.ExpectAck(packet.PUBACK, uint16(i+1))
	}
	watcher := connectV5(t, addr, "cs-watcher", false, 3600)

	st.full.Store(true)
	sub, present := wiretest.MustConnect(t, addr, "cs-sub", true)
	if present {
		t.Fatal("session present after a clean start")
	}
	sub.Ping() // nothing of the old session arrives
	hangUp(sub)
	commitBarrier(t, watcher, "cs/watch") // the session's removal was tried
	st.full.Store(false)
	if code := commitBarrier(t, watcher, "cs/watch"); code != 1 {
		t.Fatalf("SUBSCRIBE once the store takes writes: SUBACK 0x%02x; want 1", byte(code))
	}

	hangUp(watcher)
	hangUp(pub)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = restartOn(t, st)
	sub, present = wiretest.MustConnect(t, addr, "cs-sub", false)
	if present {
		hangUp(sub)
		got := drainText(t, addr, "cs-sub")
		t.Errorf("a session discarded by a clean start while the disk was full is back after a restart, "+
			"session present with %d queued messages; want no session", len(got))
	}
	sub.Ping()
}

// TestRefusedReleaseSendsNoPUBREL: the broker sends PUBREL for a QoS 2
// delivery only once the PUBREC is on disk. Were it to send PUBREL for a
// release the store refused, the receiver, which forgets the packet id on
// PUBREL, would take the PUBLISH that the broker re-sends after a restart
// for a new message.
// [MQTT-4.3.3-2] v3.1.1
// [MQTT-4.4.0-1] v3.1.1
func TestRefusedReleaseSendsNoPUBREL(t *testing.T) {
	st := &refusingStore{Store: memory.New()}
	srv, addr := restartOn(t, st)
	sub := connectV5(t, addr, "rel-sub", false, 3600)
	sub.Send(&packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "rel/#", QoS: 2}}})
	if a, ok := sub.Next().(*packet.Suback); !ok || a.Codes[0] != 2 {
		t.Fatalf("SUBACK: %+v", a)
	}
	pub := connectV5(t, addr, "rel-pub", true, 0)
	pub.Publish("rel/x", "once", 2, 1, false)
	pub.ExpectAck(packet.PUBREC, 1)
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	pub.ExpectAck(packet.PUBCOMP, 1)
	p, ok := sub.Next().(*packet.Publish)
	if !ok || string(p.Payload) != "once" {
		t.Fatalf("want the PUBLISH, got %+v", p)
	}

	st.full.Store(true)
	sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	sub.Send(&packet.Pingreq{})
	var rel *packet.Ack
	for done := false; !done; {
		q, err := sub.TryNext()
		if err != nil {
			break // disconnected: no PUBREL
		}
		switch q := q.(type) {
		case *packet.Pingresp:
			done = true
		case *packet.Ack:
			if q.Kind == packet.PUBREL && q.PacketID == p.PacketID {
				rel = q
			}
		case *packet.Disconnect:
			done = true // told to go: no PUBREL
		default:
			t.Fatalf("unexpected %s %+v", q.Type(), q)
		}
	}
	if rel == nil {
		return // withheld: the client will send PUBREC again when the PUBLISH is re-sent
	}

	// The receiver saw PUBREL: it forgets the packet id. [MQTT-4.3.3-2]
	// The connection drops before its PUBCOMP; space comes back; the
	// broker restarts.
	sub.Conn.Close()
	hangUp(pub)
	st.full.Store(false)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = restartOn(t, st)
	sub = connectV5(t, addr, "rel-sub", false, 3600)
	switch q := sub.Next().(type) {
	case *packet.Ack:
		if q.Kind != packet.PUBREL || q.PacketID != p.PacketID {
			t.Fatalf("after the restart: %s %d; want PUBREL %d", q.Kind, q.PacketID, p.PacketID)
		}
	case *packet.Publish:
		t.Errorf("PUBREL %d (reason 0x%02x) was sent while the store refused the release, and after a restart "+
			"the broker sends the PUBLISH again (DUP=%v): delivered twice", p.PacketID, byte(rel.Code), q.Dup)
	default:
		t.Fatalf("after the restart: unexpected %s %+v", q.Type(), q)
	}
}

// drainText resumes a persistent session and takes every queued message,
// acknowledging each (QoS 1 and 2), until a PINGREQ finds nothing more. It
// returns how many times each payload arrived.
func drainText(t *testing.T, addr, clientID string) map[string]int {
	t.Helper()
	got := map[string]int{}
	wiretest.DrainSession(t, addr, clientID, func(p *packet.Publish) { got[string(p.Payload)]++ })
	return got
}

// TestRefusedCommitClosesOnlyThatConnection: a store that refuses writes
// for a while (a full disk) is a transient error in handling a QoS 1
// PUBLISH. MQTT 3.1.1 has no negative PUBACK, so the broker closes that
// publisher's connection without a PUBACK; the other clients are not
// affected, and once the store takes writes again the publisher is served.
// [MQTT-4.8.0-2] v3.1.1
func TestRefusedCommitClosesOnlyThatConnection(t *testing.T) {
	st := &refusingStore{Store: memory.New()}
	_, addr := restartOn(t, st)
	sub, _ := wiretest.MustConnect(t, addr, "tr-sub", false) // its queue is in the store
	sub.Subscribe("tr/#", 1)
	hangUp(sub)
	bystander, _ := wiretest.MustConnect(t, addr, "tr-bystander", true)
	pub, _ := wiretest.MustConnect(t, addr, "tr-pub", true)

	st.full.Store(true)
	pub.Publish("tr/x", "refused", 1, 1, false)
	p, err := pub.TryNext()
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("the store refused the message, yet the MQTT 3.1.1 publisher got %s %+v; want its connection closed",
			p.Type(), p)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the store refused the message, and the publisher's connection is still open after %v", wiretest.Timeout)
	}
	bystander.Ping()
	other, _ := wiretest.MustConnect(t, addr, "tr-other", true)
	other.Ping()

	st.full.Store(false)
	pub, _ = wiretest.MustConnect(t, addr, "tr-pub", true)
	pub.Publish("tr/x", "accepted", 1, 1, false)
	pub.ExpectAck(packet.PUBACK, 1)
	bystander.Ping()
	if got := drainText(t, addr, "tr-sub"); got["accepted"] != 1 {
		t.Errorf("the subscriber received %v, want %q once", got, "accepted")
	}
}
