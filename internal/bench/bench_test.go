package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// childEnv, when set, makes the test binary one of the processes of a
// --procs run (TestProcs): "addr index board base runID".
const childEnv = "PETREL_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		var addr string
		var c Child
		if _, err := fmt.Sscan(v, &addr, &c.Index, &c.Board, &c.Base, &c.RunID); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		if err := RunChild(context.Background(), procsConfig(addr), c, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testBroker runs a broker on a free loopback port and returns its address.
func testBroker(t *testing.T, opts broker.Options) string {
	t.Helper()
	_, addr := testServer(t, opts)
	return addr
}

// testServer is testBroker that returns the broker too.
func testServer(t *testing.T, opts broker.Options) (*broker.Server, string) {
	t.Helper()
	opts.Listeners = []broker.ListenerConfig{{Address: "127.0.0.1:0"}}
	s := broker.New(opts)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
	return s, "tcp://127.0.0.1:" + port
}

// testConfig is petrel bench's defaults against addr: MQTT 3.1.1, clean
// sessions, no progress lines.
func testConfig(addr string, mode Mode) Config {
	c := Defaults()
	c.Mode = mode
	c.Client = client.Options{Addr: addr, Version: packet.V311, CleanStart: true, KeepAlive: time.Minute}
	c.NoProgress = true
	return c
}

// run runs cfg and fails the test unless it ran.
func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run %s: %v", cfg.Mode, err)
	}
	return r
}

// checkSane checks what every report must have: connections, the
// generator's CPU figure, and no errors.
func checkSane(t *testing.T, r *Report, conns uint64) {
	t.Helper()
	if r.Connect.OK != conns || r.Connect.Failed != 0 || r.Connect.PerS <= 0 {
		t.Errorf("connect: %+v, want %d up and none failed", r.Connect, conns)
	}
	if r.CPU.WallS <= 0 || r.CPU.Seconds <= 0 || r.CPU.Percent <= 0 || r.CPU.GOMAXPROCS < 1 {
		t.Errorf("bench cpu figure missing: %+v", r.CPU)
	}
	if r.Errors.Total != 0 || len(r.Errors.Kinds) != 0 {
		t.Errorf("errors: %+v", r.Errors)
	}
}

