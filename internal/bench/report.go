package bench

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/petrelmq/petrel/packet"
)

// Report is a run's results: --json prints it as it is.
type Report struct {
	Mode        Mode          `json:"mode"`
	Preset      string        `json:"preset,omitempty"`
	Command     string        `json:"command"`
	Params      Params        `json:"params"`
	Interrupted bool          `json:"interrupted"`
	ElapsedS    float64       `json:"elapsed_s"` // from the start of the measurement to its end
	Connect     ConnectStats  `json:"connect"`
	Publish     *PublishStats `json:"publish,omitempty"`
	Receive     *ReceiveStats `json:"receive,omitempty"`
	Latency     *LatencyStats `json:"latency_ms,omitempty"`
	Errors      ErrorStats    `json:"errors"`
	CPU         CPUStats      `json:"bench_cpu"`
	Broker      *BrokerStats  `json:"broker,omitempty"`
}

type Params struct {
	Addr       string  `json:"addr"`
	Version    string  `json:"mqtt"`
	Clients    int     `json:"clients,omitempty"`
	Pubs       int     `json:"pubs"`
	Subs       int     `json:"subs"`
	QoS        int     `json:"qos"`
	SubQoS     int     `json:"sub_qos"`
	Size       int     `json:"size"`
	Topic      string  `json:"topic,omitempty"`
	Filter     string  `json:"filter,omitempty"`
	Inflight   int     `json:"inflight"`
	IntervalMs float64 `json:"interval_ms"` // per publisher; 0: flat out
	Count      int     `json:"count"`
	DurationS  float64 `json:"duration_s"`
	Window     int     `json:"window"`
	ConnRate   float64 `json:"conn_rate"`
	Procs      int     `json:"procs"`
	CPUs       []int   `json:"cpus,omitempty"`

	// Addr (above) is the broker the clients connect to, or the brokers,
	// comma-separated (Config.UsedAddrs); PubAddrs and SubAddrs are the
	// publishers' and the subscribers' lists, and ByAddr how many clients
	// of each kind went to which broker.
	PubAddrs []string      `json:"pub_addrs,omitempty"`
	SubAddrs []string      `json:"sub_addrs,omitempty"`
	ByAddr   []AddrClients `json:"by_addr,omitempty"`
}

// AddrClients is how many clients of each kind a run sent to one broker.
type AddrClients struct {
	Addr  string `json:"addr"`
	Conns int    `json:"conns,omitempty"`
	Pubs  int    `json:"pubs,omitempty"`
	Subs  int    `json:"subs,omitempty"`
}

