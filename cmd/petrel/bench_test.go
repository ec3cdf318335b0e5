package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/bench"
)

// The load generator's own tests are internal/bench's: these check that
// petrel bench's flags make the Config they say, and that the command
// prints and exits as it should.

// runBenchCLI runs petrel bench in-process and returns its exit code and
// output.
func runBenchCLI(ctx context.Context, t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out bytes.Buffer
	errb := newSyncBuffer() // --procs children write to it too
	code := runBench(ctx, args, &out, errb)
	return code, out.String(), errb.String()
}

// TestBenchProcs: --procs 2 starts this program twice with its share,
// prints the JSON report on stdout and the summary on stderr.
func TestBenchProcs(t *testing.T) {
	t.Setenv("PETREL_TEST_MAIN", "1")
	port := cliBroker(t, broker.Options{})
	args := []string{"pubsub", "-p", port, "--pubs", "3", "--subs", "2", "-q", "1", "--count", "1000",
		"--procs", "2", "--no-progress", "--json"}
	code, out, stderr := runBenchCLI(context.Background(), t, args...)
	if code != 0 {
		t.Fatalf("petrel bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not one JSON object (%v):\n%s", err, out)
	}
	if !strings.Contains(stderr, "bench cpu") {
		t.Errorf("no summary on stderr:\n%s", stderr)
	}
	if r.Command != "petrel bench "+strings.Join(args, " ") || r.Connect.OK != 5 || r.CPU.Procs != 2 ||
		r.Receive.Lost != 0 || r.Receive.Received != 6000 || r.Publish.Sent != 3000 || r.Errors.Total != 0 {
		t.Errorf("--procs 2: %+v", r)
	}
}

// TestBenchInterrupt: an interrupted run prints its summary on stdout, after
// progress lines on stderr.
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

// TestBenchPreset: a preset's flags, overridden by those given, and the
// list.
func TestBenchPreset(t *testing.T) {
	f, err := parseBenchArgs([]string{"preset", "fanin-q1", "-p", "1884", "--pubs", "4", "--count", "500"})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.Preset != "fanin-q1" || c.Mode != bench.PubSub || c.Pubs != 4 || c.Subs != 1 || c.QoS != 1 ||
		c.Inflight != 64 || c.Size != 64 || c.Count != 500 || c.Duration != 10*time.Second ||
		c.Topic != "bench/fanin/%i" || c.Filter != "bench/fanin/+" || c.Window != 10000 {
		t.Errorf("preset fanin-q1 with --pubs 4: %+v", c)
	}
	if f, err = parseBenchArgs([]string{"preset", "overload-q2"}); err != nil {
		t.Error(err)
	} else if c := f.cfg; c.Window != 0 || c.QoS != 2 || c.Filter != "bench/overload" {
		t.Errorf("preset overload-q2: %+v", c)
	}

	code, out, _ := runBenchCLI(context.Background(), t, "preset", "list")
	for _, name := range []string{"fanin-q0", "fanin-q1", "fanin-q2", "overload-q1", "overload-q2", "fanout-q0", "fanout-q1", "many-topics", "large", "idle-conns"} {
		if code != 0 || !strings.Contains(out, name) {
			t.Errorf("preset list: exit %d, %s missing:\n%s", code, name, out)
		}
	}
}

