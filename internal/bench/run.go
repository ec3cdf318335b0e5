package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// stampSize is what a publisher writes at the start of each payload
// (as much of it as fits): the time it was sent (8 bytes, nanoseconds since
// the run's start), the run's id (4), the publisher's index (4) and the
// message's sequence number from that publisher (4), little-endian.
const stampSize = 20

// Times and limits of a run.
const (
	ackTimeout = 10 * time.Second // a publisher waits this long for its last acknowledgements
	stallAfter = time.Second      // a publisher held back this long sends one message anyway
	deadWait   = 30 * time.Second // drain gives up on publishers that stopped reporting
)

// monoNow is nanoseconds on a clock every process of a run shares
// (sharedClock: CLOCK_MONOTONIC on Linux), read through Go's monotonic
// clock (the vDSO): an anchor read once at start plus the time since.
func monoNow() int64 { return monoAnchorAbs + int64(time.Since(monoAnchor)) }

var (
	monoAnchor    = time.Now()
	monoAnchorAbs = sharedClock()
)

// procRun is one process's part of a run: its share of the clients (every
// K-th, from its index k), and what they measured.
type procRun struct {
	cfg   *Config
	topo  *topology
	b     *board
	k, K  int
	base  int64 // the run's start on the shared clock (monoNow)
	runID uint32

	lat   []histogram // end-to-end latency, sharded by subscriber
	conn  histogram   // connection time: dial to CONNACK (and SUBACK)
	errs  errorLog
	pulse pulse

	pubsub bool // the subscribers check stamps

	stopping atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	closing  atomic.Bool

	mu      sync.Mutex
	clients []*client.Client
	pubs    []*publisher
	subs    []*subscriber
}

func newProcRun(cfg *Config, topo *topology, b *board, k, K int, base int64, runID uint32) *procRun {
	r := &procRun{cfg: cfg, topo: topo, b: b, k: k, K: K, base: base, runID: runID,
		stopCh: make(chan struct{}), pulse: pulse{ch: make(chan struct{})}}
	r.lat = make([]histogram, min(8, max(1, cfg.Subs)))
	r.pubsub = cfg.Mode == PubSub
	return r
}

// now is nanoseconds since the run's start.
func (r *procRun) now() int64 { return monoNow() - r.base }

// stamp is how the board keeps a time: now plus one, as 0 means "not yet".
func (r *procRun) stamp() uint64 { return uint64(r.now() + 1) }

// halt stops publishing and holding.
func (r *procRun) halt() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		close(r.stopCh)
	})
}

// mine lists the global indices of n clients that this process runs.
func (r *procRun) mine(n int) []int {
	var idx []int
	for i := r.k; i < n; i += r.K {
		idx = append(idx, i)
	}
	return idx
}

// work runs this process's clients: connect them, wait for the start,
// measure, and once the coordinator has read the broker, disconnect.
func (r *procRun) work(ctx context.Context) part {
	part := part{Proc: r.k}
	start := readCPU()
	r.connectPhase(ctx)
	connected := readCPU()
	part.CPUConnect = connected.user + connected.sys - start.user - start.sys
	r.b.hdr(hReady).Add(1)
	t0, ok := r.waitGo(ctx)
	cpu0 := readCPU()
	if ok {
		pulseDone := make(chan struct{})
		go r.pulse.run(pulseDone)
		go r.watchStop(ctx, pulseDone)
		r.measure(ctx, t0)
		close(pulseDone)
	}
	r.b.proc(r.k, pMeasured).Store(r.stamp())
	cpu1 := readCPU()
	part.CPUUser, part.CPUSys = cpu1.user-cpu0.user, cpu1.sys-cpu0.sys
	r.waitRelease(ctx)
	r.closeAll()
	part.Latency = r.latency().wire()
	part.Connect = r.conn.wire()
	part.Errors = r.errs.list()
	return part
}

// latency merges the subscribers' histograms.
func (r *procRun) latency() *histogram {
	h := &histogram{}
	for i := range r.lat {
		h.merge(&r.lat[i])
	}
	return h
}

