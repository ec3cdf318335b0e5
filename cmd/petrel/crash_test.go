package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// brokerProcess is petrel serve running as a child process, so a test can
// kill -9 it.
type brokerProcess struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is gone
	err    error         // its exit status, set before exited closes
}

func startBroker(t *testing.T, dataDir string, extra ...string) *brokerProcess {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--log-level", "info", "--data-dir", dataDir}, extra...)
	cmd := petrel(args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &brokerProcess{cmd: cmd, exited: make(chan struct{})}
	addrs := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening .*addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		b.err = cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(b.kill)
	select {
	case b.addr = <-addrs:
	case <-b.exited:
		t.Fatalf("broker exited before listening: %v", b.err)
	case <-time.After(20 * time.Second):
		t.Fatal("broker did not start listening within 20s")
	}
	return b
}

// kill sends SIGKILL and waits for the process to be gone. It may be
// called more than once, from several goroutines.
func (b *brokerProcess) kill() {
	select {
	case <-b.exited:
		return
	default:
	}
	b.cmd.Process.Kill()
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
	}
}

// TestCrashLosesNothingAcknowledged is the durability contract, tested the
// hard way: persistent subscribers are offline, a publisher sends QoS 1 and
// QoS 2 messages and counts the acknowledgements, and the broker is killed
// with SIGKILL at a random moment, several times. Afterwards every
// acknowledged message reaches its subscriber: QoS 1 at least once, QoS 2
// exactly once. PETREL_CRASH_ROUNDS sets the number of kills (default 5).
// [MQTT-4.3.2-2] v3.1.1
// [MQTT-4.3.3-2] v3.1.1
// [MQTT-3.1.2-5] v3.1.1
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	rounds := crashRounds(5)
	dir := t.TempDir()
	b := startBroker(t, dir)
	for _, sub := range []struct {
		id     string
		filter string
		qos    byte
	}{{"sub-q1", "crash/q1", 1}, {"sub-q2", "crash/q2", 2}} {
		c, _ := wiretest.MustConnect(t, b.addr, sub.id, false)
		c.Subscribe(sub.filter, sub.qos)
		c.Disconnect()
	}

	pub := newCrashPublisher("publisher", "crash/q")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range rounds {
		killAt := time.Duration(50+rng.IntN(400)) * time.Millisecond
		sent := pub.round(t, b, round, killAt)
		t.Logf("round %d: killed after %v, %d messages sent this round, %d + %d acknowledged so far",
			round, killAt, sent, len(pub.acked[1]), len(pub.acked[2]))
		b = startBroker(t, dir)
	}
	if len(pub.acked[1]) == 0 || len(pub.acked[2]) == 0 {
		t.Fatal("no message was acknowledged: the test proved nothing")
	}

	// Every acknowledged message is there: QoS 1 at least once, QoS 2 once.
	for _, qos := range []byte{1, 2} {
		got := drainSession(t, b.addr, fmt.Sprintf("sub-q%d", qos))
		for i := range pub.acked[qos] {
			if got[i] == 0 {
				t.Errorf("QoS %d message %d was acknowledged but is lost", qos, i)
			}
		}
		for i, n := range got {
			if qos == 2 && n > 1 {
				t.Errorf("QoS 2 message %d delivered %d times", i, n)
			}
		}
		t.Logf("QoS %d: %d acknowledged, %d distinct delivered", qos, len(pub.acked[qos]), len(got))
	}
}

// crashRounds is the number of kills: PETREL_CRASH_ROUNDS, or def.
func crashRounds(def int) int {
	if s := os.Getenv("PETREL_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			panic("PETREL_CRASH_ROUNDS must be a positive number, not " + strconv.Quote(s))
		}
		return n
	}
	return def
}

// crashPublisher sends numbered QoS 1 and QoS 2 messages, alternately, one
// at a time, to topic+"1" and topic+"2", and counts the acknowledgements.
// Its session is persistent and it behaves as a conforming client across
// the broker's crashes: after reconnecting it first re-sends, with DUP=1,
// the PUBLISH still waiting for PUBACK or PUBREC, and the PUBREL still
// waiting for PUBCOMP. [MQTT-4.4.0-1] v3.1.1
type crashPublisher struct {
	id, topic string
	next      int                   // the number of the next new message
	acked     map[byte]map[int]bool // by QoS: the messages acknowledged (PUBACK, PUBREC)
	unacked   *packet.Publish       // sent, PUBACK or PUBREC not seen
	releasing uint16                // PUBREL sent or due, PUBCOMP not seen; 0 for none
}

