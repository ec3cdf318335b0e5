package broker

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// What an administrator (petrel's HTTP admin API, or a program embedding
// the broker) may ask and do: is the broker ready, which clients and
// sessions it holds, their subscriptions, the retained messages; kick a
// client, end its session, set or delete a retained message, publish and
// learn how many subscriptions took the message.
//
// Lists come in pages, each resuming where the last ended by an opaque
// cursor. A page never holds a broker-wide lock: clients are listed from a
// directory sharded by client id (directory.go), one shard locked at a time
// and only to copy its pointers (the first page of the Server's life
// fills the directory, holding the session table's lock only to copy its
// pointers: 17 ms for a million sessions, BenchmarkClientsPage); retained messages in order of their
// topics, under the retained index's read lock for a bounded number of
// nodes. A page visits a bounded number of entries, so one with a filter
// that matches little may hold fewer than its limit, even none, and still
// have a next cursor. An entry there for the whole listing comes exactly
// once; one added or removed meanwhile may or may not.

// adminState is the Server's part for the admin methods.
type adminState struct {
	// ready is set once Start has recovered the store and opened every
	// listener.
	ready atomic.Bool
	dir   directory
}

// Errors of the admin methods.
var (
	// ErrNoSession: no session has that client id.
	ErrNoSession = errors.New("broker: no such client")
	// ErrNotConnected: the client's session is there, but no connection
	// holds it (Kick without discarding the session).
	ErrNotConnected = errors.New("broker: client not connected")
	// ErrBadCursor: a cursor that no page of this kind gave out.
	ErrBadCursor = errors.New("broker: invalid cursor")
)

// Ready reports nil once the broker serves: the store is recovered and
// every listener is open. Before, and from the moment Close begins, it
// says why not.
func (s *Server) Ready() error {
	switch {
	case s.shuttingDown.Load():
		return errors.New("shutting down")
	case s.admin.ready.Load():
		return nil
	case s.running.Load():
		return errors.New("starting: opening the listeners")
	}
	return errors.New("starting: recovering the store")
}

// NodeName is this node's name (Options.NodeName, by default the host
// name): which node of a cluster this Server is, as $SYS, the metrics and
// the admin API name it.
func (s *Server) NodeName() string { return s.opts.NodeName }

// ListenerInfo describes a listener that is open.
type ListenerInfo struct {
	// Name is the listener's name (ListenerConfig.Name: "<kind>:<address>"
	// unless configured), as ClientInfo.Listener gives it.
	Name string
	// Kind is "tcp", "tls", "ws", "wss" or "unix".
	Kind string
	// Address is where it listens: host:port with the port the OS picked
	// for port 0, or the socket's path.
	Address string
	// WebSocketPath is where a "ws" or "wss" listener serves MQTT; empty
	// for the other kinds.
	WebSocketPath string
	// Connections counts the network connections open on it now, those
	// that have not sent CONNECT yet included.
	Connections int64
}

// Listeners describes the listeners, in configuration order, once Start
// has opened them all; nil before (and after a Start that failed). After
// Close it still describes them, with what connections were left.
func (s *Server) Listeners() []ListenerInfo {
	// Start appends to s.listeners before it sets ready, and never after:
	// once ready is seen, the slice is complete and no longer written.
	if !s.admin.ready.Load() {
		return nil
	}
	out := make([]ListenerInfo, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = ListenerInfo{Name: l.name, Kind: l.cfg.Kind, Address: l.driver.Addr().String(),
			Connections: l.conns.Load()}
		if l.cfg.Kind == "ws" || l.cfg.Kind == "wss" {
			out[i].WebSocketPath = l.cfg.WebSocketPath
		}
	}
	return out
}

// PublishMatched is PublishWith, and reports how many subscriptions took
// the message: a session with several matching subscriptions, and a shared
// subscription group, count once.
func (s *Server) PublishMatched(topic string, payload []byte, o PublishOptions) (matched int, err error) {
	return s.publishWith(topic, payload, o)
}

// Page sizes.
const (
	// DefaultPageLimit is a page's size when the query gives none.
	DefaultPageLimit = 100
	// MaxPageLimit is the largest page.
	MaxPageLimit = 1000
)

