//go:build interop

package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/bridge"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// startMosquitto runs Debian's mosquitto broker on a free loopback port
// until the test ends, and returns its address. Extra lines go at the end
// of its configuration.
func startMosquitto(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/mosquitto")
	}
	require(t, "mosquitto", err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\n" + strings.Join(extra, "\n") + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto does not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collector gathers "topic=payload@qos" of what a client receives.
type collector struct {
	mu  sync.Mutex
	got map[string]int
}

func (c *collector) add(m *client.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[fmt.Sprintf("%s=%s@%d", m.Topic, m.Payload, m.QoS)]++
}

// await waits until every one of want has arrived, failing the test after
// timeout.
func (c *collector) await(t *testing.T, what string, want []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		missing := ""
		for _, w := range want {
			if c.got[w] == 0 {
				missing = w
				break
			}
		}
		c.mu.Unlock()
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never arrived", what, missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connectCollector(t *testing.T, addr, id, filter string) *collector {
	t.Helper()
	col := &collector{got: map[string]int{}}
	c, _, err := client.Connect(context.Background(), client.Options{Addr: addr, Version: packet.V5,
		ClientID: id, CleanStart: true, OnMessage: col.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: filter, QoS: 2}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	return col
}

// A Petrel bridged to Debian's mosquitto, over MQTT 5 and 3.1.1, both
// ways: QoS 1 and 2 messages published on either broker reach the
// subscriber on the other under the other prefix, at the lower of the
// rule's QoS and their own, QoS 2 ones once.
func TestBridgeToMosquitto(t *testing.T) {
	maddr := startMosquitto(t)
	for _, v := range []struct {
		name    string
		version byte
	}{{"mqtt5", packet.V5}, {"mqtt311", packet.V311}} {
		t.Run(v.name, func(t *testing.T) {
			b := startBroker(t)
			prefix := "site-" + v.name + "/"
			br, err := bridge.New(bridge.Config{Name: v.name, Addr: "mqtt://" + maddr, Version: v.version,
				Local: b.srv.DialInternal, MinBackoff: 50 * time.Millisecond, Rules: []bridge.Rule{
					{Pattern: "up/#", Direction: bridge.Out, QoS: 2, RemotePrefix: prefix},
					{Pattern: "down/#", Direction: bridge.In, QoS: 1, RemotePrefix: prefix},
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer br.Start()()
			ctx := context.Background()
			deadline := time.Now().Add(timeout)
			for !br.State().Connected {
				if time.Now().After(deadline) {
					t.Fatal("the bridge did not connect to mosquitto")
				}
				time.Sleep(10 * time.Millisecond)
			}

			atMosquitto := connectCollector(t, maddr, "m-"+v.name, prefix+"up/#")
			atPetrel := connectCollector(t, b.host+":"+b.port, "p-"+v.name, "down/#")
			petrelPub, _, err := client.Connect(context.Background(), client.Options{Addr: b.host + ":" + b.port, Version: packet.V5, ClientID: "pub-p-" + v.name, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			defer petrelPub.Close()
			mosqPub, _, err := client.Connect(context.Background(), client.Options{Addr: maddr, Version: packet.V5, ClientID: "pub-m-" + v.name, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			defer mosqPub.Close()

			var wantM, wantP []string
			for i := range 50 {
				for _, qos := range []byte{1, 2} {
					payload := fmt.Sprintf("%d-%d", qos, i)
					if _, err := petrelPub.Publish(ctx, &packet.Publish{Topic: "up/a", QoS: qos, Payload: []byte(payload)}); err != nil {
						t.Fatal(err)
					}
					wantM = append(wantM, fmt.Sprintf("%sup/a=%s@%d", prefix, payload, qos))
					if _, err := mosqPub.Publish(ctx, &packet.Publish{Topic: prefix + "down/b", QoS: qos, Payload: []byte(payload)}); err != nil {
						t.Fatal(err)
					}
					wantP = append(wantP, fmt.Sprintf("down/b=%s@1", payload)) // the in rule's QoS 1
				}
			}
			atMosquitto.await(t, "at mosquitto", wantM)
			atPetrel.await(t, "at petrel", wantP)
			atMosquitto.mu.Lock()
			for k, n := range atMosquitto.got {
				if n > 1 && k[len(k)-1] == '2' {
					t.Errorf("at mosquitto: %s %d times, want once (QoS 2)", k, n)
				}
			}
			atMosquitto.mu.Unlock()
			st := br.State()
			if st.Sent < 100 || st.Received < 100 {
				t.Errorf("bridge state %+v: want at least 100 sent and 100 received", st)
			}
		})
	}
}

// Debian's mosquitto bridged into Petrel with Mosquitto's defaults: it
// connects with protocol level 0x84 (try_private) and a will on its state
// topic under $SYS (notifications), both of which Petrel once refused.
// Messages cross both ways, the bridge's state reads "1" at Petrel, and a
// topic bridged both ways does not loop: Petrel does not send the bridge
// back what it published.
func TestMosquittoBridgeIntoPetrel(t *testing.T) {
	b := startBroker(t)
	atPetrel := connectCollector(t, b.host+":"+b.port, "p-watch", "#")
	state := connectCollector(t, b.host+":"+b.port, "p-state", "$SYS/broker/connection/edge-bridge/state")
	maddr := startMosquitto(t,
		"connection petrel",
		"address "+b.host+":"+b.port,
		"remote_clientid edge-bridge",
		"topic edge/# out 1",
		"topic cloud/# in 1",
		"topic loop/# both 1")
	state.await(t, "the bridge's state at petrel", []string{"$SYS/broker/connection/edge-bridge/state=1@1"})

	atMosquitto := connectCollector(t, maddr, "m-watch", "#")
	ctx := context.Background()
	pub := func(addr, id string) *client.Client {
		c, _, err := client.Connect(ctx, client.Options{Addr: addr, Version: packet.V311, ClientID: id, CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	mosqPub, petrelPub := pub(maddr, "m-pub"), pub(b.host+":"+b.port, "p-pub")
	publish := func(c *client.Client, topic, payload string) {
		if _, err := c.Publish(ctx, &packet.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	publish(mosqPub, "edge/t", "up")
	publish(mosqPub, "loop/a", "from-mosquitto")
	atPetrel.await(t, "at petrel", []string{"edge/t=up@1", "loop/a=from-mosquitto@1"})
	publish(petrelPub, "cloud/t", "down")
	// Behind anything Petrel sent the bridge before it, loop/a's echo
	// included, had there been one.
	publish(petrelPub, "loop/b", "from-petrel")
	atMosquitto.await(t, "at mosquitto", []string{"cloud/t=down@1", "loop/b=from-petrel@1"})
	atMosquitto.mu.Lock()
	defer atMosquitto.mu.Unlock()
	if n := atMosquitto.got["loop/a=from-mosquitto@1"]; n != 1 {
		t.Errorf("at mosquitto: loop/a %d times, want once (no echo from Petrel)", n)
	}
}
