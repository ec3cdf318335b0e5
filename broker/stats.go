package broker

import (
	"fmt"
	"math/bits"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/packet"
)

// What the broker counts, for Stats (and through it the Prometheus
// metrics, $SYS and the admin API). Counting must not cost the hot path
// its speed, so there are three kinds of count:
//
//   - Per packet and per message (packets and bytes in and out, messages by
//     QoS): never one shared atomic each. A read's packets are tallied in
//     a local array over one conn.consume, with the PUBLISHes its routing
//     wrote to subscribers (routeTx.sent), and added to the connection's
//     shard once per read. PUBLISHes written outside a routing (a queue
//     drained, a session resumed) are tallied over the drain. Bytes sent
//     are added in Written, once per write. Other packets sent (acks,
//     CONNACK, SUBACK, PINGRESP...) are counted where they are appended,
//     an atomic each: at most one per message, on QoS 1 and 2 paths that
//     cost far more. A shard is cache-line padded and chosen by the
//     connection's (or session's) address, so event loops seldom meet in
//     one. The shards are summed when Stats is called.
//   - Gauges that would take a walk over every session (queued and
//     in-flight deliveries): running counts, changed where the state
//     changes, in the session's shard; the session lifecycle gauges
//     (sessions, clients connected, subscriptions) change rarely and are
//     kept under the lock that guards the change, or in an atomic.
//   - Rare events (a connection accepted or ended, a CONNACK, a login, a
//     drop): an atomic each, in stats.
//
// No count adds a field to conn or session: an idle connection's memory
// is what a million-client broker is made of.

// Stats is a snapshot of what the broker holds and what it has counted
// since it started, for metrics and monitoring (Server.Stats). Gauges are
// what is there at the moment; counters only grow. Every value is plain,
// and the field names are JSON-friendly.
type Stats struct {
	// Version is Petrel's module version ("devel" for a build outside a
	// module version); StartTime is when Start was called.
	Version   string    `json:"version"`
	StartTime time.Time `json:"start_time"`
	// Node is this node's name (Options.NodeName): which node of a
	// cluster the statistics are of.
	Node string `json:"node"`

	// ClientsConnected are the connections whose CONNECT was accepted
	// and which still hold their session.
	ClientsConnected int64 `json:"clients_connected"`
	// ClientsMaximum is the most clients there have been connected at
	// once since Start.
	ClientsMaximum int64 `json:"clients_maximum"`
	// Sessions counts every session, of connected clients and offline;
	// SessionsOffline those without a connection (persistent sessions
	// waiting for their client).
	Sessions        int64 `json:"sessions"`
	SessionsOffline int64 `json:"sessions_offline"`
	// Subscriptions counts every session's subscriptions, shared ones
	// included; SharedSubscriptions the shared ones ($share/...) among
	// them, one per member session.
	Subscriptions       int64 `json:"subscriptions"`
	SharedSubscriptions int64 `json:"shared_subscriptions"`
	RetainedMessages    int64 `json:"retained_messages"`
	// QueuedMessages are the deliveries waiting for their turn (their
	// client offline, or its in-flight window full), in memory or in the
	// store, and QueuedBytes their payload bytes. InflightMessages are
	// the QoS 1 and 2 deliveries sent and not yet acknowledged.
	QueuedMessages   int64 `json:"queued_messages"`
	QueuedBytes      int64 `json:"queued_bytes"`
	InflightMessages int64 `json:"inflight_messages"`
	// HeldBackConnections are the publishers not read at the moment
	// because a subscriber of theirs is behind (backpressure).
	HeldBackConnections int64 `json:"held_back_connections"`

	// ConnectionsAccepted counts the network connections the listeners
	// accepted, whatever became of them.
	ConnectionsAccepted uint64 `json:"connections_accepted"`
	// ConnacksSent counts CONNACKs by reason code, "0x00" to "0x9f": the
	// MQTT 5 reason the broker decided, also for MQTT 3 clients, which
	// get the nearest 3.1.1 return code (a refusal with none is not sent,
	// and not counted).
	ConnacksSent map[string]uint64 `json:"connacks_sent"`
	// Disconnects counts the ends of connected clients' connections (a
	// CONNACK 0x00 was sent), by DisconnectReasons.
	Disconnects map[string]uint64 `json:"disconnects"`
	// PacketsReceived and PacketsSent count MQTT control packets by type,
	// in lower case ("publish", "puback"...); a packet received is counted
	// once decoded, a packet sent once written to the connection's output
	// (what a connection closing still had to send is counted too).
	PacketsReceived map[string]uint64 `json:"packets_received"`
	PacketsSent     map[string]uint64 `json:"packets_sent"`
	BytesReceived   uint64            `json:"bytes_received"`
	BytesSent       uint64            `json:"bytes_sent"`
	// MessagesReceived and MessagesSent count PUBLISH packets by QoS
	// (index 0, 1, 2); re-sent deliveries count again.
	MessagesReceived [3]uint64 `json:"messages_received"`
	MessagesSent     [3]uint64 `json:"messages_sent"`
	// MessagesDropped counts messages given up, by DropReasons.
	MessagesDropped map[string]uint64 `json:"messages_dropped"`
	// Authentication counts login attempts (and MQTT 5
	// re-authentications) by AuthenticationResults; Authorization counts
	// access decisions by AuthorizationResults.
	Authentication map[string]uint64 `json:"authentication"`
	Authorization  map[string]uint64 `json:"authorization"`
	// SessionsExpired counts sessions ended by their expiry interval
	// (while the broker ran, or while it was down, found at start);
	// SessionsTakenOver the sessions a new connection took from a
	// connection still holding them. On a cluster node, SessionsMovedIn
	// and SessionsMovedOut count the sessions that came from another node
	// for a client connecting here, and those that went to one.
	SessionsExpired   uint64 `json:"sessions_expired"`
	SessionsTakenOver uint64 `json:"sessions_taken_over"`
	SessionsMovedIn   uint64 `json:"sessions_moved_in,omitempty"`
	SessionsMovedOut  uint64 `json:"sessions_moved_out,omitempty"`

	Store StoreStats `json:"store"`
}

