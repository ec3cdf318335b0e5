package admin

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// healthz: the process is alive and serving HTTP.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz: the broker serves (its store recovered, its listeners open), and
// neither it nor this server is shutting down.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	err := s.cfg.Broker.Ready()
	if err == nil && s.draining.Load() {
		err = fmt.Errorf("shutting down")
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotImplemented, "metrics are not available")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	if s.cfg.Stats == nil {
		writeError(w, http.StatusNotImplemented, "statistics are not available")
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Stats())
}

// BridgeJSON is a bridge as the API shows it (docs/BRIDGES.md): its link's
// state and counts. What waits to go out is its session's queue, under
// Session in /api/v1/clients.
type BridgeJSON struct {
	Name         string `json:"name"`
	URL          string `json:"url"`
	Session      string `json:"session"`
	Connected    bool   `json:"connected"`
	Sent         uint64 `json:"sent"`
	Received     uint64 `json:"received"`
	Dropped      uint64 `json:"dropped"`
	LinkFailures uint64 `json:"link_failures"`
	// Queued and QueuedBytes wait to go out: the session's queue and what
	// is in flight to the bridge.
	Queued      int   `json:"queued"`
	QueuedBytes int64 `json:"queued_bytes"`
}

// listBridges: GET /api/v1/bridges, in the order of the configuration.
func (s *Server) listBridges(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	out := []BridgeJSON{}
	if s.cfg.Bridges != nil {
		out = append(out, s.cfg.Bridges()...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"bridges": out})
}

// listenerJSON is a listener as the API shows it.
type listenerJSON struct {
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	Address       string `json:"address"`
	WebSocketPath string `json:"websocket_path,omitempty"`
	Connections   int64  `json:"connections"`
}

// listListeners: GET /api/v1/listeners, the MQTT listeners, once the
// broker has opened them.
func (s *Server) listListeners(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	ls := s.cfg.Broker.Listeners()
	if ls == nil {
		writeError(w, http.StatusServiceUnavailable, "the broker has not opened its listeners yet")
		return
	}
	out := make([]listenerJSON, len(ls))
	for i, l := range ls {
		out[i] = listenerJSON{Name: l.Name, Kind: l.Kind, Address: l.Address, WebSocketPath: l.WebSocketPath,
			Connections: l.Connections}
	}
	writeJSON(w, http.StatusOK, map[string]any{"listeners": out})
}

// clientJSON is a client as the API shows it. Fields that only a
// connection has are left out while the client is offline.
type clientJSON struct {
	ClientID          string     `json:"client_id"`
	Connected         bool       `json:"connected"`
	Node              string     `json:"node"`
	Username          *string    `json:"username,omitempty"`
	Address           string     `json:"address,omitempty"`
	Listener          string     `json:"listener,omitempty"`
	Protocol          string     `json:"protocol,omitempty"`
	ProtocolVersion   byte       `json:"protocol_version,omitempty"`
	KeepAlive         *float64   `json:"keep_alive,omitempty"`
	CleanStart        *bool      `json:"clean_start,omitempty"`
	ConnectedSince    *time.Time `json:"connected_since,omitempty"`
	DisconnectedSince *time.Time `json:"disconnected_since,omitempty"`
	HeldBack          *bool      `json:"held_back,omitempty"`
	SessionExpiry     uint32     `json:"session_expiry"`
	SessionExpiresAt  *time.Time `json:"session_expires_at,omitempty"`
	InFlight          int        `json:"inflight"`
	Queued            int        `json:"queued"`
	QueuedBytes       int64      `json:"queued_bytes"`
	Subscriptions     int        `json:"subscriptions"`
}

// protocols names the protocol levels.
var protocols = map[byte]string{packet.V31: "MQTT 3.1", packet.V311: "MQTT 3.1.1", packet.V5: "MQTT 5.0"}

func clientOf(in *broker.ClientInfo) clientJSON {
	c := clientJSON{
		ClientID: in.ClientID, Connected: in.Connected, Node: in.Node, Address: in.Address, Listener: in.Listener,
		SessionExpiry: in.SessionExpiry, InFlight: in.InFlight, Queued: in.Queued, QueuedBytes: in.QueuedBytes,
		Subscriptions: in.Subscriptions,
	}
	if in.HasUsername {
		c.Username = &in.Username
	}
	since := timeOrNil(in.Since)
	if !in.Connected {
		c.DisconnectedSince, c.SessionExpiresAt = since, timeOrNil(in.ExpiresAt)
		return c
	}
	keepAlive := in.KeepAlive.Seconds()
	c.Protocol, c.ProtocolVersion = protocols[in.ProtocolVersion], in.ProtocolVersion
	c.KeepAlive, c.CleanStart, c.ConnectedSince, c.HeldBack = &keepAlive, &in.CleanStart, since, &in.HeldBack
	return c
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// listClients: GET /api/v1/clients, a page, filtered.
func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "cursor", "limit", "prefix", "username", "address", "connected")
	limit := q.limit()
	connected := q.boolean("connected")
	inAddress := q.address()
	if !q.ok(w) {
		return
	}
	username, byUser := q.get("username"), q.has("username")
	page, err := s.cfg.Broker.Clients(broker.ClientQuery{
		Cursor: q.get("cursor"), Limit: limit, Prefix: q.get("prefix"),
		Match: func(in *broker.ClientInfo) bool {
			return (connected == nil || in.Connected == *connected) &&
				(!byUser || (in.HasUsername && in.Username == username)) &&
				(inAddress == nil || inAddress(in.Address))
		},
	})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := struct {
		Clients []clientJSON `json:"clients"`
		Next    string       `json:"next_cursor,omitempty"`
	}{Clients: make([]clientJSON, len(page.Clients)), Next: page.Next}
	for i := range page.Clients {
		out.Clients[i] = clientOf(&page.Clients[i])
	}
	writeJSON(w, http.StatusOK, out)
}

