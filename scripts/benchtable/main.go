// Command benchtable prints the Markdown table of scripts/bench-compare.sh:
// for each preset, Mosquitto's and Petrel's results side by side and their
// ratio, from the JSON files petrel bench --json wrote into a directory
// (named <broker>-<preset>-<round>.json; with several rounds, the median
// round by the preset's main figure).
//
//	go run ./scripts/benchtable DIR
package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// result is the part of petrel bench's JSON the table shows.
type result struct {
	Preset  string `json:"preset"`
	Command string `json:"command"`
	Connect struct {
		OK      uint64  `json:"ok"`
		Failed  uint64  `json:"failed"`
		Seconds float64 `json:"seconds"`
		PerS    float64 `json:"per_s"`
		P99Ms   float64 `json:"p99_ms"`
		Resumed uint64  `json:"resumed"`
	} `json:"connect"`
	Receive *struct {
		Received uint64  `json:"received"`
		PerS     float64 `json:"msgs_per_s"`
		MBPerS   float64 `json:"mb_per_s"`
		Lost     uint64  `json:"lost"`
		Checked  bool    `json:"loss_checked"`
		Dups     uint64  `json:"duplicates"`
	} `json:"receive"`
	Latency *struct {
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
	Errors struct {
		Total uint64 `json:"total"`
	} `json:"errors"`
	Bench struct {
		Percent float64 `json:"percent"`
	} `json:"bench_cpu"`
	Broker *struct {
		ConnectCPUS  float64 `json:"connect_cpu_s"`
		CPUSeconds   float64 `json:"cpu_s"`
		CPUPercent   float64 `json:"cpu_percent"`
		PerCPUS      float64 `json:"deliveries_per_cpu_s"`
		MBPerCPUS    float64 `json:"mb_per_cpu_s"`
		BytesPerConn float64 `json:"rss_per_conn_bytes"`
		AnonPerConn  float64 `json:"anon_per_conn_bytes"`
	} `json:"broker"`
	// side is the run of clients connected before a storm, from the
	// .side file beside the storm's (bench-compare.sh), if any.
	side *result
}

// storm reports whether the preset is a reconnect storm.
func (r *result) storm() bool { return strings.HasPrefix(r.Preset, "storm") }

// connectsPerCPUS is connections per broker CPU-second while connecting.
func (r *result) connectsPerCPUS() float64 {
	if r.Broker == nil || r.Broker.ConnectCPUS <= 0 {
		return 0
	}
	return float64(r.Connect.OK) / r.Broker.ConnectCPUS
}

// large reports whether the preset is judged in MB rather than messages.
func (r *result) large() bool { return r.Preset == "large" }

// figure is what the preset is judged by, per broker CPU-second: deliveries
// (MB for large payloads); for idle connections, connections per second;
// for a storm, connections per broker CPU-second.
func (r *result) figure() float64 {
	switch {
	case r.Broker == nil:
		return 0
	case r.storm():
		return r.connectsPerCPUS()
	case r.Receive == nil:
		return r.Connect.PerS
	case r.large():
		return r.Broker.MBPerCPUS
	default:
		return r.Broker.PerCPUS
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	runs := map[string]map[string][]*result{} // preset -> broker -> rounds
	var order []string
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	slices.Sort(files)
	for _, f := range files {
		broker, rest, ok := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".json"), "-")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, "-")
		if i < 0 {
			continue
		}
		preset := rest[:i]
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n", f, err)
			continue
		}
		if sb, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".side"); err == nil {
			var side result
			if json.Unmarshal(sb, &side) == nil {
				r.side = &side
			}
		}
		if runs[preset] == nil {
			runs[preset] = map[string][]*result{}
			order = append(order, preset)
		}
		runs[preset][broker] = append(runs[preset][broker], &r)
	}
	if about, err := os.ReadFile(filepath.Join(dir, "about.txt")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(about)), "\n") {
			fmt.Printf("- %s\n", l)
		}
		fmt.Println()
	}
	presets := []string{"fanin-q0", "fanin-q1", "fanin-q2", "fanout-q0", "fanout-q1", "many-topics", "large", "idle-conns",
		"storm", "storm-persistent", "storm-tls"}
	slices.SortStableFunc(order, func(a, b string) int {
		ia, ib := slices.Index(presets, a), slices.Index(presets, b)
		if ia < 0 {
			ia = len(presets)
		}
		if ib < 0 {
			ib = len(presets)
		}
		return cmp.Compare(ia, ib)
	})

	fmt.Println("| preset | measure | Mosquitto | Petrel | Petrel / Mosquitto |")
	fmt.Println("|---|---|---:|---:|---:|")
	for _, p := range order {
		m, pt := median(runs[p]["mosquitto"]), median(runs[p]["petrel"])
		if m == nil || pt == nil {
			fmt.Printf("| %s | (a run is missing) | | | |\n", p)
			continue
		}
		row := func(measure string, f func(*result) float64, format string) {
			a, b := f(m), f(pt)
			ratio := "–"
			if a > 0 {
				ratio = fmt.Sprintf("%.2f×", b/a)
			}
			fmt.Printf("| %s | %s | %s | %s | %s |\n", p, measure, fmt.Sprintf(format, a), fmt.Sprintf(format, b), ratio)
		}
		if m.storm() {
			row("connections per broker CPU-s", (*result).connectsPerCPUS, "%.0f")
			row("connections/s", func(r *result) float64 { return r.Connect.PerS }, "%.0f")
			row("seconds to the last CONNACK", func(r *result) float64 { return r.Connect.Seconds }, "%.2f")
			row("p99 CONNACK ms", func(r *result) float64 { return r.Connect.P99Ms }, "%.1f")
			row("connected", func(r *result) float64 { return float64(r.Connect.OK) }, "%.0f")
			row("failed", func(r *result) float64 { return float64(r.Connect.Failed) }, "%.0f")
			if p == "storm-persistent" {
				row("sessions resumed", func(r *result) float64 { return float64(r.Connect.Resumed) }, "%.0f")
			}
			row("existing clients' p99 ms during it", func(r *result) float64 {
				if r.side == nil || r.side.Latency == nil {
					return 0
				}
				return r.side.Latency.P99
			}, "%.1f")
			continue
		}
		if m.Receive == nil {
			row("connections/s", func(r *result) float64 { return r.Connect.PerS }, "%.0f")
			row("broker bytes per idle connection", func(r *result) float64 { return brokerField(r, func(b float64, _ float64) float64 { return b }) }, "%.0f")
			row("of them anonymous (RssAnon)", func(r *result) float64 {
				if r.Broker == nil {
					return 0
				}
				return r.Broker.AnonPerConn
			}, "%.0f")
			continue
		}
		if m.large() {
			row("MB per broker CPU-s", (*result).figure, "%.1f")
			row("MB/s", func(r *result) float64 { return r.Receive.MBPerS }, "%.1f")
		} else {
			row("deliveries per broker CPU-s", (*result).figure, "%.0f")
			row("deliveries/s", func(r *result) float64 { return r.Receive.PerS }, "%.0f")
		}
		row("broker CPU %", func(r *result) float64 { return brokerField(r, func(_ float64, pct float64) float64 { return pct }) }, "%.0f")
		row("p99 latency ms", func(r *result) float64 {
			if r.Latency == nil {
				return 0
			}
			return r.Latency.P99
		}, "%.1f")
		row("lost (acknowledged, never delivered)", func(r *result) float64 { return float64(r.Receive.Lost) }, "%.0f")
		row("duplicated + errors", func(r *result) float64 { return float64(r.Receive.Dups + r.Errors.Total) }, "%.0f")
		row("bench CPU % (of its CPU)", func(r *result) float64 { return r.Bench.Percent }, "%.0f")
	}
	floors(order, runs)
}