// StoreStats describes the durable store.
type StoreStats struct {
	// SizeBytes is what the store occupies (store.Store.Usage): the files
	// of the Pebble store, the keys and values the memory store holds; 0
	// when it cannot say.
	SizeBytes int64 `json:"size_bytes"`
	// CommitDuration is the time each commit group took to write (one
	// batch, and its fsync when durable), in seconds.
	CommitDuration Histogram `json:"commit_duration_seconds"`
}

// Histogram is a distribution of observed values, as Prometheus keeps
// one: Count observations summing to Sum, and for each bucket the number
// of observations at most its upper bound (cumulative; the last bucket's
// Count is Count, +Inf being implied).
type Histogram struct {
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
	Buckets []Bucket `json:"buckets"`
}

// Bucket is one bucket of a Histogram.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// The label values Stats uses, in a fixed order: every one is present in
// its map, zero or not (and ConnacksSent always has "0x00").
var (
	// DisconnectReasons: why a connected client's connection ended, the
	// words of the "client disconnected" log line (connlog.go):
	//   - client_disconnect: the client sent DISCONNECT (any reason code)
	//   - connection_lost: the network connection ended, or failed, without DISCONNECT
	//   - keep_alive_timeout: nothing (or an incomplete packet) arrived within 1.5 keep alives
	//   - taken_over: a new connection with the same client id took the session
	//   - protocol_error: the client broke the protocol or a limit (rate, size, receive maximum)
	//   - server_shutdown: the broker shut down
	//   - stalled: its in-flight window stayed full without acknowledgement (Options.StallTimeout)
	//   - auth_failed: an MQTT 5 re-authentication failed
	//   - store_error: the store refused a write the client waited for
	//   - internal_error: a hook panicked, or another fault of the broker's
	//   - kicked: the operator ended it (DISCONNECT 0x98 Administrative action)
	//   - server_disconnect: the broker closed it for another reason, given in its DISCONNECT
	DisconnectReasons = append([]string(nil), closeReasonWords[closeClientDisconnect:]...)
	// DropReasons: why a message was given up.
	//   - queue_full: the session's queue was at MaxQueuedMessages or MaxQueuedBytes
	//   - too_large: larger than the client's Maximum Packet Size
	//   - expired: its Message Expiry Interval passed before delivery (also a retained message removed on expiry)
	//   - no_subscribers: a message (not retained) that no subscription matched
	//   - slow_client: QoS 0 to a client not reading its output (Limits.MaxOutboundBytes)
	//   - offline: QoS 0 to a session without a connection
	//   - memory: the queued-message memory (Limits.QueuedMemory) was spent
	//   - refused: the client answered PUBACK or PUBREC with an error code
	//   - store_failed: the store refused to keep it for a persistent session
	//   - rejected: the OnPublish hook rejected it
	DropReasons = []string{"queue_full", "too_large", "expired", "no_subscribers", "slow_client", "offline",
		"memory", "refused", "store_failed", "rejected"}
	// AuthenticationResults:
	//   - success: credentials, a certificate, a hook or an MQTT 5 method admitted the client
	//   - anonymous: admitted without a user name, or with one and no password database
	//   - failure: refused (bad credentials, not authorized, anonymous where not allowed)
	//   - error: the authenticator could not answer (a backend down, a timeout)
	AuthenticationResults = []string{"success", "anonymous", "failure", "error"}
	// AuthorizationResults: a PUBLISH, a SUBSCRIBE filter, a will at
	// CONNECT, or a delivery an authorizer checks, allowed or denied.
	// "allowed" counts only where something decides (Options.Authorizer
	// or the OnACLCheck hook); "denied" counts every refusal, including a
	// client's publish to a '$' topic.
	AuthorizationResults = []string{"allowed", "denied"}
)