type ConnectStats struct {
	OK       uint64  `json:"ok"`
	BenchCPU float64 `json:"bench_cpu_s"` // the generator's CPU time while connecting
	Failed   uint64  `json:"failed"`
	Seconds  float64 `json:"seconds"` // from the first attempt to the last answer
	PerS     float64 `json:"per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Lost     uint64  `json:"lost"` // up, then lost during the run
	// Resumed counts the CONNACKs that said Session Present: sessions the
	// broker kept (from its store, after a restart).
	Resumed uint64 `json:"resumed"`
}

type PublishStats struct {
	Sent    uint64  `json:"sent"`
	Acked   uint64  `json:"acked"`
	Failed  uint64  `json:"failed"`
	Seconds float64 `json:"seconds"` // until the last publisher had its last acknowledgement
	PerS    float64 `json:"msgs_per_s"`
	MBPerS  float64 `json:"mb_per_s"`
	Waits   uint64  `json:"backpressure_waits"`
	Stalls  uint64  `json:"backpressure_stalls"`
}

type ReceiveStats struct {
	Received     uint64  `json:"received"` // deliveries: every subscriber's messages
	Bytes        uint64  `json:"bytes"`
	Seconds      float64 `json:"seconds"` // until the last message arrived
	PerS         float64 `json:"msgs_per_s"`
	MBPerS       float64 `json:"mb_per_s"`
	LossChecked  bool    `json:"loss_checked"`
	NotChecked   string  `json:"loss_not_checked,omitempty"`
	Expected     uint64  `json:"expected"` // what the publishers had acknowledged, per subscriber
	Lost         uint64  `json:"lost"`
	LossAllowed  bool    `json:"loss_allowed"` // QoS 0
	Duplicates   uint64  `json:"duplicates"`
	Foreign      uint64  `json:"foreign"` // not from this run
	DeadSubs     uint64  `json:"dead_subscribers"`
	SubsComplete uint64  `json:"subscribers_complete"`
}

type LatencyStats struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p999"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
}

type ErrorStats struct {
	Total uint64       `json:"total"`
	Kinds []ErrorCount `json:"kinds"`
}

type CPUStats struct {
	User       float64 `json:"user_s"`
	Sys        float64 `json:"sys_s"`
	Seconds    float64 `json:"seconds"`
	WallS      float64 `json:"wall_s"`
	Percent    float64 `json:"percent"` // of one core
	Procs      int     `json:"procs"`
	GOMAXPROCS int     `json:"gomaxprocs"`
}

// BrokerStats are --broker-pid's figures: with several processes (a
// cluster's nodes), their sums, and each one's in PerPID.
type BrokerStats struct {
	PID               int     `json:"pid"`            // the first of PIDs
	PIDs              []int   `json:"pids,omitempty"` // when several
	ConnectCPUSeconds float64 `json:"connect_cpu_s"`  // while the clients connected
	CPUSeconds        float64 `json:"cpu_s"`          // over the measurement
	CPUPercent        float64 `json:"cpu_percent"`
	DeliveriesPerS    float64 `json:"deliveries_per_cpu_s,omitempty"`
	MBPerCPUS         float64 `json:"mb_per_cpu_s,omitempty"`
	RSSBeforeKiB      int64   `json:"rss_before_kib"`               // before any connection
	RSSLoadedKiB      int64   `json:"rss_loaded_kib"`               // at the end, connections still open
	BytesPerConn      float64 `json:"rss_per_conn_bytes,omitempty"` // conn: (loaded - before) / connections
	// AnonBeforeKiB and AnonLoadedKiB are the anonymous part of the RSS
	// (RssAnon): without the pages of the program's file, which the first
	// connections fault in or not depending on the page cache, and which
	// a large program (Petrel's is 30 MB) has more of than a small one.
	AnonBeforeKiB int64   `json:"anon_before_kib,omitempty"`
	AnonLoadedKiB int64   `json:"anon_loaded_kib,omitempty"`
	AnonPerConn   float64 `json:"anon_per_conn_bytes,omitempty"` // conn: as BytesPerConn, of RssAnon
	// PerPID is each process's share when there are several.
	PerPID []BrokerProc `json:"per_pid,omitempty"`
}

// BrokerProc is one broker process's part of BrokerStats.
type BrokerProc struct {
	PID          int     `json:"pid"`
	CPUSeconds   float64 `json:"cpu_s"` // over the measurement
	CPUPercent   float64 `json:"cpu_percent"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSLoadedKiB int64   `json:"rss_loaded_kib"`
}

