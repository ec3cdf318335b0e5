//go:build interop

package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A peer is an MQTT client in another process that the test drives line by
// line: paho_peer.py (Python paho-mqtt), mqttjs_peer.js (MQTT.js in Node)
// and browser_peer.js (MQTT.js in headless Chromium).
//
// The protocol: the peer prints {"ev":"ready","client":"<name and version>"}
// once it can take commands. The test writes one JSON command a line on
// the peer's standard input:
//
//	{"op":"connect","url":"mqtt://h:p" or "ws://h:p/mqtt","id":"...","version":4|5,
//	 "clean":true|false,"expiry":seconds (MQTT 5),"will":{"topic","payload","qos","retain"}}
//	{"op":"subscribe","topic":"filter","qos":0|1|2}
//	{"op":"publish","topic":"...","payload":"...","qos":0|1|2,"retain":true|false}
//	{"op":"disconnect"}   DISCONNECT, then close
//	{"op":"drop"}         close the connection without DISCONNECT, like a crash
//
// and the peer answers each, in order, with one line: {"ev":"<op>", ...}
// (connect adds "session_present", subscribe "granted"), or
// {"ev":"error","op":"<op>","error":"..."}. A publish is answered once its
// QoS flow is complete. Received messages are printed whenever they arrive
// as {"ev":"message","topic","payload","qos","retain"}. The peer exits when
// its standard input closes.
type peer struct {
	name     string
	stdin    io.WriteCloser
	replies  chan event
	messages chan message
	done     chan struct{} // closed once the process has exited
	waitErr  error         // how it exited, once done is closed
	stderr   syncBuffer
}

// event is one line a peer printed.
type event struct {
	Ev             string `json:"ev"`
	Op             string `json:"op"`
	Error          string `json:"error"`
	Client         string `json:"client"`
	SessionPresent bool   `json:"session_present"`
	Granted        []int  `json:"granted"`
	// Value is what a dashboard_driver.js command answers.
	Value json.RawMessage `json:"value"`
	message
}

type will struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain"`
}

type connectOptions struct {
	URL     string `json:"url"`
	ID      string `json:"id"`
	Version int    `json:"version"`
	Clean   bool   `json:"clean"`
	// Expiry is the MQTT 5 Session Expiry Interval in seconds.
	Expiry int   `json:"expiry,omitempty"`
	Will   *will `json:"will,omitempty"`
}

// startPeer runs argv in the package directory and waits for it to be ready.
func startPeer(t *testing.T, name string, env []string, argv ...string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), env...)
	// Its own process group, so that ending it ends what it started too
	// (browser_peer.js starts Chromium).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	p := &peer{
		name:     name,
		replies:  make(chan event, 100),
		messages: make(chan message, 1000),
		done:     make(chan struct{}),
	}
	cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: start %v: %v", name, argv, err)
	}
	go func() {
		p.read(stdout)
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		defer cancel()
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(timeout):
			t.Errorf("%s did not exit within %v of its input closing; killed", name, timeout)
			cancel()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	// Chromium can take several seconds to start on a busy machine.
	ready := p.replyWithin(t, "ready", 3*timeout)
	t.Logf("%s: %s", name, ready.Client)
	return p
}

// read sorts the peer's lines into replies and messages, then closes both.
func (p *peer) read(stdout io.Reader) {
	defer close(p.replies)
	defer close(p.messages)
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64*1024), 1<<20)
	for lines.Scan() {
		var ev event
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			p.replies <- event{Ev: "error", Error: fmt.Sprintf("unreadable line %q: %v", lines.Text(), err)}
			continue
		}
		if ev.Ev == "message" {
			p.messages <- ev.message
			continue
		}
		p.replies <- ev
	}
}

func (p *peer) String() string { return p.name }

// reply waits for the answer to op.
func (p *peer) reply(t *testing.T, op string) event {
	t.Helper()
	return p.replyWithin(t, op, timeout)
}

func (p *peer) replyWithin(t *testing.T, op string, wait time.Duration) event {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case ev, ok := <-p.replies:
		switch {
		case !ok:
			<-p.done
			t.Fatalf("%s exited (%v) before answering %s; stderr:\n%s", p.name, p.waitErr, op, p.stderr.String())
		case ev.Ev == "error":
			t.Fatalf("%s: %s: %s", p.name, op, ev.Error)
		case ev.Ev != op:
			t.Fatalf("%s answered %q to %s", p.name, ev.Ev, op)
		}
		return ev
	case <-timer.C:
		t.Fatalf("%s: no answer to %s within %v", p.name, op, wait)
		return event{}
	}
}

// do sends a command and waits for its answer.
func (p *peer) do(t *testing.T, op string, cmd any) event {
	t.Helper()
	fields := map[string]any{}
	if cmd != nil {
		b, err := json.Marshal(cmd)
		if err != nil {
			t.Fatalf("%s: encode %s: %v", p.name, op, err)
		}
		if err := json.Unmarshal(b, &fields); err != nil {
			t.Fatalf("%s: encode %s: %v", p.name, op, err)
		}
	}
	fields["op"] = op
	line, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("%s: encode %s: %v", p.name, op, err)
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: send %s: %v", p.name, op, err)
	}
	return p.reply(t, op)
}

// connect returns whether the broker had a session for the client.
func (p *peer) connect(t *testing.T, o connectOptions) (sessionPresent bool) {
	t.Helper()
	return p.do(t, "connect", o).SessionPresent
}

// subscribe returns the granted QoS.
func (p *peer) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	ev := p.do(t, "subscribe", map[string]any{"topic": filter, "qos": qos})
	if len(ev.Granted) != 1 {
		t.Fatalf("%s: subscribe %s: granted %v, want one answer", p.name, filter, ev.Granted)
	}
	return byte(ev.Granted[0])
}

// publish returns once the peer has the QoS 1 or 2 acknowledgement.
func (p *peer) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	p.do(t, "publish", message{Topic: topic, Payload: payload, QoS: qos, Retain: retain})
}

// disconnect sends DISCONNECT. It fails if the peer had received messages
// the test did not expect: the peer printed them before its answer.
func (p *peer) disconnect(t *testing.T) {
	t.Helper()
	p.do(t, "disconnect", nil)
	expectNoMore(t, p)
}

// drop closes the connection without DISCONNECT.
func (p *peer) drop(t *testing.T) {
	t.Helper()
	p.do(t, "drop", nil)
}

func (p *peer) receive(wait time.Duration) (message, error) {
	return receiveFrom(p.messages, wait, func() error {
		<-p.done
		return fmt.Errorf("%s exited (%v); stderr: %s", p.name, p.waitErr, strings.TrimSpace(p.stderr.String()))
	})
}