// authnResult indexes AuthenticationResults.
type authnResult uint8

const (
	authnSuccess authnResult = iota
	authnAnonymous
	authnFailure
	authnError
	numAuthnResults
)

// stats counts rare events: one atomic each is cheap where they happen.
// The first fields are also logged and tested.
type stats struct {
	droppedQoS0Offline atomic.Int64
	droppedQoS0Slow    atomic.Int64
	droppedQueueFull   atomic.Int64
	droppedTooLarge    atomic.Int64 // larger than the client's Maximum Packet Size
	droppedMemory      atomic.Int64 // the queued-message memory budget was spent
	droppedRefused     atomic.Int64 // the client's PUBACK or PUBREC carried an error code
	droppedStoreFailed atomic.Int64 // the store refused the write for a persistent session
	heldBack           atomic.Int64 // publishers held back by a subscriber's backlog
	stalled            atomic.Int64 // clients disconnected for a full window without acknowledgements (StallTimeout)
	notReading         atomic.Int64 // clients found not reading while publishers waited for their QoS 0 output
	refusedConnections atomic.Int64 // connection limits
	refusedRate        atomic.Int64 // connection rate per source address
	deniedPublish      atomic.Int64 // the authorizer or OnACLCheck refused a PUBLISH
	deniedWill         atomic.Int64 // ... or a will's topic, at CONNECT
	rejectedPublish    atomic.Int64 // OnPublish rejected a message
	hookPanics         atomic.Int64 // hooks that panicked (hooks.go)
	deniedSubscribe    atomic.Int64
	refusedFilters     atomic.Int64 // filters over the topic limits, or past MaxSubscriptions
	withheld           atomic.Int64 // deliveries the authorizer refused
	failedLogins       atomic.Int64
	rateLimited        atomic.Int64 // clients disconnected for publishing or subscribing too fast
	expired            atomic.Int64 // messages whose expiry passed before delivery
	protocolErrors     atomic.Int64
	refused            atomic.Int64
	timeouts           atomic.Int64

	accepted       atomic.Uint64 // connections the listeners accepted
	sessionExpired atomic.Uint64
	takenOver      atomic.Uint64
	movedIn        atomic.Uint64
	movedOut       atomic.Uint64
	connacks       [256]atomic.Uint64                   // by reason code
	ends           [len(closeReasonWords)]atomic.Uint64 // by closeReason
	authn          [numAuthnResults]atomic.Uint64

	// shards hold the counts of the hot path (see the top of this file).
	shards [statShards]statShard

	// started (unix ns) is when Start was called.
	started atomic.Int64
}