// report adds up the board and the processes' parts.
func (c *coordinator) report(parts []part) *Report {
	cfg, b := c.cfg, c.b
	res := &Report{Mode: cfg.Mode, Preset: cfg.Preset, Interrupted: c.interrupted,
		Command: cfg.Command}
	o := cfg.Client
	res.Params = Params{Addr: strings.Join(cfg.UsedAddrs(), ","), Version: map[byte]string{packet.V31: "3.1", packet.V311: "3.1.1", packet.V5: "5"}[o.Version],
		Pubs: cfg.Pubs, Subs: cfg.Subs, QoS: cfg.QoS, SubQoS: cfg.SubQoS, Size: cfg.Size, Inflight: cfg.Inflight,
		IntervalMs: float64(cfg.pubInterval()) / 1e6, Count: cfg.Count, DurationS: cfg.Duration.Seconds(),
		Window: cfg.subWindow(), ConnRate: cfg.ConnRate, Procs: cfg.Procs, CPUs: cfg.CPUs}
	if cfg.Mode == Conn {
		res.Params.Clients = cfg.Conns
	}
	if cfg.Pubs > 0 {
		res.Params.Topic = cfg.Topic
		res.Params.PubAddrs = cfg.addrList(pubKind)
	}
	if cfg.Subs > 0 {
		res.Params.Filter = cfg.Filter
		res.Params.SubAddrs = cfg.addrList(subKind)
	}
	res.Params.ByAddr = cfg.byAddr()

	var end int64
	for k := range cfg.Procs {
		end = max(end, int64(b.proc(k, pMeasured).Load())-1)
	}
	if c.t0 > 0 && end > c.t0 {
		res.ElapsedS = secs(end - c.t0)
	}

	conn := &histogram{}
	lat := &histogram{}
	var errLists [][]ErrorCount
	for _, p := range parts {
		conn.mergeWire(p.Connect)
		lat.mergeWire(p.Latency)
		errLists = append(errLists, p.Errors)
		res.Connect.BenchCPU += p.CPUConnect
		res.CPU.User += p.CPUUser
		res.CPU.Sys += p.CPUSys
		res.CPU.GOMAXPROCS = max(res.CPU.GOMAXPROCS, p.GOMAXPROCS)
	}
	if c.local != nil {
		res.CPU.GOMAXPROCS = runtime.GOMAXPROCS(0)
	}
	res.CPU.Procs = cfg.Procs
	res.CPU.Seconds = res.CPU.User + res.CPU.Sys
	res.CPU.WallS = res.ElapsedS
	if res.ElapsedS > 0 {
		res.CPU.Percent = res.CPU.Seconds / res.ElapsedS * 100
	}

	var first, last uint64
	for k := range cfg.Procs {
		if v := b.proc(k, pConnFirst).Load(); v != 0 && (first == 0 || v < first) {
			first = v
		}
		last = max(last, b.proc(k, pConnLast).Load())
	}
	connCPU := res.Connect.BenchCPU
	res.Connect = ConnectStats{BenchCPU: connCPU, OK: b.sumProcs(pConnOK), Failed: b.sumProcs(pConnFail), Lost: b.sumProcs(pLost), Resumed: b.sumProcs(pResumed),
		P50Ms: ms(conn.quantile(0.5)), P99Ms: ms(conn.quantile(0.99)), MaxMs: ms(conn.max.Load())}
	if first != 0 && last > first {
		res.Connect.Seconds = secs(int64(last - first))
		res.Connect.PerS = float64(res.Connect.OK) / res.Connect.Seconds
	}

	if cfg.Pubs > 0 {
		p := &PublishStats{Sent: b.sumPubs(wSent), Acked: b.sumPubs(wAcked), Failed: b.sumPubs(wFailed),
			Waits: b.sumProcs(pWaits), Stalls: b.sumProcs(pStalls)}
		var done int64
		for i := range cfg.Pubs {
			done = max(done, int64(b.pub(i, wDoneAt).Load())-1)
		}
		if c.t0 > 0 && done > c.t0 {
			p.Seconds = secs(done - c.t0)
			p.PerS = float64(p.Sent) / p.Seconds
			p.MBPerS = p.PerS * float64(cfg.Size) / 1e6
		}
		res.Publish = p
	}
	if cfg.Subs > 0 {
		res.Receive = c.receiveResult(end)
	}
	if lat.n.Load() > 0 {
		res.Latency = &LatencyStats{Samples: lat.n.Load(), P50: ms(lat.quantile(0.5)), P90: ms(lat.quantile(0.9)),
			P99: ms(lat.quantile(0.99)), P999: ms(lat.quantile(0.999)), Max: ms(lat.max.Load()), Mean: ms(lat.mean())}
	}
	res.Errors.Kinds = mergeErrors(errLists...)
	res.Errors.Total = res.Connect.Failed + res.Connect.Lost + b.sumProcs(pPubErr)
	if res.Publish != nil {
		res.Errors.Total += res.Publish.Failed
	}
	if res.Receive != nil && !res.Receive.LossAllowed {
		res.Errors.Total += res.Receive.Lost
	}
	res.Broker = c.brokerStats(res)
	return res
}

