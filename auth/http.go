package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// HTTPConfig configures an HTTP authentication and authorisation backend.
// Zero durations and sizes mean the defaults.
type HTTPConfig struct {
	// AuthURL receives a POST for each login. Empty: Authenticate refuses
	// every login as the server's fault (configure the backend only as an
	// Authorizer then).
	AuthURL string
	// ACLURL receives a POST for each access decision not in the cache.
	// Empty: every access is denied (configure the backend only as an
	// Authenticator then).
	ACLURL string
	// Timeout bounds each request (default 2s).
	Timeout time.Duration
	// CacheTTL is how long an allow answer is remembered (default 60s).
	CacheTTL time.Duration
	// NegativeTTL is how long a deny answer, or a failure to get one, is
	// remembered (default 5s).
	NegativeTTL time.Duration
	// CacheSize bounds the number of remembered answers (default 100,000);
	// the oldest are forgotten first.
	CacheSize int
	// Fetches bounds the ACL requests in flight at once (default 32).
	Fetches int
	// CheckEachRead makes Covers always false, so the broker asks "read"
	// for each message a subscription delivers instead of trusting the
	// "subscribe" answer for all of them (see HTTP).
	CheckEachRead bool
	// Client makes the requests. Default: a client with its own pool of
	// connections that does not follow redirects (a redirect is an error).
	Client *http.Client
}

// WaitingAuthorizer is an optional Authorizer extension for authorizers that
// may have to ask a remote service: AllowWait answers like Allow but may
// block until the answer is known or ctx ends (then it denies). A broker
// should use it where it can wait off the I/O path — PUBLISH and SUBSCRIBE,
// which the client started — and keep Allow for the message path.
type WaitingAuthorizer interface {
	AllowWait(ctx context.Context, c *Client, a Access, topic string) bool
}

// HTTP is an authentication and authorisation backend that asks a web
// service. It implements Authenticator, Authorizer, Covering and
// WaitingAuthorizer, and is safe for concurrent use.
//
// # Logins
//
// Authenticate POSTs to AuthURL the JSON object
//
//	{"clientid": "...", "username": "..." or null, "password": "..." or null,
//	 "listener": "...", "remote": "ip:port"}
//
// (null when the CONNECT had no user name or no password flag) and maps the
// status: 200 accepts; 401 refuses with bad user name or password; 403
// refuses with not authorized; anything else, a timeout or a network error
// is the server's fault (server unavailable). A password that is not UTF-8
// is refused without asking: JSON cannot carry it exactly, and an inexact
// copy could match someone else's password. Logins are never cached.
//
// # Access
//
// An access decision POSTs to ACLURL
//
//	{"clientid": "...", "username": "..." or null, "topic": "...",
//	 "access": "read" | "write" | "subscribe"}
//
// and 200 allows, 403 denies; anything else, a timeout or a network error
// denies (fail closed). Answers are cached per client id, user name, access
// and topic: allow for CacheTTL, deny and failures for NegativeTTL (so a
// failing service is asked about one thing at most once per NegativeTTL).
//
// Allow never blocks, because it runs on the message path. It answers from
// the cache; an answer past its TTL is still used, once more, while a fresh
// one is fetched in the background (a topic in steady use never waits on the
// service); with no answer at all it denies and fetches one in the
// background, so a later call knows. The broker should therefore ask
// through AllowWait where it can wait — a client's PUBLISH (Write) and
// SUBSCRIBE (Subscribe) — which fetches and waits on a miss; concurrent
// askers of the same question share one request.
//
// Deliveries (Read) would lose messages under "deny until known", so they
// are not asked one by one: a 200 to "subscribe" grants the subscription and
// everything it delivers, as with most brokers' HTTP authorisation, and
// Covers reports that (true while the cached "subscribe" answer for the
// filter is an allow), so the broker skips per-message checks. Revoking a
// subscription then means disconnecting the client. With CheckEachRead the
// service decides each delivery instead: Covers is false, and each topic's
// first delivery to a client is withheld while the "read" answer is
// fetched.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	// fetching bounds the ACL requests in flight.
	fetching chan struct{}
	now      func() time.Time
	stats    httpCounters
}

// httpStats counts what an HTTP backend did.
type httpStats struct {
	AuthRequests uint64 // logins asked
	ACLRequests  uint64 // access decisions asked
	Errors       uint64 // requests that failed: timeouts, network, bad status
	CacheHits    uint64 // answered from the cache (stale answers included)
	CacheMisses  uint64 // not in the cache, or too old
	Skipped      uint64 // background fetches not started: too many in flight
	Entries      int    // answers in the cache
}

type httpCounters struct {
	authRequests, aclRequests, errors, hits, misses, skipped atomic.Uint64
}

const cacheShards = 32

// cacheShard is one part of the answer cache, with the fetches in flight
// for its keys.
type cacheShard struct {
	mu       sync.Mutex
	entries  map[uint64]*cacheEntry
	order    []uint64 // keys in insertion order, for eviction
	head     int      // index of the oldest key in order
	inflight map[uint64]*fetch
}

