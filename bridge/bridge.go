// Package bridge links the broker to another MQTT broker, as Mosquitto's
// bridges do (docs/BRIDGES.md): messages on the local topics a rule names
// go out to the remote broker, messages on the remote topics it names
// come in, with each side's topic prefixes swapped.
//
// A bridge is two MQTT clients joined by acknowledgements. Its local side
// is a persistent session of the local broker (over an in-process
// connection, broker.Server.DialInternal): what is to go out while the
// remote broker is unreachable waits there, in the store, bounded as any
// session is, and survives a restart. A message taken from either side is
// acknowledged to it only once the other side has acknowledged it
// (client.Options.ManualAck), so a crash or a dropped link in between
// makes the first side send it again: nothing acknowledged is lost, and
// QoS 1 and 2 messages may arrive twice after an outage.
//
// Loops: both sides subscribe with No Local (MQTT 5), so what the bridge
// publishes on one side never comes back to it on that side.
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// Directions of a rule.
const (
	In   = "in"   // remote to local
	Out  = "out"  // local to remote
	Both = "both" // each way
)

// Rule is one topic rule, as in Mosquitto's `topic pattern direction qos
// local-prefix remote-prefix`: the local topics LocalPrefix+Pattern and
// the remote topics RemotePrefix+Pattern are the same messages.
type Rule struct {
	Pattern      string
	Direction    string
	QoS          byte // at most; a message goes at the lower of this and its own
	LocalPrefix  string
	RemotePrefix string
}

// Config is one bridge.
type Config struct {
	// Name names the bridge in logs, metrics and its local session
	// ("bridge-<name>").
	Name string
	// Addr is the remote broker, in client.Options.Addr's forms (tcp://,
	// mqtt://, tls://, mqtts://, ws://, wss://, host:port).
	Addr string
	// Version is the remote protocol: packet.V5 (default) or packet.V311.
	Version  byte
	ClientID string // at the remote broker; default "petrel-bridge-<name>"
	Username string
	Password []byte
	TLS      *tls.Config
	// CleanStart starts a new remote session on every connection; false
	// (the default) keeps one, so that what the remote broker has for the
	// bridge while the link is down waits there.
	CleanStart bool
	Rules      []Rule
	// Local connects to the local broker (broker.Server.DialInternal).
	Local func(ctx context.Context) (net.Conn, error)
	// MaxPacketSize refuses larger packets from the remote broker: the
	// link ends (and is made again after a backoff) rather than allocate
	// what a hostile or broken peer asks for. Default 1 MiB; the local
	// broker's own maximum is the useful value.
	MaxPacketSize int
	// MinBackoff and MaxBackoff bound the wait before connecting again
	// after a failure: it doubles from MinBackoff up to MaxBackoff, less
	// up to a fifth at random. Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// OnState, when set, is called with true once a link is up and false
	// once it is down: for $SYS/broker/connection/<name>/state.
	OnState func(connected bool)
	Logger  *slog.Logger
}

// window is how many QoS 1 and 2 messages each side may have in flight
// to the bridge (MQTT 5 Receive Maximum).
const window = 256

// Bridge runs one bridge: see Run.
type Bridge struct {
	cfg Config
	log *slog.Logger
	out *topic.Index[int, int] // local filters of out rules → rule index
	in  *topic.Index[int, int] // remote filters of in rules → rule index

	connected                      atomic.Bool
	sent, received, fails, dropped atomic.Uint64
}

// New checks cfg and makes its bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.Name == "" || cfg.Addr == "" || cfg.Local == nil {
		return nil, errors.New("bridge: Name, Addr and Local are required")
	}
	if cfg.Version == 0 {
		cfg.Version = packet.V5
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "petrel-bridge-" + cfg.Name
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = 1 << 20
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger.With("bridge", cfg.Name),
		out: topic.NewIndex[int, int](), in: topic.NewIndex[int, int]()}
	for i, r := range cfg.Rules {
		if r.QoS > 2 {
			return nil, fmt.Errorf("bridge %s: rule %d: QoS %d", cfg.Name, i, r.QoS)
		}
		switch r.Direction {
		case In, Out, Both:
		default:
			return nil, fmt.Errorf("bridge %s: rule %d: direction %q is not in, out or both", cfg.Name, i, r.Direction)
		}
		if r.Direction != In {
			b.out.Add(r.LocalPrefix+r.Pattern, i, i)
		}
		if r.Direction != Out {
			b.in.Add(r.RemotePrefix+r.Pattern, i, i)
		}
	}
	return b, nil
}

