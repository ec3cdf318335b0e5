package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Preset is one of the scenarios we measure Petrel by, against Mosquitto
// (scripts/bench-compare.sh, docs/BENCHMARKS.md): petrel bench's
// arguments, a mode and its flags, which flags given after the preset's
// name override. Every preset is bounded in time and in messages.
type Preset struct {
	Name, About string
	Args        []string
}

var presets = []Preset{
	{"fanin-q0", "64 publishers → 1 subscriber, QoS 0",
		[]string{"pubsub", "--pubs", "64", "--subs", "1", "-q", "0", "-s", "64",
			"-t", "bench/fanin/%i", "--filter", "bench/fanin/+", "--count", "1000000", "--duration", "10s"}},
	{"fanin-q1", "64 publishers, 64 unacknowledged each → 1 subscriber, QoS 1",
		[]string{"pubsub", "--pubs", "64", "--subs", "1", "-q", "1", "--inflight", "64", "-s", "64",
			"-t", "bench/fanin/%i", "--filter", "bench/fanin/+", "--count", "1000000", "--duration", "10s"}},
	{"fanin-q2", "64 publishers, 64 unacknowledged each → 1 subscriber, QoS 2",
		[]string{"pubsub", "--pubs", "64", "--subs", "1", "-q", "2", "--inflight", "64", "-s", "64",
			"-t", "bench/fanin/%i", "--filter", "bench/fanin/+", "--count", "1000000", "--duration", "10s"}},
	// The fan-in presets above pace their publishers (--window): these do
	// not, so the subscriber falls behind and the broker must either slow
	// the publishers or lose what it acknowledged; the run counts every
	// loss. Petrel's choice is in docs/DURABILITY.md, "Limits and
	// backpressure".
	{"overload-q1", "64 publishers, 64 unacknowledged each, unpaced → 1 subscriber on the same topic, QoS 1",
		[]string{"pubsub", "--pubs", "64", "--subs", "1", "-q", "1", "--inflight", "64", "-s", "64", "--window", "0",
			"-t", "bench/overload", "--filter", "bench/overload", "--count", "1000000", "--duration", "10s"}},
	{"overload-q2", "64 publishers, 64 unacknowledged each, unpaced → 1 subscriber on the same topic, QoS 2",
		[]string{"pubsub", "--pubs", "64", "--subs", "1", "-q", "2", "--inflight", "64", "-s", "64", "--window", "0",
			"-t", "bench/overload", "--filter", "bench/overload", "--count", "1000000", "--duration", "10s"}},
	{"fanout-q0", "1 publisher → 256 subscribers, QoS 0",
		[]string{"pubsub", "--pubs", "1", "--subs", "256", "-q", "0", "-s", "64",
			"-t", "bench/fanout", "--filter", "bench/fanout", "--count", "10000000", "--duration", "10s"}},
	{"fanout-q1", "1 publisher, 64 unacknowledged → 256 subscribers, QoS 1",
		[]string{"pubsub", "--pubs", "1", "--subs", "256", "-q", "1", "--inflight", "64", "-s", "64",
			"-t", "bench/fanout", "--filter", "bench/fanout", "--count", "10000000", "--duration", "10s"}},
	{"many-topics", "1000 publishers on dev/%i/temp → 10 subscribers on dev/+/temp, QoS 0",
		[]string{"pubsub", "--pubs", "1000", "--subs", "10", "-q", "0", "-s", "64",
			"-t", "dev/%i/temp", "--filter", "dev/+/temp", "--count", "100000", "--duration", "10s"}},
	{"large", "1 publisher → 1 subscriber, 256 KiB payloads, QoS 1, 16 unacknowledged",
		[]string{"pubsub", "--pubs", "1", "--subs", "1", "-q", "1", "--inflight", "16", "-s", "256KiB",
			"-t", "bench/large", "--filter", "bench/large", "--count", "100000", "--duration", "10s"}},
	{"idle-conns", "10,000 idle connections held 10s (--broker-pid: the broker's memory per connection)",
		[]string{"conn", "-c", "10000", "--duration", "10s"}},
	// A reconnect storm: every device at once, after a broker restart or a
	// network's return. 50,000 needs as many descriptors in the broker and
	// here (-c for fewer); 16 source addresses keep ephemeral ports from
	// running out.
	{"storm", "50,000 clients connect at once from 127.0.0.1-16, clean sessions, MQTT 3.1.1",
		[]string{"conn", "-c", "50000", "--sources", "16", "--connect-parallel", "256", "--duration", "1s"}},
	{"storm-persistent", "50,000 clients connect at once from 127.0.0.1-16 and resume MQTT 5 sessions (run it once with --subscribe storm/%i -q 1 to make them, restart the broker, run it again)",
		[]string{"conn", "-c", "50000", "--sources", "16", "--connect-parallel", "256", "--duration", "1s",
			"-V", "5", "--persistent", "-x", "86400"}},
}

// FindPreset returns the preset called name.
func FindPreset(name string) (Preset, bool) {
	for _, p := range presets {
		if p.Name == name {
			p.Args = slices.Clone(p.Args)
			return p, true
		}
	}
	return Preset{}, false
}

// Command is the preset's equivalent command line.
func (p Preset) Command() string {
	return "petrel bench " + strings.Join(p.Args, " ")
}

// WritePresets lists the presets, as petrel bench preset list does.
func WritePresets(w io.Writer) {
	fmt.Fprintln(w, "Presets (petrel bench preset NAME [flags]; flags override the preset's):")
	width := 0
	for _, p := range presets {
		width = max(width, len(p.Name))
	}
	for _, p := range presets {
		fmt.Fprintf(w, "  %-*s %s\n  %*s = %s\n", width, p.Name, p.About, width, "", p.Command())
	}
}
