// Package cluster makes Petrel brokers on several machines one broker, over
// NATS: each node embeds a nats-server joined to its peers by routes (or
// uses an existing NATS cluster), and implements broker.Cluster on it.
//
// What crosses nodes, and how (docs/CLUSTER.md has the guarantees):
//
//   - Subscriptions: each node tells the others when it gains its first
//     subscription to a filter and loses its last (subject petrel.<cluster>.i),
//     and every node keeps a table of which node holds which filters. A
//     SUBACK waits until every live node has applied the change, so a
//     PUBLISH accepted afterwards on any node finds it. No consensus round:
//     each node is the only writer of its own entries.
//   - Messages: a message goes once to each other node whose filters match,
//     however many of its subscriptions do, in batches (many MQTT messages
//     per NATS message under load) on petrel.<cluster>.m.<node>. The
//     receiving node routes the batch to its sessions, stores what its
//     persistent sessions need, and acknowledges the batch; only then is
//     the publisher's PUBACK or PUBREC sent. A bounded window of batches in
//     flight per node, and a receiver that acknowledges only once its
//     backed-up subscribers have drained, carry backpressure across nodes.
//   - Shared subscriptions: every node knows which nodes have members of
//     each group; the publishing node picks one node per message in turn,
//     and that node picks its member with the most room.
//   - Retained messages: a replicated JetStream key-value bucket, and an
//     in-memory index on every node fed by the bucket's updates.
//   - Membership: heartbeats; a node unheard of for NodeTimeout is dead,
//     its routes are removed and the batches in flight to it are given up.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrelmq/petrel/broker"
)

// Config is one node's place in a cluster.
type Config struct {
	// Node names this node; unique in the cluster. Letters, digits, '-'
	// and '_'.
	Node string
	// Name is the cluster's name; nodes of different names do not join.
	// Default "petrel".
	Name string
	// Listen is this node's route address (host:port), which the other
	// nodes' Peers name. Required unless NATSURL is set.
	Listen string
	// Advertise, when set, is the route address the other nodes are told
	// to dial for this one instead of Listen (NAT, containers, proxies).
	Advertise string
	// Peers are other nodes' route addresses; any one that is up is
	// enough to join, the rest are found from it.
	Peers []string
	// NATSURL makes the node a client of an existing NATS cluster (with
	// JetStream) instead of embedding a server: Listen and Peers are then
	// unused.
	NATSURL string
	// DataDir is where JetStream keeps the replicated retained messages.
	// Empty: in memory (replicated, but lost when every node stops).
	DataDir string
	// NodeTimeout is how long a node may go unheard before it counts as
	// dead. Default 3s; heartbeats go every third of it.
	NodeTimeout time.Duration
	// NoReplica turns off the sessions' replica (replica.go): a node's
	// persistent sessions are then lost with it, and their writes cost no
	// replication.
	NoReplica bool
	// Username and Password, when set, are required of routes between
	// the nodes; TLS, when set, encrypts them (and must verify peers).
	Username, Password string
	TLS                *tls.Config
	// QueueBytes bounds what may wait to go to one node before the
	// publishers are held back. Default 8 MiB.
	QueueBytes int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// NodeName makes a valid node name from s (a host name): characters a
// node name may not have become '-'.
func NodeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 {
		return "petrel"
	}
	return string(b)
}

func (c *Config) check() error {
	if c.Name == "" {
		c.Name = "petrel"
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 3 * time.Second
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if !nodeNameRE.MatchString(c.Node) {
		return fmt.Errorf("node name %q: use 1 to 64 letters, digits, '-' or '_'", c.Node)
	}
	if !nodeNameRE.MatchString(c.Name) {
		return fmt.Errorf("cluster name %q: use 1 to 64 letters, digits, '-' or '_'", c.Name)
	}
	if c.NATSURL != "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("cluster listen address %q: %w", c.Listen, err)
	}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("cluster peer %q: %w", p, err)
		}
	}
	return nil
}

