package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	} {
		if code, _, stderr := runBenchCLI(context.Background(), t, args...); code != exitFail || !strings.Contains(stderr, "Error:") {
			t.Errorf("petrel bench %v: exit %d, %q; want a usage error", args, code, stderr)
		}
	}
	if code, out, _ := runBenchCLI(context.Background(), t, "--help"); code != 0 || !strings.Contains(out, "pubsub") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}