// pageLimit is the size of a page asked for with limit.
func pageLimit(limit int) int {
	if limit <= 0 {
		return DefaultPageLimit
	}
	return min(limit, MaxPageLimit)
}

// scanBudget is how many entries a page of limit may visit.
func scanBudget(limit int) int { return max(10*limit, 10000) }

// ---- Clients ---------------------------------------------------------------

// ClientInfo is a client's session and, while one holds it, its connection.
type ClientInfo struct {
	ClientID  string
	Connected bool
	// Node is the name of the node that holds the session (this one's,
	// Options.NodeName).
	Node string
	// Username (HasUsername: one was given), Address and Listener are the
	// connection's, or while offline the last connection's as far as the
	// broker kept them: an anonymous client's offline session has none,
	// unless an authenticator, an authorizer or a hook asked who it was.
	Username    string
	HasUsername bool
	Address     string
	Listener    string
	// Since is when the connection connected, or when the session went
	// offline.
	Since time.Time
	// Set while connected: the protocol version (3: MQTT 3.1, 4: 3.1.1,
	// 5: 5.0), the keep alive in force, whether the CONNECT asked for a
	// clean start, and whether the broker holds the client back (does not
	// read it) because a subscriber it publishes to is behind.
	ProtocolVersion byte
	KeepAlive       time.Duration
	CleanStart      bool
	HeldBack        bool
	// SessionExpiry is the Session Expiry Interval in seconds; 0xFFFFFFFF
	// means never. ExpiresAt is when an offline session ends, zero when it
	// does not.
	SessionExpiry uint32
	ExpiresAt     time.Time
	// InFlight are the QoS 1 and 2 messages sent and not yet acknowledged,
	// Queued (QueuedBytes of payload) those waiting their turn, in memory
	// or in the store.
	InFlight      int
	Queued        int
	QueuedBytes   int64
	Subscriptions int
}

// SessionNeverExpires is ClientInfo.SessionExpiry for a session kept until
// a clean start.
const SessionNeverExpires = expiryNever

// info describes the session; false once it has ended.
func (ss *session) info() (ClientInfo, bool) {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return ClientInfo{}, false
	}
	c := ss.conn
	in := ClientInfo{
		ClientID:      ss.clientID,
		Connected:     c != nil,
		Node:          ss.srv.opts.NodeName,
		SessionExpiry: ss.expiry,
		InFlight:      ss.inflight.len(),
		Queued:        ss.queuedLocked(),
		QueuedBytes:   ss.queuedBytesLocked(),
		Subscriptions: len(ss.subs),
	}
	if c != nil {
		in.Since = time.Unix(0, c.connectedAt)
	} else if at := ss.x().since; at != 0 {
		in.Since = time.Unix(0, at)
	}
	if a := ss.x().away; c == nil && a != nil {
		in.ExpiresAt = a.expireAt
	}
	ss.mu.Unlock()
	if cl := ss.client.Load(); cl != nil {
		in.Username, in.HasUsername, in.Listener = cl.Username, cl.HasUsername, cl.Listener
		if cl.RemoteAddr != nil {
			in.Address = cl.RemoteAddr.String()
		}
	}
	if c != nil {
		// Set before the session took the connection, which the lock
		// above orders before this read; never changed since.
		in.Address, in.Listener = c.nc.RemoteAddr().String(), c.ln.name
		in.ProtocolVersion = c.version
		in.KeepAlive = time.Duration(c.keepAliveMs) * time.Millisecond
		in.CleanStart = c.cleanStart
		in.HeldBack = c.flags.Load()&flagHeldBack != 0
	}
	return in, true
}

// session returns the session of clientID, or nil.
func (s *Server) session(clientID string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions.get(clientID)
}

// Client describes the session of clientID; false when there is none.
func (s *Server) Client(clientID string) (ClientInfo, bool) {
	ss := s.session(clientID)
	if ss == nil {
		return ClientInfo{}, false
	}
	return ss.info()
}