// checkLatency checks the percentiles' order.
func checkLatency(t *testing.T, l *LatencyStats, samples uint64) {
	t.Helper()
	if l == nil || l.Samples != samples {
		t.Fatalf("latency: %+v, want %d samples", l, samples)
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
}

func TestConn(t *testing.T) {
	cfg := testConfig(testBroker(t, broker.Options{}), Conn)
	cfg.Conns, cfg.ConnRate, cfg.Duration, cfg.BrokerPIDs = 40, 2000, 200*time.Millisecond, []int{os.Getpid()}
	r := run(t, cfg)
	checkSane(t, r, 40)
	if r.ElapsedS < 0.2 || r.Connect.Seconds < 0.015 {
		t.Errorf("held %.2f s (want ≥ 0.2), connected in %.3f s (40 at 2000/s: ≥ 0.0195)", r.ElapsedS, r.Connect.Seconds)
	}
	if runtime.GOOS != "linux" {
		return // the broker's figures come from /proc
	}
	if r.Broker == nil || r.Broker.RSSBeforeKiB <= 0 || r.Broker.RSSLoadedKiB <= 0 ||
		r.Broker.AnonBeforeKiB <= 0 || r.Broker.AnonLoadedKiB <= 0 || r.Broker.AnonBeforeKiB > r.Broker.RSSBeforeKiB {
		t.Errorf("BrokerPIDs: %+v", r.Broker)
	}
}

// TestConnStorm: a storm's pieces. Clients spread over --sources local
// addresses, subscribe with --subscribe, and on the next run resume their
// sessions, which the report counts.
func TestConnStorm(t *testing.T) {
	var mu sync.Mutex
	sources := map[string]int{}
	present := 0
	srv := broker.New(broker.Options{
		Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}},
		Hooks: broker.Hooks{OnConnect: func(c *auth.Client, sessionPresent bool) {
			host, _, _ := net.SplitHostPort(c.RemoteAddr.String())
			mu.Lock()
			sources[host]++
			if sessionPresent {
				present++
			}
			mu.Unlock()
		}},
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(srv.Addrs()[0].String())
	cfg := testConfig("tcp://127.0.0.1:"+port, Conn)
	cfg.Client.Version, cfg.Client.CleanStart = packet.V5, false
	cfg.Client.SessionExpiry = 3600
	cfg.Conns, cfg.Sources, cfg.ConnFilter, cfg.QoS, cfg.Duration = 60, 4, "storm/%i", 1, 50*time.Millisecond
	r := run(t, cfg)
	checkSane(t, r, 60)
	if r.Connect.Resumed != 0 {
		t.Errorf("first run: %d sessions resumed, want 0", r.Connect.Resumed)
	}
	if got := srv.Stats().Subscriptions; got != 60 {
		t.Errorf("after the first run the broker has %d subscriptions, want 60 (one per client)", got)
	}
	mu.Lock()
	if len(sources) != 4 || sources["127.0.0.1"] != 15 || sources["127.0.0.4"] != 15 {
		t.Errorf("connections by source address: %v, want 15 from each of 127.0.0.1 to 127.0.0.4", sources)
	}
	mu.Unlock()

	cfg.ConnFilter = ""
	r = run(t, cfg)
	checkSane(t, r, 60)
	mu.Lock()
	defer mu.Unlock()
	if r.Connect.Resumed != 60 || present != 60 {
		t.Errorf("second run: the report says %d sessions resumed and the broker %d, want 60", r.Connect.Resumed, present)
	}
}

// TestPubSub: every message published at QoS 1 and 2 arrives at every
// subscriber, once, and is timed.
func TestPubSub(t *testing.T) {
	addr := testBroker(t, broker.Options{})
	for _, qos := range []int{0, 1, 2} {
		cfg := testConfig(addr, PubSub)
		cfg.Pubs, cfg.Subs, cfg.QoS, cfg.Count, cfg.Inflight = 3, 2, qos, 1500, 16
		r := run(t, cfg)
		checkSane(t, r, 5)
		p, rc := r.Publish, r.Receive
		if p == nil || p.Sent != 4500 || p.Acked != 4500 || p.PerS <= 0 || p.MBPerS <= 0 {
			t.Fatalf("QoS %d publish: %+v", qos, p)
		}
		if rc == nil || !rc.LossChecked || rc.Expected != 9000 || rc.PerS <= 0 {
			t.Fatalf("QoS %d receive: %+v", qos, rc)
		}
		if qos != 0 && (rc.Lost != 0 || rc.Received != 9000 || rc.Duplicates != 0) {
			t.Errorf("QoS %d: %d lost, %d received, %d duplicates of 9000", qos, rc.Lost, rc.Received, rc.Duplicates)
		}
		checkLatency(t, r.Latency, rc.Received-rc.Foreign)
	}
}

// TestBackpressure: with a small window publishers wait for the subscriber
// and nothing is lost.
func TestBackpressure(t *testing.T) {
	cfg := testConfig(testBroker(t, broker.Options{}), PubSub)
	cfg.Pubs, cfg.Subs, cfg.QoS, cfg.Count, cfg.Window = 2, 1, 1, 2000, 20
	r := run(t, cfg)
	checkSane(t, r, 3)
	if r.Publish.Waits == 0 || r.Receive.Lost != 0 || r.Receive.Received != 4000 {
		t.Errorf("window 20: %d waits, %d lost, %d received", r.Publish.Waits, r.Receive.Lost, r.Receive.Received)
	}
}

// TestPubAndSub: the pub and sub modes in separate runs see each other's
// messages; pub paces itself with Rate.
func TestPubAndSub(t *testing.T) {
	addr := testBroker(t, broker.Options{})
	sub := testConfig(addr, Sub)
	sub.Subs, sub.Topic, sub.QoS, sub.Count, sub.Duration = 2, "ps/#", 1, 300, 8*time.Second
	type outcome struct {
		r   *Report
		err error
	}
	subDone := make(chan outcome, 1)
	go func() {
		r, err := Run(context.Background(), sub)
		subDone <- outcome{r, err}
	}()
	// The publishers run for a second: the subscribers, which connect in
	// milliseconds, get most of it.
	pub := testConfig(addr, Pub)
	pub.Pubs, pub.Topic, pub.QoS, pub.Rate, pub.Duration = 2, "ps/%i", 1, 1000, time.Second
	pr := run(t, pub)
	checkSane(t, pr, 2)
	if p := pr.Publish; p.Sent < 800 || p.Sent > 1100 || p.Acked != p.Sent {
		t.Errorf("pub at Rate 1000 for 1s: %+v", p)
	}
	o := <-subDone
	if o.err != nil {
		t.Fatalf("sub: %v", o.err)
	}
	checkSane(t, o.r, 2)
	if o.r.Receive == nil || o.r.Receive.Received < 600 {
		t.Errorf("sub received %+v, want ≥ 600", o.r.Receive)
	}
}

// procsConfig is TestProcs's run, which its processes build again.
func procsConfig(addr string) Config {
	cfg := testConfig(addr, PubSub)
	cfg.Pubs, cfg.Subs, cfg.QoS, cfg.Count, cfg.Procs = 3, 2, 1, 1000, 2
	return cfg
}

// TestProcs: two processes share the clients, and the run adds up their
// results, latency across processes included.
func TestProcs(t *testing.T) {
	addr := testBroker(t, broker.Options{})
	cfg := procsConfig(addr)
	var stderr lockedBuffer
	cfg.Stderr = &stderr
	cfg.Spawn = func(c Child) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s %d %d", childEnv, addr, c.Index, c.Board, c.Base, c.RunID))
		return cmd, nil
	}
	r := run(t, cfg)
	checkSane(t, r, 5)
	if r.CPU.Procs != 2 || r.Receive.Lost != 0 || r.Receive.Received != 6000 || r.Publish.Sent != 3000 {
		t.Errorf("Procs 2: procs %d, sent %d, received %d, lost %d; stderr:\n%s", r.CPU.Procs, r.Publish.Sent,
			r.Receive.Received, r.Receive.Lost, stderr.String())
	}
	checkLatency(t, r.Latency, 6000)
}

