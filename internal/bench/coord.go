package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// A run has one coordinator: the process that called Run. Alone it runs
// the clients on a goroutine; with Procs K it starts K processes (Spawn),
// each with a share of the clients and the shared board. The coordinator
// starts the measurement once every process has connected, prints the
// progress line, stops the run at Duration or when its context ends, reads
// the brokers (BrokerPIDs) while every connection is still open, and adds up
// the results.

// Child is what a process of a run with Procs above 1 is told: its index,
// the board the coordinator made, the run's start (CLOCK_MONOTONIC
// nanoseconds on Linux) and the run's id.
type Child struct {
	Index int
	Board string
	Base  int64
	RunID uint32
}

// part is what one process reports: what the board does not hold.
type part struct {
	Proc       int          `json:"proc"`
	PID        int          `json:"pid"`
	GOMAXPROCS int          `json:"gomaxprocs"`
	CPUConnect float64      `json:"cpu_connect_s"` // while connecting
	CPUUser    float64      `json:"cpu_user_s"`    // over its measurement
	CPUSys     float64      `json:"cpu_sys_s"`
	Latency    histWire     `json:"latency"`
	Connect    histWire     `json:"connect"`
	Errors     []ErrorCount `json:"errors"`
}

// Run runs cfg until it is done or ctx ends, which stops the run early:
// the report says it was interrupted. An error means the run could not
// start; a run whose clients all failed to connect is a report that says
// so (Connect.OK is 0).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if err := pin(cfg.CPUs); err != nil {
		return nil, fmt.Errorf("--cpus: %w", err)
	}
	c := &coordinator{cfg: &cfg, topo: newTopology(&cfg), base: monoNow(), runID: newRunID()}
	return c.run(ctx)
}

// RunChild runs process c's share of a run that a coordinator started, and
// writes what it measured to w, for the coordinator to read.
func RunChild(ctx context.Context, cfg Config, c Child, w io.Writer) error {
	if err := cfg.Complete(); err != nil {
		return err
	}
	if c.Index < 0 || c.Index >= cfg.Procs {
		return fmt.Errorf("process %d of a run of %d", c.Index, cfg.Procs)
	}
	cpus := cfg.CPUs
	if len(cpus) >= cfg.Procs {
		cpus = cpus[c.Index : c.Index+1]
	}
	if err := pin(cpus); err != nil {
		return fmt.Errorf("--cpus: %w", err)
	}
	topo := newTopology(&cfg)
	b, err := openSharedBoard(c.Board, cfg.Procs, cfg.Pubs, cfg.Subs, topo.pairs)
	if err != nil {
		return err
	}
	defer b.close()
	r := newProcRun(&cfg, topo, b, c.Index, cfg.Procs, c.Base, c.RunID)
	p := r.work(ctx)
	p.PID, p.GOMAXPROCS = os.Getpid(), runtime.GOMAXPROCS(0)
	return json.NewEncoder(w).Encode(p)
}

// newRunID tells this run's messages from any other's (a resumed session
// may hold old ones).
func newRunID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) | 1
}

type coordinator struct {
	cfg   *Config
	topo  *topology
	b     *board
	base  int64
	runID uint32

	children    []*childProc
	local       chan part
	t0          int64 // the measurement's start, since base
	stopAt      int64 // when the coordinator halted the run; 0: it ended by itself
	interrupted bool

	brokerStart, brokerGo, brokerEnd brokerSample
	prog                             progressState
}

type childProc struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{} // closed once Wait has returned
}

func (c *coordinator) now() int64 { return monoNow() - c.base }

func (c *coordinator) run(ctx context.Context) (*Report, error) {
	cfg := c.cfg
	if cfg.Procs > 1 {
		b, path, err := createSharedBoard(cfg.Procs, cfg.Pubs, cfg.Subs, c.topo.pairs)
		if err != nil {
			return nil, fmt.Errorf("--procs: %w", err)
		}
		defer os.Remove(path)
		defer b.close()
		c.b = b
		c.brokerStart = readBroker(cfg.BrokerPIDs)
		if err := c.startChildren(path); err != nil {
			c.b.hdr(hStop).Store(1)
			c.b.hdr(hRelease).Store(1)
			c.waitChildren()
			return nil, fmt.Errorf("--procs: %w", err)
		}
	} else {
		c.b = newBoard(1, cfg.Pubs, cfg.Subs, c.topo.pairs)
		c.brokerStart = readBroker(cfg.BrokerPIDs)
		r := newProcRun(cfg, c.topo, c.b, 0, 1, c.base, c.runID)
		c.local = make(chan part, 1)
		go func() { c.local <- r.work(ctx) }()
	}

	c.supervise(ctx)
	return c.report(c.collect()), nil
}

// startChildren starts the Procs processes, each with its share.
func (c *coordinator) startChildren(boardPath string) error {
	if c.cfg.Spawn == nil {
		return errors.New("no way to start the processes (Config.Spawn)")
	}
	for k := range c.cfg.Procs {
		cmd, err := c.cfg.Spawn(Child{Index: k, Board: boardPath, Base: c.base, RunID: c.runID})
		if err != nil {
			return err
		}
		ch := &childProc{cmd: cmd, exited: make(chan struct{})}
		ch.cmd.Stdout, ch.cmd.Stderr = &ch.out, c.cfg.Stderr
		if err := ch.cmd.Start(); err != nil {
			return err
		}
		c.children = append(c.children, ch)
		go func() {
			ch.cmd.Wait()
			close(ch.exited)
		}()
	}
	return nil
}

// exited counts the children that have ended.
func (c *coordinator) exited() int {
	n := 0
	for _, ch := range c.children {
		select {
		case <-ch.exited:
			n++
		default:
		}
	}
	return n
}

