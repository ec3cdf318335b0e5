package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// TestPubMessageSources: -m, -f, -s, -l and -n, each what mosquitto_pub
// sends.
func TestPubMessageSources(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	col := cliCollect(t, port, packet.V311, "src/#", 1)
	file := filepath.Join(t.TempDir(), "payload")
	os.WriteFile(file, []byte("from a file\n\x00\xff"), 0o600)

	for _, tc := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"-t", "src/m", "-m", "hello"}},
		{"", []string{"-t", "src/f", "-f", file}},
		{"all\nof stdin\n", []string{"-t", "src/s", "-s"}},
		{"", []string{"-t", "src/n", "-n"}},
		{"one\n\nthree\nfour without newline", []string{"-t", "src/l", "-l", "-q", "1"}},
	} {
		if code, _, stderr := cliPub(t, tc.stdin, append(tc.args, "-p", port)...); code != 0 {
			t.Fatalf("pub %v: exit %d, %s", tc.args, code, stderr)
		}
	}
	want := []struct{ topic, payload string }{
		{"src/m", "hello"}, {"src/f", "from a file\n\x00\xff"}, {"src/s", "all\nof stdin\n"}, {"src/n", ""},
		{"src/l", "one"}, {"src/l", ""}, {"src/l", "three"}, {"src/l", "four without newline"},
	}
	for i, m := range col.wait(t, len(want)) {
		if m.Topic != want[i].topic || string(m.Payload) != want[i].payload {
			t.Errorf("message %d: %s %q, want %s %q", i, m.Topic, m.Payload, want[i].topic, want[i].payload)
		}
	}
}