// waitGo waits for the coordinator's start and returns its time.
func (r *procRun) waitGo(ctx context.Context) (int64, bool) {
	for {
		if t := r.b.hdr(hGo).Load(); t != 0 {
			return int64(t - 1), true
		}
		if r.b.hdr(hStop).Load() != 0 {
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(time.Millisecond):
		}
	}
}

// watchStop halts the run when the coordinator says so, or on interrupt.
func (r *procRun) watchStop(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.halt()
			return
		case <-done:
			return
		case <-t.C:
			if r.b.hdr(hStop).Load() != 0 {
				r.halt()
				return
			}
		}
	}
}

// waitRelease waits until the coordinator has read the broker's figures
// with every connection still open.
func (r *procRun) waitRelease(ctx context.Context) {
	deadline := time.After(30 * time.Second)
	for r.b.hdr(hRelease).Load() == 0 {
		select {
		case <-deadline:
			return
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			// Interrupted: the coordinator releases at once.
			if r.b.hdr(hRelease).Load() == 0 {
				time.Sleep(50 * time.Millisecond)
			}
			if r.b.hdr(hRelease).Load() == 0 && ctx.Err() != nil {
				return
			}
		}
	}
}

// connJob is one connection to open, and what to do once it is up.
type connJob struct {
	opts   client.Options
	after  func(ctx context.Context, c *client.Client) error
	failed func() // the connection or the after step failed
}

// connectPhase opens this process's connections: subscribers first (and
// subscribed), then publishers, or the conn mode's.
func (r *procRun) connectPhase(ctx context.Context) {
	var jobs []connJob
	cfg := r.cfg
	if cfg.Mode == Conn {
		for _, i := range r.mine(cfg.Conns) {
			o := r.cfg.Client
			o.Addr = cfg.clientAddr(connKind, i)
			o.ClientID = clientID(cfg.IDPrefix, "conn", i)
			o.OnDisconnect = r.lost(nil)
			job := connJob{opts: o}
			if cfg.ConnFilter != "" {
				filter := expandPattern(cfg.ConnFilter, i, o.ClientID)
				job.after = func(ctx context.Context, c *client.Client) error {
					return subscribeOne(ctx, c, filter, cfg)
				}
			}
			jobs = append(jobs, job)
		}
	}
	if cfg.Sources > 1 {
		for j := range jobs {
			// Each its own dialer: the options are copies, the Dialer a
			// pointer they would share.
			d := net.Dialer{}
			if jobs[j].opts.Dialer != nil {
				d = *jobs[j].opts.Dialer
			}
			d.LocalAddr = cfg.sourceAddr(r.k + j*r.K)
			jobs[j].opts.Dialer = &d
		}
	}
	for _, i := range r.mine(cfg.Subs) {
		s := r.newSub(i)
		o := r.cfg.Client
		o.Addr = cfg.clientAddr(subKind, i)
		o.ClientID = r.topo.subIDs[i]
		o.OnMessage = s.onMessage
		o.OnDisconnect = r.lost(r.b.sub(i, wDead))
		dead := r.b.sub(i, wDead)
		jobs = append(jobs, connJob{opts: o, after: s.subscribe, failed: func() { dead.Store(1) }})
	}
	for _, i := range r.mine(cfg.Pubs) {
		p := r.newPub(i)
		o := r.cfg.Client
		o.Addr = cfg.clientAddr(pubKind, i)
		o.ClientID = r.topo.pubIDs[i]
		o.MaxInflight = cfg.Inflight
		o.OnDisconnect = r.lost(nil)
		jobs = append(jobs, connJob{opts: o, after: func(_ context.Context, c *client.Client) error {
			p.c = c
			return nil
		}})
	}
	r.connectAll(ctx, jobs)
}

// lost is a client's OnDisconnect: a connection that ends during the run
// is counted, and a subscriber's is marked dead (publishers stop waiting
// for it).
func (r *procRun) lost(dead *atomic.Uint64) func(error) {
	return func(err error) {
		if r.closing.Load() {
			return
		}
		r.b.proc(r.k, pLost).Add(1)
		r.errs.add("connection lost", err)
		if dead != nil {
			dead.Store(1)
		}
	}
}