// supervise starts the measurement once every process is connected, prints
// progress, halts the run at Duration or when ctx ends, and reads the
// broker before releasing the connections.
func (c *coordinator) supervise(ctx context.Context) {
	cfg, b := c.cfg, c.b
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastLine := c.now()
	interrupt := ctx.Done()
	halt := func() {
		if b.hdr(hStop).Load() == 0 {
			c.stopAt = c.now()
			b.hdr(hStop).Store(1)
		}
	}
	for {
		select {
		case <-interrupt:
			interrupt = nil
			c.interrupted = true
			halt()
		case <-tick.C:
		}
		now := c.now()
		procs := cfg.Procs
		ended := c.exited()
		if len(c.local) > 0 {
			ended = 1
		}
		if c.t0 == 0 && int(b.hdr(hReady).Load())+ended >= procs && b.hdr(hStop).Load() == 0 {
			c.brokerGo = readBroker(cfg.BrokerPIDs)
			c.t0 = c.now()
			b.hdr(hGo).Store(uint64(c.t0 + 1))
			c.prog.reset(c, c.t0)
		}
		if c.t0 != 0 && cfg.Duration > 0 && now >= c.t0+int64(cfg.Duration) {
			halt()
		}
		measured := 0
		for k := range procs {
			if b.proc(k, pMeasured).Load() != 0 {
				measured++
			}
		}
		if measured+ended >= procs || (c.t0 == 0 && b.hdr(hStop).Load() != 0 && ended >= procs) {
			break
		}
		if !cfg.NoProgress && now-lastLine >= int64(time.Second) {
			lastLine = now
			fmt.Fprintln(cfg.Stderr, c.prog.line(c, now))
		}
	}
	// The clients watch ctx too, and may end the loop before it saw the
	// interrupt.
	if ctx.Err() != nil {
		c.interrupted = true
	}
	c.brokerEnd = readBroker(cfg.BrokerPIDs)
	if c.t0 == 0 {
		halt()
	}
	b.hdr(hRelease).Store(1)
}

// collect gathers every process's part.
func (c *coordinator) collect() []part {
	if c.local != nil {
		return []part{<-c.local}
	}
	c.waitChildren()
	var parts []part
	for k, ch := range c.children {
		var p part
		if err := json.Unmarshal(ch.out.Bytes(), &p); err != nil {
			state := "no result"
			if ch.cmd.ProcessState != nil {
				state = ch.cmd.ProcessState.String()
			}
			p = part{Proc: k, Errors: []ErrorCount{{Error: "process " + strconv.Itoa(k) + ": " + state, Count: 1}}}
		}
		parts = append(parts, p)
	}
	return parts
}

// waitChildren waits for the children, killing any that hang.
func (c *coordinator) waitChildren() {
	kill := time.After(60 * time.Second)
	for _, ch := range c.children {
		select {
		case <-ch.exited:
		case <-kill:
			ch.cmd.Process.Kill()
			<-ch.exited
		}
	}
}

// cpuSeconds is the CPU time the run's processes have used so far: this
// one's and its children's.
func (c *coordinator) cpuSeconds() float64 {
	t := readCPU()
	total := t.user + t.sys
	for _, ch := range c.children {
		if ch.cmd.Process != nil {
			if s, ok := procCPU(ch.cmd.Process.Pid); ok {
				total += s
			}
		}
	}
	return total
}

// progressState remembers the last progress line's totals for its rates.
type progressState struct {
	t                int64
	sent, recv, conn uint64
	cpu              float64
}

func (p *progressState) reset(c *coordinator, t int64) {
	b := c.b
	*p = progressState{t: t, sent: b.sumPubs(wSent), recv: b.sumSubs(wRecv), conn: b.sumProcs(pConnOK),
		cpu: c.cpuSeconds()}
}

// line is the progress line: totals, rates over the last interval, errors
// and the generator's CPU use.
func (p *progressState) line(c *coordinator, now int64) string {
	b := c.b
	sent, recv, conn := b.sumPubs(wSent), b.sumSubs(wRecv), b.sumProcs(pConnOK)
	fail := b.sumProcs(pConnFail)
	errs := b.sumProcs(pLost) + b.sumProcs(pPubErr) + b.sumPubs(wFailed)
	cpu := c.cpuSeconds()
	dt := float64(now-p.t) / 1e9
	if p.t == 0 || dt <= 0 {
		dt = float64(now) / 1e9
	}
	rate := func(n, was uint64) string { return siCount(float64(n-was) / dt) }
	var sb strings.Builder
	if c.t0 == 0 {
		total := c.cfg.Conns + c.cfg.Pubs + c.cfg.Subs // one of them, or pubsub's two
		fmt.Fprintf(&sb, "[connecting] %d/%d up (%s/s), %d failed", conn, total, rate(conn, p.conn), fail)
	} else {
		fmt.Fprintf(&sb, "[%5.1fs] conns %d", float64(now-c.t0)/1e9, conn)
		if fail > 0 {
			fmt.Fprintf(&sb, " (%d failed)", fail)
		}
		if c.cfg.Pubs > 0 {
			fmt.Fprintf(&sb, "  sent %s (%s/s)", siCount(float64(sent)), rate(sent, p.sent))
		}
		if c.cfg.Subs > 0 {
			fmt.Fprintf(&sb, "  recv %s (%s/s)", siCount(float64(recv)), rate(recv, p.recv))
		}
		fmt.Fprintf(&sb, "  errors %d", errs)
	}
	fmt.Fprintf(&sb, "  bench cpu %.0f%%", (cpu-p.cpu)/dt*100)
	p.t, p.sent, p.recv, p.conn, p.cpu = now, sent, recv, conn, cpu
	return sb.String()
}