// TestPubLinesPipelined: many lines at QoS 1 and 2 through a small window
// all arrive, in order.
func TestPubLinesPipelined(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	col := cliCollect(t, port, packet.V5, "lines", 2)
	var in strings.Builder
	const n = 500
	for i := range n {
		in.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	for _, qos := range []string{"1", "2"} {
		if code, _, stderr := cliPub(t, in.String(), "-p", port, "-V", "5", "-t", "lines", "-l", "-q", qos, "-M", "5"); code != 0 {
			t.Fatalf("pub -l -q %s: exit %d, %s", qos, code, stderr)
		}
	}
	for i, m := range col.wait(t, 2*n) {
		if want := strings.Repeat("x", i%n%7); string(m.Payload) != want {
			t.Fatalf("message %d: %q, want %q", i, m.Payload, want)
		}
	}
}

// TestPubQoSRetainRepeat: the QoS and retain flags reach the broker, and
// --repeat publishes again.
func TestPubQoSRetainRepeat(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	for _, v := range []string{"311", "5"} {
		for _, qos := range []string{"0", "1", "2"} {
			mustPub(t, "-p", port, "-V", v, "-t", "r/"+v+"/"+qos, "-m", "kept "+qos, "-q", qos, "-r")
		}
	}
	col := cliCollect(t, port, packet.V5, "r/#", 2)
	got := map[string]*client.Message{}
	for _, m := range col.wait(t, 6) {
		got[m.Topic] = m
	}
	for _, v := range []string{"311", "5"} {
		for q, qos := range []string{"0", "1", "2"} {
			m := got["r/"+v+"/"+qos]
			if m == nil || !m.Retain || string(m.Payload) != "kept "+qos || int(m.QoS) != q {
				t.Errorf("retained r/%s/%s: %+v", v, qos, m)
			}
		}
	}
	// An empty retained message clears the retained one.
	mustPub(t, "-p", port, "-t", "r/5/1", "-n", "-r")
	col2 := cliCollect(t, port, packet.V311, "r/5/#", 1)
	col2.wait(t, 2)
	time.Sleep(200 * time.Millisecond)
	col2.mu.Lock()
	for _, m := range col2.msgs {
		if m.Topic == "r/5/1" || len(col2.msgs) != 2 {
			t.Errorf("after clearing r/5/1: %d retained messages, one on %s", len(col2.msgs), m.Topic)
		}
	}
	col2.mu.Unlock()

	col3 := cliCollect(t, port, packet.V311, "rep", 1)
	mustPub(t, "-p", port, "-t", "rep", "-m", "again", "-q", "1", "--repeat", "3", "--repeat-delay", "0.01")
	col3.wait(t, 3)
}

// TestPubV5Properties: -D PUBLISH properties arrive with the message.
func TestPubV5Properties(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	col := cliCollect(t, port, packet.V5, "props", 1)
	mustPub(t, "-p", port, "-t", "props", "-m", "{}", "-q", "1",
		"-D", "PUBLISH", "user-property", "k1", "v1",
		"-D", "PUBLISH", "user-property", "k1", "v2",
		"-D", "PUBLISH", "content-type", "application/json",
		"-D", "PUBLISH", "response-topic", "replies",
		"-D", "PUBLISH", "correlation-data", "abc",
		"-D", "PUBLISH", "message-expiry-interval", "60",
		"-D", "PUBLISH", "payload-format-indicator", "1",
		"-D", "CONNECT", "user-property", "who", "test",
		"-D", "DISCONNECT", "session-expiry-interval", "0")
	p := col.wait(t, 1)[0].Props
	if len(p.User) != 2 || p.User[0] != (packet.UserProperty{Key: "k1", Value: "v1"}) || p.User[1].Value != "v2" ||
		p.ContentType != "application/json" || p.ResponseTopic != "replies" || string(p.CorrelationData) != "abc" ||
		!p.Has(packet.PropMessageExpiry) || p.PayloadFormat != 1 {
		t.Errorf("properties received: %+v", p)
	}
}

// TestPubWill: a client that dies leaves its will; petrel pub, which
// disconnects cleanly, does not. The dying one is petrel sub in a child
// process, killed.
func TestPubWill(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	col := cliCollect(t, port, packet.V5, "will/#", 1)
	mustPub(t, "-p", port, "-t", "x", "-m", "y", "--will-topic", "will/pub", "--will-payload", "not sent")

	cmd := petrel("sub", "-p", port, "-t", "nothing", "-d", "-V", "5", "--will-topic", "will/sub",
		"--will-payload", "sub died", "--will-qos", "1", "--will-retain", "-D", "WILL", "content-type", "text/plain")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	subscribed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "received SUBACK") {
				close(subscribed)
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("petrel sub did not subscribe")
	}
	cmd.Process.Kill()
	m := col.wait(t, 1)[0]
	if m.Topic != "will/sub" || string(m.Payload) != "sub died" || m.Props.ContentType != "text/plain" {
		t.Errorf("will: %s %q %+v", m.Topic, m.Payload, m.Props)
	}
	time.Sleep(100 * time.Millisecond)
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.msgs) != 1 {
		t.Errorf("%d messages, want only the will of sub", len(col.msgs))
	}
}

// TestSubPersistentSession: sub -c -i creates a session (-E: and exits), pub
// publishes while it is away, sub -c -i gets the queued messages.
func TestSubPersistentSession(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	for _, v := range []string{"311", "5"} {
		t.Run(v, func(t *testing.T) {
			id := "durable-" + v
			s := cliSub(t, "-p", port, "-V", v, "-c", "-i", id, "-q", "1", "-t", "queued/"+v, "-E")
			if code := s.wait(t); code != 0 {
				t.Fatalf("sub -E: exit %d, %s", code, s.stderr.String())
			}
			mustPub(t, "-p", port, "-V", v, "-t", "queued/"+v, "-m", "first", "-q", "1")
			mustPub(t, "-p", port, "-V", v, "-t", "queued/"+v, "-m", "second", "-q", "2")
			s = cliSub(t, "-p", port, "-V", v, "-c", "-i", id, "-q", "1", "-t", "queued/"+v, "-C", "2", "-F", "%p %q")
			if code := s.wait(t); code != 0 {
				t.Fatalf("sub -C 2: exit %d, %s", code, s.stderr.String())
			}
			if got := s.stdout.String(); got != "first 1\nsecond 1\n" {
				t.Errorf("resumed session printed %q", got)
			}
			// A clean session (no -c) discards it.
			s = cliSub(t, "-p", port, "-V", v, "-i", id, "-t", "other", "-E")
			s.wait(t)
			mustPub(t, "-p", port, "-V", v, "-t", "queued/"+v, "-m", "lost", "-q", "1")
			s = cliSub(t, "-p", port, "-V", v, "-c", "-i", id, "-t", "other", "-W", "1")
			if code := s.wait(t); code != exitTimeout || s.stdout.String() != "" {
				t.Errorf("after a clean session: exit %d, printed %q", code, s.stdout.String())
			}
		})
	}
}

