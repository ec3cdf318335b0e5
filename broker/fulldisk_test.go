package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/petrelmq/petrel/internal/testdisk"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// fill writes the file name, on a filesystem of its own, to leave about
// free bytes available there: another program taking the space. It stops
// early, without failing, where the disk fills meanwhile.
func fill(t *testing.T, name string, free int64) string {
	t.Helper()
	avail := testdisk.Avail(t, filepath.Dir(name))
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for left := avail - free; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(left, int64(len(chunk)))]); errors.Is(err, syscall.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// fullDiskOptions are the store's options on the small disk: a reserve of
// 4 MiB, so the disk fills within the tmpfs.
func fullDiskOptions() pebblestore.Options {
	return pebblestore.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20, MinFreeBytes: 4 << 20}
}

// numbered is an incompressible payload of size bytes that starts with n.
func numbered(rng *rand.Rand, n uint64, size int) []byte {
	b := make([]byte, size)
	for i := 8; i < size; i += 8 {
		binary.LittleEndian.PutUint64(b[i-8:], rng.Uint64())
	}
	binary.BigEndian.PutUint64(b, n)
	return b
}

func connectV5(t *testing.T, addr, id string, clean bool, expiry uint32) *wiretest.Client {
	t.Helper()
	cp := &packet.Connect{Version: packet.V5, CleanStart: clean, ClientID: id, KeepAlive: 60}
	if expiry > 0 {
		cp.Props.SessionExpiry = expiry
		cp.Props.Mark(packet.PropSessionExpiry)
	}
	c, ack := wiretest.Connect(t, addr, cp)
	if ack.Code != 0 {
		t.Fatalf("%s: CONNACK 0x%02x", id, byte(ack.Code))
	}
	return c
}

// TestFullDiskRefusesPublishersAndRecovers fills a real, small filesystem
// through the broker: a durable offline subscriber's queue grows until the
// store refuses commits. Then an MQTT 5 publisher gets PUBACK 0x97 (Quota
// exceeded) and stays connected, an MQTT 3.1.1 publisher (which has no
// negative acknowledgement) is disconnected without PUBACK, and the broker
// goes on serving everyone else. Once space is freed (a file another
// program left on the disk is deleted) publishes are accepted again, and
// the subscriber receives every message acknowledged before, during and
// after.
// [MQTT-4.3.2-2] v3.1.1
// [MQTT-3.4.2-1] v5
// [MQTT-4.8.0-2] v3.1.1
func TestFullDiskRefusesPublishersAndRecovers(t *testing.T) {
	mnt := testdisk.Small(t, "32m")
	st := openPebble(t, filepath.Join(mnt, "store"), fullDiskOptions())
	srv := startServer(t, Options{Store: st, Logger: warnLogger(t)})
	addr := srv.Addrs()[0].String()

	sub, _ := wiretest.MustConnect(t, addr, "fd-sub", false)
	sub.Subscribe("fd/#", 1)
	sub.Disconnect()
	// Another program holds all but 12 MiB; the broker fills the rest.
	filler := fill(t, filepath.Join(mnt, "filler"), 12<<20)

	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	pub := connectV5(t, addr, "fd-pub5", true, 0)
	acked := map[uint64]bool{}
	next := uint64(0)
	publish := func(c *wiretest.Client, pid uint16) packet.ReasonCode {
		t.Helper()
		n := next
		next++
		c.Send(&packet.Publish{Topic: "fd/data", Payload: numbered(rng, n, 16<<10), QoS: 1, PacketID: pid})
		p := c.Next()
		a, ok := p.(*packet.Ack)
		if !ok || a.Kind != packet.PUBACK || a.PacketID != pid {
			t.Fatalf("message %d: want PUBACK %d, got %s %+v", n, pid, p.Type(), p)
		}
		if a.Code == packet.Success {
			acked[n] = true
		}
		return a.Code
	}
	var refused packet.ReasonCode
	for i := 0; i < 2000 && refused == 0; i++ {
		refused = publish(pub, uint16(i%60000+1))
	}
	if refused != packet.QuotaExceeded {
		t.Fatalf("after %d messages of 16 KiB with 12 MiB free: PUBACK code 0x%02x; want 0x97 (Quota exceeded)",
			len(acked), byte(refused))
	}
	t.Logf("refused with 0x97 after %d messages of 16 KiB", len(acked))
	pub.Ping() // still connected
	// The store may win back a little space by itself (its own flushes), so
	// a publish may get through now and then; the disk stays full, though.
	refusedAgain := false
	for i := 0; i < 200 && !refusedAgain; i++ {
		refusedAgain = publish(pub, 1) == packet.QuotaExceeded
	}
	if !refusedAgain {
		t.Fatal("while the disk is still full: 200 more messages of 16 KiB were all accepted")
	}

	// MQTT 3.1.1 has no negative PUBACK: the publisher is disconnected and
	// will publish again. [MQTT-4.3.2-2]
	closed := false
	for i := 0; i < 200 && !closed; i++ {
		pub3, _ := wiretest.MustConnect(t, addr, fmt.Sprintf("fd-pub3-%d", i), true)
		for j := uint16(1); j <= 200; j++ {
			pub3.Send(&packet.Publish{Topic: "fd/data", Payload: numbered(rng, next, 16<<10), QoS: 1, PacketID: j})
			n := next
			next++
			p, err := pub3.TryNext()
			if err != nil {
				closed = true
				break
			}
			if a, ok := p.(*packet.Ack); ok && a.Kind == packet.PUBACK && a.Code == packet.Success {
				acked[n] = true
			}
		}
	}
	if !closed {
		t.Fatal("MQTT 3.1.1 publisher on a full disk: never disconnected")
	}

	// The broker serves everyone else meanwhile.
	other, _ := wiretest.MustConnect(t, addr, "fd-other", true)
	other.Ping()
	pub.Ping()

	// Space comes back: publishes are accepted again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if code := publish(pub, uint16(100+i)); code != packet.Success {
			t.Fatalf("message %d after space was freed: PUBACK code 0x%02x; want 0x00", next-1, byte(code))
		}
	}
	pub3, _ := wiretest.MustConnect(t, addr, "fd-pub3", true)
	if code := publish(pub3, 2); code != packet.Success {
		t.Fatalf("MQTT 3.1.1 publisher after space was freed: code 0x%02x", byte(code))
	}

	// Nothing acknowledged is lost.
	got := drainNumbered(t, addr, "fd-sub")
	for n := range acked {
		if got[n] == 0 {
			t.Errorf("message %d was acknowledged but is lost", n)
		}
	}
	t.Logf("%d messages acknowledged, %d delivered", len(acked), len(got))
}

// drainNumbered resumes a persistent session and takes every queued
// message (numbered payloads), acknowledging each, until a PINGREQ finds
// nothing more. It returns how many times each number arrived.
func drainNumbered(t *testing.T, addr, clientID string) map[uint64]int {
	t.Helper()
	got := map[uint64]int{}
	wiretest.DrainSession(t, addr, clientID, func(p *packet.Publish) {
		got[binary.BigEndian.Uint64(p.Payload)]++
	})
	return got
}