// receiveResult counts deliveries and, where pairs are tracked, what each
// subscriber should have had: every message the broker acknowledged (QoS
// 0: every message sent) from every publisher it hears.
func (c *coordinator) receiveResult(end int64) *ReceiveStats {
	cfg, b, t := c.cfg, c.b, c.topo
	r := &ReceiveStats{Received: b.sumSubs(wRecv), Bytes: b.sumSubs(wBytes), Duplicates: b.sumSubs(wDups),
		Foreign: b.sumSubs(wForeign), LossAllowed: min(cfg.QoS, cfg.SubQoS) == 0}
	last := int64(0)
	for s := range cfg.Subs {
		last = max(last, int64(b.sub(s, wLastRecv).Load())-1)
		if b.sub(s, wDead).Load() != 0 {
			r.DeadSubs++
		}
	}
	if cfg.Mode != PubSub || last <= c.t0 {
		last = end // sub: the whole window
	}
	if c.t0 > 0 && last > c.t0 {
		r.Seconds = secs(last - c.t0)
		r.PerS = float64(r.Received) / r.Seconds
		r.MBPerS = float64(r.Bytes) / r.Seconds / 1e6
	}
	switch {
	case cfg.Mode != PubSub:
		r.NotChecked = "no publishers in this run"
	case !t.tracked:
		r.NotChecked = t.untraced
	default:
		r.LossChecked = true
		for s := range cfg.Subs {
			if b.sub(s, wDead).Load() != 0 {
				continue
			}
			var lost uint64
			t.pubsOf(s, func(p, pair int) {
				want, got := b.pub(p, wAcked).Load(), b.pairUnique(pair).Load()
				r.Expected += want
				if got < want {
					lost += want - got
				}
			})
			r.Lost += lost
			if lost == 0 {
				r.SubsComplete++
			}
		}
	}
	return r
}

// byAddr counts the clients that clientAddr sends to each broker, in the
// order of UsedAddrs; brokers none went to are left out.
func (c *Config) byAddr() []AddrClients {
	var out []AddrClients
	at := map[string]int{}
	count := func(kind string, n int, field func(*AddrClients) *int) {
		for i := range n {
			a := c.clientAddr(kind, i)
			k, ok := at[a]
			if !ok {
				k = len(out)
				at[a] = k
				out = append(out, AddrClients{Addr: a})
			}
			*field(&out[k])++
		}
	}
	for _, a := range c.UsedAddrs() { // their order
		if _, ok := at[a]; !ok {
			at[a] = len(out)
			out = append(out, AddrClients{Addr: a})
		}
	}
	count(connKind, c.Conns, func(a *AddrClients) *int { return &a.Conns })
	count(pubKind, c.Pubs, func(a *AddrClients) *int { return &a.Pubs })
	count(subKind, c.Subs, func(a *AddrClients) *int { return &a.Subs })
	return slices.DeleteFunc(out, func(a AddrClients) bool { return a.Conns+a.Pubs+a.Subs == 0 })
}