// State is what a bridge has done so far.
type State struct {
	Connected bool
	// Sent and Received count the messages that went out and came in,
	// acknowledged by the other side; Failures the links that failed;
	// Dropped the QoS 0 messages that came faster than they could be
	// forwarded (QoS 1 and 2 ones are held back by the windows instead).
	Sent, Received, Failures, Dropped uint64
}

// Name is the bridge's name.
func (b *Bridge) Name() string { return b.cfg.Name }

// Addr is the remote broker's address, as configured.
func (b *Bridge) Addr() string { return b.cfg.Addr }

// Session is the client id of the bridge's session on the local broker,
// where what is to go out waits.
func (b *Bridge) Session() string { return SessionOf(b.cfg.Name) }

// SessionOf is the client id of bridge name's session on the local broker.
func SessionOf(name string) string { return "bridge-" + name }

// State returns the bridge's state now.
func (b *Bridge) State() State {
	return State{Connected: b.connected.Load(), Sent: b.sent.Load(), Received: b.received.Load(), Failures: b.fails.Load(),
		Dropped: b.dropped.Load()}
}

// Run keeps the link up until ctx is done: it connects to both sides,
// forwards until either connection fails, and connects again after a
// backoff.
func (b *Bridge) Run(ctx context.Context) {
	backoff := b.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := b.link(ctx)
		if b.connected.Swap(false) && b.cfg.OnState != nil {
			b.cfg.OnState(false)
		}
		if ctx.Err() != nil {
			return
		}
		b.fails.Add(1)
		if time.Since(start) > b.cfg.MaxBackoff {
			backoff = b.cfg.MinBackoff // it was up a while: start over
		}
		wait := backoff - time.Duration(rand.Int64N(int64(backoff)/5+1))
		b.log.Warn("bridge: link down; connecting again", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, b.cfg.MaxBackoff)
	}
}

// Start runs the bridge (Run) on a goroutine of its own until stop is
// called; stop returns once it has stopped.
func (b *Bridge) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// link connects both sides and forwards until one fails or ctx is done.
func (b *Bridge) link(ctx context.Context) error {
	outQ, inQ := newQueue(&b.dropped), newQueue(&b.dropped)
	var props packet.Properties
	props.ReceiveMaximum = window
	props.Mark(packet.PropReceiveMaximum)
	ro := client.Options{Addr: b.cfg.Addr, TLS: b.cfg.TLS, Version: b.cfg.Version, ClientID: b.cfg.ClientID,
		Username: b.cfg.Username, Password: b.cfg.Password, CleanStart: b.cfg.CleanStart,
		ManualAck: true, OnMessage: inQ.push, ConnectProps: props, MaxPacketSize: b.cfg.MaxPacketSize}
	if !b.cfg.CleanStart && b.cfg.Version == packet.V5 {
		ro.SessionExpiry = 0xFFFFFFFF
	}
	// The local side first: its session, subscribed, keeps what is to go
	// out from the first attempt on, whether or not the remote broker is
	// there yet.
	local, _, err := client.Connect(ctx, client.Options{Dial: b.cfg.Local, Version: packet.V5,
		ClientID: b.Session(), SessionExpiry: 0xFFFFFFFF, ManualAck: true, OnMessage: outQ.push,
		ConnectProps: props})
	if err != nil {
		return fmt.Errorf("connect to the local broker: %w", err)
	}
	defer local.Close()
	if err := b.subscribe(ctx, nil, local); err != nil {
		return err
	}
	remote, _, err := client.Connect(ctx, ro)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", b.cfg.Addr, err)
	}
	defer remote.Close()
	if err := b.subscribe(ctx, remote, nil); err != nil {
		return err
	}
	b.connected.Store(true)
	if b.cfg.OnState != nil {
		b.cfg.OnState(true)
	}
	b.log.Info("bridge: connected", "remote", b.cfg.Addr)

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- b.forward(lctx, outQ, local, remote, true) }()
	go func() { errs <- b.forward(lctx, inQ, remote, local, false) }()
	var linkErr error
	running := 2
	select {
	case linkErr = <-errs:
		running--
		if linkErr == nil {
			linkErr = errors.New("a forwarder stopped")
		}
	case <-remote.Done():
		linkErr = fmt.Errorf("remote: %w", remote.Err())
	case <-local.Done():
		linkErr = fmt.Errorf("local: %w", local.Err())
	case <-ctx.Done():
	}
	cancel()
	outQ.close()
	inQ.close()
	remote.Close()
	local.Close()
	for ; running > 0; running-- {
		<-errs
	}
	return linkErr
}

