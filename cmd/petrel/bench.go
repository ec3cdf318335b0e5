package main

//lint:file-ignore ST1005 these errors are printed to a person after "Error: " as whole sentences, in the voice of petrel pub and sub (mosquitto_pub's wording); none is wrapped into another message.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/petrelmq/petrel/internal/bench"
	"github.com/petrelmq/petrel/internal/config"
)

// petrel bench's flags: the load generator itself is internal/bench, whose
// Config has a field for each flag.

// benchFlags are petrel bench's flags.
type benchFlags struct {
	clientFlags
	cfg   bench.Config
	args  []string
	list  bool        // preset list
	json  bool        // --json
	child bench.Child // set by a coordinator on the processes it starts (--procs); Index -1 elsewhere
	addrs benchAddrs  // -h, -p, --pub-addr and --sub-addr
}

// benchAddrs are the brokers as the flags list them: -h's hosts (each may
// carry its port), -p's ports, and --pub-addr's and --sub-addr's
// HOST[:PORT]s. check turns them into lists of brokers; runBenchFlags,
// once the client's options say the scheme, into the Config's addresses.
type benchAddrs struct {
	hosts, pub, sub []hostPort // as given
	ports           []int
	all             []hostPort // -h and -p together; the first is what options() dials
}

// hostPort is one broker of a list: a host ("" means localhost) and a port
// (0: -p's, or the scheme's default).
type hostPort struct {
	host string
	port int
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
 --sources N         spread the clients over the local addresses 127.0.0.1 to 127.0.0.N
                     (a broker on loopback only): past about 28,000 connections one
                     source address runs out of ports
 --subscribe FILTER  conn: each client subscribes to FILTER once connected (%i and %c as
                     in -t; at --sub-qos, default -q), so that --persistent sessions
                     have something to resume
 -t TOPIC            topic to publish to (sub: the filter); %i is the client's index,
                     %c its client id (default bench/%i; sub: bench/#)
 --filter FILTER     pubsub's subscription, %i and %c as above (default: the topic
                     with every level holding %i or %c replaced by +)
 -q QOS              publish QoS, and sub's subscription QoS (default 0)
 --sub-qos QOS       pubsub's subscription QoS (default -q's)
 -s SIZE             payload bytes, or with a unit as in the config file: KiB, MiB
                     (powers of 1024), KB, MB (powers of 1000); default 64; pubsub: at
                     least 20, the stamp's size
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
 --window-bytes SIZE the same in payload bytes, units as -s (default 32MiB)
 --drain D           pubsub: after publishing, how long to wait for messages that do not
                     come (default 2s)

