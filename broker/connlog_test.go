package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// jsonLog is the broker's log as JSON lines, for tests that check a line's
// fields.
type jsonLog struct{ buf syncBuffer }

// newJSONLog returns a logger at level that writes JSON lines to the log
// and to the test's log.
func newJSONLog(t testing.TB, level slog.Level) (*slog.Logger, *jsonLog) {
	l := &jsonLog{}
	w := io.MultiWriter(&l.buf, testlog.Writer(t))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), l
}

// lines decodes every line written so far.
func (l *jsonLog) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// await returns the lines with msg about client once there are n of them,
// and fails the test if there are not within wiretest.Timeout.
func (l *jsonLog) await(t testing.TB, msg, client string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(wiretest.Timeout)
	for {
		var found []map[string]any
		for _, m := range l.lines(t) {
			if m["msg"] == msg && m["client"] == client {
				found = append(found, m)
			}
		}
		if len(found) >= n {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %q lines for client %q after %v, want %d", len(found), msg, client, wiretest.Timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkFields fails t unless line holds each of want's keys with its value
// (as JSON decodes it: numbers are float64).
func checkFields(t testing.TB, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := line[k]; !ok || got != v {
			t.Errorf("%s line: %s = %v (present %v), want %v; line: %v", line["msg"], k, got, ok, v, line)
		}
	}
}

// checkDuration fails t unless the line's duration (nanoseconds) is at
// least min and below a minute.
func checkDuration(t testing.TB, line map[string]any, min time.Duration) {
	t.Helper()
	d, ok := line["duration"].(float64)
	if !ok || time.Duration(d) < min || time.Duration(d) > time.Minute {
		t.Errorf("disconnect line: duration %v, want between %v and 1m; line: %v", line["duration"], min, line)
	}
}

// TestConnectAndDisconnectAreLoggedAtInfo checks the one info line per
// accepted CONNECT and the one per end of such a connection, with its
// fields, for each way a connection ends that an operator most often sees.
func TestConnectAndDisconnectAreLoggedAtInfo(t *testing.T) {
	t.Run("normal DISCONNECT", func(t *testing.T) {
		log, lines := newJSONLog(t, slog.LevelInfo)
		srv := startServer(t, Options{Logger: log})
		addr := srv.Addrs()[0].String()
		c, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: "normal", CleanStart: true,
			KeepAlive: 30, UsernameFlag: true, Username: "alice"})
		local := c.Conn.LocalAddr().String()
		time.Sleep(20 * time.Millisecond) // a duration the line must show
		c.Disconnect()

		connected := lines.await(t, "client connected", "normal", 1)[0]
		checkFields(t, connected, map[string]any{"level": "INFO", "remote": local, "protocol": "3.1.1",
			"keep_alive": float64(30 * time.Second), "clean_start": true, "user": "alice", "listener": "tcp:127.0.0.1:0"})
		gone := lines.await(t, "client disconnected", "normal", 1)[0]
		checkFields(t, gone, map[string]any{"level": "INFO", "remote": local, "reason": "client_disconnect", "code": float64(0)})
		checkDuration(t, gone, 20*time.Millisecond)
	})

	t.Run("lost connection", func(t *testing.T) {
		log, lines := newJSONLog(t, slog.LevelInfo)
		srv := startServer(t, Options{Logger: log})
		c, _ := wiretest.Connect(t, srv.Addrs()[0].String(), &packet.Connect{Version: packet.V5, ClientID: "lost"})
		local := c.Conn.LocalAddr().String()
		c.Conn.Close()

		connected := lines.await(t, "client connected", "lost", 1)[0]
		checkFields(t, connected, map[string]any{"remote": local, "protocol": "5.0", "keep_alive": float64(0), "clean_start": false})
		if _, ok := connected["user"]; ok {
			t.Errorf("connect line of a client without a user name has one: %v", connected)
		}
		gone := lines.await(t, "client disconnected", "lost", 1)[0]
		checkFields(t, gone, map[string]any{"remote": local, "reason": "connection_lost"})
		checkDuration(t, gone, 0)
	})

	t.Run("keep alive timeout", func(t *testing.T) {
		log, lines := newJSONLog(t, slog.LevelInfo)
		// The server's keep alive replaces the client's none: 200 ms, so the
		// connection is closed 300 ms after CONNECT, at the next sweep.
		srv := startServer(t, Options{Logger: log, ServerKeepAlive: 200 * time.Millisecond})
		c, _ := wiretest.Connect(t, srv.Addrs()[0].String(), &packet.Connect{Version: packet.V5, ClientID: "silent", CleanStart: true})
		c.ExpectDisconnect(packet.KeepAliveTimeout)

		connected := lines.await(t, "client connected", "silent", 1)[0]
		checkFields(t, connected, map[string]any{"keep_alive": float64(200 * time.Millisecond)})
		gone := lines.await(t, "client disconnected", "silent", 1)[0]
		checkFields(t, gone, map[string]any{"reason": "keep_alive_timeout", "code": float64(packet.KeepAliveTimeout)})
		checkDuration(t, gone, 300*time.Millisecond)
	})

	t.Run("takeover", func(t *testing.T) {
		log, lines := newJSONLog(t, slog.LevelInfo)
		srv := startServer(t, Options{Logger: log})
		addr := srv.Addrs()[0].String()
		first, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V5, ClientID: "twice", CleanStart: true})
		firstAddr := first.Conn.LocalAddr().String()
		second, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: "twice", CleanStart: false})
		first.ExpectDisconnect(packet.SessionTakenOver)

		connected := lines.await(t, "client connected", "twice", 2)
		checkFields(t, connected[0], map[string]any{"remote": firstAddr, "protocol": "5.0", "clean_start": true})
		checkFields(t, connected[1], map[string]any{"remote": second.Conn.LocalAddr().String(), "protocol": "3.1.1", "clean_start": false})
		gone := lines.await(t, "client disconnected", "twice", 1)
		checkFields(t, gone[0], map[string]any{"remote": firstAddr, "reason": "taken_over", "code": float64(packet.SessionTakenOver)})
		if n := len(lines.await(t, "client disconnected", "twice", 1)); n != 1 {
			t.Errorf("%d disconnect lines while the second connection is open, want 1", n)
		}
	})

	t.Run("protocol error", func(t *testing.T) {
		log, lines := newJSONLog(t, slog.LevelInfo)
		srv := startServer(t, Options{Logger: log})
		c, _ := wiretest.Connect(t, srv.Addrs()[0].String(), &packet.Connect{Version: packet.V5, ClientID: "rude", CleanStart: true})
		c.SendRaw([]byte{0x10, 0}) // a second CONNECT, and a malformed one
		c.WaitClose(wiretest.Timeout)
		gone := lines.await(t, "client disconnected", "rude", 1)[0]
		checkFields(t, gone, map[string]any{"reason": "protocol_error"})
	})
}