// TestOverload: unpaced publishers (Window 0, as the overload presets)
// outrun the subscriber, and the run reports what was acknowledged but
// never delivered. Against a broker with a small queue, that
// backpressure keeps at none.
func TestOverload(t *testing.T) {
	for _, qos := range []int{1, 2} {
		cfg := testConfig(testBroker(t, broker.Options{MaxQueuedMessages: 100}), PubSub)
		cfg.Pubs, cfg.Subs, cfg.QoS, cfg.Window, cfg.Count = 16, 1, qos, 0, 1000
		cfg.Topic, cfg.Filter = "bench/overload", "bench/overload"
		r := run(t, cfg)
		checkSane(t, r, 17)
		if r.Publish.Sent != 16000 || r.Receive.Lost != 0 || r.Receive.Received != 16000 {
			t.Errorf("QoS %d: sent %d, received %d, lost %d", qos, r.Publish.Sent, r.Receive.Received, r.Receive.Lost)
		}
	}
}

// TestInterrupt: a run whose context ends still reports, after a progress
// line each second.
func TestInterrupt(t *testing.T) {
	cfg := testConfig(testBroker(t, broker.Options{}), Pub)
	var stderr lockedBuffer
	cfg.Pubs, cfg.Interval, cfg.NoProgress, cfg.Stderr = 2, 5*time.Millisecond, false, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.WriteSummary(&out)
	if !r.Interrupted || !strings.Contains(out.String(), "(interrupted)") || !strings.Contains(out.String(), "msgs/s") ||
		!strings.Contains(stderr.String(), "sent") {
		t.Errorf("interrupted: %v\nsummary:\n%s\nprogress:\n%s", r.Interrupted, out.String(), stderr.String())
	}
}