Output and processes:
 --json              one JSON object with the results, on stdout
 --no-progress       no progress line
 --procs K           run K processes, the clients split between them, and add up their
                     results (a shared memory file holds the counters)
 --cpus LIST         pin to these CPUs (taskset's list: 1, 0-3,6); with --procs, one CPU
                     each when there are enough (Linux only)
 --broker-pid PID[,PID...]
                     also report that broker's CPU time and memory (its VmRSS before
                     the run, while loaded, per connection; Linux only, from /proc);
                     several pids (a cluster's nodes): their sum, and each one's

Brokers (a cluster's nodes; every mode):
 -h HOST[,HOST...]   -h and -p take comma-separated lists: every host at every port,
 -p PORT[,PORT...]   and a host may name its own port (host:port, [::1]:port); the
                     clients take the brokers round-robin by index, subscribers then
                     publishers when they share the list (default: one broker, as pub's)
 --pub-addr LIST     publishers connect to these HOST[:PORT]s instead (pub, pubsub);
                     a missing host is localhost, a missing port -p's
 --sub-addr LIST     subscribers connect to these instead (sub, pubsub): publishers on
                     one node and subscribers on another make every message cross
 The scheme, TLS, the WebSocket path and the credentials are the same for every
 broker (-L, --cafile...; the first broker's port 8883 means TLS for all). -L and
 --unix name one broker: with -L, --pub-addr and --sub-addr may still list others.
 Client i of a kind always goes to the same broker, so that --persistent resumes
 its session there; --sources needs every broker on loopback.

Client ids are <prefix>pub-<i>, <prefix>sub-<i> and <prefix>conn-<i>, prefix
--id-prefix (default bench-). Connection flags are petrel pub's, except
that -c, -i and -I mean other things here: --disable-clean-session (or
--persistent) and --id-prefix are spelled out.
` + commonUsage

// benchCommand runs petrel bench until done or interrupted.
func benchCommand(args []string, stdout, stderr io.Writer) int {
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
	if f.list {
		bench.WritePresets(stdout)
		return exitOK
	}
	return runBenchFlags(ctx, f, stdout, stderr)
}

// parseBenchArgs reads a mode (or preset NAME) and its flags; a preset's
// flags come first, so that those given override them.
func parseBenchArgs(args []string) (*benchFlags, error) {
	f := &benchFlags{clientFlags: clientFlags{cmd: "bench"}, cfg: bench.Defaults(), args: args,
		child: bench.Child{Index: -1}}
	mode, rest := args[0], args[1:]
	if mode == "preset" {
		if len(rest) == 0 || rest[0] == "list" {
			f.list = true
			return f, nil
		}
		p, ok := bench.FindPreset(rest[0])
		if !ok {
			return nil, fmt.Errorf("Unknown preset %q; petrel bench preset list names them.", rest[0])
		}
		f.cfg.Preset = p.Name
		mode, rest = p.Args[0], append(p.Args[1:], rest[1:]...)
	}
	switch m := bench.Mode(mode); m {
	case bench.Conn, bench.Pub, bench.Sub, bench.PubSub:
		f.cfg.Mode = m
	default:
		return nil, fmt.Errorf("Unknown mode %q: conn, pub, sub, pubsub or preset.", mode)
	}
	if err := f.parse(rest); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *benchFlags) parse(args []string) error {
	c := &f.cfg
	clients := &c.Conns // -c: connections, publishers or subscribers
	switch c.Mode {
	case bench.Pub:
		clients = &c.Pubs
	case bench.Sub:
		clients = &c.Subs
	}
	var clientsSet, pubsSet bool
	positive := func(p *int, what string) func([]string) error { return intFlag(p, 0, math.MaxInt, what) }
	duration := func(p *time.Duration, unit time.Duration, what string) func([]string) error {
		return func(a []string) error {
			d, err := flagDuration(a[0], unit)
			if err != nil {
				return errors.New("Invalid " + what + " given: " + a[0])
			}
			*p = d
			return nil
		}
	}
	size := func(most config.Size, what string, set func(config.Size)) func([]string) error {
		return func(a []string) error {
			n, err := config.ParseSize(a[0])
			if err == nil && n > most {
				err = fmt.Errorf("%q is more than %s", a[0], most)
			}
			if err != nil {
				return fmt.Errorf("Invalid %s given: %v", what, err)
			}
			set(n)
			return nil
		}
	}
	specs := append(withoutNames(f.commonSpecs(), "-c", "-i", "--id", "-I", "-d", "--debug", "-h", "--host", "-p", "--port"),
		flagSpec{"-h --host", 1, func(a []string) (err error) { f.addrs.hosts, err = parseHostList(a[0], "-h"); return err }},
		flagSpec{"-p --port", 1, func(a []string) (err error) { f.addrs.ports, err = parsePortList(a[0]); return err }},
		flagSpec{"--pub-addr", 1, func(a []string) (err error) { f.addrs.pub, err = parseHostList(a[0], "--pub-addr"); return err }},
		flagSpec{"--sub-addr", 1, func(a []string) (err error) { f.addrs.sub, err = parseHostList(a[0], "--sub-addr"); return err }},
		flagSpec{"--disable-clean-session --persistent", 0, func([]string) error { f.noClean = true; return nil }},
		flagSpec{"-c --clients", 1, func(a []string) error { clientsSet = true; return positive(clients, "client count")(a) }},
		flagSpec{"--pubs", 1, func(a []string) error { pubsSet = true; return positive(&c.Pubs, "publisher count")(a) }},
		flagSpec{"--subs", 1, func(a []string) error { pubsSet = true; return positive(&c.Subs, "subscriber count")(a) }},
		flagSpec{"-R --conn-rate", 1, func(a []string) error { return parseRate(a[0], &c.ConnRate) }},
		flagSpec{"--connect-parallel", 1, positive(&c.ConnParallel, "--connect-parallel")},
		flagSpec{"--sources", 1, intFlag(&c.Sources, 1, 254, "--sources")},
		flagSpec{"--subscribe", 1, func(a []string) error { c.ConnFilter = a[0]; return nil }},
		flagSpec{"--filter", 1, func(a []string) error { c.Filter = a[0]; return nil }},
		flagSpec{"--sub-qos", 1, intFlag(&c.SubQoS, 0, 2, "--sub-qos")},
		flagSpec{"-s --size", 1, size(256*config.MiB, "payload size", func(n config.Size) { c.Size = int(n) })},
		flagSpec{"-I --interval", 1, duration(&c.Interval, time.Millisecond, "interval")},
		flagSpec{"--rate", 1, func(a []string) error { return parseRate(a[0], &c.Rate) }},
		flagSpec{"--inflight", 1, intFlag(&c.Inflight, 1, 65535, "--inflight")},
		flagSpec{"--count", 1, positive(&c.Count, "--count")},
		flagSpec{"--duration", 1, duration(&c.Duration, time.Second, "duration")},
		flagSpec{"--window", 1, positive(&c.Window, "--window")},
		flagSpec{"--window-bytes", 1, size(math.MaxInt64, "--window-bytes", func(n config.Size) { c.WindowBytes = int64(n) })},
		flagSpec{"--drain", 1, duration(&c.Drain, time.Second, "--drain")},
		flagSpec{"--json", 0, func([]string) error { f.json = true; return nil }},
		flagSpec{"--no-progress", 0, func([]string) error { c.NoProgress = true; return nil }},
		flagSpec{"--procs", 1, intFlag(&c.Procs, 1, 1024, "--procs")},
		flagSpec{"--cpus", 1, func(a []string) (err error) { c.CPUs, err = bench.ParseCPUList(a[0]); return err }},
		flagSpec{"--broker-pid", 1, func(a []string) (err error) { c.BrokerPIDs, err = parsePIDList(a[0]); return err }},
		// Set by a coordinator on the processes it starts.
		flagSpec{"--x-child", 1, positive(&f.child.Index, "--x-child")},
		flagSpec{"--x-board", 1, func(a []string) error { f.child.Board = a[0]; return nil }},
		flagSpec{"--x-base", 1, func(a []string) (err error) { f.child.Base, err = strconv.ParseInt(a[0], 10, 64); return err }},
		flagSpec{"--x-run", 1, func(a []string) error {
			v, err := strconv.ParseUint(a[0], 10, 32)
			f.child.RunID = uint32(v)
			return err
		}},
	)
	f.idPrefix = c.IDPrefix
	if err := f.parseFlags(args, specs); err != nil {
		return err
	}
	c.IDPrefix, c.QoS = f.idPrefix, f.qos // the flags pub and sub share
	return f.check(clientsSet, pubsSet)
}

// check validates the flags together; the Config checks the rest.
func (f *benchFlags) check(clientsSet, pubsSet bool) error {
	c := &f.cfg
	switch {
	case c.Mode == bench.PubSub && clientsSet:
		return errors.New("pubsub takes --pubs and --subs, not -c.")
	case c.Mode != bench.PubSub && pubsSet:
		return errors.New("--pubs and --subs are for pubsub; use -c.")
	}
	if len(f.topics) == 0 && f.url != "" {
		if u, err := parseURLFlag(f.url); err == nil && u.topic != "" {
			f.topics = []string{u.topic}
		}
	}
	if len(f.topics) > 0 {
		c.Topic = f.topics[len(f.topics)-1]
	}
	if err := f.checkAddrs(); err != nil {
		return err
	}
	if err := c.Complete(); err != nil {
		return err
	}
	if f.child.Index >= 0 && (f.child.Index >= c.Procs || f.child.Board == "") {
		return errors.New("--x-child needs --procs above it and --x-board.")
	}
	return nil
}

// runBenchFlags runs the Config the flags made: a coordinator, or one of
// the processes of --procs that a coordinator started.
func runBenchFlags(ctx context.Context, f *benchFlags, stdout, stderr io.Writer) int {
	cfg, err := f.config()
	if err != nil {
		return usageError(stderr, "bench", err)
	}
	cfg.Stderr = stderr
	if f.child.Index >= 0 {
		if err := bench.RunChild(ctx, cfg, f.child, stdout); err != nil {
			fmt.Fprintln(stderr, "Error:", err)
			return exitFail
		}
		return exitOK
	}
	if p, ok := bench.FindPreset(cfg.Preset); ok {
		fmt.Fprintf(stderr, "preset %s: %s\n  = %s", p.Name, p.About, p.Command())
		if extra := f.args[2:]; len(extra) > 0 {
			fmt.Fprintf(stderr, ", then %s", strings.Join(extra, " "))
		}
		fmt.Fprintln(stderr)
	}
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return exitFail
	}
	summary := stdout
	if f.json {
		summary = stderr
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	}
	r.WriteSummary(summary)
	if r.Connect.OK == 0 {
		return exitFail
	}
	return exitOK
}

// config is the run's Config: the flags', with the client's options and
// the brokers' addresses made from them, checked again now that the
// addresses are known.
func (f *benchFlags) config() (bench.Config, error) {
	o, _, err := f.options() // -L's topic was taken by check
	if err != nil {
		return bench.Config{}, err
	}
	cfg := f.cfg
	cfg.Addrs, cfg.PubAddrs, cfg.SubAddrs = f.addrs.resolve(o.Addr, f.url != "" || f.unixPath != "")
	cfg.Client, cfg.PublishProps, cfg.SubscribeProps = o, f.props.Of("PUBLISH"), f.props.Of("SUBSCRIBE")
	cfg.Command, cfg.Spawn = "petrel bench "+strings.Join(f.args, " "), f.spawn
	if err := cfg.Complete(); err != nil {
		return bench.Config{}, err
	}
	return cfg, nil
}

// spawn starts process c of a run of --procs: this program with the same
// arguments, told its share.
func (f *benchFlags) spawn(c bench.Child) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"bench"}, f.args...)
	args = append(args, "--x-child", strconv.Itoa(c.Index), "--x-board", c.Board,
		"--x-base", strconv.FormatInt(c.Base, 10), "--x-run", strconv.FormatUint(uint64(c.RunID), 10),
		"--no-progress")
	return exec.Command(exe, args...), nil
}

// checkAddrs turns -h and -p's lists into brokers, the first of which
// options() makes the client's address from, as with one broker.
func (f *benchFlags) checkAddrs() error {
	a := &f.addrs
	a.all = expandHosts(a.hosts, a.ports)
	switch {
	case f.unixPath != "" && (len(a.all) > 1 || a.pub != nil || a.sub != nil):
		return errors.New("--unix connects to one socket: -h, -p, --pub-addr and --sub-addr cannot list brokers with it.")
	case f.url != "" && len(a.all) > 1:
		return errors.New("-L names one broker: list several with -h and -p, or --pub-addr and --sub-addr.")
	}
	f.host, f.port = a.all[0].host, a.all[0].port
	return nil
}

// resolve makes the Config's broker addresses, given base, the address
// options() made of the first broker: each broker's host and port in its
// place, with its scheme and path. With one broker and neither --pub-addr
// nor --sub-addr, every list is nil: the run dials base, as always.
// single (-L or --unix) keeps base for -h and -p.
func (a *benchAddrs) resolve(base string, single bool) (addrs, pubs, subs []string) {
	scheme, rest, ok := strings.Cut(base, "://")
	if !ok || scheme == "unix" {
		return nil, nil, nil
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	_, basePort, _ := net.SplitHostPort(authority)
	ports := a.ports
	if single {
		ports = nil // -L's port, as -p does not apply to it
	}
	list := func(l []hostPort) []string {
		var out []string
		for _, hp := range l {
			host, port := hp.host, basePort
			if host == "" {
				host = "localhost"
			}
			if hp.port != 0 {
				port = strconv.Itoa(hp.port)
			}
			out = append(out, scheme+"://"+net.JoinHostPort(host, port)+path)
		}
		return out
	}
	if len(a.all) > 1 && !single {
		addrs = list(a.all)
	}
	if a.pub != nil {
		pubs = list(expandHosts(a.pub, ports))
	}
	if a.sub != nil {
		subs = list(expandHosts(a.sub, ports))
	}
	return addrs, pubs, subs
}

// expandHosts lists the brokers that hosts and ports name: each host at
// its own port, or at every one of ports; no hosts means localhost, and no
// ports the scheme's default.
func expandHosts(hosts []hostPort, ports []int) []hostPort {
	if len(hosts) == 0 {
		hosts = []hostPort{{}}
	}
	var out []hostPort
	for _, h := range hosts {
		if h.port != 0 || len(ports) == 0 {
			out = append(out, h)
			continue
		}
		for _, p := range ports {
			out = append(out, hostPort{h.host, p})
		}
	}
	return out
}

// parseHostList reads HOST[:PORT][,HOST[:PORT]...]: a host name, an IPv4
// or IPv6 address (bracketed when it has a port), or :PORT alone.
func parseHostList(s, flag string) ([]hostPort, error) {
	var out []hostPort
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" || strings.Contains(e, "://") || strings.ContainsAny(e, "/ ") {
			return nil, fmt.Errorf("Invalid %s given: %q (HOST[:PORT], comma-separated).", flag, s)
		}
		hp := hostPort{host: e}
		if h, p, err := net.SplitHostPort(e); err == nil {
			port, err := strconv.Atoi(p)
			if err != nil || port < 1 || port > 65535 {
				return nil, fmt.Errorf("Invalid port given: %s", p)
			}
			hp = hostPort{h, port}
		} else if strings.Count(e, ":") == 1 {
			return nil, fmt.Errorf("Invalid %s given: %q (HOST[:PORT], comma-separated).", flag, s)
		}
		hp.host = strings.Trim(hp.host, "[]")
		if hp.host == "" && hp.port == 0 {
			return nil, fmt.Errorf("Invalid %s given: %q (HOST[:PORT], comma-separated).", flag, s)
		}
		out = append(out, hp)
	}
	return out, nil
}

// parsePortList reads PORT[,PORT...].
func parsePortList(s string) ([]int, error) {
	var out []int
	for _, e := range strings.Split(s, ",") {
		var p int
		if err := intFlag(&p, 1, 65535, "port")([]string{strings.TrimSpace(e)}); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePIDList reads --broker-pid's PID[,PID...]; 0 alone means none.
func parsePIDList(s string) ([]int, error) {
	if s == "0" {
		return nil, nil
	}
	var out []int
	for _, e := range strings.Split(s, ",") {
		var p int
		if err := intFlag(&p, 1, math.MaxInt, "--broker-pid")([]string{strings.TrimSpace(e)}); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
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

// flagDuration reads a duration as the config file does (config.ParseDuration:
// 10s, 1m30s, 250ms), or a bare number of unit, as petrel bench's flags
// have always taken them. Negative durations are refused.
func flagDuration(s string, unit time.Duration) (time.Duration, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 {
		return time.Duration(v * float64(unit)), nil
	}
	d, err := config.ParseDuration(s)
	if err == nil && d.Duration < 0 {
		err = errors.New("negative")
	}
	return d.Duration, err
}

func parseRate(s string, p *float64) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return errors.New("Invalid rate given: " + s)
	}
	*p = v
	return nil
}
