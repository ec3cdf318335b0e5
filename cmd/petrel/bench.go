package main

//lint:file-ignore ST1005 these errors are printed to a person after "Error: " as whole sentences, in the voice of petrel pub and sub (mosquitto_pub's wording); none is wrapped into another message.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/topic"
)

// petrel bench is a load generator in the spirit of emqtt-bench: many
// connections in one process, each a client.Client, opened at a chosen
// rate; publishers at a chosen rate or flat out, pipelined within an
// in-flight window; subscribers that time every message from the stamp in
// its payload. It reports its own CPU use next to every result, so a run
// that measured the generator rather than the broker shows it.
//
// The files: bench.go (flags), bench_preset.go (the named scenarios),
// bench_coord.go (the run: processes, start, progress, stop),
// bench_run.go (one process's clients), bench_board.go (the shared
// counters and who hears whom), bench_hist.go (latency histograms) and
// bench_report.go (the results).

// benchFlags are petrel bench's flags.
type benchFlags struct {
	clientFlags
	mode   string // conn, pub, sub or pubsub
	preset string // the preset that set the defaults, if any
	args   []string

	clients      int // -c: connections (conn), publishers (pub), subscribers (sub)
	pubs, subs   int // pubsub
	connRate     float64
	connParallel int
	filter       string
	subQoS       int // -1: -q's
	size         int
	interval     time.Duration // between one publisher's messages
	rate         float64       // messages/s, all publishers together
	inflight     int
	count        int
	duration     time.Duration
	window       int
	windowBytes  int64
	drain        time.Duration
	json         bool
	noProgress   bool
	procs        int
	cpus         []int
	brokerPID    int

	// Set on the processes a coordinator starts (--procs).
	child     int // the process's index; -1 in a coordinator or a lone process
	boardPath string
	base      int64 // the run's start, CLOCK_MONOTONIC nanoseconds
	runID     uint32
}

const benchUsage = `Usage: petrel bench conn   [-c N] [-R conn/s] [--duration D] [flags]
       petrel bench pub    [-c N] [-t topic] [-s bytes] [-q qos] [-I interval | --rate msgs/s]
                           [--inflight N] [--count N] [--duration D] [flags]
       petrel bench sub    [-c N] [-t filter] [-q qos] [--count N] [--duration D] [flags]
       petrel bench pubsub [--pubs N] [--subs N] [-t topic] [--filter filter] [pub flags] [flags]
       petrel bench preset NAME [flags]     (petrel bench preset list: the presets)

Generate MQTT load and measure the broker: connection rate, messages per
second, end-to-end latency (pubsub), losses and duplicates (pubsub), and the
CPU this generator used. A progress line is printed every second on stderr;
the summary follows on stdout (--json: one JSON object on stdout instead,
the summary on stderr). Interrupt to stop early: the summary is printed.

Modes:
 conn                open -c connections and hold them until --duration or interrupted
 pub                 -c publishers
 sub                 -c subscribers, counting what they receive
 pubsub              --pubs publishers and --subs subscribers in one run: latency from
                     the timestamp at the start of each payload (nanoseconds since the
                     run's start), losses and duplicates from per-publisher sequence numbers

Load:
 -c N                clients (default 1)
 --pubs N, --subs N  publishers and subscribers of pubsub (default 1 each)
 -R RATE             connections per second, all processes together (default 0: as fast
                     as --connect-parallel allows)
 --connect-parallel N   connection attempts at once (default 64)
 -t TOPIC            topic to publish to (sub: the filter); %i is the client's index,
                     %c its client id (default bench/%i; sub: bench/#)
 --filter FILTER     pubsub's subscription, %i and %c as above (default: the topic
                     with every level holding %i or %c replaced by +)
 -q QOS              publish QoS, and sub's subscription QoS (default 0)
 --sub-qos QOS       pubsub's subscription QoS (default -q's)
 -s SIZE             payload bytes; K, KiB, M, MiB suffixes (default 64; pubsub: at
                     least 20, the stamp's size)
 -I INTERVAL         between one publisher's messages: milliseconds, or a duration
                     (10ms, 1s); default 0: as fast as the connection takes them
 --rate N            messages per second, all publishers together (instead of -I)
 --inflight N        QoS 1 and 2 messages each publisher keeps unacknowledged (default 64)
 --count N           messages per publisher (sub: per subscriber) before stopping
 --duration D        seconds, or a duration (90s, 2m); conn: how long to hold the
                     connections once open; default: until interrupted
 --window N          pubsub backpressure: how many messages publishers may be ahead of
                     any one subscriber (default 10000; the broker's per-session queue
                     is 100,000); 0: no limit
 --window-bytes SIZE the same in payload bytes (default 32MiB)
 --drain D           pubsub: after publishing, how long to wait for messages that do not
                     come (default 2s)

Output and processes:
 --json              one JSON object with the results, on stdout
 --no-progress       no progress line
 --procs K           run K processes, the clients split between them, and add up their
                     results (a shared memory file holds the counters)
 --cpus LIST         pin to these CPUs (taskset's list: 1, 0-3,6); with --procs, one CPU
                     each when there are enough
 --broker-pid PID    also report that broker's CPU time and memory (its VmRSS before
                     the run, while loaded, per connection)

Client ids are <prefix>pub-<i>, <prefix>sub-<i> and <prefix>conn-<i>, prefix
--id-prefix (default bench-). Connection flags are petrel pub's, except
that -c, -i and -I mean other things here: --disable-clean-session (or
--persistent) and --id-prefix are spelled out.
` + commonUsage

