package broker

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// TestSoakDurableStoreStaysSmall runs the broker on the Pebble store with a
// durable subscriber online and acknowledging, while a publisher sends N
// QoS 1 messages of 1 KiB (N = 20,000, 5,000 under -race, or PETREL_SOAK): the store's
// directory stays under a bound that does not grow with N, and once every
// message is acknowledged no message body and no queue entry is left in the
// store.
// [MQTT-4.3.2-2] v3.1.1
// [MQTT-4.3.2-3] v3.1.1
func TestSoakDurableStoreStaysSmall(t *testing.T) {
	n := 20_000
	if raceEnabled {
		n = 5_000
	}
	if s := os.Getenv("PETREL_SOAK"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("PETREL_SOAK=%q: want a positive number of messages", s)
		}
	}
	const bound = 64 << 20
	st := openPebble(t, t.TempDir(), pebblestore.Options{}) // the defaults petrel serve runs with
	srv := startServer(t, Options{Store: st, Logger: warnLogger(t)})
	addr := srv.Addrs()[0].String()

	sub, _ := wiretest.MustConnect(t, addr, "soak-sub", false)
	sub.Subscribe("soak/#", 1)
	got := startAckingSubscriber(sub, n)

	pub, _ := wiretest.MustConnect(t, addr, "soak-pub", true)
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i*7 + i>>3)
	}
	var peak int64
	start := time.Now()
	acked, err := pipelinedPublisher(pub, "soak/data", payload, n, 64, func(i int, code packet.ReasonCode, _ time.Duration) bool {
		if code != packet.Success {
			t.Errorf("message %d: PUBACK code 0x%02x", i, byte(code))
			return false
		}
		if i%2000 == 0 {
			u, err := st.Usage()
			if err != nil {
				t.Errorf("Usage: %v", err)
			}
			peak = max(peak, u)
		}
		return true
	})
	if err != nil {
		t.Fatalf("publisher: %d of %d acknowledged: %v", acked, n, err)
	}
	got.wait(t, time.Minute)
	took := time.Since(start)

	// A SUBSCRIBE of a durable session is on disk before its SUBACK, and
	// commit groups are written in order: the SUBACK proves that the
	// removals of every acknowledged delivery, which joined earlier
	// groups, are in the store too.
	sub.Subscribe("soak/#", 1)
	sub.Ping()
	final, err := st.Usage()
	if err != nil {
		t.Fatal(err)
	}
	peak = max(peak, final)
	t.Logf("%d messages of 1 KiB in %v (%.0f/s): store %.1f MiB at the end, %.1f MiB at its peak",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(final)/(1<<20), float64(peak)/(1<<20))
	if peak > bound {
		t.Errorf("the store grew to %d MiB with %d messages passing through; want under %d MiB", peak>>20, n, bound>>20)
	}
	if bodies, entries := storeContents(t, st); bodies != 0 || entries != 0 {
		t.Errorf("every message was acknowledged, yet the store holds %d message bodies and %d queue entries; want 0 and 0",
			bodies, entries)
	}
}