// statShards is the number of shards of the hot path's counts: more than
// event loops on most machines, so that two seldom share one.
const (
	statShardBits = 5
	statShards    = 1 << statShardBits
)

// statShard is one shard of the hot path's counts. Its parts are written
// by different goroutines (a connection's reader, its driver's writer,
// routing under a session's lock), so each has cache lines of its own,
// and the shard ends with a line of padding so that the next shard's
// first line is never shared, however the array is aligned.
type statShard struct {
	in struct {
		packets [16]atomic.Uint64 // by packet type, PUBLISH aside
		msgs    [3]atomic.Uint64  // PUBLISH by QoS
		bytes   atomic.Uint64
	}
	_   [192 - 160]byte
	out struct {
		packets [16]atomic.Uint64
		msgs    [3]atomic.Uint64
		bytes   atomic.Uint64
	}
	_ [192 - 160]byte
	// Gauges, as deltas: deliveries queued (their payload bytes in the
	// store or waiting for a commit; Server.queuedMem has those of memory
	// queues) and in flight. And events counted per message.
	queued, storeQueuedBytes, inflight atomic.Int64
	noSubscribers, allowed             atomic.Uint64
	_                                  [64 - 40 + 64]byte
}

// Compile-time checks that the padding above adds up: a shard is 8 lines.
var (
	_ [unsafe.Sizeof(statShard{}) - 512]byte
	_ [512 - unsafe.Sizeof(statShard{})]byte
)

// shard returns the shard for an object (a connection, a session, a
// message): a Fibonacci hash of its address.
func (st *stats) shard(p unsafe.Pointer) *statShard {
	return &st.shards[(uint64(uintptr(p))*0x9E3779B97F4A7C15)>>(64-statShardBits)]
}

func (c *conn) statShard() *statShard                { return c.ln.srv.stats.shard(unsafe.Pointer(c)) }
func (ss *session) statShard() *statShard            { return ss.srv.stats.shard(unsafe.Pointer(ss)) }
func (s *Server) messageShard(m *message) *statShard { return s.stats.shard(unsafe.Pointer(m)) }

// tally counts, in plain integers over one read, the packets received
// (and PUBLISH packets by QoS) and the PUBLISHes written to subscribers as
// the read's messages were routed, before they join a shard. A PUBLISH is
// counted by its QoS alone (its packet count is their sum), so that a read
// of PUBLISHes at one QoS, the common case, costs the shard one addition
// each way.
type tally struct {
	// others has bit t set when packets[t], a type other than PUBLISH,
	// was counted: adding the tally visits those alone.
	others  uint16
	packets [16]uint32
	msgs    [4]uint32 // QoS 3 is malformed, and never counted; the slot spares a bounds check
	sent    [3]uint32
}

// count adds one packet whose first byte is b0.
func (t *tally) count(b0 byte) {
	typ := b0 >> 4
	if packet.Type(typ) == packet.PUBLISH {
		t.msgs[(b0>>1)&3]++
		return
	}
	t.others |= 1 << typ
	t.packets[typ]++
}

