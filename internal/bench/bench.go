// Package bench is the load generator behind petrel bench, in the spirit of
// emqtt-bench: many connections in one process, each a client.Client,
// opened at a chosen rate; publishers at a chosen rate or flat out,
// pipelined within an in-flight window; subscribers that time every message
// from the stamp in its payload. It reports its own CPU use next to every
// result, so a run that measured the generator rather than the broker shows
// it.
//
// Run runs a Config and returns its Report, which WriteSummary prints and
// encoding/json encodes as petrel bench --json does. cmd/petrel turns
// flags into the Config: each field is one of its flags, and errors name
// them.
//
// The files: bench.go (the Config), preset.go (the issue-7 scenarios),
// coord.go (the run: processes, start, progress, stop), run.go (one
// process's clients), board.go (the shared counters and who hears whom),
// hist.go (latency histograms), report.go (the results), pin.go (--cpus's
// list); and what depends on the operating system: pin_*.go (--cpus),
// clock_*.go, cpu_*.go, proc_*.go (--broker-pid) and shm_*.go (the shared
// board of --procs).
package bench

//lint:file-ignore ST1005 these errors reach a person after "Error: " as whole sentences, in the voice of petrel pub, sub and bench (mosquitto_pub's wording), and tests check them.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// Mode is what a run's clients do.
type Mode string

const (
	Conn   Mode = "conn"   // open connections and hold them
	Pub    Mode = "pub"    // publish
	Sub    Mode = "sub"    // subscribe and count what arrives
	PubSub Mode = "pubsub" // both in one run: latency, losses and duplicates
)

// Config is one run. Defaults is where petrel bench starts from; Complete
// fills in what depends on the mode and checks the whole (Run calls it).
type Config struct {
	Mode    Mode
	Preset  string // the preset the run came from, for the report
	Command string // the command line, for the report

	// Client is what every client's options start from; the run sets
	// ClientID, OnMessage, OnDisconnect, for publishers MaxInflight, and
	// Addr when Addrs, PubAddrs or SubAddrs list brokers.
	Client         client.Options
	PublishProps   packet.Properties // -D PUBLISH
	SubscribeProps packet.Properties // -D SUBSCRIBE
	// Addrs (-h and -p's lists) are the brokers the clients connect to,
	// in client.Options.Addr's form: a cluster's nodes. Each client takes
	// one round-robin by its index (clientAddr), the subscribers first and
	// then the publishers when they share the list, so that one publisher
	// and one subscriber on two nodes are on different ones. Empty:
	// Client.Addr alone.
	Addrs []string
	// PubAddrs (--pub-addr) and SubAddrs (--sub-addr), when not empty, are
	// where the publishers and the subscribers connect instead of Addrs,
	// round-robin within each: publishers on one node and subscribers on
	// another make every message cross the cluster.
	PubAddrs, SubAddrs []string
	// IDPrefix (--id-prefix): client ids are IDPrefix followed by conn-<i>,
	// pub-<i> or sub-<i>.
	IDPrefix string

	Conns        int     // conn's -c: connections
	Pubs, Subs   int     // pub's and sub's -c; pubsub's --pubs and --subs
	ConnRate     float64 // -R: connections per second, all processes together; 0: no limit
	ConnParallel int     // --connect-parallel: connection attempts at once
	// Topic (-t) is the publish topic, and sub's filter: %i is the client's
	// index, %c its id. Empty: bench/%i, sub's bench/#.
	Topic string
	// Filter (--filter) is pubsub's subscription, %i and %c as in Topic.
	// Empty: Topic with every level holding %i or %c replaced by +.
	Filter      string
	QoS         int           // -q: publish QoS, and sub's subscription QoS
	SubQoS      int           // --sub-qos: pubsub's subscription QoS; -1: QoS
	Size        int           // -s: payload bytes
	Interval    time.Duration // -I: between one publisher's messages; 0: as fast as the connection takes them
	Rate        float64       // --rate: messages per second, all publishers together (instead of Interval)
	Inflight    int           // --inflight: QoS 1 and 2 messages each publisher keeps unacknowledged
	Count       int           // --count: messages per publisher (sub: per subscriber); 0: no limit
	Duration    time.Duration // --duration (conn: how long to hold); 0: until the context ends
	Window      int           // --window: how far publishers may be ahead of a subscriber; 0: no limit
	WindowBytes int64         // --window-bytes: the same in payload bytes; 0: no limit
	Drain       time.Duration // --drain: after publishing, how long to wait for messages that do not come
	NoProgress  bool          // --no-progress
	Procs       int           // --procs: processes that share the clients
	CPUs        []int         // --cpus: pin to these CPUs
	// BrokerPIDs (--broker-pid): also report these processes' CPU time and
	// memory, summed over them (a cluster's nodes), and each one's.
	BrokerPIDs []int

	// ConnFilter (--subscribe) has each of conn's clients subscribe to it
	// once connected, %i and %c as in Topic, at SubQoS: how a storm's
	// persistent sessions get something to resume.
	ConnFilter string
	// Sources (--sources) spreads the clients over the local addresses
	// 127.0.0.1 to 127.0.0.N, so that tens of thousands of connections to
	// one loopback port do not run out of ephemeral ports; 0 or 1: the
	// system's choice.
	Sources int

	// Stderr receives the progress lines, and what the processes of Procs
	// write on their stderr; nil discards them.
	Stderr io.Writer
	// Spawn starts the process of a run with Procs above 1 that runs its
	// share: this program, with this configuration, calling RunChild with
	// c. Its stdout and stderr are the run's to set.
	Spawn func(c Child) (*exec.Cmd, error)
}