// TestBenchFlags: what the flags set, with the defaults that depend on the
// mode.
func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want func(c bench.Config) bool
	}{
		{[]string{"conn", "-c", "7", "-R", "100", "--duration", "2"}, func(c bench.Config) bool {
			return c.Conns == 7 && c.Pubs == 0 && c.Subs == 0 && c.ConnRate == 100 && c.Duration == 2*time.Second
		}},
		{[]string{"conn", "-c", "9", "--sources", "8", "--subscribe", "s/%i", "-q", "1", "--connect-parallel", "256"}, func(c bench.Config) bool {
			return c.Conns == 9 && c.Sources == 8 && c.ConnFilter == "s/%i" && c.SubQoS == 1 && c.ConnParallel == 256
		}},
		{[]string{"pub", "-c", "3", "-I", "10"}, func(c bench.Config) bool {
			return c.Pubs == 3 && c.Subs == 0 && c.Interval == 10*time.Millisecond && c.Topic == "bench/%i"
		}},
		// Sizes and durations are written as in the config file: KB is
		// 1,000 bytes, KiB 1,024; a bare number is -I's milliseconds,
		// --duration's seconds.
		{[]string{"pub", "-s", "1KB", "--window-bytes", "2MiB", "-I", "1.5s", "--duration", "1m30s"}, func(c bench.Config) bool {
			return c.Size == 1000 && c.WindowBytes == 2<<20 && c.Interval == 1500*time.Millisecond &&
				c.Duration == 90*time.Second
		}},
		{[]string{"pub", "-s", "256KiB", "--window-bytes", "1 MB"}, func(c bench.Config) bool {
			return c.Size == 256<<10 && c.WindowBytes == 1e6
		}},
		{[]string{"sub", "-c", "2", "-t", "a/#", "--filter", "ignored"}, func(c bench.Config) bool {
			return c.Subs == 2 && c.Pubs == 0 && c.Filter == "a/#"
		}},
		{[]string{"pubsub", "-t", "d/%i/t", "-q", "1", "--drain", "500ms", "--cpus", "0-2,5"}, func(c bench.Config) bool {
			return c.Filter == "d/+/t" && c.SubQoS == 1 && c.Drain == 500*time.Millisecond &&
				len(c.CPUs) == 4 && c.CPUs[3] == 5
		}},
		{[]string{"pubsub", "-L", "mqtt://h:1/x/%i", "--id-prefix", "p-", "--persistent"}, func(c bench.Config) bool {
			return c.Topic == "x/%i" && c.IDPrefix == "p-"
		}},
	} {
		f, err := parseBenchArgs(tc.args)
		if err != nil {
			t.Errorf("petrel bench %s: %v", strings.Join(tc.args, " "), err)
		} else if !tc.want(f.cfg) {
			t.Errorf("petrel bench %s: %+v", strings.Join(tc.args, " "), f.cfg)
		}
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
		{"pub", "-s", "64K"}, // K alone: KB or KiB? The config file refuses it too.
		{"pub", "-s", "257MiB"},
		{"pub", "-I", "-5"},
		{"pub", "--duration", "soon"},
		{"pub", "--x-child", "1"},
		{"conn", "--sources", "0"},
		{"conn", "--sources", "255"},
		{"conn", "--sources", "4", "-h", "192.0.2.1"},
		{"conn", "--sources", "4", "-A", "127.0.0.9"},
		{"pub", "--subscribe", "a/b"},
		{"conn", "--subscribe", "a/#/b"},
		{"conn", "-p", "1883,"},
		{"conn", "-p", "1883,0"},
		{"conn", "-p", "x"},
		{"conn", "-h", "a,,b"},
		{"conn", "-h", "a:99999"},
		{"conn", "-h", "mqtt://a:1"},
		{"pub", "--pub-addr", "a:x"},
		{"pub", "--pub-addr", ""},
		{"conn", "--pub-addr", "a:1"},
		{"pub", "--sub-addr", "a:1"},
		{"sub", "--pub-addr", "a:1"},
		{"conn", "-L", "mqtt://a:1/t", "-p", "1,2"},
		{"conn", "--unix", "/tmp/s", "-h", "a,b"},
		{"pub", "--unix", "/tmp/s", "--pub-addr", "a:1"},
		{"conn", "--sources", "4", "-p", "1883,1884", "-h", "127.0.0.1,192.0.2.1"},
		{"conn", "--broker-pid", "1,x"},
		{"conn", "--broker-pid", "1,0"},
	} {
		if code, _, stderr := runBenchCLI(context.Background(), t, args...); code != exitFail || !strings.Contains(stderr, "Error:") {
			t.Errorf("petrel bench %v: exit %d, %q; want a usage error", args, code, stderr)
		}
	}
	if code, out, _ := runBenchCLI(context.Background(), t, "--help"); code != 0 || !strings.Contains(out, "pubsub") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// TestBenchAddrFlags: -h and -p take lists, --pub-addr and --sub-addr
