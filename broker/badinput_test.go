package broker

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// syncBuffer is a log sink the test can read while the broker writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBadInputIsLoggedWithItsReason checks that each kind of bad input
// closes only its connection and leaves a log line that says why.
// [MQTT-4.8.0-1] v3.1.1
func TestBadInputIsLoggedWithItsReason(t *testing.T) {
	connect := []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 3, 'b', 'a', 'd'}
	cases := []struct {
		name   string
		input  []byte
		reason string // a fragment the log line must carry
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, "malformed"},
		{"huge declared length", []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, "packet too large"},
		{"wildcard topic", []byte{0x30, 6, 0, 3, 'a', '/', '#', 'x'}, "topic name invalid"},
		{"invalid UTF-8", []byte{0x30, 5, 0, 2, 0xc3, 0x28, 'x'}, "UTF-8"},
		{"second CONNECT", connect, "second CONNECT"},
		{"bad reserved bits", []byte{0x80, 6, 0, 1, 0, 1, 'a', 0}, "flags"},
		{"QoS 3", []byte{0x36, 6, 0, 1, 'a', 0, 1, 'x'}, "QoS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			srv := startServer(t, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			addr := srv.Addrs()[0].String()

			bystander := dialConnect(t, addr, "ok")
			bad := dialConnect(t, addr, "bad")
			if _, err := bad.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			bad.SetReadDeadline(time.Now().Add(wiretest.Timeout))
			if n, err := bad.Read(make([]byte, 16)); err == nil {
				t.Fatalf("read %d bytes, want the connection closed", n)
			} else if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection was not closed")
			}
			// The log line is written before the socket closes.
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "protocol violation") && strings.Contains(l, "client=bad") {
					line = l
				}
			}
			if !strings.Contains(line, tc.reason) {
				t.Fatalf("no protocol-violation log line for client bad mentioning %q; logs:\n%s", tc.reason, logs.String())
			}
			// The other client is served as before.
			bystander.SetDeadline(time.Now().Add(wiretest.Timeout))
			bystander.Write([]byte{0xc0, 0})
			pong := make([]byte, 2)
			if _, err := io.ReadFull(bystander, pong); err != nil || pong[0] != 0xd0 {
				t.Fatalf("bystander: got % x, %v", pong, err)
			}
		})
	}
}

// dialConnect opens a 3.1.1 connection with the given client id and reads its CONNACK.
func dialConnect(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pkt := append([]byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(id))}, id...)
	c.SetDeadline(time.Now().Add(wiretest.Timeout))
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK for %s: % x, %v", id, ack, err)
	}
	c.SetDeadline(time.Time{})
	return c
}