// ClientQuery asks for a page of clients.
type ClientQuery struct {
	// Cursor is the Next of the page before; empty for the first.
	Cursor string
	// Limit is the most clients the page holds: DefaultPageLimit when 0,
	// at most MaxPageLimit.
	Limit int
	// Prefix keeps the clients whose id starts with it.
	Prefix string
	// Match, when set, keeps the clients it returns true for. It runs
	// under no broker lock.
	Match func(*ClientInfo) bool
}

// ClientPage is a page of clients. Next is the cursor of the next page,
// empty after the last.
type ClientPage struct {
	Clients []ClientInfo
	Next    string
}

// Clients lists clients (sessions, connected or not) a page at a time.
// The order is stable but not by client id alone: pages walk the shards
// of the directory, each in order of client id.
func (s *Server) Clients(q ClientQuery) (ClientPage, error) {
	pos, _, err := decodeDirCursor(q.Cursor, cursorClients)
	if err != nil {
		return ClientPage{}, err
	}
	limit := pageLimit(q.Limit)
	s.enableDirectory()
	var page ClientPage
	var last dirPosition
	full := false
	end, complete := s.admin.dir.walk(pos, q.Prefix, scanBudget(limit), func(ss *session, at dirPosition) bool {
		in, ok := ss.info()
		if !ok || (q.Match != nil && !q.Match(&in)) {
			return true
		}
		if len(page.Clients) == limit {
			full = true // one more: the next page is not empty
			return false
		}
		page.Clients = append(page.Clients, in)
		last = at
		return true
	})
	switch {
	case full:
		page.Next = encodeDirCursor(cursorClients, last, "")
	case !complete:
		page.Next = encodeDirCursor(cursorClients, end, "")
	}
	return page, nil
}

// Kick disconnects the client holding clientID's session: MQTT 5 clients
// get DISCONNECT 0x98 (Administrative action), earlier ones see the
// connection close. Its will, if any, is published as for any connection
// the server closes. With discard the session ends too (connected or
// not), with its subscriptions and queued messages, as a clean start
// would end it; without, a session that outlives its connection stays, and
// an offline one is ErrNotConnected. ended reports that the session ends:
// discarded, or ending with its connection (a Session Expiry Interval of
// 0, an MQTT 3.1.1 clean session). ErrNoSession: there is no session.
func (s *Server) Kick(clientID string, discard bool) (ended bool, err error) {
	const reason = "disconnected by an administrator"
	s.mu.Lock()
	ss := s.sessions.get(clientID)
	if ss == nil {
		s.mu.Unlock()
		return false, ErrNoSession
	}
	ss.mu.Lock()
	c := ss.conn
	if !discard {
		ended = ss.expiry == 0
		ss.mu.Unlock()
		s.mu.Unlock()
		if c == nil {
			return false, ErrNotConnected
		}
		s.log.Info("client kicked", "client", clientID, "session_ends", ended)
		c.disconnect(packet.AdministrativeAction, reason)
		return ended, nil
	}
	// As a clean start takes a session over (openSession): the session
	// ends now, and the connection that held it is closed after.
	ss.conn = nil
	ss.online.Store(false)
	will := s.endLocked(ss) // releases ss.mu
	s.mu.Unlock()
	s.log.Info("client kicked", "client", clientID, "session", "discarded", "connected", c != nil)
	if will != nil {
		s.publishWill(will)
	}
	if c != nil {
		c.disconnect(packet.AdministrativeAction, reason)
	}
	return true, nil
}

// ---- Subscriptions ---------------------------------------------------------

// SubscriptionInfo is one subscription of a session.
type SubscriptionInfo struct {
	ClientID string
	// Filter is the topic filter; ShareGroup the group's name for a shared
	// subscription ($share/{ShareGroup}/{Filter}), empty otherwise.
	Filter            string
	ShareGroup        string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	// SubscriptionID is the MQTT 5 Subscription Identifier, 0 for none.
	SubscriptionID uint32
}