func newCrashPublisher(id, topic string) *crashPublisher {
	return &crashPublisher{id: id, topic: topic, acked: map[byte]map[int]bool{1: {}, 2: {}}}
}

// resume connects, checks that the session survived, and finishes the
// flows a crash interrupted.
func (p *crashPublisher) resume(t *testing.T, addr string, first bool) *wiretest.Client {
	t.Helper()
	c, present := wiretest.MustConnect(t, addr, p.id, false)
	if !first && !present {
		t.Fatalf("%s: the session did not survive the crash", p.id)
	}
	if m := p.unacked; m != nil {
		dup := *m
		dup.Dup = true // [MQTT-3.3.1-1] v3.1.1
		c.Send(&dup)
		if err := p.awaitAck(t, c); err != nil {
			t.Fatalf("%s: re-sent message %s: %v", p.id, m.Payload, err)
		}
	}
	if pid := p.releasing; pid != 0 {
		c.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
		c.ExpectAck(packet.PUBCOMP, pid)
		p.releasing = 0
	}
	return c
}

// round resumes, then publishes until b is killed after killAt. It returns
// the number of new messages sent.
func (p *crashPublisher) round(t *testing.T, b *brokerProcess, round int, killAt time.Duration) int {
	t.Helper()
	c := p.resume(t, b.addr, round == 0)
	killer := time.AfterFunc(killAt, b.kill)
	defer killer.Stop()
	defer b.kill()
	start := p.next
	for {
		if p.unacked == nil {
			i := p.next
			p.next++
			qos := byte(1 + i%2)
			p.unacked = &packet.Publish{Topic: p.topic + strconv.Itoa(int(qos)), Payload: []byte(strconv.Itoa(i)),
				QoS: qos, PacketID: uint16(i%60000 + 1)}
		}
		if c.TrySend(p.unacked) != nil || p.awaitAck(t, c) != nil {
			break
		}
		if pid := p.releasing; pid != 0 {
			if c.TrySend(&packet.Ack{Kind: packet.PUBREL, PacketID: pid}) != nil {
				break
			}
			a, err := c.TryNext()
			if err != nil {
				break
			}
			if a, ok := a.(*packet.Ack); !ok || a.Kind != packet.PUBCOMP || a.PacketID != pid {
				t.Fatalf("%s: want PUBCOMP %d, got %s %+v", p.id, pid, a.Type(), a)
			}
			p.releasing = 0
		}
	}
	return p.next - start
}

// awaitAck reads the acknowledgement of p.unacked. It returns the read
// error when the connection is gone (the broker was killed).
func (p *crashPublisher) awaitAck(t *testing.T, c *wiretest.Client) error {
	t.Helper()
	m := p.unacked
	got, err := c.TryNext()
	if err != nil {
		return err
	}
	want := map[byte]packet.Type{1: packet.PUBACK, 2: packet.PUBREC}[m.QoS]
	if a, ok := got.(*packet.Ack); !ok || a.PacketID != m.PacketID || a.Kind != want {
		t.Fatalf("%s: message %s: want %s %d, got %s %+v", p.id, m.Payload, want, m.PacketID, got.Type(), got)
	}
	i, _ := strconv.Atoi(string(m.Payload))
	p.acked[m.QoS][i] = true
	p.unacked = nil
	if m.QoS == 2 {
		p.releasing = m.PacketID
	}
	return nil
}

// drainSession resumes a persistent session and takes every queued message,
// acknowledging each, until a PINGREQ finds nothing more. It returns how
// many times each payload (a number) arrived.
func drainSession(t *testing.T, addr, clientID string) map[int]int {
	t.Helper()
	got := map[int]int{}
	wiretest.DrainSession(t, addr, clientID, func(p *packet.Publish) {
		n, err := strconv.Atoi(string(p.Payload))
		if err != nil {
			t.Fatalf("%s: payload %q", clientID, p.Payload)
		}
		got[n]++
	})
	return got
}

