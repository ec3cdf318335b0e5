//go:build interop

package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Debian's mosquitto_pub and mosquitto_sub, MQTT 3.1.1 and 5. They speak
// TCP only: libmosquitto has no WebSocket client.

// TestMosquitto runs the scenarios with mosquitto_pub and mosquitto_sub as
// the peer, one process per step, and the Go client on the other side.
func TestMosquitto(t *testing.T) {
	version, err := findMosquitto()
	require(t, "mosquitto_pub and mosquitto_sub (Debian's mosquitto-clients)", err)
	t.Logf("%s", version)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			m := &mosquitto{b: startBroker(t), version: v}
			t.Run("qos", m.qos)
			t.Run("retained", m.retained)
			t.Run("session", m.session)
			t.Run("will", m.will)
		})
	}
}

// mosquitto runs the clients against one broker with one protocol version.
type mosquitto struct {
	b       *testBroker
	version string // -V: mqttv311 or mqttv5
}

func (m *mosquitto) args(extra ...string) []string {
	return append([]string{"-h", m.b.host, "-p", m.b.port, "-V", m.version}, extra...)
}

// pub runs mosquitto_pub to completion: for QoS 1 and 2 it waits for the
// acknowledgement before it exits.
func (m *mosquitto) pub(t *testing.T, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := m.args(extra...)
	out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (m *mosquitto) qos(t *testing.T) {
	var subs []*mosquittoSub
	for sub := 0; sub <= 2; sub++ {
		s := m.sub(t, "-i", fmt.Sprintf("mosq-qos-sub%d", sub), "-q", strconv.Itoa(sub),
			"-t", fmt.Sprintf("qos/to-mosq/sub%d/+", sub), "-C", "3")
		s.waitSubscribed(t)
		subs = append(subs, s)
	}
	ref := connectRef(t, m.b, "ref-qos")
	ref.subscribe(t, "qos/from-mosq/+", 2)
	want := make([][]message, 3)
	for sub := byte(0); sub <= 2; sub++ {
		for pub := byte(0); pub <= 2; pub++ {
			msg := message{
				Topic:   fmt.Sprintf("qos/to-mosq/sub%d/pub%d", sub, pub),
				Payload: fmt.Sprintf("Go to mosquitto_sub, published at QoS %d", pub),
				QoS:     min(sub, pub),
			}
			ref.publish(t, msg.Topic, msg.Payload, pub, false)
			want[sub] = append(want[sub], msg)
		}
	}
	for sub, s := range subs {
		expect(t, s, want[sub]...)
		s.wait(t)
	}

	var fromPub []message
	for pub := byte(0); pub <= 2; pub++ {
		msg := message{
			Topic:   fmt.Sprintf("qos/from-mosq/pub%d", pub),
			Payload: fmt.Sprintf("mosquitto_pub to Go at QoS %d", pub),
			QoS:     pub,
		}
		m.pub(t, "-q", strconv.Itoa(int(pub)), "-t", msg.Topic, "-m", msg.Payload)
		fromPub = append(fromPub, msg)
	}
	expect(t, ref, fromPub...)
	expectNoMore(t, ref)
	t.Logf("Go → 3 mosquitto_sub (QoS 0, 1, 2 subscriptions): 9 messages, each at the lower QoS; mosquitto_pub → Go: QoS 0, 1, 2")
}

func (m *mosquitto) retained(t *testing.T) {
	ref := connectRef(t, m.b, "ref-retained")
	m.pub(t, "-q", "1", "-r", "-t", "retained/mosq", "-m", "retained by mosquitto_pub")
	ref.publish(t, "retained/go", "retained by Go", 1, true)

	s := m.sub(t, "-i", "mosq-retained", "-q", "1", "-t", "retained/+", "-C", "2")
	expect(t, s,
		message{Topic: "retained/mosq", Payload: "retained by mosquitto_pub", QoS: 1, Retain: true},
		message{Topic: "retained/go", Payload: "retained by Go", QoS: 1, Retain: true})
	s.wait(t)
	ref.subscribe(t, "retained/mosq", 2)
	expect(t, ref, message{Topic: "retained/mosq", Payload: "retained by mosquitto_pub", QoS: 1, Retain: true})

	// -n: an empty retained message clears the topic.
	m.pub(t, "-q", "1", "-r", "-n", "-t", "retained/mosq")
	expect(t, ref, message{Topic: "retained/mosq", QoS: 1})
	// Had it not cleared, the retained message would come before the marker.
	late := m.sub(t, "-i", "mosq-retained-late", "-q", "1", "-t", "retained/+", "-C", "2")
	late.waitSubscribed(t)
	ref.publish(t, "retained/mosq", "marker, not retained", 1, false)
	expect(t, late,
		message{Topic: "retained/go", Payload: "retained by Go", QoS: 1, Retain: true},
		message{Topic: "retained/mosq", Payload: "marker, not retained", QoS: 1})
	late.wait(t)
	t.Logf("mosquitto_pub -r and Go retained messages reach mosquitto_sub and Go with the flag; mosquitto_pub -r -n clears")
}

func (m *mosquitto) session(t *testing.T) {
	// -c: no clean session (MQTT 5: no clean start, and -x the expiry).
	persistent := []string{"-i", "mosq-session", "-c", "-q", "2", "-t", "session/+"}
	if m.version == "mqttv5" {
		persistent = append(persistent, "-x", "300")
	}
	// -E: exit (with DISCONNECT) once subscribed.
	m.sub(t, append(persistent, "-E")...).wait(t)

	ref := connectRef(t, m.b, "ref-session")
	queued := []message{
		{Topic: "session/qos1", Payload: "published while away, QoS 1", QoS: 1},
		{Topic: "session/qos2", Payload: "published while away, QoS 2", QoS: 2},
	}
	for _, msg := range queued {
		ref.publish(t, msg.Topic, msg.Payload, msg.QoS, false)
	}
	// Nothing retained: these can only come from the session's queue.
	s := m.sub(t, append(persistent, "-C", "2")...)
	expect(t, s, queued...)
	s.wait(t)
	t.Logf("mosquitto_sub -c subscribed and left; 2 messages published meanwhile arrived when it came back")
}

func (m *mosquitto) will(t *testing.T) {
	ref := connectRef(t, m.b, "ref-will")
	ref.subscribe(t, "will/#", 2)
	m.sub(t, "-i", "mosq-will", "-t", "will/unused", "-E",
		"--will-topic", "will/mosq", "--will-payload", "must not be sent: DISCONNECT", "--will-qos", "1").wait(t)

	s := m.sub(t, "-i", "mosq-will", "-t", "will/unused",
		"--will-topic", "will/mosq", "--will-payload", "mosquitto_sub was killed", "--will-qos", "2", "--will-retain")
	s.waitSubscribed(t)
	s.kill(t)
	// Had the first will been sent, it would come first.
	expect(t, ref, message{Topic: "will/mosq", Payload: "mosquitto_sub was killed", QoS: 2})

	late := connectRef(t, m.b, "ref-will-late")
	late.subscribe(t, "will/mosq", 2)
	expect(t, late, message{Topic: "will/mosq", Payload: "mosquitto_sub was killed", QoS: 2, Retain: true})
	t.Logf("mosquitto_sub's will discarded after -E's DISCONNECT; published (QoS 2, retained) when it was killed")
}

// mosquittoSub is a running mosquitto_sub.
type mosquittoSub struct {
	name       string
	cmd        *exec.Cmd
	messages   chan message
	subscribed chan struct{}
	done       chan struct{} // closed once it has exited
	waitErr    error
	output     syncBuffer // everything it printed
}

// Every message is printed on one line after a prefix no debug line has.
const mosquittoFormat = "MSG %q %r %t %p"

// sub starts mosquitto_sub with debug output, which tells when the broker
// acknowledged the subscription.
func (m *mosquitto) sub(t *testing.T, extra ...string) *mosquittoSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	// stdbuf: line-buffered, or the debug lines wait in stdio's buffer
	// until it exits.
	args := append([]string{"-oL", "mosquitto_sub", "-d", "-F", mosquittoFormat}, m.args(extra...)...)
	s := &mosquittoSub{
		name:       "mosquitto_sub " + strings.Join(extra, " "),
		cmd:        exec.CommandContext(ctx, "stdbuf", args...),
		messages:   make(chan message, 100),
		subscribed: make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.cmd.Stderr = &s.output
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", s.name, err)
	}
	go func() {
		s.read(stdout)
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
		if out := s.output.String(); t.Failed() && out != "" {
			t.Logf("%s printed:\n%s", s.name, out)
		}
	})
	return s
}