// subscriptions lists the session's subscriptions in order of their keys
// (the filter, with its $share/ prefix), those after `after`.
func (ss *session) subscriptions(after string) []SubscriptionInfo {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	keys := make([]string, 0, len(ss.subs))
	for key := range ss.subs {
		if key > after {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	out := make([]SubscriptionInfo, len(keys))
	for i, key := range keys {
		sub := ss.subs[key]
		out[i] = SubscriptionInfo{ClientID: ss.clientID, Filter: key, QoS: sub.qos, NoLocal: sub.noLocal,
			RetainAsPublished: sub.retainAsPublished, SubscriptionID: sub.subID}
		if g := sub.group; g != nil {
			out[i].Filter, out[i].ShareGroup = g.filter, g.name
		}
	}
	return out
}

// subKey is the key of a subscription in session.subs.
func (si *SubscriptionInfo) subKey() string {
	if si.ShareGroup == "" {
		return si.Filter
	}
	return topic.SharePrefix + si.ShareGroup + "/" + si.Filter
}

// ClientSubscriptions lists the subscriptions of clientID's session in
// order of their filters; false when there is no session.
func (s *Server) ClientSubscriptions(clientID string) ([]SubscriptionInfo, bool) {
	ss := s.session(clientID)
	if ss == nil {
		return nil, false
	}
	return ss.subscriptions(""), true
}

// SubscriptionQuery asks for a page of subscriptions.
type SubscriptionQuery struct {
	Cursor string
	Limit  int
	// Match, when set, keeps the subscriptions it returns true for. It
	// runs under no broker lock.
	Match func(*SubscriptionInfo) bool
}

// SubscriptionPage is a page of subscriptions; Next as in ClientPage.
type SubscriptionPage struct {
	Subscriptions []SubscriptionInfo
	Next          string
}

// Subscriptions lists every session's subscriptions a page at a time, in
// the order of Clients, each session's in order of their filters.
func (s *Server) Subscriptions(q SubscriptionQuery) (SubscriptionPage, error) {
	pos, afterKey, err := decodeDirCursor(q.Cursor, cursorSubscriptions)
	if err != nil {
		return SubscriptionPage{}, err
	}
	limit := pageLimit(q.Limit)
	budget := scanBudget(limit)
	s.enableDirectory()
	var page SubscriptionPage
	var last dirPosition
	var lastKey string
	full := false
	// take adds the subscriptions of the session at `at`, and reports
	// whether the page wants more.
	take := func(subs []SubscriptionInfo, at dirPosition) bool {
		for i := range subs {
			budget--
			if q.Match != nil && !q.Match(&subs[i]) {
				continue
			}
			if len(page.Subscriptions) == limit {
				full = true
				return false
			}
			page.Subscriptions = append(page.Subscriptions, subs[i])
			last, lastKey = at, subs[i].subKey()
		}
		return budget > 0
	}
	// A cursor within a session: the rest of that session first.
	if afterKey != "" {
		if ss := s.session(pos.after); ss != nil && !take(ss.subscriptions(afterKey), pos) {
			return s.subscriptionsNext(page, full, last, lastKey, pos), nil
		}
	}
	end, complete := s.admin.dir.walk(pos, "", budget, func(ss *session, at dirPosition) bool {
		return take(ss.subscriptions(""), at)
	})
	if complete && !full {
		return page, nil
	}
	return s.subscriptionsNext(page, full, last, lastKey, end), nil
}

// subscriptionsNext sets the cursor of a page that stopped: full, after
// its last subscription; out of budget, after the last session visited.
func (s *Server) subscriptionsNext(page SubscriptionPage, full bool, last dirPosition, lastKey string, end dirPosition) SubscriptionPage {
	if full {
		page.Next = encodeDirCursor(cursorSubscriptions, last, lastKey)
	} else {
		page.Next = encodeDirCursor(cursorSubscriptions, end, "")
	}
	return page
}

// ---- Retained messages -----------------------------------------------------

// RetainedMessage is a topic's retained message.
type RetainedMessage struct {
	Topic   string
	Payload []byte
	QoS     byte
	// Properties are the MQTT 5 properties it is forwarded with (Payload
	// Format Indicator, Content Type, Response Topic, Correlation Data,
	// User Properties); nil for none.
	Properties *packet.Properties
	// Expiry is when it expires; zero for never.
	Expiry time.Time
}

func retainedOf(m *message) RetainedMessage {
	r := RetainedMessage{Topic: m.Topic, Payload: bytes.Clone(m.body()), QoS: m.QoS, Expiry: m.Expiry}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	if m.Props != nil {
		r.Properties = copyForwarded(m.Props)
	}
	return r
}

// Retained returns topic's retained message; false when it has none.
func (s *Server) Retained(topic string) (RetainedMessage, bool) {
	rec, ok := s.retained.Get(topic)
	if !ok || rec.expired(time.Now()) {
		return RetainedMessage{}, false
	}
	return retainedOf(rec.message()), true
}

// RetainedQuery asks for a page of retained messages.
type RetainedQuery struct {
	Cursor string
	Limit  int
	// Filter keeps the topics it matches (MQTT's rules: a filter starting
	// with a wildcard skips '$' topics); empty keeps every topic.
	Filter string
}

// RetainedPage is a page of retained messages; Next as in ClientPage.
type RetainedPage struct {
	Messages []RetainedMessage
	Next     string
}

// RetainedMessages lists the retained messages a page at a time, in order
// of their topics level by level ("a" < "a/b" < "b").
func (s *Server) RetainedMessages(q RetainedQuery) (RetainedPage, error) {
	if q.Filter != "" {
		if err := topic.ValidateFilter(q.Filter); err != nil {
			return RetainedPage{}, fmt.Errorf("%w: filter %q: %w", ErrInvalidMessage, q.Filter, err)
		}
	}
	after, err := decodeRetainedCursor(q.Cursor)
	if err != nil {
		return RetainedPage{}, err
	}
	limit := pageLimit(q.Limit)
	now := time.Now()
	var page RetainedPage
	full := false
	// The function runs under the retained index's read lock: it only
	// copies.
	resume, complete := s.retained.Walk(q.Filter, after, scanBudget(limit), func(rec *retainedRec) bool {
		if rec.expired(now) {
			return true
		}
		if len(page.Messages) == limit {
			full = true
			return false
		}
		page.Messages = append(page.Messages, retainedOf(rec.message()))
		return true
	})
	switch {
	case full:
		page.Next = encodeRetainedCursor(strings.Split(page.Messages[limit-1].Topic, "/"))
	case !complete:
		page.Next = encodeRetainedCursor(resume)
	}
	return page, nil
}

// SetRetained makes payload topic's retained message, replacing any, and
// returns once it is in the store. The message is not delivered to the
// subscribers there now (PublishWith with Retain does that); they and
// later subscribers get it when they subscribe. It is checked as
// PublishWith checks a message (errors wrap ErrInvalidMessage); OnPublish
// is not asked. An empty payload is refused: DeleteRetained deletes.
func (s *Server) SetRetained(topic string, payload []byte, o PublishOptions) error {
	if len(payload) == 0 {
		return fmt.Errorf("%w: an empty payload would delete the retained message", ErrInvalidMessage)
	}
	o.Retain = true
	return s.storeRetained(topic, payload, o)
}

// DeleteRetained deletes topic's retained message, without publishing
// anything, and returns once the store has forgotten it; false when there
// was none.
func (s *Server) DeleteRetained(topic string) (bool, error) {
	if _, ok := s.retained.Get(topic); !ok {
		return false, nil
	}
	return true, s.storeRetained(topic, nil, PublishOptions{Retain: true})
}

// storeRetained sets (or, with an empty payload, deletes) a retained
// message without routing it, and waits for the store.
func (s *Server) storeRetained(topic string, payload []byte, o PublishOptions) error {
	if err := s.checkPublish(topic, payload, &o); err != nil {
		return invalidMessage{err}
	}
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if !s.running.Load() || s.shuttingDown.Load() {
		return ErrNotRunning
	}
	p := packet.Publish{Topic: topic, Payload: payload, QoS: o.QoS, Retain: true}
	if o.Properties != nil {
		p.Props = *o.Properties
	}
	m := makeMessage(&p, 0, false, nil)
	tx := txPool.Get().(*routeTx)
	defer putTx(tx)
	s.retain(m, tx)
	m.unref()
	tx.sync = true // on disk before the answer, whatever its QoS
	w := publishWaiter(make(chan error, 1))
	tx.finish(s, w)
	if err := <-w; err != nil {
		return fmt.Errorf("broker: retained message: the store refused it: %w", commitError(err))
	}
	return nil
}