// brokerStats is what --broker-pid's /proc files said: CPU time over the
// measurement, and memory before any connection and at its end, summed
// over the processes.
func (c *coordinator) brokerStats(res *Report) *BrokerStats {
	pids := c.cfg.BrokerPIDs
	if len(pids) == 0 || !c.brokerEnd.ok {
		return nil
	}
	br := &BrokerStats{PID: pids[0], RSSBeforeKiB: c.brokerStart.rssKiB, RSSLoadedKiB: c.brokerEnd.rssKiB,
		AnonBeforeKiB: c.brokerStart.anonKiB, AnonLoadedKiB: c.brokerEnd.anonKiB}
	if c.brokerGo.ok {
		br.CPUSeconds = c.brokerEnd.cpu - c.brokerGo.cpu
	}
	if res.ElapsedS > 0 {
		br.CPUPercent = br.CPUSeconds / res.ElapsedS * 100
	}
	if len(pids) > 1 {
		br.PIDs = pids
		for k, pid := range pids {
			p := BrokerProc{PID: pid, RSSLoadedKiB: c.brokerEnd.each[k].rssKiB}
			if c.brokerStart.ok {
				p.RSSBeforeKiB = c.brokerStart.each[k].rssKiB
			}
			if c.brokerGo.ok {
				p.CPUSeconds = c.brokerEnd.each[k].cpu - c.brokerGo.each[k].cpu
			}
			if res.ElapsedS > 0 {
				p.CPUPercent = p.CPUSeconds / res.ElapsedS * 100
			}
			br.PerPID = append(br.PerPID, p)
		}
	}
	if br.CPUSeconds > 0 && res.Receive != nil {
		br.DeliveriesPerS = float64(res.Receive.Received) / br.CPUSeconds
		br.MBPerCPUS = float64(res.Receive.Bytes) / 1e6 / br.CPUSeconds
	}
	if c.brokerStart.ok && c.brokerGo.ok {
		br.ConnectCPUSeconds = c.brokerGo.cpu - c.brokerStart.cpu
	}
	if n := res.Connect.OK; n > 0 && c.brokerStart.ok && c.cfg.Mode == Conn {
		br.BytesPerConn = float64(br.RSSLoadedKiB-br.RSSBeforeKiB) * 1024 / float64(n)
		if br.AnonBeforeKiB > 0 && br.AnonLoadedKiB > 0 {
			br.AnonPerConn = float64(br.AnonLoadedKiB-br.AnonBeforeKiB) * 1024 / float64(n)
		}
	}
	return br
}