// Cluster is one node's link to the others; it implements broker.Cluster.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	boot string // this run's id: a node that restarts is a new member
	pfx  string // subject prefix, petrel.<cluster>.

	ns     *server.Server // nil with NATSURL
	tmpDir string         // JetStream's directory when there is no DataDir
	others []string       // the other nodes Peers names (otherPeers)
	nc     *nats.Conn
	js     jetstream.JetStream
	node   *broker.ClusterNode
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	table table
	peers peerSet
	ret   retainer
	dir   kvBucket // the session directory (sessions.go)
	rep   kvBucket // the sessions' replica (replica.go)
	// repStream is the replica bucket's stream, for purges.
	repMu     sync.Mutex
	repStream jetstream.Stream
	ghosts    ghostSet
	// inbox is onBatch's decoding space, reused (one batch at a time),
	// and inboxGroups the shared groups of the batch.
	inbox       []broker.Forwarded
	inboxGroups []string

	// saidCrowded, by node, are the shared groups this node told it have
	// no room here (room.go).
	roomMu      sync.Mutex
	saidCrowded map[string]map[string]bool

	// acks are the broadcasts waiting for every live node's answer.
	acksMu sync.Mutex
	acks   map[uint64]*ackWait
	ackSeq atomic.Uint64

	stats Stats
}

// Stats counts what crossed nodes, for metrics.
type Stats struct {
	Forwarded, Batches, Received, ReceivedBatches, GivenUp atomic.Uint64
}

// New checks cfg and makes a node; the Server's Start joins the cluster.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &Cluster{cfg: cfg, log: cfg.Logger, boot: hex.EncodeToString(b[:]), pfx: "petrel." + cfg.Name + "."}
	c.acks = make(map[uint64]*ackWait)
	c.saidCrowded = make(map[string]map[string]bool)
	c.others = otherPeers(&c.cfg)
	c.table.init(cfg.Node)
	c.peers.init()
	c.ret.init()
	c.dir = kvBucket{name: dirBucket, what: "session directory", maxValue: 1024}
	c.rep = kvBucket{name: replicaBucket, what: "sessions' replica", markerTTL: markerTTL}
	return c, nil
}

// NodeTimeout is how long a node may go unheard before it is dead.
func (c *Cluster) NodeTimeout() time.Duration { return c.cfg.NodeTimeout }

// Stats returns the counters.
func (c *Cluster) Stats() *Stats { return &c.stats }

// Nodes lists the nodes this one hears from, itself included.
func (c *Cluster) Nodes() []string {
	names := c.peers.names()
	return append(names, c.cfg.Node)
}

// RouteAddr is the embedded server's route address ("" with NATSURL).
func (c *Cluster) RouteAddr() string {
	if c.ns == nil || c.ns.ClusterAddr() == nil {
		return ""
	}
	return c.ns.ClusterAddr().String()
}

// Start implements broker.Cluster: it starts or joins NATS, learns the
// other nodes' subscriptions, and loads the retained messages.
func (c *Cluster) Start(n *broker.ClusterNode) error {
	c.node = n
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.connect(); err != nil {
		c.shutdown()
		return err
	}
	if err := c.subscribe(); err != nil {
		c.shutdown()
		return err
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.heartbeats()
	}()
	go func() {
		defer c.wg.Done()
		c.checkRoom()
	}()
	// The others' subscriptions before serving: one round of heartbeats
	// introduces every live node, and each is asked for its table.
	c.hello()
	if err := c.ret.start(c); err != nil {
		c.shutdown()
		return fmt.Errorf("retained messages: %w", err)
	}
	dctx, dcancel := context.WithTimeout(c.ctx, 2*time.Minute)
	_, err := c.dir.bind(dctx, c)
	if err == nil && !c.cfg.NoReplica {
		_, err = c.rep.bind(dctx, c)
	}
	if err == nil {
		err = c.dirReady(dctx)
	}
	dcancel()
	if err != nil {
		c.shutdown()
		return err
	}
	var moved int
	moved, err = n.MigrateRetained(func(topics []string, bodies [][]byte) []bool {
		return c.ret.migrate(c, topics, bodies)
	})
	if err != nil {
		c.shutdown()
		return err
	}
	if moved > 0 {
		c.log.Info("cluster: retained messages from this node's store moved to the cluster", "messages", moved)
	}
	c.log.Info("cluster: joined", "node", c.cfg.Node, "cluster", c.cfg.Name, "route", c.RouteAddr(),
		"nodes", strings.Join(c.Nodes(), ","), "retained", c.ret.loaded.Load())
	return nil
}