// TestReportJSON: the report's JSON has the names scripts/benchtable reads.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(&Report{Mode: PubSub, Receive: &ReceiveStats{}, Latency: &LatencyStats{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"mode":"pubsub"`, `"msgs_per_s"`, `"duplicates"`, `"latency_ms"`, `"bench_cpu"`, `"percent"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Mode = "nonsense" }, "Unknown mode"},
		{func(c *Config) { c.Interval, c.Rate = time.Millisecond, 5 }, "cannot be used together"},
		{func(c *Config) { c.Mode, c.Size = PubSub, 8 }, "at least 20 bytes"},
		{func(c *Config) { c.Topic = "a/+" }, "Invalid publish topic"},
		{func(c *Config) { c.Mode, c.Filter = PubSub, "a/#/b" }, "Invalid filter"},
		{func(c *Config) { c.Mode, c.ConnFilter = Conn, "a/#/b" }, "Invalid filter"},
		{func(c *Config) { c.ConnFilter = "a/b" }, "--subscribe is for conn"},
		{func(c *Config) { c.Sources = 300 }, "at most 254"},
		{func(c *Config) { c.Sources, c.Client.Addr = 4, "tcp://192.0.2.1:1883" }, "only a broker on loopback"},
		{func(c *Config) {
			c.Sources, c.Client.Dialer = 4, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)}}
		}, "cannot be used together"},
		{func(c *Config) {
			c.Mode, c.Sources, c.Addrs = Conn, 4, []string{"tcp://127.0.0.1:1", "tcp://192.0.2.1:1883"}
		}, "only a broker on loopback, not tcp://192.0.2.1:1883"},
		{func(c *Config) { c.Mode, c.PubAddrs = Conn, []string{"tcp://127.0.0.1:1"} }, "--pub-addr is for pub and pubsub"},
		{func(c *Config) { c.Mode, c.PubAddrs = Sub, []string{"tcp://127.0.0.1:1"} }, "--pub-addr is for pub and pubsub"},
		{func(c *Config) { c.SubAddrs = []string{"tcp://127.0.0.1:1"} }, "--sub-addr is for sub and pubsub"},
		{func(c *Config) { c.Addrs = []string{"tcp://127.0.0.1:1", ""} }, "empty broker address"},
	} {
		cfg := testConfig("tcp://127.0.0.1:1", Pub)
		tc.change(&cfg)
		if err := cfg.Complete(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", cfg, err, tc.want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]string{"1": "[1]", "0-3,6": "[0 1 2 3 6]", "2-2,0": "[2 0]"} {
		if got, err := ParseCPUList(in); err != nil || fmt.Sprint(got) != want {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3-1", "-1", "a", "1,", "0-5000"} {
		if got, err := ParseCPUList(in); err == nil {
			t.Errorf("ParseCPUList(%q) = %v; want an error", in, got)
		}
	}
}

// TestHistogram: every value lands in a bucket that holds it, buckets are
// within 1/64 of their values, and quantiles come out in order.
func TestHistogram(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1e9, 1<<40 - 1} {
		i := histBucket(v)
		if lo, w := histLow(i), histWidth(i); v < lo || v >= lo+w {
			t.Errorf("%d in bucket %d = [%d, %d)", v, i, lo, lo+w)
		} else if v >= 128 && float64(w)/float64(v) > 1.0/64 {
			t.Errorf("%d: bucket width %d is more than 1/64 of it", v, w)
		}
	}
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 1000) // 1µs to 100ms
	}
	p50, p99 := h.quantile(0.5), h.quantile(0.99)
	if p50 < 49e6 || p50 > 51e6 || p99 < 98e6 || p99 > 100e6 || h.max.Load() != 100e6 {
		t.Errorf("uniform 1µs-100ms: p50 %d, p99 %d, max %d", p50, p99, h.max.Load())
	}
	var m histogram
	m.mergeWire(h.wire())
	if m.quantile(0.5) != p50 || m.n.Load() != 100000 {
		t.Errorf("histogram through the wire: p50 %d, n %d", m.quantile(0.5), m.n.Load())
	}
}

// TestReceiveAllocs: counting and timing a message allocates nothing.
func TestReceiveAllocs(t *testing.T) {
	cfg := testConfig("", PubSub)
	cfg.Pubs, cfg.Subs = 2, 1
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	topo := newTopology(&cfg)
	r := newProcRun(&cfg, topo, newBoard(1, cfg.Pubs, cfg.Subs, topo.pairs), 0, 1, monoNow(), 7)
	s := r.newSub(0)
	payload := make([]byte, 64)
	m := &client.Message{Topic: "bench/1", Payload: payload}
	seq := uint32(0)
	allocs := testing.AllocsPerRun(1000, func() {
		binary.LittleEndian.PutUint64(payload, uint64(r.now()))
		binary.LittleEndian.PutUint32(payload[8:], 7)
		binary.LittleEndian.PutUint32(payload[12:], 1)
		binary.LittleEndian.PutUint32(payload[16:], seq)
		seq++
		s.onMessage(m)
	})
	if allocs != 0 {
		t.Errorf("onMessage: %.1f allocations per message", allocs)
	}
	if got := r.b.pairUnique(topo.subPair[0] + 1).Load(); got != 1001 || s.dups.Load() != 0 {
		t.Errorf("pair (sub 0, pub 1): %d unique, %d duplicates after 1001 in-order messages", got, s.dups.Load())
	}
}