type cacheEntry struct {
	key     aclKey
	allow   bool
	expires time.Time
	ttl     time.Duration
}

// fetch is one ACL request in flight; done is closed when allow is known.
type fetch struct {
	done  chan struct{}
	allow bool
}

// aclKey is the question an ACL answer answers.
type aclKey struct {
	clientID    string
	username    string
	hasUsername bool
	access      Access
	topic       string
}

// NewHTTP returns an HTTP backend. It checks the URLs but does not contact
// the service.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	for _, u := range []struct{ name, url string }{{"AuthURL", cfg.AuthURL}, {"ACLURL", cfg.ACLURL}} {
		if u.url == "" {
			continue
		}
		p, err := url.Parse(u.url)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("auth: http: %s %q is not an http or https URL", u.name, u.url)
		}
	}
	if cfg.AuthURL == "" && cfg.ACLURL == "" {
		return nil, errors.New("auth: http: neither AuthURL nor ACLURL is set")
	}
	setDefault(&cfg.Timeout, 2*time.Second)
	setDefault(&cfg.CacheTTL, 60*time.Second)
	setDefault(&cfg.NegativeTTL, 5*time.Second)
	setDefault(&cfg.CacheSize, 100_000)
	setDefault(&cfg.Fetches, 32)
	h := &HTTP{cfg: cfg, client: cfg.Client, seed: maphash.MakeSeed(), now: time.Now,
		fetching: make(chan struct{}, cfg.Fetches)}
	if h.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Fetches
		h.client = &http.Client{
			Transport:     t,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	perShard := max(1, (cfg.CacheSize+cacheShards-1)/cacheShards)
	for i := range h.shards {
		h.shards[i].entries = make(map[uint64]*cacheEntry)
		h.shards[i].order = make([]uint64, 0, min(perShard, 1024))
		h.shards[i].inflight = make(map[uint64]*fetch)
	}
	return h, nil
}

func setDefault[T time.Duration | int](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// readStats returns the backend's counters.
func (h *HTTP) readStats() httpStats {
	s := httpStats{
		AuthRequests: h.stats.authRequests.Load(),
		ACLRequests:  h.stats.aclRequests.Load(),
		Errors:       h.stats.errors.Load(),
		CacheHits:    h.stats.hits.Load(),
		CacheMisses:  h.stats.misses.Load(),
		Skipped:      h.stats.skipped.Load(),
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		s.Entries += len(sh.entries)
		sh.mu.Unlock()
	}
	return s
}

type authRequest struct {
	ClientID string  `json:"clientid"`
	Username *string `json:"username"`
	Password *string `json:"password"`
	Listener string  `json:"listener"`
	Remote   string  `json:"remote"`
}

type aclRequest struct {
	ClientID string  `json:"clientid"`
	Username *string `json:"username"`
	Topic    string  `json:"topic"`
	Access   string  `json:"access"`
}

// Authenticate implements Authenticator.
func (h *HTTP) Authenticate(ctx context.Context, c *Client, password []byte) error {
	if h.cfg.AuthURL == "" {
		return errors.New("auth: http: no AuthURL configured")
	}
	req := authRequest{ClientID: c.ClientID, Listener: c.Listener}
	if c.HasUsername {
		req.Username = &c.Username
	}
	if password != nil {
		if !utf8.Valid(password) {
			return fmt.Errorf("%w: password is not UTF-8", ErrBadCredentials)
		}
		pw := string(password)
		req.Password = &pw
	}
	if c.RemoteAddr != nil {
		req.Remote = c.RemoteAddr.String()
	}
	h.stats.authRequests.Add(1)
	status, err := h.post(ctx, h.cfg.AuthURL, &req)
	switch {
	case err != nil:
		h.stats.errors.Add(1)
		return err
	case status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%w: the authentication service answered 401", ErrBadCredentials)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: the authentication service answered 403", ErrNotAuthorized)
	}
	h.stats.errors.Add(1)
	return fmt.Errorf("auth: http: %s answered %d", h.cfg.AuthURL, status)
}

// post sends body as JSON to u within the configured timeout and returns
// the response status.
func (h *HTTP) post(ctx context.Context, u string, body any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("auth: http: %w", err)
	}
	// Read a little of the body so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func keyFor(c *Client, a Access, topic string) aclKey {
	return aclKey{clientID: c.ClientID, username: c.Username, hasUsername: c.HasUsername, access: a, topic: topic}
}

func (h *HTTP) shard(sum uint64) *cacheShard { return &h.shards[sum%cacheShards] }

// cached returns the cached answer for k: found is false when there is none
// or it is too old to use; fresh is false when it is past its TTL.
func (h *HTTP) cached(k *aclKey, sum uint64) (allow, found, fresh bool) {
	sh := h.shard(sum)
	sh.mu.Lock()
	e := sh.entries[sum]
	if e == nil || e.key != *k {
		sh.mu.Unlock()
		return false, false, false
	}
	allow, expires, ttl := e.allow, e.expires, e.ttl
	sh.mu.Unlock()
	now := h.now()
	if now.Before(expires) {
		return allow, true, true
	}
	// Past its TTL, an answer serves once more for up to another TTL
	// while a fresh one is fetched.
	return allow, now.Before(expires.Add(ttl)), false
}

