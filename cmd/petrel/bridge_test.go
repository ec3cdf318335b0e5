package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/testpki"
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

// The bridges' files are read before anything starts: the password
// (trimmed), the CA and the client certificate; a missing one is an error
// naming it.
func TestBridgeConfigFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "remote CA")
	leaf := ca.Client(t, &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "site1"}})
	files := map[string][]byte{"pw": []byte("  s3cret\n"), "ca.crt": ca.PEM, "c.crt": leaf.CertPEM, "c.key": leaf.KeyPEM}
	for name, data := range files {
		testpki.WriteFile(t, filepath.Join(dir, name), data)
	}
	yaml := fmt.Sprintf(`bridges:
  - name: cloud
    url: mqtts://cloud.example.com
    protocol: 3.1.1
    username: site1
    password_file: %[1]s/pw
    max_queued_messages: 10
    tls: {ca_file: %[1]s/ca.crt, cert_file: %[1]s/c.crt, key_file: %[1]s/c.key}
    topics: [{pattern: "s/#", qos: 1, remote_prefix: "site1/"}]
`, dir)
	cfgs, err := bridgeConfigs(parseTestConfig(t, yaml), discardLog)
	if err != nil {
		t.Fatal(err)
	}
	bc := cfgs[0]
	if string(bc.Password) != "s3cret" || bc.Username != "site1" || bc.Version != packet.V311 {
		t.Errorf("password %q, username %q, version %d", bc.Password, bc.Username, bc.Version)
	}
	if bc.TLS == nil || bc.TLS.RootCAs == nil || len(bc.TLS.Certificates) != 1 {
		t.Errorf("TLS %+v: want the CA and one client certificate", bc.TLS)
	}
	if len(bc.Rules) != 1 || bc.Rules[0].Direction != "out" || bc.Rules[0].QoS != 1 {
		t.Errorf("rules %+v", bc.Rules)
	}
	// The bridge's session on the broker is bounded as its section says.
	limits := bridgeQueueLimits(parseTestConfig(t, yaml))
	if m, b := limits("bridge-cloud"); m != 10 || b != 0 {
		t.Errorf("bridge-cloud's bounds: %d, %d; want 10, 0 (0: the mqtt section's)", m, b)
	}
	if m, b := limits("someone"); m != 0 || b != 0 {
		t.Errorf("another session's bounds: %d, %d; want the mqtt section's", m, b)
	}
	os.Remove(filepath.Join(dir, "pw"))
	if _, err := bridgeConfigs(parseTestConfig(t, yaml), discardLog); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "pw")) {
		t.Errorf("missing password file: %v, want an error naming it", err)
	}
}