// TestPubErrors: usage mistakes exit 1 with mosquitto's messages; a
// refused connection exits with the CONNACK code.
func TestPubErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "a"}, "Both topic and message must be supplied."},
		{[]string{"-m", "a"}, "Both topic and message must be supplied."},
		{[]string{"-t", "a", "-m", "b", "-n"}, "Only one type of message can be sent at once."},
		{[]string{"-t", "a/#", "-m", "b"}, "Invalid publish topic 'a/#'"},
		{[]string{"-t", "a", "-m", "b", "-q", "5"}, "Invalid QoS given: 5"},
		{[]string{"-t", "a", "-m", "b", "--frobnicate"}, "Unknown option '--frobnicate'."},
		{[]string{"-t", "a", "-f", "/nonexistent/file"}, "Unable to read file"},
	} {
		code, _, stderr := cliPub(t, "", tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("pub %q: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	code, stdout, _ := cliPub(t, "", "--help")
	if code != 0 || !strings.Contains(stdout, "Usage: petrel pub") {
		t.Errorf("--help: exit %d, %q", code, stdout)
	}

	// Nobody listening.
	ln := freePort(t)
	code, _, stderr := cliPub(t, "", "-p", strconv.Itoa(ln), "-t", "a", "-m", "b")
	if code != 1 || !strings.Contains(stderr, "connection refused") {
		t.Errorf("no broker: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = cliPub(t, "", "-p", strconv.Itoa(ln), "-t", "a", "-m", "b", "--quiet")
	if code != 1 || stderr != "" {
		t.Errorf("--quiet: exit %d, stderr %q", code, stderr)
	}

	// Refused in CONNACK: the exit code is the reason code.
	no := false
	port := cliBroker(t, broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0", AllowAnonymous: &no}}})
	for _, tc := range []struct {
		v    string
		code int
	}{{"311", 5}, {"5", 135}} {
		code, _, stderr := cliPub(t, "", "-p", port, "-V", tc.v, "-t", "a", "-m", "b")
		if code != tc.code || !strings.Contains(stderr, "Connection Refused: not authorized") {
			t.Errorf("v%s refused: exit %d, stderr %q; want %d", tc.v, code, stderr, tc.code)
		}
	}
}

// TestPubRefusedPublish: a PUBACK with a failure code fails pub.
func TestPubRefusedPublish(t *testing.T) {
	port := cliBroker(t, broker.Options{Authorizer: denyTopic("secret")})
	code, _, stderr := cliPub(t, "", "-p", port, "-V", "5", "-t", "secret", "-m", "x", "-q", "1")
	if code != 1 || !strings.Contains(stderr, "not authorized") {
		t.Errorf("publish to a denied topic: exit %d, stderr %q", code, stderr)
	}
	mustPub(t, "-p", port, "-V", "5", "-t", "public", "-m", "x", "-q", "1")
}

// denyTopic is an Authorizer that refuses writes and reads of one topic.
type denyTopic string

func (d denyTopic) Allow(_ *auth.Client, _ auth.Access, topic string) bool { return topic != string(d) }