// Defaults is the configuration petrel bench's flags start from.
func Defaults() Config {
	return Config{Conns: 1, Pubs: 1, Subs: 1, ConnParallel: 64, SubQoS: -1, Size: 64, Inflight: 64,
		Window: 10000, WindowBytes: 32 << 20, Drain: 2 * time.Second, Procs: 1, IDPrefix: "bench-"}
}

// Complete fills in the defaults that depend on the mode and checks the
// configuration as a whole.
func (c *Config) Complete() error {
	switch c.Mode {
	case Conn:
		c.Pubs, c.Subs = 0, 0
	case Pub:
		c.Conns, c.Subs = 0, 0
	case Sub:
		c.Conns, c.Pubs = 0, 0
	case PubSub:
		c.Conns = 0
	default:
		return fmt.Errorf("Unknown mode %q: conn, pub, sub, pubsub or preset.", c.Mode)
	}
	switch {
	case c.Interval > 0 && c.Rate > 0:
		return errors.New("-I and --rate cannot be used together.")
	case c.Mode == PubSub && c.Size < stampSize:
		return fmt.Errorf("pubsub needs payloads of at least %d bytes (-s): the stamp is that long.", stampSize)
	}
	c.Procs = max(c.Procs, 1)
	if c.SubQoS < 0 {
		c.SubQoS = c.QoS
	}
	if c.Topic == "" {
		c.Topic = "bench/%i"
		if c.Mode == Sub {
			c.Topic = "bench/#"
		}
	}
	if c.Mode == Sub {
		c.Filter = c.Topic
	} else if c.Filter == "" {
		c.Filter = defaultFilter(c.Topic)
	}
	if c.Pubs > 0 {
		if strings.ContainsAny(c.Topic, "+#") {
			return fmt.Errorf("Invalid publish topic '%s', does it contain '+' or '#'?", c.Topic)
		}
		if err := topic.ValidateName(expandPattern(c.Topic, 0, "x")); err != nil {
			return fmt.Errorf("Invalid publish topic '%s': %v", c.Topic, err)
		}
	}
	if c.Subs > 0 {
		if err := topic.ValidateFilter(expandPattern(c.Filter, 0, "x")); err != nil {
			return fmt.Errorf("Invalid filter '%s': %v", c.Filter, err)
		}
	}
	if c.ConnFilter != "" {
		if c.Mode != Conn {
			return errors.New("--subscribe is for conn; pubsub and sub take --filter and -t.")
		}
		if err := topic.ValidateFilter(expandPattern(c.ConnFilter, 0, "x")); err != nil {
			return fmt.Errorf("Invalid filter '%s': %v", c.ConnFilter, err)
		}
	}
	switch {
	case len(c.PubAddrs) > 0 && c.Mode != Pub && c.Mode != PubSub:
		return errors.New("--pub-addr is for pub and pubsub; list the brokers with -h and -p.")
	case len(c.SubAddrs) > 0 && c.Mode != Sub && c.Mode != PubSub:
		return errors.New("--sub-addr is for sub and pubsub; list the brokers with -h and -p.")
	}
	for _, l := range [][]string{c.Addrs, c.PubAddrs, c.SubAddrs} {
		for _, a := range l {
			if a == "" {
				return errors.New("An empty broker address.")
			}
		}
	}
	if c.Sources > 1 {
		if c.Sources > 254 {
			return errors.New("--sources takes at most 254 addresses (127.0.0.1 to 127.0.0.254).")
		}
		if c.Client.Dialer != nil && c.Client.Dialer.LocalAddr != nil {
			return errors.New("--sources and -A cannot be used together.")
		}
		// The address is known once the flags made the client's options
		// (Run checks again).
		for _, a := range c.UsedAddrs() {
			if a != "" && !loopbackAddr(a) {
				return fmt.Errorf("--sources binds to 127.0.0.x, which reaches only a broker on loopback, not %s.", a)
			}
		}
	}
	return nil
}