func (s *mosquittoSub) read(stdout io.Reader) {
	defer close(s.messages)
	var once sync.Once
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		s.output.Write([]byte(line + "\n"))
		if strings.HasPrefix(line, "Subscribed (mid:") {
			once.Do(func() { close(s.subscribed) })
			continue
		}
		msg, ok := parseMosquitto(line)
		if ok {
			s.messages <- msg
		}
	}
}

// parseMosquitto reads a line printed with mosquittoFormat.
func parseMosquitto(line string) (message, bool) {
	f := strings.SplitN(line, " ", 5)
	if len(f) < 4 || f[0] != "MSG" {
		return message{}, false
	}
	qos, err1 := strconv.Atoi(f[1])
	retain, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return message{}, false
	}
	msg := message{Topic: f[3], QoS: byte(qos), Retain: retain == 1}
	if len(f) == 5 {
		msg.Payload = f[4]
	}
	return msg, true
}

func (s *mosquittoSub) String() string { return s.name }

func (s *mosquittoSub) receive(wait time.Duration) (message, error) {
	return receiveFrom(s.messages, wait, func() error {
		<-s.done
		return fmt.Errorf("exited (%v)", s.waitErr)
	})
}

func (s *mosquittoSub) waitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-s.subscribed:
	case <-s.done:
		t.Fatalf("%s exited (%v) before subscribing:\n%s", s.name, s.waitErr, s.output.String())
	case <-time.After(timeout):
		t.Fatalf("%s: no SUBACK within %v:\n%s", s.name, timeout, s.output.String())
	}
}

// wait expects it to exit by itself, successfully: -C or -E.
func (s *mosquittoSub) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		if s.waitErr != nil {
			t.Fatalf("%s: %v:\n%s", s.name, s.waitErr, s.output.String())
		}
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v:\n%s", s.name, timeout, s.output.String())
	}
}

// kill ends it at once: the broker sees the connection drop, no DISCONNECT.
func (s *mosquittoSub) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", s.name, err)
	}
	<-s.done
}