// connectAll opens the connections, at -R (this process's share of it)
// when given, with at most --connect-parallel attempts at once.
func (r *procRun) connectAll(ctx context.Context, jobs []connJob) {
	rate := r.cfg.ConnRate / float64(r.K)
	sem := make(chan struct{}, max(1, r.cfg.ConnParallel))
	var wg sync.WaitGroup
	start := r.now()
	for j := range jobs {
		if rate > 0 {
			due := start + int64(float64(j)/rate*float64(time.Second))
			if d := due - r.now(); d > 0 {
				select {
				case <-time.After(time.Duration(d)):
				case <-ctx.Done():
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(job *connJob) {
			defer wg.Done()
			defer func() { <-sem }()
			r.connectOne(ctx, job)
		}(&jobs[j])
	}
	wg.Wait()
}

func (r *procRun) connectOne(ctx context.Context, job *connJob) {
	t := r.now()
	atomicMinSet(r.b.proc(r.k, pConnFirst), uint64(t+1))
	c, ack, err := client.Connect(ctx, job.opts)
	if err == nil && ack.SessionPresent {
		r.b.proc(r.k, pResumed).Add(1)
	}
	if err == nil && job.after != nil {
		if err = job.after(ctx, c); err != nil {
			c.Close()
		}
	}
	end := r.now()
	atomicMax(r.b.proc(r.k, pConnLast), uint64(end+1))
	if err != nil {
		r.b.proc(r.k, pConnFail).Add(1)
		r.errs.add("connect", err)
		if job.failed != nil {
			job.failed()
		}
		return
	}
	r.conn.record(end - t)
	r.b.proc(r.k, pConnOK).Add(1)
	r.mu.Lock()
	r.clients = append(r.clients, c)
	r.mu.Unlock()
}

// measure runs the load from t0 until it is done or halted.
func (r *procRun) measure(ctx context.Context, t0 int64) {
	cfg := r.cfg
	if cfg.Duration > 0 {
		// The coordinator halts at the deadline; this is in case it cannot.
		stop := time.AfterFunc(time.Duration(t0+int64(cfg.Duration)-r.now())+time.Second, r.halt)
		defer stop.Stop()
	}
	switch cfg.Mode {
	case Conn:
		<-r.stopCh
	case Sub:
		r.waitSubCounts()
	case Pub, PubSub:
		var wg sync.WaitGroup
		pubCtx, cancel := context.WithCancel(ctx)
		context.AfterFunc(pubCtx, r.halt)
		go func() {
			<-r.stopCh
			cancel()
		}()
		for _, p := range r.pubs {
			if p.c == nil {
				p.doneAt().Store(r.stamp())
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.run(pubCtx, t0)
			}()
		}
		wg.Wait()
		cancel()
		r.drain(ctx)
	}
}

// waitSubCounts waits for a halt or, with --count, for every subscriber to
// have that many messages.
func (r *procRun) waitSubCounts() {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stopCh:
			return
		case <-t.C:
		}
		if r.cfg.Count == 0 {
			continue
		}
		done := true
		for _, s := range r.subs {
			if s.c != nil && r.b.sub(s.i, wDead).Load() == 0 && s.recv.Load() < uint64(r.cfg.Count) {
				done = false
			}
		}
		if done {
			return
		}
	}
}

// drain waits, once every publisher of the run is done, until this
// process's subscribers have every message the broker accepted, or until
// nothing has arrived for --drain.
func (r *procRun) drain(ctx context.Context) {
	if len(r.subs) == 0 {
		return
	}
	tick := 5 * time.Millisecond
	if r.topo.pairs > 100000 {
		tick = 50 * time.Millisecond
	}
	var last uint64
	lastChange := r.now()
	for {
		now := r.now()
		var total uint64
		for _, s := range r.subs {
			total += s.recv.Load()
		}
		if total != last {
			last, lastChange = total, now
		}
		idle := time.Duration(now - lastChange)
		pubsDone := true
		for p := range r.cfg.Pubs {
			pubsDone = pubsDone && r.b.pub(p, wDoneAt).Load() != 0
		}
		switch {
		case pubsDone && r.complete():
			return
		case pubsDone && idle >= r.cfg.Drain:
			return
		case idle >= deadWait:
			r.errs.add("drain", errors.New("publishers did not finish"))
			return
		case ctx.Err() != nil && idle >= min(r.cfg.Drain, 200*time.Millisecond):
			return
		}
		time.Sleep(tick)
	}
}

// complete reports whether every live local subscriber has every message
// the broker acknowledged to the publishers it hears.
func (r *procRun) complete() bool {
	if !r.topo.tracked {
		return false
	}
	for _, s := range r.subs {
		if s.c == nil || r.b.sub(s.i, wDead).Load() != 0 {
			continue
		}
		ok := true
		r.topo.pubsOf(s.i, func(p, pair int) {
			ok = ok && r.b.pairUnique(pair).Load() >= r.b.pub(p, wAcked).Load()
		})
		if !ok {
			return false
		}
	}
	return true
}

// closeAll disconnects every client, many at once.
func (r *procRun) closeAll() {
	r.closing.Store(true)
	r.mu.Lock()
	clients := r.clients
	r.clients = nil
	r.mu.Unlock()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, c := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Disconnect(packet.Success, nil)
			<-sem
		}()
	}
	wg.Wait()
}

