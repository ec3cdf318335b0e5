package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
)

// runBenchCLI runs petrel bench in-process and returns its exit code and
// output.
func runBenchCLI(ctx context.Context, t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out bytes.Buffer
	errb := newSyncBuffer() // --procs children write to it too
	code := runBench(ctx, args, &out, errb)
	return code, out.String(), errb.String()
}

// benchJSON runs petrel bench with --json and decodes its result.
func benchJSON(t *testing.T, args ...string) *benchResult {
	t.Helper()
	code, out, stderr := runBenchCLI(context.Background(), t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("petrel bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("petrel bench %s: not one JSON object (%v):\n%s", strings.Join(args, " "), err, out)
	}
	if !strings.Contains(stderr, "bench cpu") {
		t.Errorf("petrel bench %s: no summary on stderr:\n%s", strings.Join(args, " "), stderr)
	}
	return &r
}

// checkSane checks what every result must have: connections, the
// generator's CPU figure, and no errors.
func checkSane(t *testing.T, r *benchResult, conns uint64) {
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
func checkLatency(t *testing.T, l *latResult, samples uint64) {
	t.Helper()
	if l == nil || l.Samples != samples {
		t.Fatalf("latency: %+v, want %d samples", l, samples)
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
}

func TestBenchConn(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	r := benchJSON(t, "conn", "-p", port, "-c", "40", "-R", "2000", "--duration", "0.2",
		"--broker-pid", strconv.Itoa(os.Getpid()))
	checkSane(t, r, 40)
	if r.ElapsedS < 0.2 || r.Connect.Seconds < 0.015 {
		t.Errorf("held %.2f s (want ≥ 0.2), connected in %.3f s (40 at 2000/s: ≥ 0.0195)", r.ElapsedS, r.Connect.Seconds)
	}
	if r.Broker == nil || r.Broker.RSSBeforeKiB <= 0 || r.Broker.RSSLoadedKiB <= 0 {
		t.Errorf("--broker-pid: %+v", r.Broker)
	}
}

// TestBenchPubSub: every message published at QoS 1 and 2 arrives at every
// subscriber, once, and is timed.
func TestBenchPubSub(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	for _, qos := range []string{"0", "1", "2"} {
		r := benchJSON(t, "pubsub", "-p", port, "--pubs", "3", "--subs", "2", "-q", qos, "--count", "1500",
			"--inflight", "16", "--no-progress")
		checkSane(t, r, 5)
		p, rc := r.Publish, r.Receive
		if p == nil || p.Sent != 4500 || p.Acked != 4500 || p.PerS <= 0 || p.MBPerS <= 0 {
			t.Fatalf("QoS %s publish: %+v", qos, p)
		}
		if rc == nil || !rc.LossChecked || rc.Expected != 9000 || rc.PerS <= 0 {
			t.Fatalf("QoS %s receive: %+v", qos, rc)
		}
		if qos != "0" && (rc.Lost != 0 || rc.Received != 9000 || rc.Duplicates != 0) {
			t.Errorf("QoS %s: %d lost, %d received, %d duplicates of 9000", qos, rc.Lost, rc.Received, rc.Duplicates)
		}
		checkLatency(t, r.Latency, rc.Received-rc.Foreign)
	}
}

// TestBenchBackpressure: with a small window publishers wait for the
// subscriber and nothing is lost.
func TestBenchBackpressure(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	r := benchJSON(t, "pubsub", "-p", port, "--pubs", "2", "--subs", "1", "-q", "1", "--count", "2000",
		"--window", "20", "--no-progress")
	checkSane(t, r, 3)
	if r.Publish.Waits == 0 || r.Receive.Lost != 0 || r.Receive.Received != 4000 {
		t.Errorf("window 20: %d waits, %d lost, %d received", r.Publish.Waits, r.Receive.Lost, r.Receive.Received)
	}
}

// TestBenchPubAndSub: the pub and sub modes in separate runs see each
// other's messages; pub paces itself with --rate.
func TestBenchPubAndSub(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	type outcome struct {
		out  string
		code int
		err  string
	}
	subDone := make(chan outcome, 1)
	go func() {
		code, out, stderr := runBenchCLI(context.Background(), t, "sub", "-p", port, "-c", "2", "-t", "ps/#",
			"-q", "1", "--count", "300", "--duration", "8", "--json", "--no-progress")
		subDone <- outcome{out, code, stderr}
	}()
	// The publishers run for a second: the subscribers, which connect in
	// milliseconds, get most of it.
	pr := benchJSON(t, "pub", "-p", port, "-c", "2", "-t", "ps/%i", "-q", "1", "--rate", "1000", "--duration", "1",
		"--no-progress")
	checkSane(t, pr, 2)
	if p := pr.Publish; p.Sent < 800 || p.Sent > 1100 || p.Acked != p.Sent {
		t.Errorf("pub at --rate 1000 for 1s: %+v", p)
	}
	o := <-subDone
	if o.code != 0 {
		t.Fatalf("sub: exit %d\n%s", o.code, o.err)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(o.out), &r); err != nil {
		t.Fatalf("sub: %v\n%s", err, o.out)
	}
	checkSane(t, &r, 2)
	if r.Receive == nil || r.Receive.Received < 600 {
		t.Errorf("sub received %+v, want ≥ 600", r.Receive)
	}
}

// TestBenchProcs: --procs 2 runs two processes sharing the clients and
// adds up their results, latency across processes included.
func TestBenchProcs(t *testing.T) {
	t.Setenv("PETREL_TEST_MAIN", "1")
	port := cliBroker(t, broker.Options{})
	r := benchJSON(t, "pubsub", "-p", port, "--pubs", "3", "--subs", "2", "-q", "1", "--count", "1000",
		"--procs", "2", "--no-progress")
	checkSane(t, r, 5)
	if r.CPU.Procs != 2 || r.Receive.Lost != 0 || r.Receive.Received != 6000 || r.Publish.Sent != 3000 {
		t.Errorf("--procs 2: procs %d, sent %d, received %d, lost %d", r.CPU.Procs, r.Publish.Sent,
			r.Receive.Received, r.Receive.Lost)
	}
	checkLatency(t, r.Latency, 6000)
}

// TestBenchPreset: a preset's flags, overridden by those given, and the
// list.
func TestBenchPreset(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	r := benchJSON(t, "preset", "fanin-q1", "-p", port, "--pubs", "4", "--count", "500", "--no-progress")
	checkSane(t, r, 5)
	p := r.Params
	if r.Preset != "fanin-q1" || p.Pubs != 4 || p.Subs != 1 || p.QoS != 1 || p.Inflight != 64 || p.Size != 64 ||
		p.DurationS != 10 || p.Filter != "bench/fanin/+" {
		t.Errorf("preset fanin-q1 with --pubs 4: %+v", p)
	}
	if r.Receive.Lost != 0 || r.Receive.Received != 2000 {
		t.Errorf("preset: received %d, lost %d", r.Receive.Received, r.Receive.Lost)
	}

	code, out, _ := runBenchCLI(context.Background(), t, "preset", "list")
	for _, name := range []string{"fanin-q0", "fanin-q1", "fanin-q2", "overload-q1", "overload-q2", "fanout-q0", "fanout-q1", "many-topics", "large", "idle-conns"} {
		if code != 0 || !strings.Contains(out, name) {
			t.Errorf("preset list: exit %d, %s missing:\n%s", code, name, out)
		}
	}
}

// TestBenchOverloadPreset: unpaced publishers outrun the subscriber, and
// the run reports what was acknowledged but never delivered. Against a
// broker with a small queue, that backpressure keeps at none.
func TestBenchOverloadPreset(t *testing.T) {
	for _, preset := range []string{"overload-q1", "overload-q2"} {
		port := cliBroker(t, broker.Options{MaxQueuedMessages: 100})
		r := benchJSON(t, "preset", preset, "-p", port, "--pubs", "16", "--count", "1000", "--no-progress")
		checkSane(t, r, 17)
		if r.Params.Pubs != 16 || r.Params.Subs != 1 || r.Params.Filter != "bench/overload" {
			t.Errorf("preset %s: %+v", preset, r.Params)
		}
		if r.Publish.Sent != 16000 || r.Receive.Lost != 0 || r.Receive.Received != 16000 {
			t.Errorf("preset %s: sent %d, received %d, lost %d", preset, r.Publish.Sent, r.Receive.Received, r.Receive.Lost)
		}
	}
}

// TestBenchInterrupt: an interrupted run still prints its results, after
// a progress line each second.
func TestBenchInterrupt(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	code, out, stderr := runBenchCLI(ctx, t, "pub", "-p", port, "-c", "2", "-I", "5ms")
	if code != 0 || !strings.Contains(out, "(interrupted)") || !strings.Contains(out, "msgs/s") ||
		!strings.Contains(stderr, "sent") {
		t.Errorf("interrupted: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nonsense"},
		{"preset", "nonsense"},
		{"pubsub", "-c", "3"},
		{"pub", "--pubs", "3"},
		{"pub", "-I", "10", "--rate", "5"},
		{"pubsub", "-s", "8"},
		{"pub", "-t", "a/+"},
		{"pub", "--cpus", "3-1"},
		{"pub", "-s", "12XB"},
	} {
		if code, _, stderr := runBenchCLI(context.Background(), t, args...); code != exitFail || !strings.Contains(stderr, "Error:") {
			t.Errorf("petrel bench %v: exit %d, %q; want a usage error", args, code, stderr)
		}
	}
	if code, out, _ := runBenchCLI(context.Background(), t, "--help"); code != 0 || !strings.Contains(out, "pubsub") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// TestBenchHistogram: every value lands in a bucket that holds it, buckets
// are within 1/64 of their values, and quantiles come out in order.
func TestBenchHistogram(t *testing.T) {
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

// TestBenchReceiveAllocs: counting and timing a message allocates nothing.
func TestBenchReceiveAllocs(t *testing.T) {
	f, err := parseBenchArgs([]string{"pubsub", "--pubs", "2", "--subs", "1"})
	if err != nil {
		t.Fatal(err)
	}
	topo := newTopology(f.idPrefix, f.pubs, f.benchTopic(), f.subs, f.filter, f.subWindow())
	r := newBenchRun(f, topo, newBoard(1, f.pubs, f.subs, topo.pairs), 0, 1, monoNow(), 7, client.Options{})
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
