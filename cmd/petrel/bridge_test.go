package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// A bridge loses nothing acknowledged when its own broker crashes: a
// publisher streams 10,000 QoS 1 messages to a petrel that bridges them to
// another, the bridging petrel is killed (SIGKILL) a third of the way and
// started again on its data directory, the publisher goes on there, and
// every message acknowledged to it reaches the subscriber on the other
// broker.
func TestBridgeSurvivesLocalKill(t *testing.T) {
	const n = 10000
	remote := startBroker(t, t.TempDir())
	dir := t.TempDir()
	conf := filepath.Join(dir, "petrel.yaml")
	yaml := fmt.Sprintf("bridges:\n  - name: up\n    url: mqtt://%s\n    topics:\n      - {pattern: \"data/#\", direction: out, qos: 1, remote_prefix: \"site/\"}\n", remote.addr)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	local := startBroker(t, data, "--config", conf)

	var mu sync.Mutex
	got := make(map[string]bool)
	sub, _, err := client.Connect(context.Background(), client.Options{Addr: remote.addr, Version: packet.V5,
		ClientID: "far", CleanStart: true, OnMessage: func(m *client.Message) {
			mu.Lock()
			got[string(m.Payload)] = true
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: "site/data/#", QoS: 1}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}

	var acked []string
	ackedCh := make(chan string, n)
	var odd atomic.Int64
	connectPub := func(addr string) *client.Client {
		c, _, err := client.Connect(context.Background(), client.Options{Addr: addr, Version: packet.V5, ClientID: "near", CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pub := connectPub(local.addr)
	// The bridge's local session exists once a probe crosses: before it,
	// a message has no subscriber (PUBACK 0x10) and nothing to cross.
	deadline := time.Now().Add(30 * time.Second)
	for crossed := false; !crossed; {
		if time.Now().After(deadline) {
			t.Fatal("no probe crossed the bridge within 30s")
		}
		if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/probe", QoS: 1, Payload: []byte("probe")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		crossed = got["probe"]
		mu.Unlock()
	}
	// The bridge's state is in $SYS, as Mosquitto's.
	state := make(chan string, 4)
	watch, _, err := client.Connect(context.Background(), client.Options{Addr: local.addr, Version: packet.V5, ClientID: "watch",
		CleanStart: true, OnMessage: func(m *client.Message) { state <- string(m.Payload) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Subscribe(context.Background(), []packet.Subscription{{Filter: "$SYS/broker/connection/up/state"}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-state:
		if s != "1" {
			t.Errorf("$SYS/broker/connection/up/state %q, want 1", s)
		}
	case <-time.After(10 * time.Second):
		t.Error("no $SYS/broker/connection/up/state")
	}
	watch.Close()
	for i := range n {
		if i == n/3 {
			local.kill()
			pub.Close()
			local = startBroker(t, data, "--config", conf)
			pub = connectPub(local.addr)
		}
		payload := fmt.Sprint(i)
		err := pub.PublishAsync(context.Background(), &packet.Publish{Topic: "data/x", QoS: 1, Payload: []byte(payload)},
			func(code packet.ReasonCode, err error) {
				switch {
				case err == nil && code == packet.Success:
					ackedCh <- payload
				case err == nil:
					odd.Add(1) // 0x10 would mean the bridge's session was missing
				}
			})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// The last ones answered: a QoS 1 message sent after them is.
	if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "data/end", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	// Every answer has come: the end's in order after the rest, the first
	// connection's failures when it closed.
	for drained := false; !drained; {
		select {
		case p := <-ackedCh:
			acked = append(acked, p)
		default:
			drained = true
		}
	}
	if odd.Load() > 0 {
		t.Fatalf("%d messages answered with a reason code other than success", odd.Load())
	}
	if len(acked) < n/2 {
		t.Fatalf("only %d of %d messages acknowledged", len(acked), n)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing, first := 0, ""
		for _, p := range acked {
			if !got[p] {
				if missing == 0 {
					first = p
				}
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never crossed the bridge (lost), e.g. %s", missing, len(acked), first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d of %d messages acknowledged, all across the bridge", len(acked), n)
}
