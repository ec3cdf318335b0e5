package broker

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// Helpers for the tests and benchmarks that run the broker on the Pebble
// store: hygiene_test.go, fulldisk_test.go, durable_bench_test.go.

// openPebble opens a Pebble store in dir, closed when the test ends (after
// the broker, whose cleanup runs first).
func openPebble(t testing.TB, dir string, opts pebblestore.Options) *pebblestore.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = warnLogger(t)
	}
	st, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// warnLogger is testlog.New without the debug and info lines: pebble's
// chatter about every flush and compaction would drown the test's log.
func warnLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testlog.Writer(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// storeContents counts what the store holds: message bodies (with their
// reference counts), and the entries of every session's queue and inbound
// QoS 2 ids.
func storeContents(t testing.TB, st store.Store) (bodies, entries int) {
	t.Helper()
	if err := st.LoadMessages(func(uint64, []byte) error { bodies++; return nil }); err != nil {
		t.Fatal(err)
	}
	err := st.LoadSessions(func(clientID string, rec []byte) error {
		r, err := decodeSession(rec)
		if err != nil {
			return err
		}
		ss := &session{clientID: clientID, durableState: &durableState{uid: r.uid}}
		for _, name := range []string{ss.queueName(), ss.inboundName()} {
			if err := st.LoadQueue(name, 0, func(uint64, []byte) (bool, error) { entries++; return true, nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bodies, entries
}

// ackingSubscriber reads PUBLISHes on its own goroutine and acknowledges
// each at once (PUBACK, or PUBREC then PUBCOMP for PUBREL), until it has
// received want messages or the connection fails.
type ackingSubscriber struct {
	c    *wiretest.Client
	want int
	got  int
	err  error
	done chan struct{}
}

func startAckingSubscriber(c *wiretest.Client, want int) *ackingSubscriber {
	s := &ackingSubscriber{c: c, want: want, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for s.got < s.want {
			p, err := c.TryNext()
			if err != nil {
				s.err = err
				return
			}
			switch p := p.(type) {
			case *packet.Publish:
				s.got++
				switch p.QoS {
				case 1:
					err = c.TrySend(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
				case 2:
					err = c.TrySend(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				}
			case *packet.Ack:
				if p.Kind == packet.PUBREL {
					err = c.TrySend(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
				}
			default:
				err = fmt.Errorf("unexpected %s", p.Type())
			}
			if err != nil {
				s.err = err
				return
			}
		}
	}()
	return s
}

// wait returns once the subscriber has its messages; it fails the test if
// they do not come within d.
func (s *ackingSubscriber) wait(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		t.Fatalf("subscriber: %d of %d messages after %v", s.got, s.want, d)
	}
	if s.err != nil {
		t.Fatalf("subscriber: %d of %d messages: %v", s.got, s.want, s.err)
	}
}

// pipelinedPublisher keeps up to window QoS 1 PUBLISHes unacknowledged on one
// connection: it sends the next as each PUBACK arrives (they arrive in
// order). onAck, if set, hears each acknowledgement with its reason code and
// the time since its PUBLISH was sent; returning false stops publishing.
func pipelinedPublisher(c *wiretest.Client, topic string, payload []byte, n, window int,
	onAck func(i int, code packet.ReasonCode, latency time.Duration) bool) (acked int, err error) {
	sentAt := make([]time.Time, 65536)
	pid := func(i int) uint16 { return uint16(i%65535 + 1) }
	sent, stop := 0, false
	send := func() error {
		sentAt[pid(sent)] = time.Now()
		err := c.TrySend(&packet.Publish{Topic: topic, Payload: payload, QoS: 1, PacketID: pid(sent)})
		sent++
		return err
	}
	for sent < n && sent < window {
		if err := send(); err != nil {
			return acked, err
		}
	}
	for acked < sent {
		p, err := c.TryNext()
		if err != nil {
			return acked, err
		}
		a, ok := p.(*packet.Ack)
		if !ok || a.Kind != packet.PUBACK || a.PacketID != pid(acked) {
			return acked, fmt.Errorf("message %d: want PUBACK %d, got %s %+v", acked, pid(acked), p.Type(), p)
		}
		if onAck != nil && !onAck(acked, a.Code, time.Since(sentAt[a.PacketID])) {
			stop = true
		}
		acked++
		if sent < n && !stop {
			if err := send(); err != nil {
				return acked, err
			}
		}
	}
	return acked, nil
}
