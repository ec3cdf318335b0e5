package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/petrelmq/petrel/client"
)

// A run has one coordinator: the process the user started. Alone it runs
// the clients on a goroutine; with --procs K it starts K copies of itself,
// each with a share of the clients and the shared board. The coordinator
// starts the measurement once every process has connected, prints the
// progress line, stops the run at --duration or on interrupt, reads the
// broker (--broker-pid) while every connection is still open, and adds up
// the results.

// benchPart is what one process reports: what the board does not hold.
type benchPart struct {
	Proc       int        `json:"proc"`
	PID        int        `json:"pid"`
	GOMAXPROCS int        `json:"gomaxprocs"`
	CPUConnect float64    `json:"cpu_connect_s"` // while connecting
	CPUUser    float64    `json:"cpu_user_s"`    // over its measurement
	CPUSys     float64    `json:"cpu_sys_s"`
	Latency    histWire   `json:"latency"`
	Connect    histWire   `json:"connect"`
	Errors     []errCount `json:"errors"`
}

func runBenchFlags(ctx context.Context, f *benchFlags, stdout, stderr io.Writer) int {
	opts, err := f.clientOptions()
	if err != nil {
		return usageError(stderr, "bench", err)
	}
	if len(f.cpus) > 0 {
		cpus := f.cpus
		if f.child >= 0 && len(cpus) >= f.procs {
			cpus = cpus[f.child : f.child+1]
		}
		if err := pinCPUs(cpus); err != nil {
			fmt.Fprintln(stderr, "Error: --cpus:", err)
			return exitFail
		}
	}
	topo := newTopology(f.idPrefix, f.pubs, f.benchTopic(), f.subs, f.filter, f.subWindow())
	if f.child >= 0 {
		return benchChild(ctx, f, topo, opts, stdout, stderr)
	}
	c := &coordinator{f: f, topo: topo, stdout: stdout, stderr: stderr, base: monoNow(), runID: newRunID()}
	return c.run(ctx, opts)
}

// benchChild is one of the processes of --procs: it runs its share and
// writes its part as JSON.
func benchChild(ctx context.Context, f *benchFlags, topo *topology, opts client.Options, stdout, stderr io.Writer) int {
	b, err := openSharedBoard(f.boardPath, f.procs, f.pubs, f.subs, topo.pairs)
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return exitFail
	}
	defer b.close()
	r := newBenchRun(f, topo, b, f.child, f.procs, f.base, f.runID, opts)
	part := r.work(ctx)
	part.PID, part.GOMAXPROCS = os.Getpid(), runtime.GOMAXPROCS(0)
	if err := json.NewEncoder(stdout).Encode(part); err != nil {
		return exitFail
	}
	return exitOK
}

// newRunID tells this run's messages from any other's (a resumed session
// may hold old ones).
func newRunID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) | 1
}

type coordinator struct {
	f              *benchFlags
	topo           *topology
	b              *board
	stdout, stderr io.Writer
	base           int64
	runID          uint32

	children    []*benchChildProc
	local       chan benchPart
	t0          int64 // the measurement's start, since base
	stopAt      int64 // when the coordinator halted the run; 0: it ended by itself
	interrupted bool

	brokerStart, brokerGo, brokerEnd brokerSample
	prog                             progressState
}

type benchChildProc struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{} // closed once Wait has returned
}

func (c *coordinator) now() int64 { return monoNow() - c.base }

func (c *coordinator) run(ctx context.Context, opts client.Options) int {
	f := c.f
	if f.preset != "" {
		p := findPreset(f.preset)
		fmt.Fprintf(c.stderr, "preset %s: %s\n  = %s", p.name, p.about, p.command())
		if extra := f.args[1:]; len(extra) > 1 {
			fmt.Fprintf(c.stderr, ", then %s", strings.Join(extra[1:], " "))
		}
		fmt.Fprintln(c.stderr)
	}
	if f.procs > 1 {
		b, path, err := createSharedBoard(f.procs, f.pubs, f.subs, c.topo.pairs)
		if err != nil {
			fmt.Fprintln(c.stderr, "Error: --procs:", err)
			return exitFail
		}
		defer os.Remove(path)
		defer b.close()
		c.b = b
		c.brokerStart = readBroker(f.brokerPID)
		if err := c.startChildren(path); err != nil {
			c.b.hdr(hStop).Store(1)
			c.b.hdr(hRelease).Store(1)
			c.waitChildren()
			fmt.Fprintln(c.stderr, "Error: --procs:", err)
			return exitFail
		}
	} else {
		c.b = newBoard(1, f.pubs, f.subs, c.topo.pairs)
		c.brokerStart = readBroker(f.brokerPID)
		r := newBenchRun(f, c.topo, c.b, 0, 1, c.base, c.runID, opts)
		c.local = make(chan benchPart, 1)
		go func() { c.local <- r.work(ctx) }()
	}

	c.supervise(ctx)
	parts := c.collect()
	res := c.result(parts)
	return c.report(res)
}