// publisher is a publisher.
type publisher struct {
	r     *procRun
	i     int
	c     *client.Client
	msg   packet.Publish
	done  func(packet.ReasonCode, error)
	pairs []pairRef
	timer *time.Timer

	sent, acked, failed *atomic.Uint64
}

func (r *procRun) newPub(i int) *publisher {
	p := &publisher{r: r, i: i, sent: r.b.pub(i, wSent), acked: r.b.pub(i, wAcked), failed: r.b.pub(i, wFailed)}
	p.msg = packet.Publish{Topic: r.topo.pubTopics[i], QoS: byte(r.cfg.QoS), Payload: make([]byte, r.cfg.Size),
		Props: r.cfg.PublishProps}
	for j := stampSize; j < len(p.msg.Payload); j++ {
		p.msg.Payload[j] = byte('a' + j%26)
	}
	if r.topo.tracked && r.cfg.Mode == PubSub {
		p.pairs = r.topo.pubPairs[i]
	}
	p.done = p.onDone
	r.pubs = append(r.pubs, p)
	return p
}

func (p *publisher) doneAt() *atomic.Uint64 { return p.r.b.pub(p.i, wDoneAt) }

// onDone counts an acknowledgement (at QoS 0: the message was queued).
func (p *publisher) onDone(_ packet.ReasonCode, err error) {
	if err != nil {
		p.failed.Add(1)
		if !errors.Is(err, client.ErrClosed) {
			p.r.errs.add("publish", err)
		}
		return
	}
	p.acked.Add(1)
}

// run publishes until --count, a halt, or a failure, then waits for the
// acknowledgements.
func (p *publisher) run(ctx context.Context, t0 int64) {
	r, cfg := p.r, p.r.cfg
	defer func() { p.doneAt().Store(r.stamp()) }()
	interval := int64(cfg.pubInterval())
	// Publishers at an interval start spread over it, not all at once.
	due := t0 + interval*int64(p.i)/int64(max(1, cfg.Pubs))
	budget := 0
	for seq := uint32(0); cfg.Count == 0 || int(seq) < cfg.Count; seq++ {
		if r.stopping.Load() {
			break
		}
		if interval > 0 {
			if !p.pace(due) {
				break
			}
			due += interval
			if now := r.now(); now-due > int64(time.Second) {
				due = now // far behind: do not burst to catch up
			}
		}
		if p.pairs != nil && budget == 0 {
			if budget = p.waitBudget(seq); budget == 0 {
				break
			}
		}
		budget--
		p.stampPayload(seq)
		p.sent.Add(1)
		if err := p.c.PublishAsync(ctx, &p.msg, p.done); err != nil {
			p.sent.Add(math.MaxUint64) // not sent after all
			if !r.stopping.Load() && ctx.Err() == nil {
				r.b.proc(r.k, pPubErr).Add(1)
				r.errs.add("publish", err)
			}
			break
		}
	}
	p.awaitAcks()
}

