// Package broker is Petrel's MQTT server: the Server, and the sans-I/O
// protocol engine behind every connection (sessions, QoS state machines,
// wills, keep alive, takeover, routing). Drivers in internal/listener move the
// bytes; this package never touches a socket.
//
// # Embedding
//
// A Go program runs a broker with New, Start and Close, and publishes into
// it with Server.Publish. Options.Hooks are functions it calls at each step
// of a client's life: authentication, authorization, connection,
// publication, delivery, drops and disconnection. Hooks run on the
// broker's goroutines, which serve many clients each: a hook must not
// block, must not keep what it is given past the call, and must not call
// back into the Server from OnDelivered or OnDropped. A hook that panics
// closes its client's connection, not the broker. Hooks has the whole
// contract; examples/embed is a complete program.
//
// Options.Listeners says where to listen: plain TCP, TLS, WebSocket,
// WebSocket over TLS or a unix socket (ListenerConfig.Kind), so an embedder
// needs no other package for its transports. Package tlsconf builds the
// tls.Config of a "tls" or "wss" listener from certificate files, and
// reloads them when they change.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/internal/listener/ws"
	"github.com/petrelmq/petrel/internal/pipebuf"
	"github.com/petrelmq/petrel/internal/throttle"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	"github.com/petrelmq/petrel/tlsconf"
)