// theirs, each made into addresses with the first broker's scheme.
func TestBenchAddrFlags(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		client            string // Client.Addr: the first broker, as before
		addrs, pubs, subs string // comma-separated; "" for none
	}{
		// One broker: as always, no lists.
		{[]string{"conn"}, "tcp://localhost:1883", "", "", ""},
		{[]string{"conn", "-h", "h1", "-p", "1884"}, "tcp://h1:1884", "", "", ""},
		{[]string{"conn", "-h", "::1"}, "tcp://[::1]:1883", "", "", ""},
		{[]string{"conn", "-p", "8883", "--insecure"}, "tls://localhost:8883", "", "", ""},
		{[]string{"conn", "-h", "h1:1885"}, "tcp://h1:1885", "", "", ""},
		// A cluster on one machine.
		{[]string{"conn", "-p", "1883,1884,1885"}, "tcp://localhost:1883",
			"tcp://localhost:1883,tcp://localhost:1884,tcp://localhost:1885", "", ""},
		{[]string{"conn", "-h", "h1,h2", "-p", "1,2"}, "tcp://h1:1",
			"tcp://h1:1,tcp://h1:2,tcp://h2:1,tcp://h2:2", "", ""},
		{[]string{"conn", "-h", "h1:7, [::1]:8,h3", "-p", "9"}, "tcp://h1:7",
			"tcp://h1:7,tcp://[::1]:8,tcp://h3:9", "", ""},
		{[]string{"pubsub", "-p", "1883", "--pub-addr", ":1884", "--sub-addr", "127.0.0.1:1885,h2"}, "tcp://localhost:1883",
			"", "tcp://localhost:1884", "tcp://127.0.0.1:1885,tcp://h2:1883"},
		{[]string{"pub", "-p", "1,2", "--pub-addr", "h1,h2:3"}, "tcp://localhost:1",
			"tcp://localhost:1,tcp://localhost:2", "tcp://h1:1,tcp://h1:2,tcp://h2:3", ""},
		{[]string{"sub", "-L", "mqtts://h0/t", "--sub-addr", "h1,h2"}, "tls://h0:8883", "", "", "tls://h1:8883,tls://h2:8883"},
		{[]string{"conn", "-p", "8883,8884"}, "tls://localhost:8883", "tls://localhost:8883,tls://localhost:8884", "", ""},
		// -L: one broker, whose scheme and path --pub-addr and --sub-addr keep.
		{[]string{"pubsub", "-L", "ws://h0:8080/ws", "--pub-addr", "h1", "--sub-addr", "h2:8081"}, "ws://h0:8080/ws",
			"", "ws://h1:8080/ws", "ws://h2:8081/ws"},
	} {
		name := "petrel bench " + strings.Join(tc.args, " ")
		f, err := parseBenchArgs(tc.args)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		cfg, err := f.config()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.Client.Addr != tc.client || strings.Join(cfg.Addrs, ",") != tc.addrs ||
			strings.Join(cfg.PubAddrs, ",") != tc.pubs || strings.Join(cfg.SubAddrs, ",") != tc.subs {
			t.Errorf("%s: client %s, addrs %q, pubs %q, subs %q; want %s, %q, %q, %q", name, cfg.Client.Addr,
				cfg.Addrs, cfg.PubAddrs, cfg.SubAddrs, tc.client, tc.addrs, tc.pubs, tc.subs)
		}
	}

	f, err := parseBenchArgs([]string{"conn", "--broker-pid", "10, 11,12"})
	if err != nil || fmt.Sprint(f.cfg.BrokerPIDs) != "[10 11 12]" {
		t.Errorf("--broker-pid 10,11,12: %v, %v", f, err)
	}
	if f, err = parseBenchArgs([]string{"conn", "--broker-pid", "0"}); err != nil || f.cfg.BrokerPIDs != nil {
		t.Errorf("--broker-pid 0 (none): %v, %v", f.cfg.BrokerPIDs, err)
	}
}

// TestBenchAddrs: conn's clients spread over two brokers given as -p's
// list, and the summary names them.
func TestBenchAddrs(t *testing.T) {
	var servers []*broker.Server
	var ports []string
	for range 2 {
		s := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
		servers, ports = append(servers, s), append(ports, port)
	}
	args := []string{"conn", "-h", "127.0.0.1", "-p", strings.Join(ports, ","), "-c", "6", "--duration", "50ms",
		"--no-progress", "--sources", "2"}
	code, out, stderr := runBenchCLI(context.Background(), t, args...)
	if code != 0 {
		t.Fatalf("petrel bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	for k, s := range servers {
		if n := s.Stats().ClientsMaximum; n != 3 {
			t.Errorf("broker %d saw %d connections, want 3", k, n)
		}
	}
	for _, want := range []string{"2 brokers", "  brokers   tcp://127.0.0.1:" + ports[0] + ": 3 connections",
		"            tcp://127.0.0.1:" + ports[1] + ": 3 connections"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