// addTo adds the tally to a shard's counts of one direction.
func (t *tally) addTo(packets *[16]atomic.Uint64, msgs *[3]atomic.Uint64) {
	for m := t.others; m != 0; m &= m - 1 {
		typ := bits.TrailingZeros16(m)
		packets[typ].Add(uint64(t.packets[typ]))
	}
	for qos := range msgs {
		if n := t.msgs[qos]; n != 0 {
			msgs[qos].Add(uint64(n))
		}
	}
}

// countType adds one packet of type typ, not a PUBLISH, to the tally.
func (t *tally) countType(typ packet.Type) {
	t.others |= 1 << typ
	t.packets[typ&15]++
}

// addSent adds PUBLISHes written, by QoS, to the tally.
func (t *tally) addSent(sent *[3]uint32) {
	// Written out, as in statShard.addSent: it runs for every PUBLISH
	// routed, and the loop cost more than its three additions.
	t.sent[0] += sent[0]
	t.sent[1] += sent[1]
	t.sent[2] += sent[2]
}

// addIn adds a read's tally and byte count to the shard.
func (sh *statShard) addIn(t *tally, bytes int) {
	if bytes > 0 {
		sh.in.bytes.Add(uint64(bytes))
	}
	t.addTo(&sh.in.packets, &sh.in.msgs)
	sh.addSent(&t.sent)
}

// addSent adds PUBLISHes written to subscribers, by QoS.
func (sh *statShard) addSent(sent *[3]uint32) {
	if sent[0] != 0 {
		sh.out.msgs[0].Add(uint64(sent[0]))
	}
	if sent[1] != 0 {
		sh.out.msgs[1].Add(uint64(sent[1]))
	}
	if sent[2] != 0 {
		sh.out.msgs[2].Add(uint64(sent[2]))
	}
}

// countSent counts a packet other than PUBLISH written to the client.
func (c *conn) countSent(typ packet.Type) { c.statShard().out.packets[typ&15].Add(1) }

// countConnack counts a CONNACK the broker sends with code, the MQTT 5
// reason it decided.
func (s *Server) countConnack(code packet.ReasonCode) { s.stats.connacks[code].Add(1) }

// countAuthn counts the result of an authentication.
func (s *Server) countAuthn(r authnResult) { s.stats.authn[r].Add(1) }

// authorizing reports whether something decides access (an Authorizer or
// OnACLCheck): only then is an allowed access counted.
func (s *Server) authorizing() bool {
	return s.opts.Authorizer != nil || s.opts.Hooks.OnACLCheck != nil
}

// gaugeLocked changes the session's share of the queued and in-flight
// gauges: queued deliveries of storeBytes bytes kept in the store or
// waiting for a commit (memory queues count their own, messageQueue),
// and deliveries in flight. An ended session's share was taken off
// whole (endLocked): what changes after is not counted. ss.mu is held.
func (ss *session) gaugeLocked(queued int, storeBytes int64, inflight int) {
	if ss.ended {
		return
	}
	sh := ss.statShard()
	if queued != 0 {
		sh.queued.Add(int64(queued))
	}
	if storeBytes != 0 {
		sh.storeQueuedBytes.Add(storeBytes)
	}
	if inflight != 0 {
		sh.inflight.Add(int64(inflight))
	}
}

// acct is where the session's memory queue counts its changes.
func (ss *session) acct() queueAcct {
	return queueAcct{mem: &ss.srv.queuedMem, n: &ss.statShard().queued}
}

// latencyBounds are the upper bounds, in seconds, of the commit latency
// histogram's buckets: from a memory store's microseconds to a disk
// struggling for seconds.
var latencyBounds = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyHistogram counts durations in latencyBounds' buckets (and one
// past the last). One goroutine observes (the committer); any may read.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	count  atomic.Uint64
	sumNs  atomic.Uint64
}

func (h *latencyHistogram) observe(d time.Duration) {
	secs := d.Seconds()
	i := 0
	for i < len(latencyBounds) && secs > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
	h.count.Add(1)
}