// Server is an MQTT broker. Everything it owns hangs off it, so one process
// can run many.
type Server struct {
	opts Options
	log  *slog.Logger

	index    *topic.Index[*session, subscriber]
	retained *topic.Retained[retainedRec]
	// shared indexes the shared subscription groups by their filter.
	shared *topic.Index[*shareGroup, *shareGroup]

	// mu guards sessions; docs/LOCKING.md gives the lock order. online
	// counts the sessions a connection holds (the clients connected), and
	// maxOnline is the most there have been at once.
	mu            sync.Mutex
	sessions      sessionTable
	online        int
	maxOnline     int
	nextSessionID atomic.Uint64

	// On a cluster node (handover.go): stamps counts the messages routed
	// here, each under cutMu read-locked, so that Stamp, write-locking it,
	// sees none under way. claims are the CONNECTs claiming a client id
	// here (closed when done), leavingSessions the sessions handed to
	// another node, kept until it says it has them; both under movesMu.
	cutMu           sync.RWMutex
	stamps          atomic.Uint64
	movesMu         sync.Mutex
	claims          map[string]*claim
	leavingSessions map[string]*session

	// retainedExpiry lists the retained topics whose message expires.
	retainedExpiry expiryIndex
	// expiring lists the sessions with a queued delivery that expires.
	expiring expiringSessions
	// localRetained, on a node of a cluster, are the retained messages its
	// store kept from before it was clustered, until the cluster takes
	// them (ClusterNode.MigrateRetained). Only Start uses it.
	localRetained []localRetained

	// sharesMu guards shares, the groups by name and filter; sharedSubs
	// counts their members (changed under sharesMu, read without).
	sharesMu   sync.Mutex
	shares     map[string]*shareGroup
	sharedSubs atomic.Int64

	// connCount counts open connections; connRate limits new ones per
	// source address (nil: no limit); queuedMem is the payload bytes held
	// in memory queues, for the memory budget.
	connCount atomic.Int64
	connRate  *ipLimiter
	queuedMem atomic.Int64
	logins    *throttle.Logins

	// store keeps durable state; committer writes to it.
	store     store.Store
	ownStore  bool
	committer *committer
	msgIDs    atomic.Uint64

	// heldBack lists, for each backed-up session, the connections that
	// wait for its backlog to drain, and holds what each held-back
	// connection waits for (backpressure.go). heldBackMu is a leaf, taken
	// under session.mu.
	heldBackMu sync.Mutex
	heldBack   map[*session]*heldBackOn
	holds      map[*conn]*hold
	// outWaits lists, for each client whose QoS 0 output went past its
	// bound, the publishers waiting for it to drain (outwait.go).
	outWaits map[*conn]*outWait
	// clusterWaits are the publishers held back until the queues to other
	// nodes drain (cluster.go).
	clusterWaits map[*conn]*hold

	conns connSet
	// pipes are the pipes big payloads are spliced through (piped.go),
	// nil when Options.DisableSplice.
	pipes *pipebuf.Pool
	// internal is the listener of DialInternal's connections (internal.go),
	// set by Start.
	internal   *listenerState
	internalLn *pipeListener
	admin      adminState // the admin API's directory of sessions, and readiness (admin.go)
	listeners  []*listenerState
	stats      stats
	// lastDropLog (unix ns) rate-limits the warnings for dropped messages.
	lastDropLog  atomic.Int64
	shuttingDown atomic.Bool
	// leftCluster: Close has left the cluster; nothing from other nodes is
	// delivered any more.
	leftCluster atomic.Bool
	// reconciles counts the calls of ClusterNode.Reconcile since its run
	// under way began (replica.go).
	reconciles atomic.Int32
	// running is set once Start has recovered the store: Publish may
	// route from then on. pubMu is held (read) by each Publish, so that
	// Close can wait for them before it stops the committer.
	running atomic.Bool
	pubMu   sync.RWMutex
	// publishHooks: OnACLCheck or OnPublish is set, so a PUBLISH has more
	// to pass (one test on the path of every PUBLISH when neither is).
	publishHooks bool
	// sysKick asks the $SYS goroutine for an update now (sys.go; tests);
	// nil when $SYS is off.
	sysKick chan chan struct{}

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// listenerState is a running listener; connections point to theirs.
type listenerState struct {
	srv    *Server
	name   string
	cfg    ListenerConfig
	driver listener.Driver
	// allowAnonymous: clients without a user name may connect here.
	allowAnonymous bool
	// conns counts the listener's open connections.
	conns atomic.Int64
}

// New makes a Server; Start opens its listeners.
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		index:    topic.NewIndex[*session, subscriber](),
		retained: topic.NewRetained[retainedRec](),
		shared:   topic.NewIndex[*shareGroup, *shareGroup](),
		shares:   make(map[string]*shareGroup),
	}
	s.conns.ahead = wheelAhead(opts.Limits.IncompletePacketTimeout, opts.StallTimeout)
	s.publishHooks = opts.Hooks.OnACLCheck != nil || opts.Hooks.OnPublish != nil
	// From the clock, so that a node's stamps keep growing across its
	// restarts: a session that moved keeps the cut (handover.go).
	s.stamps.Store(uint64(time.Now().UnixNano()))
	s.store = opts.Store
	if s.store == nil {
		s.store, s.ownStore = memory.New(), true
	}
	if !opts.DisableSplice {
		s.pipes = pipebuf.NewPool(pipebuf.Limit(maxPipes))
	}
	s.logins = throttle.New(throttle.Config{})
	if r := opts.Limits.ConnectionRate; r > 0 {
		s.connRate = newIPLimiter(r, opts.Limits.ConnectionBurst)
	}
	s.committer = newCommitter(s.store, s.log)
	s.committer.syncEvery = opts.SyncPeriod
	s.msgIDs.Store(randomMessageBase())
	if opts.SysInterval > 0 {
		s.sysKick = make(chan chan struct{})
	}
	return s
}

// Start opens every configured listener and starts serving. It returns once
// all are listening, or the first error (closing any it opened).
func (s *Server) Start() error {
	start := time.Now()
	s.stats.started.Store(start.UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.committer.run()
	}()
	if err := s.recover(); err != nil {
		s.Close()
		return fmt.Errorf("recover from the store: %w", err)
	}
	if s.opts.Cluster != nil {
		if err := s.opts.Cluster.Start(&ClusterNode{s: s}); err != nil {
			s.Close()
			return fmt.Errorf("join the cluster: %w", err)
		}
		s.committer.cluster = s.opts.Cluster
		s.committer.replicating.Store(s.opts.Cluster.ReplicatesSessions())
	}
	s.running.Store(true)
	for _, lc := range s.opts.Listeners {
		ls, err := s.listen(lc)
		if err != nil {
			s.Close()
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		s.listeners = append(s.listeners, ls)
		s.log.Info("listening", "listener", lc.Name, "addr", ls.driver.Addr().String())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := ls.driver.Serve(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("listener stopped", "listener", ls.name, "err", err)
			}
		}()
	}
	s.startInternal(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sweep(ctx)
	}()
	if s.opts.SysInterval > 0 {
		// The first values are retained before Start returns.
		tree := newSysTree(start)
		s.updateSys(tree, time.Now())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runSys(ctx, tree)
		}()
	}
	s.admin.ready.Store(true)
	return nil
}

