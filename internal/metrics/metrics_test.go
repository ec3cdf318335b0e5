package metrics

import (
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// The handler is scraped over HTTP (httptest) after known traffic from raw
// clients over real TCP, and the text it serves is parsed as Prometheus
// would: every petrel_ metric has the exact value the traffic gives.

// scrape fetches the handler's text and parses it into samples keyed by
// name and labels, `name{a="x",b="y"}` (labels sorted), and the families'
// types. Every sample must carry the label node with srv's node name; it
// is left out of the keys.
func scrape(t *testing.T, srv *broker.Server, build BuildInfo) (map[string]float64, map[string]dto.MetricType) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(srv, build).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want Prometheus text", ct)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse the metrics: %v", err)
	}
	samples, types := map[string]float64{}, map[string]dto.MetricType{}
	for name, f := range fams {
		types[name] = f.GetType()
		for _, m := range f.GetMetric() {
			var labels []string
			node := false
			for _, l := range m.GetLabel() {
				if l.GetName() == NodeLabel {
					node = true
					if l.GetValue() != srv.NodeName() {
						t.Errorf("%s: node=%q, want %q", name, l.GetValue(), srv.NodeName())
					}
					continue
				}
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if !node {
				t.Errorf("%s %v: no node label", name, m.GetLabel())
			}
			slices.Sort(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				samples[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				samples[key] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				samples[key] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				samples[key+"_count"] = float64(h.GetSampleCount())
				samples[key+"_sum"] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					samples[fmt.Sprintf("%s_bucket{le=\"%g\"}", key, b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_SUMMARY:
				samples[key+"_count"] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return samples, types
}

// traffic is a broker and raw clients whose bytes are counted: the
// broker's bytes received and sent.
type traffic struct {
	t     *testing.T
	srv   *broker.Server
	bytes wiretest.ByteCounter
}

func (tr *traffic) dial(name string, version byte) *wiretest.Client {
	tr.t.Helper()
	nc, err := net.Dial("tcp", tr.srv.Addrs()[0].String())
	if err != nil {
		tr.t.Fatal(err)
	}
	return wiretest.New(tr.t, tr.bytes.Wrap(nc), name, version)
}

func (tr *traffic) connect(id string, version byte, clean bool) (*wiretest.Client, *packet.Connack) {
	tr.t.Helper()
	c := tr.dial(id, version)
	p := &packet.Connect{Version: version, ClientID: id, CleanStart: clean}
	if version == packet.V5 {
		p.KeepAlive = 60 // above the broker's maximum, which it is told in CONNACK
	}
	return c, c.SendConnect(p)
}

// Known traffic, and every broker metric after it, exactly: three
// clients connect, one subscribes at QoS 2, one publishes at each QoS
// (QoS 2 flows completed on both sides), to nobody, and a retained
// message; one disconnects, one is cut off by its keep alive, one loses
// its connection, one is refused. Then the broker shuts down.
func TestMetricsAfterKnownTraffic(t *testing.T) {
	start := time.Now()
	srv := broker.New(broker.Options{
		Listeners:       []broker.ListenerConfig{{Address: "127.0.0.1:0"}},
		NodeName:        "node-m",
		ServerKeepAlive: 100 * time.Millisecond, // binds the MQTT 5 client only: the others ask for none
		SysInterval:     -1,                     // no retained $SYS messages among those counted
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tr := &traffic{t: t, srv: srv}

	sub, _ := tr.connect("sub", packet.V311, true)
	sub.Subscribe("t/#", 2)
	pub, _ := tr.connect("pub", packet.V311, true)
	const q0, q1, q2 = 3, 2, 2
	for i := range q0 {
		pub.Publish("t/a", fmt.Sprint(i), 0, 0, false)
	}
	for i := range q1 {
		pub.SendPublish(&packet.Publish{Topic: "t/b", Payload: []byte("one"), QoS: 1, PacketID: uint16(10 + i)})
	}
	for i := range q2 {
		pid := uint16(20 + i)
		pub.SendPublish(&packet.Publish{Topic: "t/c", Payload: []byte("two"), QoS: 2, PacketID: pid})
		pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
		pub.ExpectAck(packet.PUBCOMP, pid)
	}
	pub.Publish("nobody/listens", "lost", 0, 0, false)
	pub.Publish("r/x", "kept", 0, 0, true)
	pub.Ping()

	// The subscriber takes everything, completing each flow.
	pubs, rels := 0, 0
	for pubs < q0+q1+q2 || rels < q2 {
		switch p := sub.Next().(type) {
		case *packet.Publish:
			pubs++
			switch p.QoS {
			case 1:
				sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			case 2:
				sub.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
			}
		case *packet.Ack:
			if p.Kind != packet.PUBREL {
				t.Fatalf("subscriber got %s", p.Kind)
			}
			rels++
			sub.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
		default:
			t.Fatalf("subscriber got %s", p.Type())
		}
	}
	sub.Ping()

	pub.Disconnect()
	ka, _ := tr.connect("ka", packet.V5, true)
	ka.ExpectDisconnect(packet.KeepAliveTimeout)
	lost, _ := tr.connect("lost", packet.V311, true)
	lost.Conn.Close()
	refused, ack := tr.connect("", packet.V311, false)
	if ack.Code != packet.ConnRefusedIdentifierRejected {
		t.Fatalf("CONNACK 0x%02x for an empty client id without clean session, want 0x02", byte(ack.Code))
	}
	refused.ExpectClosed()

	want := map[string]float64{
		`petrel_build_info{goversion="` + runtime.Version() + `",version="v9.9.9-test"}`: 1,

		"petrel_clients_connected":      1,
		"petrel_sessions":               1,
		"petrel_subscriptions":          1,
		"petrel_shared_subscriptions":   0,
		"petrel_retained_messages":      1,
		"petrel_queued_messages":        0,
		"petrel_queued_bytes":           0,
		"petrel_inflight_messages":      0,
		"petrel_held_back_connections":  0,
		"petrel_sessions_expired_total": 0,

		"petrel_connections_accepted_total":                     5,
		`petrel_connack_sent_total{reason_code="0x00"}`:         4,
		`petrel_connack_sent_total{reason_code="0x85"}`:         1,
		`petrel_disconnects_total{reason="client_disconnect"}`:  1,
		`petrel_disconnects_total{reason="keep_alive_timeout"}`: 1,
		`petrel_disconnects_total{reason="connection_lost"}`:    1,

		`petrel_packets_received_total{type="connect"}`:    5,
		`petrel_packets_received_total{type="subscribe"}`:  1,
		`petrel_packets_received_total{type="publish"}`:    q0 + q1 + q2 + 2,
		`petrel_packets_received_total{type="puback"}`:     q1,
		`petrel_packets_received_total{type="pubrec"}`:     q2,
		`petrel_packets_received_total{type="pubrel"}`:     q2,
		`petrel_packets_received_total{type="pubcomp"}`:    q2,
		`petrel_packets_received_total{type="pingreq"}`:    2,
		`petrel_packets_received_total{type="disconnect"}`: 1,

		`petrel_packets_sent_total{type="connack"}`:    5,
		`petrel_packets_sent_total{type="suback"}`:     1,
		`petrel_packets_sent_total{type="publish"}`:    q0 + q1 + q2,
		`petrel_packets_sent_total{type="puback"}`:     q1,
		`petrel_packets_sent_total{type="pubrec"}`:     q2,
		`petrel_packets_sent_total{type="pubrel"}`:     q2,
		`petrel_packets_sent_total{type="pubcomp"}`:    q2,
		`petrel_packets_sent_total{type="pingresp"}`:   2,
		`petrel_packets_sent_total{type="disconnect"}`: 1,

		`petrel_messages_received_total{qos="0"}`: q0 + 2,
		`petrel_messages_received_total{qos="1"}`: q1,
		`petrel_messages_received_total{qos="2"}`: q2,
		`petrel_messages_sent_total{qos="0"}`:     q0,
		`petrel_messages_sent_total{qos="1"}`:     q1,
		`petrel_messages_sent_total{qos="2"}`:     q2,

		`petrel_messages_dropped_total{reason="no_subscribers"}`: 1,
		`petrel_authentication_total{result="anonymous"}`:        4,
		"petrel_sessions_taken_over_total":                       0,
		// The retained message is the one write to the store.
		"petrel_store_commit_duration_seconds_count": 1,
	}
	// Everything counted below; the labels not listed are 0.
	check := func(step string) map[string]float64 {
		t.Helper()
		var got map[string]float64
		var missing []string
		deadline := time.Now().Add(wiretest.Timeout)
		for {
			got, _ = scrape(t, srv, BuildInfo{Version: "v9.9.9-test"})
			want["petrel_bytes_received_total"] = float64(tr.bytes.Written.Load())
			want["petrel_bytes_sent_total"] = float64(tr.bytes.Read.Load())
			missing = missing[:0]
			for key, v := range got {
				if !strings.HasPrefix(key, "petrel_") || strings.Contains(key, "_seconds") && !strings.HasSuffix(key, "_count") ||
					key == "petrel_store_size_bytes" {
					continue
				}
				if w := want[key]; v != w {
					missing = append(missing, fmt.Sprintf("%s = %v, want %v", key, v, w))
				}
			}
			for key := range want {
				if _, ok := got[key]; !ok {
					missing = append(missing, key+" absent")
				}
			}
			if len(missing) == 0 {
				return got
			}
			if time.Now().After(deadline) {
				slices.Sort(missing)
				t.Fatalf("%s:\n  %s", step, strings.Join(missing, "\n  "))
			}
			time.Sleep(time.Millisecond)
		}
	}
	got := check("after the traffic")
	if started := got["petrel_start_time_seconds"]; started < float64(start.Unix()) || started > float64(time.Now().Unix()+1) {
		t.Errorf("petrel_start_time_seconds %v, not between the test's start and now", started)
	}
	if got["petrel_store_size_bytes"] <= 0 {
		t.Errorf("petrel_store_size_bytes %v with a retained message in the store", got["petrel_store_size_bytes"])
	}
	if b := got[`petrel_store_commit_duration_seconds_bucket{le="10"}`]; b != 1 {
		t.Errorf("commit latency's last bucket %v, want 1", b)
	}

	srv.Close()
	sub.ExpectClosed()
	want["petrel_clients_connected"], want["petrel_sessions"], want["petrel_subscriptions"] = 0, 0, 0
	want[`petrel_disconnects_total{reason="server_shutdown"}`] = 1
	check("after Close")
}

// The handler's other families: the Go runtime's and the process's
// collectors, and the types and names Prometheus expects (counters end
// in _total, base units).
func TestMetricsFamilies(t *testing.T) {
	srv := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	samples, types := scrape(t, srv, BuildInfo{})
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total",
		"process_resident_memory_bytes"} {
		if _, ok := types[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if v := samples[`petrel_build_info{goversion="`+runtime.Version()+`",version="`+srv.Stats().Version+`"}`]; v != 1 {
		t.Errorf("petrel_build_info without a BuildInfo: %v; have %v", v, keysWith(samples, "petrel_build_info"))
	}
	wantTypes := map[string]dto.MetricType{}
	for _, g := range []string{"build_info", "start_time_seconds", "clients_connected", "sessions", "subscriptions",
		"shared_subscriptions", "retained_messages", "queued_messages", "queued_bytes", "inflight_messages",
		"held_back_connections", "store_size_bytes"} {
		wantTypes["petrel_"+g] = dto.MetricType_GAUGE
	}
	for _, c := range []string{"connections_accepted", "connack_sent", "disconnects", "packets_received",
		"packets_sent", "bytes_received", "bytes_sent", "messages_received", "messages_sent", "messages_dropped",
		"authentication", "authorization", "sessions_expired", "sessions_taken_over"} {
		wantTypes["petrel_"+c+"_total"] = dto.MetricType_COUNTER
	}
	wantTypes["petrel_store_commit_duration_seconds"] = dto.MetricType_HISTOGRAM
	for name, typ := range types {
		if !strings.HasPrefix(name, "petrel_") {
			continue
		}
		if want, ok := wantTypes[name]; !ok || want != typ {
			t.Errorf("%s: %v, not in the list (or not %v)", name, typ, want)
		}
		delete(wantTypes, name)
	}
	for name := range wantTypes {
		t.Errorf("%s missing", name)
	}
}

// Every metric, the runtime's and the process's too, carries the label
// node with the broker's node name (Options.NodeName, by default the host
// name): the nodes of a cluster are told apart.
func TestMetricsNodeLabel(t *testing.T) {
	for _, name := range []string{"node-a", ""} {
		srv := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}, NodeName: name})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		if name == "" {
			host, err := os.Hostname()
			if err != nil || host == "" {
				continue // no host name: no default to check
			}
			name = host
		}
		if got := srv.NodeName(); got != name {
			t.Errorf("NodeName %q, want %q", got, name)
		}
		rec := httptest.NewRecorder()
		Handler(srv, BuildInfo{Version: "v9.9.9-test"}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		want := `petrel_build_info{goversion="` + runtime.Version() + `",node="` + name + `",version="v9.9.9-test"} 1`
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no line %s in:\n%.2000s", want, body)
		}
		samples, _ := scrape(t, srv, BuildInfo{}) // checks the label of every sample
		if len(samples) == 0 {
			t.Fatal("no metrics")
		}
	}
}

// Each handler has a registry of its own: two brokers in one process are
// served side by side, each with its own counts.
func TestMetricsOneRegistryPerBroker(t *testing.T) {
	var srvs [2]*broker.Server
	for i := range srvs {
		srvs[i] = broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
		if err := srvs[i].Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srvs[i].Close() })
	}
	for i := range 3 {
		c, _ := wiretest.MustConnect(t, srvs[1].Addrs()[0].String(), fmt.Sprint("c", i), true)
		c.Ping()
	}
	for i, want := range []float64{0, 3} {
		got, _ := scrape(t, srvs[i], BuildInfo{})
		if v := got["petrel_clients_connected"]; v != want {
			t.Errorf("broker %d: petrel_clients_connected %v, want %v", i, v, want)
		}
	}
	// And the handler answers a scrape that asks for gzip.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	Handler(srvs[0], BuildInfo{}).ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" {
		body, _ := io.ReadAll(rec.Body)
		t.Fatalf("gzip scrape: %d %q %.200s", rec.Code, rec.Header().Get("Content-Encoding"), body)
	}
}

func keysWith(m map[string]float64, prefix string) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys
}