// subscribe makes the subscriptions of each side given (not nil): No
// Local, so that nothing the bridge publishes on a side comes back to it;
// the retained flag as published; retained messages only for a
// subscription that is new.
func (b *Bridge) subscribe(ctx context.Context, remote, local *client.Client) error {
	var outSubs, inSubs []packet.Subscription
	for _, r := range b.cfg.Rules {
		if r.Direction != In {
			outSubs = append(outSubs, packet.Subscription{Filter: r.LocalPrefix + r.Pattern, QoS: r.QoS,
				NoLocal: true, RetainAsPublished: true, RetainHandling: 1})
		}
		if r.Direction != Out {
			s := packet.Subscription{Filter: r.RemotePrefix + r.Pattern, QoS: r.QoS}
			if b.cfg.Version == packet.V5 {
				s.NoLocal, s.RetainAsPublished, s.RetainHandling = true, true, 1
			}
			inSubs = append(inSubs, s)
		}
	}
	for _, side := range []struct {
		c    *client.Client
		subs []packet.Subscription
		what string
	}{{local, outSubs, "local"}, {remote, inSubs, "remote"}} {
		if side.c == nil || len(side.subs) == 0 {
			continue
		}
		codes, err := side.c.Subscribe(ctx, side.subs, packet.Properties{})
		if err != nil {
			return fmt.Errorf("subscribe on the %s broker: %w", side.what, err)
		}
		for i, code := range codes {
			if code >= 0x80 {
				return fmt.Errorf("subscribe on the %s broker: %q refused (0x%02x)", side.what, side.subs[i].Filter, byte(code))
			}
		}
	}
	return nil
}

// forward takes the messages q gets from side from, publishes each to side
// to under its topic there, and acknowledges it to from once to has. Up to
// to's window of messages are on their way at once; the acknowledgements
// to from leave in order whatever order to answers in (ManualAck).
func (b *Bridge) forward(ctx context.Context, q *queue, from, to *client.Client, out bool) error {
	idx, what, count := b.in, "remote", &b.received
	if out {
		idx, what, count = b.out, "local", &b.sent
	}
	failed := make(chan error, 1)
	var rules []int
	for {
		select {
		case err := <-failed:
			return err
		default:
		}
		m, ok := q.pop(ctx)
		if !ok {
			return q.failure()
		}
		rules = idx.Match(m.Topic, rules[:0])
		var sends []*packet.Publish
		for _, ri := range rules {
			r := &b.cfg.Rules[ri]
			name := b.mapTopic(r, m.Topic, out)
			if name == "" || (len(sends) > 0 && sends[len(sends)-1].Topic == name) {
				continue // the prefix does not fit, or another rule sends it there
			}
			p := &packet.Publish{Topic: name, Payload: m.Payload, QoS: min(m.QoS, r.QoS), Retain: m.Retain}
			if b.cfg.Version == packet.V5 || !out {
				p.Props = forwardedProps(m.Props)
			}
			sends = append(sends, p)
		}
		if len(sends) == 0 { // no rule's prefix fits: nothing to send
			from.Ack(m)
			count.Add(1)
			continue
		}
		// The message is done once every copy is: then it is acked.
		left := &atomic.Int32{}
		left.Store(int32(len(sends)))
		done := func() {
			if left.Add(-1) == 0 {
				from.Ack(m)
				count.Add(1)
			}
		}
		for _, p := range sends {
			err := to.PublishAsync(ctx, p, func(code packet.ReasonCode, err error) {
				if err != nil {
					// Not acked: the side it came from sends it again.
					select {
					case failed <- fmt.Errorf("publish %q: %w", p.Topic, err):
					default:
					}
					return
				}
				if code >= 0x80 {
					// Refused for good (not authorized, say): sending it
					// again would be refused again.
					b.log.Warn("bridge: a message was refused", "from", what, "topic", p.Topic,
						"code", fmt.Sprintf("0x%02x", byte(code)))
				}
				done()
			})
			if err != nil {
				return fmt.Errorf("publish %q: %w", p.Topic, err)
			}
		}
	}
}