func (s *Server) listen(lc ListenerConfig) (*listenerState, error) {
	ln, err := s.openListener(lc)
	if err != nil {
		return nil, err
	}
	ls := &listenerState{srv: s, name: lc.Name, cfg: lc, allowAnonymous: anonymousAllowed(lc)}
	if ls.allowAnonymous && !isLocal(lc) {
		s.log.Warn("listener allows anonymous clients on a network address", "listener", lc.Name, "addr", lc.Address)
	}
	if !ls.allowAnonymous && s.opts.Authenticator == nil && s.opts.AuthMethods == nil {
		s.log.Warn("listener refuses anonymous clients and no authentication is configured: nobody can connect",
			"listener", lc.Name)
	}
	dopts := listener.Options{Logger: s.log, Pipes: s.pipes}
	if tl, ok := ln.(*net.TCPListener); ok && !lc.goroutineDriver && runtime.GOOS == "linux" {
		d, err := listener.NewEventLoopDriver(tl, ls, dopts)
		if err != nil {
			ln.Close()
			return nil, err
		}
		ls.driver = d
	} else {
		ls.driver = listener.NewGoroutineDriver(ln, ls, dopts)
	}
	return ls, nil
}

// openListener opens the socket for a listener of any kind: TCP, TLS over
// TCP, WebSocket over TCP or TLS, or a unix socket.
func (s *Server) openListener(lc ListenerConfig) (net.Listener, error) {
	if lc.UsernameFrom != "" {
		if err := tlsconf.CheckIdentitySource(lc.UsernameFrom); err != nil {
			return nil, fmt.Errorf("UsernameFrom: %w", err)
		}
	}
	if lc.Kind == "unix" {
		return listener.ListenUnix(lc.Address, 0o660)
	}
	if (lc.Kind == "tls" || lc.Kind == "wss") && lc.TLS == nil {
		return nil, fmt.Errorf("%s listener without a TLS configuration", lc.Kind)
	}
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, err
	}
	// Every kind's client speaks first (CONNECT, ClientHello, HTTP).
	if err := listener.DeferAccept(ln.(*net.TCPListener)); err != nil {
		s.log.Warn("listener: cannot defer accepting until a client speaks", "listener", lc.Name, "err", err)
	}
	switch lc.Kind {
	case "tcp":
		return ln, nil
	case "tls":
		return tls.NewListener(ln, lc.TLS), nil
	case "ws", "wss":
		if lc.Kind == "wss" {
			ln = tls.NewListener(ln, lc.TLS)
		}
		wl, err := ws.Listen(ln, ws.Options{Path: lc.WebSocketPath, AllowedOrigins: lc.AllowedOrigins,
			TrustProxy: lc.TrustProxy, ReadLimit: int64(s.opts.MaxPacketSize) + 64<<10, Logger: s.log})
		if err != nil {
			ln.Close()
			return nil, err
		}
		return wl, nil
	}
	ln.Close()
	return nil, fmt.Errorf("unknown listener kind %q (tcp, tls, ws, wss or unix)", lc.Kind)
}

// Open implements listener.Handler: a connection arrived.
func (ls *listenerState) Open(nc listener.Conn) listener.Endpoint {
	s := ls.srv
	c := &conn{nc: nc, ln: ls}
	s.stats.accepted.Add(1)
	now := time.Now()
	total, here := s.connCount.Add(1), ls.conns.Add(1)
	lim := &s.opts.Limits
	switch {
	case lim.MaxConnections > 0 && total > int64(lim.MaxConnections),
		ls.cfg.MaxConnections > 0 && here > int64(ls.cfg.MaxConnections):
		c.refusal = packet.QuotaExceeded
		s.stats.refusedConnections.Add(1)
	case s.connRate != nil && !s.connRate.allow(nc.RemoteAddr(), now.UnixNano()):
		c.refusal = packet.ConnectionRateExceeded
		s.stats.refusedRate.Add(1)
	}
	// [MQTT-3.1.4-1] A client that does not send CONNECT in time is cut
	// off; one that is to be refused gets a second to hear why.
	timeout := s.opts.ConnectTimeout
	if c.refusal != 0 {
		timeout = min(timeout, time.Second)
	}
	c.deadline.Store(now.Add(timeout).UnixNano())
	s.conns.add(c)
	return c
}