// Allow implements Authorizer without blocking: see HTTP.
func (h *HTTP) Allow(c *Client, a Access, topic string) bool {
	if h.cfg.ACLURL == "" {
		return false
	}
	k := keyFor(c, a, topic)
	sum := maphash.Comparable(h.seed, k)
	allow, found, fresh := h.cached(&k, sum)
	if found {
		h.stats.hits.Add(1)
		if !fresh {
			h.startFetch(k, sum, false)
		}
		return allow
	}
	h.stats.misses.Add(1)
	h.startFetch(k, sum, false)
	return false
}

// AllowWait implements WaitingAuthorizer: like Allow, but on a miss or an
// answer past its TTL it asks the service and waits for the answer, or for
// ctx to end (then it denies).
func (h *HTTP) AllowWait(ctx context.Context, c *Client, a Access, topic string) bool {
	if h.cfg.ACLURL == "" {
		return false
	}
	k := keyFor(c, a, topic)
	sum := maphash.Comparable(h.seed, k)
	if allow, _, fresh := h.cached(&k, sum); fresh {
		h.stats.hits.Add(1)
		return allow
	}
	h.stats.misses.Add(1)
	f := h.startFetch(k, sum, true)
	if f == nil {
		return false
	}
	select {
	case <-f.done:
		return f.allow
	case <-ctx.Done():
		return false
	}
}

// Covers implements Covering: true while the cached answer to "subscribe"
// for filter is an allow, unless CheckEachRead is set. See HTTP.
func (h *HTTP) Covers(c *Client, filter string) bool {
	if h.cfg.CheckEachRead || h.cfg.ACLURL == "" {
		return false
	}
	k := keyFor(c, Subscribe, filter)
	allow, _, fresh := h.cached(&k, maphash.Comparable(h.seed, k))
	return fresh && allow
}

// startFetch asks the service about k in the background, unless a request
// for it is already in flight, and returns the fetch to wait on. With wait
// false it gives up (returning nil) rather than exceed Fetches requests in
// flight; with wait true the request waits for its turn.
func (h *HTTP) startFetch(k aclKey, sum uint64, wait bool) *fetch {
	sh := h.shard(sum)
	sh.mu.Lock()
	if f := sh.inflight[sum]; f != nil {
		sh.mu.Unlock()
		return f
	}
	if !wait {
		select {
		case h.fetching <- struct{}{}:
		default:
			sh.mu.Unlock()
			h.stats.skipped.Add(1)
			return nil
		}
	}
	f := &fetch{done: make(chan struct{})}
	sh.inflight[sum] = f
	sh.mu.Unlock()
	// The strings may share memory with a packet buffer the broker reuses.
	k.clientID, k.username, k.topic = strings.Clone(k.clientID), strings.Clone(k.username), strings.Clone(k.topic)
	go func() {
		if wait {
			h.fetching <- struct{}{}
		}
		allow, err := h.ask(&k)
		<-h.fetching
		ttl := h.cfg.CacheTTL
		if err != nil || !allow {
			ttl = h.cfg.NegativeTTL
		}
		sh.mu.Lock()
		sh.put(sum, &cacheEntry{key: k, allow: allow, expires: h.now().Add(ttl), ttl: ttl}, h.perShard())
		delete(sh.inflight, sum)
		sh.mu.Unlock()
		f.allow = allow
		close(f.done)
	}()
	return f
}

func (h *HTTP) perShard() int { return max(1, (h.cfg.CacheSize+cacheShards-1)/cacheShards) }

// ask POSTs the question k to the ACL service.
func (h *HTTP) ask(k *aclKey) (bool, error) {
	req := aclRequest{ClientID: k.clientID, Topic: k.topic, Access: k.access.String()}
	if k.hasUsername {
		req.Username = &k.username
	}
	h.stats.aclRequests.Add(1)
	status, err := h.post(context.Background(), h.cfg.ACLURL, &req)
	switch {
	case err != nil:
	case status == http.StatusOK:
		return true, nil
	case status == http.StatusForbidden:
		return false, nil
	default:
		err = fmt.Errorf("auth: http: %s answered %d", h.cfg.ACLURL, status)
	}
	h.stats.errors.Add(1)
	return false, err
}

// put stores e under sum, forgetting the oldest entries beyond limit. The
// caller holds sh.mu. order holds the keys of entries in insertion order
// from head on; a refresh keeps its key's place.
func (sh *cacheShard) put(sum uint64, e *cacheEntry, limit int) {
	if _, ok := sh.entries[sum]; ok {
		sh.entries[sum] = e
		return
	}
	for len(sh.entries) >= limit {
		delete(sh.entries, sh.order[sh.head])
		sh.head++
	}
	if sh.head > 0 && sh.head*2 >= len(sh.order) {
		n := copy(sh.order, sh.order[sh.head:])
		sh.order, sh.head = sh.order[:n], 0
	}
	sh.entries[sum] = e
	sh.order = append(sh.order, sum)
}
