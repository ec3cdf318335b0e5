package cluster

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// A partition: node 1 of three is cut off from the others (its routes
// cut by a proxy, its clients still connected to it), then the cut heals.
// On the minority side no QoS 1 message for a persistent session is
// acknowledged (PUBACK 0x80), for as long as the cut lasts, and no new
// client is served (CONNACK 0x88); the majority side takes over node 1's
// persistent sessions and acknowledges what it can keep. When the cut
// heals, node 1 drops the sessions taken over from it, telling their
// clients (DISCONNECT 0x8E), and a client that then reconnects, to node
// 1 again, finds every message acknowledged to a publisher while it was
// cut off.
// [MQTT-3.1.4-3] v5
// [MQTT-4.4.0-1] v5
func TestClusterPartition(t *testing.T) {
	ct := newCutter(t)
	nodes := startCutProcs(t, 3, ct)
	waitLogged(t, nodes, "sessions' replica replicated", "replicas=3")
	wiretest.Eventually(t, "every route through the cutter", func() bool {
		return ct.bridged("n1", "n2") && ct.bridged("n1", "n3") && ct.bridged("n2", "n3")
	})
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	s1, _ := connect5(t, n1, "part-s1", true, nil)
	s1.Subscribe("part/x", 1)
	s3, _ := connect5(t, n3, "part-s3", true, nil)
	s3.Subscribe("part/#", 1)
	// The publisher on node 1 has a clean session: it stays node 1's.
	p1, _ := connect5(t, n1, "part-p1", true, func(c *packet.Connect) { c.Props.SessionExpiry = 0 })
	p2, _ := connect5(t, n2, "part-p2", true, nil)
	if code := p1.SendPublish(&packet.Publish{Topic: "part/x", Payload: []byte("before"), QoS: 1, PacketID: 1}); code != packet.Success {
		t.Fatalf("PUBACK 0x%02x before the cut", byte(code))
	}
	for _, s := range []*wiretest.Client{s1, s3} {
		p := s.NextPublish()
		if string(p.Payload) != "before" {
			t.Fatalf("%s got %q", s.Name, p.Payload)
		}
		s.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}

	// part-s3 takes what comes from here on, wherever the test is.
	s3got := newTaker(t)
	go s3got.serve(s3)
	defer s3got.end()

	ct.isolate("n1")
	cutAt := time.Now()
	// The cut lasts until the minority side has given up on the majority's
	// sessions (ghostTimeout after it lost them), and a little more.
	healAt := cutAt.Add(ghostTimeout + 3*time.Second)

	// A new client of the minority node is refused once its claim gives up.
	refused := make(chan string, 1)
	go func() {
		refused <- connectOutcome(t, n1, "part-new", claimTimeout+10*time.Second)
	}()
	// The minority node acknowledges none of its publisher's messages for
	// as long as the cut lasts: neither those for its own client's
	// session, which the others take over, nor those for a session across
	// the cut (part/y: part-s3's only).
	minority := make(chan map[string]int, 1)
	go func() {
		codes := map[string]int{}
		for i := 0; time.Now().Before(healAt); i++ {
			topic := []string{"part/x", "part/y"}[i%2]
			codes[topic+" "+publishOutcome(p1, topic, fmt.Sprint("n1-", i), uint16(i%60000+2), 2*claimTimeout)]++
			time.Sleep(20 * time.Millisecond)
		}
		minority <- codes
	}()

	// The majority side takes node 1's sessions over, then acknowledges.
	var acked []string
	var retries int
	deadline := time.Now().Add(4 * claimTimeout)
	for i := 0; len(acked) < 200; {
		payload := fmt.Sprint("n2-", i)
		switch code := publishOutcome(p2, "part/x", payload, uint16(i%60000+1), 2*claimTimeout); code {
		case "0x00":
			acked = append(acked, payload)
			i++
		case "0x80":
			retries++
			if time.Now().After(deadline) {
				t.Fatalf("the majority side still refuses after %v", time.Since(cutAt))
			}
			time.Sleep(10 * time.Millisecond)
		default:
			t.Fatalf("the majority side answered %s", code)
		}
	}
	t.Logf("the majority side acknowledged 200 messages %v after the cut (%d refused first)",
		time.Since(cutAt).Round(time.Millisecond), retries)
	s3got.await(t, acked)

	if got := <-refused; got != "CONNACK 0x88" {
		t.Errorf("a new client of the cut-off node: %s, want CONNACK 0x88", got)
	}
	codes := <-minority
	t.Logf("the cut-off node answered its publisher: %v", codes)
	for code, n := range codes {
		if !strings.HasSuffix(code, " 0x80") {
			t.Errorf("the cut-off node answered %d messages %s, want 0x80", n, code)
		}
	}

	ct.heal("n1")
	healed := time.Now()
	wiretest.Eventually(t, "routes back", func() bool { return ct.bridged("n1", "n2") && ct.bridged("n1", "n3") })

	// Node 1 drops the session the majority took over from it.
	rc1 := &mixedReceiver{t: t, awaiting: map[uint16]bool{}, got: map[string]int{}}
	for {
		p, err := s1.Read(2 * claimTimeout)
		if err != nil {
			t.Fatalf("part-s1 is still connected to node 1 %v after the heal, its session taken over: %v", 2*claimTimeout, err)
		}
		if d, ok := p.(*packet.Disconnect); ok {
			if d.Code != packet.SessionTakenOver {
				t.Fatalf("part-s1: DISCONNECT 0x%02x, want 0x8E", byte(d.Code))
			}
			break
		}
		rc1.handle(s1, p)
	}
	t.Logf("node 1 dropped the session taken over from it %v after the heal", time.Since(healed).Round(time.Millisecond))
	s1.Conn.Close()

	s1, present := connectWithin(t, n1, "part-s1", 2*claimTimeout)
	if !present {
		t.Fatal("part-s1's session is not present on node 1 after the heal")
	}
	rc1.waitAll(s1, acked, 30*time.Second)

	// Node 1 is whole again.
	deadline = time.Now().Add(2 * claimTimeout)
	for i := 0; ; i++ {
		code := publishOutcome(p1, "part/x", "after", uint16(60001+i%100), 2*claimTimeout)
		if code == "0x00" {
			break
		}
		if code != "0x80" || time.Now().After(deadline) {
			t.Fatalf("node 1 after the heal: %s", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc1.waitAll(s1, []string{"after"}, 30*time.Second)
	s3got.await(t, []string{"after"})
}

// taker serves a subscriber's connection on a goroutine of its own,
// taking what comes, until stop.
type taker struct {
	rc   *mixedReceiver
	stop chan struct{}
	done chan struct{}
	err  error
}

func newTaker(t *testing.T) *taker {
	return &taker{rc: &mixedReceiver{t: t, awaiting: map[uint16]bool{}, got: map[string]int{}},
		stop: make(chan struct{}), done: make(chan struct{})}
}

func (tk *taker) serve(w *wiretest.Client) {
	defer close(tk.done)
	for {
		select {
		case <-tk.stop:
			return
		default:
		}
		p, err := w.Read(100 * time.Millisecond)
		var ne net.Error
		switch {
		case err == nil:
			tk.rc.handle(w, p)
		case errors.As(err, &ne) && ne.Timeout():
		default:
			tk.rc.mu.Lock()
			tk.err = err
			tk.rc.mu.Unlock()
			return
		}
	}
}

func (tk *taker) end() {
	close(tk.stop)
	<-tk.done
}

// await waits until every payload of want has been taken, failing the
// test after 30s or when the connection ends first.
func (tk *taker) await(t *testing.T, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing, first := tk.rc.missing(want)
		tk.rc.mu.Lock()
		err := tk.err
		tk.rc.mu.Unlock()
		switch {
		case missing == 0:
			return
		case err != nil || time.Now().After(deadline):
			t.Fatalf("%d of %d acknowledged messages never arrived (lost), e.g. %s; connection: %v", missing, len(want), first, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishOutcome publishes payload at QoS 1 to topic and says what came
// back within d: the PUBACK's reason code, or what went wrong. It fails
// nothing, so it may run off the test's goroutine.
func publishOutcome(w *wiretest.Client, topic, payload string, pid uint16, d time.Duration) string {
	if err := w.TrySend(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, PacketID: pid}); err != nil {
		return "send: " + err.Error()
	}
	deadline := time.Now().Add(d)
	for {
		p, err := w.Read(time.Until(deadline))
		if err != nil {
			return "read: " + err.Error()
		}
		a, ok := p.(*packet.Ack)
		if !ok || a.Kind != packet.PUBACK {
			return fmt.Sprintf("%s %+v", p.Type(), p)
		}
		if a.PacketID == pid {
			return fmt.Sprintf("0x%02x", byte(a.Code))
		}
		// The answer to an earlier message, which waited past its d.
	}
}

// connectOutcome connects id (MQTT 5, session kept) to addr and says what
// came back within d. It fails nothing.
func connectOutcome(t *testing.T, addr, id string, d time.Duration) string {
	nc, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	w := wiretest.New(t, nc, id, packet.V5)
	c := &packet.Connect{Version: packet.V5, ClientID: id, KeepAlive: 60}
	c.Props.SessionExpiry = 300
	c.Props.Mark(packet.PropSessionExpiry)
	if err := w.TrySend(c); err != nil {
		return err.Error()
	}
	p, err := w.Read(d)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no CONNACK within %v", d)
	case err != nil:
		return err.Error()
	}
	if a, ok := p.(*packet.Connack); ok {
		return fmt.Sprintf("CONNACK 0x%02x", byte(a.Code))
	}
	return fmt.Sprintf("%s %+v", p.Type(), p)
}