// mapTopic returns the topic on the other side of t under rule r, or ""
// when t does not carry the rule's prefix.
func (b *Bridge) mapTopic(r *Rule, t string, out bool) string {
	from, to := r.RemotePrefix, r.LocalPrefix
	if out {
		from, to = to, from
	}
	rest, ok := strings.CutPrefix(t, from)
	if !ok {
		return ""
	}
	return to + rest
}

// forwardedProps keeps the properties of a message that travel with it
// (MQTT 5 §3.3.2.3): not its topic alias or subscription identifiers.
func forwardedProps(p packet.Properties) packet.Properties {
	out := p
	out.SubscriptionIDs = nil
	out.TopicAlias = 0
	out.Present &^= 1<<packet.PropTopicAlias | 1<<packet.PropSubscriptionID
	return out
}

// queue holds what one side sent the bridge until it is forwarded. Its
// length is bounded by the side's window (Receive Maximum) for QoS 1 and
// 2; QoS 0 messages past maxQoS0 are dropped. push never blocks: it runs
// on the client's read goroutine, which must stay free to read the
// acknowledgements the forwarders wait for.
type queue struct {
	dropped *atomic.Uint64
	mu      sync.Mutex
	msgs    []*client.Message
	qos0    int
	closed  bool
	err     error // why the queue closed itself
	ready   chan struct{}
}

// maxQoS0 bounds the QoS 0 messages waiting, maxAcked the others: a side
// that sends more QoS 1 and 2 messages than the window it was given (an
// MQTT 3.1.1 broker is told no Receive Maximum) ends the link.
const (
	maxQoS0  = 1024
	maxAcked = 4 * window
)

var errFlood = errors.New("the broker sent more unacknowledged messages than the bridge's window")

func newQueue(dropped *atomic.Uint64) *queue {
	return &queue{dropped: dropped, ready: make(chan struct{}, 1)}
}

func (q *queue) push(m *client.Message) {
	q.mu.Lock()
	if q.closed || (m.QoS == 0 && q.qos0 >= maxQoS0) {
		if !q.closed {
			q.dropped.Add(1)
		}
		q.mu.Unlock()
		return
	}
	if m.QoS > 0 && len(q.msgs)-q.qos0 >= maxAcked {
		q.closed, q.err, q.msgs = true, errFlood, nil
		q.mu.Unlock()
		q.wake()
		return
	}
	if m.QoS == 0 {
		q.qos0++
	}
	q.msgs = append(q.msgs, m.Clone())
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// failure is why the queue closed itself, nil if it did not.
func (q *queue) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func (q *queue) pop(ctx context.Context) (*client.Message, bool) {
	for {
		q.mu.Lock()
		if len(q.msgs) > 0 && !q.closed {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			if m.QoS == 0 {
				q.qos0--
			}
			q.mu.Unlock()
			return m, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, false
		}
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.msgs = nil
	q.mu.Unlock()
	q.wake()
}