// snapshot returns the histogram with cumulative buckets. The count is
// read first, so that no bucket exceeds it.
func (h *latencyHistogram) snapshot() Histogram {
	out := Histogram{Count: h.count.Load(), Sum: float64(h.sumNs.Load()) / 1e9}
	out.Buckets = make([]Bucket, len(latencyBounds))
	var cum uint64
	for i, le := range latencyBounds {
		cum += h.counts[i].Load()
		out.Buckets[i] = Bucket{UpperBound: le, Count: min(cum, out.Count)}
	}
	return out
}

// packetLabels are the packet types' label values, by type.
var packetLabels = func() (l [16]string) {
	for i := range l {
		l[i] = strings.ToLower(packet.Type(i).String())
	}
	return l
}()

// Which packet types each direction always lists: those a client or the
// broker may send. Others appear when counted (a client sending a packet
// only the server may send is counted before it is refused).
var (
	packetsIn  = []packet.Type{packet.CONNECT, packet.PUBLISH, packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP, packet.SUBSCRIBE, packet.UNSUBSCRIBE, packet.PINGREQ, packet.DISCONNECT, packet.AUTH}
	packetsOut = []packet.Type{packet.CONNACK, packet.PUBLISH, packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP, packet.SUBACK, packet.UNSUBACK, packet.PINGRESP, packet.DISCONNECT, packet.AUTH}
)

// Stats returns a snapshot of the broker's statistics. It is cheap enough
// to call every second: it sums the counters' shards and takes each lock
// it needs (the session table, the held-back set, the retained index) for
// a moment only, never walking the sessions. It is safe for concurrent
// use, and after Close (the gauges are then what was left).
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{Version: moduleVersion(), Node: s.opts.NodeName}
	if ns := st.started.Load(); ns != 0 {
		out.StartTime = time.Unix(0, ns)
	}

	s.mu.Lock()
	sessions, online, maxOnline := s.sessions.len(), s.online, s.maxOnline
	s.mu.Unlock()
	out.ClientsConnected = int64(online)
	out.ClientsMaximum = int64(maxOnline)
	out.Sessions = int64(sessions)
	out.SessionsOffline = int64(sessions - online)
	shared := s.sharedSubs.Load()
	out.Subscriptions = int64(s.index.Len()) + shared
	out.SharedSubscriptions = shared
	out.RetainedMessages = int64(s.retained.Len())
	s.heldBackMu.Lock()
	out.HeldBackConnections = int64(len(s.holds))
	s.heldBackMu.Unlock()

	var in, sent tally64
	var storeBytes int64
	for i := range st.shards {
		sh := &st.shards[i]
		in.add(&sh.in.packets, &sh.in.msgs)
		sent.add(&sh.out.packets, &sh.out.msgs)
		out.BytesReceived += sh.in.bytes.Load()
		out.BytesSent += sh.out.bytes.Load()
		out.QueuedMessages += sh.queued.Load()
		storeBytes += sh.storeQueuedBytes.Load()
		out.InflightMessages += sh.inflight.Load()
		in.noSubscribers += sh.noSubscribers.Load()
		in.allowed += sh.allowed.Load()
	}
	out.QueuedBytes = s.queuedMem.Load() + storeBytes
	out.PacketsReceived = in.packetMap(packetsIn)
	out.PacketsSent = sent.packetMap(packetsOut)
	out.MessagesReceived, out.MessagesSent = in.msgs, sent.msgs

	out.ConnectionsAccepted = st.accepted.Load()
	out.ConnacksSent = map[string]uint64{"0x00": 0}
	for code := range st.connacks {
		if n := st.connacks[code].Load(); n != 0 {
			out.ConnacksSent[fmt.Sprintf("0x%02x", code)] = n
		}
	}
	out.Disconnects = make(map[string]uint64, len(DisconnectReasons))
	for i, name := range DisconnectReasons {
		out.Disconnects[name] = st.ends[int(closeClientDisconnect)+i].Load()
	}
	load := func(n *atomic.Int64) uint64 { return uint64(max(n.Load(), 0)) }
	out.MessagesDropped = map[string]uint64{
		"queue_full":     load(&st.droppedQueueFull),
		"too_large":      load(&st.droppedTooLarge),
		"expired":        load(&st.expired),
		"no_subscribers": in.noSubscribers,
		"slow_client":    load(&st.droppedQoS0Slow),
		"offline":        load(&st.droppedQoS0Offline),
		"memory":         load(&st.droppedMemory),
		"refused":        load(&st.droppedRefused),
		"store_failed":   load(&st.droppedStoreFailed),
		"rejected":       load(&st.rejectedPublish),
	}
	out.Authentication = make(map[string]uint64, len(AuthenticationResults))
	for i, name := range AuthenticationResults {
		out.Authentication[name] = st.authn[i].Load()
	}
	out.Authorization = map[string]uint64{
		"allowed": in.allowed,
		"denied": load(&st.deniedPublish) + load(&st.deniedWill) + load(&st.deniedSubscribe) +
			load(&st.withheld),
	}
	out.SessionsExpired = st.sessionExpired.Load()
	out.SessionsTakenOver = st.takenOver.Load()
	out.SessionsMovedIn, out.SessionsMovedOut = st.movedIn.Load(), st.movedOut.Load()

	if n, err := s.store.Usage(); err == nil {
		out.Store.SizeBytes = n
	}
	out.Store.CommitDuration = s.committer.latency.snapshot()
	return out
}