// connect starts the embedded server (or dials NATSURL) and connects.
func (c *Cluster) connect() error {
	if c.cfg.NATSURL != "" {
		nc, err := nats.Connect(c.cfg.NATSURL, nats.Name("petrel-"+c.cfg.Node), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", c.cfg.NATSURL, err)
		}
		c.nc = nc
	} else {
		if err := c.embed(); err != nil {
			return err
		}
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	c.js = js
	return nil
}

// embed starts this node's nats-server. Its client port listens on
// loopback only, behind a random token: the broker connects in process.
// (DontListen would spare the port, but nats-server then never starts
// its routes: they wait for the client listener.)
func (c *Cluster) embed() error {
	host, portStr, _ := net.SplitHostPort(c.cfg.Listen)
	var port int
	if _, err := fmt.Sscan(portStr, &port); err != nil {
		return fmt.Errorf("cluster listen address %q: bad port", c.cfg.Listen)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	dir := ""
	if c.cfg.DataDir != "" {
		dir = filepath.Join(c.cfg.DataDir, "cluster")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("cluster data directory: %w", err)
		}
	} else {
		d, err := os.MkdirTemp("", "petrel-cluster-")
		if err != nil {
			return fmt.Errorf("cluster directory: %w", err)
		}
		dir, c.tmpDir = d, d
	}
	o := &server.Options{
		ServerName:    c.cfg.Node,
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: token,
		NoSigs:        true,
		NoLog:         true,
		MaxPayload:    64 << 20,
		JetStream:     true,
		StoreDir:      dir,
		Cluster: server.ClusterOpts{
			Name:           c.cfg.Name,
			Host:           host,
			Port:           port,
			Username:       c.cfg.Username,
			Password:       c.cfg.Password,
			TLSConfig:      c.cfg.TLS,
			ConnectRetries: -1,
			Advertise:      c.cfg.Advertise,
		},
	}
	if c.cfg.TLS != nil {
		o.Cluster.TLSTimeout = 5
	}
	// JetStream in a cluster needs a route configured even on the first
	// node: its own address serves (a route to itself is dropped).
	routes := append([]string{c.cfg.Listen}, c.others...)
	for _, r := range routes {
		u := &url.URL{Scheme: "nats-route", Host: r}
		if c.cfg.Username != "" {
			u.User = url.UserPassword(c.cfg.Username, c.cfg.Password)
		}
		o.Routes = append(o.Routes, u)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLogger{l: c.log, fatal: fatal}, false, false, false)
	ns.Start()
	c.ns = ns
	// A route address in use is fatal to the server, which then never
	// gets ready: said at once rather than after the wait.
	// The client port is ready before the route port is bound: both are
	// waited for.
	deadline := time.Now().Add(30 * time.Second)
	for !ns.ReadyForConnections(100*time.Millisecond) || ns.ClusterAddr() == nil {
		select {
		case msg := <-fatal:
			return fmt.Errorf("embedded NATS (route address %s): %s", c.cfg.Listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded NATS: not ready after 30s (route address %s)", c.cfg.Listen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Token(token), nats.Name("petrel-"+c.cfg.Node),
		nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	c.nc = nc
	return nil
}

// otherPeers lists the distinct nodes cfg.Peers names, this node's own
// address, listened on or advertised (a list shared by every node's
// configuration has it), left out:
// JetStream sizes a new cluster by its routes, and one named twice made a
// cluster of three wait for a fourth.
func otherPeers(cfg *Config) []string {
	if cfg.NATSURL != "" {
		return nil
	}
	self := routeKey(cfg.Listen)
	seen := make(map[string]bool)
	var out []string
	for _, p := range cfg.Peers {
		k := routeKey(p)
		if k == self || sameHostPort(cfg.Listen, p) || cfg.Advertise != "" && routeKey(cfg.Advertise) == k || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, p)
	}
	return out
}

// routeKey resolves a route address to compare it with another.
func routeKey(addr string) string {
	if a, err := net.ResolveTCPAddr("tcp", addr); err == nil && a.IP != nil {
		return a.String()
	}
	return strings.ToLower(addr)
}

// sameHostPort says whether peer is this node's own listen address when
// that listens on every interface: same port, and a local address.
func sameHostPort(listen, peer string) bool {
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil || (lh != "" && lh != "0.0.0.0" && lh != "::") {
		return false
	}
	a, err := net.ResolveTCPAddr("tcp", peer)
	if err != nil || strconv.Itoa(a.Port) != lp {
		return false
	}
	if a.IP.IsLoopback() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok && n.IP.Equal(a.IP) {
			return true
		}
	}
	return false
}

// Close implements broker.Cluster: the others hear that this node leaves.
func (c *Cluster) Close() error {
	if c.nc != nil && !c.nc.IsClosed() {
		_ = c.nc.Publish(c.pfx+"bye", []byte(c.cfg.Node+" "+c.boot))
		_ = c.nc.FlushTimeout(time.Second)
	}
	c.shutdown()
	return nil
}

func (c *Cluster) shutdown() {
	if c.cancel != nil {
		c.cancel()
	}
	c.peers.closeAll(c)
	if c.nc != nil {
		c.nc.Close()
	}
	c.wg.Wait()
	if c.ns != nil {
		c.ns.Shutdown()
		c.ns.WaitForShutdown()
	}
	if c.tmpDir != "" {
		os.RemoveAll(c.tmpDir)
	}
	c.failAcks()
}

// Full implements broker.Cluster.
func (c *Cluster) Full() bool { return c.peers.full.Load() > 0 }

// natsLogger sends the embedded server's notices and errors to the
// broker's log.
type natsLogger struct {
	l *slog.Logger
	// fatal receives the first fatal error (the server is then unusable).
	fatal chan<- string
}

func (n natsLogger) Noticef(format string, v ...any) {
	// The cluster logs nodes joining and leaving itself; the server's
	// notices are for debugging.
	n.l.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (n natsLogger) Warnf(format string, v ...any) {
	// Chosen: a big MQTT message crosses nodes in one NATS message.
	n.log(slog.LevelWarn, "Maximum payloads over", format, v)
}
func (n natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	n.l.Error("nats: " + msg)
	select {
	case n.fatal <- msg:
	default:
	}
}
func (n natsLogger) Errorf(format string, v ...any) {
	// A peer that is down is redialled for good; "node left" said so.
	n.log(slog.LevelError, "Error trying to connect to route", format, v)
	if msg := fmt.Sprintf(format, v...); strings.Contains(msg, "listening on router port") {
		// The server shuts itself down after this one, without a fatal.
		select {
		case n.fatal <- msg:
		default:
		}
	}
}

// log logs at level, or at debug when the message contains quiet.
func (n natsLogger) log(level slog.Level, quiet, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, quiet) {
		level = slog.LevelDebug
	}
	n.l.Log(context.Background(), level, "nats: "+msg)
}
func (n natsLogger) Debugf(format string, v ...any) {}
func (n natsLogger) Tracef(format string, v ...any) {}