// TestCrashOnlineSubscribersExactlyOnce is the crash test with the
// subscribers online: a persistent QoS 2 subscriber and a persistent QoS 1
// subscriber stay connected while the publisher sends and the broker is
// killed with SIGKILL, and reconnect after each restart. They behave as
// conforming clients (see conformingSubscriber). Afterwards every
// acknowledged QoS 1 message was delivered at least once, and every
// acknowledged QoS 2 message exactly once: a crash between sending a
// PUBLISH, receiving PUBREC, sending PUBREL and receiving PUBCOMP neither
// loses it nor makes it arrive as a new message. PETREL_CRASH_ROUNDS sets
// the number of kills (default 3).
// [MQTT-4.3.2-2] v3.1.1
// [MQTT-4.3.3-2] v3.1.1
// [MQTT-4.4.0-1] v3.1.1
// [MQTT-3.3.1-1] v3.1.1
// [MQTT-3.1.2-5] v3.1.1
func TestCrashOnlineSubscribersExactlyOnce(t *testing.T) {
	rounds := crashRounds(3)
	dir := t.TempDir()
	b := startBroker(t, dir)
	subs := []*conformingSubscriber{newConformingSubscriber("live-q1", "live/q1", 1),
		newConformingSubscriber("live-q2", "live/q2", 2)}
	pub := newCrashPublisher("live-publisher", "live/q")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	start := time.Now()
	for round := range rounds {
		for _, s := range subs {
			s.goOnline(t, s.connect(t, b.addr, round == 0))
		}
		killAt := time.Duration(50+rng.IntN(400)) * time.Millisecond
		sent := pub.round(t, b, round, killAt)
		for _, s := range subs {
			s.waitOffline(t)
		}
		t.Logf("round %d: killed after %v, %d messages sent this round, %d + %d acknowledged so far; "+
			"subscribers counted %d + %d",
			round, killAt, sent, len(pub.acked[1]), len(pub.acked[2]), len(subs[0].counted), len(subs[1].counted))
		b = startBroker(t, dir)
	}
	if len(pub.acked[1]) == 0 || len(pub.acked[2]) == 0 {
		t.Fatal("no message was acknowledged: the test proved nothing")
	}
	// The publisher finishes its last flows, so that every message it sent
	// is acknowledged, then the subscribers take what is left.
	pub.resume(t, b.addr, false)
	for _, s := range subs {
		s.drain(t, s.connect(t, b.addr, false))
	}

	for _, s := range subs {
		for _, p := range s.problems {
			t.Errorf("%s: %s", s.id, p)
		}
		lost, twice, dups := 0, 0, 0
		for i := range pub.acked[s.qos] {
			if s.counted[i] == 0 {
				lost++
				if lost <= 10 {
					t.Errorf("%s: QoS %d message %d was acknowledged but never delivered", s.id, s.qos, i)
				}
			}
		}
		for i, n := range s.counted {
			if n > 1 {
				dups += n - 1
				if s.qos == 2 {
					twice++
					if twice <= 10 {
						t.Errorf("%s: QoS 2 message %d delivered %d times", s.id, i, n)
					}
				}
			}
		}
		if lost > 0 || twice > 0 {
			t.Errorf("%s: %d acknowledged messages lost, %d QoS 2 messages delivered more than once", s.id, lost, twice)
		}
		if len(s.awaitingRel) != 0 {
			t.Errorf("%s: QoS 2 packet ids %v never got their PUBREL", s.id, s.awaitingRel)
		}
		t.Logf("%s (QoS %d): %d acknowledged to the publisher, %d distinct delivered, %d duplicate deliveries counted, "+
			"%d re-sent PUBLISHes (DUP=1), %d of them acknowledged without counting (id awaiting PUBREL), %d PUBRELs",
			s.id, s.qos, len(pub.acked[s.qos]), len(s.counted), dups, s.redelivered, s.dupsSkipped, s.pubrels)
	}
	t.Logf("%d rounds in %v", rounds, time.Since(start).Round(time.Millisecond))
}