// tally64 sums the shards' packet and message counts.
type tally64 struct {
	packets                [16]uint64
	msgs                   [3]uint64
	noSubscribers, allowed uint64
}

func (t *tally64) add(packets *[16]atomic.Uint64, msgs *[3]atomic.Uint64) {
	for i := range packets {
		t.packets[i] += packets[i].Load()
	}
	for i := range msgs {
		n := msgs[i].Load()
		t.msgs[i] += n
		t.packets[packet.PUBLISH] += n
	}
}

// packetMap lists the counts by label: always those of types, and any
// other type counted.
func (t *tally64) packetMap(types []packet.Type) map[string]uint64 {
	m := make(map[string]uint64, len(types))
	for _, typ := range types {
		m[packetLabels[typ]] = t.packets[typ]
	}
	for typ, n := range t.packets {
		if n != 0 {
			m[packetLabels[typ]] = n
		}
	}
	return m
}

// modulePath is Petrel's module, whose version Version reports.
const modulePath = "github.com/petrelmq/petrel"

// moduleVersion returns the version of Petrel's module built into the
// program (a tag such as "v1.2.0", or a pseudo-version), whether Petrel is
// the main module or embedded, or "devel" when the build does not say (a
// build from a work tree). Read once: the build does not change.
var moduleVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := ""
	if bi.Main.Path == modulePath {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == modulePath {
			v = d.Version
			if d.Replace != nil {
				v = d.Replace.Version
			}
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
})

// dropped counts a message a session could not take and warns, at most
// once a second: under overload a warning per message would cost more than
// the messages (one write to the log each).
func (s *Server) dropped(counter *atomic.Int64, what string, ss *session, m *message, qos byte) {
	n := counter.Add(1)
	if !s.mayWarnDropped() {
		return
	}
	s.log.Warn(what, "client", ss.clientID, "topic", m.Topic, "qos", qos, "queued", ss.queuedLocked(),
		"dropped_total", n, "note", dropNote)
}

// dropNote ends every warning about dropped messages.
const dropNote = "at most one such warning a second"

// mayWarnDropped reports whether a warning about dropped messages may be
// logged now: at most one a second, for all kinds together.
func (s *Server) mayWarnDropped() bool {
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	return now-last >= int64(time.Second) && s.lastDropLog.CompareAndSwap(last, now)
}
