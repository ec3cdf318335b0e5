package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
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
	rounds := 5
	if s := os.Getenv("PETREL_CRASH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
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

	acked := map[byte]map[int]bool{1: {}, 2: {}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	next := 0
	var releasing []uint16 // QoS 2 ids acknowledged with PUBREC, PUBCOMP not yet seen
	for round := range rounds {
		pub, present := wiretest.MustConnect(t, b.addr, "publisher", false)
		if round > 0 && !present {
			t.Fatalf("round %d: the publisher's session did not survive the crash", round)
		}
		// Finish the QoS 2 flows the crash interrupted. [MQTT-4.4.0-1]
		for _, pid := range releasing {
			pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
			pub.ExpectAck(packet.PUBCOMP, pid)
		}
		releasing = releasing[:0]

		killAt := time.Duration(50+rng.IntN(400)) * time.Millisecond
		killer := time.AfterFunc(killAt, b.kill)
		start := next
		for {
			i := next
			qos := byte(1 + i%2)
			pid := uint16(i%60000 + 1)
			topic := fmt.Sprintf("crash/q%d", qos)
			if pub.TrySend(&packet.Publish{Topic: topic, Payload: []byte(strconv.Itoa(i)), QoS: qos, PacketID: pid}) != nil {
				break
			}
			next++
			p, err := pub.TryNext()
			if err != nil {
				break
			}
			if a, ok := p.(*packet.Ack); !ok || a.PacketID != pid || a.Kind != map[byte]packet.Type{1: packet.PUBACK, 2: packet.PUBREC}[qos] {
				t.Fatalf("message %d: unexpected %s %+v", i, p.Type(), p)
			}
			acked[qos][i] = true
			if qos == 2 {
				releasing = append(releasing, pid)
				if pub.TrySend(&packet.Ack{Kind: packet.PUBREL, PacketID: pid}) != nil {
					break
				}
				if p, err := pub.TryNext(); err != nil {
					break
				} else if a, ok := p.(*packet.Ack); !ok || a.Kind != packet.PUBCOMP || a.PacketID != pid {
					t.Fatalf("message %d: want PUBCOMP %d, got %s %+v", i, pid, p.Type(), p)
				}
				releasing = releasing[:len(releasing)-1]
			}
		}
		killer.Stop()
		b.kill()
		t.Logf("round %d: killed after %v, %d messages sent this round, %d + %d acknowledged so far",
			round, killAt, next-start, len(acked[1]), len(acked[2]))
		b = startBroker(t, dir)
	}
	if len(acked[1]) == 0 || len(acked[2]) == 0 {
		t.Fatal("no message was acknowledged: the test proved nothing")
	}

	// Every acknowledged message is there: QoS 1 at least once, QoS 2 once.
	for _, qos := range []byte{1, 2} {
		got := drainSession(t, b.addr, fmt.Sprintf("sub-q%d", qos))
		for i := range acked[qos] {
			if got[i] == 0 {
				t.Errorf("QoS %d message %d was acknowledged but is lost", qos, i)
			}
		}
		for i, n := range got {
			if qos == 2 && n > 1 {
				t.Errorf("QoS 2 message %d delivered %d times", i, n)
			}
		}
		t.Logf("QoS %d: %d acknowledged, %d distinct delivered", qos, len(acked[qos]), len(got))
	}
}

// drainSession resumes a persistent session and takes every queued message,
// acknowledging each, until a PINGREQ finds nothing more. It returns how
// many times each payload (a number) arrived.
func drainSession(t *testing.T, addr, clientID string) map[int]int {
	t.Helper()
	c, present := wiretest.MustConnect(t, addr, clientID, false)
	if !present {
		t.Fatalf("%s: session lost", clientID)
	}
	got := map[int]int{}
	for {
		c.Send(&packet.Pingreq{})
		arrived := 0
		for done := false; !done; {
			switch p := c.Next().(type) {
			case *packet.Pingresp:
				done = true
			case *packet.Publish:
				arrived++
				n, err := strconv.Atoi(string(p.Payload))
				if err != nil {
					t.Fatalf("%s: payload %q", clientID, p.Payload)
				}
				got[n]++
				if p.QoS == 1 {
					c.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
				} else {
					c.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				}
			case *packet.Ack:
				if p.Kind != packet.PUBREL {
					t.Fatalf("%s: unexpected %s", clientID, p.Kind)
				}
				c.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
				arrived++
			default:
				t.Fatalf("%s: unexpected %s", clientID, p.Type())
			}
		}
		if arrived == 0 {
			return got
		}
	}
}
