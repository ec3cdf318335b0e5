package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/memstat"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// rawClient is one connection of TestShutdownWithManyClients.
type rawClient struct {
	nc      net.Conn
	version byte
	// After the shutdown: what arrived before the connection closed, and
	// the error that ended the reading (nil for a clean close).
	got []byte
	err error
}

// connectRaw dials addr and has CONNECT accepted, without the test's
// helpers: thousands of these run at once.
func connectRaw(addr, id string, version byte) (*rawClient, error) {
	nc, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
	if err != nil {
		return nil, err
	}
	c := &rawClient{nc: nc, version: version}
	b, err := packet.Append(nil, &packet.Connect{Version: version, ClientID: id, CleanStart: true}, version)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(wiretest.Timeout))
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return nil, err
	}
	// CONNACK: 2 bytes of fixed header (it is short), then the rest.
	head := make([]byte, 2)
	if _, err := io.ReadFull(nc, head); err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	body := make([]byte, head[1])
	if _, err := io.ReadFull(nc, body); err != nil || head[0] != 0x20 || len(body) < 2 || body[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("CONNACK % x % x (%v), want success", head, body, err)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// awaitClose reads until the broker closes the connection, then closes it
// too, as a client does on seeing the end.
func (c *rawClient) awaitClose(timeout time.Duration) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	c.got, c.err = io.ReadAll(c.nc)
	c.nc.Close()
}

// check says what is wrong with how the connection ended: an MQTT 5 client
// gets DISCONNECT 0x8B (Server shutting down), an MQTT 3.1.1 client just
// the close.
func (c *rawClient) check() error {
	if c.err != nil {
		return fmt.Errorf("not closed cleanly: %v (after % x)", c.err, c.got)
	}
	if c.version != packet.V5 {
		if len(c.got) > 0 {
			return fmt.Errorf("MQTT 3.1.1 client got % x before the close, want nothing", c.got)
		}
		return nil
	}
	dec := packet.Decoder{Version: packet.V5}
	p, n, err := wiretest.Decode(&dec, c.got)
	if err != nil {
		return fmt.Errorf("MQTT 5 client got % x: %v, want DISCONNECT 0x8B", c.got, err)
	}
	d, ok := p.(*packet.Disconnect)
	switch {
	case !ok:
		return fmt.Errorf("MQTT 5 client got %s, want DISCONNECT 0x8B", p.Type())
	case d.Code != packet.ServerShuttingDown:
		return fmt.Errorf("MQTT 5 client got DISCONNECT 0x%02X, want 0x8B", byte(d.Code))
	case n != len(c.got):
		return fmt.Errorf("MQTT 5 client got % x after DISCONNECT", c.got[n:])
	}
	return nil
}