// Kinds of clients, for clientAddr.
const (
	connKind = "conn"
	pubKind  = "pub"
	subKind  = "sub"
)

// addrList is the list a kind of client takes its brokers from: its own
// (PubAddrs, SubAddrs), else Addrs, else Client.Addr alone.
func (c *Config) addrList(kind string) []string {
	switch {
	case kind == pubKind && len(c.PubAddrs) > 0:
		return c.PubAddrs
	case kind == subKind && len(c.SubAddrs) > 0:
		return c.SubAddrs
	case len(c.Addrs) > 0:
		return c.Addrs
	}
	return []string{c.Client.Addr}
}

// clientAddr is where client i of a kind connects: its list round-robin.
// Publishers that share Addrs with the subscribers count on from them, as
// if the two were one row of clients: every broker gets its share of
// both, and of all the connections together.
func (c *Config) clientAddr(kind string, i int) string {
	l := c.addrList(kind)
	if kind == pubKind && len(c.PubAddrs) == 0 && len(c.SubAddrs) == 0 {
		i += c.Subs
	}
	return l[i%len(l)]
}

// UsedAddrs lists the brokers the run's clients connect to, each once:
// the publishers', then the subscribers' (conn: the connections').
func (c *Config) UsedAddrs() []string {
	var out []string
	add := func(l []string) {
		for _, a := range l {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	if c.Mode == Conn {
		add(c.addrList(connKind))
	}
	if c.Mode == Pub || c.Mode == PubSub {
		add(c.addrList(pubKind))
	}
	if c.Mode == Sub || c.Mode == PubSub {
		add(c.addrList(subKind))
	}
	return out
}

// loopbackAddr reports whether a client address (tcp://host:port, or
// host:port) is on loopback: a name such as localhost or an address in
// 127.0.0.0/8.
func loopbackAddr(addr string) bool {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() != nil && ip.IsLoopback()
}

// sourceAddr is the local address of the i-th client under Sources.
func (c *Config) sourceAddr(i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%c.Sources))}
}

// pubInterval is the time between one publisher's messages: Interval, or
// Rate shared by the publishers; 0 means flat out.
func (c *Config) pubInterval() time.Duration {
	if c.Rate > 0 && c.Pubs > 0 {
		return time.Duration(float64(c.Pubs) / c.Rate * float64(time.Second))
	}
	return c.Interval
}

// subWindow is how far publishers may be ahead of one subscriber, in
// messages: Window, and WindowBytes worth of payloads.
func (c *Config) subWindow() int {
	if c.Window == 0 {
		return 1 << 30
	}
	w := c.Window
	if c.WindowBytes > 0 && c.Size > 0 {
		w = min(w, int(max(1, c.WindowBytes/int64(c.Size))))
	}
	return w
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