// paceSlack is how early a paced message may go: one due within it goes
// now (stamped when it goes, so latencies stay true). Sleeping for every
// message of a fast rate cost the generator twice its flat-out CPU, which
// on a small machine it took from the broker being measured.
const paceSlack = 500 * time.Microsecond

// pace sleeps until due, or returns at once when due is within paceSlack;
// false when halted first.
func (p *publisher) pace(due int64) bool {
	d := due - p.r.now()
	if d <= int64(paceSlack) {
		return true
	}
	if p.timer == nil {
		p.timer = time.NewTimer(time.Duration(d))
	} else {
		p.timer.Reset(time.Duration(d))
	}
	select {
	case <-p.timer.C:
		return true
	case <-p.r.stopCh:
		return false
	}
}

// waitBudget is backpressure: it returns how many messages the publisher
// may send before it looks again, waiting while it is a window ahead of a
// live subscriber it feeds. 0 means halted. A wait longer than stallAfter
// lets one message through: if the subscriber lost the last messages, a
// later one shows it.
func (p *publisher) waitBudget(seq uint32) int {
	r := p.r
	var since int64
	for {
		if b := p.budget(seq); b > 0 {
			return b
		}
		now := r.now()
		if since == 0 {
			since = now
			r.b.proc(r.k, pWaits).Add(1)
		} else if now-since >= int64(stallAfter) {
			r.b.proc(r.k, pStalls).Add(1)
			return 1
		}
		if !r.pulse.wait(r.stopCh) {
			return 0
		}
	}
}

// budget is how far the publisher may go: the least room left in its
// pairs' windows.
func (p *publisher) budget(seq uint32) int {
	b := math.MaxInt32
	for _, pr := range p.pairs {
		if p.r.b.sub(int(pr.sub), wDead).Load() != 0 {
			continue
		}
		ahead := int64(seq) - int64(p.r.b.pairNext(pr.idx).Load())
		b = min(b, int(int64(pr.window)-ahead))
	}
	return max(b, 0)
}

// stampPayload writes the stamp (as much as fits) at the payload's start.
func (p *publisher) stampPayload(seq uint32) {
	b := p.msg.Payload
	if len(b) >= stampSize {
		binary.LittleEndian.PutUint64(b, uint64(p.r.now()))
		binary.LittleEndian.PutUint32(b[8:], p.r.runID)
		binary.LittleEndian.PutUint32(b[12:], uint32(p.i))
		binary.LittleEndian.PutUint32(b[16:], seq)
	} else if len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, uint64(p.r.now()))
	}
}

// awaitAcks waits for the acknowledgements of what was sent, for at most
// ackTimeout.
func (p *publisher) awaitAcks() {
	deadline := p.r.now() + int64(ackTimeout)
	for p.acked.Load()+p.failed.Load() < p.sent.Load() {
		select {
		case <-p.c.Done():
			return
		default:
		}
		if p.r.now() > deadline {
			n := p.sent.Load() - p.acked.Load() - p.failed.Load()
			p.r.errs.add("publish", fmt.Errorf("%d messages still unacknowledged after %v", n, ackTimeout))
			return
		}
		p.r.pulse.wait(nil)
	}
}

// subscriber is a subscriber.
type subscriber struct {
	r       *procRun
	i       int
	c       *client.Client
	hist    *histogram
	tracked bool

	recv, bytes, dups, foreign, last *atomic.Uint64
}

func (r *procRun) newSub(i int) *subscriber {
	b := r.b
	s := &subscriber{r: r, i: i, hist: &r.lat[i%len(r.lat)], tracked: r.topo.tracked,
		recv: b.sub(i, wRecv), bytes: b.sub(i, wBytes), dups: b.sub(i, wDups), foreign: b.sub(i, wForeign),
		last: b.sub(i, wLastRecv)}
	r.subs = append(r.subs, s)
	return s
}

// subscribe is run once the subscriber is connected.
func (s *subscriber) subscribe(ctx context.Context, c *client.Client) error {
	if err := subscribeOne(ctx, c, s.r.topo.subFilters[s.i], s.r.cfg); err != nil {
		return err
	}
	s.c = c
	return nil
}