// WriteSummary writes the report as petrel bench prints it.
func (r *Report) WriteSummary(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := r.Params
	fmt.Fprintf(bw, "petrel bench %s", r.Mode)
	if r.Preset != "" {
		fmt.Fprintf(bw, " (preset %s)", r.Preset)
	}
	addr := p.Addr
	if len(p.ByAddr) > 1 {
		addr = strconv.Itoa(len(p.ByAddr)) + " brokers"
	}
	fmt.Fprintf(bw, ": %s, MQTT %s", addr, p.Version)
	switch r.Mode {
	case "conn":
		fmt.Fprintf(bw, ", %d connections", p.Clients)
	case "pub":
		fmt.Fprintf(bw, ", %d publishers on %s, QoS %d, %s payloads", p.Pubs, p.Topic, p.QoS, sizeText(p.Size))
	case "sub":
		fmt.Fprintf(bw, ", %d subscribers to %s, QoS %d", p.Subs, p.Filter, p.SubQoS)
	case "pubsub":
		fmt.Fprintf(bw, ", %d publishers on %s → %d subscribers to %s, QoS %d/%d, %s payloads",
			p.Pubs, p.Topic, p.Subs, p.Filter, p.QoS, p.SubQoS, sizeText(p.Size))
	}
	if r.Interrupted {
		fmt.Fprint(bw, " (interrupted)")
	}
	fmt.Fprintln(bw)
	if len(p.ByAddr) > 1 {
		for i, a := range p.ByAddr {
			label := "  brokers   "
			if i > 0 {
				label = "            "
			}
			var kinds []string
			for _, k := range []struct {
				n         int
				one, many string
			}{{a.Conns, "connection", "connections"}, {a.Pubs, "publisher", "publishers"}, {a.Subs, "subscriber", "subscribers"}} {
				switch {
				case k.n == 1:
					kinds = append(kinds, "1 "+k.one)
				case k.n > 1:
					kinds = append(kinds, commas(uint64(k.n))+" "+k.many)
				}
			}
			fmt.Fprintf(bw, "%s%s: %s\n", label, a.Addr, strings.Join(kinds, ", "))
		}
	}

	cr := r.Connect
	fmt.Fprintf(bw, "  connect   %s up, %s failed in %.2f s: %s conn/s (each: p50 %s, p99 %s, max %s); bench cpu %.2f s",
		commas(cr.OK), commas(cr.Failed), cr.Seconds, commas(uint64(cr.PerS)), msText(cr.P50Ms), msText(cr.P99Ms), msText(cr.MaxMs),
		cr.BenchCPU)
	if cr.Resumed > 0 {
		fmt.Fprintf(bw, "; %s resumed a session", commas(cr.Resumed))
	}
	if cr.Lost > 0 {
		fmt.Fprintf(bw, "; %s lost during the run", commas(cr.Lost))
	}
	fmt.Fprintln(bw)
	if r.Mode == "conn" {
		fmt.Fprintf(bw, "  held      %.1f s\n", r.ElapsedS)
	}
	if pr := r.Publish; pr != nil {
		fmt.Fprintf(bw, "  publish   %s sent in %.2f s: %s msgs/s, %.1f MB/s; %s acknowledged, %s failed\n",
			commas(pr.Sent), pr.Seconds, commas(uint64(pr.PerS)), pr.MBPerS, commas(pr.Acked), commas(pr.Failed))
		if pr.Waits > 0 || pr.Stalls > 0 {
			fmt.Fprintf(bw, "  backpressure  publishers waited for subscribers %s times (%s waits over a second)\n",
				commas(pr.Waits), commas(pr.Stalls))
		}
	}
	if rr := r.Receive; rr != nil {
		fmt.Fprintf(bw, "  receive   %s deliveries in %.2f s: %s msgs/s, %.1f MB/s\n",
			commas(rr.Received), rr.Seconds, commas(uint64(rr.PerS)), rr.MBPerS)
		switch {
		case r.Mode != "pubsub":
		case !rr.LossChecked:
			fmt.Fprintf(bw, "  loss      not checked: %s\n", rr.NotChecked)
		case rr.Lost == 0:
			fmt.Fprintf(bw, "  loss      none: %s of %s expected", commas(rr.Expected), commas(rr.Expected))
		case rr.LossAllowed:
			fmt.Fprintf(bw, "  loss      %s of %s expected (%.2f%%; QoS 0 may drop)", commas(rr.Lost), commas(rr.Expected),
				100*float64(rr.Lost)/float64(max(rr.Expected, 1)))
		default:
			fmt.Fprintf(bw, "  LOSS      %s of %s acknowledged messages never arrived (%.3f%%)", commas(rr.Lost),
				commas(rr.Expected), 100*float64(rr.Lost)/float64(max(rr.Expected, 1)))
		}
		if rr.LossChecked {
			fmt.Fprintf(bw, "; %s duplicates", commas(rr.Duplicates))
			if rr.DeadSubs > 0 {
				fmt.Fprintf(bw, "; %d subscribers lost their connection (not counted)", rr.DeadSubs)
			}
			fmt.Fprintln(bw)
		}
		if rr.Foreign > 0 {
			fmt.Fprintf(bw, "  foreign   %s messages not from this run\n", commas(rr.Foreign))
		}
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(bw, "  latency   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, %s samples)\n",
			msText(l.P50), msText(l.P90), msText(l.P99), msText(l.P999), msText(l.Max), msText(l.Mean), commas(l.Samples))
	}
	if len(r.Errors.Kinds) == 0 {
		fmt.Fprintln(bw, "  errors    none")
	} else {
		fmt.Fprintf(bw, "  errors    %s\n", commas(r.Errors.Total))
		for i, e := range r.Errors.Kinds {
			if i == 10 {
				fmt.Fprintf(bw, "            … %d more kinds (--json lists them)\n", len(r.Errors.Kinds)-i)
				break
			}
			fmt.Fprintf(bw, "            %6d × %s\n", e.Count, e.Error)
		}
	}
	cpu := r.CPU
	fmt.Fprintf(bw, "  bench cpu %.2f s (user %.2f, sys %.2f) over %.2f s: %.0f%% of one core; %d process(es), GOMAXPROCS %d\n",
		cpu.Seconds, cpu.User, cpu.Sys, cpu.WallS, cpu.Percent, cpu.Procs, cpu.GOMAXPROCS)
	if cores := max(1, cpu.GOMAXPROCS*cpu.Procs); cpu.Percent >= 90*float64(min(cores, runtime.NumCPU())) {
		fmt.Fprintln(bw, "            the generator was busy: the results may measure it, not the broker (--procs, --cpus)")
	}
	if br := r.Broker; br != nil {
		if len(br.PIDs) > 1 {
			pids := make([]string, len(br.PIDs))
			for i, pid := range br.PIDs {
				pids[i] = strconv.Itoa(pid)
			}
			fmt.Fprintf(bw, "  brokers   pids %s together", strings.Join(pids, "+"))
		} else {
			fmt.Fprintf(bw, "  broker    pid %d", br.PID)
		}
		fmt.Fprintf(bw, ": %.2f CPU-s connecting, %.2f CPU-s measured (%.0f%% of one core)",
			br.ConnectCPUSeconds, br.CPUSeconds, br.CPUPercent)
		if br.DeliveriesPerS > 0 {
			fmt.Fprintf(bw, ", %s deliveries and %.1f MB per CPU-s", commas(uint64(br.DeliveriesPerS)), br.MBPerCPUS)
		}
		fmt.Fprintf(bw, "; RSS %s KiB before, %s KiB loaded", commas(uint64(br.RSSBeforeKiB)), commas(uint64(br.RSSLoadedKiB)))
		if br.BytesPerConn != 0 {
			fmt.Fprintf(bw, ": %.0f bytes per connection", br.BytesPerConn)
			if br.AnonPerConn != 0 {
				fmt.Fprintf(bw, " (anonymous: %s KiB before, %s KiB loaded, %.0f bytes per connection)",
					commas(uint64(br.AnonBeforeKiB)), commas(uint64(br.AnonLoadedKiB)), br.AnonPerConn)
			}
		}
		fmt.Fprintln(bw)
		for _, p := range br.PerPID {
			fmt.Fprintf(bw, "            pid %d: %.2f CPU-s measured (%.0f%% of one core); RSS %s KiB before, %s KiB loaded\n",
				p.PID, p.CPUSeconds, p.CPUPercent, commas(uint64(max(p.RSSBeforeKiB, 0))), commas(uint64(max(p.RSSLoadedKiB, 0))))
		}
	}
	return bw.Flush()
}

// brokerSample is the broker processes' CPU time and memory at one
// moment: their sums, and each one's.
type brokerSample struct {
	ok      bool    // every process was read
	cpu     float64 // seconds, user + system
	rssKiB  int64
	anonKiB int64
	each    []brokerSample // per process, in --broker-pid's order
}

func readBroker(pids []int) brokerSample {
	if len(pids) == 0 {
		return brokerSample{}
	}
	sum := brokerSample{ok: true}
	for _, pid := range pids {
		cpu, ok := procCPU(pid)
		if !ok {
			return brokerSample{}
		}
		one := brokerSample{ok: true, cpu: cpu}
		one.rssKiB, one.anonKiB = procRSS(pid)
		sum.cpu += one.cpu
		sum.rssKiB += one.rssKiB
		sum.anonKiB += one.anonKiB
		sum.each = append(sum.each, one)
	}
	return sum
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }
func ms(ns int64) float64   { return float64(ns) / 1e6 }

// msText shows milliseconds with about three significant digits.
func msText(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	}
}

// commas writes n with thousands separators.
func commas(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// siCount abbreviates a count: 950, 12.3k, 4.56M.
func siCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	default:
		return strconv.Itoa(n) + " B"
	}
}