// startChildren runs this program K times with the same arguments and its
// share.
func (c *coordinator) startChildren(boardPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	for k := range c.f.procs {
		args := append([]string{"bench"}, c.f.args...)
		args = append(args, "--x-child", strconv.Itoa(k), "--x-board", boardPath,
			"--x-base", strconv.FormatInt(c.base, 10), "--x-run", strconv.FormatUint(uint64(c.runID), 10),
			"--no-progress")
		ch := &benchChildProc{cmd: exec.Command(exe, args...), exited: make(chan struct{})}
		ch.cmd.Stdout, ch.cmd.Stderr = &ch.out, c.stderr
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
// progress, halts the run at --duration or on interrupt, and reads the
// broker before releasing the connections.
func (c *coordinator) supervise(ctx context.Context) {
	f, b := c.f, c.b
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
		procs := f.procs
		ended := c.exited()
		if len(c.local) > 0 {
			ended = 1
		}
		if c.t0 == 0 && int(b.hdr(hReady).Load())+ended >= procs && b.hdr(hStop).Load() == 0 {
			c.brokerGo = readBroker(f.brokerPID)
			c.t0 = c.now()
			b.hdr(hGo).Store(uint64(c.t0 + 1))
			c.prog.reset(c, c.t0)
		}
		if c.t0 != 0 && f.duration > 0 && now >= c.t0+int64(f.duration) {
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
		if !f.noProgress && now-lastLine >= int64(time.Second) {
			lastLine = now
			fmt.Fprintln(c.stderr, c.prog.line(c, now))
		}
	}
	// The clients watch ctx too, and may end the loop before it saw the
	// interrupt.
	if ctx.Err() != nil {
		c.interrupted = true
	}
	c.brokerEnd = readBroker(f.brokerPID)
	if c.t0 == 0 {
		halt()
	}
	b.hdr(hRelease).Store(1)
}

// collect gathers every process's part.
func (c *coordinator) collect() []benchPart {
	if c.local != nil {
		return []benchPart{<-c.local}
	}
	c.waitChildren()
	var parts []benchPart
	for k, ch := range c.children {
		var p benchPart
		if err := json.Unmarshal(ch.out.Bytes(), &p); err != nil {
			state := "no result"
			if ch.cmd.ProcessState != nil {
				state = ch.cmd.ProcessState.String()
			}
			p = benchPart{Proc: k, Errors: []errCount{{Error: "process " + strconv.Itoa(k) + ": " + state, Count: 1}}}
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
		total := c.f.clients
		if c.f.mode == "pubsub" {
			total = c.f.pubs + c.f.subs
		}
		fmt.Fprintf(&sb, "[connecting] %d/%d up (%s/s), %d failed", conn, total, rate(conn, p.conn), fail)
	} else {
		fmt.Fprintf(&sb, "[%5.1fs] conns %d", float64(now-c.t0)/1e9, conn)
		if fail > 0 {
			fmt.Fprintf(&sb, " (%d failed)", fail)
		}
		if c.f.pubs > 0 {
			fmt.Fprintf(&sb, "  sent %s (%s/s)", siCount(float64(sent)), rate(sent, p.sent))
		}
		if c.f.subs > 0 {
			fmt.Fprintf(&sb, "  recv %s (%s/s)", siCount(float64(recv)), rate(recv, p.recv))
		}
		fmt.Fprintf(&sb, "  errors %d", errs)
	}
	fmt.Fprintf(&sb, "  bench cpu %.0f%%", (cpu-p.cpu)/dt*100)
	p.t, p.sent, p.recv, p.conn, p.cpu = now, sent, recv, conn, cpu
	return sb.String()
}

// pinCPUs pins every thread of this process to cpus and sets GOMAXPROCS to
// their number. The Go runtime makes new threads from existing ones, which
// pass their affinity on; threads listed twice close the race with one
// made meanwhile.
func pinCPUs(cpus []int) error {
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	runtime.GOMAXPROCS(len(cpus))
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return unix.SchedSetaffinity(0, &set)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return err
			}
		}
	}
	return nil
}