// subscribeOne subscribes c to filter at the run's subscription QoS.
func subscribeOne(ctx context.Context, c *client.Client, filter string, cfg *Config) error {
	codes, err := c.Subscribe(ctx, []packet.Subscription{{Filter: filter, QoS: byte(cfg.SubQoS)}}, cfg.SubscribeProps)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if codes[0].IsError() {
		return fmt.Errorf("subscribe %s: refused with %s (0x%02x)", filter, codes[0], byte(codes[0]))
	}
	return nil
}

// onMessage counts a message and, when it carries this run's stamp, times
// it and checks its sequence number. It runs on the client's read
// goroutine and allocates nothing.
func (s *subscriber) onMessage(m *client.Message) {
	r := s.r
	now := r.now()
	s.recv.Add(1)
	s.bytes.Add(uint64(len(m.Payload)))
	s.last.Store(uint64(now + 1))
	if !r.pubsub {
		return
	}
	pl := m.Payload
	if len(pl) < stampSize || binary.LittleEndian.Uint32(pl[8:]) != r.runID {
		s.foreign.Add(1)
		return
	}
	s.hist.record(now - int64(binary.LittleEndian.Uint64(pl)))
	if !s.tracked {
		return
	}
	k, ok := r.topo.pairOf(s.i, binary.LittleEndian.Uint32(pl[12:]))
	if !ok {
		s.foreign.Add(1)
		return
	}
	seq := uint64(binary.LittleEndian.Uint32(pl[16:]))
	next := r.b.pairNext(k)
	if seq < next.Load() {
		// Seen already, or out of order (which MQTT's ordering forbids).
		s.dups.Add(1)
		return
	}
	next.Store(seq + 1)
	r.b.pairUnique(k).Add(1)
}

// pulse wakes waiting publishers every millisecond: polling, cheap when
// nobody waits, where a wake-up per message would cost the receivers.
type pulse struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting atomic.Bool
}

// wait blocks until the next tick; false if stop closed first.
func (p *pulse) wait(stop <-chan struct{}) bool {
	p.mu.Lock()
	ch := p.ch
	p.mu.Unlock()
	p.waiting.Store(true)
	select {
	case <-ch:
		return true
	case <-stop:
		return false
	}
}

func (p *pulse) run(done <-chan struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			p.tick()
			return
		case <-t.C:
			if p.waiting.Swap(false) {
				p.tick()
			}
		}
	}
}

func (p *pulse) tick() {
	p.mu.Lock()
	close(p.ch)
	p.ch = make(chan struct{})
	p.mu.Unlock()
}

// errorLog counts errors by their text, keeping the first maxErrorKinds
// kinds.
type errorLog struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
}

const maxErrorKinds = 20

type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

func (l *errorLog) add(what string, err error) {
	msg := what + ": " + strings.TrimPrefix(err.Error(), "client: ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int{}
	}
	if _, ok := l.counts[msg]; !ok {
		if len(l.order) >= maxErrorKinds {
			msg = "other errors"
		}
		if _, ok := l.counts[msg]; !ok {
			l.order = append(l.order, msg)
		}
	}
	l.counts[msg]++
}

func (l *errorLog) list() []ErrorCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ErrorCount, 0, len(l.order))
	for _, m := range l.order {
		out = append(out, ErrorCount{m, l.counts[m]})
	}
	return out
}

// mergeErrors adds up error counts from several processes, most frequent
// first.
func mergeErrors(lists ...[]ErrorCount) []ErrorCount {
	sum := map[string]int{}
	var order []string
	for _, l := range lists {
		for _, e := range l {
			if _, ok := sum[e.Error]; !ok {
				order = append(order, e.Error)
			}
			sum[e.Error] += e.Count
		}
	}
	out := make([]ErrorCount, 0, len(order))
	for _, m := range order {
		out = append(out, ErrorCount{m, sum[m]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// cpuTime is a process's CPU time in seconds (readCPU, in cpu_*.go).
type cpuTime struct{ user, sys float64 }