// anonymousAllowed applies the secure default: anonymous clients only on
// loopback addresses and unix sockets, unless the configuration says.
func anonymousAllowed(lc ListenerConfig) bool {
	if lc.AllowAnonymous != nil {
		return *lc.AllowAnonymous
	}
	return isLocal(lc)
}

// isLocal reports whether a listener is reachable from this machine only.
func isLocal(lc ListenerConfig) bool {
	if lc.Kind == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(lc.Address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addrs returns the address of every listener, in configuration order.
func (s *Server) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		addrs[i] = l.driver.Addr()
	}
	return addrs
}

// Close stops the listeners and closes every connection. Wills are not
// published for connections the server closes on shutdown.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	start := time.Now()
	s.shuttingDown.Store(true)
	if s.cancel != nil {
		s.cancel() // the listeners stop accepting
	}
	// Tell MQTT 5 clients why they lose the connection: DISCONNECT 0x8B,
	// Server shutting down (MQTT 5 §3.14.2.1; no numbered statement).
	conns, told := 0, 0
	s.conns.each(func(c *conn) {
		conns++
		if c.flags.Load()&flagConnectedV5 != 0 && !c.isClosing() {
			told++
		}
		c.disconnect(packet.ServerShuttingDown, "server shutting down")
	})
	s.log.Info("shutdown: stopped accepting; closing every connection", "connections", conns,
		"mqtt5_disconnect_0x8b", told)
	var errs []error
	for _, l := range s.listeners {
		if err := l.driver.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if s.internal != nil {
		_ = s.internal.driver.Close()
	}
	s.log.Info("shutdown: connections closed", "elapsed", time.Since(start).Round(time.Millisecond))
	if s.opts.Cluster != nil && s.running.Load() {
		s.evacuate()
		// The sessions handed on leave the replica too, before the node
		// leaves; later writes stay on this node's disk.
		s.flushStore()
		s.committer.replicating.Store(false)
		s.leftCluster.Store(true)
		if err := s.opts.Cluster.Close(); err != nil {
			errs = append(errs, fmt.Errorf("leave the cluster: %w", err))
		}
	}
	// Every connection is closed, and every Publish under way returned:
	// what is left to write goes to the store.
	s.pubMu.Lock()
	//lint:ignore SA2001 a barrier: Lock waited for every Publish under way (each holds the read lock)
	s.pubMu.Unlock()
	s.committer.stop()
	s.wg.Wait()
	s.pipes.Close() // the pipes messages still hold close as they are let go
	s.log.Info("shutdown: pending store writes committed", "elapsed", time.Since(start).Round(time.Millisecond))
	if s.ownStore {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

// sweep closes connections whose CONNECT or keep alive deadline passed,
// and those stalled with a full in-flight window (stall.go).
func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	exp := time.NewTicker(expireSweepInterval)
	defer exp.Stop()
	stalls := s.opts.StallTimeout > 0
	watch := make(stallWatch)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-exp.C:
			s.sweepExpired(now)
		case now := <-t.C:
			due, full := s.conns.sweep(now.UnixNano(), stalls)
			for _, c := range due {
				if id := c.clientID(); id == "" {
					s.log.Debug("closing connection: no CONNECT in time", "remote", c.nc.RemoteAddr().String())
				} else {
					s.log.Debug("closing connection: keep alive timeout", "client", id,
						"remote", c.nc.RemoteAddr().String())
				}
				s.stats.timeouts.Add(1)
				c.disconnect(packet.KeepAliveTimeout, "keep alive timeout") // [MQTT-3.1.2-22] (v5)
			}
			if stalls {
				s.sweepStalled(watch, now.UnixNano(), full)
			}
		}
	}
}

const sweepInterval = 250 * time.Millisecond

// debugging reports whether debug messages are logged: the callers that
// format an address for one, per connection, ask first.
func (s *Server) debugging() bool { return s.log.Enabled(context.Background(), slog.LevelDebug) }