// TestShutdownWithManyClients: with 10,000 clients connected, half MQTT 5
// and half MQTT 3.1.1, SIGTERM makes petrel send every MQTT 5 client
// DISCONNECT 0x8B (Server shutting down), close every connection, and exit
// with code 0 well within shutdown_timeout. It logs the time taken.
// PETREL_SHUTDOWN_CLIENTS sets the number of clients.
func TestShutdownWithManyClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 10,000 connections")
	}
	n := 10000
	if s := os.Getenv("PETREL_SHUTDOWN_CLIENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 2 {
			t.Fatalf("PETREL_SHUTDOWN_CLIENTS=%q: want a number of at least 2", s)
		}
	}
	// This process holds the clients' descriptors, the broker (which
	// inherits the limit) the other ends.
	if err := memstat.RaiseFileLimit(uint64(n) + 200); err != nil {
		t.Skipf("cannot open %d connections: %v", n, err)
	}
	const timeout = 10 * time.Second
	b := startLoggedBroker(t, "--data-dir", t.TempDir(), "--shutdown-timeout", timeout.String())

	clients := make([]*rawClient, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	connectStart := time.Now()
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && failed.Load() == nil; i = int(next.Add(1) - 1) {
				version := byte(packet.V5)
				if i%2 == 1 {
					version = packet.V311
				}
				c, err := connectRaw(b.addr, fmt.Sprintf("shutdown-%05d", i), version)
				if err != nil {
					err = fmt.Errorf("client %d: %w", i, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
				clients[i] = c
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.nc.Close()
			}
		}
	})
	if err := failed.Load(); err != nil {
		t.Fatalf("connecting %d clients: %v", n, *err)
	}
	t.Logf("%d clients connected in %v", n, time.Since(connectStart).Round(time.Millisecond))

	for _, c := range clients {
		wg.Go(func() { c.awaitClose(timeout + 5*time.Second) })
	}
	took := b.stop(t, syscall.SIGTERM, timeout+5*time.Second)
	wg.Wait()
	t.Logf("SIGTERM to exit with %d clients: %v (shutdown_timeout %v)", n, took.Round(time.Millisecond), timeout)
	if complete := b.find(t, "shutdown complete"); len(complete) == 1 {
		took, _ := complete[0]["took"].(float64)
		t.Logf("the broker's own measure, from the signal to the store closed: %v", time.Duration(took))
	}

	if b.err != nil {
		t.Errorf("exit after SIGTERM: %v, want code 0; the log ends:\n%s", b.err, tail(b.log(), 20))
	}
	if took > timeout {
		t.Errorf("the broker took %v to exit, more than shutdown_timeout %v", took, timeout)
	}
	bad := 0
	for i, c := range clients {
		if err := c.check(); err != nil {
			if bad++; bad <= 10 {
				t.Errorf("client %d: %v", i, err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d clients were not closed as they should be", bad, n)
	}
	told := b.find(t, "shutdown: stopped accepting; closing every connection")
	if len(told) != 1 || told[0]["connections"] != float64(n) || told[0]["mqtt5_disconnect_0x8b"] != float64(n/2) {
		t.Errorf("shutdown lines %v, want one with connections %d, mqtt5_disconnect_0x8b %d", told, n, n/2)
	}
	if gone := b.find(t, "client disconnected"); len(gone) != n {
		t.Errorf("%d disconnect lines, want %d", len(gone), n)
	} else {
		for _, m := range gone {
			if m["reason"] != "server_shutdown" {
				t.Errorf("disconnect line %v, want reason server_shutdown", m)
				break
			}
		}
	}
}

// TestShutdownKeepsAcknowledgedMessages: a QoS 1 message acknowledged just
// before SIGTERM is in the store when the broker starts again, for a
// persistent session that was offline. With store.sync periodic (and a
// sync interval longer than the test) it was on disk only because the
// shutdown committed and synced what was left.
func TestShutdownKeepsAcknowledgedMessages(t *testing.T) {
	for _, mode := range []string{"always", "periodic"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "petrel.yaml")
			yaml := fmt.Sprintf("store:\n  engine: pebble\n  sync: %s\n  sync_interval: 1m\n", mode)
			if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--config", conf, "--data-dir", filepath.Join(dir, "data")}
			b := startLoggedBroker(t, args...)
			sub, _ := wiretest.MustConnect(t, b.addr, "keeper", false)
			sub.Subscribe("kept/#", 1)
			sub.Disconnect()
			sub.Conn.Close()
			pub, _ := wiretest.MustConnect(t, b.addr, "publisher", true)
			// SendPublish reads the PUBACK.
			pub.SendPublish(&packet.Publish{Topic: "kept/1", Payload: []byte("acknowledged before SIGTERM"), QoS: 1, PacketID: 1})
			// The publisher stays connected, and closes when the broker does.
			go func() { io.Copy(io.Discard, pub.Conn); pub.Conn.Close() }()
			if took := b.stop(t, syscall.SIGTERM, 15*time.Second); b.err != nil {
				t.Fatalf("exit after SIGTERM (%v): %v\n%s", took, b.err, tail(b.log(), 20))
			}
			if len(b.find(t, "shutdown: pending store writes committed")) != 1 || len(b.find(t, "shutdown: store closed")) != 1 {
				t.Errorf("the log does not say the store was flushed and closed:\n%s", tail(b.log(), 10))
			}

			first := b
			b = startLoggedBroker(t, args...)
			var got []string
			wiretest.DrainSession(t, b.addr, "keeper", func(p *packet.Publish) { got = append(got, string(p.Payload)) })
			if len(got) != 1 || got[0] != "acknowledged before SIGTERM" {
				t.Fatalf("after the restart the session had %q, want the acknowledged message; the logs:\n%s\n\n%s",
					got, first.log(), b.log())
			}
		})
	}
}

// TestShutdownTimeoutExits: when closing takes longer than
// shutdown_timeout, petrel says so and exits with code 1 at the timeout,
// without waiting. Here a client that neither reads to the end nor closes
// holds its connection's close for a second (the drain after the
// half-close), and the timeout is 100 ms. The signal comes twice, as
// timeout(1) sends it: the second changes nothing.
func TestShutdownTimeoutExits(t *testing.T) {
	b := startLoggedBroker(t, "--store", "memory", "--shutdown-timeout", "100ms")
	// A client that stays: it sends CONNECT and never closes.
	wiretest.MustConnect(t, b.addr, "stays", true)
	b.cmd.Process.Signal(syscall.SIGTERM)
	took := b.stop(t, syscall.SIGTERM, 5*time.Second)
	if code := exitCode(b.err); code != 1 {
		t.Errorf("exit code %d (%v), want 1", code, b.err)
	}
	if took < 50*time.Millisecond || took > 900*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, want at the 100ms timeout, not at the connection's close (1s)", took)
	}
	const msg = "shutdown timed out: exiting without waiting for the rest"
	if len(b.find(t, msg)) != 1 {
		t.Errorf("no %q line; the log ends:\n%s", msg, tail(b.log(), 10))
	}
	if len(b.find(t, "shutdown complete")) != 0 {
		t.Error("a shutdown that was cut short says it completed")
	}
}