// bench runs petrel bench until done or interrupted.
func bench(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first interrupt (which ends the run and prints the
	// results), a second one ends the process.
	context.AfterFunc(ctx, stop)
	return runBench(ctx, args, stdout, stderr)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "--help" || args[0] == "help" {
		io.WriteString(stdout, benchUsage)
		return exitOK
	}
	f, err := parseBenchArgs(args)
	if err != nil {
		return usageError(stderr, "bench", err)
	}
	if f.help {
		io.WriteString(stdout, benchUsage)
		return exitOK
	}
	if f.mode == "list" {
		listPresets(stdout)
		return exitOK
	}
	return runBenchFlags(ctx, f, stdout, stderr)
}

// parseBenchArgs reads a mode (or preset NAME) and its flags; a preset's
// flags come first, so that those given override them.
func parseBenchArgs(args []string) (*benchFlags, error) {
	f := &benchFlags{clientFlags: clientFlags{cmd: "bench"}, args: args, child: -1}
	mode, rest := args[0], args[1:]
	if mode == "preset" {
		if len(rest) == 0 || rest[0] == "list" {
			f.mode = "list"
			return f, nil
		}
		p := findPreset(rest[0])
		if p == nil {
			return nil, fmt.Errorf("Unknown preset %q; petrel bench preset list names them.", rest[0])
		}
		f.preset = p.name
		mode, rest = p.args[0], append(append([]string{}, p.args[1:]...), rest[1:]...)
	}
	switch mode {
	case "conn", "pub", "sub", "pubsub":
		f.mode = mode
	default:
		return nil, fmt.Errorf("Unknown mode %q: conn, pub, sub, pubsub or preset.", mode)
	}
	if err := f.parse(rest); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *benchFlags) parse(args []string) error {
	f.clients, f.pubs, f.subs = 1, 1, 1
	f.connParallel, f.subQoS, f.size, f.inflight = 64, -1, 64, 64
	f.window, f.windowBytes, f.drain, f.procs = 10000, 32<<20, 2*time.Second, 1
	var clientsSet, pubsSet bool
	positive := func(p *int, what string) func([]string) error { return intFlag(p, 0, math.MaxInt, what) }
	specs := append(withoutNames(f.commonSpecs(), "-c", "-i", "--id", "-I", "-d", "--debug"),
		flagSpec{"--disable-clean-session --persistent", 0, func([]string) error { f.noClean = true; return nil }},
		flagSpec{"-c --clients", 1, func(a []string) error { clientsSet = true; return positive(&f.clients, "client count")(a) }},
		flagSpec{"--pubs", 1, func(a []string) error { pubsSet = true; return positive(&f.pubs, "publisher count")(a) }},
		flagSpec{"--subs", 1, func(a []string) error { pubsSet = true; return positive(&f.subs, "subscriber count")(a) }},
		flagSpec{"-R --conn-rate", 1, func(a []string) error { return parseRate(a[0], &f.connRate) }},
		flagSpec{"--connect-parallel", 1, positive(&f.connParallel, "--connect-parallel")},
		flagSpec{"--filter", 1, func(a []string) error { f.filter = a[0]; return nil }},
		flagSpec{"--sub-qos", 1, intFlag(&f.subQoS, 0, 2, "--sub-qos")},
		flagSpec{"-s --size", 1, func(a []string) error {
			n, err := parseSize(a[0])
			if err != nil || n > 256<<20 {
				return errors.New("Invalid payload size given: " + a[0])
			}
			f.size = int(n)
			return nil
		}},
		flagSpec{"-I --interval", 1, func(a []string) error {
			d, err := parseDuration(a[0], time.Millisecond)
			if err != nil {
				return errors.New("Invalid interval given: " + a[0])
			}
			f.interval = d
			return nil
		}},
		flagSpec{"--rate", 1, func(a []string) error { return parseRate(a[0], &f.rate) }},
		flagSpec{"--inflight", 1, intFlag(&f.inflight, 1, 65535, "--inflight")},
		flagSpec{"--count", 1, positive(&f.count, "--count")},
		flagSpec{"--duration", 1, func(a []string) error {
			d, err := parseDuration(a[0], time.Second)
			if err != nil {
				return errors.New("Invalid duration given: " + a[0])
			}
			f.duration = d
			return nil
		}},
		flagSpec{"--window", 1, positive(&f.window, "--window")},
		flagSpec{"--window-bytes", 1, func(a []string) error {
			n, err := parseSize(a[0])
			if err != nil {
				return errors.New("Invalid --window-bytes given: " + a[0])
			}
			f.windowBytes = n
			return nil
		}},
		flagSpec{"--drain", 1, func(a []string) error {
			d, err := parseDuration(a[0], time.Second)
			if err != nil {
				return errors.New("Invalid --drain given: " + a[0])
			}
			f.drain = d
			return nil
		}},
		flagSpec{"--json", 0, func([]string) error { f.json = true; return nil }},
		flagSpec{"--no-progress", 0, func([]string) error { f.noProgress = true; return nil }},
		flagSpec{"--procs", 1, intFlag(&f.procs, 1, 1024, "--procs")},
		flagSpec{"--cpus", 1, func(a []string) (err error) { f.cpus, err = parseCPUList(a[0]); return err }},
		flagSpec{"--broker-pid", 1, positive(&f.brokerPID, "--broker-pid")},
		// Set by a coordinator on the processes it starts.
		flagSpec{"--x-child", 1, positive(&f.child, "--x-child")},
		flagSpec{"--x-board", 1, func(a []string) error { f.boardPath = a[0]; return nil }},
		flagSpec{"--x-base", 1, func(a []string) (err error) { f.base, err = strconv.ParseInt(a[0], 10, 64); return err }},
		flagSpec{"--x-run", 1, func(a []string) error {
			v, err := strconv.ParseUint(a[0], 10, 32)
			f.runID = uint32(v)
			return err
		}},
	)
	if f.idPrefix == "" {
		f.idPrefix = "bench-"
	}
	if err := f.parseFlags(args, specs); err != nil {
		return err
	}
	return f.check(clientsSet, pubsSet)
}

// check validates the flags together and fills in the defaults that depend
// on the mode.
func (f *benchFlags) check(clientsSet, pubsSet bool) error {
	switch {
	case f.mode == "pubsub" && clientsSet:
		return errors.New("pubsub takes --pubs and --subs, not -c.")
	case f.mode != "pubsub" && pubsSet:
		return errors.New("--pubs and --subs are for pubsub; use -c.")
	case f.interval > 0 && f.rate > 0:
		return errors.New("-I and --rate cannot be used together.")
	case f.mode == "pubsub" && f.size < benchStampSize:
		return fmt.Errorf("pubsub needs payloads of at least %d bytes (-s): the stamp is that long.", benchStampSize)
	}
	switch f.mode {
	case "conn", "pub", "sub":
		f.pubs, f.subs = 0, 0
		switch f.mode {
		case "pub":
			f.pubs = f.clients
		case "sub":
			f.subs = f.clients
		}
	}
	if f.subQoS < 0 {
		f.subQoS = f.qos
	}
	if len(f.topics) == 0 && f.url != "" {
		if u, err := parseURLFlag(f.url); err == nil && u.topic != "" {
			f.topics = []string{u.topic}
		}
	}
	if len(f.topics) == 0 {
		f.topics = []string{"bench/%i"}
		if f.mode == "sub" {
			f.topics = []string{"bench/#"}
		}
	}
	t := f.topics[len(f.topics)-1]
	if f.mode == "sub" {
		f.filter = t
	} else if f.filter == "" {
		f.filter = defaultFilter(t)
	}
	if f.pubs > 0 {
		if strings.ContainsAny(t, "+#") {
			return fmt.Errorf("Invalid publish topic '%s', does it contain '+' or '#'?", t)
		}
		if err := topic.ValidateName(expandPattern(t, 0, "x")); err != nil {
			return fmt.Errorf("Invalid publish topic '%s': %v", t, err)
		}
	}
	if f.subs > 0 {
		if err := topic.ValidateFilter(expandPattern(f.filter, 0, "x")); err != nil {
			return fmt.Errorf("Invalid filter '%s': %v", f.filter, err)
		}
	}
	if f.child >= 0 && (f.child >= f.procs || f.boardPath == "") {
		return errors.New("--x-child needs --procs above it and --x-board.")
	}
	return nil
}

// benchTopic is the publish topic pattern.
func (f *benchFlags) benchTopic() string { return f.topics[len(f.topics)-1] }

// pubInterval is the time between one publisher's messages: -I, or --rate
// shared by the publishers; 0 means flat out.
func (f *benchFlags) pubInterval() time.Duration {
	if f.rate > 0 && f.pubs > 0 {
		return time.Duration(float64(f.pubs) / f.rate * float64(time.Second))
	}
	return f.interval
}

// subWindow is how far publishers may be ahead of one subscriber, in
// messages: --window, and --window-bytes worth of payloads.
func (f *benchFlags) subWindow() int {
	if f.window == 0 {
		return 1 << 30
	}
	w := f.window
	if f.windowBytes > 0 && f.size > 0 {
		w = min(w, int(max(1, f.windowBytes/int64(f.size))))
	}
	return w
}

// clientOptions are the options every client starts from.
func (f *benchFlags) clientOptions() (client.Options, error) {
	o, _, err := f.options() // -L's topic was taken by check
	return o, err
}

// defaultFilter subscribes to what publishers on pattern publish: every
// level that holds %i or %c becomes +.
func defaultFilter(pattern string) string {
	levels := strings.Split(pattern, "/")
	for i, l := range levels {
		if strings.Contains(l, "%i") || strings.Contains(l, "%c") {
			levels[i] = "+"
		}
	}
	return strings.Join(levels, "/")
}

// withoutNames removes option names from specs, dropping a spec left with
// none, so that the bench can give those names other meanings.
func withoutNames(specs []flagSpec, names ...string) []flagSpec {
	out := specs[:0]
	for _, s := range specs {
		var kept []string
		for _, n := range strings.Fields(s.names) {
			drop := false
			for _, d := range names {
				drop = drop || n == d
			}
			if !drop {
				kept = append(kept, n)
			}
		}
		if len(kept) > 0 {
			s.names = strings.Join(kept, " ")
			out = append(out, s)
		}
	}
	return out
}

// parseDuration reads a Go duration, or a plain number of units.
func parseDuration(s string, unit time.Duration) (time.Duration, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		if v < 0 {
			return 0, errors.New("negative")
		}
		return time.Duration(v * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		return 0, errors.New("negative")
	}
	return d, err
}

func parseRate(s string, p *float64) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return errors.New("Invalid rate given: " + s)
	}
	*p = v
	return nil
}

// parseSize reads bytes with an optional K, KiB, KB, M, MiB or MB suffix
// (all powers of 1024).
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KkMmGgiBb")
	unit := strings.ToLower(s[len(num):])
	mult := int64(1)
	switch unit {
	case "":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	default:
		return 0, errors.New("unknown unit " + unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("invalid size")
	}
	return n * mult, nil
}

// parseCPUList reads taskset's CPU list: 1, 0-3,6.
func parseCPUList(s string) ([]int, error) {
	bad := errors.New("Invalid CPU list given: " + s)
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, bad
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, bad
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 || len(cpus) > 4096 {
		return nil, bad
	}
	return cpus, nil
}