// floors prints, for the servers that are neither broker (connfloor,
// relayfloor, splicefloor: the least an epoll server could spend), the
// preset's figure and its ratio to Mosquitto's.
func floors(order []string, runs map[string]map[string][]*result) {
	header := false
	for _, p := range order {
		m := median(runs[p]["mosquitto"])
		servers := slices.Sorted(maps.Keys(runs[p]))
		for _, s := range servers {
			if s == "mosquitto" || s == "petrel" {
				continue
			}
			f := median(runs[p][s])
			if !header {
				fmt.Println()
				fmt.Println("| preset | floor server | per broker CPU-s | × Mosquitto | rounds |")
				fmt.Println("|---|---|---:|---:|---:|")
				header = true
			}
			ratio := "–"
			if m != nil && m.figure() > 0 {
				ratio = fmt.Sprintf("%.2f×", f.figure()/m.figure())
			}
			fmt.Printf("| %s | %s | %.1f | %s | %d |\n", p, s, f.figure(), ratio, len(runs[p][s]))
		}
	}
}

func brokerField(r *result, f func(bytesPerConn, cpuPercent float64) float64) float64 {
	if r.Broker == nil {
		return 0
	}
	return f(r.Broker.BytesPerConn, r.Broker.CPUPercent)
}

// median is the round with the median figure.
func median(rs []*result) *result {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b *result) int { return cmp.Compare(a.figure(), b.figure()) })
	return rs[len(rs)/2]
}