// conformingSubscriber is a persistent subscriber that behaves as the spec
// asks of a client, across reconnections: it acknowledges every QoS 1
// PUBLISH with PUBACK; it answers a QoS 2 PUBLISH with PUBREC and remembers
// its packet id until PUBREL, so that a PUBLISH carrying an id it remembers
// is a re-delivery, acknowledged again but not counted (the receiver's
// "method B"); it answers PUBREL with PUBCOMP. [MQTT-4.3.3-2] v3.1.1
//
// While online it is served by its own goroutine, which reports what it
// finds odd in problems instead of failing the test; the test reads its
// state only after that goroutine is done.
type conformingSubscriber struct {
	id, filter string
	qos        byte

	counted     map[int]int // message number → deliveries counted
	awaitingRel map[uint16]bool
	redelivered int // PUBLISHes that came with DUP=1
	dupsSkipped int // QoS 2 PUBLISHes whose id awaited PUBREL
	pubrels     int
	problems    []string
	offline     chan struct{} // closed when the serving goroutine ends
}

func newConformingSubscriber(id, filter string, qos byte) *conformingSubscriber {
	return &conformingSubscriber{id: id, filter: filter, qos: qos, counted: map[int]int{}, awaitingRel: map[uint16]bool{}}
}

// connect resumes the session (subscribing on the first connection) and
// checks that it survived the crash.
func (s *conformingSubscriber) connect(t *testing.T, addr string, first bool) *wiretest.Client {
	t.Helper()
	c, present := wiretest.MustConnect(t, addr, s.id, false)
	if first {
		c.Subscribe(s.filter, s.qos)
	} else if !present {
		t.Fatalf("%s: the session did not survive the crash", s.id)
	}
	return c
}

// goOnline serves c on a goroutine until the connection ends.
func (s *conformingSubscriber) goOnline(t *testing.T, c *wiretest.Client) {
	s.offline = make(chan struct{})
	go func() {
		defer close(s.offline)
		for {
			p, err := c.TryNext()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue // nothing for a while: keep listening
			}
			if err != nil {
				return // the broker was killed
			}
			if _, err := s.handle(c, p); err != nil {
				return
			}
		}
	}()
}

// waitOffline waits for the serving goroutine to see the connection end.
func (s *conformingSubscriber) waitOffline(t *testing.T) {
	t.Helper()
	select {
	case <-s.offline:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still reading 20s after the broker was killed", s.id)
	}
}

// handle answers one packet. It reports whether the packet was a PUBLISH
// or a PUBREL (something the broker still had for the subscriber).
func (s *conformingSubscriber) handle(c *wiretest.Client, p packet.Packet) (bool, error) {
	switch p := p.(type) {
	case *packet.Publish:
		n, err := strconv.Atoi(string(p.Payload))
		if err != nil || p.QoS != s.qos {
			s.problems = append(s.problems, fmt.Sprintf("unexpected PUBLISH %+v", p))
			return true, nil
		}
		if p.Dup {
			s.redelivered++
		}
		if p.QoS == 1 {
			s.counted[n]++
			return true, c.TrySend(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
		if s.awaitingRel[p.PacketID] {
			// A re-delivery: the broker lost our PUBREC in the crash.
			s.dupsSkipped++
			if !p.Dup {
				s.problems = append(s.problems, fmt.Sprintf("message %d re-sent with packet id %d, awaiting PUBREL, without DUP", n, p.PacketID))
			}
		} else {
			s.awaitingRel[p.PacketID] = true
			s.counted[n]++
		}
		return true, c.TrySend(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	case *packet.Ack:
		if p.Kind != packet.PUBREL {
			s.problems = append(s.problems, fmt.Sprintf("unexpected %s %d", p.Kind, p.PacketID))
			return false, nil
		}
		s.pubrels++
		delete(s.awaitingRel, p.PacketID)
		return true, c.TrySend(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	default:
		s.problems = append(s.problems, fmt.Sprintf("unexpected %s", p.Type()))
		return false, nil
	}
}

// drain takes everything the broker still has for the subscriber, until a
// PINGREQ round trip brings nothing: PINGRESP comes after every PUBLISH and
// PUBREL that the acknowledgements sent before PINGREQ released.
func (s *conformingSubscriber) drain(t *testing.T, c *wiretest.Client) {
	t.Helper()
	for {
		c.Send(&packet.Pingreq{})
		arrived := 0
		for {
			p := c.Next()
			if p.Type() == packet.PINGRESP {
				break
			}
			more, err := s.handle(c, p)
			if err != nil {
				t.Fatalf("%s: %v", s.id, err)
			}
			if more {
				arrived++
			}
		}
		if arrived == 0 {
			return
		}
	}
}