// lockedBuffer is an output the run's goroutines and processes share with
// the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClientAddr: which broker each client gets, round-robin, and the
// report's counts of them.
func TestClientAddr(t *testing.T) {
	const a, b, c = "tcp://a:1", "tcp://b:2", "tcp://c:3"
	addrs := func(cfg *Config, kind string, n int) string {
		var out []string
		for i := range n {
			out = append(out, strings.TrimPrefix(cfg.clientAddr(kind, i), "tcp://")[:1])
		}
		return strings.Join(out, "")
	}
	for _, tc := range []struct {
		name              string
		mode              Mode
		conns, pubs, subs int
		addrs, pubA, subA []string
		wantConn          string // each client's broker, by the first letter
		wantPub, wantSub  string
		wantUsed          string
		wantBy            []AddrClients
	}{
		{name: "one broker", mode: PubSub, pubs: 2, subs: 2, wantPub: "xx", wantSub: "xx", wantUsed: "tcp://x:9",
			wantBy: []AddrClients{{Addr: "tcp://x:9", Pubs: 2, Subs: 2}}},
		{name: "conn", mode: Conn, conns: 7, addrs: []string{a, b, c}, wantConn: "abcabca", wantUsed: a + "," + b + "," + c,
			wantBy: []AddrClients{{Addr: a, Conns: 3}, {Addr: b, Conns: 2}, {Addr: c, Conns: 2}}},
		// Publishers count on from the subscribers: one of each on two
		// brokers are on different ones.
		{name: "pubsub 1+1", mode: PubSub, pubs: 1, subs: 1, addrs: []string{a, b}, wantPub: "b", wantSub: "a",
			wantUsed: a + "," + b, wantBy: []AddrClients{{Addr: a, Subs: 1}, {Addr: b, Pubs: 1}}},
		{name: "pubsub 4+2", mode: PubSub, pubs: 4, subs: 2, addrs: []string{a, b, c}, wantPub: "cabc", wantSub: "ab",
			wantUsed: a + "," + b + "," + c, wantBy: []AddrClients{{Addr: a, Pubs: 1, Subs: 1}, {Addr: b, Pubs: 1, Subs: 1}, {Addr: c, Pubs: 2}}},
		{name: "pub", mode: Pub, pubs: 4, addrs: []string{a, b}, wantPub: "abab", wantUsed: a + "," + b,
			wantBy: []AddrClients{{Addr: a, Pubs: 2}, {Addr: b, Pubs: 2}}},
		// Cross-node: publishers on one, subscribers on another.
		{name: "pub-addr, sub-addr", mode: PubSub, pubs: 3, subs: 2, pubA: []string{a}, subA: []string{b, c},
			wantPub: "aaa", wantSub: "bc", wantUsed: a + "," + b + "," + c,
			wantBy: []AddrClients{{Addr: a, Pubs: 3}, {Addr: b, Subs: 1}, {Addr: c, Subs: 1}}},
		// One overridden: the other kind keeps Addrs, from its own index.
		{name: "sub-addr only", mode: PubSub, pubs: 3, subs: 1, addrs: []string{a, b}, subA: []string{c},
			wantPub: "aba", wantSub: "c", wantUsed: a + "," + b + "," + c,
			wantBy: []AddrClients{{Addr: a, Pubs: 2}, {Addr: b, Pubs: 1}, {Addr: c, Subs: 1}}},
		// A broker no client reaches is named but not counted.
		{name: "more brokers than clients", mode: Sub, subs: 1, subA: []string{a, b}, wantSub: "a", wantUsed: a + "," + b,
			wantBy: []AddrClients{{Addr: a, Subs: 1}}},
	} {
		cfg := testConfig("tcp://x:9", tc.mode)
		cfg.Conns, cfg.Pubs, cfg.Subs = tc.conns, tc.pubs, tc.subs
		cfg.Addrs, cfg.PubAddrs, cfg.SubAddrs = tc.addrs, tc.pubA, tc.subA
		if err := cfg.Complete(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := addrs(&cfg, connKind, cfg.Conns); got != tc.wantConn {
			t.Errorf("%s: connections on %q, want %q", tc.name, got, tc.wantConn)
		}
		if got := addrs(&cfg, pubKind, cfg.Pubs); got != tc.wantPub {
			t.Errorf("%s: publishers on %q, want %q", tc.name, got, tc.wantPub)
		}
		if got := addrs(&cfg, subKind, cfg.Subs); got != tc.wantSub {
			t.Errorf("%s: subscribers on %q, want %q", tc.name, got, tc.wantSub)
		}
		if got := strings.Join(cfg.UsedAddrs(), ","); got != tc.wantUsed {
			t.Errorf("%s: UsedAddrs %s, want %s", tc.name, got, tc.wantUsed)
		}
		if got := cfg.byAddr(); fmt.Sprint(got) != fmt.Sprint(tc.wantBy) {
			t.Errorf("%s: byAddr %+v, want %+v", tc.name, got, tc.wantBy)
		}
	}
}

// TestConnAddrs: conn's clients spread over two brokers, and the report
// says how; --broker-pid's several processes are summed (here this one,
// twice).
func TestConnAddrs(t *testing.T) {
	s1, a1 := testServer(t, broker.Options{})
	s2, a2 := testServer(t, broker.Options{})
	cfg := testConfig(a1, Conn)
	cfg.Addrs = []string{a1, a2}
	cfg.Conns, cfg.Duration, cfg.BrokerPIDs = 9, 50*time.Millisecond, []int{os.Getpid(), os.Getpid()}
	r := run(t, cfg)
	checkSane(t, r, 9)
	if n1, n2 := s1.Stats().ClientsMaximum, s2.Stats().ClientsMaximum; n1 != 5 || n2 != 4 {
		t.Errorf("brokers saw %d and %d connections, want 5 and 4", n1, n2)
	}
	want := []AddrClients{{Addr: a1, Conns: 5}, {Addr: a2, Conns: 4}}
	if p := r.Params; p.Addr != a1+","+a2 || fmt.Sprint(p.ByAddr) != fmt.Sprint(want) {
		t.Errorf("params: addr %s, by addr %+v; want %+v", p.Addr, p.ByAddr, want)
	}
	var out bytes.Buffer
	r.WriteSummary(&out)
	for _, line := range []string{"petrel bench conn: 2 brokers, MQTT 3.1.1, 9 connections",
		"  brokers   " + a1 + ": 5 connections\n            " + a2 + ": 4 connections\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, out.String())
		}
	}
	if runtime.GOOS != "linux" {
		return // the broker's figures come from /proc
	}
	br := r.Broker
	if br == nil || len(br.PIDs) != 2 || len(br.PerPID) != 2 || br.PID != os.Getpid() ||
		br.RSSLoadedKiB != br.PerPID[0].RSSLoadedKiB+br.PerPID[1].RSSLoadedKiB || br.PerPID[0].RSSLoadedKiB <= 0 {
		t.Fatalf("two broker pids: %+v", br)
	}
	pid := fmt.Sprint(os.Getpid())
	if !strings.Contains(out.String(), "  brokers   pids "+pid+"+"+pid+" together: ") ||
		!strings.Contains(out.String(), "            pid "+pid+": ") {
		t.Errorf("summary lacks the brokers' pids:\n%s", out.String())
	}
}

// TestPubAddrs: --pub-addr spreads publishers; the report names their
// brokers.
func TestPubAddrs(t *testing.T) {
	s1, a1 := testServer(t, broker.Options{})
	s2, a2 := testServer(t, broker.Options{})
	cfg := testConfig("tcp://127.0.0.1:1", Pub) // Client.Addr is not used
	cfg.PubAddrs = []string{a1, a2}
	cfg.Pubs, cfg.Count, cfg.QoS = 4, 50, 1
	r := run(t, cfg)
	checkSane(t, r, 4)
	if n1, n2 := s1.Stats().ClientsMaximum, s2.Stats().ClientsMaximum; n1 != 2 || n2 != 2 {
		t.Errorf("brokers saw %d and %d publishers, want 2 each", n1, n2)
	}
	if r.Publish == nil || r.Publish.Acked != 200 {
		t.Errorf("publish: %+v", r.Publish)
	}
	if p := r.Params; p.Addr != a1+","+a2 || fmt.Sprint(p.PubAddrs) != fmt.Sprint([]string{a1, a2}) || p.SubAddrs != nil {
		t.Errorf("params: %+v", p)
	}
}
