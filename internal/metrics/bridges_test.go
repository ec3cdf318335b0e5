package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/bridge"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// A bridge's state is in the metrics, labelled with its name: connected,
// and the messages it carried out.
func TestMetricsBridges(t *testing.T) {
	start := func() *broker.Server {
		srv := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}, NodeName: "n"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	local, remote := start(), start()
	b, err := bridge.New(bridge.Config{Name: "up", Addr: remote.Addrs()[0].String(), Local: local.DialInternal,
		Rules: []bridge.Rule{{Pattern: "m/#", Direction: bridge.Out, QoS: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(local, BuildInfo{}, Bridges(local, []*bridge.Bridge{b}))
	scrapeBridge := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var lines []string
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, "petrel_bridge_") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	want := `petrel_bridge_connected{bridge="up",node="n"} 0
petrel_bridge_link_failures_total{bridge="up",node="n"} 0
petrel_bridge_messages_dropped_total{bridge="up",node="n"} 0
petrel_bridge_messages_received_total{bridge="up",node="n"} 0
petrel_bridge_messages_sent_total{bridge="up",node="n"} 0
petrel_bridge_queued_bytes{bridge="up",node="n"} 0
petrel_bridge_queued_messages{bridge="up",node="n"} 0`
	if got := scrapeBridge(); got != want {
		t.Fatalf("before the start:\n%s\nwant\n%s", got, want)
	}

	defer b.Start()()
	deadline := time.Now().Add(10 * time.Second)
	for !b.State().Connected {
		if time.Now().After(deadline) {
			t.Fatal("the bridge did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, _, err := client.Connect(context.Background(), client.Options{Addr: local.Addrs()[0].String(), CleanStart: true, ClientID: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Publish(context.Background(), &packet.Publish{Topic: "m/x", QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for b.State().Sent < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("state %+v: 3 messages not sent", b.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := scrapeBridge()
	for _, line := range []string{`petrel_bridge_connected{bridge="up",node="n"} 1`, `petrel_bridge_messages_sent_total{bridge="up",node="n"} 3`} {
		if !strings.Contains(got, line) {
			t.Errorf("no %s in\n%s", line, got)
		}
	}
}