// address reads the address filter: an IP address (any port), a network
// in CIDR notation, or an address with its port. It returns nil when
// absent.
func (q *query) address() func(string) bool {
	s := q.get("address")
	if s == "" || q.err != nil {
		return nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		return func(addr string) bool {
			ap, err := netip.ParseAddrPort(addr)
			return err == nil && p.Contains(ap.Addr().Unmap())
		}
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return func(addr string) bool {
			ap, err := netip.ParseAddrPort(addr)
			return err == nil && ap.Addr().Unmap() == ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return func(addr string) bool { return addr == ap.String() }
	}
	q.err = fmt.Errorf("address %q is not an IP address, a network (CIDR) or an address with its port", s)
	return nil
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	in, ok := s.cfg.Broker.Client(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such client")
		return
	}
	writeJSON(w, http.StatusOK, clientOf(&in))
}

// kickClient: DELETE /api/v1/clients/{id}[?session=discard].
func (s *Server) kickClient(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "session")
	session := q.get("session")
	if session == "" {
		session = "keep"
	}
	if session != "keep" && session != "discard" {
		q.err = fmt.Errorf("session %q is neither keep nor discard", session)
	}
	if !q.ok(w) {
		return
	}
	id := r.PathValue("id")
	ended, err := s.cfg.Broker.Kick(id, session == "discard")
	switch err {
	case nil:
	case broker.ErrNoSession:
		writeError(w, http.StatusNotFound, "no such client")
		return
	case broker.ErrNotConnected:
		writeError(w, http.StatusConflict, "the client is not connected; ?session=discard ends its session")
		return
	default:
		writeBrokerError(w, err)
		return
	}
	result := "kept"
	switch {
	case session == "discard":
		result = "discarded"
	case ended:
		result = "ended" // with its connection: a clean session
	}
	s.log.Info("http: client kicked", "client", id, "session", result, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"client_id": id, "session": result})
}

// subscriptionJSON is a subscription as the API shows it.
type subscriptionJSON struct {
	ClientID          string `json:"client_id"`
	Filter            string `json:"filter"`
	ShareGroup        string `json:"share_group,omitempty"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	SubscriptionID    uint32 `json:"subscription_identifier,omitempty"`
}

func subscriptionsOf(subs []broker.SubscriptionInfo) []subscriptionJSON {
	out := make([]subscriptionJSON, len(subs))
	for i, si := range subs {
		out[i] = subscriptionJSON{ClientID: si.ClientID, Filter: si.Filter, ShareGroup: si.ShareGroup, QoS: si.QoS,
			NoLocal: si.NoLocal, RetainAsPublished: si.RetainAsPublished, SubscriptionID: si.SubscriptionID}
	}
	return out
}

func (s *Server) clientSubscriptions(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	subs, ok := s.cfg.Broker.ClientSubscriptions(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such client")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": subscriptionsOf(subs)})
}

// listSubscriptions: GET /api/v1/subscriptions, a page. filter keeps the
// subscriptions whose filter it matches, read as a topic name (so "a/#"
// keeps "a/+/b"); topic those that would receive a message published
// there.
func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "cursor", "limit", "filter", "topic")
	limit := q.limit()
	filter, name := q.get("filter"), q.get("topic")
	if filter != "" && q.err == nil {
		if err := topic.ValidateFilter(filter); err != nil {
			q.err = fmt.Errorf("filter %q: %w", filter, err)
		}
	}
	if name != "" && q.err == nil {
		if err := topic.ValidateName(name); err != nil {
			q.err = fmt.Errorf("topic %q: %w", name, err)
		}
	}
	if !q.ok(w) {
		return
	}
	page, err := s.cfg.Broker.Subscriptions(broker.SubscriptionQuery{
		Cursor: q.get("cursor"), Limit: limit,
		Match: func(si *broker.SubscriptionInfo) bool {
			return (filter == "" || topic.Match(filter, si.Filter)) && (name == "" || topic.Match(si.Filter, name))
		},
	})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Subscriptions []subscriptionJSON `json:"subscriptions"`
		Next          string             `json:"next_cursor,omitempty"`
	}{subscriptionsOf(page.Subscriptions), page.Next})
}