// TestRefusedConnectIsNotLoggedAtInfo: a CONNECT that is refused never
// opened a connection the connect and disconnect lines speak of.
func TestRefusedConnectIsNotLoggedAtInfo(t *testing.T) {
	log, lines := newJSONLog(t, slog.LevelInfo)
	srv := startServer(t, Options{Logger: log, MaxClientIDLength: 23})
	c, ack := wiretest.Connect(t, srv.Addrs()[0].String(), &packet.Connect{Version: packet.V5, ClientID: strings.Repeat("x", 24)})
	if ack.Code != packet.ClientIdentifierNotValid {
		t.Fatalf("CONNACK 0x%02x for a client id over the maximum, want 0x85", byte(ack.Code))
	}
	c.WaitClose(wiretest.Timeout)
	for _, m := range lines.lines(t) {
		if m["msg"] == "client connected" || m["msg"] == "client disconnected" {
			t.Errorf("refused CONNECT logged: %v", m)
		}
	}
}

// TestPayloadsAreNeverLoggedAtInfo publishes, subscribes, leaves a will
// and has messages refused, with the log at debug, and finds no payload in
// a line at info or above.
func TestPayloadsAreNeverLoggedAtInfo(t *testing.T) {
	log, lines := newJSONLog(t, slog.LevelDebug)
	srv := startServer(t, Options{Logger: log, MaxPacketSize: 1024})
	addr := srv.Addrs()[0].String()
	secret := func(what string) []byte { return []byte("SECRET-" + what) }

	sub, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V5, ClientID: "sub", CleanStart: true})
	sub.Subscribe("t/#", 1)
	pub, _ := wiretest.Connect(t, addr, &packet.Connect{Version: packet.V5, ClientID: "pub", CleanStart: true,
		WillFlag: true, WillTopic: "t/will", WillPayload: secret("will")})
	pub.Send(&packet.Publish{Topic: "t/q0", Payload: secret("q0")})
	pub.Send(&packet.Publish{Topic: "t/q1", Payload: secret("q1"), QoS: 1, PacketID: 1, Retain: true})
	pub.ExpectAck(packet.PUBACK, 1)
	for range 2 {
		p := sub.NextPublish()
		if !bytes.HasPrefix(p.Payload, []byte("SECRET-")) {
			t.Fatalf("subscriber got %q", p.Payload)
		}
		if p.QoS == 1 {
			sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
	}
	// Larger than the broker's maximum packet size (a remaining length of
	// 0x408): the connection is closed, and the will goes out.
	pub.SendRaw(append([]byte{0x30, 0x88, 0x08, 0, 3, 't', '/', 'x'}, bytes.Repeat(secret("big"), 200)[:0x408-5]...))
	pub.WaitClose(wiretest.Timeout)
	if p := sub.NextPublish(); p.Topic != "t/will" {
		t.Fatalf("subscriber got %q, want the will", p.Topic)
	}
	lines.await(t, "client disconnected", "pub", 1)

	for _, m := range lines.lines(t) {
		level, _ := m["level"].(string)
		if level == "DEBUG" {
			continue
		}
		if line := fmt.Sprint(m); strings.Contains(line, "SECRET-") {
			t.Errorf("a payload in a %s line: %s", level, line)
		}
	}
}
